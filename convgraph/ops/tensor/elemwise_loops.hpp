// Private to the CPU kernels of Elemwise (elemwise_kernels*.cpp): the scalar functions, the loops
// over runs of elements and over broadcast operands, and run_scalar_op, the kernel of one ScalarOp
// for every dtype it accepts. Each ScalarOp's kernel is instantiated in one of
// elemwise_kernels_{arith,compare,math}.cpp: together in one file they took minutes to compile.
#pragma once

#include <fmt/format.h>
#include <omp.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/strided.hpp"

namespace convgraph::elemwise_detail {

// Below this many output elements a parallel region costs more than it saves.
inline constexpr std::int64_t kParallelThreshold = 32768;
// Elements per parallel work item: large enough to amortise the loop set-up, small enough to
// balance the threads.
inline constexpr std::int64_t kChunkElements = 16384;

inline int kernel_threads() {
  return cpu_threads();
}

// ---- integer arithmetic that wraps instead of overflowing (signed overflow is undefined) ----

template <typename T>
T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
template <typename T>
T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}
template <typename T>
T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return a * b;
  }
}
template <typename T>
T wrap_neg(T a) {
  return wrap_sub(T(0), a);
}

// Python's //: rounds toward minus infinity. The caller guarantees b != 0.
template <typename T>
T floor_div_int(T a, T b) {
  if (b == T(-1)) return wrap_neg(a);  // INT_MIN / -1 overflows in C++
  T q = static_cast<T>(a / b);
  if (static_cast<T>(a % b) != 0 && ((a < 0) != (b < 0))) q = static_cast<T>(q - 1);
  return q;
}
// Python's %: the result has the sign of the divisor. The caller guarantees b != 0.
template <typename T>
T floor_mod_int(T a, T b) {
  if (b == T(-1)) return T(0);
  T r = static_cast<T>(a % b);
  if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
  return r;
}
template <typename T>
T floor_mod_float(T a, T b) {
  T r = std::fmod(a, b);
  if (r != T(0)) {
    if ((r < T(0)) != (b < T(0))) r += b;
  } else {
    r = std::copysign(T(0), b);
  }
  return r;
}
// Exponentiation by squaring, wrapping on overflow. The caller guarantees exponent >= 0.
template <typename T>
T int_pow(T base, T exponent) {
  T result = 1;
  while (exponent > 0) {
    if (exponent & 1) result = wrap_mul(result, base);
    exponent = static_cast<T>(exponent >> 1);
    if (exponent > 0) base = wrap_mul(base, base);
  }
  return result;
}

// ---- scalar functions ----

enum class Domain { numeric, floating, any, boolean };

template <Domain D, typename T>
constexpr bool domain_accepts() {
  if constexpr (D == Domain::numeric) return !std::is_same_v<T, bool>;
  if constexpr (D == Domain::floating) return is_float(dtype_of<T>());
  if constexpr (D == Domain::boolean) return std::is_same_v<T, bool>;
  return true;
}

// Each ScalarOp as a struct: its arity, the dtypes it accepts, whether it yields bool, and apply()
// on the compute type C (float for float16).
template <ScalarOp Op>
struct Scalar;

#define CONVGRAPH_SCALAR(OP, ARITY, DOMAIN, GIVES_BOOL)  \
  template <>                                            \
  struct Scalar<ScalarOp::OP> {                          \
    static constexpr int arity = ARITY;                  \
    static constexpr Domain domain = Domain::DOMAIN;     \
    static constexpr bool gives_bool = GIVES_BOOL;       \
    template <typename C>                                \
    static auto apply(C a, [[maybe_unused]] C b = C()) { \
      return body(a, b);                                 \
    }                                                    \
    template <typename C>                                \
    static auto body(C a, [[maybe_unused]] C b);         \
  };                                                     \
  template <typename C>                                  \
  auto Scalar<ScalarOp::OP>::body(C a, [[maybe_unused]] C b)

