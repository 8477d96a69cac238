// Times fused kernels against the unfused ops they replace, on one NCHW shape:
//   relu(x + bias)        Elemwise{add} then Elemwise{relu}, vs one fused kernel
//   sum over N, H, W      (a bias gradient) Reduce{sum}, vs one fused kernel
//   ReLU backward + bias gradient: g = where(y > 0, a + b, 0) and sum(g, {0, 2, 3}), as two
//                         nodes (the fused ReLU backward, then Reduce{sum} or a fused sum reading g
//                         again) vs one kernel with both outputs
// each on the interpreter and on LLVM (when built in). Prints the median of --reps runs per
// variant, and the first LLVM call (which generates the code, or loads it from the disk cache).
// --cpu-time measures the process's CPU time instead of the wall clock: with --threads 1 on a
// machine other jobs load, that is the kernel's own time, where the wall clock adds whatever the
// scheduler gave the others.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "bench_util.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"

using namespace convgraph;
using namespace convgraph::codegen;

using convgraph::bench::median;
using convgraph::bench::ms_since;
using convgraph::bench::time_ms;

namespace {

double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

// The median of REPS runs of FN in CPU milliseconds of the whole process.
double median_cpu_ms(int reps, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const double t0 = cpu_ms();
    fn();
    times.push_back(cpu_ms() - t0);
  }
  return median(std::move(times));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_fused: fused kernels against the unfused ops"};
  std::vector<std::int64_t> shape{8, 256, 56, 56};
  int threads = 0, reps = 20;
  bool cpu_time = false;
  app.add_option("--shape", shape, "N C H W (default 8 256 56 56)")->expected(4);
  app.add_flag("--cpu-time", cpu_time,
               "time with the process's CPU clock (use with --threads 1 on a loaded machine)");
  app.add_option("--threads", threads, "the threads flag (0 = all cores)");
  app.add_option("--reps", reps, "timed runs per variant (median reported)");
  CLI11_PARSE(app, argc, argv);
  try {
    ScopedFlags flags(fmt::format("threads={}", threads));
    const auto median_ms = [&](int n, const std::function<void()>& fn) {
      return cpu_time ? median_cpu_ms(n, fn) : convgraph::bench::median_ms(n, fn);
    };
    const Shape x_shape(shape.begin(), shape.end());
    const Shape bias_shape{1, x_shape[1], 1, 1};
    Tensor x = Tensor::empty(DType::float32, x_shape);
    float* px = x.data<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i)
      px[i] = static_cast<float>((i * 7919) % 2001 - 1000) * 1e-3f;
    const Tensor bias = Tensor::full(DType::float32, bias_shape, 0.25);
    Tensor sum = Tensor::empty(DType::float32, x_shape);
    Tensor out = Tensor::empty(DType::float32, x_shape);
    Tensor grad = Tensor::empty(DType::float32, {x_shape[1]});

