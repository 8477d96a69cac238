#include "convgraph/ops/tensor/shape.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <typeinfo>
#include <unordered_map>
#include <utility>

#include "convgraph/ops/tensor/elemwise.hpp"

namespace convgraph {
namespace {

Variable int64_scalar_constant(std::int64_t value) {
  return make_constant(Tensor::from_vector<std::int64_t>({value}, {}));
}

void check_input_count(const Op& op, const std::vector<Variable>& inputs, std::size_t expected) {
  if (inputs.size() != expected) {
    throw ValueError(
        fmt::format("{}: expected {} input(s), got {}", op.str(), expected, inputs.size()));
  }
}

// Both operands must be defined; unknown is contagious.
bool any_unknown(const Dim& a, const Dim& b) {
  return a.is_unknown() || b.is_unknown();
}

std::int64_t checked_add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    throw ValueError(fmt::format("dim arithmetic overflows int64: {} + {}", a, b));
  }
  return r;
}

std::int64_t checked_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) {
    throw ValueError(fmt::format("dim arithmetic overflows int64: {} - {}", a, b));
  }
  return r;
}

std::int64_t checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    throw ValueError(fmt::format("dim arithmetic overflows int64: {} * {}", a, b));
  }
  return r;
}

std::int64_t python_floor_div(std::int64_t a, std::int64_t b) {
  if (b == 0) throw ValueError(fmt::format("dim arithmetic: {} // 0 (division by zero)", a));
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ShapeOp

bool ShapeOp::equals(const Op& other) const {
  return typeid(other) == typeid(ShapeOp);
}
std::size_t ShapeOp::hash() const {
  return std::hash<std::string>{}("Shape");
}

std::vector<TensorType> ShapeOp::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  return {TensorType(DType::int64, {inputs[0].ndim()})};
}

std::vector<Variable> ShapeOp::grad(const std::vector<Variable>& /*inputs*/,
                                    const std::vector<Variable>& /*outputs*/,
                                    const std::vector<Variable>& /*output_grads*/) const {
  // The shape does not change when the values move: disconnected, not undefined.
  return {Variable()};
}

std::vector<Variable> ShapeOp::r_op(const std::vector<Variable>& /*inputs*/,
                                    const std::vector<Variable>& /*outputs*/,
                                    const std::vector<Variable>& /*eval_points*/) const {
  return {Variable()};
}

void ShapeOp::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Shape& dims = inputs.at(0).shape();
  outputs.at(0) = Tensor::from_vector<std::int64_t>(dims, {static_cast<std::int64_t>(dims.size())});
}

// ---------------------------------------------------------------------------------------------
// ShapeI

ShapeI::ShapeI(int axis) : axis_(axis) {
  if (axis < 0) throw ValueError(fmt::format("Shape_i: axis must be non-negative, got {}", axis));
}

std::string ShapeI::str() const {
  return fmt::format("Shape_i{{{}}}", axis_);
}

bool ShapeI::equals(const Op& other) const {
  const auto* o = dynamic_cast<const ShapeI*>(&other);
  return o != nullptr && o->axis_ == axis_;
}
std::size_t ShapeI::hash() const {
  return hash_values(std::string("Shape_i"), axis_);
}

std::vector<TensorType> ShapeI::make_outputs(const std::vector<Variable>& inputs) const {
  check_input_count(*this, inputs, 1);
  if (axis_ >= inputs[0].ndim()) {
    throw ValueError(fmt::format("{}: axis {} is out of range for {} of type {}", str(), axis_,
                                 inputs[0].label(), inputs[0].type().str()));
  }
  return {TensorType(DType::int64, {})};
}

std::vector<Variable> ShapeI::grad(const std::vector<Variable>& /*inputs*/,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& /*output_grads*/) const {
  return {Variable()};
}

std::vector<Variable> ShapeI::r_op(const std::vector<Variable>& /*inputs*/,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& /*eval_points*/) const {
  return {Variable()};
}

void ShapeI::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const Tensor& x = inputs.at(0);
  if (axis_ >= x.rank()) {
    throw ShapeError(fmt::format("{}: input has shape {}, expected rank > {}", str(),
                                 shape_str(x.shape()), axis_));
  }
  outputs.at(0) =
      Tensor::from_vector<std::int64_t>({x.shape()[static_cast<std::size_t>(axis_)]}, {});
}

// ---------------------------------------------------------------------------------------------
// MakeVector

