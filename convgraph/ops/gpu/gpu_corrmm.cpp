// The GpuCorrMM op: its name, its run-time checks (those of the reference and of CorrMM, in the
// same order), its kernel and the public gpu_corrmm_* functions. How the computation runs is in
// gpu_corrmm_detail.hpp and the other gpu_corrmm_*.cpp files.
#include "convgraph/ops/gpu/gpu_corrmm.hpp"

#include "convgraph/ops/conv/conv_problem.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv_checks.hpp"
#include "convgraph/ops/gpu/gpu_corrmm_detail.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"

namespace convgraph {

namespace {

using namespace gpu_corrmm_detail;

std::string op_name(ConvDirection direction, int convdim) {
  std::string name = convdim == 3 ? "GpuCorr3dMM" : "GpuCorrMM";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

// ---- run-time checks: those of the reference and of CorrMM, in the same order ----

void check_tensor(const std::string& fn, const char* what, const Tensor& t, int rank) {
  if (!t.defined()) throw ValueError(fmt::format("{}: the {} is an undefined tensor", fn, what));
  if (!t.device().is_cuda()) {
    throw UnsupportedError(fmt::format("{}: the {} is on {}; GpuCorrMM runs on a CUDA device", fn,
                                       what, t.device().str()));
  }
  if (!is_float(t.dtype())) {
    throw TypeError(fmt::format("{}: the {} has dtype {}; expected float16, float32 or float64", fn,
                                what, dtype_name(t.dtype())));
  }
  if (t.rank() != rank) {
    throw TypeError(fmt::format("{}: the {} has shape {} (rank {}); expected rank {}", fn, what,
                                shape_str(t.shape()), t.rank(), rank));
  }
}

void check_pair(const std::string& fn, const char* what_a, const Tensor& a, const char* what_b,
                const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    throw TypeError(
        fmt::format("{}: the {} has dtype {} but the {} has dtype {}; expected the same dtype", fn,
                    what_a, dtype_name(a.dtype()), what_b, dtype_name(b.dtype())));
  }
  if (a.device() != b.device()) {
    throw ValueError(fmt::format("{}: the {} is on {} but the {} is on {}; expected one device", fn,
                                 what_a, a.device().str(), what_b, b.device().str()));
  }
}

// The shape checks of each direction on its two tensor inputs (A, B) and its spatial argument
// (resolve_conv_problem, shared with every implementation), laid out in 3-D with the spatial axes
// right-aligned.
Prepared prepare(const std::string& fn, ConvDirection direction, const ConvParams& p,
                 const Shape& a, const Shape& b, const Shape& spatial) {
  const ConvProblem q = resolve_conv_problem(fn, direction, p, a, b, spatial);
  Prepared out;
  Problem& pr = out.problem;
  pr.flip = p.filter_flip;
  pr.unshared = p.unshared;
  fill_3d_geometry(q, pr);
  out.result = q.result;
  return out;
}

const char* first_input_name(ConvDirection direction) {
  return direction == ConvDirection::grad_inputs ? "kernel" : "image";
}
const char* second_input_name(ConvDirection direction) {
  return direction == ConvDirection::forward ? "kernel" : "topgrad";
}

void check_inputs(const std::string& fn, ConvDirection direction, const ConvParams& p,
                  const Tensor& a, const Tensor& b) {
  check_conv_params(fn, p);
  const char* name_a = first_input_name(direction);
  const char* name_b = second_input_name(direction);
  check_tensor(fn, name_a, a,
               direction == ConvDirection::grad_inputs ? p.kernel_rank() : p.image_rank());
  check_tensor(fn, name_b, b,
               direction == ConvDirection::forward ? p.kernel_rank() : p.image_rank());
  check_pair(fn, name_a, a, name_b, b);
}

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial, bool allow_tf32) {
  const std::string fn = op_name(direction, params.convdim);
  check_inputs(fn, direction, params, a, b);
  return execute(fn, direction, prepare(fn, direction, params, a.shape(), b.shape(), spatial), a, b,
                 allow_tf32);
}

// The spatial argument of the grad directions: the shape input, a small int64 vector kept on the
// host (read from the device if it was put there).
Shape spatial_argument(ConvDirection direction, const std::vector<Tensor>& inputs) {
  if (direction == ConvDirection::forward) return {};
  return inputs[2].to_vector<std::int64_t>();
}

class GpuCorrMMKernel final : public Kernel {
 public:
  GpuCorrMMKernel(std::string name, ConvDirection direction, ConvParams params, bool allow_tf32)
      : name_(std::move(name)),
        fn_(name_),
        direction_(direction),
        params_(std::move(params)),
        allow_tf32_(allow_tf32) {}

