#include "convgraph/codegen/fused_ir.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace convgraph::codegen {
namespace {

enum class Domain { numeric, floating, any, boolean };

Domain scalar_op_domain(ScalarOp op) {
  switch (op) {
    case ScalarOp::add:
    case ScalarOp::sub:
    case ScalarOp::mul:
    case ScalarOp::int_div:
    case ScalarOp::mod:
    case ScalarOp::pow:
    case ScalarOp::neg:
    case ScalarOp::abs:
    case ScalarOp::sign:
    case ScalarOp::square:
    case ScalarOp::relu:
      return Domain::numeric;
    case ScalarOp::true_div:
    case ScalarOp::exp:
    case ScalarOp::log:
    case ScalarOp::log1p:
    case ScalarOp::sqrt:
    case ScalarOp::sigmoid:
    case ScalarOp::tanh:
    case ScalarOp::softplus:
      return Domain::floating;
    case ScalarOp::logical_and:
    case ScalarOp::logical_or:
    case ScalarOp::logical_not:
      return Domain::boolean;
    default:
      return Domain::any;
  }
}

bool domain_accepts(Domain domain, DType dtype) {
  switch (domain) {
    case Domain::numeric:
      return dtype != DType::boolean;
    case Domain::floating:
      return is_float(dtype);
    case Domain::boolean:
      return dtype == DType::boolean;
    case Domain::any:
      return true;
  }
  return false;
}

std::string_view domain_name(Domain domain) {
  switch (domain) {
    case Domain::numeric:
      return "a numeric dtype (integer or float, not bool)";
    case Domain::floating:
      return "a float dtype";
    case Domain::boolean:
      return "bool";
    case Domain::any:
      return "any dtype";
  }
  return "?";
}

std::string_view kind_name(FusedOpKind kind) {
  switch (kind) {
    case FusedOpKind::load:
      return "load";
    case FusedOpKind::constant:
      return "const";
    case FusedOpKind::scalar:
      return "scalar";
    case FusedOpKind::cast:
      return "cast";
  }
  return "?";
}

bool constant_fits(double value, DType dtype) {
  if (is_float(dtype)) return true;
  if (dtype == DType::boolean) return value == 0.0 || value == 1.0;
  if (!std::isfinite(value) || std::trunc(value) != value) return false;
  switch (dtype) {
    case DType::int8:
      return value >= -128.0 && value <= 127.0;
    case DType::int32:
      return value >= -2147483648.0 && value <= 2147483647.0;
    default:  // int64: every integral double below 2^63 converts exactly
      return value >= -9223372036854775808.0 && value < 9223372036854775808.0;
  }
}

// Checks instruction INDEX of INSTRS against the instructions before it and INPUTS.
void check_instr(const std::string& kernel, const std::vector<FusedInput>& inputs,
                 const std::vector<FusedInstr>& instrs, std::size_t index) {
  const FusedInstr& in = instrs[index];
  const std::string where =
      fmt::format("fused kernel '{}', instruction %{} ({})", kernel, index,
                  in.kind == FusedOpKind::scalar ? std::string(scalar_op_name(in.op))
                                                 : std::string(kind_name(in.kind)));
  auto arg_dtype = [&](std::size_t k) {
    const int arg = in.args[k];
    if (arg < 0 || static_cast<std::size_t>(arg) >= index) {
      throw ValueError(
          fmt::format("{}: operand {} refers to %{}, which is not an earlier "
                      "instruction (expected 0..{})",
                      where, k, arg, static_cast<long>(index) - 1));
    }
    return instrs[static_cast<std::size_t>(arg)].dtype;
  };
  switch (in.kind) {
    case FusedOpKind::load: {
      if (in.input < 0 || static_cast<std::size_t>(in.input) >= inputs.size()) {
        throw ValueError(
            fmt::format("{}: input index {} is out of range (the kernel has {} input{})", where,
                        in.input, inputs.size(), inputs.size() == 1 ? "" : "s"));
      }
      if (!in.args.empty()) throw ValueError(fmt::format("{}: a load takes no operands", where));
      const DType expected = inputs[static_cast<std::size_t>(in.input)].dtype;
      if (in.dtype != expected) {
        throw TypeError(fmt::format("{}: declared dtype {} but input {} has dtype {}", where,
                                    dtype_name(in.dtype), in.input, dtype_name(expected)));
      }
      return;
    }
    case FusedOpKind::constant:
      if (!in.args.empty())
        throw ValueError(fmt::format("{}: a constant takes no operands", where));
      if (!constant_fits(in.value, in.dtype)) {
        throw ValueError(fmt::format("{}: the value {} is not representable in {}", where, in.value,
                                     dtype_name(in.dtype)));
      }
      return;
    case FusedOpKind::cast:
      if (in.args.size() != 1) {
        throw ValueError(
            fmt::format("{}: a cast takes 1 operand, {} given", where, in.args.size()));
      }
      arg_dtype(0);
      return;
    case FusedOpKind::scalar:
      break;
  }
  const int arity = scalar_op_arity(in.op);
  if (static_cast<int>(in.args.size()) != arity) {
    throw ValueError(fmt::format("{}: {} takes {} operand{}, {} given", where,
                                 scalar_op_name(in.op), arity, arity == 1 ? "" : "s",
                                 in.args.size()));
  }
  std::vector<DType> dtypes;
  for (std::size_t k = 0; k < in.args.size(); ++k) dtypes.push_back(arg_dtype(k));
  std::size_t first = 0;
  if (in.op == ScalarOp::where) {
    if (dtypes[0] != DType::boolean) {
      throw TypeError(fmt::format("{}: the condition (operand 0) has dtype {}, expected bool",
                                  where, dtype_name(dtypes[0])));
    }
    first = 1;
  }
  for (std::size_t k = first + 1; k < dtypes.size(); ++k) {
    if (dtypes[k] != dtypes[first]) {
      throw TypeError(
          fmt::format("{}: operand {} has dtype {} but operand {} has {}; insert a "
                      "cast",
                      where, k, dtype_name(dtypes[k]), first, dtype_name(dtypes[first])));
    }
  }
  const Domain domain = scalar_op_domain(in.op);
  if (!domain_accepts(domain, dtypes[first])) {
    throw TypeError(fmt::format("{}: operands of dtype {}, expected {}", where,
                                dtype_name(dtypes[first]), domain_name(domain)));
  }
  const DType result = scalar_op_result_dtype(in.op, dtypes[first]);
  if (in.dtype != result) {
    throw TypeError(fmt::format("{}: declared dtype {} but {} of {} gives {}", where,
                                dtype_name(in.dtype), scalar_op_name(in.op),
                                dtype_name(dtypes[first]), dtype_name(result)));
  }
}

void check_rank(const std::string& kernel, int rank) {
  if (rank < 0 || rank > kMaxFusedRank) {
    throw ShapeError(fmt::format("fused kernel '{}': iteration rank {} is out of range (0..{})",
                                 kernel, rank, kMaxFusedRank));
  }
}

void check_input(const std::string& kernel, int rank, const FusedInput& input, std::size_t i) {
  if (static_cast<int>(input.broadcast.size()) > rank) {
    throw ShapeError(
        fmt::format("fused kernel '{}': input {} has rank {}, more than the "
                    "iteration rank {}",
                    kernel, i, input.broadcast.size(), rank));
  }
}

std::vector<int> checked_axes(const std::string& kernel, int rank, std::vector<int> axes) {
  for (int axis : axes) {
    if (axis < 0 || axis >= rank) {
      throw ValueError(
          fmt::format("fused kernel '{}': reduction axis {} is out of range for "
                      "iteration rank {} (expected 0..{})",
                      kernel, axis, rank, rank - 1));
    }
  }
  std::vector<int> sorted = axes;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    throw ValueError(fmt::format("fused kernel '{}': reduction axes [{}] name an axis twice",
                                 kernel, fmt::join(axes, ", ")));
  }
  return sorted;
}

