#include "codegen/fused_reference.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "support/test_util.hpp"

namespace convgraph::testing {
namespace {

using codegen::FusedIR;
using codegen::FusedIRBuilder;
using codegen::FusedOpKind;
using codegen::FusedReduceKind;

constexpr ScalarOp kAllOps[] = {
    ScalarOp::add,        ScalarOp::sub,         ScalarOp::mul,  ScalarOp::true_div,
    ScalarOp::int_div,    ScalarOp::mod,         ScalarOp::pow,  ScalarOp::maximum,
    ScalarOp::minimum,    ScalarOp::eq,          ScalarOp::neq,  ScalarOp::lt,
    ScalarOp::le,         ScalarOp::gt,          ScalarOp::ge,   ScalarOp::logical_and,
    ScalarOp::logical_or, ScalarOp::logical_not, ScalarOp::neg,  ScalarOp::abs,
    ScalarOp::sign,       ScalarOp::square,      ScalarOp::exp,  ScalarOp::log,
    ScalarOp::log1p,      ScalarOp::sqrt,        ScalarOp::relu, ScalarOp::sigmoid,
    ScalarOp::tanh,       ScalarOp::softplus,    ScalarOp::where};

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank, 1);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const std::int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[rank - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

// A view of a fresh random tensor with SHAPE whose layout is not contiguous: every other element
// of a wider buffer, or a transposed one.
Tensor strided_random(DType dtype, const Shape& shape, std::uint64_t seed, int style, double low,
                      double high) {
  if (style == 1 && !shape.empty()) {
    Shape wide = shape;
    wide.back() *= 2;
    return random_tensor(dtype, wide, seed, low, high).slice(-1, 0, wide.back(), 2);
  }
  if (style == 2 && shape.size() >= 2) {
    Shape swapped = shape;
    std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
    std::vector<int> perm(shape.size());
    for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int>(i);
    std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
    return random_tensor(dtype, swapped, seed, low, high).permute(perm);
  }
  return random_tensor(dtype, shape, seed, low, high);
}

}  // namespace

RandomFusedCase random_fused_case(std::uint64_t seed, RandomOutputs output_kind, Shape shape,
                                  bool floats_only) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const DType all_dtypes[] = {DType::float32, DType::float64, DType::float16, DType::int32,
                              DType::int8,    DType::int64,   DType::boolean, DType::float32};
  const DType float_dtypes[] = {DType::float32, DType::float64, DType::float32, DType::float64,
                                DType::float32, DType::float64, DType::float32, DType::float32};
  const DType* dtypes = floats_only ? float_dtypes : all_dtypes;
  if (shape.empty()) {
    const std::int64_t extents[] = {1, 2, 3, 5, 7, 9, 16, 33};
    const std::size_t rank = 1 + pick(4);
    for (std::size_t a = 0; a < rank; ++a) shape.push_back(extents[pick(8)]);
  }
  const int rank = static_cast<int>(shape.size());
  FusedIRBuilder b(rank, fmt::format("random{}", seed));
  std::vector<Tensor> inputs;
  std::vector<int> values;
  const std::size_t n_inputs = 1 + pick(3);
  for (std::size_t i = 0; i < n_inputs; ++i) {
    const DType dtype = dtypes[pick(8)];
    const std::size_t in_rank = rank - pick(static_cast<std::size_t>(rank) + 1) % 2;
    std::vector<bool> bcast(in_rank, false);
    Shape in_shape(in_rank);
    for (std::size_t j = 0; j < in_rank; ++j) {
      bcast[j] = pick(4) == 0;
      in_shape[j] = bcast[j] ? 1 : shape[shape.size() - in_rank + j];
    }
    const double low = is_float(dtype) ? -3.0 : -40.0, high = -low;
    inputs.push_back(
        strided_random(dtype, in_shape, seed * 31 + i, static_cast<int>(pick(3)), low, high));
    values.push_back(b.load(b.input(dtype, bcast)));
  }
  // Converts VALUE to a dtype DOMAIN_OK accepts, or returns it.
  auto cast_to = [&](int value, DType dtype) {
    return b.dtype(value) == dtype ? value : b.cast(value, dtype);
  };
  const std::size_t n_instrs = 2 + pick(7);
  for (std::size_t k = 0; k < n_instrs; ++k) {
    if (pick(6) == 0) {
      values.push_back(b.cast(values[pick(values.size())], dtypes[pick(8)]));
      continue;
    }
    if (pick(8) == 0) {
      const DType dtype = dtypes[pick(8)];
      const double v = dtype == DType::boolean ? 1.0 : is_float(dtype) ? 0.75 : 3.0;
      values.push_back(b.constant(v, dtype));
      continue;
    }
    const ScalarOp op = kAllOps[pick(std::size(kAllOps))];
    int a = values[pick(values.size())];
    DType t = b.dtype(a);
    const bool needs_float = op == ScalarOp::true_div || op == ScalarOp::exp ||
                             op == ScalarOp::log || op == ScalarOp::log1p || op == ScalarOp::sqrt ||
                             op == ScalarOp::sigmoid || op == ScalarOp::tanh ||
                             op == ScalarOp::softplus || op == ScalarOp::int_div ||
                             op == ScalarOp::mod || op == ScalarOp::pow;
    const bool needs_bool =
        op == ScalarOp::logical_and || op == ScalarOp::logical_or || op == ScalarOp::logical_not;
    const bool any = op == ScalarOp::maximum || op == ScalarOp::minimum || op == ScalarOp::where ||
                     scalar_op_is_comparison(op);
    if (needs_float && !is_float(t)) t = pick(2) ? DType::float32 : DType::float64;
    if (needs_bool) t = DType::boolean;
    if (!needs_float && !needs_bool && !any && t == DType::boolean) t = DType::int32;
    a = cast_to(a, t);
    if (op == ScalarOp::where) {
      const int c = cast_to(values[pick(values.size())], DType::boolean);
      const int other = cast_to(values[pick(values.size())], t);
      values.push_back(b.op(op, {c, a, other}));
    } else if (scalar_op_arity(op) == 2) {
      values.push_back(b.op(op, {a, cast_to(values[pick(values.size())], t)}));
    } else {
      values.push_back(b.op(op, {a}));
    }
  }
  auto random_axes = [&] {
    std::vector<int> axes;
    for (int a = 0; a < rank; ++a) {
      if (pick(2) == 0) axes.push_back(a);
    }
    if (axes.empty()) axes.push_back(static_cast<int>(pick(static_cast<std::size_t>(rank))));
    return axes;
  };
  // VALUE in a dtype a reduction of KIND accepts.
  auto reducible = [&](int v, FusedReduceKind kind) {
    if (kind == FusedReduceKind::mean && !is_float(b.dtype(v))) return b.cast(v, DType::float32);
    if (kind == FusedReduceKind::max && b.dtype(v) == DType::boolean) {
      return b.cast(v, DType::int32);
    }
    return v;
  };
  if (output_kind == RandomOutputs::mixed) {
    // An elementwise output first or last, and reductions of it and of other values: the
    // gradient next to its bias gradient, and more.
    const std::size_t n_outputs = 2 + pick(3);
    const std::size_t elementwise = pick(2) == 0 ? 0 : n_outputs - 1;
    for (std::size_t o = 0; o < n_outputs; ++o) {
      const int v = values[values.size() - 1 - (o % 2 == 0 ? 0 : pick(values.size()))];
      if (o == elementwise || (o != 0 && o != n_outputs - 1 && pick(3) == 0)) {
        b.output(v);
        continue;
      }
      const auto kind = static_cast<FusedReduceKind>(pick(3));
      b.output(reducible(v, kind), kind, random_axes(), pick(2) == 0);
    }
    return RandomFusedCase{b.build(), shape, std::move(inputs)};
  }
  std::optional<FusedReduceKind> kind;
  if (output_kind == RandomOutputs::reduced) kind = static_cast<FusedReduceKind>(pick(3));
  const std::size_t n_outputs = 1 + pick(2);
  for (std::size_t o = 0; o < n_outputs; ++o) {
    int v = values[values.size() - 1 - o % values.size()];
    if (kind) v = reducible(v, *kind);
    b.output(v);
  }
  if (kind) b.reduce(*kind, random_axes());
  return RandomFusedCase{b.build(), shape, std::move(inputs)};
}

