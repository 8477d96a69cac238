// Helper of the disk-cache test (test_llvm_backend.cpp): runs two fused kernels with the
// generated-code cache in folder ARGV[1] and prints the back end that ran them, how many kernels
// LLVM generated and how many were loaded from the cache, as "backend=B generated=N loaded=M".
// Exits 1 when the results are wrong or the two kernels ran on different back ends.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "convgraph/base/config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"

using namespace convgraph;
using namespace convgraph::codegen;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CACHE_DIR\n", argv[0]);
    return 2;
  }
  try {
    ScopedFlags flags(fmt::format("codegen.disk_cache=on,codegen.cache_dir={}", argv[1]));
    FusedIRBuilder b(2, "second_process");
    const int x = b.load(b.input(DType::float32));
    const int bias = b.load(b.input(DType::float32, {true, false}));
    b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::sub, {x, bias})}));
    const auto elementwise = compile_fused(b.build());
    FusedIRBuilder g(2, "second_process_sum");
    g.output(g.load(g.input(DType::float64)));
    g.reduce(FusedReduceKind::sum, {0});
    const auto reduction = compile_fused(g.build());

    const Tensor xt = Tensor::full(DType::float32, {5, 3}, 2.0);
    const Tensor bt = Tensor::full(DType::float32, {1, 3}, 0.5);
    const Tensor r = (*elementwise)({xt, bt})[0];
    const Tensor s = (*reduction)({Tensor::full(DType::float64, {100, 7}, 0.25)})[0];
    bool ok = true;
    for (float v : r.to_vector<float>()) ok = ok && v == 1.5f;
    for (double v : s.to_vector<double>()) ok = ok && v == 25.0;
    ok = ok && elementwise->backend() == reduction->backend();
    std::printf("backend=%s generated=%lld loaded=%lld\n",
                std::string(fused_backend_name(elementwise->backend())).c_str(),
                static_cast<long long>(codegen_counters().llvm_compilations.load()),
                static_cast<long long>(codegen_counters().disk_hits.load()));
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "codegen_second_process: %s\n", e.what());
    return 2;
  }
}
