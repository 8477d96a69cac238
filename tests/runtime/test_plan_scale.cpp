// The executor on long plans, and the live-byte accounting behind last_peak_bytes().
#include <cmath>
#include <string>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

// y = x * 1.0001, N times (each multiply with a constant of its own), the sum of y and its
// gradient with respect to x: built, differentiated, compiled, called and destroyed.
void run_chain(int n) {
  Function f;
  {
    Variable x = vector("x", DType::float64);
    Variable y = x;
    for (int i = 0; i < n; ++i) y = y * 1.0001;
    Variable cost = sum(y);
    Variable g = grad(cost, x);
    // The executor's scale is the point: without fusion every multiply is a step of its own.
    f = compile({x}, {cost, g}, {.flags = "optimizer_excluding=fusion"});
  }  // the user's graph goes here; the function keeps its own copy
  REQUIRE(f.plan().steps.size() >= static_cast<std::size_t>(2 * n));
  const Tensor arg = Tensor::from_vector<double>({1.0, 2.0}, {2});
  const std::vector<Tensor> out = f({arg});
  const double factor = std::pow(1.0001, n);
  // n roundings of about 1e-16 each stay far below this tolerance.
  auto close = [](double got, double want) { return std::abs(got - want) <= 1e-8 * want; };
  REQUIRE(close(out[0].item_double(), 3.0 * factor));
  REQUIRE(close(out[1].to_vector<double>()[0], factor));
  REQUIRE(close(out[1].to_vector<double>()[1], factor));
  // The function's graph and plan are released when it goes.
  f = Function();
}

}  // namespace

TEST_CASE("runtime: a chain of 200,000 multiplies compiles, runs and is destroyed",
          "[runtime][scale]") {
  run_chain(200000);
}

TEST_CASE("runtime: a chain of 1,000,000 multiplies compiles, runs and is destroyed",
          "[runtime][scale][slow]") {
  run_chain(1000000);
}

TEST_CASE("runtime: last_peak_bytes counts each buffer once, while some slot holds it",
          "[runtime]") {
  constexpr std::int64_t kBytes = 1000 * 4;  // one float32 vector of 1000
  Variable x = tensor("x", DType::float32, {1000});
  const Tensor arg = Tensor::full(DType::float32, {1000}, 0.5);
  // The accounting is the point: without fusion each elementwise op is a step with a buffer, and
  // without the memory plan each buffer is allocated when its value is computed (the plan's arena
  // holds every block for the whole call; tests/planner/test_memory_plan.cpp checks it).
  const std::string unfused = "optimizer_excluding=fusion,memory_plan=False";
  const std::string unfused_out_of_place = "optimizer_excluding=fusion:inplace,memory_plan=False";

  // exp -> mul -> add: at most the input and the output of one step are alive (the argument
  // and the constants are not counted). Out of place, to count separate buffers.
  Function chain = compile({x}, {exp(x) * 2.0 + 1.0}, {.flags = unfused_out_of_place});
  chain({arg});
  REQUIRE(chain.last_peak_bytes() == 2 * kBytes);
  // In place, the mul and the add write into exp's buffer: one buffer.
  Function chain_inplace = compile({x}, {exp(x) * 2.0 + 1.0}, {.flags = unfused});
  chain_inplace({arg});
  REQUIRE(chain_inplace.last_peak_bytes() == kBytes);

  // Without releasing, every intermediate stays (one buffer again when in place).
  Function kept =
      compile({x}, {exp(x) * 2.0 + 1.0}, {.flags = unfused_out_of_place + ",allow_gc=False"});
  kept({arg});
  REQUIRE(kept.last_peak_bytes() == 3 * kBytes);
  Function kept_inplace =
      compile({x}, {exp(x) * 2.0 + 1.0}, {.flags = unfused + ",allow_gc=False"});
  kept_inplace({arg});
  REQUIRE(kept_inplace.last_peak_bytes() == kBytes);

  // A view shares its input's buffer: counted once.
  Variable m = tensor("m", DType::float32, {10, 100});
  Function viewed = compile({m}, {dimshuffle(exp(m), {1, 0}) * 2.0}, {.flags = unfused});
  viewed({Tensor::full(DType::float32, {10, 100}, 0.5)});
  REQUIRE(viewed.last_peak_bytes() == 2 * kBytes);

  // Two readers of one value keep it until the second has run: exp(x) lives through both
  // multiplies, each of whose results lives until the add.
  Variable e = exp(x);
  Function shared = compile({x}, {e * 2.0 + e * 3.0}, {.flags = unfused});
  shared({arg});
  REQUIRE(shared.last_peak_bytes() == 3 * kBytes);

  // Returning the argument itself allocates its copy only (a result never shares the caller's
  // buffer), which the plan counts too.
  Function identity = compile({x}, {x});
  identity({arg});
  REQUIRE(identity.last_peak_bytes() == kBytes);
  REQUIRE(identity.planned_peak_bytes() == kBytes);
}
