// convgraph_compile_bench: how long building, differentiating and compiling a ResNet-50-shaped
// graph takes. See docs/benchmarks.md.
//
//   convgraph_compile_bench [--runs 5] [--batch 8] [--flags K=V,...] [--out FILE.json]
//
// The graph: 53 convolutions, each followed by a bias add, with ReLUs and residual adds:
//   stem     7x7/2 conv, 3 -> 64 (224 -> 112). The 3x3/2 max-pool is omitted (no pooling op is
//            used); instead the first block of res2 is strided, so res2..res5 run at 56, 28, 14, 7
//            as in ResNet-50.
//   res2..5  [3, 4, 6, 3] bottleneck blocks 1x1 -> 3x3 -> 1x1 (64/256, 128/512, 256/1024,
//            512/2048 channels); the stride sits on the 3x3 (ResNet-50 v1.5) and on the 1x1
//            projection shortcut of each stage's first block (4 projections).
//   head     global average pooling (a mean), a 2048 x 1000 dense layer, softmax cross-entropy.
// The gradients of the scalar loss with respect to the 53 filters are taken, and the function
// computing the loss and those gradients is compiled with the default flags (FAST_RUN; nothing
// is timed while compiling). Each phase is timed separately; the median of the runs is reported.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "convgraph/convgraph.hpp"

using namespace convgraph;
using json = nlohmann::json;

using convgraph::bench::median;
using convgraph::bench::median_ms;
using convgraph::bench::ms_since;

namespace {

struct Net {
  std::vector<Variable> inputs;   // x, y, then every parameter
  std::vector<Variable> filters;  // the 53 conv filters
  Variable loss;
};

class Builder {
 public:
  explicit Builder(StaticDim batch) : batch_(batch) {}

  // conv (cross-correlation, "half"-style padding for odd kernels) + bias.
  Variable conv(const Variable& x, std::int64_t in, std::int64_t out, std::int64_t k,
                std::int64_t stride) {
    const int id = static_cast<int>(net_.filters.size());
    Variable w = tensor("w" + std::to_string(id), DType::float32, {out, in, k, k});
    Variable b = tensor("b" + std::to_string(id), DType::float32, {out});
    net_.filters.push_back(w);
    params_.push_back(w);
    params_.push_back(b);
    Variable y = conv2d(x, w,
                        {.filter_shape = {out, in, k, k},
                         .border_mode = static_cast<std::int64_t>(k / 2),
                         .subsample = {stride, stride},
                         .filter_flip = false});
    return y + dimshuffle(b, {-1, 0, -1, -1});
  }

  Variable bottleneck(const Variable& x, std::int64_t in, std::int64_t mid, std::int64_t out,
                      std::int64_t stride) {
    Variable h = relu(conv(x, in, mid, 1, 1));
    h = relu(conv(h, mid, mid, 3, stride));
    h = conv(h, mid, out, 1, 1);
    const Variable shortcut = (in != out || stride != 1) ? conv(x, in, out, 1, stride) : x;
    return relu(h + shortcut);
  }

  Net build() {
    Variable x = tensor("x", DType::float32, {batch_, 3, 224, 224});
    Variable y = tensor("y", DType::float32, {batch_, 1000});
    Variable h = relu(conv(x, 3, 64, 7, 2));  // 112 x 112; max-pool omitted
    struct Stage {
      int blocks;
      std::int64_t mid, out;
    };
    const Stage stages[] = {{3, 64, 256}, {4, 128, 512}, {6, 256, 1024}, {3, 512, 2048}};
    std::int64_t channels = 64;
    for (const Stage& s : stages) {
      for (int i = 0; i < s.blocks; ++i) {
        h = bottleneck(h, channels, s.mid, s.out, i == 0 ? 2 : 1);
        channels = s.out;
      }
    }
    Variable pooled = mean(h, {2, 3});  // (N, 2048)
    Variable wfc = tensor("wfc", DType::float32, {2048, 1000});
    Variable bfc = tensor("bfc", DType::float32, {1000});
    params_.push_back(wfc);
    params_.push_back(bfc);
    Variable logits = dot(pooled, wfc) + dimshuffle(bfc, {-1, 0});
    net_.loss = mean(cross_entropy_with_logits(logits, y));
    net_.inputs = {x, y};
    net_.inputs.insert(net_.inputs.end(), params_.begin(), params_.end());
    return net_;
  }