void check_reduction_dtype(const std::string& kernel, FusedReduceKind kind, DType dtype,
                           std::size_t output) {
  const bool ok = kind == FusedReduceKind::mean  ? is_float(dtype)
                  : kind == FusedReduceKind::max ? dtype != DType::boolean
                                                 : true;
  if (!ok) {
    throw TypeError(
        fmt::format("fused kernel '{}': output {} has dtype {}, which a {} reduction "
                    "does not accept ({})",
                    kernel, output, dtype_name(dtype), fused_reduce_name(kind),
                    kind == FusedReduceKind::mean ? "floats only" : "not bool"));
  }
}

// The exact text of a constant: hexadecimal floats round-trip every double.
std::string constant_text(double value) {
  if (value == 0.0) return std::signbit(value) ? "-0" : "0";
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return fmt::format("{:a}", value);
}

std::string canonical_text(int rank, const std::vector<FusedInput>& inputs,
                           const std::vector<FusedInstr>& instrs,
                           const std::vector<FusedOutput>& outputs) {
  std::string text = fmt::format("fused-ir 2 rank {}\n", rank);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::string flags;
    for (bool b : inputs[i].broadcast) flags += b ? 'b' : '.';
    text += fmt::format("in{} {} [{}]\n", i, dtype_name(inputs[i].dtype), flags);
  }
  for (std::size_t i = 0; i < instrs.size(); ++i) {
    const FusedInstr& in = instrs[i];
    text += fmt::format("%{} = ", i);
    switch (in.kind) {
      case FusedOpKind::load:
        text += fmt::format("load in{}", in.input);
        break;
      case FusedOpKind::constant:
        text += fmt::format("const {}", constant_text(in.value));
        break;
      case FusedOpKind::scalar:
        text += scalar_op_name(in.op);
        break;
      case FusedOpKind::cast:
        text += "cast";
        break;
    }
    for (int arg : in.args) text += fmt::format(" %{}", arg);
    text += fmt::format(" : {}\n", dtype_name(in.dtype));
  }
  for (const FusedOutput& out : outputs) {
    text += fmt::format("out %{}", out.value);
    if (out.reduction) {
      text += fmt::format(" {} [{}]{}", fused_reduce_name(out.reduction->kind),
                          fmt::join(out.reduction->axes, ","),
                          out.reduction->keepdims ? " keepdims" : "");
    }
    text += "\n";
  }
  return text;
}

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::string_view fused_reduce_name(FusedReduceKind kind) {
  switch (kind) {
    case FusedReduceKind::sum:
      return "sum";
    case FusedReduceKind::max:
      return "max";
    case FusedReduceKind::mean:
      return "mean";
  }
  return "?";
}

