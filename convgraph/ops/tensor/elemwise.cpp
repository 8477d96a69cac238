#include "convgraph/ops/tensor/elemwise.hpp"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {

std::string_view scalar_op_name(ScalarOp op) {
  switch (op) {
    case ScalarOp::add:
      return "add";
    case ScalarOp::sub:
      return "sub";
    case ScalarOp::mul:
      return "mul";
    case ScalarOp::true_div:
      return "true_div";
    case ScalarOp::int_div:
      return "int_div";
    case ScalarOp::mod:
      return "mod";
    case ScalarOp::pow:
      return "pow";
    case ScalarOp::maximum:
      return "maximum";
    case ScalarOp::minimum:
      return "minimum";
    case ScalarOp::eq:
      return "eq";
    case ScalarOp::neq:
      return "neq";
    case ScalarOp::lt:
      return "lt";
    case ScalarOp::le:
      return "le";
    case ScalarOp::gt:
      return "gt";
    case ScalarOp::ge:
      return "ge";
    case ScalarOp::logical_and:
      return "logical_and";
    case ScalarOp::logical_or:
      return "logical_or";
    case ScalarOp::logical_not:
      return "logical_not";
    case ScalarOp::neg:
      return "neg";
    case ScalarOp::abs:
      return "abs";
    case ScalarOp::sign:
      return "sign";
    case ScalarOp::square:
      return "square";
    case ScalarOp::exp:
      return "exp";
    case ScalarOp::log:
      return "log";
    case ScalarOp::log1p:
      return "log1p";
    case ScalarOp::sqrt:
      return "sqrt";
    case ScalarOp::relu:
      return "relu";
    case ScalarOp::sigmoid:
      return "sigmoid";
    case ScalarOp::tanh:
      return "tanh";
    case ScalarOp::softplus:
      return "softplus";
    case ScalarOp::where:
      return "where";
  }
  return "invalid";
}

int scalar_op_arity(ScalarOp op) {
  switch (op) {
    case ScalarOp::logical_not:
    case ScalarOp::neg:
    case ScalarOp::abs:
    case ScalarOp::sign:
    case ScalarOp::square:
    case ScalarOp::exp:
    case ScalarOp::log:
    case ScalarOp::log1p:
    case ScalarOp::sqrt:
    case ScalarOp::relu:
    case ScalarOp::sigmoid:
    case ScalarOp::tanh:
    case ScalarOp::softplus:
      return 1;
    case ScalarOp::where:
      return 3;
    default:
      return 2;
  }
}

bool scalar_op_is_comparison(ScalarOp op) {
  switch (op) {
    case ScalarOp::eq:
    case ScalarOp::neq:
    case ScalarOp::lt:
    case ScalarOp::le:
    case ScalarOp::gt:
    case ScalarOp::ge:
      return true;
    default:
      return false;
  }
}

