// The in-place pass (optimizer/inplace_pass.hpp) and the executor's in-place steps: an output
// takes the buffer of an input only when no one can see that input afterwards.
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "convgraph/graph/printing.hpp"
#include "convgraph/ops/kernel_op.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

// The pass works on Elemwise nodes: fusion, which would replace them with fused kernels, is off
// throughout.
const char* const kUnfused = "optimizer_excluding=fusion";
const char* const kNoInplace = "optimizer_excluding=fusion:inplace";

Function compile_with(const std::vector<Variable>& in, const std::vector<Variable>& out,
                      const std::string& flags, std::vector<Update> updates = {}) {
  CompileOptions options;
  options.flags = flags;
  options.updates = std::move(updates);
  return compile(in, out, options);
}

int inplace_steps(const Function& f) {
  int n = 0;
  for (const PlanStep& step : f.plan().steps) n += static_cast<int>(step.inplace.size());
  return n;
}

// Equal element for element (NaN equal to NaN), same dtype and shape.
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const std::vector<double> x = a.to_vector<double>();
  const std::vector<double> y = b.to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i])))) return false;
  }
  return true;
}

// A random graph over three [4, 5] arguments and a [1, 5] one: elementwise ops (broadcasting
// included), views (reshape, transpose), reductions, constants; a few of its values returned,
// arguments and views among them.
struct RandomGraph {
  std::vector<Variable> inputs;
  std::vector<Variable> outputs;
  std::vector<std::pair<Tensor, Tensor>> constants;  // the value given, a copy to compare with
};

RandomGraph random_graph(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  RandomGraph g;
  for (int i = 0; i < 3; ++i) {
    g.inputs.push_back(tensor("a" + std::to_string(i), DType::float32, {4, 5}));
  }
  g.inputs.push_back(tensor("row", DType::float32, {1, 5}));
  std::vector<Variable> full(g.inputs.begin(), g.inputs.begin() + 3);  // shape [4, 5]
  std::vector<Variable> rows{g.inputs[3]};                             // shape [1, 5]
  const Tensor c = random_tensor(DType::float32, {4, 5}, seed + 1000);
  g.constants.emplace_back(c, c.clone());
  full.push_back(constant(c));
  const int nodes = 4 + static_cast<int>(pick(14));
  for (int n = 0; n < nodes; ++n) {
    const Variable a = full[pick(full.size())];
    const Variable b = pick(4) == 0 ? rows[pick(rows.size())] : full[pick(full.size())];
    switch (pick(11)) {
      case 0:
        full.push_back(a + b);
        break;
      case 1:
        full.push_back(a - b);
        break;
      case 2:
        full.push_back(b * a);
        break;
      case 3:
        full.push_back(maximum(a, b));
        break;
      case 4:
        full.push_back(tanh(a));
        break;
      case 5:
        full.push_back(relu(neg(a)));
        break;
      case 6:
        full.push_back(sigmoid(a) * 2.0);
        break;
      case 7:
        full.push_back(reshape(reshape(a, {Dim(20)}), {Dim(4), Dim(5)}));
        break;
      case 8:
        full.push_back(transpose(transpose(a) * 0.5));
        break;
      case 9:
        rows.push_back(sum(a, {0}, true));
        break;
      default:
        full.push_back(where(gt(a, b), a, b * b));
        break;
    }
  }
  const int outs = 1 + static_cast<int>(pick(3));
  for (int k = 0; k < outs; ++k) {
    const bool row = pick(5) == 0;
    g.outputs.push_back(row ? rows[pick(rows.size())] : full[full.size() - 1 - pick(3)]);
  }
  return g;
}

}  // namespace

TEST_CASE("inplace: random graphs give the same results with and without it, inputs intact",
          "[inplace]") {
  int total_inplace = 0;
  std::int64_t taken = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    CAPTURE(seed);
    RandomGraph g = random_graph(seed);
    Function with = compile_with(g.inputs, g.outputs, kUnfused);
    Function without = compile_with(g.inputs, g.outputs, kNoInplace);
    REQUIRE(inplace_steps(without) == 0);
    total_inplace += inplace_steps(with);
    std::vector<Tensor> args, copies;
    for (int i = 0; i < 4; ++i) {
      args.push_back(
          random_tensor(DType::float32, i < 3 ? Shape{4, 5} : Shape{1, 5}, seed * 7 + i));
      copies.push_back(args.back().clone());
    }
    const std::vector<Tensor> expected = without(args);
    for (int call = 0; call < 2; ++call) {
      ExecutionStats stats;
      const std::vector<Tensor> got = execute(with.plan(), args, &stats);
      taken += stats.inplace_outputs;
      REQUIRE(got.size() == expected.size());
      for (std::size_t k = 0; k < got.size(); ++k) REQUIRE(same_values(got[k], expected[k]));
      for (std::size_t i = 0; i < args.size(); ++i) REQUIRE(same_values(args[i], copies[i]));
      for (const auto& [given, copy] : g.constants) REQUIRE(same_values(given, copy));
    }
  }
  // The property is only tested if in-place steps happened.
  REQUIRE(total_inplace > 100);
  REQUIRE(taken > 100);
}

