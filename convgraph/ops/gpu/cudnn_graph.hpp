// Private to the cuDNN convolution (cudnn_conv.cpp): the second execution path, through cuDNN's
// backend (graph) API -- an operation graph of one convolution node, engine configurations from
// cuDNN's heuristics, execution plans and cudnnBackendExecute. The legacy API
// (cudnnConvolutionForward, ...) only reaches cuDNN's legacy engines; the graph API reaches every
// engine (the runtime-fused and the Hopper tensor-core ones among them), which is what makes the
// float16 and TF32 convolutions competitive.
//
// Only compiled with cuDNN (CONVGRAPH_HAVE_CUDNN); cudnn.h is visible inside the library only.
#pragma once

#include "convgraph/build_config.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/ops/gpu/cudnn_algo.hpp"

namespace convgraph::cudnn_detail {

// One backend descriptor (RAII).
class BackendDesc {
 public:
  BackendDesc() = default;
  // Throws DeviceError / MemoryError when cuDNN cannot create it.
  explicit BackendDesc(cudnnBackendDescriptorType_t type);
  ~BackendDesc();
  BackendDesc(BackendDesc&& other) noexcept : desc_(std::exchange(other.desc_, nullptr)) {}
  BackendDesc& operator=(BackendDesc&& other) noexcept;
  BackendDesc(const BackendDesc&) = delete;
  BackendDesc& operator=(const BackendDesc&) = delete;
  cudnnBackendDescriptor_t get() const { return desc_; }

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
};

// What identifies an engine configuration across processes: the engine's global index and its
// knob choices. Text form: "engine=12;knobs=1:0,3:2" (knob type:value, in cuDNN's order).
struct EngineChoice {
  std::int64_t engine = -1;
  std::vector<std::pair<std::int64_t, std::int64_t>> knobs;
  std::string str() const;
  // The text form's two items, in any order among other "key=value;" items; nullopt when TEXT
  // has no engine item or a malformed one.
  static std::optional<EngineChoice> parse(const std::string& text);
  bool operator==(const EngineChoice&) const = default;
};

// One finalized execution plan.
struct GraphPlan {
  EngineChoice choice;
  BackendDesc plan;
  std::size_t workspace = 0;
  std::vector<int> numerical_notes;  // cudnnBackendNumericalNote_t values
  std::string notes_text() const;    // "tensor_core, fft", "" when none
};

// The filter of the engines a problem may use.
struct EngineRules {
  // float32 data: whether TF32 tensor cores may be used (engines with the numerical note
  // TENSOR_CORE on float32 data compute in TF32).
  bool allow_tf32 = false;
  // Plans whose workspace is above this are left out.
  std::size_t workspace_limit = static_cast<std::size_t>(-1);
};

// The operation graph of one problem (one convolution node) and what is made from it. Not
// thread-safe: the kernel serialises its use (plans are built under its locks, and executing a
// finalized plan only reads it).
class GraphProblem {
 public:
  // Nullptr when cuDNN has no graph for the problem (NOT_SUPPORTED / BAD_PARAM: *WHY says
  // which); throws DeviceError / MemoryError for other failures.
  static std::shared_ptr<GraphProblem> create(cudnnHandle_t handle, const Geometry& g,
                                              std::string* why);

  const Geometry& geometry() const { return g_; }
  // The heuristics' engine configurations (mode A, then the fallback list when mode A gives no
  // plan, or always with WITH_FALLBACK, as for timing) that pass RULES and finalize, at most
  // MAX_PLANS of each list, in the heuristics' order, each engine configuration once. *WHY says
  // why the list is empty.
  std::vector<std::shared_ptr<GraphPlan>> heuristic_plans(cudnnHandle_t handle,
                                                          const EngineRules& rules,
                                                          std::size_t max_plans, std::string* why,
                                                          bool with_fallback = false);
  // The plan of a choice made earlier (possibly by another process); nullptr when it cannot be
  // re-created (*WHY says why) or RULES exclude it.
  std::shared_ptr<GraphPlan> recreate(cudnnHandle_t handle, const EngineChoice& choice,
                                      const EngineRules& rules, std::string* why);

 private:
  explicit GraphProblem(const Geometry& g) : g_(g) {}
  Geometry g_;
  BackendDesc x_, w_, y_, conv_, op_, graph_;
};

// Runs PLAN on the handle's stream (alpha 1, beta 0) with BUFFERS as Buffers' roles say.
cudnnStatus_t graph_launch(cudnnHandle_t handle, const Geometry& g, const GraphPlan& plan,
                           const Buffers& buffers, void* workspace);

// Whether CONVGRAPH_CUDNN_GRAPH_TRACE is set (non-empty, not "0"): the graph path then prints
// what it does on stderr (a debugging aid).
bool graph_trace();

}  // namespace convgraph::cudnn_detail

#endif  // CONVGRAPH_HAVE_CUDNN
