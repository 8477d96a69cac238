#include "convgraph/ops/concrete_conv.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <typeinfo>
#include <utility>

#include "convgraph/ops/conv/conv_checks.hpp"
#include "convgraph/runtime/device_backend.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

// ---- the messages of every concrete convolution ----

const char* place(DeviceKind kind) {
  return kind == DeviceKind::cpu ? "the cpu" : "a CUDA device";
}

// "float32", "float32 and float64", "float16, float32 and float64".
std::string dtype_list(const std::vector<DType>& dtypes) {
  std::string text;
  for (std::size_t i = 0; i < dtypes.size(); ++i) {
    if (i > 0) text += i + 1 == dtypes.size() ? " and " : ", ";
    text += dtype_name(dtypes[i]);
  }
  return text;
}

std::string advice(const ConcreteConvRequirements& r) {
  return r.advice.empty() ? "" : "; " + r.advice;
}

// WHO ("input x", "the kernel") of FN is on DEVICE, where the implementation does not run.
[[noreturn]] void refuse_device(const std::string& fn, const std::string& who, Device device,
                                const ConcreteConvRequirements& r) {
  throw UnsupportedError(fmt::format("{}: {} is on {}; {} convolutions run on {}", fn, who,
                                     device.str(), r.library, place(r.device)));
}

// WHO of FN has DTYPE, which the implementation does not take: a TypeError for a non-floating
// dtype, an UnsupportedError for a floating one.
[[noreturn]] void refuse_dtype(const std::string& fn, const std::string& who, DType dtype,
                               const ConcreteConvRequirements& r) {
  const std::string text = fmt::format("{}: {} has dtype {}; {} convolutions support {} only", fn,
                                       who, dtype_name(dtype), r.library, dtype_list(r.dtypes));
  if (!is_float(dtype)) throw TypeError(text);
  throw UnsupportedError(text + advice(r));
}

Shape::size_type rank_of(int rank) {
  return static_cast<Shape::size_type>(rank);
}

}  // namespace

bool ConcreteConvRequirements::accepts(DType dtype) const {
  return std::find(dtypes.begin(), dtypes.end(), dtype) != dtypes.end();
}

void check_conv_requirements(const std::string& fn, const ConvParams& params,
                             const ConcreteConvRequirements& r) {
  if (params.unshared && !r.unshared) {
    throw UnsupportedError(
        fmt::format("{}: {} convolutions do not support unshared (locally connected) kernels{}", fn,
                    r.library, advice(r)));
  }
  if (params.any_asymmetric() && !r.asymmetric_padding) {
    throw UnsupportedError(
        fmt::format("{}: {} convolutions pad both sides of an axis equally; {} is asymmetric{}", fn,
                    r.library, params.str(), advice(r)));
  }
}

ConcreteConv::ConcreteConv(ConvDirection direction, ConvParams params, ConvEpilogue epilogue)
    : direction_(direction),
      params_(params),
      epilogue_(epilogue),
      abstract_(std::make_shared<const AbstractConv>(direction, params)) {
  if (!epilogue_.empty() && direction_ != ConvDirection::forward) {
    throw ValueError(fmt::format("{}: an epilogue ({}) follows a forward convolution only",
                                 abstract_->name(), epilogue_.str()));
  }
  if (epilogue_.empty()) {
    reference_ = abstract_;
  } else {
    reference_ = std::make_shared<const ConvEpilogueReference>(std::move(params), epilogue_);
  }
}

std::string ConcreteConv::str() const {
  std::string options = options_str();
  if (!epilogue_.empty()) {
    options += fmt::format("{}epilogue={}", options.empty() ? "" : ", ", epilogue_.str());
  }
  return fmt::format("{}{{{}{}{}}}", name(), params_.str(), options.empty() ? "" : ", ", options);
}

bool ConcreteConv::equals(const Op& other) const {
  if (typeid(other) != typeid(*this)) return false;
  const auto& o = static_cast<const ConcreteConv&>(other);
  return o.direction_ == direction_ && o.params_ == params_ && o.epilogue_ == epilogue_ &&
         same_options(o);
}

std::size_t ConcreteConv::hash() const {
  std::size_t seed = hash_combine(params_.hash(), static_cast<std::size_t>(direction_) + 0xc044);
  seed = hash_combine(seed, std::hash<std::string>{}(name()));
  if (!epilogue_.empty()) seed = hash_combine(seed, epilogue_.hash());
  return hash_combine(seed, options_hash());
}