namespace {

enum class Accepts { numeric, floating, any, boolean };

Accepts accepted_dtypes(ScalarOp op) {
  switch (op) {
    case ScalarOp::true_div:
    case ScalarOp::exp:
    case ScalarOp::log:
    case ScalarOp::log1p:
    case ScalarOp::sqrt:
    case ScalarOp::sigmoid:
    case ScalarOp::tanh:
    case ScalarOp::softplus:
      return Accepts::floating;
    case ScalarOp::logical_and:
    case ScalarOp::logical_or:
    case ScalarOp::logical_not:
      return Accepts::boolean;
    case ScalarOp::maximum:
    case ScalarOp::minimum:
    case ScalarOp::where:
      return Accepts::any;
    default:
      return scalar_op_is_comparison(op) ? Accepts::any : Accepts::numeric;
  }
}

bool gives_bool(ScalarOp op) {
  return scalar_op_is_comparison(op) || accepted_dtypes(op) == Accepts::boolean;
}

// Ops whose output is piecewise constant in their inputs: no derivative flows through them.
bool piecewise_constant(ScalarOp op) {
  return gives_bool(op) || op == ScalarOp::int_div || op == ScalarOp::sign;
}

std::string op_label(ScalarOp op) {
  return fmt::format("Elemwise{{{}}}", scalar_op_name(op));
}

DType floatx() {
  return parse_dtype_or_throw(global_config().get("floatX"), "floatX");
}

// How perform() and make_outputs() name input I in messages.
using Describe = std::function<std::string(std::size_t)>;

// Checks the dtypes of an Elemwise's inputs and returns the output dtype.
DType check_dtypes(ScalarOp op, const std::vector<DType>& dtypes, const Describe& describe) {
  const std::string label = op_label(op);
  const std::string_view name = scalar_op_name(op);
  const bool is_where = op == ScalarOp::where;
  if (is_where && dtypes[0] != DType::boolean) {
    throw TypeError(fmt::format(
        "{}: {} (the condition) has dtype {}; the condition must be bool: compare first (e.g. "
        "gt(x, 0)) or cast it to bool",
        label, describe(0), dtype_name(dtypes[0])));
  }
  const std::size_t first = is_where ? 1 : 0;
  for (std::size_t i = first; i < dtypes.size(); ++i) {
    const DType d = dtypes[i];
    switch (accepted_dtypes(op)) {
      case Accepts::floating:
        if (!is_float(d)) {
          throw TypeError(fmt::format(
              "{}: {} has dtype {}; {} needs a floating-point input (float16, float32, float64); "
              "cast it first",
              label, describe(i), dtype_name(d), name));
        }
        break;
      case Accepts::numeric:
        if (is_bool(d)) {
          throw TypeError(fmt::format(
              "{}: {} has dtype bool; {} needs a numeric input (an integer or floating-point "
              "dtype); cast it first, or use logical_and / logical_or / logical_not on bools",
              label, describe(i), name));
        }
        break;
      case Accepts::boolean:
        if (!is_bool(d)) {
          throw TypeError(fmt::format(
              "{}: {} has dtype {}; {} needs bool inputs: compare first (e.g. gt(x, 0)) or cast "
              "to bool",
              label, describe(i), dtype_name(d), name));
        }
        break;
      case Accepts::any:
        break;
    }
    if (d != dtypes[first]) {
      throw TypeError(fmt::format(
          "{}: {} has dtype {} but {} has {}; the operands of an Elemwise share one dtype (the "
          "builder function {}() promotes them and inserts the Cast)",
          label, describe(i), dtype_name(d), describe(first), dtype_name(dtypes[first]), name));
    }
  }
  return gives_bool(op) ? DType::boolean : dtypes[first];
}

// The static broadcast of INPUTS' types, or ShapeError naming the two inputs and the axis.
StaticShape broadcast_static(ScalarOp op, const std::vector<Variable>& inputs) {
  int rank = 0;
  for (const Variable& v : inputs) rank = std::max(rank, v.ndim());
  StaticShape out(static_cast<std::size_t>(rank));
  for (int axis = 0; axis < rank; ++axis) {
    std::optional<std::size_t> known_from;  // the input whose known non-1 dim decides the axis
    bool all_one = true;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int in_axis = axis - (rank - inputs[i].ndim());
      if (in_axis < 0) continue;
      const StaticDim d = inputs[i].type().dims[static_cast<std::size_t>(in_axis)];
      if (d == StaticDim{1}) continue;
      all_one = false;
      if (!d) continue;
      if (!known_from) {
        known_from = i;
        continue;
      }
      const Variable& other = inputs[*known_from];
      const int other_axis = axis - (rank - other.ndim());
      const std::int64_t other_dim = *other.type().dims[static_cast<std::size_t>(other_axis)];
      if (other_dim != *d) {
        throw ShapeError(fmt::format(
            "{}: input {} ({}, {}) and input {} ({}, {}) do not broadcast: output axis {} (axis {} "
            "of input {}, axis {} of input {}) has dim {} in one and {} in the other; an axis "
            "broadcasts only where its dim is 1",
            op_label(op), *known_from, other.label(), other.type().str(), i, inputs[i].label(),
            inputs[i].type().str(), axis, other_axis, *known_from, in_axis, i, other_dim, *d));
      }
    }
    auto& o = out[static_cast<std::size_t>(axis)];
    if (known_from) {
      const Variable& v = inputs[*known_from];
      o = v.type().dims[static_cast<std::size_t>(axis - (rank - v.ndim()))];
    } else if (all_one) {
      o = 1;
    }
  }
  return out;
}

std::vector<std::vector<bool>> broadcastable_of(const std::vector<Variable>& inputs) {
  std::vector<std::vector<bool>> result;
  for (const Variable& v : inputs) {
    std::vector<bool> flags;
    for (const StaticDim& d : v.type().dims) flags.push_back(d == StaticDim{1});
    result.push_back(std::move(flags));
  }
  return result;
}

Variable zero_like_dtype(DType dtype) {
  return constant(0.0, dtype);
}

// G (a gradient of the output's type) summed over the axes along which INPUT was broadcast, in
// INPUT's dtype.
Variable reduce_to_input(const Variable& g, const Variable& input) {
  const TensorType& target = input.type();
  const TensorType& have = g.type();
  bool needs_sum = have.rank() != target.rank();
  for (int a = 0; !needs_sum && a < target.rank(); ++a) {
    needs_sum = target.dims[static_cast<std::size_t>(a)] == StaticDim{1} &&
                have.dims[static_cast<std::size_t>(a)] != StaticDim{1};
  }
  return cast(needs_sum ? sum_to(g, target) : g, input.dtype());
}

