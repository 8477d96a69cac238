#include "convgraph/ops/gpu/cudnn_graph.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/cuda/cudnn_handle.hpp"

namespace convgraph::cudnn_detail {
namespace {

// Tensor UIDs of the variant pack, by role.
constexpr std::int64_t kImageUid = 1;   // x / dx
constexpr std::int64_t kKernelUid = 2;  // w / dw
constexpr std::int64_t kOutputUid = 3;  // y / dy

// The statuses that mean "cuDNN has nothing for this" rather than an error.
// Statuses that mean "not this engine / not this problem": the engine is skipped. An engine whose
// kernel cuDNN compiles at run time and fails to compile (seen with fallback engines on float16
// 1x1 convolutions) is one of them.
bool refused(cudnnStatus_t status) {
  return cuda::cudnn_not_supported(status) || cuda::cudnn_bad_param(status) ||
         status == CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED;
}

bool allocation_failure(cudnnStatus_t status) {
  return status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
         status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
}

// A failed step: a short text for *why (the caller decides whether it is an error).
struct Step {
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
  std::string what;
  bool ok() const { return status == CUDNN_STATUS_SUCCESS; }
  std::string text() const { return fmt::format("{}: {}", what, cuda::cudnn_status_text(status)); }
};

cudnnStatus_t set(const BackendDesc& d, cudnnBackendAttributeName_t name,
                  cudnnBackendAttributeType_t type, std::int64_t count, const void* values) {
  return cudnnBackendSetAttribute(d.get(), name, type, count, values);
}

cudnnStatus_t set_desc(const BackendDesc& d, cudnnBackendAttributeName_t name,
                       const BackendDesc& value) {
  cudnnBackendDescriptor_t v = value.get();
  return set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

cudnnStatus_t set_handle(const BackendDesc& d, cudnnBackendAttributeName_t name,
                         cudnnHandle_t handle) {
  return set(d, name, CUDNN_TYPE_HANDLE, 1, &handle);
}

// The attribute names cuDNN 9.x deprecates but cuDNN 9.0 requires (the handle of the operation
// graph and of the execution plan), by value so that no deprecation warning can fire.
const auto kOperationGraphHandle = static_cast<cudnnBackendAttributeName_t>(800);
const auto kExecutionPlanHandle = static_cast<cudnnBackendAttributeName_t>(400);

std::vector<std::int64_t> as_int64(const std::vector<int>& v) {
  return std::vector<std::int64_t>(v.begin(), v.end());
}

// A fully packed (C order) tensor of SHAPE.
Step make_tensor(BackendDesc& out, std::int64_t uid, cudnnDataType_t type, const Shape& shape) {
  out = BackendDesc(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  std::vector<std::int64_t> dims(shape.begin(), shape.end());
  std::vector<std::int64_t> strides(dims.size(), 1);
  std::int64_t stride = 1;
  for (std::size_t i = dims.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<std::int64_t>(dims[i], 1);
  }
  const std::int64_t alignment = 16;  // the kernel hands cuDNN 16-byte aligned buffers
  const auto n = static_cast<std::int64_t>(dims.size());
  cudnnStatus_t s = set(out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, n, dims.data());
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, n, strides.data());
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(out.get());
  return {s, fmt::format("describing the tensor {} of shape {}", uid, shape_str(shape))};
}

Step make_conv(BackendDesc& out, const Geometry& g) {
  out = BackendDesc(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const std::int64_t dims = g.convdim;
  const cudnnConvolutionMode_t mode = g.flip ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION;
  const std::vector<std::int64_t> pads = as_int64(g.pads), strides = as_int64(g.strides),
                                  dilations = as_int64(g.dilations);
  cudnnStatus_t s = set(out, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &g.compute_type);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, dims, pads.data());
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, dims, pads.data());
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, dims, strides.data());
  if (s == CUDNN_STATUS_SUCCESS)
    s = set(out, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, dims, dilations.data());
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(out.get());
  return {s, "describing the convolution"};
}

// The convolution operation of the direction on the three tensors.
Step make_operation(BackendDesc& out, const Geometry& g, const BackendDesc& image,
                    const BackendDesc& kernel, const BackendDesc& output, const BackendDesc& conv) {
  struct Names {
    cudnnBackendDescriptorType_t type;
    cudnnBackendAttributeName_t image, kernel, output, conv, alpha, beta;
  };
  Names n{};
  switch (g.direction) {
    case ConvDirection::forward:
      n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA};
      break;
    case ConvDirection::grad_inputs:
      n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA};
      break;
    case ConvDirection::grad_weights:
      n = {CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA};
      break;
  }
  out = BackendDesc(n.type);
  cudnnStatus_t s = set_desc(out, n.image, image);
  if (s == CUDNN_STATUS_SUCCESS) s = set_desc(out, n.kernel, kernel);
  if (s == CUDNN_STATUS_SUCCESS) s = set_desc(out, n.output, output);
  if (s == CUDNN_STATUS_SUCCESS) s = set_desc(out, n.conv, conv);
  // The scaling factors: double for double data, float otherwise (as the legacy API).
  if (g.data_type == CUDNN_DATA_DOUBLE) {
    const double one = 1.0, zero = 0.0;
    if (s == CUDNN_STATUS_SUCCESS) s = set(out, n.alpha, CUDNN_TYPE_DOUBLE, 1, &one);
    if (s == CUDNN_STATUS_SUCCESS) s = set(out, n.beta, CUDNN_TYPE_DOUBLE, 1, &zero);
  } else {
    const float one = 1.0f, zero = 0.0f;
    if (s == CUDNN_STATUS_SUCCESS) s = set(out, n.alpha, CUDNN_TYPE_FLOAT, 1, &one);
    if (s == CUDNN_STATUS_SUCCESS) s = set(out, n.beta, CUDNN_TYPE_FLOAT, 1, &zero);
  }
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(out.get());
  return {s, "describing the convolution operation"};
}

