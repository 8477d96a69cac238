// The expression IR of a fused loop: what one generated kernel computes.
//
// A FusedIR describes a loop nest over an iteration space of RANK axes (the output shape, or the
// shape being reduced). It reads N inputs, runs a list of SSA instructions per element and writes
// one or more outputs. Each output is either elementwise (the whole iteration shape) or reduced
// over a set of axes of its own (a bias gradient is the sum over axes 0, 2, 3 of a [N, C, H, W]
// expression), so one pass over the data can write a gradient and its bias gradient together.
//
// Inputs are aligned to the right of the iteration axes, as numpy broadcasting does: an input of
// rank r <= RANK covers the last r axes, and BROADCAST[j] says its axis j has extent 1 and is
// repeated along the iteration axis it faces (bias [1, C, 1, 1] against [N, C, H, W] has
// broadcast {true, false, true, true}). Every other input axis must have the iteration extent.
//
// The instructions follow convgraph's elementwise ops exactly, with no implicit promotion: every
// operand of a ScalarOp has one dtype (for `where` the condition is bool and the branches share
// one dtype), the comparisons and logical ops give bool, and conversions are explicit `cast`s
// with cast()'s rules. A float16 value is rounded to float16 after every instruction, as a chain
// of unfused float16 ops would be. Arithmetic on integers wraps; integer int_div/mod by zero and
// integer pow with a negative exponent are errors reported when the kernel runs.
//
// The canonical text (to_string) names every input, instruction, output and the reduction in a
// fixed format; it is the cache key of the generated code, so two IRs with the same text compute
// the same thing. The kernel name is not part of it (it is only for messages).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/base/dtype.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"

namespace convgraph::codegen {

// The largest iteration rank a fused kernel accepts.
inline constexpr int kMaxFusedRank = 16;

struct FusedInput {
  DType dtype = DType::float32;
  // One flag per axis of the input (its rank), aligned to the right of the iteration axes: true
  // where the input has extent 1 and is broadcast.
  std::vector<bool> broadcast;
};

enum class FusedOpKind : std::uint8_t {
  load,      // the element of input INPUT at the current index
  constant,  // VALUE as DTYPE
  scalar,    // OP applied to ARGS
  cast,      // ARGS[0] converted to DTYPE by cast()'s rules
};

struct FusedInstr {
  FusedOpKind kind = FusedOpKind::load;
  // The dtype of the value this instruction defines. For load it must be the input's dtype, for
  // scalar the dtype OP gives its operands (checked by the IR).
  DType dtype = DType::float32;
  int input = -1;               // load
  double value = 0.0;           // constant (integral and exactly representable for integer dtypes)
  ScalarOp op = ScalarOp::add;  // scalar
  std::vector<int> args;        // scalar (scalar_op_arity(op) values), cast (one value)
};

enum class FusedReduceKind : std::uint8_t { sum, max, mean };

// A reduction of an output over AXES (iteration axes, sorted and distinct after validation).
// sum: floats keep their dtype, integers and bools give int64 (accumulated in int64, wrapping);
// max: any numeric dtype, NaN propagates, an empty axis is a ShapeError at run time;
// mean: floats only, the sum divided by the number of reduced elements.
// Float32 accumulates in float64 and float16 in float32, as the Reduce op does. KEEPDIMS keeps the
// reduced axes as extent 1 in the output's shape (the kernel accepts either shape; this says which
// one a fused node gives).
struct FusedReduction {
  FusedReduceKind kind = FusedReduceKind::sum;
  std::vector<int> axes;
  bool keepdims = false;
};

// One output of a kernel: the value (instruction index) it takes, written over the whole
// iteration shape, or reduced first when REDUCTION is set.
struct FusedOutput {
  FusedOutput(int value_ = 0, std::optional<FusedReduction> reduction_ = std::nullopt)  // NOLINT
      : value(value_), reduction(std::move(reduction_)) {}
  int value = 0;
  std::optional<FusedReduction> reduction;
};

std::string_view fused_reduce_name(FusedReduceKind kind);
// The dtype a reduction of KIND gives for values of dtype VALUE.
DType fused_reduced_dtype(FusedReduceKind kind, DType value);
// The dtype the reduction accumulates in (the JIT's and the interpreter's accumulator buffers).
DType fused_accumulator_dtype(FusedReduceKind kind, DType value);
// The dtype ScalarOp OP gives for operands of dtype OPERAND (for `where`, the branches' dtype).
DType scalar_op_result_dtype(ScalarOp op, DType operand);

// A validated IR. Construction throws TypeError (a dtype mismatch, an op given a dtype it does
// not accept), ValueError (wrong arity, an index out of range, a use before definition, no
// output, bad reduction axes, a constant not representable in its dtype) or ShapeError (a rank
// out of range), each naming the kernel and the instruction at fault.
class FusedIR {
 public:
  FusedIR(std::string name, int rank, std::vector<FusedInput> inputs,
          std::vector<FusedInstr> instrs, std::vector<FusedOutput> outputs);

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  const std::vector<FusedInput>& inputs() const { return inputs_; }
  const std::vector<FusedInstr>& instrs() const { return instrs_; }
  const std::vector<FusedOutput>& outputs() const { return outputs_; }
  // The value (instruction index) output I takes.
  int output_value(std::size_t i) const { return outputs_[i].value; }
  const std::optional<FusedReduction>& output_reduction(std::size_t i) const {
    return outputs_[i].reduction;
  }
  // Whether any output is reduced.
  bool has_reduction() const;
  // Whether output I reduces iteration axis AXIS.
  bool is_reduced_axis(std::size_t i, int axis) const;
  // Whether some output reduces iteration axis AXIS.
  bool any_reduces_axis(int axis) const;

