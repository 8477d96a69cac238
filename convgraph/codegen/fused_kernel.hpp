// The public entry point of the code generator: a FusedIR compiled into something that runs on
// tensors.
//
//   FusedIRBuilder b(4, "bias_relu");
//   const int x = b.input(DType::float32);
//   const int bias = b.input(DType::float32, {true, false, true, true});
//   b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::add, {b.load(x), b.load(bias)})}));
//   auto kernel = codegen::compile_fused(b.build());
//   kernel->run({x_tensor, bias_tensor}, {out_tensor});
//
// compile_fused picks the back end from codegen.backend: LLVM-generated code where LLVM is built
// in (convgraph/codegen/llvm/), else the interpreter. Both give the results of the unfused ops
// (the interpreter bit for bit, the generated code within a few ulp for the transcendental
// functions and up to the order of additions in reductions). Kernels run with the `threads` flag's
// thread count, parallel over the outermost loop axis (with private accumulators where that axis
// is reduced).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "convgraph/codegen/fused_ir.hpp"
#include "convgraph/codegen/loop_plan.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::codegen {

enum class FusedBackend { interpreter, llvm };

std::string_view fused_backend_name(FusedBackend backend);
// Whether this build has the LLVM back end.
bool llvm_backend_built_in();
// Why this build has no LLVM back end, as configure found it ("CONVGRAPH_WITH_LLVM=OFF", "LLVM
// development files (llvm-dev) not found", ...); empty when it has one.
std::string_view llvm_backend_missing_reason();
// The back end that the codegen.backend value CHOICE names: auto gives LLVM where it is built in,
// else the interpreter. FlagError for llvm in a build without it (never a silent fallback).
FusedBackend fused_backend_for(std::string_view choice);

class FusedKernel {
 public:
  explicit FusedKernel(FusedIR ir) : ir_(std::move(ir)) {}
  virtual ~FusedKernel() = default;
  FusedKernel(const FusedKernel&) = delete;
  FusedKernel& operator=(const FusedKernel&) = delete;

  const FusedIR& ir() const { return ir_; }
  virtual FusedBackend backend() const = 0;

  // Runs the kernel: OUTPUTS are allocated tensors (any strides) of the IR's output dtypes and
  // shapes (the iteration shape; for a reduced output, that shape without its reduced axes, or
  // with them kept as 1). The iteration shape is inferred from the inputs and outputs (see
  // BoundCall) unless given. Integer division by zero or a negative integer exponent throws
  // ValueError after the loop (the outputs' contents are then unspecified). Outputs must not
  // overlap the inputs, except an output that is exactly an input (same elements, same layout).
  void run(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) const;
  void run(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
           const Shape& iteration_shape) const;
  // Allocates contiguous outputs of the inferred iteration shape and runs the kernel.
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs) const;

 protected:
  // Runs the planned loop, ORing kStatus* bits into *STATUS.
  virtual void execute(const LoopPlan& plan, std::int64_t* status) const = 0;

 private:
  void run_bound(const BoundCall& call) const;

  FusedIR ir_;
};

// A kernel for IR on the back end codegen.backend selects (auto: LLVM when built in). Throws
// FlagError when codegen.backend is llvm in a build without LLVM.
std::shared_ptr<const FusedKernel> compile_fused(const FusedIR& ir);
// A kernel for IR on BACKEND (UnsupportedError for llvm in a build without it).
std::shared_ptr<const FusedKernel> compile_fused(const FusedIR& ir, FusedBackend backend);

// Counters of the LLVM back end, for tests and profiles: object code generated with LLVM, loaded
// from the disk cache, found in memory, written to disk, and cache entries rejected as corrupt
// or foreign.
struct CodegenCounters {
  std::atomic<std::int64_t> llvm_compilations{0};
  std::atomic<std::int64_t> disk_hits{0};
  std::atomic<std::int64_t> memory_hits{0};
  std::atomic<std::int64_t> disk_writes{0};
  std::atomic<std::int64_t> rejected_entries{0};
  // Wall time spent getting code for kernels not yet in memory: generating it with LLVM or
  // loading it from the disk cache (nanoseconds, summed over threads).
  std::atomic<std::int64_t> generation_ns{0};
};
CodegenCounters& codegen_counters();
// Forgets the generated code held in memory (the disk cache stays), so that the next run of a
// kernel loads it as a fresh process would. Kernels still referenced keep working.
void clear_codegen_memory_cache();
// For tests of the failure path: while MESSAGE is not empty, generating code fails with it as if
// LLVM had rejected the kernel (codegen.fallback then decides). Empty turns it off.
void inject_codegen_failure_for_testing(std::string message);

}  // namespace convgraph::codegen
