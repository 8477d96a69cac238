// The GpuCorrMM op: its name, its requirements, its kernel and the public gpu_corrmm_* functions.
// How the computation runs is in gpu_corrmm_detail.hpp and the other gpu_corrmm_*.cpp files.
#include "convgraph/ops/gpu/gpu_corrmm.hpp"

#include "convgraph/ops/conv/conv_problem.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/gpu/gpu_corrmm_detail.hpp"

namespace convgraph {

namespace {

using namespace gpu_corrmm_detail;

std::string op_name(ConvDirection direction, int convdim) {
  std::string name = convdim == 3 ? "GpuCorr3dMM" : "GpuCorrMM";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

// float16, float32 and float64 on a CUDA device, every parameter.
ConcreteConvRequirements gpu_corrmm_requirements() {
  ConcreteConvRequirements r;
  r.library = "GpuCorrMM";
  r.device = DeviceKind::cuda;
  return r;
}

// A checked problem laid out in 3-D with the spatial axes right-aligned.
Prepared to_prepared(const ConvProblem& q, const ConvParams& p) {
  Prepared out;
  Problem& pr = out.problem;
  pr.flip = p.filter_flip;
  pr.unshared = p.unshared;
  fill_3d_geometry(q, pr);
  out.result = q.result;
  return out;
}

class GpuCorrMMKernel final : public ConcreteConvKernel<Prepared> {
 public:
  GpuCorrMMKernel(std::string name, ConvDirection direction, ConvParams params, bool allow_tf32)
      : ConcreteConvKernel(std::move(name), direction, std::move(params),
                           gpu_corrmm_requirements()),
        allow_tf32_(allow_tf32) {}

 protected:
  Prepared prepare(const ConvProblem& problem) const override {
    return to_prepared(problem, params());
  }

  Tensor execute(const Prepared& prep, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    (void)spatial;
    return gpu_corrmm_detail::execute(name(), direction(), prep, a, b, allow_tf32_);
  }

 private:
  bool allow_tf32_ = false;
};

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial, bool allow_tf32) {
  // As the reference's functions: no imshp / kshp hints.
  return GpuCorrMMKernel(op_name(direction, params.convdim), direction, params, allow_tf32)
      .compute(a, b, spatial, /*check_hints=*/false);
}

}  // namespace

GpuCorrMM::GpuCorrMM(ConvDirection direction, ConvParams params, bool allow_tf32)
    : ConcreteConv(direction, std::move(params)), allow_tf32_(allow_tf32) {}

std::string GpuCorrMM::name() const {
  return op_name(direction(), params().convdim);
}

std::string GpuCorrMM::options_str() const {
  return allow_tf32_ ? "tf32" : "";
}

bool GpuCorrMM::same_options(const ConcreteConv& other) const {
  return static_cast<const GpuCorrMM&>(other).allow_tf32_ == allow_tf32_;
}

std::size_t GpuCorrMM::options_hash() const {
  return static_cast<std::size_t>(allow_tf32_);
}

ConcreteConvRequirements GpuCorrMM::requirements() const {
  return gpu_corrmm_requirements();
}

std::shared_ptr<ConcreteConvKernelBase> GpuCorrMM::make_conv_kernel(std::string name) const {
  return std::make_shared<GpuCorrMMKernel>(std::move(name), direction(), params(), allow_tf32_);
}

bool gpu_corrmm_direct_grouped_applicable(const ConvParams& params, const Shape& image_shape,
                                          const Shape& kernel_shape) {
  Prepared prep;
  try {
    const GpuCorrMMKernel kernel(op_name(ConvDirection::forward, params.convdim),
                                 ConvDirection::forward, params, false);
    prep = to_prepared(kernel.resolve(image_shape, kernel_shape, {}), params);
  } catch (const ConvGraphError&) {
    return false;
  }
  return use_direct_grouped(prep.problem);
}

Tensor gpu_corrmm_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel,
                          bool allow_tf32) {
  return run_direction(ConvDirection::forward, params, image, kernel, {}, allow_tf32);
}

Tensor gpu_corrmm_grad_inputs(const ConvParams& params, const Tensor& kernel, const Tensor& topgrad,
                              const Shape& image_spatial, bool allow_tf32) {
  return run_direction(ConvDirection::grad_inputs, params, kernel, topgrad, image_spatial,
                       allow_tf32);
}

Tensor gpu_corrmm_grad_weights(const ConvParams& params, const Tensor& image, const Tensor& topgrad,
                               const Shape& kernel_spatial, bool allow_tf32) {
  return run_direction(ConvDirection::grad_weights, params, image, topgrad, kernel_spatial,
                       allow_tf32);
}

ConvImplementationHooks gpu_corrmm_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config&) -> std::optional<std::string> {
    if (!is_float(s.dtype)) {
      return fmt::format("dtype {}: GpuCorrMM supports float16, float32 and float64",
                         dtype_name(s.dtype));
    }
    for (std::size_t i = 0; i < s.inputs.size() && i < 2; ++i) {
      if (!s.inputs[i].device.is_cuda()) {
        return fmt::format("input {} is on {}, not on the GPU", i, s.inputs[i].device.str());
      }
    }
    return std::nullopt;
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs,
                   const Config& config) {
    // dnn.conv.allow_tf32 governs every float32 convolution on the GPU, cuDNN's or not.
    return convgraph::apply(
        std::make_shared<GpuCorrMM>(s.direction, s.params, config.get_bool("dnn.conv.allow_tf32")),
        inputs);
  };
  return hooks;
}

}  // namespace convgraph