bool MakeVector::equals(const Op& other) const {
  return typeid(other) == typeid(MakeVector);
}
std::size_t MakeVector::hash() const {
  return std::hash<std::string>{}("MakeVector");
}

std::vector<TensorType> MakeVector::make_outputs(const std::vector<Variable>& inputs) const {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = inputs[i].type();
    if (t.rank() != 0 || !is_integer(t.dtype)) {
      throw TypeError(fmt::format("{}: input {} ({}) has type {}, expected an integer scalar",
                                  str(), i, inputs[i].label(), t.str()));
    }
  }
  return {TensorType(DType::int64, {static_cast<std::int64_t>(inputs.size())})};
}

std::vector<Variable> MakeVector::grad(const std::vector<Variable>& inputs,
                                       const std::vector<Variable>& /*outputs*/,
                                       const std::vector<Variable>& /*output_grads*/) const {
  // Integer inputs: nothing differentiable flows through.
  return std::vector<Variable>(inputs.size());
}

std::vector<Variable> MakeVector::r_op(const std::vector<Variable>& /*inputs*/,
                                       const std::vector<Variable>& /*outputs*/,
                                       const std::vector<Variable>& /*eval_points*/) const {
  return {Variable()};
}

void MakeVector::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  std::vector<std::int64_t> values;
  values.reserve(inputs.size());
  for (const Tensor& t : inputs) values.push_back(t.item<std::int64_t>());
  outputs.at(0) =
      Tensor::from_vector<std::int64_t>(values, {static_cast<std::int64_t>(values.size())});
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable shape(const Variable& x) {
  const TensorType& t = x.type();
  if (t.fully_known()) {
    std::vector<std::int64_t> dims;
    for (const auto& d : t.dims) dims.push_back(*d);
    return make_constant(
        Tensor::from_vector<std::int64_t>(dims, {static_cast<std::int64_t>(dims.size())}));
  }
  return convgraph::apply(std::make_shared<ShapeOp>(), {x});
}

Variable shape_i(const Variable& x, int axis) {
  const int rank = x.ndim();
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    throw ValueError(fmt::format("shape_i: axis {} is out of range for {} of type {}", axis,
                                 x.label(), x.type().str()));
  }
  if (const StaticDim d = x.type().dims[static_cast<std::size_t>(a)]) {
    return int64_scalar_constant(*d);
  }
  return convgraph::apply(std::make_shared<ShapeI>(a), {x});
}

Variable make_vector(const std::vector<Variable>& scalars) {
  bool all_constant = true;
  for (const auto& s : scalars) all_constant = all_constant && s.is_constant();
  if (all_constant) {
    // Validate through the op so that a non-integer scalar is reported the same way.
    MakeVector().make_outputs(scalars);
    std::vector<std::int64_t> values;
    for (const auto& s : scalars) values.push_back(s.constant_value().item<std::int64_t>());
    return make_constant(
        Tensor::from_vector<std::int64_t>(values, {static_cast<std::int64_t>(values.size())}));
  }
  return convgraph::apply(std::make_shared<MakeVector>(), scalars);
}

Variable shape_vector(const ShapeDims& dims) {
  std::vector<Variable> scalars;
  scalars.reserve(dims.size());
  for (const Dim& d : dims) scalars.push_back(dim_variable(d));
  return make_vector(scalars);
}

ShapeDims shape_dims(const Variable& x) {
  ShapeDims dims;
  for (int axis = 0; axis < x.ndim(); ++axis) dims.push_back(Dim(shape_i(x, axis)));
  return dims;
}

// ---------------------------------------------------------------------------------------------
// Dim arithmetic

bool same_dim(const Dim& a, const Dim& b) {
  if (a.is_constant() && b.is_constant()) return a.value() == b.value();
  if (!a.is_symbolic() || !b.is_symbolic()) return false;
  const Variable& va = a.variable();
  const Variable& vb = b.variable();
  if (va == vb) return true;
  // Two Shape_i nodes reading the same axis of the same tensor (built separately).
  const Node* na = va.owner();
  const Node* nb = vb.owner();
  if (na == nullptr || nb == nullptr) return false;
  const auto* sa = dynamic_cast<const ShapeI*>(na->op.get());
  const auto* sb = dynamic_cast<const ShapeI*>(nb->op.get());
  return sa != nullptr && sb != nullptr && sa->axis() == sb->axis() &&
         na->inputs.at(0) == nb->inputs.at(0);
}