std::vector<TensorType> ConcreteConv::make_outputs(const std::vector<Variable>& inputs) const {
  const ConcreteConvRequirements r = requirements();
  const std::string fn = str();
  check_conv_requirements(fn, params_, r);
  for (std::size_t i = 0; i < inputs.size() && i < 2; ++i) {
    const TensorType& type = inputs[i].type();
    const std::string who = fmt::format("input {}", inputs[i].label());
    if (type.device.kind != r.device) refuse_device(fn, who, type.device, r);
    if (!r.accepts(type.dtype)) refuse_dtype(fn, who, type.dtype, r);
  }
  if (r.check_data && !inputs.empty()) r.check_data(fn, inputs[0].dtype());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& type = inputs[i].type();
    const Layout expected = input_layout(static_cast<int>(i));
    if (type.layout != expected) {
      throw TypeError(fmt::format(
          "{}: input {} ({}) is in layout {}, expected {}", fn, inputs[i].label(), type.str(),
          layout_name(type.layout, type.rank()), layout_name(expected, type.rank())));
    }
  }
  std::vector<TensorType> outputs = reference_->make_outputs(inputs);
  for (TensorType& t : outputs) t.layout = output_layout();
  return outputs;
}

std::vector<ShapeDims> ConcreteConv::infer_shape(const Node& node,
                                                 const std::vector<ShapeDims>& input_shapes) const {
  return reference_->infer_shape(node, input_shapes);
}

std::vector<Variable> ConcreteConv::grad(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& outputs,
                                         const std::vector<Variable>& output_grads) const {
  return reference_->grad(inputs, outputs, output_grads);
}

std::vector<Variable> ConcreteConv::r_op(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& outputs,
                                         const std::vector<Variable>& eval_points) const {
  return reference_->r_op(inputs, outputs, eval_points);
}

std::optional<double> ConcreteConv::flops(const std::vector<Shape>& input_shapes,
                                          const std::vector<Shape>& output_shapes) const {
  return reference_->flops(input_shapes, output_shapes);
}

std::shared_ptr<ConcreteConvKernelBase> ConcreteConv::make_kernel_with_epilogue(
    std::string name) const {
  std::shared_ptr<ConcreteConvKernelBase> kernel = make_conv_kernel(std::move(name));
  kernel->set_epilogue(epilogue_);
  return kernel;
}

void ConcreteConv::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  make_kernel_with_epilogue(str())->run(inputs, outputs);
  // Device families queue their work on the device's current stream.
  if (!outputs.empty() && outputs[0].defined() && !outputs[0].device().is_cpu()) {
    current_device_stream(outputs[0].device())->synchronize();
  }
}

std::shared_ptr<const Kernel> ConcreteConv::make_kernel(const Node& node) const {
  const std::shared_ptr<ConcreteConvKernelBase> kernel =
      make_kernel_with_epilogue(kernel_name(node));
  if (const std::optional<StaticShapes> shapes = static_shapes(node)) {
    kernel->precompute(node.inputs[0].dtype(), shapes->a, shapes->b, shapes->spatial);
  }
  return kernel;
}

std::string ConcreteConv::kernel_name(const Node& node) const {
  (void)node;
  return str();
}

std::optional<ConcreteConv::StaticShapes> ConcreteConv::static_shapes(const Node& node) const {
  if (node.inputs.size() < 2) return std::nullopt;
  const std::optional<Shape> a = known_shape(node.inputs[0].type().dims);
  const std::optional<Shape> b = known_shape(node.inputs[1].type().dims);
  if (!a || !b) return std::nullopt;
  StaticShapes shapes{*a, *b, {}};
  if (direction_ != ConvDirection::forward) {
    if (node.inputs.size() != 3 || !node.inputs[2].is_constant()) return std::nullopt;
    shapes.spatial = node.inputs[2].constant_value().to_vector<std::int64_t>();
  }
  return shapes;
}

// ---- the kernel ----

namespace {
// The output run() was given, until the family takes it (result_buffer) or the run ends.
thread_local const Tensor* t_given_output = nullptr;
}  // namespace

ConcreteConvKernelBase::ConcreteConvKernelBase(std::string name, ConvDirection direction,
                                               ConvParams params,
                                               ConcreteConvRequirements requirements)
    : name_(std::move(name)),
      direction_(direction),
      params_(std::move(params)),
      requirements_(std::move(requirements)) {}

void ConcreteConvKernelBase::set_epilogue(const ConvEpilogue& epilogue) {
  if (!epilogue.empty() && direction_ != ConvDirection::forward) {
    throw ValueError(fmt::format("{}: an epilogue ({}) follows a forward convolution only", name_,
                                 epilogue.str()));
  }
  epilogue_ = epilogue;
}

