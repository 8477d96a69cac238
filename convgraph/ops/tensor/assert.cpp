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

}  // namespace convgraph