    FusedIRBuilder b(4, "bias_relu");
    const int xv = b.load(b.input(DType::float32));
    const int bv = b.load(b.input(DType::float32, {true, false, true, true}));
    b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::add, {xv, bv})}));
    const FusedIR bias_relu = b.build();
    FusedIRBuilder g(4, "bias_grad");
    g.output(g.load(g.input(DType::float32)));
    g.reduce(FusedReduceKind::sum, {0, 2, 3});
    const FusedIR bias_grad = g.build();

    fmt::print("shape {} float32, threads={}, median of {} runs{}\n", shape_str(x_shape), threads,
               reps, cpu_time ? " (CPU time)" : "");
    const double unfused = median_ms(reps, [&] {
      elemwise_kernel(ScalarOp::add, {x, bias}, sum);
      elemwise_kernel(ScalarOp::relu, {sum}, out);
    });
    fmt::print("relu(x + bias)  unfused add + relu      {:9.3f} ms\n", unfused);
    const Reduce reduce(ReduceOp::sum, {0, 2, 3}, false);
    std::vector<Tensor> reduced(1);
    const double reference_grad = median_ms(reps, [&] { reduce.perform({x}, reduced); });

    for (FusedBackend backend : {FusedBackend::interpreter, FusedBackend::llvm}) {
      if (backend == FusedBackend::llvm && !llvm_backend_built_in()) continue;
      const auto k1 = compile_fused(bias_relu, backend);
      const double first = time_ms([&] { k1->run({x, bias}, {out}); });
      const double fused = median_ms(reps, [&] { k1->run({x, bias}, {out}); });
      fmt::print(
          "relu(x + bias)  fused, {:12}     {:9.3f} ms  ({:.2f}x unfused; first call "
          "{:.1f} ms)\n",
          fused_backend_name(backend), fused, unfused / fused, first);
    }
    fmt::print("sum over N,H,W  Reduce{{sum}}             {:9.3f} ms\n", reference_grad);
    for (FusedBackend backend : {FusedBackend::interpreter, FusedBackend::llvm}) {
      if (backend == FusedBackend::llvm && !llvm_backend_built_in()) continue;
      const auto k2 = compile_fused(bias_grad, backend);
      const double first = time_ms([&] { k2->run({x}, {grad}); });
      const double fused = median_ms(reps, [&] { k2->run({x}, {grad}); });
      fmt::print(
          "sum over N,H,W  fused, {:12}     {:9.3f} ms  ({:.2f}x Reduce; first call "
          "{:.1f} ms)\n",
          fused_backend_name(backend), fused, reference_grad / fused, first);
    }

    // The ReLU backward of a residual block and its bias gradient.
    FusedIRBuilder rb(4, "relu_backward");
    const int ry = rb.load(rb.input(DType::float32));
    const int ra = rb.load(rb.input(DType::float32));
    const int rc = rb.load(rb.input(DType::float32));
    const int rzero = rb.constant(0, DType::float32);
    const int rg = rb.op(ScalarOp::where,
                         {rb.op(ScalarOp::gt, {ry, rzero}), rb.op(ScalarOp::add, {ra, rc}), rzero});
    rb.output(rg);
    const FusedIR relu_backward = rb.build();
    rb.output(rg, FusedReduceKind::sum, {0, 2, 3}, true);
    const FusedIR relu_backward_bias = rb.build();
    Tensor residual = Tensor::full(DType::float32, x_shape, 0.125);
    Tensor grad_keep = Tensor::empty(DType::float32, bias_shape);
    for (FusedBackend backend : {FusedBackend::interpreter, FusedBackend::llvm}) {
      if (backend == FusedBackend::llvm && !llvm_backend_built_in()) continue;
      const auto first = compile_fused(relu_backward, backend);
      const auto second = compile_fused(bias_grad, backend);
      const auto both = compile_fused(relu_backward_bias, backend);
      const std::vector<Tensor> in = {x, x, residual};
      first->run(in, {out});
      second->run({out}, {grad});
      both->run(in, {out, grad_keep});
      const double with_reduce = median_ms(reps, [&] {
        first->run(in, {out});
        reduce.perform({out}, reduced);
      });
      const double two_kernels = median_ms(reps, [&] {
        first->run(in, {out});
        second->run({out}, {grad});
      });
      const double one_kernel = median_ms(reps, [&] { both->run(in, {out, grad_keep}); });
      const double alone = median_ms(reps, [&] { first->run(in, {out}); });
      const std::string name(fused_backend_name(backend));
      fmt::print("relu bwd alone  {:12}               {:9.3f} ms\n", name, alone);
      fmt::print("relu bwd + db   {:12} + Reduce{{sum}}  {:9.3f} ms\n", name, with_reduce);
      fmt::print("relu bwd + db   {:12} + fused sum   {:9.3f} ms\n", name, two_kernels);
      fmt::print(
          "relu bwd + db   {:12} two outputs   {:9.3f} ms  ({:.2f}x with Reduce, {:.2f}x two "
          "kernels)\n",
          name, one_kernel, with_reduce / one_kernel, two_kernels / one_kernel);
    }
    if (llvm_backend_built_in()) {
      const CodegenCounters& c = codegen_counters();
      fmt::print("LLVM: {} generated, {} loaded from the disk cache\n", c.llvm_compilations.load(),
                 c.disk_hits.load());
    } else {
      fmt::print("LLVM: not built in ({}); the interpreter's rows only\n",
                 llvm_backend_missing_reason());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "convgraph_bench_fused: {}\n", e.what());
    return 2;
  }
  return 0;
}