CONVGRAPH_SCALAR(add, 2, numeric, false) {
  return wrap_add(a, b);
}
CONVGRAPH_SCALAR(sub, 2, numeric, false) {
  return wrap_sub(a, b);
}
CONVGRAPH_SCALAR(mul, 2, numeric, false) {
  return wrap_mul(a, b);
}
CONVGRAPH_SCALAR(true_div, 2, floating, false) {
  return a / b;
}
CONVGRAPH_SCALAR(int_div, 2, numeric, false) {
  if constexpr (std::is_integral_v<C>) {
    return floor_div_int(a, b);
  } else {
    return std::floor(a / b);
  }
}
CONVGRAPH_SCALAR(mod, 2, numeric, false) {
  if constexpr (std::is_integral_v<C>) {
    return floor_mod_int(a, b);
  } else {
    return floor_mod_float(a, b);
  }
}
CONVGRAPH_SCALAR(pow, 2, numeric, false) {
  if constexpr (std::is_integral_v<C>) {
    return int_pow(a, b);
  } else {
    return static_cast<C>(std::pow(a, b));
  }
}
// NaN propagates, as in numpy: the comparison alone would pick the other operand.
CONVGRAPH_SCALAR(maximum, 2, any, false) {
  return (a >= b || a != a) ? a : b;
}
CONVGRAPH_SCALAR(minimum, 2, any, false) {
  return (a <= b || a != a) ? a : b;
}
CONVGRAPH_SCALAR(eq, 2, any, true) {
  return a == b;
}
CONVGRAPH_SCALAR(neq, 2, any, true) {
  return a != b;
}
CONVGRAPH_SCALAR(lt, 2, any, true) {
  return a < b;
}
CONVGRAPH_SCALAR(le, 2, any, true) {
  return a <= b;
}
CONVGRAPH_SCALAR(gt, 2, any, true) {
  return a > b;
}
CONVGRAPH_SCALAR(ge, 2, any, true) {
  return a >= b;
}
CONVGRAPH_SCALAR(logical_and, 2, boolean, true) {
  return a && b;
}
CONVGRAPH_SCALAR(logical_or, 2, boolean, true) {
  return a || b;
}
CONVGRAPH_SCALAR(logical_not, 1, boolean, true) {
  return !a;
}
CONVGRAPH_SCALAR(neg, 1, numeric, false) {
  return wrap_neg(a);
}
CONVGRAPH_SCALAR(abs, 1, numeric, false) {
  if constexpr (std::is_integral_v<C>) {
    return a < 0 ? wrap_neg(a) : a;
  } else {
    return std::abs(a);
  }
}
// Zeros (of either sign) and NaN map to themselves, as in numpy.
CONVGRAPH_SCALAR(sign, 1, numeric, false) {
  if constexpr (std::is_integral_v<C>) {
    return static_cast<C>((a > 0) - (a < 0));
  } else {
    return a > C(0) ? C(1) : (a < C(0) ? C(-1) : a);
  }
}
CONVGRAPH_SCALAR(square, 1, numeric, false) {
  return wrap_mul(a, a);
}
CONVGRAPH_SCALAR(exp, 1, floating, false) {
  return static_cast<C>(std::exp(a));
}
CONVGRAPH_SCALAR(log, 1, floating, false) {
  return static_cast<C>(std::log(a));
}
CONVGRAPH_SCALAR(log1p, 1, floating, false) {
  return static_cast<C>(std::log1p(a));
}
CONVGRAPH_SCALAR(sqrt, 1, floating, false) {
  return static_cast<C>(std::sqrt(a));
}
// `a < 0 ? 0 : a` rather than `a > 0 ? a : 0` so that NaN stays NaN.
CONVGRAPH_SCALAR(relu, 1, numeric, false) {
  return a < C(0) ? C(0) : a;
}
// Each branch only exponentiates a non-positive number, so neither overflows.
CONVGRAPH_SCALAR(sigmoid, 1, floating, false) {
  if (a >= C(0)) return static_cast<C>(C(1) / (C(1) + std::exp(-a)));
  const C e = std::exp(a);
  return static_cast<C>(e / (C(1) + e));
}
CONVGRAPH_SCALAR(tanh, 1, floating, false) {
  return static_cast<C>(std::tanh(a));
}
// max(a, 0) + log1p(exp(-|a|)): never overflows, and exact to rounding for large |a|.
CONVGRAPH_SCALAR(softplus, 1, floating, false) {
  return static_cast<C>((a > C(0) ? a : C(0)) + std::log1p(std::exp(-std::abs(a))));
}

#undef CONVGRAPH_SCALAR

template <>
struct Scalar<ScalarOp::where> {
  static constexpr int arity = 3;
  static constexpr Domain domain = Domain::any;
  static constexpr bool gives_bool = false;
};

// ---- float16: convert blocks to float, compute there, convert back ----
// Element-by-element Half conversion is branchy bit twiddling that does not vectorize; converting
// a block at a time (with the F16C instructions where the CPU has them) and running the float
// loop in between is about ten times faster.

