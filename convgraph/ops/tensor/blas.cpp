#include "convgraph/ops/tensor/blas.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <type_traits>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/runtime/blas.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

// ---- build-time helpers ----

void check_not_bool(std::string_view what, const Variable& v) {
  if (is_bool(v.dtype())) {
    throw TypeError(
        fmt::format("{}: bool operands are not supported ({} is {}); cast to a numeric "
                    "dtype first",
                    what, v.label(), v.type().str()));
  }
}

// Both operands in their common dtype.
std::pair<Variable, Variable> promoted(const Variable& a, const Variable& b) {
  const DType common = promote(a.dtype(), b.dtype());
  return {a.dtype() == common ? a : cast(a, common), b.dtype() == common ? b : cast(b, common)};
}

// The shapes of the operands of a product do not line up along the contracted axis. WHAT
// prefixes the message when not empty (at run time the executor names the node instead).
[[noreturn]] void throw_not_aligned(std::string_view what, const std::string& a_shape,
                                    const std::string& b_shape, int a_axis, int b_axis,
                                    const std::string& a_dim, const std::string& b_dim) {
  throw ShapeError(
      fmt::format("{}{}shapes {} and {} are not aligned: dim {} of the first operand "
                  "({}) != dim {} of the second ({})",
                  what, what.empty() ? "" : ": ", a_shape, b_shape, a_axis, a_dim, b_axis, b_dim));
}

void check_inner_static(std::string_view what, const TensorType& a, const TensorType& b) {
  const int a_axis = a.rank() - 1;
  const int b_axis = b.rank() >= 2 ? b.rank() - 2 : 0;
  const StaticDim da = a.dims[static_cast<std::size_t>(a_axis)];
  const StaticDim db = b.dims[static_cast<std::size_t>(b_axis)];
  if (da && db && *da != *db) {
    throw_not_aligned(what, a.str(), b.str(), a_axis, b_axis, std::to_string(*da),
                      std::to_string(*db));
  }
}

// X with its last two axes swapped.
Variable swap_last_two(const Variable& x) {
  std::vector<int> perm(static_cast<std::size_t>(x.ndim()));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  return transpose(x, perm);
}