std::vector<Tensor> reference_outputs(const FusedIR& ir, const std::vector<Tensor>& inputs,
                                      const Shape& shape) {
  std::vector<Tensor> values;
  for (const codegen::FusedInstr& in : ir.instrs()) {
    switch (in.kind) {
      case FusedOpKind::load:
        values.push_back(inputs[static_cast<std::size_t>(in.input)]);
        break;
      case FusedOpKind::constant:
        values.push_back(Tensor::scalar(in.dtype, in.value));
        break;
      case FusedOpKind::cast: {
        const Tensor& x = values[static_cast<std::size_t>(in.args[0])];
        Tensor out = Tensor::empty(in.dtype, x.shape());
        cast_kernel(x, out);
        values.push_back(out);
        break;
      }
      case FusedOpKind::scalar: {
        std::vector<Tensor> args;
        Shape out_shape;
        for (int a : in.args) {
          args.push_back(values[static_cast<std::size_t>(a)]);
          out_shape = broadcast_shapes(out_shape, args.back().shape());
        }
        Tensor out = Tensor::empty(in.dtype, out_shape);
        elemwise_kernel(in.op, args, out);
        values.push_back(out);
        break;
      }
    }
  }
  std::vector<Tensor> outputs;
  for (const codegen::FusedOutput& out : ir.outputs()) {
    Tensor value = values[static_cast<std::size_t>(out.value)];
    if (value.shape() != shape) {  // broadcast to the iteration shape: maximum(v, v) is v
      Tensor full = Tensor::empty(value.dtype(), shape);
      elemwise_kernel(ScalarOp::maximum, {value, value}, full);
      value = full;
    }
    if (const auto& r = out.reduction) {
      const ReduceOp op = r->kind == FusedReduceKind::sum   ? ReduceOp::sum
                          : r->kind == FusedReduceKind::max ? ReduceOp::max
                                                            : ReduceOp::mean;
      std::vector<Tensor> reduced(1);
      Reduce(op, r->axes, r->keepdims).perform({value}, reduced);
      value = reduced[0];
    }
    outputs.push_back(value);
  }
  return outputs;
}