inline constexpr std::int64_t kHalfBlock = 256;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CONVGRAPH_ELEMWISE_F16C 1
__attribute__((target("avx,f16c"))) inline void halves_to_floats_f16c(const Half* in, float* out,
                                                                      std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = _cvtsh_ss(in[i].bits);
}
__attribute__((target("avx,f16c"))) inline void floats_to_halves_f16c(const float* in, Half* out,
                                                                      std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i].bits = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}
inline bool cpu_has_f16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}
#endif

inline void halves_to_floats(const Half* in, std::int64_t stride, float* out, std::int64_t n) {
  if (stride == 0) {
    const float v = to_float(*in);
    for (std::int64_t i = 0; i < n; ++i) out[i] = v;
    return;
  }
#ifdef CONVGRAPH_ELEMWISE_F16C
  if (stride == 1 && cpu_has_f16c()) return halves_to_floats_f16c(in, out, n);
#endif
  for (std::int64_t i = 0; i < n; ++i) out[i] = to_float(in[i * stride]);
}

inline void floats_to_halves(const float* in, Half* out, std::int64_t stride, std::int64_t n) {
#ifdef CONVGRAPH_ELEMWISE_F16C
  if (stride == 1 && cpu_has_f16c()) return floats_to_halves_f16c(in, out, n);
#endif
  for (std::int64_t i = 0; i < n; ++i) out[i * stride] = Half(in[i]);
}

// Stores a block of results computed in float (or bool, for comparisons) into R elements.
template <typename R, typename V>
void store_block(const V* values, R* out, std::int64_t stride, std::int64_t n) {
  if constexpr (std::is_same_v<R, Half>) {
    floats_to_halves(values, out, stride, n);
  } else {
    for (std::int64_t i = 0; i < n; ++i) out[i * stride] = static_cast<R>(values[i]);
  }
}

template <typename F, typename R>
void unary_run_half(const Half* a, std::int64_t sa, R* o, std::int64_t so, std::int64_t n) {
  using V = decltype(F::apply(0.0f));
  float fa[kHalfBlock];
  V fo[kHalfBlock];
  for (std::int64_t start = 0; start < n; start += kHalfBlock) {
    const std::int64_t len = std::min(kHalfBlock, n - start);
    halves_to_floats(a + start * sa, sa, fa, len);
    for (std::int64_t i = 0; i < len; ++i) fo[i] = F::apply(fa[i]);
    store_block(fo, o + start * so, so, len);
  }
}

template <typename F, typename R>
void binary_run_half(const Half* a, std::int64_t sa, const Half* b, std::int64_t sb, R* o,
                     std::int64_t so, std::int64_t n) {
  using V = decltype(F::apply(0.0f, 0.0f));
  float fa[kHalfBlock], fb[kHalfBlock];
  V fo[kHalfBlock];
  for (std::int64_t start = 0; start < n; start += kHalfBlock) {
    const std::int64_t len = std::min(kHalfBlock, n - start);
    halves_to_floats(a + start * sa, sa, fa, len);
    halves_to_floats(b + start * sb, sb, fb, len);
    for (std::int64_t i = 0; i < len; ++i) fo[i] = F::apply(fa[i], fb[i]);
    store_block(fo, o + start * so, so, len);
  }
}

// ---- loops over one run of elements ----
// The output of a kernel is contiguous, so its stride along a run is 1 (size-1 axes are dropped
// before runs are formed); the unit-stride and broadcast-scalar variants below are what lets
// the compiler vectorize.

template <typename F, typename T, typename R>
void unary_run_direct(const T* a, std::int64_t sa, R* o, std::int64_t so, std::int64_t n) {
  using C = compute_t<T>;
  const auto f = [](T x) { return convert<R>(F::apply(convert<C>(x))); };
  if (sa == 1 && so == 1) {
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
  }
}

template <typename F, typename T, typename R>
void binary_run_direct(const T* a, std::int64_t sa, const T* b, std::int64_t sb, R* o,
                       std::int64_t so, std::int64_t n) {
  using C = compute_t<T>;
  const auto f = [](T x, T y) { return convert<R>(F::apply(convert<C>(x), convert<C>(y))); };
  if (so == 1 && sa == 1 && sb == 1) {
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (so == 1 && sa == 1 && sb == 0) {
    const T y = *b;
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(a[i], y);
  } else if (so == 1 && sa == 0 && sb == 1) {
    const T x = *a;
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(x, b[i]);
  } else {
    for (std::int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa], b[i * sb]);
  }
}