// The engine of a finalized configuration: its global index and numerical notes.
struct EngineInfo {
  std::int64_t index = -1;
  std::vector<int> notes;
};

Step engine_info(const BackendDesc& engine, EngineInfo* info) {
  std::int64_t count = 0;
  cudnnStatus_t s = cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                                             CUDNN_TYPE_INT64, 1, &count, &info->index);
  if (s != CUDNN_STATUS_SUCCESS) return {s, "reading an engine's index"};
  std::vector<cudnnBackendNumericalNote_t> notes(CUDNN_NUMERICAL_NOTE_TYPE_COUNT);
  count = 0;
  s = cudnnBackendGetAttribute(engine.get(), CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                               CUDNN_TYPE_NUMERICAL_NOTE, static_cast<std::int64_t>(notes.size()),
                               &count, notes.data());
  if (s != CUDNN_STATUS_SUCCESS) return {s, "reading an engine's numerical notes"};
  info->notes.clear();
  for (std::int64_t i = 0; i < count && i < static_cast<std::int64_t>(notes.size()); ++i) {
    info->notes.push_back(static_cast<int>(notes[static_cast<std::size_t>(i)]));
  }
  return {};
}

bool has_note(const std::vector<int>& notes, cudnnBackendNumericalNote_t note) {
  return std::find(notes.begin(), notes.end(), static_cast<int>(note)) != notes.end();
}

// Why RULES exclude an engine with NOTES for G ("" = allowed).
std::string excluded(const Geometry& g, const std::vector<int>& notes, const EngineRules& rules) {
  if (has_note(notes, CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS)) {
    return "converts its inputs to a narrower type";
  }
  if (g.data_type == CUDNN_DATA_FLOAT && !rules.allow_tf32 &&
      has_note(notes, CUDNN_NUMERICAL_NOTE_TENSOR_CORE)) {
    return "uses TF32 tensor cores (dnn.conv.allow_tf32=False)";
  }
  if (g.data_type != CUDNN_DATA_HALF &&
      has_note(notes, CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)) {
    return "reduces in reduced precision";
  }
  return "";
}

// The knob choices of a finalized engine configuration.
Step knob_choices(const BackendDesc& config,
                  std::vector<std::pair<std::int64_t, std::int64_t>>* knobs) {
  std::vector<BackendDesc> choices;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int i = 0; i < CUDNN_KNOB_TYPE_COUNTS; ++i) {
    choices.emplace_back(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
    raw.push_back(choices.back().get());
  }
  std::int64_t count = 0;
  cudnnStatus_t s = cudnnBackendGetAttribute(
      config.get(), CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
      static_cast<std::int64_t>(raw.size()), &count, raw.data());
  if (s != CUDNN_STATUS_SUCCESS) return {s, "reading an engine configuration's knobs"};
  knobs->clear();
  for (std::int64_t i = 0; i < count && i < static_cast<std::int64_t>(raw.size()); ++i) {
    cudnnBackendKnobType_t type{};
    std::int64_t value = 0, n = 0;
    const auto& c = choices[static_cast<std::size_t>(i)];
    s = cudnnBackendGetAttribute(c.get(), CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1,
                                 &n, &type);
    if (s == CUDNN_STATUS_SUCCESS) {
      s = cudnnBackendGetAttribute(c.get(), CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1,
                                   &n, &value);
    }
    if (s != CUDNN_STATUS_SUCCESS) return {s, "reading a knob choice"};
    knobs->emplace_back(static_cast<std::int64_t>(type), value);
  }
  return {};
}