  // The checks and geometry of the node's static shapes, worked out once; on any error, run time
  // reports it.
  void precompute(DType dtype, const Shape& a, const Shape& b, const Shape& spatial) {
    try {
      check_conv_params(fn_, params_);
      Prepared prep = prepare(fn_, direction_, params_, a, b, spatial);
      check_conv_hints(fn_, direction_, params_, a, b, prep.result);
      cached_ = Cached{dtype, a, b, spatial, std::move(prep)};
    } catch (const ConvGraphError&) {
      cached_.reset();
    }
  }

  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    const std::size_t expected = direction_ == ConvDirection::forward ? 2 : 3;
    if (inputs.size() != expected) {
      throw ValueError(
          fmt::format("{}: {} inputs given, expected {}", fn_, inputs.size(), expected));
    }
    const Tensor& a = inputs[0];
    const Tensor& b = inputs[1];
    check_inputs(fn_, direction_, params_, a, b);
    const Shape spatial = spatial_argument(direction_, inputs);
    if (cached_ && cached_->dtype == a.dtype() && cached_->a == a.shape() &&
        cached_->b == b.shape() && cached_->spatial == spatial) {
      outputs.at(0) = execute(fn_, direction_, cached_->prep, a, b, allow_tf32_);
      return;
    }
    const Prepared prep = prepare(fn_, direction_, params_, a.shape(), b.shape(), spatial);
    check_conv_hints(fn_, direction_, params_, a.shape(), b.shape(), prep.result);
    outputs.at(0) = execute(fn_, direction_, prep, a, b, allow_tf32_);
  }

  std::string name() const override { return name_; }

 private:
  struct Cached {
    DType dtype;
    Shape a, b, spatial;
    Prepared prep;
  };
  std::string name_;
  std::string fn_;
  ConvDirection direction_;
  ConvParams params_;
  bool allow_tf32_ = false;
  std::optional<Cached> cached_;
};

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

void GpuCorrMM::check_input_types(const std::vector<Variable>& inputs) const {
  for (std::size_t i = 0; i < inputs.size() && i < 2; ++i) {
    if (!inputs[i].type().device.is_cuda()) {
      throw UnsupportedError(fmt::format("{}: input {} is on {}; GpuCorrMM runs on a CUDA device",
                                         str(), inputs[i].label(), inputs[i].type().device.str()));
    }
    if (!is_float(inputs[i].dtype())) {
      throw TypeError(fmt::format("{}: input {} has dtype {}; expected float16, float32 or float64",
                                  str(), inputs[i].label(), dtype_name(inputs[i].dtype())));
    }
  }
}

void GpuCorrMM::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  GpuCorrMMKernel(str(), direction(), params(), allow_tf32_).run(inputs, outputs);
  if (!inputs.empty() && inputs[0].defined() && inputs[0].device().is_cuda()) {
    cuda::synchronize_current(inputs[0].device().index);
  }
}

std::shared_ptr<const Kernel> GpuCorrMM::make_kernel(const Node& node) const {
  auto kernel = std::make_shared<GpuCorrMMKernel>(str(), direction(), params(), allow_tf32_);
  if (const std::optional<StaticShapes> shapes = static_shapes(node)) {
    kernel->precompute(node.inputs[0].dtype(), shapes->a, shapes->b, shapes->spatial);
  }
  return kernel;
}

bool gpu_corrmm_direct_grouped_applicable(const ConvParams& params, const Shape& image_shape,
                                          const Shape& kernel_shape) {
  Prepared prep;
  try {
    check_conv_params(op_name(ConvDirection::forward, params.convdim), params);
    prep = prepare(op_name(ConvDirection::forward, params.convdim), ConvDirection::forward, params,
                   image_shape, kernel_shape, {});
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