template <typename F, typename T, typename R>
void unary_run(const T* a, std::int64_t sa, R* o, std::int64_t so, std::int64_t n) {
  if constexpr (std::is_same_v<T, Half>) {
    unary_run_half<F, R>(a, sa, o, so, n);
  } else {
    unary_run_direct<F, T, R>(a, sa, o, so, n);
  }
}

template <typename F, typename T, typename R>
void binary_run(const T* a, std::int64_t sa, const T* b, std::int64_t sb, R* o, std::int64_t so,
                std::int64_t n) {
  if constexpr (std::is_same_v<T, Half>) {
    binary_run_half<F, R>(a, sa, b, sb, o, so, n);
  } else {
    binary_run_direct<F, T, R>(a, sa, b, sb, o, so, n);
  }
}

// Copies elements, so no dtype needs converting.
template <typename T>
void where_run(const bool* c, std::int64_t sc, const T* a, std::int64_t sa, const T* b,
               std::int64_t sb, T* o, std::int64_t so, std::int64_t n) {
  if (so == 1 && sc == 1 && sa == 1 && sb == 1) {
    for (std::int64_t i = 0; i < n; ++i) o[i] = c[i] ? a[i] : b[i];
  } else {
    for (std::int64_t i = 0; i < n; ++i) o[i * so] = c[i * sc] ? a[i * sa] : b[i * sb];
  }
}

// ---- iteration over the broadcast operands ----

// Strides of INPUT viewed with OUTPUT_SHAPE (rank padded on the left, size-1 axes broadcast).
inline Strides broadcast_strides(const Tensor& input, const Shape& output_shape) {
  const std::size_t rank = output_shape.size();
  const std::size_t pad = rank - input.shape().size();
  Strides strides(rank, 0);
  for (std::size_t axis = pad; axis < rank; ++axis) {
    const std::size_t in_axis = axis - pad;
    if (input.shape()[in_axis] != 1) strides[axis] = input.strides()[in_axis];
  }
  return strides;
}

// Axes of SHAPE with size-1 axes dropped and neighbours merged where every operand allows it (as
// for_each_run does).
template <std::size_t N>
void coalesce(const Shape& shape, const std::array<Strides, N>& strides, Shape& dims,
              std::array<Strides, N>& merged) {
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] == 1) continue;
    bool merge = !dims.empty();
    for (std::size_t k = 0; k < N && merge; ++k) {
      merge = merged[k].back() == strides[k][axis] * shape[axis];
    }
    if (merge) {
      dims.back() *= shape[axis];
      for (std::size_t k = 0; k < N; ++k) merged[k].back() = strides[k][axis];
    } else {
      dims.push_back(shape[axis]);
      for (std::size_t k = 0; k < N; ++k) merged[k].push_back(strides[k][axis]);
    }
  }
}

// A transposed operand read along the output's rows touches a new cache line (and soon a new
// page) for every element. When some input's stride along the last axis is that large and its
// stride along the axis before is smaller, visiting the last two axes in tiles makes each line
// it loads serve a whole tile column. Returns false (doing nothing) where tiling does not apply.
template <std::size_t N, typename Run>
bool for_each_tile(const Shape& shape, const std::array<Strides, N>& strides, bool parallel,
                   int threads, Run&& run) {
  constexpr std::int64_t kTileRows = 64, kTileCols = 16, kLineElements = 16;
  Shape dims;
  std::array<Strides, N> st;
  coalesce<N>(shape, strides, dims, st);
  const std::size_t nd = dims.size();
  if (nd < 2) return false;
  bool transposed = false;
  for (std::size_t k = 1; k < N; ++k) {
    const std::int64_t inner = std::abs(st[k][nd - 1]), outer = std::abs(st[k][nd - 2]);
    transposed = transposed || (inner > kLineElements && outer < inner);
  }
  if (!transposed) return false;

  const std::int64_t rows = dims[nd - 2], cols = dims[nd - 1];
  const std::int64_t row_tiles = (rows + kTileRows - 1) / kTileRows;
  const std::int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
  std::int64_t outer = 1;
  for (std::size_t j = 0; j + 2 < nd; ++j) outer *= dims[j];
  std::array<std::int64_t, N> inner;
  for (std::size_t k = 0; k < N; ++k) inner[k] = st[k][nd - 1];
  const std::int64_t tasks = outer * row_tiles * col_tiles;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (std::int64_t task = 0; task < tasks; ++task) {
    std::int64_t rest = task;
    const std::int64_t col_tile = rest % col_tiles;
    rest /= col_tiles;
    const std::int64_t row_tile = rest % row_tiles;
    rest /= row_tiles;
    std::array<std::int64_t, N> base{};
    for (std::size_t j = nd - 2; j-- > 0;) {
      const std::int64_t index = rest % dims[j];
      rest /= dims[j];
      for (std::size_t k = 0; k < N; ++k) base[k] += index * st[k][j];
    }
    const std::int64_t first_col = col_tile * kTileCols;
    const std::int64_t count = std::min(kTileCols, cols - first_col);
    const std::int64_t end_row = std::min(rows, (row_tile + 1) * kTileRows);
    for (std::int64_t row = row_tile * kTileRows; row < end_row; ++row) {
      std::array<std::int64_t, N> offsets;
      for (std::size_t k = 0; k < N; ++k) {
        offsets[k] = base[k] + row * st[k][nd - 2] + first_col * st[k][nd - 1];
      }
      run(offsets, count, inner);
    }
  }
  return true;
}

