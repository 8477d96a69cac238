#include <cuda_fp16.h>

#include <climits>

#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph::gpu {
namespace {

constexpr int kThreads = 256;

// Grid-stride loops cover what a capped grid leaves over.
unsigned int grid_for(long long n) {
  const long long blocks = (n + kThreads - 1) / kThreads;
  const long long cap = 65535LL * 32;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Sums of float16 products run in float: a K of a few thousand would lose the low half of the
// mantissa in half-precision sums.
template <typename T>
struct AccumulatorOf {
  using type = T;
};
template <>
struct AccumulatorOf<__half> {
  using type = float;
};

template <typename T>
__device__ typename AccumulatorOf<T>::type load(const T* p) {
  return *p;
}
template <>
__device__ float load<__half>(const __half* p) {
  return __half2float(*p);
}
template <typename T>
__device__ T store_as(typename AccumulatorOf<T>::type v) {
  return v;
}
template <>
__device__ __half store_as<__half>(float v) {
  return __float2half(v);
}

// The image coordinate output O reads for stored tap T on one axis.
__device__ inline int tap_read(int o, int t, int k, int s, int d, int pad, bool flip) {
  return o * s - pad + (flip ? k - 1 - t : t) * d;
}

// One thread per (image, channel, output position): the division into coordinates happens once,
// then the thread walks the taps, writing one column entry each; neighbouring threads take
// neighbouring positions, so writes along a row are coalesced.
template <typename T>
__global__ void im2col_kernel(GpuCorrGeometry geo, int images, const T* __restrict__ image,
                              T* __restrict__ col, ColumnLayout layout) {
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int positions = od * oh * ow;
  const int taps = kd * kh * kw;
  const long long image_size = static_cast<long long>(id) * ih * iw;
  const int total = images * geo.channels * positions;
  const T zero = static_cast<T>(0.0f);
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int p = index % positions;
    const int bc = index / positions;
    const int c = bc % geo.channels;
    const int b = bc / geo.channels;
    const int x = p % ow;
    const int y = (p / ow) % oh;
    const int z = p / (ow * oh);
    const T* src = image + static_cast<long long>(bc) * image_size;
    T* dst = col + static_cast<long long>(c) * taps * layout.row + b * layout.image +
             p * layout.position;
    for (int a = 0; a < kd; ++a) {
      const int iz =
          tap_read(z, a, kd, geo.stride[0], geo.dilation[0], geo.pad_before[0], geo.flip);
      const bool z_in = iz >= 0 && iz < id;
      for (int i = 0; i < kh; ++i) {
        const int iy =
            tap_read(y, i, kh, geo.stride[1], geo.dilation[1], geo.pad_before[1], geo.flip);
        const bool zy_in = z_in && iy >= 0 && iy < ih;
        const T* line = src + (static_cast<long long>(iz) * ih + iy) * iw;
        for (int j = 0; j < kw; ++j) {
          const int ix =
              tap_read(x, j, kw, geo.stride[2], geo.dilation[2], geo.pad_before[2], geo.flip);
          *dst = (zy_in && ix >= 0 && ix < iw) ? line[ix] : zero;
          dst += layout.row;
        }
      }
    }
  }
}

// The output position O that reads image coordinate I through stored tap T on one axis, or -1
// when none does (I falls between strided reads, or outside the output).
__device__ inline int output_reading(int i, int t, int k, int s, int d, int pad, bool flip,
                                     int out) {
  const int n = i + pad - (flip ? k - 1 - t : t) * d;
  if (n < 0) return -1;
  if (s == 1) return n < out ? n : -1;
  if (n % s != 0) return -1;
  const int o = n / s;
  return o < out ? o : -1;
}

// One thread per image element: it gathers every column entry read from it, tap by tap, axis by
// axis (a tap that misses on one axis skips the axes inside it).
template <typename T>
__global__ void col2im_kernel(GpuCorrGeometry geo, int images, const T* __restrict__ col,
                              ColumnLayout layout, T* __restrict__ image) {
  using Acc = typename AccumulatorOf<T>::type;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int taps = kd * kh * kw;
  const int image_size = id * ih * iw;
  const int total = images * geo.channels * image_size;
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int ix = index % iw;
    const int iy = (index / iw) % ih;
    const int iz = (index / (iw * ih)) % id;
    const int bc = index / image_size;
    const int c = bc % geo.channels;
    const int b = bc / geo.channels;
    const T* base = col + static_cast<long long>(c) * taps * layout.row + b * layout.image;
    Acc sum = 0;
    for (int a = 0; a < kd; ++a) {
      const int oz = output_reading(iz, a, kd, geo.stride[0], geo.dilation[0], geo.pad_before[0],
                                    geo.flip, od);
      if (oz < 0) continue;
      for (int i = 0; i < kh; ++i) {
        const int oy = output_reading(iy, i, kh, geo.stride[1], geo.dilation[1], geo.pad_before[1],
                                      geo.flip, oh);
        if (oy < 0) continue;
        for (int j = 0; j < kw; ++j) {
          const int ox = output_reading(ix, j, kw, geo.stride[2], geo.dilation[2],
                                        geo.pad_before[2], geo.flip, ow);
          if (ox < 0) continue;
          const int t = (a * kh + i) * kw + j;
          const int p = (oz * oh + oy) * ow + ox;
          sum += load(base + t * layout.row + p * layout.position);
        }
      }
    }
    image[index] = store_as<T>(sum);
  }
}