TEST_CASE("inplace: a chain runs in one buffer and the peak drops", "[inplace]") {
  Variable x = tensor("x", DType::float32, {1000, 1000});
  Variable y = relu(x * 2.0 + 1.0);
  Function with = compile_with({x}, {y}, kUnfused);
  Function without = compile_with({x}, {y}, kNoInplace);
  // Without the memory plan, whose arena would hold the product and the sum for the whole call.
  Function without_unplanned =
      compile_with({x}, {y}, std::string(kNoInplace) + ",memory_plan=False");
  REQUIRE(inplace_steps(with) == 2);
  REQUIRE(with.str().find("Elemwise{add,inplace}") != std::string::npos);
  REQUIRE(with.str().find("Elemwise{relu,inplace}") != std::string::npos);
  REQUIRE(without.str().find("inplace") == std::string::npos);
  const Tensor a = random_tensor(DType::float32, {1000, 1000}, 3);
  const Tensor copy = a.clone();
  REQUIRE(same_values(with({a})[0], without({a})[0]));
  REQUIRE(same_values(a, copy));
  const std::int64_t one = 1000 * 1000 * 4;
  REQUIRE(with.last_peak_bytes() == one);
  without_unplanned({a});
  REQUIRE(without_unplanned.last_peak_bytes() == 2 * one);
  // With the plan: an arena of the product and the sum, and the result.
  REQUIRE(without.last_peak_bytes() == 3 * one);
  REQUIRE(without.planned_peak_bytes() == 3 * one);
  ExecutionStats stats;
  execute(with.plan(), {a}, &stats);
  REQUIRE(stats.inplace_outputs == 2);
}

TEST_CASE("inplace: an argument is never overwritten", "[inplace]") {
  Variable x = tensor("x", DType::float32, {8});
  Function f = compile_with({x}, {exp(x)}, kUnfused);
  REQUIRE(inplace_steps(f) == 0);
  const Tensor a = random_tensor(DType::float32, {8}, 1);
  const Tensor copy = a.clone();
  f({a});
  REQUIRE(same_values(a, copy));
}

TEST_CASE("inplace: a value viewed or read later is never overwritten", "[inplace]") {
  Variable x = tensor("x", DType::float32, {4, 5});
  Variable t = x * 3.0;
  // exp(t) reads t while a view of it is read afterwards.
  Variable viewed = sum(reshape(t, {Dim(20)}) * 2.0);
  Variable e = exp(t);
  // Two readers of u, neither before the other in every order.
  Variable u = x + 1.0;
  Variable p = tanh(u), q = sigmoid(u);
  const std::vector<Variable> outs{e, viewed, p, q};
  Function with = compile_with({x}, outs, kUnfused);
  Function without = compile_with({x}, outs, kNoInplace);
  for (const PlanStep& step : with.plan().steps) {
    if (step.op_text.starts_with("Elemwise{exp") || step.op_text.starts_with("Elemwise{tanh") ||
        step.op_text.starts_with("Elemwise{sigmoid")) {
      REQUIRE(step.inplace.empty());
    }
  }
  const Tensor a = random_tensor(DType::float32, {4, 5}, 5);
  const auto got = with({a});
  const auto expected = without({a});
  for (std::size_t k = 0; k < outs.size(); ++k) REQUIRE(same_values(got[k], expected[k]));
}

TEST_CASE("inplace: a reader that precedes the destroyer in every order allows it", "[inplace]") {
  Variable x = tensor("x", DType::float32, {6});
  Variable t = x * 2.0;
  Variable y = t * tanh(t);  // tanh reads t before the mul can run: the mul may destroy t
  Function f = compile_with({x}, {y}, kUnfused);
  REQUIRE(inplace_steps(f) == 1);
  bool mul_into_t = false;
  for (const PlanStep& step : f.plan().steps) {
    if (step.op_text == "Elemwise{mul,inplace}") {
      mul_into_t = step.inplace == std::vector<std::pair<int, int>>{{0, 0}};
    }
  }
  REQUIRE(mul_into_t);
  const Tensor a = random_tensor(DType::float32, {6}, 9);
  REQUIRE(same_values(f({a})[0], compile_with({x}, {y}, kNoInplace)({a})[0]));
}

