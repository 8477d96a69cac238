// CPU kernels of Elemwise and Cast. Kept apart from the op definitions because every ScalarOp is
// instantiated for every dtype it accepts, which is most of the compile time of the family; the
// instantiations are spread over elemwise_kernels_{arith,compare,math}.cpp (elemwise_loops.hpp),
// and this file checks the arguments and dispatches.
#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/elemwise_loops.hpp"

namespace convgraph {
namespace {

using namespace elemwise_detail;

// Checks what the kernels rely on; the ops check the same with better messages first.
void check_kernel_arguments(ScalarOp op, const std::vector<Tensor>& inputs, const Tensor& output) {
  const std::string label = op_label(op);
  if (static_cast<int>(inputs.size()) != scalar_op_arity(op)) {
    throw ValueError(
        fmt::format("{}: {} inputs given, {} expected", label, inputs.size(), scalar_op_arity(op)));
  }
  if (!output.defined() || !output.device().is_cpu()) {
    throw ValueError(fmt::format("{}: the output must be an allocated CPU tensor", label));
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined()) throw ValueError(fmt::format("{}: input {} is undefined", label, i));
    if (!input.device().is_cpu()) {
      throw UnsupportedError(fmt::format("{}: input {} is on {}; this kernel runs on the CPU",
                                         label, i, input.device().str()));
    }
    const std::size_t rank = output.shape().size();
    bool fits = input.shape().size() <= rank;
    for (std::size_t a = 0; fits && a < input.shape().size(); ++a) {
      const std::int64_t d = input.shape()[input.shape().size() - 1 - a];
      fits = d == 1 || d == output.shape()[rank - 1 - a];
    }
    if (!fits) {
      throw ShapeError(
          fmt::format("{}: input {} of shape {} does not broadcast to the output "
                      "shape {}",
                      label, i, shape_str(input.shape()), shape_str(output.shape())));
    }
  }
  const bool is_where = op == ScalarOp::where;
  const DType dtype = inputs[is_where ? 1 : 0].dtype();
  for (std::size_t i = is_where ? 1 : 0; i < inputs.size(); ++i) {
    if (inputs[i].dtype() != dtype) {
      throw TypeError(fmt::format("{}: input {} has dtype {} but input {} has {}", label, i,
                                  dtype_name(inputs[i].dtype()), is_where ? 1 : 0,
                                  dtype_name(dtype)));
    }
  }
  if (is_where && inputs[0].dtype() != DType::boolean) {
    throw TypeError(fmt::format("{}: the condition (input 0) has dtype {}, expected bool", label,
                                dtype_name(inputs[0].dtype())));
  }
  const DType expected = scalar_op_is_comparison(op) || op == ScalarOp::logical_and ||
                                 op == ScalarOp::logical_or || op == ScalarOp::logical_not
                             ? DType::boolean
                             : dtype;
  if (output.dtype() != expected) {
    throw TypeError(fmt::format("{}: the output has dtype {}, expected {}", label,
                                dtype_name(output.dtype()), dtype_name(expected)));
  }
}

// float -> integer saturates and maps NaN to 0 (a plain conversion would be undefined there).
template <typename D, typename S>
D cast_value(S value) {
  using SC = compute_t<S>;
  const SC v = convert<SC>(value);
  if constexpr (std::is_same_v<D, bool>) {
    return v != SC(0);
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<SC>) {
    if (v != v) return D(0);
    // The bounds as SC round outward (2^31 - 1 becomes 2^31), so every value strictly inside
    // them converts without overflow.
    if (v <= static_cast<SC>(std::numeric_limits<D>::min())) return std::numeric_limits<D>::min();
    if (v >= static_cast<SC>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return convert<D>(v);
  }
}

}  // namespace

void elemwise_kernel(ScalarOp op, const std::vector<Tensor>& inputs, Tensor& output) {
  check_kernel_arguments(op, inputs, output);
  switch (op) {
    case ScalarOp::add:
      return run_scalar_op<ScalarOp::add>(inputs, output);
    case ScalarOp::sub:
      return run_scalar_op<ScalarOp::sub>(inputs, output);
    case ScalarOp::mul:
      return run_scalar_op<ScalarOp::mul>(inputs, output);
    case ScalarOp::true_div:
      return run_scalar_op<ScalarOp::true_div>(inputs, output);
    case ScalarOp::int_div:
      return run_scalar_op<ScalarOp::int_div>(inputs, output);
    case ScalarOp::mod:
      return run_scalar_op<ScalarOp::mod>(inputs, output);
    case ScalarOp::pow:
      return run_scalar_op<ScalarOp::pow>(inputs, output);
    case ScalarOp::maximum:
      return run_scalar_op<ScalarOp::maximum>(inputs, output);
    case ScalarOp::minimum:
      return run_scalar_op<ScalarOp::minimum>(inputs, output);
    case ScalarOp::eq:
      return run_scalar_op<ScalarOp::eq>(inputs, output);
    case ScalarOp::neq:
      return run_scalar_op<ScalarOp::neq>(inputs, output);
    case ScalarOp::lt:
      return run_scalar_op<ScalarOp::lt>(inputs, output);
    case ScalarOp::le:
      return run_scalar_op<ScalarOp::le>(inputs, output);
    case ScalarOp::gt:
      return run_scalar_op<ScalarOp::gt>(inputs, output);
    case ScalarOp::ge:
      return run_scalar_op<ScalarOp::ge>(inputs, output);
    case ScalarOp::logical_and:
      return run_scalar_op<ScalarOp::logical_and>(inputs, output);
    case ScalarOp::logical_or:
      return run_scalar_op<ScalarOp::logical_or>(inputs, output);
    case ScalarOp::logical_not:
      return run_scalar_op<ScalarOp::logical_not>(inputs, output);
    case ScalarOp::neg:
      return run_scalar_op<ScalarOp::neg>(inputs, output);
    case ScalarOp::abs:
      return run_scalar_op<ScalarOp::abs>(inputs, output);
    case ScalarOp::sign:
      return run_scalar_op<ScalarOp::sign>(inputs, output);
    case ScalarOp::square:
      return run_scalar_op<ScalarOp::square>(inputs, output);
    case ScalarOp::exp:
      return run_scalar_op<ScalarOp::exp>(inputs, output);
    case ScalarOp::log:
      return run_scalar_op<ScalarOp::log>(inputs, output);
    case ScalarOp::log1p:
      return run_scalar_op<ScalarOp::log1p>(inputs, output);
    case ScalarOp::sqrt:
      return run_scalar_op<ScalarOp::sqrt>(inputs, output);
    case ScalarOp::relu:
      return run_scalar_op<ScalarOp::relu>(inputs, output);
    case ScalarOp::sigmoid:
      return run_scalar_op<ScalarOp::sigmoid>(inputs, output);
    case ScalarOp::tanh:
      return run_scalar_op<ScalarOp::tanh>(inputs, output);
    case ScalarOp::softplus:
      return run_scalar_op<ScalarOp::softplus>(inputs, output);
    case ScalarOp::where:
      return run_scalar_op<ScalarOp::where>(inputs, output);
  }
  throw ValueError("elemwise_kernel: invalid ScalarOp value");
}

void cast_kernel(const Tensor& input, Tensor& output) {
  if (!input.defined() || !output.defined()) throw ValueError("cast_kernel: undefined tensor");
  if (input.shape() != output.shape()) {
    throw ShapeError(fmt::format("cast_kernel: input shape {} differs from output shape {}",
                                 shape_str(input.shape()), shape_str(output.shape())));
  }
  if (!input.device().is_cpu() || !output.device().is_cpu()) {
    throw UnsupportedError("cast_kernel: runs on CPU tensors only");
  }
  const std::vector<Tensor> inputs{input};
  dispatch_dtype(output.dtype(), [&]<typename D>() {
    dispatch_dtype(input.dtype(), [&]<typename S>() {
      D* out = output.data<D>();
      const S* in = input.data<S>();
      for_each_chunk<2>(inputs, output,
                        [&](const std::array<std::int64_t, 2>& off, std::int64_t n,
                            const std::array<std::int64_t, 2>& st) {
                          D* o = out + off[0];
                          const S* a = in + off[1];
                          if (st[0] == 1 && st[1] == 1) {
                            for (std::int64_t i = 0; i < n; ++i) o[i] = cast_value<D>(a[i]);
                          } else {
                            for (std::int64_t i = 0; i < n; ++i) {
                              o[i * st[0]] = cast_value<D>(a[i * st[1]]);
                            }
                          }
                        });
    });
  });
}

}  // namespace convgraph