template <typename T>
__global__ void permute3_kernel(const T* __restrict__ src, int d1, int d2, int total,
                                T* __restrict__ dst, long long s0, long long s1, long long s2) {
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int i2 = index % d2;
    const int i01 = index / d2;
    const int i1 = i01 % d1;
    const int i0 = i01 / d1;
    dst[i0 * s0 + i1 * s1 + i2 * s2] = src[index];
  }
}

template <typename T>
__global__ void sum_slices_kernel(const T* __restrict__ partials, int slices, long long n,
                                  T* __restrict__ sums, bool accumulate) {
  for (long long index = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; index < n;
       index += static_cast<long long>(gridDim.x) * blockDim.x) {
    T sum = accumulate ? sums[index] : T(0);
    for (int s = 0; s < slices; ++s) sum += partials[s * n + index];
    sums[index] = sum;
  }
}

__global__ void float_to_half_kernel(const float* __restrict__ src, __half* __restrict__ dst,
                                     long long n) {
  for (long long index = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; index < n;
       index += static_cast<long long>(gridDim.x) * blockDim.x) {
    dst[index] = __float2half(src[index]);
  }
}

// Runs FN with the storage type of TYPE.
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

bool fits_int(long long n) {
  return n >= 0 && n <= INT_MAX;
}

}  // namespace

cudaError_t launch_im2col(GpuElement type, const GpuCorrGeometry& geo, int images,
                          const void* image, void* col, ColumnLayout layout, cudaStream_t stream) {
  const long long positions = static_cast<long long>(geo.output[0]) * geo.output[1] * geo.output[2];
  const long long total = static_cast<long long>(images) * geo.channels * positions;
  if (!fits_int(total)) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    im2col_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(
        geo, images, static_cast<const T*>(image), static_cast<T*>(col), layout);
  });
}

cudaError_t launch_col2im(GpuElement type, const GpuCorrGeometry& geo, int images, const void* col,
                          ColumnLayout layout, void* image, cudaStream_t stream) {
  const long long image_size = static_cast<long long>(geo.image[0]) * geo.image[1] * geo.image[2];
  const long long total = static_cast<long long>(images) * geo.channels * image_size;
  if (!fits_int(total)) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    col2im_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(
        geo, images, static_cast<const T*>(col), layout, static_cast<T*>(image));
  });
}

cudaError_t launch_permute3(GpuElement type, const void* src, long long d0, long long d1,
                            long long d2, void* dst, long long s0, long long s1, long long s2,
                            cudaStream_t stream) {
  const long long total = d0 * d1 * d2;
  if (!fits_int(total)) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    permute3_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(
        static_cast<const T*>(src), static_cast<int>(d1), static_cast<int>(d2),
        static_cast<int>(total), static_cast<T*>(dst), s0, s1, s2);
  });
}

cudaError_t launch_sum_slices(GpuElement type, const void* partials, int slices, long long n,
                              void* sums, bool accumulate, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (type == GpuElement::f64) {
    sum_slices_kernel<double><<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<const double*>(partials), slices, n, static_cast<double*>(sums), accumulate);
  } else if (type == GpuElement::f32) {
    sum_slices_kernel<float><<<grid_for(n), kThreads, 0, stream>>>(
        static_cast<const float*>(partials), slices, n, static_cast<float*>(sums), accumulate);
  } else {
    return cudaErrorInvalidValue;  // float16 weight gradients accumulate in float32
  }
  return cudaGetLastError();
}

cudaError_t launch_float_to_half(const float* src, void* dst, long long n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  float_to_half_kernel<<<grid_for(n), kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
  return cudaGetLastError();
}

}  // namespace convgraph::gpu