// Calls RUN(offsets, count, inner_strides) over every element of OUTPUT, operand 0 being the
// output and operand k the input k-1, in parallel chunks when the output is large. RUN must not
// throw: it may run inside a parallel region.
template <std::size_t N, typename Run>
void for_each_chunk(const std::vector<Tensor>& inputs, const Tensor& output, Run&& run) {
  const std::int64_t numel = output.numel();
  if (numel == 0) return;
  const bool parallel = numel > kParallelThreshold;
  const int threads = parallel ? kernel_threads() : 1;

  // The common case, every operand either laid out like the output or a single element, is one
  // flat loop.
  bool flat = output.is_contiguous();
  for (const Tensor& input : inputs) {
    flat =
        flat && ((input.shape() == output.shape() && input.is_contiguous()) || input.numel() == 1);
  }
  if (flat) {
    std::array<std::int64_t, N> inner{};
    inner[0] = 1;
    for (std::size_t k = 1; k < N; ++k) inner[k] = inputs[k - 1].numel() == 1 ? 0 : 1;
    const std::int64_t chunks = (numel + kChunkElements - 1) / kChunkElements;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      const std::int64_t start = chunk * kChunkElements;
      std::array<std::int64_t, N> offsets{};
      for (std::size_t k = 0; k < N; ++k) offsets[k] = start * inner[k];
      run(offsets, std::min(kChunkElements, numel - start), inner);
    }
    return;
  }

  const Shape& shape = output.shape();
  std::array<Strides, N> strides;
  strides[0] = output.strides();
  for (std::size_t k = 1; k < N; ++k) strides[k] = broadcast_strides(inputs[k - 1], shape);
  if (for_each_tile<N>(shape, strides, parallel, threads, run)) return;
  std::array<const Strides*, N> stride_ptrs;
  for (std::size_t k = 0; k < N; ++k) stride_ptrs[k] = &strides[k];
  if (!parallel) {
    for_each_run<N>(shape, stride_ptrs, run);
    return;
  }
  // Split the outermost axis that has more than one element; the axes before it are all 1.
  std::size_t axis = 0;
  while (shape[axis] == 1) ++axis;
  const std::int64_t extent = shape[axis];
  const std::int64_t per_index = numel / extent;
  const std::int64_t per_chunk = std::max<std::int64_t>(1, kChunkElements / per_index);
  const std::int64_t chunks = (extent + per_chunk - 1) / per_chunk;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
    const std::int64_t start = chunk * per_chunk;
    Shape sub = shape;
    sub[axis] = std::min(per_chunk, extent - start);
    std::array<std::int64_t, N> base{};
    for (std::size_t k = 0; k < N; ++k) base[k] = start * strides[k][axis];
    for_each_run<N>(sub, stride_ptrs,
                    [&](const std::array<std::int64_t, N>& offsets, std::int64_t count,
                        const std::array<std::int64_t, N>& inner) {
                      std::array<std::int64_t, N> shifted;
                      for (std::size_t k = 0; k < N; ++k) shifted[k] = base[k] + offsets[k];
                      run(shifted, count, inner);
                    });
  }
}