// V (a tangent of some input) broadcast to the shape of OUT, when it may be smaller.
Variable broadcast_to_output(const Variable& v, const Variable& out) {
  const TensorType& have = v.type();
  const TensorType& want = out.type();
  bool covers = have.rank() == want.rank();
  for (int a = 0; covers && a < want.rank(); ++a) {
    covers = have.dims[static_cast<std::size_t>(a)] != StaticDim{1} ||
             want.dims[static_cast<std::size_t>(a)] == StaticDim{1};
  }
  if (covers) return v;
  ShapeDims dims = symbolic_shape(out);
  for (int a = 0; a < want.rank(); ++a) {
    if (dims[static_cast<std::size_t>(a)].is_unknown()) {
      dims[static_cast<std::size_t>(a)] = Dim(shape_i(out, a));
    }
  }
  return alloc(v, dims);
}

// V times the derivative of the unary op at X (OUT = op(X)): the shared core of grad and r_op.
Variable unary_derivative_times(ScalarOp op, const Variable& x, const Variable& out,
                                const Variable& v) {
  const DType dt = x.dtype();
  switch (op) {
    case ScalarOp::neg:
      return neg(v);
    case ScalarOp::abs:
      return mul(v, sign(x));
    case ScalarOp::square:
      return mul(v, mul(constant(2.0, dt), x));
    case ScalarOp::exp:
      return mul(v, out);
    case ScalarOp::log:
      return true_div(v, x);
    case ScalarOp::log1p:
      return true_div(v, add(x, constant(1.0, dt)));
    case ScalarOp::sqrt:
      return true_div(v, mul(constant(2.0, dt), out));
    case ScalarOp::relu:
      // From the output: relu(x) > 0 exactly where x > 0 (NaN compares false either way), and
      // reading the output lets the pre-activation die after the forward pass.
      return where(gt(out, zero_like_dtype(dt)), v, zero_like_dtype(dt));
    case ScalarOp::sigmoid:
      return mul(v, mul(out, sub(constant(1.0, dt), out)));
    case ScalarOp::tanh:
      return mul(v, sub(constant(1.0, dt), mul(out, out)));
    case ScalarOp::softplus:
      return mul(v, sigmoid(x));
    default:
      break;
  }
  throw ConvGraphError(
      fmt::format("internal error: {} is not a differentiable unary op", op_label(op)));
}

// Applies an Elemwise after promoting the operands in PROMOTED (indices into INPUTS) to one dtype
// (to floatX for true_div of integers). The broadcast is checked on the original inputs first, so
// that a ShapeError names them rather than the casts.
Variable build(ScalarOp op, std::vector<Variable> inputs,
               const std::vector<std::size_t>& promoted) {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      throw ValueError(fmt::format("{}: input {} is an undefined Variable", op_label(op), i));
    }
  }
  broadcast_static(op, inputs);
  if (!promoted.empty()) {
    DType common = inputs[promoted[0]].dtype();
    for (std::size_t i : promoted) common = promote(common, inputs[i].dtype());
    if (op == ScalarOp::true_div && is_integer(common)) common = floatx();
    for (std::size_t i : promoted) inputs[i] = cast(inputs[i], common);
  }
  return elemwise(op, inputs);
}

Variable binary(ScalarOp op, const Variable& a, const Variable& b) {
  return build(op, {a, b}, {0, 1});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Elemwise

Elemwise::Elemwise(ScalarOp scalar_op, std::vector<std::vector<bool>> input_broadcastable)
    : scalar_op_(scalar_op), input_broadcastable_(std::move(input_broadcastable)) {
  if (!input_broadcastable_.empty() &&
      static_cast<int>(input_broadcastable_.size()) != scalar_op_arity(scalar_op)) {
    throw ValueError(fmt::format("{}: broadcast patterns for {} inputs given, {} expected",
                                 op_label(scalar_op), input_broadcastable_.size(),
                                 scalar_op_arity(scalar_op)));
  }
}

std::shared_ptr<const Elemwise> Elemwise::for_inputs(ScalarOp scalar_op,
                                                     const std::vector<Variable>& inputs) {
  return std::make_shared<const Elemwise>(scalar_op, broadcastable_of(inputs));
}

std::string Elemwise::str() const {
  if (inplace_input_ < 0) return op_label(scalar_op_);
  const std::string_view name = scalar_op_name(scalar_op_);
  return inplace_input_ == 0 ? fmt::format("Elemwise{{{},inplace}}", name)
                             : fmt::format("Elemwise{{{},inplace={}}}", name, inplace_input_);
}

bool Elemwise::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Elemwise*>(&other);
  return o != nullptr && o->scalar_op_ == scalar_op_ &&
         o->input_broadcastable_ == input_broadcastable_ && o->inplace_input_ == inplace_input_;
}