Variable add_defined(const Variable& a, const Variable& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

// ---- run-time kernels ----

// A matrix as rows x cols elements with strides (in elements) S0 between rows, S1 between columns.
template <typename T>
struct MatrixView {
  const T* data;
  std::int64_t rows, cols, s0, s1;
};

// How BLAS can read a strided matrix: as stored row-major (TRANS false, LD the row stride) or as
// the transpose of a row-major matrix (TRANS true, LD the column stride); OK false when neither
// (zero, negative or overlapping strides), and the operand must be copied first.
struct BlasLayout {
  bool ok = false;
  bool trans = false;
  std::int64_t ld = 1;
};

BlasLayout blas_layout(std::int64_t rows, std::int64_t cols, std::int64_t s0, std::int64_t s1) {
  if ((s1 == 1 || cols <= 1) && (rows <= 1 || s0 >= std::max<std::int64_t>(1, cols))) {
    return {true, false, rows <= 1 ? std::max<std::int64_t>(1, cols) : s0};
  }
  if ((s0 == 1 || rows <= 1) && (cols <= 1 || s1 >= std::max<std::int64_t>(1, rows))) {
    return {true, true, cols <= 1 ? std::max<std::int64_t>(1, rows) : s1};
  }
  return {};
}

// The last two axes of T, as BLAS would need them.
bool blas_readable(const Tensor& t) {
  const int r = t.rank();
  const std::int64_t rows = r >= 2 ? t.shape()[static_cast<std::size_t>(r - 2)] : 1;
  const std::int64_t s0 = r >= 2 ? t.strides()[static_cast<std::size_t>(r - 2)] : 0;
  return blas_layout(rows, t.shape().back(), s0, t.strides().back()).ok;
}

template <typename T>
constexpr bool uses_blas = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Strides of 1-element axes are arbitrary; BLAS wants a positive increment.
std::int64_t increment(std::int64_t stride, std::int64_t length) {
  return length <= 1 ? 1 : stride;
}

// C[m, n] (contiguous) = A[m, k] B[k, n]. float32/float64 go to BLAS (gemv when one side is a
// single row or column, gemm otherwise; both views must be BLAS-readable); float16 accumulates in
// float, integers in int64 with wrap-around, as numpy.
template <typename T>
void product_2d(const MatrixView<T>& a, const MatrixView<T>& b, T* c) {
  const std::int64_t m = a.rows, k = a.cols, n = b.cols;
  if constexpr (uses_blas<T>) {
    const BlasLayout la = blas_layout(a.rows, a.cols, a.s0, a.s1);
    const BlasLayout lb = blas_layout(b.rows, b.cols, b.s0, b.s1);
    if (n == 1 && m > 1) {
      // y[m] = A x with x the column of B.
      if (la.trans) {
        gemv(true, k, m, T(1), a.data, la.ld, b.data, increment(b.s0, k), T(0), c, 1);
      } else {
        gemv(false, m, k, T(1), a.data, la.ld, b.data, increment(b.s0, k), T(0), c, 1);
      }
    } else if (m == 1 && n > 1) {
      // y[n] = B^T x with x the row of A.
      if (lb.trans) {
        gemv(false, n, k, T(1), b.data, lb.ld, a.data, increment(a.s1, k), T(0), c, 1);
      } else {
        gemv(true, k, n, T(1), b.data, lb.ld, a.data, increment(a.s1, k), T(0), c, 1);
      }
    } else {
      gemm(la.trans, lb.trans, m, n, k, T(1), a.data, la.ld, b.data, lb.ld, T(0), c, n);
    }
  } else {
    using Acc = std::conditional_t<std::is_same_v<T, Half>, float, std::int64_t>;
    std::vector<Acc> row(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < m; ++i) {
      std::fill(row.begin(), row.end(), Acc(0));
      for (std::int64_t p = 0; p < k; ++p) {
        const Acc aip = convert<Acc>(convert<compute_t<T>>(a.data[i * a.s0 + p * a.s1]));
        const T* brow = b.data + p * b.s0;
        for (std::int64_t j = 0; j < n; ++j) {
          const Acc bpj = convert<Acc>(convert<compute_t<T>>(brow[j * b.s1]));
          if constexpr (std::is_same_v<Acc, std::int64_t>) {
            // Signed overflow is undefined; numpy wraps, and so does this.
            row[static_cast<std::size_t>(j)] = static_cast<std::int64_t>(
                static_cast<std::uint64_t>(row[static_cast<std::size_t>(j)]) +
                static_cast<std::uint64_t>(aip) * static_cast<std::uint64_t>(bpj));
          } else {
            row[static_cast<std::size_t>(j)] += aip * bpj;
          }
        }
      }
      for (std::int64_t j = 0; j < n; ++j) {
        c[i * n + j] = convert<T>(row[static_cast<std::size_t>(j)]);
      }
    }
  }
}

// A BLAS-readable version of T (a copy only when needed; other dtypes are read as they are).
Tensor prepared(const Tensor& t) {
  if ((t.dtype() == DType::float32 || t.dtype() == DType::float64) && !blas_readable(t)) {
    return t.contiguous();
  }
  return t;
}

template <typename T>
MatrixView<T> matrix_of(const Tensor& t, bool as_column) {
  const int r = t.rank();
  if (r == 1) {
    const std::int64_t len = t.shape()[0], s = t.strides()[0];
    return as_column ? MatrixView<T>{t.data<T>(), len, 1, s, 1}
                     : MatrixView<T>{t.data<T>(), 1, len, len, s};
  }
  const auto last = static_cast<std::size_t>(r - 1);
  return {t.data<T>(), t.shape()[last - 1], t.shape()[last], t.strides()[last - 1],
          t.strides()[last]};
}

void check_operands(std::string_view what, const std::vector<Tensor>& inputs) {
  if (inputs.size() != 2 || !inputs[0].defined() || !inputs[1].defined()) {
    throw ValueError(fmt::format("{}: expected 2 defined inputs", what));
  }
  if (inputs[0].dtype() != inputs[1].dtype() || is_bool(inputs[0].dtype())) {
    throw TypeError(fmt::format("{}: operands of dtypes {} and {}; expected one non-bool dtype",
                                what, dtype_name(inputs[0].dtype()),
                                dtype_name(inputs[1].dtype())));
  }
}

std::string types_str(const std::vector<Variable>& inputs) {
  std::vector<std::string> parts;
  for (const auto& v : inputs) parts.push_back(fmt::format("{} {}", v.label(), v.type().str()));
  return fmt::format("{}", fmt::join(parts, ", "));
}

void check_operand_types(std::string_view what, const std::vector<Variable>& inputs) {
  if (inputs.size() != 2) {
    throw ValueError(fmt::format("{}: expected 2 inputs, got {}", what, inputs.size()));
  }
  for (const auto& v : inputs) check_not_bool(what, v);
  if (inputs[0].dtype() != inputs[1].dtype()) {
    throw TypeError(
        fmt::format("{}: operands must have one dtype, got {}", what, types_str(inputs)));
  }
  if (inputs[0].type().device != inputs[1].type().device) {
    throw TypeError(fmt::format("{}: operands on different devices: {}", what, types_str(inputs)));
  }
}

}  // namespace

