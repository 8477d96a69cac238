#include "convgraph/ops/concrete_conv.hpp"

#include <fmt/format.h>

#include <typeinfo>

namespace convgraph {

ConcreteConv::ConcreteConv(ConvDirection direction, ConvParams params)
    : direction_(direction),
      params_(params),
      abstract_(std::make_shared<const AbstractConv>(direction, std::move(params))) {}

std::string ConcreteConv::str() const {
  const std::string options = options_str();
  return fmt::format("{}{{{}{}{}}}", name(), params_.str(), options.empty() ? "" : ", ", options);
}

bool ConcreteConv::equals(const Op& other) const {
  if (typeid(other) != typeid(*this)) return false;
  const auto& o = static_cast<const ConcreteConv&>(other);
  return o.direction_ == direction_ && o.params_ == params_ && same_options(o);
}

std::size_t ConcreteConv::hash() const {
  std::size_t seed = hash_combine(params_.hash(), static_cast<std::size_t>(direction_) + 0xc044);
  seed = hash_combine(seed, std::hash<std::string>{}(name()));
  return hash_combine(seed, options_hash());
}

std::vector<TensorType> ConcreteConv::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_types(inputs);
  return abstract_->make_outputs(inputs);
}

std::vector<ShapeDims> ConcreteConv::infer_shape(const Node& node,
                                                 const std::vector<ShapeDims>& input_shapes) const {
  return abstract_->infer_shape(node, input_shapes);
}

std::vector<Variable> ConcreteConv::grad(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& outputs,
                                         const std::vector<Variable>& output_grads) const {
  return abstract_->grad(inputs, outputs, output_grads);
}

std::vector<Variable> ConcreteConv::r_op(const std::vector<Variable>& inputs,
                                         const std::vector<Variable>& outputs,
                                         const std::vector<Variable>& eval_points) const {
  return abstract_->r_op(inputs, outputs, eval_points);
}

std::optional<double> ConcreteConv::flops(const std::vector<Shape>& input_shapes,
                                          const std::vector<Shape>& output_shapes) const {
  return abstract_->flops(input_shapes, output_shapes);
}

std::optional<ConcreteConv::StaticShapes> ConcreteConv::static_shapes(const Node& node) const {
  auto known = [](const TensorType& type) -> std::optional<Shape> {
    Shape shape;
    for (const StaticDim& d : type.dims) {
      if (!d) return std::nullopt;
      shape.push_back(*d);
    }
    return shape;
  };
  if (node.inputs.size() < 2) return std::nullopt;
  const std::optional<Shape> a = known(node.inputs[0].type());
  const std::optional<Shape> b = known(node.inputs[1].type());
  if (!a || !b) return std::nullopt;
  StaticShapes shapes{*a, *b, {}};
  if (direction_ != ConvDirection::forward) {
    if (node.inputs.size() != 3 || !node.inputs[2].is_constant()) return std::nullopt;
    shapes.spatial = node.inputs[2].constant_value().to_vector<std::int64_t>();
  }
  return shapes;
}

}  // namespace convgraph
