// A thin typed wrapper over CBLAS (OpenBLAS), row-major. The CBLAS header stays out of every
// other translation unit, so that the BLAS implementation is a private dependency of the library.
#pragma once

#include <cstdint>

namespace convgraph {

// C[m, n] = ALPHA * op(A)[m, k] * op(B)[k, n] + BETA * C, all row-major. op(A) is A, or the
// transpose of A when TRANS_A (A is then stored as [k, m]); likewise for B. LDA, LDB and LDC are
// the row strides, in elements, of A, B and C as stored. When BETA is 0, C is written without
// being read (it may hold NaN). Degenerate sizes (m, n or k of 0) are handled here, not passed to
// BLAS, whose argument checks reject them with a message on stderr. Sizes and strides must fit
// the BLAS integer (32-bit in the usual OpenBLAS builds): ValueError otherwise.
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
          std::int64_t ldc);
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
          const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
          double* c, std::int64_t ldc);

// y[m'] = ALPHA * op(A) * x + BETA * y, where A is stored row-major as [m, n] with row stride LDA
// and op(A) is A ([m, n], x has n elements, y has m) or its transpose when TRANS (x has m
// elements, y has n). INCX and INCY must be positive.
void gemv(bool trans, std::int64_t m, std::int64_t n, float alpha, const float* a, std::int64_t lda,
          const float* x, std::int64_t incx, float beta, float* y, std::int64_t incy);
void gemv(bool trans, std::int64_t m, std::int64_t n, double alpha, const double* a,
          std::int64_t lda, const double* x, std::int64_t incx, double beta, double* y,
          std::int64_t incy);

// The inner product of N elements of X and Y (strides INCX, INCY, positive). The float version
// accumulates in double.
float blas_dot(std::int64_t n, const float* x, std::int64_t incx, const float* y,
               std::int64_t incy);
double blas_dot(std::int64_t n, const double* x, std::int64_t incx, const double* y,
                std::int64_t incy);

// The number of threads BLAS calls may use, and setting it (N >= 1; process-wide).
int blas_num_threads();
void set_blas_num_threads(int n);

}  // namespace convgraph