// ---- dot ----

Variable dot(const Variable& a, const Variable& b) {
  for (const auto* v : {&a, &b}) {
    if (v->ndim() < 1 || v->ndim() > 2) {
      throw TypeError(
          fmt::format("dot: operands must have rank 1 or 2; {} has type {} (use "
                      "matmul for batches, mul for scalars)",
                      v->label(), v->type().str()));
    }
    check_not_bool("dot", *v);
  }
  check_inner_static("dot", a.type(), b.type());
  auto [pa, pb] = promoted(a, b);
  return apply(std::make_shared<Dot>(), {pa, pb});
}

bool Dot::equals(const Op& other) const {
  return dynamic_cast<const Dot*>(&other) != nullptr;
}

std::size_t Dot::hash() const {
  return std::hash<std::string>{}("Dot");
}

std::vector<TensorType> Dot::make_outputs(const std::vector<Variable>& inputs) const {
  check_operand_types("Dot", inputs);
  const TensorType& a = inputs[0].type();
  const TensorType& b = inputs[1].type();
  if (a.rank() < 1 || a.rank() > 2 || b.rank() < 1 || b.rank() > 2) {
    throw TypeError(fmt::format("Dot: operands must have rank 1 or 2, got {}", types_str(inputs)));
  }
  check_inner_static("Dot", a, b);
  StaticShape dims;
  if (a.rank() == 2) dims.push_back(a.dims[0]);
  if (b.rank() == 2) dims.push_back(b.dims[1]);
  return {TensorType(a.dtype, std::move(dims), a.device)};
}

std::vector<ShapeDims> Dot::infer_shape(const Node& /*node*/,
                                        const std::vector<ShapeDims>& input_shapes) const {
  const ShapeDims& a = input_shapes.at(0);
  const ShapeDims& b = input_shapes.at(1);
  ShapeDims out;
  if (a.size() == 2) out.push_back(a[0]);
  if (b.size() == 2) out.push_back(b[1]);
  return {out};
}

std::vector<Variable> Dot::grad(const std::vector<Variable>& inputs,
                                const std::vector<Variable>& /*outputs*/,
                                const std::vector<Variable>& output_grads) const {
  const Variable& a = inputs[0];
  const Variable& b = inputs[1];
  // Integer products are piecewise constant in their operands: zero gradient (disconnected).
  if (!is_float(a.dtype())) return {Variable(), Variable()};
  Variable g = output_grads[0];
  if (g.dtype() != a.dtype()) g = cast(g, a.dtype());
  const int ra = a.ndim(), rb = b.ndim();
  if (ra == 1 && rb == 1) return {mul(g, b), mul(g, a)};
  if (ra == 2 && rb == 1) {
    // out[i] = sum_p a[i, p] b[p]: ga = outer(g, b), gb = a^T g.
    return {mul(dimshuffle(g, {0, -1}), dimshuffle(b, {-1, 0})), dot(transpose(a), g)};
  }
  if (ra == 1 && rb == 2) {
    // out[j] = sum_p a[p] b[p, j]: ga = b g, gb = outer(a, g).
    return {dot(b, g), mul(dimshuffle(a, {0, -1}), dimshuffle(g, {-1, 0}))};
  }
  return {dot(g, transpose(b)), dot(transpose(a), g)};
}