DType fused_reduced_dtype(FusedReduceKind kind, DType value) {
  if (kind == FusedReduceKind::sum && !is_float(value)) return DType::int64;
  return value;
}

DType fused_accumulator_dtype(FusedReduceKind kind, DType value) {
  if (value == DType::float16) return DType::float32;
  if (kind == FusedReduceKind::max) return value;
  if (value == DType::float32) return DType::float64;
  return is_float(value) ? value : DType::int64;
}

DType scalar_op_result_dtype(ScalarOp op, DType operand) {
  if (scalar_op_is_comparison(op) || op == ScalarOp::logical_and || op == ScalarOp::logical_or ||
      op == ScalarOp::logical_not) {
    return DType::boolean;
  }
  return operand;
}

FusedIR::FusedIR(std::string name, int rank, std::vector<FusedInput> inputs,
                 std::vector<FusedInstr> instrs, std::vector<FusedOutput> outputs)
    : name_(std::move(name)),
      rank_(rank),
      inputs_(std::move(inputs)),
      instrs_(std::move(instrs)),
      outputs_(std::move(outputs)) {
  validate();
  for (FusedOutput& out : outputs_) {
    if (out.reduction) out.reduction->axes = checked_axes(name_, rank_, out.reduction->axes);
  }
  text_ = canonical_text(rank_, inputs_, instrs_, outputs_);
  hash_ = fnv1a(text_);
}

void FusedIR::validate() const {
  check_rank(name_, rank_);
  for (std::size_t i = 0; i < inputs_.size(); ++i) check_input(name_, rank_, inputs_[i], i);
  for (std::size_t i = 0; i < instrs_.size(); ++i) check_instr(name_, inputs_, instrs_, i);
  if (outputs_.empty()) {
    throw ValueError(fmt::format("fused kernel '{}': no output", name_));
  }
  for (std::size_t k = 0; k < outputs_.size(); ++k) {
    const int value = outputs_[k].value;
    if (value < 0 || static_cast<std::size_t>(value) >= instrs_.size()) {
      throw ValueError(
          fmt::format("fused kernel '{}': output {} refers to %{}, which is out of "
                      "range (the kernel has {} instructions)",
                      name_, k, value, instrs_.size()));
    }
    if (const auto& r = outputs_[k].reduction) {
      check_reduction_dtype(name_, r->kind, instrs_[static_cast<std::size_t>(value)].dtype, k);
      checked_axes(name_, rank_, r->axes);
    }
  }
}

bool FusedIR::has_reduction() const {
  return std::any_of(outputs_.begin(), outputs_.end(),
                     [](const FusedOutput& out) { return out.reduction.has_value(); });
}

bool FusedIR::is_reduced_axis(std::size_t i, int axis) const {
  const auto& r = outputs_[i].reduction;
  return r && std::find(r->axes.begin(), r->axes.end(), axis) != r->axes.end();
}

bool FusedIR::any_reduces_axis(int axis) const {
  for (std::size_t i = 0; i < outputs_.size(); ++i) {
    if (is_reduced_axis(i, axis)) return true;
  }
  return false;
}

DType FusedIR::output_dtype(std::size_t i) const {
  const DType value = output_value_dtype(i);
  const auto& r = outputs_[i].reduction;
  return r ? fused_reduced_dtype(r->kind, value) : value;
}