  // The dtype of output I: its value's dtype, or the reduction's result dtype.
  DType output_dtype(std::size_t i) const;
  // The dtype the value of output I has before any reduction.
  DType output_value_dtype(std::size_t i) const {
    return instrs_[static_cast<std::size_t>(outputs_[i].value)].dtype;
  }
  // Whether any instruction can fail at run time (integer int_div, mod or pow).
  bool has_checked_ops() const;

  // The canonical text, the cache key; and a 64-bit hash of it (FNV-1a).
  const std::string& to_string() const { return text_; }
  std::uint64_t hash() const { return hash_; }
  // "kernel 'NAME' (hash 0123abcd...)" for messages.
  std::string label() const;

  bool operator==(const FusedIR& other) const { return text_ == other.text_; }

 private:
  void validate() const;

  std::string name_;
  int rank_ = 0;
  std::vector<FusedInput> inputs_;
  std::vector<FusedInstr> instrs_;
  std::vector<FusedOutput> outputs_;
  std::string text_;
  std::uint64_t hash_ = 0;
};

// Builds a FusedIR one instruction at a time; each method returns the index of what it added and
// checks its arguments at once (same errors as FusedIR's constructor), so a mistake is reported
// where it is made.
class FusedIRBuilder {
 public:
  explicit FusedIRBuilder(int rank, std::string name = "fused");

  // A new input of the iteration rank, nothing broadcast.
  int input(DType dtype);
  // A new input; BROADCAST as in FusedInput (its size is the input's rank, maybe 0).
  int input(DType dtype, std::vector<bool> broadcast);
  int load(int input);
  int constant(double value, DType dtype);
  int op(ScalarOp op, std::vector<int> args);
  int cast(int value, DType dtype);
  // Marks VALUE as the next output (elementwise, unless reduce() gives every such output a
  // reduction).
  void output(int value);
  // Marks VALUE as the next output, reduced over AXES.
  void output(int value, FusedReduceKind kind, std::vector<int> axes, bool keepdims = false);
  // Reduces every output added with output(VALUE), before or after this call, over AXES.
  void reduce(FusedReduceKind kind, std::vector<int> axes, bool keepdims = false);

  DType dtype(int value) const;
  FusedIR build() const;

 private:
  int add(FusedInstr instr);
  void check_output(int value) const;

  std::string name_;
  int rank_;
  std::vector<FusedInput> inputs_;
  std::vector<FusedInstr> instrs_;
  std::vector<FusedOutput> outputs_;
  std::optional<FusedReduction> reduction_;  // for the outputs added with output(VALUE)
  std::vector<bool> plain_;                  // per output: added with output(VALUE)
};

}  // namespace convgraph::codegen
