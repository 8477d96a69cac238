// convgraph_bench_graph_scale: how the cost of building, differentiating, compiling, calling and
// destroying a graph grows with its size. See docs/benchmarks.md.
//
//   convgraph_bench_graph_scale [--sizes 10000,100000,1000000] [--resnet-layers 1000]
//                               [--calls 5] [--flags K=V,...] [--out FILE.json]
//
// Chains: y = x * 1.000001 * 1.000001 * ... (N multiplies of a 16-element float32 vector, each with
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
// Each phase is timed once per size (the graphs are large; the calls are the median of --calls),
// in wall-clock time and in CPU time of the process (steadier on a shared machine).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
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

// Milliseconds of wall-clock time and of CPU time of the process (all its threads). On a shared
// machine the CPU time is the steadier measure of the work done; both are reported.
struct Span {
  double wall_ms = 0, cpu_ms = 0;
};

double cpu_now_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

class Stopwatch {
 public:
  Stopwatch() : wall_(std::chrono::steady_clock::now()), cpu_(cpu_now_ms()) {}
  Span elapsed() const {
    return {
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_).count(),
        cpu_now_ms() - cpu_};
  }

 private:
  std::chrono::steady_clock::time_point wall_;
  double cpu_;
};

// The median by wall-clock time.
Span median(std::vector<Span> v) {
  std::sort(v.begin(), v.end(), [](const Span& a, const Span& b) { return a.wall_ms < b.wall_ms; });
  return v[v.size() / 2];
}

json to_json(const Span& s) {
  return {{"wall_ms", s.wall_ms}, {"cpu_ms", s.cpu_ms}};
}

struct ChainResult {
  std::int64_t size = 0;
  std::size_t steps = 0;  // steps of the compiled plan
  Span build, grad, compile, call, destroy;
  double us_per_step(double ms) const {
    return steps > 0 ? ms * 1e3 / static_cast<double>(steps) : 0;
  }
};

ChainResult bench_chain(std::int64_t n, int calls, const std::string& flags) {
  ChainResult r;
  r.size = n;
  // Everything that owns graph nodes lives in this block, so that its end is the destruction
  // being timed.
  auto block = std::make_unique<std::optional<std::pair<std::vector<Variable>, Function>>>();
  {
    Stopwatch t0;
    Variable x = tensor("x", DType::float32, {16});
    Variable y = x;
    for (std::int64_t i = 0; i < n; ++i) y = y * 1.000001;
    Variable cost = sum(y);
    r.build = t0.elapsed();

    Stopwatch t1;
    Variable g = grad(cost, x);
    r.grad = t1.elapsed();

    Stopwatch t2;
    Function f = compile({x}, {cost, g}, CompileOptions{.flags = flags});
    r.compile = t2.elapsed();
    r.steps = f.plan().steps.size();

    const Tensor arg = Tensor::full(DType::float32, {16}, 1.0);
    std::vector<Span> times;
    for (int c = 0; c < calls; ++c) {
      Stopwatch t3;
      std::vector<Tensor> out = f({arg});
      times.push_back(t3.elapsed());
      if (c == 0 && !std::isfinite(out[0].item_double())) {
        throw ConvGraphError("the chain's cost is not finite");
      }
    }
    r.call = median(times);
    block->emplace(std::vector<Variable>{x, y, cost, g}, std::move(f));
  }
  Stopwatch t4;
  block.reset();
  r.destroy = t4.elapsed();
  return r;
}

struct ResNetResult {
  int layers = 0;
  std::size_t nodes_after_optimization = 0;
  Span build, grad, compile, first_call, call, destroy;
};

