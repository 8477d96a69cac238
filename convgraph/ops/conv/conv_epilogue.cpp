#include "convgraph/ops/conv/conv_epilogue.hpp"

#include <fmt/format.h>
#include <omp.h>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/runtime/cpu_threads.hpp"

namespace convgraph {
namespace {

// The broadcast pattern of a bias vector against an output of rank RANK: (1, K, 1, ...).
std::vector<int> bias_pattern(int rank) {
  std::vector<int> pattern(static_cast<std::size_t>(rank), -1);
  pattern[1] = 0;
  return pattern;
}

// The batch and spatial axes of an output of rank RANK (what a bias gradient sums over).
std::vector<int> non_channel_axes(int rank) {
  std::vector<int> axes{0};
  for (int a = 2; a < rank; ++a) axes.push_back(a);
  return axes;
}

Variable sum_defined(const Variable& a, const Variable& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

template <typename T>
void apply_typed(const ConvEpilogue& epilogue, const ConvEpilogueArgs& args, Tensor& out) {
  const std::int64_t batch = out.dim(0), channels = out.dim(1);
  const std::int64_t positions = batch * channels == 0 ? 0 : out.numel() / (batch * channels);
  const Tensor bias = epilogue.bias ? args.bias.contiguous() : Tensor();
  const Tensor residual = epilogue.residual ? args.residual.contiguous() : Tensor();
  T* o = out.data<T>();
  const T* b = bias.defined() ? bias.data<T>() : nullptr;
  const T* r = residual.defined() ? residual.data<T>() : nullptr;
  const std::int64_t image = channels * positions;
  const int threads = out.numel() >= (std::int64_t{1} << 16) ? cpu_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t i = 0; i < batch; ++i) {
    apply_conv_epilogue_block<T>(epilogue, o + i * image, positions, channels, positions, b,
                                 r != nullptr ? r + i * image : nullptr);
  }
}

}  // namespace

std::string ConvEpilogue::str() const {
  std::string text;
  auto step = [&](bool on, const char* name) {
    if (!on) return;
    if (!text.empty()) text += "+";
    text += name;
  };
  step(bias, "bias");
  step(residual, "add");
  step(relu, "relu");
  return text.empty() ? "none" : text;
}

std::size_t ConvEpilogue::hash() const {
  return static_cast<std::size_t>((bias ? 1 : 0) | (residual ? 2 : 0) | (relu ? 4 : 0)) +
         0x9e3779b9;
}

void check_conv_epilogue_args(const std::string& fn, const ConvEpilogue& epilogue,
                              const ConvEpilogueArgs& args, const Shape& result, DType dtype,
                              Device device) {
  auto check = [&](const char* what, const Tensor& t, const Shape& expected) {
    if (!t.defined()) {
      throw ValueError(fmt::format("{}: the epilogue's {} is an undefined tensor", fn, what));
    }
    if (t.dtype() != dtype) {
      throw TypeError(fmt::format("{}: the epilogue's {} has dtype {}; expected {}, the output's",
                                  fn, what, dtype_name(t.dtype()), dtype_name(dtype)));
    }
    if (t.device() != device) {
      throw ValueError(fmt::format("{}: the epilogue's {} is on {}; expected {}, the output's", fn,
                                   what, t.device().str(), device.str()));
    }
    if (t.shape() != expected) {
      throw ShapeError(fmt::format("{}: the epilogue's {} has shape {}; expected {} (output {})",
                                   fn, what, shape_str(t.shape()), shape_str(expected),
                                   shape_str(result)));
    }
  };
  if (epilogue.bias) check("bias", args.bias, Shape{result.at(1)});
  if (epilogue.residual) check("residual", args.residual, result);
}

void apply_conv_epilogue(const ConvEpilogue& epilogue, const ConvEpilogueArgs& args, Tensor& out) {
  if (epilogue.empty() || out.numel() == 0) return;
  switch (out.dtype()) {
    case DType::float32:
      apply_typed<float>(epilogue, args, out);
      return;
    case DType::float64:
      apply_typed<double>(epilogue, args, out);
      return;
    default: {
      // Half precision: each step in float32, rounded once at the end.
      Tensor wide = out.cast(DType::float32);
      ConvEpilogueArgs wide_args;
      if (epilogue.bias) wide_args.bias = args.bias.cast(DType::float32);
      if (epilogue.residual) wide_args.residual = args.residual.cast(DType::float32);
      apply_typed<float>(epilogue, wide_args, wide);
      out = wide.cast(out.dtype());
      return;
    }
  }
}

// ---- the reference op ----

ConvEpilogueReference::ConvEpilogueReference(ConvParams params, ConvEpilogue epilogue)
    : conv_(std::make_shared<const AbstractConv>(ConvDirection::forward, std::move(params))),
      epilogue_(epilogue) {}

std::string ConvEpilogueReference::name() const {
  return conv_->name() + "Epilogue";
}

std::string ConvEpilogueReference::str() const {
  return fmt::format("{}{{{}, epilogue={}}}", name(), params().str(), epilogue_.str());
}

bool ConvEpilogueReference::equals(const Op& other) const {
  const auto* o = dynamic_cast<const ConvEpilogueReference*>(&other);
  return o != nullptr && o->params() == params() && o->epilogue_ == epilogue_;
}

std::size_t ConvEpilogueReference::hash() const {
  return hash_combine(hash_combine(params().hash(), epilogue_.hash()), 0xe9170);
}

void ConvEpilogueReference::check_inputs(const std::string& fn, const ConvEpilogue& epilogue,
                                         const std::vector<Variable>& inputs,
                                         const TensorType& out) {
  const std::size_t expected = 2 + static_cast<std::size_t>(epilogue.extra_inputs());
  if (inputs.size() != expected) {
    throw ValueError(fmt::format("{}: {} inputs given, expected {} (image, kernel{}{})", fn,
                                 inputs.size(), expected, epilogue.bias ? ", bias" : "",
                                 epilogue.residual ? ", residual" : ""));
  }
  auto check_common = [&](const char* what, const Variable& v, int rank) {
    if (v.ndim() != rank) {
      throw TypeError(fmt::format("{}: the epilogue's {} {} has type {}; expected rank {}", fn,
                                  what, v.label(), v.type().str(), rank));
    }
    if (v.dtype() != out.dtype) {
      throw TypeError(
          fmt::format("{}: the epilogue's {} {} has dtype {}; expected {}, the "
                      "convolution's",
                      fn, what, v.label(), dtype_name(v.dtype()), dtype_name(out.dtype)));
    }
    if (v.type().device != out.device) {
      throw TypeError(fmt::format("{}: the epilogue's {} {} is on {}; the convolution is on {}", fn,
                                  what, v.label(), v.type().device.str(), out.device.str()));
    }
  };
  std::size_t next = 2;
  if (epilogue.bias) {
    const Variable& bias = inputs[next++];
    check_common("bias", bias, 1);
    const StaticDim& k = bias.type().dims[0];
    if (k && out.dims[1] && *k != *out.dims[1]) {
      throw ShapeError(
          fmt::format("{}: the epilogue's bias {} has {} elements; the output {} "
                      "has {} channels",
                      fn, bias.label(), *k, static_shape_str(out.dims), *out.dims[1]));
    }
  }
  if (epilogue.residual) {
    const Variable& residual = inputs[next++];
    check_common("residual", residual, out.rank());
    for (std::size_t a = 0; a < out.dims.size(); ++a) {
      const StaticDim& d = residual.type().dims[a];
      if (d && out.dims[a] && *d != *out.dims[a]) {
        throw ShapeError(
            fmt::format("{}: the epilogue's residual {} has shape {}; expected the "
                        "output's {}",
                        fn, residual.label(), static_shape_str(residual.type().dims),
                        static_shape_str(out.dims)));
      }
    }
  }
}

std::vector<TensorType> ConvEpilogueReference::make_outputs(
    const std::vector<Variable>& inputs) const {
  if (inputs.size() < 2) {
    throw ValueError(fmt::format("{}: {} inputs given, expected at least the image and kernel",
                                 str(), inputs.size()));
  }
  std::vector<TensorType> out = conv_->make_outputs({inputs[0], inputs[1]});
  check_inputs(str(), epilogue_, inputs, out[0]);
  return out;
}

std::vector<ShapeDims> ConvEpilogueReference::infer_shape(
    const Node& node, const std::vector<ShapeDims>& input_shapes) const {
  return conv_->infer_shape(node, {input_shapes[0], input_shapes[1]});
}

std::vector<Variable> ConvEpilogueReference::grad(const std::vector<Variable>& inputs,
                                                  const std::vector<Variable>& outputs,
                                                  const std::vector<Variable>& output_grads) const {
  const Variable& g = output_grads[0];
  const DType dt = outputs[0].dtype();
  // relu(x) > 0 exactly where x > 0, so the output serves as the pre-activation would.
  const Variable pre =
      epilogue_.relu ? where(gt(outputs[0], constant(0.0, dt)), g, constant(0.0, dt)) : g;
  std::vector<Variable> grads = conv_->grad({inputs[0], inputs[1]}, {}, {pre});
  if (epilogue_.bias) grads.push_back(sum(pre, non_channel_axes(outputs[0].ndim())));
  if (epilogue_.residual) grads.push_back(pre);
  return grads;
}

std::vector<Variable> ConvEpilogueReference::r_op(const std::vector<Variable>& inputs,
                                                  const std::vector<Variable>& outputs,
                                                  const std::vector<Variable>& eval_points) const {
  Variable r = conv_->r_op({inputs[0], inputs[1]}, {}, {eval_points[0], eval_points[1]})[0];
  std::size_t next = 2;
  const int rank = outputs[0].ndim();
  if (epilogue_.bias) {
    const Variable& rb = eval_points[next++];
    if (rb.defined()) r = sum_defined(r, dimshuffle(rb, bias_pattern(rank)));
  }
  if (epilogue_.residual) r = sum_defined(r, eval_points[next++]);
  if (!r.defined() || !epilogue_.relu) return {r};
  const DType dt = outputs[0].dtype();
  return {where(gt(outputs[0], constant(0.0, dt)), r, constant(0.0, dt))};
}

void ConvEpilogueReference::perform(const std::vector<Tensor>& inputs,
                                    std::vector<Tensor>& outputs) const {
  const std::size_t expected = 2 + static_cast<std::size_t>(epilogue_.extra_inputs());
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: {} inputs given, expected {}", str(), inputs.size(), expected));
  }
  std::vector<Tensor> conv_out(1);
  conv_->perform({inputs[0], inputs[1]}, conv_out);
  Tensor out = conv_out[0].contiguous();
  ConvEpilogueArgs args;
  std::size_t next = 2;
  if (epilogue_.bias) args.bias = inputs[next++];
  if (epilogue_.residual) args.residual = inputs[next++];
  check_conv_epilogue_args(str(), epilogue_, args, out.shape(), out.dtype(), out.device());
  apply_conv_epilogue(epilogue_, args, out);
  outputs[0] = out;
}

std::optional<double> ConvEpilogueReference::flops(const std::vector<Shape>& input_shapes,
                                                   const std::vector<Shape>& output_shapes) const {
  return conv_->flops({input_shapes.at(0), input_shapes.at(1)}, output_shapes);
}

Variable conv_with_epilogue(const ConvParams& params, const ConvEpilogue& epilogue,
                            const std::vector<Variable>& inputs) {
  return convgraph::apply(std::make_shared<ConvEpilogueReference>(params, epilogue), inputs);
}

}  // namespace convgraph
