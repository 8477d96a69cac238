#include "convgraph/ops/cpu/corrmm.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"
#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph {
namespace {

std::string op_name(ConvDirection direction, int convdim) {
  std::string name = convdim == 3 ? "Corr3dMM" : "CorrMM";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

// float32 and float64 on the CPU: half precision has no BLAS GEMM there (the lowering declines
// it before this).
ConcreteConvRequirements corrmm_requirements() {
  ConcreteConvRequirements r;
  r.library = "CorrMM";
  r.device = DeviceKind::cpu;
  r.dtypes = {DType::float32, DType::float64};
  r.advice = "cast float16 data to float32";
  return r;
}

// What a call needs besides the data: the geometry (tap tables included) and the result's shape.
struct Prepared {
  CorrGeometry geo;
  Shape result;
};

// The kernel of a CorrMM node: the im2col geometry of each checked problem, laid out in 3-D with
// the spatial axes right-aligned.
class CorrMMKernel final : public ConcreteConvKernel<Prepared> {
 public:
  CorrMMKernel(std::string name, ConvDirection direction, ConvParams params)
      : ConcreteConvKernel(std::move(name), direction, std::move(params), corrmm_requirements()) {}

  bool writes_given_outputs() const override { return true; }

 protected:
  Prepared prepare(const ConvProblem& q) const override {
    Prepared out;
    CorrGeometry& geo = out.geo;
    geo.flip = params().filter_flip;
    geo.unshared = params().unshared;
    fill_3d_geometry(q, geo);
    // Empty problems never reach the drivers (see execute); their kernels may be empty tensors
    // with any spatial size, too large for tables of one entry per tap.
    if (geo.batch > 0 && geo.channels > 0 && geo.filters > 0 && shape_numel(q.result) > 0) {
      set_tap_tables(geo);
    }
    out.result = q.result;
    return out;
  }

  // The gradients take their column matrices (and the weight gradient its partial sums) through
  // a Workspace, which the memory plan places in its arena; the forward allocates its own
  // (counted as unannounced temporaries by the memory plan). The input gradients of ResNet-50's
  // 7x7 stage stand next to the peak of a training step, where 4 MiB of temporaries would add
  // to it.
  std::optional<std::int64_t> workspace_for(const Prepared& prep, DType dtype, const Shape& a,
                                            const Shape& b, const Shape& spatial) const override {
    (void)a, (void)b, (void)spatial;
    const CorrGeometry& geo = prep.geo;
    if (direction() == ConvDirection::forward || geo.batch == 0 || geo.channels == 0 ||
        geo.filters == 0 || shape_numel(prep.result) == 0) {
      return 0;
    }
    if (direction() == ConvDirection::grad_inputs) {
      return dtype == DType::float64 ? corr_gemm_grad_inputs_workspace_bytes<double>(geo)
                                     : corr_gemm_grad_inputs_workspace_bytes<float>(geo);
    }
    return dtype == DType::float64 ? corr_gemm_grad_weights_workspace_bytes<double>(geo)
                                   : corr_gemm_grad_weights_workspace_bytes<float>(geo);
  }

  // Empty problems (no batch, channels or filters) give zeros, like the reference; everything
  // else goes to the GEMM drivers on contiguous data.
  Tensor execute(const Prepared& prep, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    (void)spatial;
    const CorrGeometry& geo = prep.geo;
    const DType dtype = a.dtype();
    if (geo.batch == 0 || geo.channels == 0 || geo.filters == 0) {
      return Tensor::zeros(dtype, prep.result);
    }
    Tensor out = result_buffer(dtype, prep.result);
    if (out.numel() == 0) return out;
    const Tensor ca = a.contiguous();
    const Tensor cb = b.contiguous();
    auto compute_as = [&]<typename T>() {
      switch (direction()) {
        case ConvDirection::forward:
          corr_gemm_forward<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
          break;
        case ConvDirection::grad_inputs:
          corr_gemm_grad_inputs<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
          break;
        case ConvDirection::grad_weights:
          corr_gemm_grad_weights<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>());
          break;
      }
    };
    if (dtype == DType::float32) {
      compute_as.operator()<float>();
    } else {
      compute_as.operator()<double>();
    }
    return out;
  }

  // The forward with its epilogue applied to each block of output columns after its GEMM (see
  // corr_gemm_forward).
  Tensor execute_epilogue(const Prepared& prep, const Tensor& a, const Tensor& b,
                          const Shape& spatial, const ConvEpilogueArgs& args) const override {
    const CorrGeometry& geo = prep.geo;
    if (geo.batch == 0 || geo.channels == 0 || geo.filters == 0 || shape_numel(prep.result) == 0) {
      Tensor out = execute(prep, a, b, spatial);
      apply_conv_epilogue(epilogue(), args, out);
      return out;
    }
    const DType dtype = a.dtype();
    Tensor out = result_buffer(dtype, prep.result);
    const Tensor ca = a.contiguous();
    const Tensor cb = b.contiguous();
    const Tensor bias = epilogue().bias ? args.bias.contiguous() : Tensor();
    const Tensor residual = epilogue().residual ? args.residual.contiguous() : Tensor();
    auto compute_as = [&]<typename T>() {
      CorrEpilogue<T> ep;
      ep.steps = epilogue();
      if (bias.defined()) ep.bias = bias.data<T>();
      if (residual.defined()) ep.residual = residual.data<T>();
      corr_gemm_forward<T>(geo, ca.data<T>(), cb.data<T>(), out.data<T>(), ep);
    };
    if (dtype == DType::float32) {
      compute_as.operator()<float>();
    } else {
      compute_as.operator()<double>();
    }
    return out;
  }
};

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial) {
  // As the reference's functions: no imshp / kshp hints.
  return CorrMMKernel(op_name(direction, params.convdim), direction, params)
      .compute(a, b, spatial, /*check_hints=*/false);
}

}  // namespace