std::size_t Elemwise::hash() const {
  std::size_t seed = hash_values(std::string("Elemwise"), static_cast<int>(scalar_op_));
  for (const auto& flags : input_broadcastable_) seed = hash_combine(seed, hash_range(flags));
  return hash_combine(seed, static_cast<std::size_t>(inplace_input_ + 1));
}

std::vector<std::pair<int, int>> Elemwise::inplace_candidates(const Node& node) const {
  std::vector<std::pair<int, int>> pairs;
  const TensorType& out = node.output_data.at(0).type;
  if (!out.device.is_cpu()) return pairs;  // perform() is the CPU kernel
  for (std::size_t i = 0; i < node.inputs.size(); ++i) {
    const TensorType& in = node.inputs[i].type();
    if (in.dtype != out.dtype || in.device != out.device || in.rank() != out.rank()) continue;
    // An axis of static dim 1 broadcasts unless the output's is 1 too; the run-time shapes then
    // agree (an unknown dim never broadcasts), and perform() checks them anyway.
    bool broadcast = false;
    for (int d = 0; d < in.rank() && !broadcast; ++d) {
      const auto a = in.dims[static_cast<std::size_t>(d)];
      const auto b = out.dims[static_cast<std::size_t>(d)];
      broadcast = a && *a == 1 && !(b && *b == 1);
    }
    if (!broadcast) pairs.emplace_back(0, static_cast<int>(i));
  }
  return pairs;
}

std::shared_ptr<const Op> Elemwise::with_inplace(int output, int input) const {
  if (output != 0 || input < 0 || input >= scalar_op_arity(scalar_op_)) {
    throw ValueError(fmt::format("{}: no in-place form writing output {} into input {}",
                                 op_label(scalar_op_), output, input));
  }
  auto op = std::make_shared<Elemwise>(*this);
  op->inplace_input_ = input;
  return op;
}

std::vector<std::pair<int, int>> Elemwise::destroy_map() const {
  if (inplace_input_ < 0) return {};
  return {{0, inplace_input_}};
}

std::vector<TensorType> Elemwise::make_outputs(const std::vector<Variable>& inputs) const {
  const std::string label = op_label(scalar_op_);
  const int arity = scalar_op_arity(scalar_op_);
  if (static_cast<int>(inputs.size()) != arity) {
    throw ValueError(fmt::format("{}: {} inputs given, {} expected", label, inputs.size(), arity));
  }
  std::vector<DType> dtypes;
  for (const Variable& v : inputs) dtypes.push_back(v.dtype());
  const DType out_dtype = check_dtypes(scalar_op_, dtypes, [&](std::size_t i) {
    return fmt::format("input {} ({})", i, inputs[i].label());
  });
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    if (inputs[i].type().device != inputs[0].type().device) {
      throw TypeError(fmt::format(
          "{}: input {} ({}) is on {} but input 0 ({}) is on {}; transfer one of them first", label,
          i, inputs[i].label(), inputs[i].type().device.str(), inputs[0].label(),
          inputs[0].type().device.str()));
    }
  }
  if (!input_broadcastable_.empty() && input_broadcastable_ != broadcastable_of(inputs)) {
    throw TypeError(fmt::format(
        "{}: the op was made for inputs with other broadcastable (static size-1) axes than "
        "these; make it with Elemwise::for_inputs or the builder functions",
        label));
  }
  TensorType out(out_dtype, broadcast_static(scalar_op_, inputs), inputs[0].type().device);
  out.layout = elementwise_layout(inputs, out.dims, label);
  return {out};
}

std::vector<ShapeDims> Elemwise::infer_shape(const Node& node,
                                             const std::vector<ShapeDims>& input_shapes) const {
  const StaticShape& out_static = node.output_data[0].type.dims;
  const int rank = static_cast<int>(out_static.size());
  ShapeDims out;
  for (int axis = 0; axis < rank; ++axis) {
    if (const StaticDim s = out_static[static_cast<std::size_t>(axis)]) {
      out.emplace_back(*s);
      continue;
    }
    // Inputs whose static dim is 1 broadcast and say nothing; of the others, every dim equals
    // the output's at run time, so any of them will do: a constant if there is one, else the
    // first symbolic one.
    std::optional<Dim> constant_dim, symbolic_dim;
    for (std::size_t i = 0; i < input_shapes.size(); ++i) {
      const int in_axis = axis - (rank - static_cast<int>(input_shapes[i].size()));
      if (in_axis < 0) continue;
      if (node.inputs[i].type().dims[static_cast<std::size_t>(in_axis)] == StaticDim{1}) continue;
      const Dim& d = input_shapes[i][static_cast<std::size_t>(in_axis)];
      if (d.is_constant() && d.value() != 1 && !constant_dim) constant_dim = d;
      if (d.is_symbolic() && !symbolic_dim) symbolic_dim = d;
    }
    out.push_back(constant_dim ? *constant_dim : symbolic_dim ? *symbolic_dim : Dim::unknown());
  }
  return {out};
}