bool FusedIR::has_checked_ops() const {
  return std::any_of(instrs_.begin(), instrs_.end(), [](const FusedInstr& in) {
    return in.kind == FusedOpKind::scalar && !is_float(in.dtype) &&
           (in.op == ScalarOp::int_div || in.op == ScalarOp::mod || in.op == ScalarOp::pow);
  });
}

std::string FusedIR::label() const {
  return fmt::format("fused kernel '{}' ({:016x})", name_, hash_);
}

// ---- builder ----

FusedIRBuilder::FusedIRBuilder(int rank, std::string name) : name_(std::move(name)), rank_(rank) {
  check_rank(name_, rank_);
}

int FusedIRBuilder::input(DType dtype) {
  return input(dtype, std::vector<bool>(static_cast<std::size_t>(rank_), false));
}

int FusedIRBuilder::input(DType dtype, std::vector<bool> broadcast) {
  FusedInput in{dtype, std::move(broadcast)};
  check_input(name_, rank_, in, inputs_.size());
  inputs_.push_back(std::move(in));
  return static_cast<int>(inputs_.size()) - 1;
}

int FusedIRBuilder::add(FusedInstr instr) {
  instrs_.push_back(std::move(instr));
  try {
    check_instr(name_, inputs_, instrs_, instrs_.size() - 1);
  } catch (...) {
    instrs_.pop_back();
    throw;
  }
  return static_cast<int>(instrs_.size()) - 1;
}

int FusedIRBuilder::load(int input) {
  FusedInstr in;
  in.kind = FusedOpKind::load;
  in.input = input;
  in.dtype = input >= 0 && static_cast<std::size_t>(input) < inputs_.size()
                 ? inputs_[static_cast<std::size_t>(input)].dtype
                 : DType::float32;
  return add(std::move(in));
}

int FusedIRBuilder::constant(double value, DType dtype) {
  FusedInstr in;
  in.kind = FusedOpKind::constant;
  in.value = value;
  in.dtype = dtype;
  return add(std::move(in));
}

int FusedIRBuilder::op(ScalarOp scalar_op, std::vector<int> args) {
  FusedInstr in;
  in.kind = FusedOpKind::scalar;
  in.op = scalar_op;
  const std::size_t first = scalar_op == ScalarOp::where ? 1 : 0;
  DType operand = DType::float32;
  if (args.size() > first && args[first] >= 0 &&
      static_cast<std::size_t>(args[first]) < instrs_.size()) {
    operand = instrs_[static_cast<std::size_t>(args[first])].dtype;
  }
  in.dtype = scalar_op_result_dtype(scalar_op, operand);
  in.args = std::move(args);
  return add(std::move(in));
}

int FusedIRBuilder::cast(int value, DType dtype) {
  FusedInstr in;
  in.kind = FusedOpKind::cast;
  in.dtype = dtype;
  in.args = {value};
  return add(std::move(in));
}

void FusedIRBuilder::output(int value) {
  check_output(value);
  outputs_.emplace_back(value);
  plain_.push_back(true);
}

void FusedIRBuilder::output(int value, FusedReduceKind kind, std::vector<int> axes, bool keepdims) {
  check_output(value);
  FusedReduction reduction{kind, checked_axes(name_, rank_, std::move(axes)), keepdims};
  check_reduction_dtype(name_, kind, instrs_[static_cast<std::size_t>(value)].dtype,
                        outputs_.size());
  outputs_.emplace_back(value, std::move(reduction));
  plain_.push_back(false);
}

void FusedIRBuilder::check_output(int value) const {
  if (value < 0 || static_cast<std::size_t>(value) >= instrs_.size()) {
    throw ValueError(
        fmt::format("fused kernel '{}': output refers to %{}, which is out of range "
                    "(the kernel has {} instructions)",
                    name_, value, instrs_.size()));
  }
}

void FusedIRBuilder::reduce(FusedReduceKind kind, std::vector<int> axes, bool keepdims) {
  reduction_ = FusedReduction{kind, checked_axes(name_, rank_, std::move(axes)), keepdims};
}

DType FusedIRBuilder::dtype(int value) const {
  if (value < 0 || static_cast<std::size_t>(value) >= instrs_.size()) {
    throw ValueError(fmt::format("fused kernel '{}': no value %{}", name_, value));
  }
  return instrs_[static_cast<std::size_t>(value)].dtype;
}

FusedIR FusedIRBuilder::build() const {
  std::vector<FusedOutput> outputs = outputs_;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    if (plain_[k]) outputs[k].reduction = reduction_;
  }
  return FusedIR(name_, rank_, inputs_, instrs_, std::move(outputs));
}

}  // namespace convgraph::codegen