CorrMM::CorrMM(ConvDirection direction, ConvParams params, ConvEpilogue epilogue)
    : ConcreteConv(direction, std::move(params), epilogue) {}

std::string CorrMM::name() const {
  return op_name(direction(), params().convdim);
}

ConcreteConvRequirements CorrMM::requirements() const {
  return corrmm_requirements();
}

std::shared_ptr<ConcreteConvKernelBase> CorrMM::make_conv_kernel(std::string name) const {
  return std::make_shared<CorrMMKernel>(std::move(name), direction(), params());
}

Tensor corrmm_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel) {
  return run_direction(ConvDirection::forward, params, image, kernel, {});
}

Tensor corrmm_grad_inputs(const ConvParams& params, const Tensor& kernel, const Tensor& topgrad,
                          const Shape& image_spatial) {
  return run_direction(ConvDirection::grad_inputs, params, kernel, topgrad, image_spatial);
}

Tensor corrmm_grad_weights(const ConvParams& params, const Tensor& image, const Tensor& topgrad,
                           const Shape& kernel_spatial) {
  return run_direction(ConvDirection::grad_weights, params, image, topgrad, kernel_spatial);
}

ConvImplementationHooks corrmm_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config&) -> std::optional<std::string> {
    if (s.dtype != DType::float32 && s.dtype != DType::float64) {
      return fmt::format(
          "dtype {}: CorrMM supports float32 and float64 (on the CPU, float16 convolutions are "
          "not supported; cast to float32)",
          dtype_name(s.dtype));
    }
    return std::nullopt;
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs, const Config&) {
    return convgraph::apply(std::make_shared<CorrMM>(s.direction, s.params), inputs);
  };
  // Every epilogue, on every forward it lowers (float32 and float64, every parameter).
  hooks.supports_epilogue = [](const ConvSignature& s,
                               const ConvEpilogue&) -> std::optional<std::string> {
    if (s.direction != ConvDirection::forward) {
      return std::string("epilogues follow a forward convolution only");
    }
    return std::nullopt;
  };
  hooks.build_epilogue = [](const ConvSignature& s, const std::vector<Variable>& inputs,
                            const ConvEpilogue& epilogue, const Config&) {
    return convgraph::apply(std::make_shared<CorrMM>(s.direction, s.params, epilogue), inputs);
  };
  return hooks;
}

}  // namespace convgraph