std::vector<Variable> Elemwise::grad(const std::vector<Variable>& inputs,
                                     const std::vector<Variable>& outputs,
                                     const std::vector<Variable>& output_grads) const {
  std::vector<Variable> result(inputs.size());  // undefined: disconnected
  const Variable& out = outputs[0];
  const Variable& g = output_grads[0];
  if (piecewise_constant(scalar_op_) || !is_float(out.dtype())) return result;
  const auto wants = [&](std::size_t i) { return is_float(inputs[i].dtype()); };
  const auto set = [&](std::size_t i, const Variable& gi) {
    result[i] = reduce_to_input(gi, inputs[i]);
  };
  const DType dt = out.dtype();

  if (scalar_op_arity(scalar_op_) == 1) {
    set(0, unary_derivative_times(scalar_op_, inputs[0], out, g));
    return result;
  }
  const Variable& a = inputs[0];
  const Variable& b = inputs[1];
  switch (scalar_op_) {
    case ScalarOp::add:
      if (wants(0)) set(0, g);
      if (wants(1)) set(1, g);
      break;
    case ScalarOp::sub:
      if (wants(0)) set(0, g);
      if (wants(1)) set(1, neg(g));
      break;
    case ScalarOp::mul:
      if (wants(0)) set(0, mul(g, b));
      if (wants(1)) set(1, mul(g, a));
      break;
    case ScalarOp::true_div:
      if (wants(0)) set(0, true_div(g, b));
      if (wants(1)) set(1, neg(true_div(mul(g, out), b)));  // -g a / b^2
      break;
    case ScalarOp::mod:  // a mod b = a - floor(a / b) b, and floor is piecewise constant
      if (wants(0)) set(0, g);
      if (wants(1)) set(1, neg(mul(g, int_div(a, b))));
      break;
    case ScalarOp::pow:
      if (wants(0)) set(0, mul(g, mul(b, pow(a, sub(b, constant(1.0, dt))))));
      if (wants(1)) set(1, mul(g, mul(log(a), out)));
      break;
    case ScalarOp::maximum:
    case ScalarOp::minimum: {
      // Ties send the gradient to A, the operand the kernel returns.
      const Variable picks_a = scalar_op_ == ScalarOp::maximum ? ge(a, b) : le(a, b);
      if (wants(0)) set(0, where(picks_a, g, zero_like_dtype(dt)));
      if (wants(1)) set(1, where(picks_a, zero_like_dtype(dt), g));
      break;
    }
    case ScalarOp::where:
      if (wants(1)) set(1, where(inputs[0], g, zero_like_dtype(dt)));
      if (wants(2)) set(2, where(inputs[0], zero_like_dtype(dt), g));
      break;
    default:
      throw ConvGraphError(fmt::format("internal error: {}.grad is not implemented", str()));
  }
  return result;
}