std::vector<Variable> Dot::r_op(const std::vector<Variable>& inputs,
                                const std::vector<Variable>& /*outputs*/,
                                const std::vector<Variable>& eval_points) const {
  if (!is_float(inputs[0].dtype())) return {Variable()};
  Variable result;
  if (eval_points[0].defined()) result = dot(eval_points[0], inputs[1]);
  if (eval_points[1].defined()) result = add_defined(result, dot(inputs[0], eval_points[1]));
  return {result};
}

void Dot::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  check_operands("Dot", inputs);
  const Tensor a = prepared(inputs[0]);
  const Tensor b = prepared(inputs[1]);
  const int ra = a.rank(), rb = b.rank();
  if (ra < 1 || ra > 2 || rb < 1 || rb > 2) {
    throw TypeError(fmt::format("Dot: operands must have rank 1 or 2, got shapes {} and {}",
                                shape_str(a.shape()), shape_str(b.shape())));
  }
  // numpy.dot contracts the last axis of a with the first of b (its only one when rank 1).
  if (a.shape().back() != b.shape()[0]) {
    throw_not_aligned("", shape_str(a.shape()), shape_str(b.shape()), ra - 1, 0,
                      std::to_string(a.shape().back()), std::to_string(b.shape()[0]));
  }
  Shape out_shape;
  if (ra == 2) out_shape.push_back(a.shape()[0]);
  if (rb == 2) out_shape.push_back(b.shape()[1]);
  Tensor out = output_buffer(outputs.at(0), a.dtype(), out_shape);
  dispatch_dtype(a.dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      product_2d(matrix_of<T>(a, false), matrix_of<T>(b, true), out.data<T>());
    }
  });
  outputs.at(0) = std::move(out);
}

// ---- matmul ----

Variable matmul(const Variable& a, const Variable& b) {
  for (const auto* v : {&a, &b}) {
    if (v->ndim() < 1) {
      throw TypeError(
          fmt::format("matmul: operands must have rank >= 1; {} has type {} (use mul "
                      "for scalars)",
                      v->label(), v->type().str()));
    }
    check_not_bool("matmul", *v);
  }
  check_inner_static("matmul", a.type(), b.type());
  auto [pa, pb] = promoted(a, b);
  if (a.ndim() <= 2 && b.ndim() <= 2) return dot(pa, pb);
  // Rank-1 operands become a row (a) or a column (b), and that axis is dropped from the result.
  const Variable a2 = a.ndim() == 1 ? dimshuffle(pa, {-1, 0}) : pa;
  const Variable b2 = b.ndim() == 1 ? dimshuffle(pb, {0, -1}) : pb;
  Variable out = apply(MatMul::for_types(a2.type(), b2.type()), {a2, b2});
  if (a.ndim() == 1 || b.ndim() == 1) {
    const int r = out.ndim();
    std::vector<int> pattern;
    for (int axis = 0; axis < r - 2; ++axis) pattern.push_back(axis);
    if (a.ndim() != 1) pattern.push_back(r - 2);
    if (b.ndim() != 1) pattern.push_back(r - 1);
    out = dimshuffle(out, pattern);
  }
  return out;
}

MatMul::MatMul(std::vector<bool> broadcast_a, std::vector<bool> broadcast_b)
    : broadcast_a_(std::move(broadcast_a)), broadcast_b_(std::move(broadcast_b)) {
  if (broadcast_a_.size() != broadcast_b_.size()) {
    throw ValueError(fmt::format("MatMul: broadcast patterns of different lengths ({} and {})",
                                 broadcast_a_.size(), broadcast_b_.size()));
  }
  for (std::size_t i = 0; i < broadcast_a_.size(); ++i) {
    if (broadcast_a_[i] && broadcast_b_[i]) {
      throw ValueError(fmt::format("MatMul: batch axis {} cannot broadcast both operands", i));
    }
  }
}

