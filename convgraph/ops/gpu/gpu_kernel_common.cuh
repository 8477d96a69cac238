// What the CUDA kernel files of the GpuCorrMM family (gpu_im2col.cu, gpu_direct_grouped.cu)
// share: the accumulator type of each element type, the rounding back on store, the dispatch of a
// launcher on the element type, and the int32 check of their counts. Included by .cu files only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <climits>

#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph::gpu::kernel_common {

// Sums of float16 products run in float (a reduction of a few thousand terms would lose the low
// half of the mantissa in half precision); float32 in float, float64 in double.
template <typename T>
struct AccumulatorOf {
  using type = T;
};
template <>
struct AccumulatorOf<__half> {
  using type = float;
};

// An accumulated value stored as T (float16 rounds once, here).
template <typename T>
__device__ inline T store_as(typename AccumulatorOf<T>::type v) {
  return v;
}
template <>
__device__ inline __half store_as<__half>(float v) {
  return __float2half(v);
}

// Runs FN with a null pointer of the storage type of TYPE (so FN can name the type), then returns
// the launch status.
template <typename Fn>
cudaError_t with_type(GpuElement type, Fn&& fn) {
  switch (type) {
    case GpuElement::f16:
      fn(static_cast<__half*>(nullptr));
      break;
    case GpuElement::f32:
      fn(static_cast<float*>(nullptr));
      break;
    case GpuElement::f64:
      fn(static_cast<double*>(nullptr));
      break;
  }
  return cudaGetLastError();
}

// Whether a count fits the kernels' int indices.
inline bool fits_int(long long n) {
  return n >= 0 && n <= INT_MAX;
}

}  // namespace convgraph::gpu::kernel_common
