#include "convgraph/ops/cpu/corrmm.hpp"

#include "convgraph/ops/conv/conv_checks.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph {
namespace {

// ---- run-time checks: the reference's (reference_conv.cpp), in the same order, with the op's
// name in the messages ----

std::string op_name(ConvDirection direction, int convdim) {
  std::string name = convdim == 3 ? "Corr3dMM" : "CorrMM";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

void check_tensor(const std::string& fn, const char* what, const Tensor& t, int rank) {
  if (!t.defined()) throw ValueError(fmt::format("{}: the {} is an undefined tensor", fn, what));
  if (!t.device().is_cpu()) {
    throw UnsupportedError(
        fmt::format("{}: the {} is on {}; CorrMM runs on the cpu", fn, what, t.device().str()));
  }
  if (!is_float(t.dtype())) {
    throw TypeError(fmt::format("{}: the {} has dtype {}; expected float32 or float64", fn, what,
                                dtype_name(t.dtype())));
  }
  if (t.rank() != rank) {
    throw TypeError(fmt::format("{}: the {} has shape {} (rank {}); expected rank {}", fn, what,
                                shape_str(t.shape()), t.rank(), rank));
  }
}

void check_dtypes(const std::string& fn, const char* what_a, const Tensor& a, const char* what_b,
                  const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    throw TypeError(
        fmt::format("{}: the {} has dtype {} but the {} has dtype {}; expected the same dtype", fn,
                    what_a, dtype_name(a.dtype()), what_b, dtype_name(b.dtype())));
  }
  // Half precision has no BLAS GEMM on the CPU; the lowering pass declines it before this.
  if (a.dtype() == DType::float16) {
    throw UnsupportedError(fmt::format(
        "{}: CorrMM does not support float16 on the CPU (the {} is float16)", fn, what_a));
  }
}

// What a call needs besides the data: the geometry (tap tables included) and the result's shape.
struct Prepared {
  CorrGeometry geo;
  Shape result;
};

// The shape checks of each direction on the shapes of its two tensor inputs (A, B) and its
// spatial argument (resolve_conv_problem, shared with every implementation), laid out as the
// im2col geometry: spatial axes right-aligned in three. The tensor checks (rank, dtype, device)
// come first, in check_inputs.
Prepared prepare(const std::string& fn, ConvDirection direction, const ConvParams& p,
                 const Shape& a, const Shape& b, const Shape& spatial) {
  const ConvProblem q = resolve_conv_problem(fn, direction, p, a, b, spatial);
  Prepared out;
  CorrGeometry& geo = out.geo;
  geo.flip = p.filter_flip;
  geo.unshared = p.unshared;
  fill_3d_geometry(q, geo);
  // Empty problems never reach the drivers (see execute); their kernels may be empty tensors
  // with any spatial size, too large for tables of one entry per tap.
  if (geo.batch > 0 && geo.channels > 0 && geo.filters > 0 && shape_numel(q.result) > 0) {
    set_tap_tables(geo);
  }
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
  check_dtypes(fn, name_a, a, name_b, b);
}

// Runs a prepared problem. Empty problems (no batch, channels or filters) give zeros, like the
// reference; everything else goes to the GEMM drivers on contiguous data.
Tensor execute(ConvDirection direction, const Prepared& prep, const Tensor& a, const Tensor& b) {
  const CorrGeometry& geo = prep.geo;
  const DType dtype = a.dtype();
  if (geo.batch == 0 || geo.channels == 0 || geo.filters == 0) {
    return Tensor::zeros(dtype, prep.result);
  }
  Tensor out = Tensor::empty(dtype, prep.result);
  if (out.numel() == 0) return out;
  const Tensor ca = a.contiguous();
  const Tensor cb = b.contiguous();
  auto run = [&]<typename T>() {
    switch (direction) {
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
    run.operator()<float>();
  } else {
    run.operator()<double>();
  }
  return out;
}

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial) {
  const std::string fn = op_name(direction, params.convdim);
  check_inputs(fn, direction, params, a, b);
  return execute(direction, prepare(fn, direction, params, a.shape(), b.shape(), spatial), a, b);
}

// The spatial argument of the grad directions (the shape input).
Shape spatial_argument(ConvDirection direction, const std::vector<Tensor>& inputs) {
  if (direction == ConvDirection::forward) return {};
  return inputs[2].to_vector<std::int64_t>();
}

// The kernel of a CorrMM node: the geometry of the node's static shapes, when they are all known,
// is worked out once; calls with other shapes (or when they were not known) work theirs out.
class CorrMMKernel final : public Kernel {
 public:
  CorrMMKernel(std::string name, ConvDirection direction, ConvParams params)
      : name_(std::move(name)), direction_(direction), params_(std::move(params)) {}