// Whether PREDICATE holds for some element of TENSOR.
template <typename T, typename Predicate>
bool any_element(const Tensor& tensor, Predicate&& predicate) {
  const T* data = tensor.data<T>();
  bool found = false;
  for_each_run<1>(tensor.shape(), {&tensor.strides()},
                  [&](const std::array<std::int64_t, 1>& offsets, std::int64_t count,
                      const std::array<std::int64_t, 1>& inner) {
                    for (std::int64_t i = 0; i < count && !found; ++i) {
                      found = predicate(data[offsets[0] + i * inner[0]]);
                    }
                  });
  return found;
}

inline std::string op_label(ScalarOp op) {
  return fmt::format("Elemwise{{{}}}", scalar_op_name(op));
}

// Rejects integer operands that would make the scalar function undefined, before any output is
// written.
template <ScalarOp Op, typename T>
void check_integer_operands(const std::vector<Tensor>& inputs, const Tensor& output) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (output.numel() == 0) return;
    if constexpr (Op == ScalarOp::int_div || Op == ScalarOp::mod) {
      if (any_element<T>(inputs[1], [](T v) { return v == T(0); })) {
        throw ValueError(fmt::format(
            "integer division by zero in {}: the divisor (input 1, dtype {}, shape {}) has a zero "
            "element; cast to a floating-point dtype to get inf/nan instead",
            op_label(Op), dtype_name(inputs[1].dtype()), shape_str(inputs[1].shape())));
      }
    }
    if constexpr (Op == ScalarOp::pow) {
      if (any_element<T>(inputs[1], [](T v) { return v < T(0); })) {
        throw ValueError(fmt::format(
            "integer power with a negative exponent in {}: the exponent (input 1, dtype {}, "
            "shape {}) has a negative element; cast to a floating-point dtype first",
            op_label(Op), dtype_name(inputs[1].dtype()), shape_str(inputs[1].shape())));
      }
    }
  }
}

template <ScalarOp Op>
void run_scalar_op(const std::vector<Tensor>& inputs, Tensor& output) {
  using F = Scalar<Op>;
  const DType dtype = inputs[Op == ScalarOp::where ? 1 : 0].dtype();
  dispatch_dtype(dtype, [&]<typename T>() {
    if constexpr (!domain_accepts<F::domain, T>()) {
      throw TypeError(fmt::format("{}: no kernel for dtype {}", op_label(Op), dtype_name(dtype)));
    } else {
      using R = std::conditional_t<F::gives_bool, bool, T>;
      check_integer_operands<Op, T>(inputs, output);
      R* out = output.data<R>();
      if constexpr (Op == ScalarOp::where) {
        const bool* c = inputs[0].data<bool>();
        const T* a = inputs[1].data<T>();
        const T* b = inputs[2].data<T>();
        for_each_chunk<4>(inputs, output,
                          [&](const std::array<std::int64_t, 4>& off, std::int64_t n,
                              const std::array<std::int64_t, 4>& in) {
                            where_run<T>(c + off[1], in[1], a + off[2], in[2], b + off[3], in[3],
                                         out + off[0], in[0], n);
                          });
      } else if constexpr (F::arity == 2) {
        const T* a = inputs[0].data<T>();
        const T* b = inputs[1].data<T>();
        for_each_chunk<3>(inputs, output,
                          [&](const std::array<std::int64_t, 3>& off, std::int64_t n,
                              const std::array<std::int64_t, 3>& in) {
                            binary_run<F, T, R>(a + off[1], in[1], b + off[2], in[2], out + off[0],
                                                in[0], n);
                          });
      } else {
        const T* a = inputs[0].data<T>();
        for_each_chunk<2>(inputs, output,
                          [&](const std::array<std::int64_t, 2>& off, std::int64_t n,
                              const std::array<std::int64_t, 2>& in) {
                            unary_run<F, T, R>(a + off[1], in[1], out + off[0], in[0], n);
                          });
      }
    }
  });
}

// Instantiated in elemwise_kernels_arith.cpp, elemwise_kernels_compare.cpp and
// elemwise_kernels_math.cpp.
extern template void run_scalar_op<ScalarOp::add>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::sub>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::mul>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::true_div>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::int_div>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::mod>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::pow>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::maximum>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::minimum>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::eq>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::neq>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::lt>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::le>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::gt>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::ge>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::logical_and>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::logical_or>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::logical_not>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::where>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::neg>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::abs>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::sign>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::square>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::exp>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::log>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::log1p>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::sqrt>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::relu>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::sigmoid>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::tanh>(const std::vector<Tensor>&, Tensor&);
extern template void run_scalar_op<ScalarOp::softplus>(const std::vector<Tensor>&, Tensor&);

}  // namespace convgraph::elemwise_detail