Variable dim_variable(const Dim& d) {
  if (d.is_constant()) return int64_scalar_constant(d.value());
  if (d.is_symbolic()) {
    const Variable& v = d.variable();
    return v.dtype() == DType::int64 ? v : cast(v, DType::int64);
  }
  throw ValueError("dim_variable: the dimension is unknown (no graph value can stand for it)");
}

Dim operator+(const Dim& a, const Dim& b) {
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return checked_add(a.value(), b.value());
  if (a.is_constant() && a.value() == 0) return b;
  if (b.is_constant() && b.value() == 0) return a;
  // x + -2 reads better as x - 2.
  if (b.is_constant() && b.value() < 0 && b.value() != std::numeric_limits<std::int64_t>::min())
    return a - Dim(-b.value());
  return Dim(add(dim_variable(a), dim_variable(b)));
}

Dim operator-(const Dim& a, const Dim& b) {
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return checked_sub(a.value(), b.value());
  if (b.is_constant() && b.value() == 0) return a;
  if (same_dim(a, b)) return Dim(0);
  if (b.is_constant() && b.value() < 0 && b.value() != std::numeric_limits<std::int64_t>::min())
    return a + Dim(-b.value());
  return Dim(sub(dim_variable(a), dim_variable(b)));
}

Dim operator*(const Dim& a, const Dim& b) {
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return checked_mul(a.value(), b.value());
  // A symbolic dim is a finite integer, so x * 0 is 0 whatever x turns out to be.
  if ((a.is_constant() && a.value() == 0) || (b.is_constant() && b.value() == 0)) return Dim(0);
  if (a.is_constant() && a.value() == 1) return b;
  if (b.is_constant() && b.value() == 1) return a;
  return Dim(mul(dim_variable(a), dim_variable(b)));
}

Dim floor_div(const Dim& a, const Dim& b) {
  if (b.is_constant() && b.value() == 0) {
    throw ValueError(fmt::format("floor_div: dimension {} divided by zero", a.str()));
  }
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return python_floor_div(a.value(), b.value());
  if (b.is_constant() && b.value() == 1) return a;
  if (a.is_constant() && a.value() == 0) return Dim(0);
  return Dim(int_div(dim_variable(a), dim_variable(b)));
}

Dim ceil_div(const Dim& a, const Dim& b) {
  if (b.is_constant() && b.value() == 0) {
    throw ValueError(fmt::format("ceil_div: dimension {} divided by zero", a.str()));
  }
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) {
    return checked_sub(0, python_floor_div(checked_sub(0, a.value()), b.value()));
  }
  if (b.is_constant() && b.value() > 0) {
    // (a + b - 1) // b is exact for a positive divisor whatever the sign of a, and reads better
    // than the general form below.
    return floor_div(a + Dim(b.value() - 1), b);
  }
  return Dim(0) - floor_div(Dim(0) - a, b);
}

Dim dim_max(const Dim& a, const Dim& b) {
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return std::max(a.value(), b.value());
  if (same_dim(a, b)) return a;
  return Dim(maximum(dim_variable(a), dim_variable(b)));
}

Dim dim_min(const Dim& a, const Dim& b) {
  if (any_unknown(a, b)) return Dim::unknown();
  if (a.is_constant() && b.is_constant()) return std::min(a.value(), b.value());
  if (same_dim(a, b)) return a;
  return Dim(minimum(dim_variable(a), dim_variable(b)));
}

// ---------------------------------------------------------------------------------------------
// Symbolic shape inference

namespace {

// Where inference gave nothing better: the static dim if the type knows it, else Shape_i of the
// value itself (always correct, but it needs the value computed).
ShapeDims complete_dims(const Variable& v, ShapeDims inferred) {
  const TensorType& t = v.type();
  if (static_cast<int>(inferred.size()) != t.rank()) inferred.assign(t.dims.size(), Dim());
  for (int axis = 0; axis < t.rank(); ++axis) {
    Dim& d = inferred[static_cast<std::size_t>(axis)];
    if (const StaticDim s = t.dims[static_cast<std::size_t>(axis)]) {
      d = Dim(*s);
    } else if (d.is_unknown()) {
      d = Dim(convgraph::apply(std::make_shared<ShapeI>(axis), {v}));
    }
  }
  return inferred;
}

}  // namespace