std::string compare_tensors(const Tensor& actual, const Tensor& expected, int ulps, double rtol) {
  if (actual.dtype() != expected.dtype() || actual.shape() != expected.shape()) {
    return fmt::format("dtype/shape {} {} vs expected {} {}", dtype_name(actual.dtype()),
                       shape_str(actual.shape()), dtype_name(expected.dtype()),
                       shape_str(expected.shape()));
  }
  const Tensor a = actual.cast(DType::float64).contiguous();
  const Tensor e = expected.cast(DType::float64).contiguous();
  const Tensor ai = is_float(actual.dtype()) ? Tensor() : actual.cast(DType::int64).contiguous();
  const Tensor ei = is_float(actual.dtype()) ? Tensor() : expected.cast(DType::int64).contiguous();
  const double* pa = a.data<double>();
  const double* pe = e.data<double>();
  const double ulp = actual.dtype() == DType::float16   ? std::ldexp(1.0, -10)
                     : actual.dtype() == DType::float32 ? std::ldexp(1.0, -23)
                                                        : std::ldexp(1.0, -52);
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (!is_float(actual.dtype())) {
      if (ai.data<std::int64_t>()[i] != ei.data<std::int64_t>()[i]) {
        return fmt::format("element {}: {} vs expected {}", i, ai.data<std::int64_t>()[i],
                           ei.data<std::int64_t>()[i]);
      }
      continue;
    }
    const double x = pa[i], y = pe[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    if (x == y && std::signbit(x) == std::signbit(y)) continue;
    if (ulps > 0 || rtol > 0) {
      const double scale = std::max(std::abs(y), std::ldexp(1.0, -14));
      const double tol = std::max(ulps * ulp * scale, rtol * scale);
      if (std::isfinite(x) && std::isfinite(y) && std::abs(x - y) <= tol) continue;
      if (x == y) continue;  // +0 vs -0 within a tolerance
    }
    return fmt::format("element {} (of {}): {} vs expected {}", i, a.numel(), x, y);
  }
  return "";
}

}  // namespace convgraph::testing