std::vector<Variable> Elemwise::r_op(const std::vector<Variable>& inputs,
                                     const std::vector<Variable>& outputs,
                                     const std::vector<Variable>& eval_points) const {
  const Variable& out = outputs[0];
  if (piecewise_constant(scalar_op_) || !is_float(out.dtype())) return {Variable()};
  std::vector<Variable> tangent(inputs.size());
  bool any = false;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (i < eval_points.size() && eval_points[i].defined() && is_float(inputs[i].dtype())) {
      tangent[i] = cast(eval_points[i], inputs[i].dtype());
      any = true;
    }
  }
  if (!any) return {Variable()};
  const DType dt = out.dtype();
  const auto or_zero = [&](const Variable& v) { return v.defined() ? v : zero_like_dtype(dt); };

  Variable r;
  if (scalar_op_arity(scalar_op_) == 1) {
    r = unary_derivative_times(scalar_op_, inputs[0], out, tangent[0]);
  } else {
    const Variable& a = inputs[0];
    const Variable& b = inputs[1];
    const Variable& ra = tangent[0];
    const Variable& rb = tangent[1];
    // Sums the defined terms; at least one is.
    const auto total = [](const Variable& x, const Variable& y) {
      return x.defined() && y.defined() ? add(x, y) : (x.defined() ? x : y);
    };
    switch (scalar_op_) {
      case ScalarOp::add:
        r = total(ra, rb);
        break;
      case ScalarOp::sub:
        r = total(ra, rb.defined() ? neg(rb) : Variable());
        break;
      case ScalarOp::mul:
        r = total(ra.defined() ? mul(ra, b) : Variable(), rb.defined() ? mul(a, rb) : Variable());
        break;
      case ScalarOp::true_div:  // (ra - out rb) / b
        r = true_div(ra.defined() && rb.defined() ? sub(ra, mul(out, rb))
                     : ra.defined()               ? ra
                                                  : neg(mul(out, rb)),
                     b);
        break;
      case ScalarOp::mod:
        r = total(ra, rb.defined() ? neg(mul(int_div(a, b), rb)) : Variable());
        break;
      case ScalarOp::pow:
        r = total(ra.defined() ? mul(ra, mul(b, pow(a, sub(b, constant(1.0, dt))))) : Variable(),
                  rb.defined() ? mul(rb, mul(log(a), out)) : Variable());
        break;
      case ScalarOp::maximum:
        r = where(ge(a, b), or_zero(ra), or_zero(rb));
        break;
      case ScalarOp::minimum:
        r = where(le(a, b), or_zero(ra), or_zero(rb));
        break;
      case ScalarOp::where:
        r = where(inputs[0], or_zero(tangent[1]), or_zero(tangent[2]));
        break;
      default:
        throw ConvGraphError(fmt::format("internal error: {}.r_op is not implemented", str()));
    }
  }
  return {broadcast_to_output(cast(r, dt), out)};
}

void Elemwise::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  const std::string label = op_label(scalar_op_);
  const int arity = scalar_op_arity(scalar_op_);
  if (static_cast<int>(inputs.size()) != arity) {
    throw ValueError(fmt::format("{}: {} inputs given, {} expected", label, inputs.size(), arity));
  }
  std::vector<DType> dtypes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) throw ValueError(fmt::format("{}: input {} is undefined", label, i));
    dtypes.push_back(inputs[i].dtype());
  }
  const DType out_dtype =
      check_dtypes(scalar_op_, dtypes, [](std::size_t i) { return fmt::format("input {}", i); });
  const bool recorded = !input_broadcastable_.empty();
  if (recorded) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (input_broadcastable_[i].size() != inputs[i].shape().size()) {
        throw ShapeError(
            fmt::format("{}: input {} has rank {} (shape {}), but the node was built "
                        "for rank {}",
                        label, i, inputs[i].rank(), shape_str(inputs[i].shape()),
                        input_broadcastable_[i].size()));
      }
    }
  }

  std::size_t rank = 0;
  for (const Tensor& t : inputs) rank = std::max(rank, t.shape().size());
  Shape out_shape(rank, 1);
  for (std::size_t axis = 0; axis < rank; ++axis) {
    std::optional<std::size_t> sized_by;  // the first input that does not broadcast on AXIS
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Shape& shape = inputs[i].shape();
      if (axis + shape.size() < rank) continue;
      const std::size_t in_axis = axis + shape.size() - rank;
      const std::int64_t d = shape[in_axis];
      const bool broadcasts =
          recorded ? static_cast<bool>(input_broadcastable_[i][in_axis]) : d == 1;
      if (broadcasts) {
        if (d != 1) {
          throw ShapeError(
              fmt::format("{}: input {} has shape {}, but its type declares axis {} "
                          "as 1",
                          label, i, shape_str(shape), in_axis));
        }
        continue;
      }
      if (!sized_by) {
        sized_by = i;
        out_shape[axis] = d;
        continue;
      }
      if (d == out_shape[axis]) continue;
      std::string shapes;
      for (std::size_t k = 0; k < inputs.size(); ++k) {
        shapes += (k ? ", " : "") + shape_str(inputs[k].shape());
      }
      std::string message = fmt::format(
          "{}: input shapes {} do not broadcast: output axis {} has size {} in input {} and {} in "
          "input {}",
          label, shapes, axis, out_shape[axis], *sized_by, d, i);
      if (d == 1 || out_shape[axis] == 1) {
        const std::size_t one = d == 1 ? i : *sized_by;
        message += fmt::format(
            ". Input {} has size 1 there only at run time: its type left that dim unknown, and "
            "an axis broadcasts only where the input's type declares its dim as 1 (so that "
            "gradients can sum over it); declare that dim as 1 in the input's type",
            one);
      }
      throw ShapeError(message);
    }
  }

  outputs.resize(1);
  // An output given allocated (the plan's in-place step hands over a dead input) is written
  // only when it is what would have been allocated; the loops read element i of every input
  // before writing element i of the output, so it may be one of the inputs.
  Tensor& out = outputs[0];
  if (!out.defined() || out.dtype() != out_dtype || out.shape() != out_shape ||
      !out.device().is_cpu() || !out.is_contiguous()) {
    out = Tensor::empty(out_dtype, out_shape);
  }
  elemwise_kernel(scalar_op_, inputs, out);
}

