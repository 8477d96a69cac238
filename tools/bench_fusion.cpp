// Times compiled functions with the fusion pass on and off (optimizer_excluding=fusion), on one
// NCHW shape:
//   relu(x + bias)                 forward bias and activation
//   where(gt(y, 0), g, 0)          the ReLU backward
//   sum(where(gt(y, 0), g, 0))     the ReLU backward's bias gradient (sum over N, H, W)
//   g = where(gt(y, 0), a + b, 0) and sum(g, {0, 2, 3})
//                                  a residual block's ReLU backward and its bias gradient, both
//                                  returned (one two-output kernel when fused)
// fused on the interpreter and on LLVM (when built in). Prints the median call of --reps runs per
// variant, the first call, the compile time and the number of nodes.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/convgraph.hpp"

using namespace convgraph;

using convgraph::bench::median;
using convgraph::bench::median_ms;
using convgraph::bench::ms_since;
using convgraph::bench::time_ms;

namespace {

Tensor pattern(const Shape& shape, int salt) {
  Tensor t = Tensor::empty(DType::float32, shape);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    p[i] = static_cast<float>((i * 7919 + salt) % 2001 - 1000) * 1e-3f;
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_fusion: compiled functions with the fusion pass on and off"};
  std::vector<std::int64_t> shape{8, 256, 56, 56};
  int threads = 2, reps = 20;
  app.add_option("--shape", shape, "N C H W (default 8 256 56 56)")->expected(4);
  app.add_option("--threads", threads, "the threads flag (default 2; 0 = all cores)");
  app.add_option("--reps", reps, "timed calls per variant (median reported)");
  CLI11_PARSE(app, argc, argv);
  try {
    // Kernels read the thread count from the process's flags.
    ScopedFlags flags(fmt::format("threads={}", threads));
    const Shape x_shape(shape.begin(), shape.end());
    const StaticShape dims(shape.begin(), shape.end());
    const Variable x = tensor("x", DType::float32, dims);
    const Variable g = tensor("g", DType::float32, dims);
    const Variable bias = tensor("bias", DType::float32, {1, shape[1], 1, 1});
    const Variable zero = constant(0.0, DType::float32);
    const Variable backward = where(gt(x, zero), g, zero);
    const Variable a = tensor("a", DType::float32, dims);
    const Variable residual = where(gt(x, zero), g + a, zero);
    struct Case {
      std::string name;
      std::vector<Variable> inputs;
      std::vector<Variable> outputs;
      std::vector<Tensor> args;
    };
    const Tensor xv = pattern(x_shape, 0);
    const Tensor gv = pattern(x_shape, 17);
    const Tensor bv = pattern({1, shape[1], 1, 1}, 5);
    const Tensor av = pattern(x_shape, 29);
    const std::vector<Case> cases = {
        {"relu(x + bias)", {x, bias}, {relu(x + bias)}, {xv, bv}},
        {"where(gt(y, 0), g, 0)", {x, g}, {backward}, {xv, gv}},
        {"sum(where(...), {0,2,3})", {x, g}, {sum(backward, {0, 2, 3})}, {xv, gv}},
        {"relu bwd + bias grad",
         {x, g, a},
         {residual, sum(residual, {0, 2, 3}, true)},
         {xv, gv, av}},
    };
    struct Variant {
      std::string name, flags;
    };
    std::vector<Variant> variants = {
        {"unfused", "optimizer_excluding=fusion"},
        {"fused, interpreter", "codegen.backend=interpreter"},
    };
    if (codegen::llvm_backend_built_in())
      variants.push_back({"fused, llvm", "codegen.backend=llvm"});

    fmt::print("shape {} float32, threads={}, median of {} calls\n", shape_str(x_shape), threads,
               reps);
    fmt::print("{:26} {:20} {:>6} {:>11} {:>11} {:>12} {:>8}\n", "graph", "variant", "nodes",
               "compile ms", "first ms", "median ms", "speedup");
    for (const Case& c : cases) {
      double unfused_ms = 0;
      for (const Variant& v : variants) {
        CompileOptions options;
        options.flags = v.flags;
        Function f;
        const double compile_ms = time_ms([&] { f = compile(c.inputs, c.outputs, options); });
        const double first = time_ms([&] { f(c.args); });
        const double median = median_ms(reps, [&] { f(c.args); });
        if (v.name == "unfused") unfused_ms = median;
        fmt::print("{:26} {:20} {:>6} {:>11.1f} {:>11.2f} {:>12.3f} {:>7.2f}x\n", c.name, v.name,
                   f.graph().num_nodes(), compile_ms, first, median, unfused_ms / median);
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "convgraph_bench_fusion: {}\n", e.what());
    return 2;
  }
  return 0;
}