std::shared_ptr<const MatMul> MatMul::for_types(const TensorType& a, const TensorType& b) {
  if (a.rank() < 2 || b.rank() < 2) {
    throw TypeError(
        fmt::format("MatMul: operands must have rank >= 2, got {} and {}", a.str(), b.str()));
  }
  check_inner_static("MatMul", a, b);
  const int batch = std::max(a.rank(), b.rank()) - 2;
  std::vector<bool> ba(static_cast<std::size_t>(batch)), bb(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) {
    const int ia = i - (batch - (a.rank() - 2));
    const int ib = i - (batch - (b.rank() - 2));
    const auto ui = static_cast<std::size_t>(i);
    if (ia < 0) {
      ba[ui] = true;
      continue;
    }
    if (ib < 0) {
      bb[ui] = true;
      continue;
    }
    const StaticDim da = a.dims[static_cast<std::size_t>(ia)];
    const StaticDim db = b.dims[static_cast<std::size_t>(ib)];
    if (da == StaticDim{1} && db != StaticDim{1}) {
      ba[ui] = true;
    } else if (db == StaticDim{1} && da != StaticDim{1}) {
      bb[ui] = true;
    } else if (da && db && *da != *db) {
      throw ShapeError(
          fmt::format("MatMul: batch dims of {} and {} do not broadcast: dim {} of "
                      "the first ({}) != dim {} of the second ({})",
                      a.str(), b.str(), ia, *da, ib, *db));
    }
  }
  return std::make_shared<MatMul>(std::move(ba), std::move(bb));
}

std::string MatMul::str() const {
  auto listed = [](const std::vector<bool>& mask) {
    std::vector<int> axes;
    for (std::size_t i = 0; i < mask.size(); ++i) {
      if (mask[i]) axes.push_back(static_cast<int>(i));
    }
    return axes;
  };
  std::string s = fmt::format("MatMul{{batch={}", broadcast_a_.size());
  const auto la = listed(broadcast_a_), lb = listed(broadcast_b_);
  if (!la.empty()) s += fmt::format(", a broadcasts [{}]", fmt::join(la, ", "));
  if (!lb.empty()) s += fmt::format(", b broadcasts [{}]", fmt::join(lb, ", "));
  return s + "}";
}

bool MatMul::equals(const Op& other) const {
  const auto* o = dynamic_cast<const MatMul*>(&other);
  return o != nullptr && o->broadcast_a_ == broadcast_a_ && o->broadcast_b_ == broadcast_b_;
}

std::size_t MatMul::hash() const {
  return hash_combine(hash_values(std::string("MatMul")),
                      hash_combine(hash_range(broadcast_a_), hash_range(broadcast_b_)));
}