  // Prepares for these input shapes now; on any error, leaves it to run time to report.
  void precompute(DType dtype, const Shape& a, const Shape& b, const Shape& spatial) {
    try {
      check_conv_params(name_, params_);
      Prepared prep = prepare(name_, direction_, params_, a, b, spatial);
      check_conv_hints(name_, direction_, params_, a, b, prep.result);
      cached_ = Cached{dtype, a, b, spatial, std::move(prep)};
    } catch (const ConvGraphError&) {
      cached_.reset();
    }
  }

  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    check_input_count(name_, direction_, inputs);
    const Tensor& a = inputs[0];
    const Tensor& b = inputs[1];
    check_inputs(name_, direction_, params_, a, b);
    const Shape spatial = spatial_argument(direction_, inputs);
    if (cached_ && cached_->dtype == a.dtype() && cached_->a == a.shape() &&
        cached_->b == b.shape() && cached_->spatial == spatial) {
      outputs.at(0) = execute(direction_, cached_->prep, a, b);
      return;
    }
    const Prepared prep = prepare(name_, direction_, params_, a.shape(), b.shape(), spatial);
    check_conv_hints(name_, direction_, params_, a.shape(), b.shape(), prep.result);
    outputs.at(0) = execute(direction_, prep, a, b);
  }

  std::string name() const override { return name_; }

  static void check_input_count(const std::string& fn, ConvDirection direction,
                                const std::vector<Tensor>& inputs) {
    const std::size_t expected = direction == ConvDirection::forward ? 2 : 3;
    if (inputs.size() != expected) {
      throw ValueError(
          fmt::format("{}: {} inputs given, expected {}", fn, inputs.size(), expected));
    }
  }

 private:
  struct Cached {
    DType dtype;
    Shape a, b, spatial;
    Prepared prep;
  };
  std::string name_;
  ConvDirection direction_;
  ConvParams params_;
  std::optional<Cached> cached_;
};

}  // namespace

CorrMM::CorrMM(ConvDirection direction, ConvParams params)
    : ConcreteConv(direction, std::move(params)) {}

std::string CorrMM::name() const {
  return op_name(direction(), params().convdim);
}

void CorrMM::check_input_types(const std::vector<Variable>& inputs) const {
  for (std::size_t i = 0; i < inputs.size() && i < 2; ++i) {
    if (inputs[i].dtype() == DType::float16) {
      throw UnsupportedError(
          fmt::format("{}: CorrMM does not support float16 on the CPU (input {} is float16)", str(),
                      inputs[i].label()));
    }
    if (!inputs[i].type().device.is_cpu()) {
      throw UnsupportedError(fmt::format("{}: input {} is on {}; CorrMM runs on the cpu", str(),
                                         inputs[i].label(), inputs[i].type().device.str()));
    }
  }
}

void CorrMM::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  CorrMMKernel(str(), direction(), params()).run(inputs, outputs);
}

std::shared_ptr<const Kernel> CorrMM::make_kernel(const Node& node) const {
  auto kernel = std::make_shared<CorrMMKernel>(str(), direction(), params());
  if (const auto shapes = static_shapes(node)) {
    kernel->precompute(node.inputs[0].dtype(), shapes->a, shapes->b, shapes->spatial);
  }
  return kernel;
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
  return hooks;
}

}  // namespace convgraph