// The execution plan of a finalized engine configuration; PLAN's workspace is filled in.
Step make_plan(cudnnHandle_t handle, const BackendDesc& config, GraphPlan* plan) {
  plan->plan = BackendDesc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  cudnnStatus_t s = set_handle(plan->plan, kExecutionPlanHandle, handle);
  if (s == CUDNN_STATUS_SUCCESS)
    s = set_desc(plan->plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(plan->plan.get());
  if (s != CUDNN_STATUS_SUCCESS) return {s, "finalizing the execution plan"};
  std::int64_t bytes = 0, count = 0;
  s = cudnnBackendGetAttribute(plan->plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                               CUDNN_TYPE_INT64, 1, &count, &bytes);
  if (s != CUDNN_STATUS_SUCCESS) return {s, "reading the plan's workspace size"};
  plan->workspace = static_cast<std::size_t>(std::max<std::int64_t>(bytes, 0));
  return {};
}

// Throws for the failures that are errors (allocation failures and statuses outside the
// not-supported / bad-parameter families); returns whether STEP succeeded.
bool tolerate(const Step& step) {
  if (step.ok()) return true;
  if (allocation_failure(step.status) || !refused(step.status)) {
    cuda::check_cudnn(step.status, fmt::format("cuDNN graph API: {}", step.what));
  }
  return false;
}

const char* note_name(int note) {
  switch (note) {
    case CUDNN_NUMERICAL_NOTE_TENSOR_CORE:
      return "tensor_core";
    case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS:
      return "down_convert_inputs";
    case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION:
      return "reduced_precision_reduction";
    case CUDNN_NUMERICAL_NOTE_FFT:
      return "fft";
    case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC:
      return "nondeterministic";
    case CUDNN_NUMERICAL_NOTE_WINOGRAD:
      return "winograd";
    default:
      return "other";
  }
}

}  // namespace

// ---- BackendDesc ----

BackendDesc::BackendDesc(cudnnBackendDescriptorType_t type) {
  cuda::check_cudnn(
      cudnnBackendCreateDescriptor(type, &desc_),
      fmt::format("creating a cuDNN backend descriptor (type {})", static_cast<int>(type)));
}

BackendDesc::~BackendDesc() {
  if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
}

BackendDesc& BackendDesc::operator=(BackendDesc&& other) noexcept {
  if (this != &other) {
    if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
    desc_ = std::exchange(other.desc_, nullptr);
  }
  return *this;
}

// ---- EngineChoice ----

std::string EngineChoice::str() const {
  std::string knob_text;
  for (const auto& [type, value] : knobs) {
    if (!knob_text.empty()) knob_text += ',';
    knob_text += fmt::format("{}:{}", type, value);
  }
  return fmt::format("engine={};knobs={}", engine, knob_text);
}

std::optional<EngineChoice> EngineChoice::parse(const std::string& text) {
  EngineChoice c;
  bool have_engine = false;
  std::size_t start = 0;
  auto to_int = [](const std::string& s, std::int64_t* v) {
    if (s.empty()) return false;
    char* end = nullptr;
    *v = std::strtoll(s.c_str(), &end, 10);
    return end != nullptr && *end == '\0';
  };
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(';', start), text.size());
    const std::string item = text.substr(start, end - start);
    const std::size_t eq = item.find('=');
    if (eq != std::string::npos) {
      const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      if (key == "engine") {
        if (!to_int(value, &c.engine) || c.engine < 0) return std::nullopt;
        have_engine = true;
      } else if (key == "knobs") {
        std::size_t k = 0;
        while (k < value.size()) {
          const std::size_t comma = std::min(value.find(',', k), value.size());
          const std::string pair = value.substr(k, comma - k);
          const std::size_t colon = pair.find(':');
          std::int64_t type = 0, v = 0;
          if (colon == std::string::npos || !to_int(pair.substr(0, colon), &type) ||
              !to_int(pair.substr(colon + 1), &v)) {
            return std::nullopt;
          }
          c.knobs.emplace_back(type, v);
          k = comma + 1;
        }
      }
    }
    start = end + 1;
  }
  if (!have_engine) return std::nullopt;
  return c;
}