std::vector<TensorType> MatMul::make_outputs(const std::vector<Variable>& inputs) const {
  check_operand_types("MatMul", inputs);
  const TensorType& a = inputs[0].type();
  const TensorType& b = inputs[1].type();
  if (a.rank() < 2 || b.rank() < 2) {
    throw TypeError(
        fmt::format("MatMul: operands must have rank >= 2, got {} (matmul() promotes "
                    "rank-1 operands)",
                    types_str(inputs)));
  }
  const int batch = static_cast<int>(broadcast_a_.size());
  if (std::max(a.rank(), b.rank()) - 2 != batch) {
    throw ValueError(
        fmt::format("{}: made for {} batch axes, applied to {}", str(), batch, types_str(inputs)));
  }
  check_inner_static("MatMul", a, b);
  StaticShape dims;
  for (int i = 0; i < batch; ++i) {
    const int ia = i - (batch - (a.rank() - 2));
    const int ib = i - (batch - (b.rank() - 2));
    const StaticDim da = ia >= 0 ? a.dims[static_cast<std::size_t>(ia)] : StaticDim{1};
    const StaticDim db = ib >= 0 ? b.dims[static_cast<std::size_t>(ib)] : StaticDim{1};
    const auto ui = static_cast<std::size_t>(i);
    if (broadcast_a_[ui] || broadcast_b_[ui]) {
      const StaticDim bcast = broadcast_a_[ui] ? da : db;
      if (bcast && *bcast != 1) {
        throw ShapeError(
            fmt::format("{}: batch axis {} of {} must have size 1 to broadcast, "
                        "operands {}",
                        str(), i, broadcast_a_[ui] ? "a" : "b", types_str(inputs)));
      }
      dims.push_back(broadcast_a_[ui] ? db : da);
    } else {
      if (ia < 0 || ib < 0) {
        throw ValueError(
            fmt::format("{}: batch axis {} is missing from an operand but not marked "
                        "as broadcast ({})",
                        str(), i, types_str(inputs)));
      }
      if (da && db && *da != *db) {
        throw ShapeError(
            fmt::format("MatMul: batch dims of {} do not agree: dim {} of the first "
                        "({}) != dim {} of the second ({})",
                        types_str(inputs), ia, *da, ib, *db));
      }
      dims.push_back(da ? da : db);
    }
  }
  dims.push_back(a.dims[static_cast<std::size_t>(a.rank() - 2)]);
  dims.push_back(b.dims[static_cast<std::size_t>(b.rank() - 1)]);
  return {TensorType(a.dtype, std::move(dims), a.device)};
}

std::vector<ShapeDims> MatMul::infer_shape(const Node& /*node*/,
                                           const std::vector<ShapeDims>& input_shapes) const {
  const ShapeDims& a = input_shapes.at(0);
  const ShapeDims& b = input_shapes.at(1);
  const int ra = static_cast<int>(a.size()), rb = static_cast<int>(b.size());
  const int batch = static_cast<int>(broadcast_a_.size());
  ShapeDims out;
  for (int i = 0; i < batch; ++i) {
    const int ia = i - (batch - (ra - 2));
    const int ib = i - (batch - (rb - 2));
    const auto ui = static_cast<std::size_t>(i);
    if (broadcast_a_[ui]) {
      out.push_back(b[static_cast<std::size_t>(ib)]);
    } else if (broadcast_b_[ui]) {
      out.push_back(a[static_cast<std::size_t>(ia)]);
    } else {
      const Dim& da = a[static_cast<std::size_t>(ia)];
      out.push_back(da.is_constant() ? da : b[static_cast<std::size_t>(ib)]);
    }
  }
  out.push_back(a[static_cast<std::size_t>(ra - 2)]);
  out.push_back(b[static_cast<std::size_t>(rb - 1)]);
  return {out};
}

std::vector<Variable> MatMul::grad(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& output_grads) const {
  const Variable& a = inputs[0];
  const Variable& b = inputs[1];
  if (!is_float(a.dtype())) return {Variable(), Variable()};
  Variable g = output_grads[0];
  if (g.dtype() != a.dtype()) g = cast(g, a.dtype());
  // The full-batch gradients, summed over the batch axes along which each operand broadcast.
  return {sum_to(matmul(g, swap_last_two(b)), a.type()),
          sum_to(matmul(swap_last_two(a), g), b.type())};
}

std::vector<Variable> MatMul::r_op(const std::vector<Variable>& inputs,
                                   const std::vector<Variable>& /*outputs*/,
                                   const std::vector<Variable>& eval_points) const {
  if (!is_float(inputs[0].dtype())) return {Variable()};
  Variable result;
  if (eval_points[0].defined()) {
    result = apply(MatMul::for_types(eval_points[0].type(), inputs[1].type()),
                   {eval_points[0], inputs[1]});
  }
  if (eval_points[1].defined()) {
    result = add_defined(result, apply(MatMul::for_types(inputs[0].type(), eval_points[1].type()),
                                       {inputs[0], eval_points[1]}));
  }
  return {result};
}

