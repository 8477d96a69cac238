#include "convgraph/ops/tensor/assert.hpp"

#include <fmt/format.h>

#include <memory>

namespace convgraph {
namespace {

std::string_view kind_name(AssertKind kind) {
  return kind == AssertKind::shape ? "shape" : "assertion";
}

void check_condition_type(std::string_view what, const Variable& condition, std::size_t index) {
  if (condition.ndim() != 0 || !is_bool(condition.dtype())) {
    throw TypeError(fmt::format("{}: condition {} ({}) must be a bool scalar, got type {}", what,
                                index, condition.label(), condition.type().str()));
  }
}

}  // namespace

Variable assert_op(const Variable& x, const std::vector<Variable>& conditions,
                   const std::string& message, AssertKind kind) {
  const Assert op(message, kind);
  std::vector<Variable> inputs{x};
  for (std::size_t i = 0; i < conditions.size(); ++i) {
    const Variable& c = conditions[i];
    check_condition_type("assert_op", c, i);
    if (c.is_constant()) {
      if (!c.constant_value().item<bool>()) {
        op.fail(fmt::format("condition {} is constant false", i));
      }
      continue;
    }
    inputs.push_back(c);
  }
  if (inputs.size() == 1) return x;
  return convgraph::apply(std::make_shared<Assert>(message, kind), std::move(inputs));
}

Assert::Assert(std::string message, AssertKind kind) : message_(std::move(message)), kind_(kind) {}

std::string Assert::str() const {
  return fmt::format("Assert{{{}: '{}'}}", kind_name(kind_), message_);
}

bool Assert::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Assert*>(&other);
  return o != nullptr && o->message_ == message_ && o->kind_ == kind_;
}

std::size_t Assert::hash() const {
  return hash_values(std::string("Assert"), message_, static_cast<int>(kind_));
}

void Assert::fail(const std::string& detail) const {
  const std::string text = detail.empty() ? message_ : fmt::format("{} ({})", message_, detail);
  if (kind_ == AssertKind::shape) throw ShapeError(text);
  throw AssertionError(text);
}

std::vector<TensorType> Assert::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() < 2) {
    throw ValueError(fmt::format("{}: expected a value and at least one condition, got {} inputs",
                                 str(), inputs.size()));
  }
  for (std::size_t i = 1; i < inputs.size(); ++i) check_condition_type(str(), inputs[i], i - 1);
  return {inputs[0].type()};
}

std::vector<ShapeDims> Assert::infer_shape(const Node& /*node*/,
                                           const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> Assert::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& output_grads) const {
  std::vector<Variable> result(inputs.size());
  result[0] = output_grads[0];
  return result;
}

std::vector<Variable> Assert::r_op(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& eval_points) const {
  if (!eval_points[0].defined()) return {Variable()};
  std::vector<Variable> args(inputs);
  args[0] = eval_points[0];
  return {convgraph::apply(std::make_shared<Assert>(message_, kind_), std::move(args))};
}

void Assert::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    const Tensor& c = inputs[i];
    if (c.numel() != 1) {
      throw TypeError(fmt::format("{}: condition {} has shape {}; expected a scalar", str(), i - 1,
                                  shape_str(c.shape())));
    }
    if (!c.item<bool>()) fail("");
  }
  outputs.at(0) = inputs.at(0);
}

Variable assert_same_shape(const Variable& x, const Variable& like, const std::string& message) {
  // The build-time checks: rank, and the static dims known on both sides.
  static_cast<void>(AssertSameShape(message).make_outputs({x, like}));
  for (int i = 0; i < x.ndim(); ++i) {
    if (!x.type().dims[static_cast<std::size_t>(i)] ||
        !like.type().dims[static_cast<std::size_t>(i)]) {
      return convgraph::apply(std::make_shared<AssertSameShape>(message), {x, like});
    }
  }
  return x;  // every dim known and equal (make_outputs checked them)
}

AssertSameShape::AssertSameShape(std::string message) : message_(std::move(message)) {}

bool AssertSameShape::equals(const Op& other) const {
  const auto* o = dynamic_cast<const AssertSameShape*>(&other);
  return o != nullptr && o->message_ == message_;
}

std::size_t AssertSameShape::hash() const {
  return hash_values(std::string("AssertSameShape"), message_);
}

std::vector<TensorType> AssertSameShape::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 2) {
    throw ValueError(
        fmt::format("{}: expected a value and the variable whose shape it must "
                    "have, got {} inputs",
                    str(), inputs.size()));
  }
  const TensorType& x = inputs[0].type();
  const TensorType& like = inputs[1].type();
  if (x.rank() != like.rank()) {
    throw ShapeError(fmt::format("{} ({} has type {}, {} has type {}: ranks differ)", message_,
                                 inputs[0].label(), x.str(), inputs[1].label(), like.str()));
  }
  for (std::size_t i = 0; i < x.dims.size(); ++i) {
    if (x.dims[i] && like.dims[i] && *x.dims[i] != *like.dims[i]) {
      throw ShapeError(fmt::format("{} ({} has static shape {}, {} has {})", message_,
                                   inputs[0].label(), static_shape_str(x.dims), inputs[1].label(),
                                   static_shape_str(like.dims)));
    }
  }
  // What either side knows about each dim, the check being that they agree.
  TensorType out = x;
  for (std::size_t i = 0; i < out.dims.size(); ++i) {
    if (!out.dims[i]) out.dims[i] = like.dims[i];
  }
  return {out};
}

std::vector<ShapeDims> AssertSameShape::infer_shape(
    const Node& /*node*/, const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes.at(0)};
}

std::vector<Variable> AssertSameShape::grad(const std::vector<Variable>& inputs,
                                            const std::vector<Variable>& /*outputs*/,
                                            const std::vector<Variable>& output_grads) const {
  std::vector<Variable> result(inputs.size());
  result[0] = output_grads[0];
  return result;
}

std::vector<Variable> AssertSameShape::r_op(const std::vector<Variable>& inputs,
                                            const std::vector<Variable>& /*outputs*/,
                                            const std::vector<Variable>& eval_points) const {
  if (!eval_points[0].defined()) return {Variable()};
  return {
      convgraph::apply(std::make_shared<AssertSameShape>(message_), {eval_points[0], inputs[1]})};
}

void AssertSameShape::perform(const std::vector<Tensor>& inputs,
                              std::vector<Tensor>& outputs) const {
  if (inputs.at(0).shape() != inputs.at(1).shape()) {
    throw ShapeError(fmt::format("{} (shapes {} and {})", message_, shape_str(inputs[0].shape()),
                                 shape_str(inputs[1].shape())));
  }
  outputs.at(0) = inputs[0];
}

}  // namespace convgraph