TEST_CASE("inplace: a returned value is never overwritten", "[inplace]") {
  Variable x = tensor("x", DType::float32, {5});
  Variable t = x * 2.0;
  Function f = compile_with({x}, {t, exp(t)}, kUnfused);
  REQUIRE(inplace_steps(f) == 0);
  const Tensor a = random_tensor(DType::float32, {5}, 2);
  const auto out = f({a});
  REQUIRE(same_values(out[0], compile_with({x}, {t}, kNoInplace)({a})[0]));
}

namespace {

// Returns, as its output, a view of a tensor it keeps: the executor sees another holder.
class HoldingKernel final : public Kernel {
 public:
  explicit HoldingKernel(Tensor held) : held_(std::move(held)) {}
  void run(const std::vector<Tensor>&, std::vector<Tensor>& outputs) const override {
    outputs[0] = held_;
  }
  std::string name() const override { return "Holding"; }
  Tensor held_;
};

// A plan computing neg(<the kernel's output>), the neg step in place.
Plan holding_plan(std::shared_ptr<const Kernel> first) {
  Plan plan;
  plan.num_slots = 3;
  plan.input_slots = {0};
  plan.input_specs = {ValueSpec{"x", DType::float32, {4}}};
  plan.output_slots = {2};
  PlanStep make;
  make.kernel = std::move(first);
  make.inputs = {0};
  make.outputs = {1};
  make.output_specs = {ValueSpec{"t", DType::float32, {4}}};
  make.label = make.op_text = "Holding";
  PlanStep negate;
  negate.kernel = std::make_shared<PerformKernel>(std::make_shared<Elemwise>(ScalarOp::neg));
  negate.inputs = {1};
  negate.outputs = {2};
  negate.output_specs = {ValueSpec{"y", DType::float32, {4}}};
  negate.release_after = {1};
  negate.inplace = {{0, 0}};
  negate.label = negate.op_text = "Elemwise{neg,inplace}";
  plan.steps = {make, negate};
  return plan;
}

}  // namespace

TEST_CASE("inplace: the executor leaves a buffer someone else holds", "[inplace]") {
  const Tensor held = Tensor::from_vector<float>({1, 2, 3, 4}, {4});
  const Tensor x = Tensor::from_vector<float>({0, 0, 0, 0}, {4});
  ExecutionStats stats;
  const Plan plan = holding_plan(std::make_shared<HoldingKernel>(held));
  const auto out = execute(plan, {x}, &stats);
  REQUIRE(stats.inplace_outputs == 0);
  REQUIRE(held.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  REQUIRE(out[0].to_vector<float>() == std::vector<float>{-1, -2, -3, -4});
  // A buffer only the slot holds is taken.
  class Fresh final : public Kernel {
   public:
    void run(const std::vector<Tensor>&, std::vector<Tensor>& outputs) const override {
      outputs[0] = Tensor::from_vector<float>({1, 2, 3, 4}, {4});
    }
    std::string name() const override { return "Fresh"; }
  };
  Plan taking = holding_plan(std::make_shared<Fresh>());
  const auto out2 = execute(taking, {x}, &stats);
  REQUIRE(stats.inplace_outputs == 1);
  REQUIRE(out2[0].to_vector<float>() == std::vector<float>{-1, -2, -3, -4});
}

TEST_CASE("inplace: shared variables are never overwritten; SGD steps agree", "[inplace]") {
  const Tensor w0 = random_tensor(DType::float32, {64, 32}, 11);
  SharedVariable w = shared("w", w0);
  SharedVariable w_ref = shared("w_ref", w0);
  Variable X = tensor("X", DType::float32, {16, 64});
  auto step = [&](const SharedVariable& v, const std::string& flags) {
    Variable h = relu(dot(X, v) * 2.0 + 0.5);
    Variable cost = mean(h * h);
    Variable g = grad(cost, static_cast<const Variable&>(v));
    return compile_with({X}, {cost}, flags, {{v, v - 0.1 * g}});
  };
  Function with = step(w, kUnfused);
  Function without = step(w_ref, kNoInplace);
  REQUIRE(inplace_steps(with) > 0);
  for (int i = 0; i < 3; ++i) {
    const Tensor x = random_tensor(DType::float32, {16, 64}, 20 + i);
    const Tensor borrowed = w.get_value(true);
    const Tensor before = borrowed.clone();
    const auto c1 = with({x});
    const auto c2 = without({x});
    REQUIRE(same_values(c1[0], c2[0]));
    REQUIRE(same_values(w.get_value(), w_ref.get_value()));
    // The buffer borrowed before the call still holds the old value.
    REQUIRE(same_values(borrowed, before));
  }
}