void ConcreteConvKernelBase::run(const std::vector<Tensor>& inputs,
                                 std::vector<Tensor>& outputs) const {
  const std::size_t expected = direction_ == ConvDirection::forward
                                   ? 2 + static_cast<std::size_t>(epilogue_.extra_inputs())
                                   : 3;
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: {} inputs given, expected {}", name_, inputs.size(), expected));
  }
  // The spatial argument of the gradients: a small int64 vector (read from the device if it was
  // put there).
  Shape spatial;
  ConvEpilogueArgs args;
  if (direction_ != ConvDirection::forward) {
    spatial = inputs[2].to_vector<std::int64_t>();
  } else {
    std::size_t next = 2;
    if (epilogue_.bias) args.bias = inputs[next++];
    if (epilogue_.residual) args.residual = inputs[next++];
  }
  // The given output reaches result_buffer() through the thread: compute() has no outputs.
  const Tensor* previous = std::exchange(t_given_output, &outputs.at(0));
  try {
    Tensor result = compute(inputs[0], inputs[1], spatial, true, args);
    t_given_output = previous;
    outputs[0] = std::move(result);
  } catch (...) {
    t_given_output = previous;
    throw;
  }
}

Tensor ConcreteConvKernelBase::result_buffer(DType dtype, const Shape& shape, Device device) {
  const Tensor* given = std::exchange(t_given_output, nullptr);
  return given != nullptr ? output_buffer(*given, dtype, shape, device)
                          : Tensor::empty(dtype, shape, device);
}

Tensor ConcreteConvKernelBase::compute(const Tensor& a, const Tensor& b, const Shape& spatial,
                                       bool check_hints, const ConvEpilogueArgs& epilogue) const {
  check_inputs(a, b);
  return compute_checked(a, b, spatial, check_hints, epilogue);
}

void ConcreteConvKernelBase::check_epilogue(const ConvEpilogueArgs& args, const Shape& result,
                                            DType dtype, Device device) const {
  if (epilogue_.empty()) return;
  check_conv_epilogue_args(name_, epilogue_, args, result, dtype, device);
}

ConvProblem ConcreteConvKernelBase::resolve(const Shape& a, const Shape& b,
                                            const Shape& spatial) const {
  check_conv_params(name_, params_);
  check_conv_requirements(name_, params_, requirements_);
  // Shapes that come without tensors (static types, describe functions) are checked here:
  // resolve_conv_problem indexes them.
  const int rank_a =
      direction_ == ConvDirection::grad_inputs ? params_.kernel_rank() : params_.image_rank();
  const int rank_b =
      direction_ == ConvDirection::forward ? params_.kernel_rank() : params_.image_rank();
  if (a.size() != rank_of(rank_a) || b.size() != rank_of(rank_b)) {
    throw TypeError(fmt::format("{}: input shapes {} and {}; expected ranks {} and {}", name_,
                                shape_str(a), shape_str(b), rank_a, rank_b));
  }
  return resolve_conv_problem(name_, direction_, params_, a, b, spatial);
}

void ConcreteConvKernelBase::check_inputs(const Tensor& a, const Tensor& b) const {
  const ConcreteConvRequirements& r = requirements_;
  check_conv_params(name_, params_);
  check_conv_requirements(name_, params_, r);
  const char* name_a = direction_ == ConvDirection::grad_inputs ? "kernel" : "image";
  const char* name_b = direction_ == ConvDirection::forward ? "kernel" : "topgrad";
  const int rank_a =
      direction_ == ConvDirection::grad_inputs ? params_.kernel_rank() : params_.image_rank();
  const int rank_b =
      direction_ == ConvDirection::forward ? params_.kernel_rank() : params_.image_rank();
  auto check_tensor = [&](const char* what, const Tensor& t, int rank) {
    const std::string who = fmt::format("the {}", what);
    if (!t.defined()) throw ValueError(fmt::format("{}: {} is an undefined tensor", name_, who));
    if (t.device().kind != r.device) refuse_device(name_, who, t.device(), r);
    if (!is_float(t.dtype())) refuse_dtype(name_, who, t.dtype(), r);
    if (t.rank() != rank) {
      throw TypeError(fmt::format("{}: {} has shape {} (rank {}); expected rank {}", name_, who,
                                  shape_str(t.shape()), t.rank(), rank));
    }
  };
  check_tensor(name_a, a, rank_a);
  check_tensor(name_b, b, rank_b);
  if (a.dtype() != b.dtype()) {
    throw TypeError(
        fmt::format("{}: the {} has dtype {} but the {} has dtype {}; expected the same dtype",
                    name_, name_a, dtype_name(a.dtype()), name_b, dtype_name(b.dtype())));
  }
  if (a.device() != b.device()) {
    throw ValueError(fmt::format("{}: the {} is on {} but the {} is on {}; expected one device",
                                 name_, name_a, a.device().str(), name_b, b.device().str()));
  }
  if (!r.accepts(a.dtype())) refuse_dtype(name_, fmt::format("the {}", name_a), a.dtype(), r);
  if (r.check_data) r.check_data(name_, a.dtype());
}

}  // namespace convgraph
