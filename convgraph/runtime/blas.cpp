#include "convgraph/runtime/blas.hpp"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "convgraph/base/error.hpp"

namespace convgraph {
namespace {

blasint to_blas_int(std::int64_t value, const char* what, const char* routine) {
  if (value < 0 || value > std::numeric_limits<blasint>::max()) {
    throw ValueError(fmt::format("{}: {} = {} does not fit the BLAS integer type (0..{})", routine,
                                 what, value, std::numeric_limits<blasint>::max()));
  }
  return static_cast<blasint>(value);
}

// CBLAS insists on a leading dimension of at least max(1, columns) even where it is never used
// (a single row), and views of one row carry arbitrary row strides, so those are normalised here.
std::int64_t leading_dim(std::int64_t ld, std::int64_t rows, std::int64_t cols) {
  if (rows <= 1) return std::max<std::int64_t>({ld, cols, 1});
  return ld;
}

template <typename T>
void scale_rows(std::int64_t m, std::int64_t n, T beta, T* c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    for (std::int64_t j = 0; j < n; ++j) row[j] = beta == T(0) ? T(0) : beta * row[j];
  }
}

template <typename T>
void scale_vector(std::int64_t n, T beta, T* y, std::int64_t incy) {
  for (std::int64_t i = 0; i < n; ++i) y[i * incy] = beta == T(0) ? T(0) : beta * y[i * incy];
}

struct GemmArgs {
  blasint m, n, k, lda, ldb, ldc;
};

GemmArgs check_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                    std::int64_t lda, std::int64_t ldb, std::int64_t ldc) {
  const char* routine = "gemm";
  // Stored shapes: A is [m, k] ([k, m] transposed), B is [k, n] ([n, k] transposed).
  const std::int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const std::int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  lda = leading_dim(lda, a_rows, a_cols);
  ldb = leading_dim(ldb, b_rows, b_cols);
  ldc = leading_dim(ldc, m, n);
  if (lda < a_cols || ldb < b_cols || ldc < n) {
    throw ValueError(fmt::format(
        "gemm: leading dimensions lda={}, ldb={}, ldc={} are smaller than the rows they step "
        "over ({}, {}, {})",
        lda, ldb, ldc, a_cols, b_cols, n));
  }
  return {to_blas_int(m, "m", routine),     to_blas_int(n, "n", routine),
          to_blas_int(k, "k", routine),     to_blas_int(lda, "lda", routine),
          to_blas_int(ldb, "ldb", routine), to_blas_int(ldc, "ldc", routine)};
}

struct GemvArgs {
  blasint m, n, lda, incx, incy;
};

GemvArgs check_gemv(std::int64_t m, std::int64_t n, std::int64_t lda, std::int64_t incx,
                    std::int64_t incy) {
  const char* routine = "gemv";
  lda = leading_dim(lda, m, n);
  if (lda < n || incx <= 0 || incy <= 0) {
    throw ValueError(
        fmt::format("gemv: lda={} must be at least n={}, and incx={}, incy={} must be positive",
                    lda, n, incx, incy));
  }
  return {to_blas_int(m, "m", routine), to_blas_int(n, "n", routine),
          to_blas_int(lda, "lda", routine), to_blas_int(incx, "incx", routine),
          to_blas_int(incy, "incy", routine)};
}

CBLAS_TRANSPOSE transpose_flag(bool trans) {
  return trans ? CblasTrans : CblasNoTrans;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) return scale_rows(m, n, beta, c, std::max<std::int64_t>(ldc, n));
  const GemmArgs g = check_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  cblas_sgemm(CblasRowMajor, transpose_flag(trans_a), transpose_flag(trans_b), g.m, g.n, g.k, alpha,
              a, g.lda, b, g.ldb, beta, c, g.ldc);
}

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
          const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
          double* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0) return scale_rows(m, n, beta, c, std::max<std::int64_t>(ldc, n));
  const GemmArgs g = check_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  cblas_dgemm(CblasRowMajor, transpose_flag(trans_a), transpose_flag(trans_b), g.m, g.n, g.k, alpha,
              a, g.lda, b, g.ldb, beta, c, g.ldc);
}

void gemv(bool trans, std::int64_t m, std::int64_t n, float alpha, const float* a, std::int64_t lda,
          const float* x, std::int64_t incx, float beta, float* y, std::int64_t incy) {
  const std::int64_t out = trans ? n : m, inner = trans ? m : n;
  if (out == 0) return;
  if (inner == 0 || alpha == 0.0f) return scale_vector(out, beta, y, incy);
  const GemvArgs g = check_gemv(m, n, lda, incx, incy);
  cblas_sgemv(CblasRowMajor, transpose_flag(trans), g.m, g.n, alpha, a, g.lda, x, g.incx, beta, y,
              g.incy);
}

void gemv(bool trans, std::int64_t m, std::int64_t n, double alpha, const double* a,
          std::int64_t lda, const double* x, std::int64_t incx, double beta, double* y,
          std::int64_t incy) {
  const std::int64_t out = trans ? n : m, inner = trans ? m : n;
  if (out == 0) return;
  if (inner == 0 || alpha == 0.0) return scale_vector(out, beta, y, incy);
  const GemvArgs g = check_gemv(m, n, lda, incx, incy);
  cblas_dgemv(CblasRowMajor, transpose_flag(trans), g.m, g.n, alpha, a, g.lda, x, g.incx, beta, y,
              g.incy);
}

float blas_dot(std::int64_t n, const float* x, std::int64_t incx, const float* y,
               std::int64_t incy) {
  if (n == 0) return 0.0f;
  if (incx <= 0 || incy <= 0) throw ValueError("blas_dot: strides must be positive");
  return static_cast<float>(cblas_dsdot(to_blas_int(n, "n", "dot"), x,
                                        to_blas_int(incx, "incx", "dot"), y,
                                        to_blas_int(incy, "incy", "dot")));
}

double blas_dot(std::int64_t n, const double* x, std::int64_t incx, const double* y,
                std::int64_t incy) {
  if (n == 0) return 0.0;
  if (incx <= 0 || incy <= 0) throw ValueError("blas_dot: strides must be positive");
  return cblas_ddot(to_blas_int(n, "n", "dot"), x, to_blas_int(incx, "incx", "dot"), y,
                    to_blas_int(incy, "incy", "dot"));
}

int blas_num_threads() {
  return openblas_get_num_threads();
}

void set_blas_num_threads(int n) {
  if (n < 1) throw ValueError(fmt::format("set_blas_num_threads: {} threads; expected >= 1", n));
  openblas_set_num_threads(n);
}

}  // namespace convgraph