ResNetResult bench_resnet(int layers, int calls, const std::string& flags) {
  constexpr std::int64_t kChannels = 8, kSize = 8;
  ResNetResult r;
  r.layers = layers;
  auto block = std::make_unique<std::optional<std::pair<std::vector<Variable>, Function>>>();
  std::vector<Tensor> args;
  {
    Stopwatch t0;
    Variable x = tensor("x", DType::float32, {1, kChannels, kSize, kSize});
    std::vector<Variable> params;
    auto layer = [&](const Variable& in, bool activate) {
      const int id = static_cast<int>(params.size() / 2);
      Variable w = tensor("w" + std::to_string(id), DType::float32, {kChannels, kChannels, 3, 3});
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
    r.build = t0.elapsed();

    Stopwatch t1;
    std::vector<Variable> grads = grad(loss, params);
    r.grad = t1.elapsed();

    std::vector<Variable> inputs{x};
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<Variable> outputs{loss};
    outputs.insert(outputs.end(), grads.begin(), grads.end());
    Stopwatch t2;
    Function f = compile(inputs, outputs, CompileOptions{.flags = flags});
    r.compile = t2.elapsed();
    r.nodes_after_optimization = f.graph().num_nodes();

    args.push_back(Tensor::full(DType::float32, {1, kChannels, kSize, kSize}, 0.5));
    for (std::size_t i = 0; i < params.size(); i += 2) {
      args.push_back(Tensor::full(DType::float32, {kChannels, kChannels, 3, 3}, 0.01));
      args.push_back(Tensor::full(DType::float32, {kChannels}, 0.0));
    }
    Stopwatch t3;
    f(args);
    r.first_call = t3.elapsed();
    std::vector<Span> times;
    for (int c = 0; c < calls; ++c) {
      Stopwatch t;
      f(args);
      times.push_back(t.elapsed());
    }
    r.call = median(times);
    inputs.insert(inputs.end(), outputs.begin(), outputs.end());
    block->emplace(std::move(inputs), std::move(f));
  }
  Stopwatch t4;
  block.reset();
  r.destroy = t4.elapsed();
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
  app.add_option("--calls", calls,
                 "calls per chain (and of the ResNet after its first); the median is reported")
      ->check(CLI::PositiveNumber);
  app.add_option("--flags", flags, "compile flags on top of the defaults (k=v,k=v)");
  app.add_option("--out", out, "write the results here (JSON)");
  CLI11_PARSE(app, argc, argv);

  try {
    json chains = json::array();
    std::printf(
        "Times in ms, wall-clock / CPU (the process, all threads); us/step: call / steps\n");
    std::printf("%9s %8s %14s %14s %16s %14s %14s %12s\n", "chain", "steps", "build", "grad",
                "compile", "call", "destroy", "us/step");
    auto both = [](const Span& s) { return fmt::format("{:.1f}/{:.1f}", s.wall_ms, s.cpu_ms); };
    for (std::int64_t n : sizes) {
      if (n < 1) throw ValueError("--sizes: every length must be positive");
      const ChainResult r = bench_chain(n, calls, flags);
      std::printf(
          "%9lld %8zu %14s %14s %16s %14s %14s %12s\n", static_cast<long long>(n), r.steps,
          both(r.build).c_str(), both(r.grad).c_str(), both(r.compile).c_str(),
          both(r.call).c_str(), both(r.destroy).c_str(),
          fmt::format("{:.2f}/{:.2f}", r.us_per_step(r.call.wall_ms), r.us_per_step(r.call.cpu_ms))
              .c_str());
      std::fflush(stdout);
      chains.push_back(
          {{"multiplies", n},
           {"plan_steps", r.steps},
           {"build", to_json(r.build)},
           {"grad", to_json(r.grad)},
           {"compile", to_json(r.compile)},
           {"call", to_json(r.call)},
           {"destroy", to_json(r.destroy)},
           {"call_us_per_step",
            {{"wall", r.us_per_step(r.call.wall_ms)}, {"cpu", r.us_per_step(r.call.cpu_ms)}}}});
    }
    json resnet;
    if (resnet_layers > 0) {
      const ResNetResult r = bench_resnet(resnet_layers, calls, flags);
      std::printf(
          "\nResNet, %d convolutions (8 channels, 8x8, batch 1), forward + gradient, %zu nodes "
          "after optimization (ms, wall/CPU):\n  build %s  grad %s  compile %s  first call %s  "
          "call %s  destroy %s\n",
          r.layers, r.nodes_after_optimization, both(r.build).c_str(), both(r.grad).c_str(),
          both(r.compile).c_str(), both(r.first_call).c_str(), both(r.call).c_str(),
          both(r.destroy).c_str());
      resnet = {{"layers", r.layers},
                {"nodes_after_optimization", r.nodes_after_optimization},
                {"build", to_json(r.build)},
                {"grad", to_json(r.grad)},
                {"compile", to_json(r.compile)},
                {"first_call", to_json(r.first_call)},
                {"call", to_json(r.call)},
                {"destroy", to_json(r.destroy)}};
    }
    if (!out.empty()) {
      json j = {{"meta",
                 {{"convgraph_version", CONVGRAPH_VERSION},
                  {"flags", flags},
                  {"calls", calls},
                  {"chain",
                   "y = x * 1.000001 repeated, x float32[16]; outputs sum(y) and its "
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
