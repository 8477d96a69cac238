#include "convgraph/codegen/fused_kernel.hpp"

#include <fmt/format.h>

#include <mutex>

#include "convgraph/base/config.hpp"
#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/codegen/interpreter.hpp"
#include "convgraph/codegen/llvm_backend.hpp"

namespace convgraph::codegen {
namespace {

class InterpretedKernel final : public FusedKernel {
 public:
  using FusedKernel::FusedKernel;
  FusedBackend backend() const override { return FusedBackend::interpreter; }

 protected:
  void execute(const LoopPlan& plan, std::int64_t* status) const override {
    for_outer_ranges(plan, [&](std::int64_t begin, std::int64_t end, void* const* data) {
      interpret_range(ir(), plan, data, begin, end, status);
    });
  }
};

}  // namespace

std::string_view fused_backend_name(FusedBackend backend) {
  return backend == FusedBackend::llvm ? "llvm" : "interpreter";
}

bool llvm_backend_built_in() {
  return CONVGRAPH_HAVE_LLVM != 0;
}

std::string_view llvm_backend_missing_reason() {
  return CONVGRAPH_LLVM_WHY;
}

FusedBackend fused_backend_for(std::string_view choice) {
  if (choice == "interpreter") return FusedBackend::interpreter;
  if (choice == "llvm" && !llvm_backend_built_in()) {
    throw FlagError(fmt::format(
        "codegen.backend=llvm but this build of convgraph has no LLVM back end ({}); use "
        "codegen.backend=auto or interpreter",
        llvm_backend_missing_reason()));
  }
  return llvm_backend_built_in() ? FusedBackend::llvm : FusedBackend::interpreter;
}

void FusedKernel::run_bound(const BoundCall& call) const {
  std::int64_t status = 0;
  if (!call.empty()) execute(call.plan(), &status);
  call.finish(status);
}

void FusedKernel::run(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) const {
  run_bound(BoundCall(ir_, inputs, outputs));
}

void FusedKernel::run(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                      const Shape& iteration_shape) const {
  run_bound(BoundCall(ir_, inputs, outputs, &iteration_shape));
}

std::vector<Tensor> FusedKernel::operator()(const std::vector<Tensor>& inputs) const {
  const Shape shape = infer_iteration_shape(ir_, inputs);
  std::vector<Tensor> outputs;
  for (std::size_t k = 0; k < ir_.outputs().size(); ++k) {
    outputs.push_back(Tensor::empty(ir_.output_dtype(k), fused_output_shape(ir_, k, shape)));
  }
  run(inputs, outputs, shape);
  return outputs;
}

std::shared_ptr<const FusedKernel> compile_fused(const FusedIR& ir, FusedBackend backend) {
  if (backend == FusedBackend::llvm) {
#if CONVGRAPH_HAVE_LLVM
    return make_llvm_kernel(ir);
#else
    throw UnsupportedError(
        fmt::format("{}: the LLVM back end is not built in ({}); use the interpreter", ir.label(),
                    llvm_backend_missing_reason()));
#endif
  }
  return std::make_shared<InterpretedKernel>(ir);
}

std::shared_ptr<const FusedKernel> compile_fused(const FusedIR& ir) {
  return compile_fused(ir, fused_backend_for(global_config().get("codegen.backend")));
}

CodegenCounters& codegen_counters() {
  static CodegenCounters counters;
  return counters;
}

namespace {
std::mutex injected_mutex;
std::string injected_message;
}  // namespace

void inject_codegen_failure_for_testing(std::string message) {
  std::lock_guard<std::mutex> lock(injected_mutex);
  injected_message = std::move(message);
}

std::string injected_codegen_failure() {
  std::lock_guard<std::mutex> lock(injected_mutex);
  return injected_message;
}

void clear_codegen_memory_cache() {
#if CONVGRAPH_HAVE_LLVM
  clear_llvm_memory_cache();
#endif
}

}  // namespace convgraph::codegen
