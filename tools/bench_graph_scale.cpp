// convgraph_bench_graph_scale: how the cost of building, differentiating, compiling, calling and
// destroying a graph grows with its size. See docs/benchmarks.md.
//
//   convgraph_bench_graph_scale [--sizes 10000,100000,1000000] [--resnet-layers 1000]
//                               [--calls 5] [--flags K=V,...] [--out FILE.json]
//
// Chains: y = x * 1.0001 * 1.0001 * ... (N multiplies of a 16-element float32 vector, each with
// its own constant, as a loop unrolled by a user would write it), the cost sum(y), and the
// function computing the cost and its gradient with respect to x (about 2N nodes: the gradient
// of each multiply is a multiply). The call time divided by the plan's steps is the executor's
// cost per node: the kernels on 16 elements take a few tens of nanoseconds.
//
// ResNet: LAYERS convolutions (batch 1, 8 channels, 8x8, 3x3 with "half" padding), each followed
// by a bias add and a ReLU, with a residual add around every two; the loss is the mean of the
// squared output, and the function computes it and its gradient with respect to every filter and
// bias. Compiled with the default flags.
//
// Each phase is timed once per size (the graphs are large; the calls are the median of --calls).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/convgraph.hpp"

using namespace convgraph;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

struct ChainResult {
  std::int64_t size = 0;
  std::size_t graph_nodes = 0;  // nodes of the user's graph, the gradient included
  std::size_t steps = 0;        // steps of the compiled plan
  double build_ms = 0, grad_ms = 0, compile_ms = 0, call_ms = 0, destroy_ms = 0;
  double us_per_step() const { return steps > 0 ? call_ms * 1e3 / static_cast<double>(steps) : 0; }
};

ChainResult bench_chain(std::int64_t n, int calls, const std::string& flags) {
  ChainResult r;
  r.size = n;
  // Everything that owns graph nodes lives in this block, so that its end is the destruction
  // being timed.
  auto block = std::make_unique<std::optional<std::pair<std::vector<Variable>, Function>>>();
  {
    const auto t0 = Clock::now();
    Variable x = tensor("x", DType::float32, {16});
    Variable y = x;
    for (std::int64_t i = 0; i < n; ++i) y = y * 1.0001;
    Variable cost = sum(y);
    r.build_ms = ms_since(t0);

    const auto t1 = Clock::now();
    Variable g = grad(cost, x);
    r.grad_ms = ms_since(t1);

    const auto t2 = Clock::now();
    Function f = compile({x}, {cost, g}, CompileOptions{.flags = flags});
    r.compile_ms = ms_since(t2);
    r.steps = f.plan().steps.size();
    r.graph_nodes = 2 * static_cast<std::size_t>(n);  // multiplies forward and backward

    const Tensor arg = Tensor::full(DType::float32, {16}, 1.0);
    std::vector<double> times;
    for (int c = 0; c < calls; ++c) {
      const auto t3 = Clock::now();
      std::vector<Tensor> out = f({arg});
      times.push_back(ms_since(t3));
      if (c == 0 && !std::isfinite(out[0].item_double())) {
        throw ConvGraphError("the chain's cost is not finite");
      }
    }
    r.call_ms = median(times);
    block->emplace(std::vector<Variable>{x, y, cost, g}, std::move(f));
  }
  const auto t4 = Clock::now();
  block.reset();
  r.destroy_ms = ms_since(t4);
  return r;
}

struct ResNetResult {
  int layers = 0;
  std::size_t nodes_after_optimization = 0;
  double build_ms = 0, grad_ms = 0, compile_ms = 0, call_ms = 0, destroy_ms = 0;
};

