#include "convgraph/optimizer/conv_registry.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/reference_conv_op.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/winograd.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/ops/gpu/gpu_corrmm.hpp"
#endif
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#endif

namespace convgraph {
namespace {

std::string dimensionalities(const std::vector<int>& convdims) {
  std::vector<std::string> names;
  for (int n : convdims) names.push_back(fmt::format("{}-D", n));
  return fmt::format("{}", fmt::join(names, " and "));
}

#if !CONVGRAPH_HAVE_CUDNN
// Without cuDNN, dnn.enabled=True on a GPU node asks for what this build cannot do: an error, as
// where cuDNN is built in but unusable.
ConvImplementationHooks cudnn_missing_hooks(std::string why) {
  ConvImplementationHooks hooks;
  hooks.supports = [why](const ConvSignature&, const Config& config) -> std::optional<std::string> {
    if (config.get("dnn.enabled") == "True") {
      throw DeviceError(fmt::format(
          "you enabled cuDNN (dnn.enabled=True) but it cannot be used: {}. Set dnn.enabled=auto "
          "to fall back to GpuCorrMM (conv_gemm) where cuDNN is unusable",
          why));
    }
    return why;
  };
  return hooks;
}
#endif

}  // namespace

// ---- one row ----

bool ConvImplementation::carries(std::string_view tag) const {
  return tag == name || (!pass.empty() && tag == pass) ||
         std::find(tags.begin(), tags.end(), tag) != tags.end();
}

std::optional<std::string> ConvImplementation::declines(const ConvSignature& signature,
                                                        const Config& config) const {
  if (!runs_on(signature.device)) {
    return fmt::format("runs on the {}, the node is on {}",
                       device == DeviceKind::cpu ? "CPU" : "GPU", signature.device.str());
  }
  if (!hooks.supports || !hooks.build) {
    return unavailable.empty() ? std::string("not built into this convgraph") : unavailable;
  }
  if (std::find(directions.begin(), directions.end(), signature.direction) == directions.end()) {
    return fmt::format("direction {}: not implemented", signature.direction_name());
  }
  if (std::find(convdims.begin(), convdims.end(), signature.params.convdim) == convdims.end()) {
    return fmt::format("{}-D convolution: it implements {} only", signature.params.convdim,
                       dimensionalities(convdims));
  }
  return hooks.supports(signature, config);
}

Variable ConvImplementation::build(const ConvSignature& signature,
                                   const std::vector<Variable>& inputs,
                                   const Config& config) const {
  if (!hooks.build) {
    throw UnsupportedError(
        fmt::format("convolution implementation '{}' is not built in: {}", name, unavailable));
  }
  return hooks.build(signature, inputs, config);
}

// ---- the table ----

void ConvRegistry::add(ConvImplementation implementation) {
  if (implementation.name.empty()) {
    throw ValueError("a convolution implementation needs a name");
  }
  if (find(implementation.name) != nullptr) {
    throw ValueError(fmt::format("a convolution implementation named '{}' is already registered",
                                 implementation.name));
  }
  if (!implementation.hooks.supports && implementation.unavailable.empty()) {
    throw ValueError(fmt::format(
        "convolution implementation '{}': a row needs a supports hook, or a reason why it is "
        "unavailable",
        implementation.name));
  }
  rows_.push_back(std::move(implementation));
}

bool ConvRegistry::remove(std::string_view name) {
  const auto it = std::find_if(rows_.begin(), rows_.end(),
                               [&](const ConvImplementation& row) { return row.name == name; });
  if (it == rows_.end()) return false;
  rows_.erase(it);
  return true;
}

const ConvImplementation* ConvRegistry::find(std::string_view name) const {
  for (const ConvImplementation& row : rows_) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

std::vector<std::string> ConvRegistry::names() const {
  std::vector<std::string> out;
  for (const ConvImplementation& row : rows_) out.push_back(row.name);
  return out;
}

void register_conv_implementations(ConvRegistry& registry) {
  const std::vector<ConvDirection> all{ConvDirection::forward, ConvDirection::grad_inputs,
                                       ConvDirection::grad_weights};
  auto row = [&](std::string name, DeviceKind device, std::string pass,
                 std::vector<std::string> tags, std::string summary) {
    ConvImplementation r;
    r.name = std::move(name);
    r.device = device;
    r.pass = std::move(pass);
    r.tags = std::move(tags);
    r.summary = std::move(summary);
    r.directions = all;
    r.convdims = {2, 3};
    return r;
  };

  // The CPU. im2col + GEMM (OpenBLAS) and direct loops for grouped convolutions, every
  // parameter, float32 and float64.
  ConvImplementation corrmm = row("corrmm", DeviceKind::cpu, "conv_gemm", {"conv_gemm"},
                                  "CorrMM family: im2col + GEMM on the CPU, float32 and float64");
  corrmm.meta_conv3d2d = "conv3d2d";
  corrmm.epilogues = "bias, add, relu (applied to each block of output columns after its GEMM)";
  corrmm.hooks = corrmm_conv_hooks();
  registry.add(std::move(corrmm));

  // oneDNN, the CPU's vendor library: float32, shared kernels.
  ConvImplementation onednn = row("onednn", DeviceKind::cpu, "conv_dnn", {"conv_dnn", "onednn"},
                                  "oneDNN convolutions on the CPU, float32");
#if CONVGRAPH_HAVE_ONEDNN
  onednn.epilogues =
      "bias, add, relu (the bias argument, sum and eltwise_relu post-ops; after the primitive "
      "on plain layouts)";
  onednn.hooks = onednn_conv_hooks();
#else
  onednn.unavailable =
      "oneDNN is not built into this convgraph (libdnnl-dev was not found at configure time)";
#endif
  registry.add(std::move(onednn));

  // oneDNN's Winograd F(4x4, 3x3): 2-D 3x3 at stride 1 with AVX-512. Its pass runs before
  // conv_winograd and takes the problems where it measured faster than convgraph's Winograd (its
  // prefers hook); conv_meta times it as a candidate everywhere it runs.
  ConvImplementation onednn_winograd =
      row("onednn_winograd", DeviceKind::cpu, "conv_dnn_winograd",
          {"conv_dnn", "onednn", "onednn_winograd", "winograd"},
          "oneDNN's Winograd F(4x4, 3x3) on the CPU: 2-D 3x3 stride-1 float32, AVX-512 only");
#if CONVGRAPH_HAVE_ONEDNN
  onednn_winograd.epilogues = "bias, add, relu (the bias argument, sum and eltwise_relu post-ops)";
  onednn_winograd.hooks = onednn_winograd_conv_hooks();
#else
  onednn_winograd.unavailable =
      "oneDNN is not built into this convgraph (libdnnl-dev was not found at configure time)";
#endif
  registry.add(std::move(onednn_winograd));

  // Winograd F(4x4, 3x3) on the CPU: 3x3, stride 1, any dilation, one group, 2-D; in 3-D 3x3 in
  // the plane (any depth, dilated along it only), one 2-D correlation per depth tap; float32 and
  // float64; every direction. Its pass runs before conv_dnn and takes the float32 problems where
  // it measured faster than oneDNN (its prefers hook).
  ConvImplementation winograd =
      row("winograd", DeviceKind::cpu, "conv_winograd", {"conv_winograd", "winograd"},
          "Winograd F(4x4, 3x3) + GEMM (OpenBLAS) on the CPU: 3x3 stride-1 2-D (any dilation) "
          "and 3-D with 3x3 in the plane, float32 and float64");
  winograd.directions = {ConvDirection::forward, ConvDirection::grad_inputs,
                         ConvDirection::grad_weights};
  winograd.convdims = {2, 3};
  winograd.hooks = winograd_conv_hooks();
  registry.add(std::move(winograd));

  // The GPU's vendor library: cuDNN, float16 / float32 / float64, shared kernels, symmetric pads.
  ConvImplementation cudnn = row("cudnn", DeviceKind::cuda, "conv_dnn_gpu", {"conv_dnn", "cudnn"},
                                 "cuDNN convolutions on the GPU");
#if CONVGRAPH_HAVE_CUDNN
  cudnn.hooks = cudnn_conv_hooks();
#else
  cudnn.unavailable =
      "cuDNN is not built into this convgraph (cudnn.h / libcudnn were not found at configure "
      "time, or CONVGRAPH_WITH_CUDNN=OFF)";
  cudnn.hooks = cudnn_missing_hooks(cudnn.unavailable);
  cudnn.hooks.build = nullptr;
#endif
  registry.add(std::move(cudnn));

  // The GPU's im2col + GEMM (cuBLAS) and direct grouped kernels: every parameter and dtype.
  ConvImplementation gpu_corrmm =
      row("gpu_corrmm", DeviceKind::cuda, "conv_gemm_gpu", {"conv_gemm"},
          "GpuCorrMM family: im2col + GEMM (cuBLAS) on the GPU, float16 / float32 / float64");
  gpu_corrmm.meta_conv3d2d = "gpu_conv3d2d";
#if CONVGRAPH_HAVE_CUDA
  gpu_corrmm.hooks = gpu_corrmm_conv_hooks();
#else
  gpu_corrmm.unavailable = "CUDA is not built into this convgraph";
#endif
  registry.add(std::move(gpu_corrmm));

  // The ground truth: the abstract op's direct loops, accumulating in double. Only by name
  // (conv.impl=reference), never by a lowering pass or the meta-optimizer.
  ConvImplementation reference = row("reference", DeviceKind::cpu, "", {"reference"},
                                     "the abstract op's direct loops (slow: the ground truth)");
  reference.meta_candidate = false;
  reference.hooks = reference_conv_hooks();
  registry.add(std::move(reference));
}

namespace {

ConvRegistry& registry_instance() {
  // Filled once, thread-safely, on first use.
  static ConvRegistry instance = [] {
    ConvRegistry r;
    register_conv_implementations(r);
    return r;
  }();
  return instance;
}

}  // namespace

const ConvRegistry& conv_registry() {
  return registry_instance();
}

ConvRegistry& mutable_conv_registry() {
  return registry_instance();
}

// ---- what the flags select ----

std::vector<const ConvImplementation*> conv_impl_selection(const Config& config) {
  std::vector<const ConvImplementation*> selected;
  const ConvRegistry& registry = conv_registry();
  for (const std::string& name : config.get_list("conv.impl")) {
    const ConvImplementation* row = registry.find(name);
    if (row == nullptr) {
      const std::vector<std::string> names = registry.names();
      const auto suggestion = nearest_word(name, names);
      throw FlagError(fmt::format(
          "conv.impl: unknown convolution implementation '{}'{}; the "
          "registered implementations are {}",
          name, suggestion ? fmt::format(" (did you mean '{}'?)", *suggestion) : std::string(),
          fmt::join(names, ", ")));
    }
    if (std::find(selected.begin(), selected.end(), row) == selected.end()) {
      selected.push_back(row);
    }
  }
  return selected;
}

std::optional<std::string> excluded_by_flags(const ConvImplementation& implementation,
                                             const Config& config) {
  for (const std::string& tag : config.get_list("optimizer_excluding")) {
    if (implementation.carries(tag)) {
      return fmt::format("excluded by optimizer_excluding={}", tag);
    }
  }
  const std::vector<std::string> listed = config.get_list("conv.impl");
  if (!listed.empty() &&
      std::find(listed.begin(), listed.end(), implementation.name) == listed.end()) {
    return fmt::format("not selected by conv.impl={}", fmt::join(listed, ":"));
  }
  return std::nullopt;
}

std::string describe_conv_implementations(const Config& config) {
  std::string out = fmt::format("{:<12} {:<6} {:<14} {:<20} {}\n", "name", "device", "pass", "tags",
                                "status / summary");
  for (const ConvImplementation& row : conv_registry().all()) {
    std::string status;
    if (!row.hooks.build) {
      status = "not built in: " + row.unavailable;
    } else if (auto why = excluded_by_flags(row, config)) {
      status = *why;
    } else {
      status = row.summary;
      if (!row.epilogues.empty()) status += "; epilogues: " + row.epilogues;
    }
    out += fmt::format(
        "{:<12} {:<6} {:<14} {:<20} {}\n", row.name, row.device == DeviceKind::cpu ? "cpu" : "cuda",
        row.pass.empty() ? "-" : row.pass, fmt::format("{}", fmt::join(row.tags, ",")), status);
  }
  return out;
}

std::string select_conv_impl_flags(std::string_view name) {
  if (conv_registry().find(name) == nullptr) {
    throw ValueError(
        fmt::format("no convolution implementation named '{}'; the registered "
                    "implementations are {}",
                    name, fmt::join(conv_registry().names(), ", ")));
  }
  return fmt::format("conv.impl={}", name);
}

}  // namespace convgraph