// ---------------------------------------------------------------------------------------------
// Cast

std::string Cast::str() const {
  return fmt::format("Cast{{{}}}", dtype_name(target_));
}

bool Cast::equals(const Op& other) const {
  const auto* o = dynamic_cast<const Cast*>(&other);
  return o != nullptr && o->target_ == target_;
}

std::size_t Cast::hash() const {
  return hash_values(std::string("Cast"), static_cast<int>(target_));
}

std::vector<TensorType> Cast::make_outputs(const std::vector<Variable>& inputs) const {
  if (inputs.size() != 1) {
    throw ValueError(fmt::format("{}: {} inputs given, 1 expected", str(), inputs.size()));
  }
  TensorType type = inputs[0].type();
  type.dtype = target_;
  return {type};
}

std::vector<ShapeDims> Cast::infer_shape(const Node& /*node*/,
                                         const std::vector<ShapeDims>& input_shapes) const {
  return {input_shapes[0]};
}

std::vector<Variable> Cast::grad(const std::vector<Variable>& inputs,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& output_grads) const {
  if (!is_float(inputs[0].dtype()) || !is_float(target_)) return {Variable()};
  return {cast(output_grads[0], inputs[0].dtype())};
}

std::vector<Variable> Cast::r_op(const std::vector<Variable>& inputs,
                                 const std::vector<Variable>& /*outputs*/,
                                 const std::vector<Variable>& eval_points) const {
  if (eval_points.empty() || !eval_points[0].defined() || !is_float(inputs[0].dtype()) ||
      !is_float(target_)) {
    return {Variable()};
  }
  return {cast(eval_points[0], target_)};
}

void Cast::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  if (inputs.size() != 1 || !inputs[0].defined()) {
    throw ValueError(fmt::format("{}: expected one defined input", str()));
  }
  outputs.resize(1);
  outputs[0] = output_buffer(outputs[0], target_, inputs[0].shape());
  cast_kernel(inputs[0], outputs[0]);
}

// ---------------------------------------------------------------------------------------------
// Builders

Variable elemwise(ScalarOp scalar_op, const std::vector<Variable>& inputs) {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      throw ValueError(
          fmt::format("{}: input {} is an undefined Variable", op_label(scalar_op), i));
    }
  }
  return convgraph::apply(Elemwise::for_inputs(scalar_op, inputs), inputs);
}

Variable constant(double value, DType dtype) {
  if (is_integer(dtype) || is_bool(dtype)) {
    const double lo = is_bool(dtype)          ? 0.0
                      : dtype == DType::int8  ? -128.0
                      : dtype == DType::int32 ? -2147483648.0
                                              : -9223372036854775808.0;
    const double hi_exclusive = is_bool(dtype)          ? 2.0
                                : dtype == DType::int8  ? 128.0
                                : dtype == DType::int32 ? 2147483648.0
                                                        : 9223372036854775808.0;
    if (!std::isfinite(value) || std::trunc(value) != value || value < lo ||
        value >= hi_exclusive) {
      throw ValueError(
          fmt::format("constant: {} is not representable in dtype {}", value, dtype_name(dtype)));
    }
  }
  return make_constant(Tensor::scalar(dtype, value));
}

Variable constant(const Tensor& value) {
  return make_constant(value);
}

Variable add(const Variable& a, const Variable& b) {
  return binary(ScalarOp::add, a, b);
}
Variable sub(const Variable& a, const Variable& b) {
  return binary(ScalarOp::sub, a, b);
}
Variable mul(const Variable& a, const Variable& b) {
  return binary(ScalarOp::mul, a, b);
}
Variable true_div(const Variable& a, const Variable& b) {
  return binary(ScalarOp::true_div, a, b);
}
Variable int_div(const Variable& a, const Variable& b) {
  return binary(ScalarOp::int_div, a, b);
}
Variable mod(const Variable& a, const Variable& b) {
  return binary(ScalarOp::mod, a, b);
}
Variable pow(const Variable& a, const Variable& b) {
  return binary(ScalarOp::pow, a, b);
}
Variable maximum(const Variable& a, const Variable& b) {
  return binary(ScalarOp::maximum, a, b);
}
Variable minimum(const Variable& a, const Variable& b) {
  return binary(ScalarOp::minimum, a, b);
}
Variable eq(const Variable& a, const Variable& b) {
  return binary(ScalarOp::eq, a, b);
}
Variable neq(const Variable& a, const Variable& b) {
  return binary(ScalarOp::neq, a, b);
}
Variable lt(const Variable& a, const Variable& b) {
  return binary(ScalarOp::lt, a, b);
}
Variable le(const Variable& a, const Variable& b) {
  return binary(ScalarOp::le, a, b);
}
Variable gt(const Variable& a, const Variable& b) {
  return binary(ScalarOp::gt, a, b);
}
Variable ge(const Variable& a, const Variable& b) {
  return binary(ScalarOp::ge, a, b);
}
// Logic is never promoted: a non-bool operand is an error naming it with its own dtype.
Variable logical_and(const Variable& a, const Variable& b) {
  return build(ScalarOp::logical_and, {a, b}, {});
}
Variable logical_or(const Variable& a, const Variable& b) {
  return build(ScalarOp::logical_or, {a, b}, {});
}
Variable logical_not(const Variable& a) {
  return build(ScalarOp::logical_not, {a}, {});
}
Variable where(const Variable& cond, const Variable& a, const Variable& b) {
  return build(ScalarOp::where, {cond, a, b}, {1, 2});
}

