// The order of a function's steps (planner/schedule.hpp): the memory schedule computes what the
// graph's own order computes, with a lower peak when values can die earlier.
#include <cmath>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

// A training step of a dense network of LAYERS layers of width N on a batch of N rows: h =
// tanh(dot(h, w) + b) per layer, a mean-square cost, SGD updates of every w and b. Its gradients
// w.r.t. the activations form a chain that a depth-first order runs whole before any weight
// gradient reads them.
struct Chain {
  std::vector<SharedVariable> params;
  Variable x;
  Variable cost;
  std::vector<Update> updates;
};

Chain make_chain(int layers, std::int64_t n, const std::string& prefix) {
  Chain c;
  c.x = tensor("x", DType::float32, {n, n});
  Variable h = c.x;
  for (int i = 0; i < layers; ++i) {
    SharedVariable w =
        shared(prefix + "w" + std::to_string(i),
               random_tensor(DType::float32, {n, n}, 100 + static_cast<unsigned>(i)));
    SharedVariable b = shared(prefix + "b" + std::to_string(i), Tensor::zeros(DType::float32, {n}));
    c.params.push_back(w);
    c.params.push_back(b);
    h = tanh(dot(h, w) * 0.1 + dimshuffle(b, {-1, 0}));
  }
  c.cost = mean(h * h);
  const std::vector<Variable> wrt(c.params.begin(), c.params.end());
  const std::vector<Variable> g = grad(c.cost, wrt);
  for (std::size_t i = 0; i < wrt.size(); ++i) c.updates.push_back({wrt[i], wrt[i] - 0.5 * g[i]});
  return c;
}

Function compile_chain(const Chain& c, const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  options.updates = c.updates;
  return compile({c.x}, {c.cost}, options);
}

}  // namespace

TEST_CASE("schedule: the memory schedule lowers the peak of a training step, same results",
          "[schedule]") {
  constexpr int kLayers = 8;
  constexpr std::int64_t kN = 64;
  for (const std::string extra : {"", ",optimizer_excluding=fusion:inplace"}) {
    CAPTURE(extra);
    const Chain by_memory = make_chain(kLayers, kN, "m");
    const Chain by_graph = make_chain(kLayers, kN, "g");
    Function fm = compile_chain(by_memory, "schedule=memory" + extra);
    Function fg = compile_chain(by_graph, "schedule=graph" + extra);
    REQUIRE(fm.plan().steps.size() == fg.plan().steps.size());
    for (int step = 0; step < 3; ++step) {
      const Tensor x = random_tensor(DType::float32, {kN, kN}, 7 + static_cast<unsigned>(step));
      const double cm = fm({x})[0].item_double();
      const double cg = fg({x})[0].item_double();
      REQUIRE(cm == cg);
      for (std::size_t p = 0; p < by_memory.params.size(); ++p) {
        REQUIRE(by_memory.params[p].get_value().to_vector<float>() ==
                by_graph.params[p].get_value().to_vector<float>());
      }
    }
    // The depth-first order keeps every activation gradient until the weight gradients at the
    // end; the memory schedule computes each weight gradient and update as soon as it can.
    const std::int64_t matrix_bytes = kN * kN * 4;
    INFO("memory " << fm.last_peak_bytes() << ", graph " << fg.last_peak_bytes());
    REQUIRE(fm.last_peak_bytes() + 3 * matrix_bytes <= fg.last_peak_bytes());
  }
}

TEST_CASE("schedule: schedule=graph runs the graph's topological order", "[schedule]") {
  const Chain c = make_chain(3, 16, "t");
  Function f = compile_chain(c, "schedule=graph");
  const auto& order = f.graph().toposort();
  REQUIRE(f.plan().steps.size() == order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    REQUIRE(f.plan().steps[i].op_text == order[i]->op->str());
  }
}