void MatMul::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  check_operands("MatMul", inputs);
  const Tensor a = prepared(inputs[0]);
  const Tensor b = prepared(inputs[1]);
  const int ra = a.rank(), rb = b.rank();
  const int batch = static_cast<int>(broadcast_a_.size());
  if (ra < 2 || rb < 2 || std::max(ra, rb) - 2 != batch) {
    throw TypeError(
        fmt::format("{}: operands of shapes {} and {} do not have the ranks it was "
                    "built for",
                    str(), shape_str(a.shape()), shape_str(b.shape())));
  }
  const std::int64_t m = a.shape()[static_cast<std::size_t>(ra - 2)];
  const std::int64_t k = a.shape()[static_cast<std::size_t>(ra - 1)];
  const std::int64_t kb = b.shape()[static_cast<std::size_t>(rb - 2)];
  const std::int64_t n = b.shape()[static_cast<std::size_t>(rb - 1)];
  if (k != kb) {
    throw_not_aligned("", shape_str(a.shape()), shape_str(b.shape()), ra - 1, rb - 2,
                      std::to_string(k), std::to_string(kb));
  }
  // The batch shape and each operand's batch strides over it (0 where it broadcasts).
  Shape batch_shape(static_cast<std::size_t>(batch));
  Strides sa(static_cast<std::size_t>(batch), 0), sb(static_cast<std::size_t>(batch), 0);
  for (int i = 0; i < batch; ++i) {
    const int ia = i - (batch - (ra - 2));
    const int ib = i - (batch - (rb - 2));
    const auto ui = static_cast<std::size_t>(i);
    const std::int64_t da = ia >= 0 ? a.shape()[static_cast<std::size_t>(ia)] : 1;
    const std::int64_t db = ib >= 0 ? b.shape()[static_cast<std::size_t>(ib)] : 1;
    if (broadcast_a_[ui] || broadcast_b_[ui]) {
      const std::int64_t bcast = broadcast_a_[ui] ? da : db;
      if (bcast != 1) {
        throw ShapeError(
            fmt::format("operands of shapes {} and {}: batch axis {} of the {} "
                        "operand was declared broadcastable but has size {}",
                        shape_str(a.shape()), shape_str(b.shape()), i,
                        broadcast_a_[ui] ? "first" : "second", bcast));
      }
    } else if (da != db) {
      throw ShapeError(fmt::format(
          "batch dims of shapes {} and {} do not agree: dim {} of the first ({}) != dim {} of "
          "the second ({}){}",
          shape_str(a.shape()), shape_str(b.shape()), ia, da, ib, db,
          da == 1 || db == 1 ? "; to broadcast a dim of 1, declare it as 1 in the operand's type"
                             : ""));
    }
    batch_shape[ui] = broadcast_a_[ui] ? db : da;
    if (!broadcast_a_[ui]) sa[ui] = a.strides()[static_cast<std::size_t>(ia)];
    if (!broadcast_b_[ui]) sb[ui] = b.strides()[static_cast<std::size_t>(ib)];
  }
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = output_buffer(outputs.at(0), a.dtype(), out_shape);
  const std::int64_t count = shape_numel(batch_shape);
  dispatch_dtype(a.dtype(), [&]<typename T>() {
    if constexpr (!std::is_same_v<T, bool>) {
      MatrixView<T> va = matrix_of<T>(a, false), vb = matrix_of<T>(b, false);
      const T* a0 = va.data;
      const T* b0 = vb.data;
      T* c = out.data<T>();
      std::vector<std::int64_t> index(static_cast<std::size_t>(batch), 0);
      std::int64_t off_a = 0, off_b = 0;
      for (std::int64_t step = 0; step < count; ++step) {
        va.data = a0 + off_a;
        vb.data = b0 + off_b;
        product_2d(va, vb, c + step * m * n);
        // Advance the batch index, last axis fastest.
        for (int axis = batch - 1; axis >= 0; --axis) {
          const auto u = static_cast<std::size_t>(axis);
          ++index[u];
          off_a += sa[u];
          off_b += sb[u];
          if (index[u] < batch_shape[u]) break;
          off_a -= sa[u] * batch_shape[u];
          off_b -= sb[u] * batch_shape[u];
          index[u] = 0;
        }
      }
    }
  });
  outputs.at(0) = std::move(out);
}

}  // namespace convgraph