Variable neg(const Variable& x) {
  return build(ScalarOp::neg, {x}, {});
}
Variable abs(const Variable& x) {
  return build(ScalarOp::abs, {x}, {});
}
Variable sign(const Variable& x) {
  return build(ScalarOp::sign, {x}, {});
}
Variable square(const Variable& x) {
  return build(ScalarOp::square, {x}, {});
}
Variable exp(const Variable& x) {
  return build(ScalarOp::exp, {x}, {});
}
Variable log(const Variable& x) {
  return build(ScalarOp::log, {x}, {});
}
Variable log1p(const Variable& x) {
  return build(ScalarOp::log1p, {x}, {});
}
Variable sqrt(const Variable& x) {
  return build(ScalarOp::sqrt, {x}, {});
}
Variable sigmoid(const Variable& x) {
  return build(ScalarOp::sigmoid, {x}, {});
}
Variable tanh(const Variable& x) {
  return build(ScalarOp::tanh, {x}, {});
}
Variable softplus(const Variable& x) {
  return build(ScalarOp::softplus, {x}, {});
}
Variable relu(const Variable& x) {
  return build(ScalarOp::relu, {x}, {});
}

Variable cast(const Variable& x, DType dtype) {
  if (!x.defined()) throw ValueError("cast: the input is an undefined Variable");
  if (x.dtype() == dtype) return x;
  return convgraph::apply(std::make_shared<const Cast>(dtype), {x});
}

// ---------------------------------------------------------------------------------------------
// Operators

DType number_dtype(double number, DType like) {
  if (is_float(like)) return like;
  const bool integral = std::isfinite(number) && std::trunc(number) == number;
  if (!integral) return floatx();
  const auto fits = [&](double lo, double hi_exclusive) {
    return number >= lo && number < hi_exclusive;
  };
  const bool fits_int64 = fits(-9223372036854775808.0, 9223372036854775808.0);
  if (like == DType::int8 && fits(-128.0, 128.0)) return like;
  if (like == DType::int32 && fits(-2147483648.0, 2147483648.0)) return like;
  if (like == DType::int64 && fits_int64) return like;
  return fits_int64 ? DType::int64 : floatx();
}

namespace {
Variable number_like(double number, const Variable& like) {
  if (!like.defined()) throw ValueError("an operator was given an undefined Variable");
  return constant(number, number_dtype(number, like.dtype()));
}
}  // namespace

Variable operator+(const Variable& a, const Variable& b) {
  return add(a, b);
}
Variable operator-(const Variable& a, const Variable& b) {
  return sub(a, b);
}
Variable operator*(const Variable& a, const Variable& b) {
  return mul(a, b);
}
Variable operator/(const Variable& a, const Variable& b) {
  return true_div(a, b);
}
Variable operator-(const Variable& a) {
  return neg(a);
}
Variable operator+(const Variable& a, double b) {
  return add(a, number_like(b, a));
}
Variable operator-(const Variable& a, double b) {
  return sub(a, number_like(b, a));
}
Variable operator*(const Variable& a, double b) {
  return mul(a, number_like(b, a));
}
Variable operator/(const Variable& a, double b) {
  return true_div(a, number_like(b, a));
}
Variable operator+(double a, const Variable& b) {
  return add(number_like(a, b), b);
}
Variable operator-(double a, const Variable& b) {
  return sub(number_like(a, b), b);
}
Variable operator*(double a, const Variable& b) {
  return mul(number_like(a, b), b);
}
Variable operator/(double a, const Variable& b) {
  return true_div(number_like(a, b), b);
}

}  // namespace convgraph