 private:
  StaticDim batch_;
  Net net_;
  std::vector<Variable> params_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_compile_bench: build, differentiate and compile a ResNet-50 graph"};
  int runs = 5;
  std::int64_t batch = 8;
  std::string flags, out;
  double target_ms = 200;
  app.add_option("--runs", runs, "repeat this many times; the median is reported")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "the static batch size (0: unknown)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--flags", flags, "compile flags on top of the defaults (k=v,k=v)");
  app.add_option("--target-ms", target_ms, "the compile-time target the summary compares with");
  app.add_option("--out", out, "write the results here (JSON)");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<double> build_ms, grad_ms, compile_ms, total_ms;
    std::size_t convs = 0, graph_nodes = 0, outputs = 0;
    std::map<std::string, int> op_counts;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const Net net = Builder(batch > 0 ? StaticDim(batch) : std::nullopt).build();
      const double b = ms_since(t0);
      const auto t1 = std::chrono::steady_clock::now();
      const std::vector<Variable> grads = grad(net.loss, net.filters);
      const double g = ms_since(t1);
      std::vector<Variable> outs = {net.loss};
      outs.insert(outs.end(), grads.begin(), grads.end());
      const auto t2 = std::chrono::steady_clock::now();
      const Function f = compile(net.inputs, outs, CompileOptions{.flags = flags});
      const double c = ms_since(t2);
      build_ms.push_back(b);
      grad_ms.push_back(g);
      compile_ms.push_back(c);
      total_ms.push_back(b + g + c);
      std::printf("run %d: build %8.2f ms  grad %8.2f ms  compile %8.2f ms\n", r + 1, b, g, c);
      std::fflush(stdout);
      if (r == 0) {
        convs = net.filters.size();
        outputs = outs.size();
        graph_nodes = f.graph().num_nodes();
        for (const Node* node : f.graph().toposort()) ++op_counts[node->op->name()];
      }
    }
    const double cm = median(compile_ms);
    std::printf(
        "\nResNet-50 graph: %zu convolutions (+bias, relu, residual adds), batch %s, "
        "%zu outputs (loss + filter gradients), %zu nodes after optimization\n",
        convs, batch > 0 ? std::to_string(batch).c_str() : "unknown", outputs, graph_nodes);
    std::printf(
        "median of %d runs: build %.2f ms  grad %.2f ms  compile %.2f ms  (total %.2f ms)"
        "; compile target %.0f ms: %s\n",
        runs, median(build_ms), median(grad_ms), cm, median(total_ms), target_ms,
        cm <= target_ms ? "met" : "MISSED");
    if (!out.empty()) {
      json j = {
          {"meta",
           {{"convgraph_version", CONVGRAPH_VERSION},
            {"runs", runs},
            {"batch", batch},
            {"flags", flags},
            {"graph",
             "ResNet-50 v1.5 shapes, 224x224, max-pool omitted (res2's first block "
             "strided instead), 53 convs with bias"}}},
          {"convolutions", convs},
          {"outputs", outputs},
          {"nodes_after_optimization", graph_nodes},
          {"ops_after_optimization", op_counts},
          {"build_ms", median(build_ms)},
          {"grad_ms", median(grad_ms)},
          {"compile_ms", cm},
          {"total_ms", median(total_ms)},
          {"samples", {{"build_ms", build_ms}, {"grad_ms", grad_ms}, {"compile_ms", compile_ms}}},
          {"target_compile_ms", target_ms},
      };
      std::ofstream(out) << j.dump(1) << "\n";
      std::printf("wrote %s\n", out.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph_compile_bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