ShapeDims symbolic_shape(const Variable& x) {
  std::unordered_map<const VariableData*, ShapeDims> memo;
  // Iterative post-order walk: deep graphs (hundreds of layers) must not exhaust the stack.
  std::vector<std::pair<Variable, bool>> stack{{x, false}};
  while (!stack.empty()) {
    auto [v, inputs_done] = stack.back();
    stack.pop_back();
    if (memo.count(v.get()) != 0) continue;
    Node* node = v.owner();
    // A type that knows every dim needs no inference (complete_dims would overwrite it with
    // those dims anyway): stop there rather than walk the graph below, so that a gradient asking
    // the shape of every layer's input stays linear in the depth of the network.
    if (node == nullptr || v.type().fully_known()) {
      memo.emplace(v.get(), complete_dims(v, {}));
      continue;
    }
    if (!inputs_done) {
      stack.emplace_back(v, true);
      for (const Variable& in : node->inputs) {
        if (memo.count(in.get()) == 0) stack.emplace_back(in, false);
      }
      continue;
    }
    std::vector<ShapeDims> input_shapes;
    input_shapes.reserve(node->inputs.size());
    for (const Variable& in : node->inputs) input_shapes.push_back(memo.at(in.get()));
    std::vector<ShapeDims> inferred = node->op->infer_shape(*node, input_shapes);
    inferred.resize(static_cast<std::size_t>(node->num_outputs()));
    for (int i = 0; i < node->num_outputs(); ++i) {
      const Variable out = node->output(i);
      memo.emplace(out.get(), complete_dims(out, std::move(inferred[static_cast<std::size_t>(i)])));
    }
  }
  return memo.at(x.get());
}

namespace {

std::string scalar_expression(const Variable& v, int depth) {
  if (v.is_constant()) {
    const Tensor& c = v.constant_value();
    if (c.numel() == 1) {
      return is_float(c.dtype()) ? fmt::format("{}", c.item<double>())
                                 : fmt::format("{}", c.item<std::int64_t>());
    }
    return c.to_string(8);
  }
  const Node* node = v.owner();
  if (node == nullptr) return v.label();
  // Deeper than any shape formula a person reads; cut it off rather than recurse without bound.
  if (depth > 64) return "...";
  const Op& op = *node->op;
  // The leaves of a shape formula: the shapes of tensors, named by the tensor.
  if (op.name() == "Shape_i" || op.name() == "Shape") {
    return fmt::format("{}({})", op.str(), node->inputs.at(0).label());
  }
  std::vector<std::string> args;
  for (const Variable& in : node->inputs) args.push_back(scalar_expression(in, depth + 1));
  // Casts between integer types do not change a dim's value: show the operand.
  if (dynamic_cast<const Cast*>(&op) != nullptr && args.size() == 1) return args[0];
  if (const auto* e = dynamic_cast<const Elemwise*>(&op)) {
    static const std::pair<ScalarOp, const char*> kInfix[] = {
        {ScalarOp::add, "+"},      {ScalarOp::sub, "-"},      {ScalarOp::mul, "*"},
        {ScalarOp::int_div, "//"}, {ScalarOp::true_div, "/"}, {ScalarOp::mod, "%"}};
    if (args.size() == 2) {
      for (const auto& [scalar, symbol] : kInfix) {
        if (e->scalar_op() == scalar) return fmt::format("({} {} {})", args[0], symbol, args[1]);
      }
      if (e->scalar_op() == ScalarOp::maximum) return fmt::format("max({}, {})", args[0], args[1]);
      if (e->scalar_op() == ScalarOp::minimum) return fmt::format("min({}, {})", args[0], args[1]);
    }
    if (args.size() == 1 && e->scalar_op() == ScalarOp::neg) return fmt::format("-{}", args[0]);
  }
  return fmt::format("{}({})", op.str(), fmt::join(args, ", "));
}

}  // namespace

std::string dim_expression(const Dim& dim) {
  if (dim.is_constant()) return std::to_string(dim.value());
  if (dim.is_unknown()) return "?";
  return scalar_expression(dim.variable(), 0);
}

std::string shape_expression(const ShapeDims& dims) {
  std::vector<std::string> parts;
  parts.reserve(dims.size());
  for (const Dim& d : dims) parts.push_back(dim_expression(d));
  // A one-element tuple keeps its comma, as Python prints it.
  if (parts.size() == 1) return fmt::format("({},)", parts[0]);
  return fmt::format("({})", fmt::join(parts, ", "));
}

}  // namespace convgraph
