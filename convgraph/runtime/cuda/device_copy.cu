#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "convgraph/runtime/cuda/cuda_device.hpp"
#include "convgraph/runtime/cuda/device_copy.hpp"

namespace convgraph::cuda {
namespace {

constexpr int kMaxRank = 8;

struct StridedLayout {
  int rank;
  long long shape[kMaxRank];
  long long dst_strides[kMaxRank];
  long long src_strides[kMaxRank];
};

// Storage types on the device, by dtype: float16 is __half, bool is one byte.
template <typename T>
__device__ double to_double(T v) {
  return static_cast<double>(v);
}
template <>
__device__ double to_double<__half>(__half v) {
  return static_cast<double>(__half2float(v));
}
template <typename T>
__device__ T from_double(double v) {
  return static_cast<T>(v);
}
template <>
__device__ __half from_double<__half>(double v) {
  return __float2half(static_cast<float>(v));
}
template <>
__device__ bool from_double<bool>(double v) {
  return v != 0.0;
}

template <typename D, typename S>
__global__ void strided_copy_kernel(D* dst, const S* src, long long n, StridedLayout layout) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    long long rest = i, d = 0, s = 0;
    for (int a = layout.rank - 1; a >= 0; --a) {
      const long long idx = rest % layout.shape[a];
      rest /= layout.shape[a];
      d += idx * layout.dst_strides[a];
      s += idx * layout.src_strides[a];
    }
    if constexpr (std::is_same_v<D, S>) {
      dst[d] = src[s];
    } else {
      dst[d] = from_double<D>(to_double<S>(src[s]));
    }
  }
}

template <typename Fn>
void dispatch_device_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float16:
      return fn(static_cast<__half*>(nullptr));
    case DType::float32:
      return fn(static_cast<float*>(nullptr));
    case DType::float64:
      return fn(static_cast<double*>(nullptr));
    case DType::int8:
      return fn(static_cast<std::int8_t*>(nullptr));
    case DType::int32:
      return fn(static_cast<std::int32_t*>(nullptr));
    case DType::int64:
      return fn(static_cast<std::int64_t*>(nullptr));
    case DType::boolean:
      return fn(static_cast<bool*>(nullptr));
  }
}

}  // namespace

void strided_copy(const Tensor& dst, const Tensor& src, cudaStream_t stream) {
  if (dst.rank() > kMaxRank) {
    // (No fmt in .cu files: nvcc rejects its compile-time format checks.)
    throw UnsupportedError("copy on " + dst.device().str() + ": tensors of rank " +
                           std::to_string(dst.rank()) + " are not supported (at most " +
                           std::to_string(kMaxRank) + ")");
  }
  StridedLayout layout{};
  layout.rank = dst.rank();
  for (int a = 0; a < dst.rank(); ++a) {
    layout.shape[a] = dst.shape()[static_cast<std::size_t>(a)];
    layout.dst_strides[a] = dst.strides()[static_cast<std::size_t>(a)];
    layout.src_strides[a] = src.strides()[static_cast<std::size_t>(a)];
  }
  const long long n = dst.numel();
  if (n == 0) return;
  dispatch_device_type(dst.dtype(), [&](auto* d_tag) {
    using D = std::remove_pointer_t<decltype(d_tag)>;
    dispatch_device_type(src.dtype(), [&](auto* s_tag) {
      using S = std::remove_pointer_t<decltype(s_tag)>;
      strided_copy_kernel<D, S><<<blocks_for(n, 256), 256, 0, stream>>>(
          static_cast<D*>(dst.raw_data()), static_cast<const S*>(src.raw_data()), n, layout);
    });
  });
  check_launch("strided_copy");
}

}  // namespace convgraph::cuda