std::string GraphPlan::notes_text() const {
  std::string s;
  for (int n : numerical_notes) {
    if (!s.empty()) s += ", ";
    s += note_name(n);
  }
  return s;
}

// ---- GraphProblem ----

std::shared_ptr<GraphProblem> GraphProblem::create(cudnnHandle_t handle, const Geometry& g,
                                                   std::string* why) {
  std::shared_ptr<GraphProblem> p(new GraphProblem(g));
  Step step = make_tensor(p->x_, kImageUid, g.data_type, g.image);
  if (step.ok()) step = make_tensor(p->w_, kKernelUid, g.data_type, g.kernel);
  if (step.ok()) step = make_tensor(p->y_, kOutputUid, g.data_type, g.output);
  if (step.ok()) step = make_conv(p->conv_, g);
  if (step.ok()) step = make_operation(p->op_, g, p->x_, p->w_, p->y_, p->conv_);
  if (step.ok()) {
    p->graph_ = BackendDesc(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    cudnnBackendDescriptor_t op = p->op_.get();
    cudnnStatus_t s = set_handle(p->graph_, kOperationGraphHandle, handle);
    if (s == CUDNN_STATUS_SUCCESS) {
      s = set(p->graph_, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op);
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(p->graph_.get());
    step = {s, "finalizing the operation graph"};
  }
  if (!tolerate(step)) {
    if (why != nullptr) *why = step.text();
    return nullptr;
  }
  return p;
}

std::vector<std::shared_ptr<GraphPlan>> GraphProblem::heuristic_plans(cudnnHandle_t handle,
                                                                      const EngineRules& rules,
                                                                      std::size_t max_plans,
                                                                      std::string* why,
                                                                      bool with_fallback) {
  std::vector<std::shared_ptr<GraphPlan>> plans;
  std::vector<std::string> skipped;
  std::set<std::string> listed_choices;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    // The fallback list only when mode A gave nothing, unless asked for.
    if (!plans.empty() && !with_fallback) break;
    std::size_t from_mode = 0;
    const char* mode_name = mode == CUDNN_HEUR_MODE_A ? "heuristics A" : "fallback heuristics";
    BackendDesc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    cudnnStatus_t s = set_desc(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph_);
    if (s == CUDNN_STATUS_SUCCESS) {
      s = set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(heur.get());
    std::int64_t count = 0;
    if (s == CUDNN_STATUS_SUCCESS) {
      s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr);
    }
    if (!tolerate({s, fmt::format("asking the {}", mode_name)})) {
      skipped.push_back(Step{s, mode_name}.text());
      continue;
    }
    std::vector<BackendDesc> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (std::int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    std::int64_t returned = 0;
    if (count > 0) {
      s = cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data());
      if (!tolerate({s, fmt::format("reading the {}' results", mode_name)})) {
        skipped.push_back(Step{s, mode_name}.text());
        continue;
      }
    }
    if (returned == 0) skipped.push_back(fmt::format("the {} offer no engine", mode_name));
    for (std::int64_t i = 0; i < returned && i < count && from_mode < max_plans; ++i) {
      const BackendDesc& config = configs[static_cast<std::size_t>(i)];
      auto plan = std::make_shared<GraphPlan>();
      BackendDesc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      std::int64_t n = 0;
      cudnnBackendDescriptor_t engine_raw = engine.get();
      Step step{cudnnBackendGetAttribute(config.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine_raw),
                "reading a configuration's engine"};
      EngineInfo info;
      if (step.ok()) step = engine_info(engine, &info);
      if (step.ok()) step = knob_choices(config, &plan->choice.knobs);
      if (!tolerate(step)) {
        skipped.push_back(step.text());
        continue;
      }
      plan->choice.engine = info.index;
      plan->numerical_notes = info.notes;
      if (!listed_choices.insert(plan->choice.str()).second) continue;  // listed by mode A
      const std::string rule = excluded(g_, info.notes, rules);
      if (!rule.empty()) {
        skipped.push_back(fmt::format("engine {}: {}", info.index, rule));
        continue;
      }
      step = make_plan(handle, config, plan.get());
      if (!tolerate(step)) {
        skipped.push_back(fmt::format("engine {}: {}", info.index, step.text()));
        continue;
      }
      if (plan->workspace > rules.workspace_limit) {
        skipped.push_back(fmt::format("engine {}: needs {:.1f} MiB of workspace", info.index,
                                      plan->workspace / 1048576.0));
        continue;
      }
      plans.push_back(std::move(plan));
      ++from_mode;
    }
  }
  if (plans.empty() && why != nullptr) *why = fmt::format("{}", fmt::join(skipped, "; "));
  if (graph_trace()) {
    std::string listed;
    for (const auto& p : plans) {
      listed += fmt::format("\n    {} (workspace {} B, notes [{}])", p->choice.str(), p->workspace,
                            p->notes_text());
    }
    fmt::print(
        stderr, "convgraph cuDNN graph: {} plan(s){}{}\n", plans.size(), listed,
        skipped.empty() ? std::string() : fmt::format("\n  skipped: {}", fmt::join(skipped, "; ")));
  }
  return plans;
}

std::shared_ptr<GraphPlan> GraphProblem::recreate(cudnnHandle_t handle, const EngineChoice& choice,
                                                  const EngineRules& rules, std::string* why) {
  auto plan = std::make_shared<GraphPlan>();
  plan->choice = choice;
  BackendDesc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnStatus_t s = set_desc(engine, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, graph_);
  if (s == CUDNN_STATUS_SUCCESS) {
    s = set(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &choice.engine);
  }
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(engine.get());
  Step step{s, fmt::format("re-creating engine {}", choice.engine)};
  EngineInfo info;
  if (step.ok()) step = engine_info(engine, &info);
  std::vector<BackendDesc> knobs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (const auto& [type, value] : choice.knobs) {
    if (!step.ok()) break;
    knobs.emplace_back(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
    const auto knob_type = static_cast<cudnnBackendKnobType_t>(type);
    s = set(knobs.back(), CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &knob_type);
    if (s == CUDNN_STATUS_SUCCESS) {
      s = set(knobs.back(), CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &value);
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(knobs.back().get());
    raw.push_back(knobs.back().get());
    step = {s, fmt::format("setting knob {} to {}", type, value)};
  }
  BackendDesc config;
  if (step.ok()) {
    config = BackendDesc(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    s = set_desc(config, CUDNN_ATTR_ENGINECFG_ENGINE, engine);
    if (s == CUDNN_STATUS_SUCCESS && !raw.empty()) {
      s = set(config, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
              static_cast<std::int64_t>(raw.size()), raw.data());
    }
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(config.get());
    step = {s, "finalizing the engine configuration"};
  }
  if (step.ok()) step = make_plan(handle, config, plan.get());
  if (!tolerate(step)) {
    if (why != nullptr) *why = step.text();
    return nullptr;
  }
  plan->numerical_notes = info.notes;
  const std::string rule = excluded(g_, info.notes, rules);
  if (!rule.empty()) {
    if (why != nullptr) *why = rule;
    return nullptr;
  }
  return plan;
}

// ---- execution ----

cudnnStatus_t graph_launch(cudnnHandle_t handle, const Geometry& g, const GraphPlan& plan,
                           const Buffers& buffers, void* workspace) {
  const std::int64_t uids[3] = {kImageUid, kKernelUid, kOutputUid};
  void* pointers[3] = {nullptr, nullptr, nullptr};
  switch (g.direction) {
    case ConvDirection::forward:  // x, w -> y
      pointers[0] = const_cast<void*>(buffers.a);
      pointers[1] = const_cast<void*>(buffers.b);
      pointers[2] = buffers.out;
      break;
    case ConvDirection::grad_inputs:  // w, dy -> dx
      pointers[0] = buffers.out;
      pointers[1] = const_cast<void*>(buffers.a);
      pointers[2] = const_cast<void*>(buffers.b);
      break;
    case ConvDirection::grad_weights:  // x, dy -> dw
      pointers[0] = const_cast<void*>(buffers.a);
      pointers[1] = buffers.out;
      pointers[2] = const_cast<void*>(buffers.b);
      break;
  }
  cudnnBackendDescriptor_t pack = nullptr;
  cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
  if (s != CUDNN_STATUS_SUCCESS) return s;
  s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
  if (s == CUDNN_STATUS_SUCCESS) {
    s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                                 3, pointers);
  }
  if (s == CUDNN_STATUS_SUCCESS) {
    s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                 &workspace);
  }
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(pack);
  if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendExecute(handle, plan.plan.get(), pack);
  cudnnBackendDestroyDescriptor(pack);
  return s;
}

bool graph_trace() {
  static const bool on = [] {
    const char* v = std::getenv("CONVGRAPH_CUDNN_GRAPH_TRACE");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

}  // namespace convgraph::cudnn_detail

#endif  // CONVGRAPH_HAVE_CUDNN