ResNetResult bench_resnet(int layers, const std::string& flags) {
  constexpr std::int64_t kChannels = 8, kSize = 8;
  ResNetResult r;
  r.layers = layers;
  auto block = std::make_unique<std::optional<std::pair<std::vector<Variable>, Function>>>();
  std::vector<Tensor> args;
  {
    const auto t0 = Clock::now();
    Variable x = tensor("x", DType::float32, {1, kChannels, kSize, kSize});
    std::vector<Variable> params;
    auto layer = [&](const Variable& in, bool activate) {
      const int id = static_cast<int>(params.size() / 2);
      Variable w =
          tensor("w" + std::to_string(id), DType::float32, {kChannels, kChannels, 3, 3});
      Variable b = tensor("b" + std::to_string(id), DType::float32, {kChannels});
      params.push_back(w);
      params.push_back(b);
      Variable h = conv2d(in, w,
                          {.filter_shape = {kChannels, kChannels, 3, 3},
                           .border_mode = "half",
                           .filter_flip = false}) +
                   dimshuffle(b, {-1, 0, -1, -1});
      return activate ? relu(h) : h;
    };
    Variable h = x;
    for (int i = 0; i + 1 < layers; i += 2) h = relu(h + layer(layer(h, true), false));
    if (layers % 2 == 1) h = layer(h, true);
    Variable loss = mean(h * h);
    r.build_ms = ms_since(t0);

    const auto t1 = Clock::now();
    std::vector<Variable> grads = grad(loss, params);
    r.grad_ms = ms_since(t1);

    std::vector<Variable> inputs{x};
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<Variable> outputs{loss};
    outputs.insert(outputs.end(), grads.begin(), grads.end());
    const auto t2 = Clock::now();
    Function f = compile(inputs, outputs, CompileOptions{.flags = flags});
    r.compile_ms = ms_since(t2);
    r.nodes_after_optimization = f.graph().num_nodes();

    args.push_back(Tensor::full(DType::float32, {1, kChannels, kSize, kSize}, 0.5));
    for (std::size_t i = 0; i < params.size(); i += 2) {
      args.push_back(Tensor::full(DType::float32, {kChannels, kChannels, 3, 3}, 0.01));
      args.push_back(Tensor::full(DType::float32, {kChannels}, 0.0));
    }
    const auto t3 = Clock::now();
    f(args);
    r.call_ms = ms_since(t3);
    inputs.insert(inputs.end(), outputs.begin(), outputs.end());
    block->emplace(std::move(inputs), std::move(f));
  }
  const auto t4 = Clock::now();
  block.reset();
  r.destroy_ms = ms_since(t4);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_graph_scale: graph size against build, grad, compile and call"};
  std::vector<std::int64_t> sizes{10000, 100000, 1000000};
  int resnet_layers = 1000;
  int calls = 5;
  std::string flags, out;
  app.add_option("--sizes", sizes, "chain lengths (multiplies)")->delimiter(',');
  app.add_option("--resnet-layers", resnet_layers, "convolutions of the ResNet (0: skip it)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--calls", calls, "calls per chain; the median is reported")
      ->check(CLI::PositiveNumber);
  app.add_option("--flags", flags, "compile flags on top of the defaults (k=v,k=v)");
  app.add_option("--out", out, "write the results here (JSON)");
  CLI11_PARSE(app, argc, argv);

  try {
    json chains = json::array();
    std::printf("%10s %10s %10s %10s %10s %10s %10s %10s\n", "chain", "steps", "build ms",
                "grad ms", "compile ms", "call ms", "destroy ms", "us/step");
    for (std::int64_t n : sizes) {
      if (n < 1) throw ValueError("--sizes: every length must be positive");
      const ChainResult r = bench_chain(n, calls, flags);
      std::printf("%10lld %10zu %10.1f %10.1f %10.1f %10.2f %10.1f %10.3f\n",
                  static_cast<long long>(n), r.steps, r.build_ms, r.grad_ms, r.compile_ms,
                  r.call_ms, r.destroy_ms, r.us_per_step());
      std::fflush(stdout);
      chains.push_back({{"multiplies", n},
                        {"plan_steps", r.steps},
                        {"build_ms", r.build_ms},
                        {"grad_ms", r.grad_ms},
                        {"compile_ms", r.compile_ms},
                        {"call_ms", r.call_ms},
                        {"destroy_ms", r.destroy_ms},
                        {"call_us_per_step", r.us_per_step()}});
    }
    json resnet;
    if (resnet_layers > 0) {
      const ResNetResult r = bench_resnet(resnet_layers, flags);
      std::printf(
          "\nResNet, %d convolutions (8 channels, 8x8, batch 1), forward + gradient, %zu nodes "
          "after optimization:\n  build %.1f ms  grad %.1f ms  compile %.1f ms  first call %.1f "
          "ms  destroy %.1f ms\n",
          r.layers, r.nodes_after_optimization, r.build_ms, r.grad_ms, r.compile_ms, r.call_ms,
          r.destroy_ms);
      resnet = {{"layers", r.layers},
                {"nodes_after_optimization", r.nodes_after_optimization},
                {"build_ms", r.build_ms},
                {"grad_ms", r.grad_ms},
                {"compile_ms", r.compile_ms},
                {"first_call_ms", r.call_ms},
                {"destroy_ms", r.destroy_ms}};
    }
    if (!out.empty()) {
      json j = {{"meta",
                 {{"convgraph_version", CONVGRAPH_VERSION},
                  {"flags", flags},
                  {"calls", calls},
                  {"chain", "y = x * 1.0001 repeated, x float32[16]; outputs sum(y) and its "
                            "gradient"}}},
                {"chains", chains}};
      if (!resnet.is_null()) j["resnet"] = resnet;
      std::ofstream(out) << j.dump(1) << "\n";
      std::printf("wrote %s\n", out.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph_bench_graph_scale: %s\n", e.what());
    return 2;
  }
  return 0;
}
