#include <cuda_fp16.h>

#include <climits>

#include "convgraph/ops/gpu/gpu_depthwise.hpp"

namespace convgraph::gpu {
namespace {

constexpr int kThreads = 256;

// float16 data is summed in float; float32 in float; float64 in double.
template <typename T>
struct AccumulatorOf {
  using type = T;
};
template <>
struct AccumulatorOf<__half> {
  using type = float;
};

// Loads through the read-only data cache (the image and kernel are never written by a launch).
__device__ inline float load(const float* p) {
  return __ldg(p);
}
__device__ inline double load(const double* p) {
  return __ldg(p);
}
__device__ inline float load(const __half* p) {
  return __half2float(__ldg(p));
}

template <typename T>
__device__ T store_as(typename AccumulatorOf<T>::type v) {
  return v;
}
template <>
__device__ __half store_as<__half>(float v) {
  return __float2half(v);
}

// The image coordinate that output coordinate O reads through stored tap T on one axis (the
// stored tap mirrored for a flipped filter), as im2col computes it.
__device__ inline int tap_read(int o, int t, int k, int s, int d, int pad, bool flip) {
  return o * s - pad + (flip ? k - 1 - t : t) * d;
}

// The output coordinate that reads image coordinate I through stored tap T on one axis, or -1
// when none does: I + pad - tap' * d must be a non-negative multiple of the stride whose quotient
// is inside the output.
__device__ inline int output_reading(int i, int t, int k, int s, int d, int pad, bool flip,
                                     int out) {
  const int n = i + pad - (flip ? k - 1 - t : t) * d;
  if (n < 0) return -1;
  if (s == 1) return n < out ? n : -1;
  if (n % s != 0) return -1;
  const int o = n / s;
  return o < out ? o : -1;
}

// Forward. blockIdx.y walks the (image, filter) planes; the x dimension of the grid walks the
// output positions of a plane, consecutive threads on consecutive x (coalesced stores and, for
// stride 1, coalesced loads of each tap). Every thread of a block reads the same filter taps, so
// those loads are broadcasts from the cache.
template <typename T>
__global__ void depthwise_forward_kernel(GpuCorrGeometry geo, int planes, int multiplier,
                                         const T* __restrict__ image, const T* __restrict__ kernel,
                                         T* __restrict__ output) {
  using Acc = typename AccumulatorOf<T>::type;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int positions = od * oh * ow;
  const int taps = kd * kh * kw;
  const int image_size = id * ih * iw;
  const int filters = geo.channels * multiplier;
  for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const int f = plane % filters;
    const int b = plane / filters;
    const int c = f / multiplier;
    const T* src = image + (static_cast<long long>(b) * geo.channels + c) * image_size;
    const T* w = kernel + static_cast<long long>(f) * taps;
    T* dst = output + static_cast<long long>(plane) * positions;
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < positions;
         p += gridDim.x * blockDim.x) {
      const int x = p % ow;
      const int y = (p / ow) % oh;
      const int z = p / (ow * oh);
      Acc sum = 0;
      for (int a = 0; a < kd; ++a) {
        const int iz =
            tap_read(z, a, kd, geo.stride[0], geo.dilation[0], geo.pad_before[0], geo.flip);
        if (iz < 0 || iz >= id) continue;
        for (int i = 0; i < kh; ++i) {
          const int iy =
              tap_read(y, i, kh, geo.stride[1], geo.dilation[1], geo.pad_before[1], geo.flip);
          if (iy < 0 || iy >= ih) continue;
          const T* line = src + (iz * ih + iy) * iw;
          const T* wline = w + (a * kh + i) * kw;
          for (int j = 0; j < kw; ++j) {
            const int ix =
                tap_read(x, j, kw, geo.stride[2], geo.dilation[2], geo.pad_before[2], geo.flip);
            if (ix >= 0 && ix < iw) sum += load(line + ix) * load(wline + j);
          }
        }
      }
      dst[p] = store_as<T>(sum);
    }
  }
}

// Gradient with respect to the image, as a gather: blockIdx.y walks the (image, channel) planes,
// each thread one image element, summing topgrad * weight over the channel's filters and the taps
// whose output position lands on the element. One write per element, no atomics.
template <typename T>
__global__ void depthwise_grad_inputs_kernel(GpuCorrGeometry geo, int planes, int multiplier,
                                             const T* __restrict__ kernel,
                                             const T* __restrict__ topgrad,
                                             T* __restrict__ image_grad) {
  using Acc = typename AccumulatorOf<T>::type;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int positions = od * oh * ow;
  const int taps = kd * kh * kw;
  const int image_size = id * ih * iw;
  const int filters = geo.channels * multiplier;
  for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    const int c = plane % geo.channels;
    const int b = plane / geo.channels;
    T* dst = image_grad + static_cast<long long>(plane) * image_size;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < image_size;
         e += gridDim.x * blockDim.x) {
      const int ix = e % iw;
      const int iy = (e / iw) % ih;
      const int iz = e / (iw * ih);
      Acc sum = 0;
      for (int m = 0; m < multiplier; ++m) {
        const int f = c * multiplier + m;
        const T* top = topgrad + (static_cast<long long>(b) * filters + f) * positions;
        const T* w = kernel + static_cast<long long>(f) * taps;
        for (int a = 0; a < kd; ++a) {
          const int oz = output_reading(iz, a, kd, geo.stride[0], geo.dilation[0],
                                        geo.pad_before[0], geo.flip, od);
          if (oz < 0) continue;
          for (int i = 0; i < kh; ++i) {
            const int oy = output_reading(iy, i, kh, geo.stride[1], geo.dilation[1],
                                          geo.pad_before[1], geo.flip, oh);
            if (oy < 0) continue;
            for (int j = 0; j < kw; ++j) {
              const int ox = output_reading(ix, j, kw, geo.stride[2], geo.dilation[2],
                                            geo.pad_before[2], geo.flip, ow);
              if (ox < 0) continue;
              sum += load(top + (oz * oh + oy) * ow + ox) * load(w + (a * kh + i) * kw + j);
            }
          }
        }
      }
      dst[e] = store_as<T>(sum);
    }
  }
}

// Gradient with respect to the weights. Block k computes partial sum k = s * (F * taps) + f *
// taps + t: filter f, stored tap t, over slice s of the BATCH * positions (image, output position)
// pairs. Each thread sums a strided subset of the slice in Acc, then the block adds the threads'
// sums in a fixed tree order in shared memory and thread 0 writes the result: deterministic.
template <typename T>
__global__ void depthwise_grad_weights_kernel(
    GpuCorrGeometry geo, int batch, int multiplier, int slices, const T* __restrict__ image,
    const T* __restrict__ topgrad, typename AccumulatorOf<T>::type* __restrict__ partials) {
  using Acc = typename AccumulatorOf<T>::type;
  __shared__ Acc shared[kThreads];
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int positions = od * oh * ow;
  const int taps = kd * kh * kw;
  const int image_size = id * ih * iw;
  const int filters = geo.channels * multiplier;
  const long long n = static_cast<long long>(filters) * taps;
  const long long block = blockIdx.x;
  const int s = static_cast<int>(block / n);
  const int ft = static_cast<int>(block % n);
  const int f = ft / taps;
  const int t = ft % taps;
  const int c = f / multiplier;
  // The stored tap's coordinates.
  const int tj = t % kw;
  const int ti = (t / kw) % kh;
  const int ta = t / (kw * kh);
  const long long pairs = static_cast<long long>(batch) * positions;
  const long long begin = pairs * s / slices;
  const long long end = pairs * (s + 1) / slices;
  Acc sum = 0;
  for (long long q = begin + threadIdx.x; q < end; q += blockDim.x) {
    const int b = static_cast<int>(q / positions);
    const int p = static_cast<int>(q % positions);
    const int x = p % ow;
    const int y = (p / ow) % oh;
    const int z = p / (ow * oh);
    const int iz = tap_read(z, ta, kd, geo.stride[0], geo.dilation[0], geo.pad_before[0], geo.flip);
    const int iy = tap_read(y, ti, kh, geo.stride[1], geo.dilation[1], geo.pad_before[1], geo.flip);
    const int ix = tap_read(x, tj, kw, geo.stride[2], geo.dilation[2], geo.pad_before[2], geo.flip);
    if (iz < 0 || iz >= id || iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
    const Acc g = load(topgrad + (static_cast<long long>(b) * filters + f) * positions + p);
    const Acc v = load(image + (static_cast<long long>(b) * geo.channels + c) * image_size +
                       (iz * ih + iy) * iw + ix);
    sum += g * v;
  }
  shared[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[block] = shared[0];
}

// A grid of blocks over (positions, planes): x covers one plane's N elements (capped; the kernels
// loop over what it leaves), y the planes (capped at CUDA's 65535; the kernels loop likewise).
dim3 plane_grid(long long n, long long planes) {
  const long long x = (n + kThreads - 1) / kThreads;
  const long long x_cap = 65535LL * 32;
  const long long y_cap = 65535;
  return dim3(static_cast<unsigned int>(x < 1 ? 1 : (x > x_cap ? x_cap : x)),
              static_cast<unsigned int>(planes > y_cap ? y_cap : planes), 1);
}

bool fits_int(long long n) {
  return n >= 0 && n <= INT_MAX;
}

// Runs FN with the storage type of TYPE, then returns the launch status.
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

long long plane_size(const int (&axes)[3]) {
  return static_cast<long long>(axes[0]) * axes[1] * axes[2];
}

// Every per-plane and per-image count the kernels index with int (the caller's planner bounds the
// spatial sizes already; this guards the launchers on their own).
bool sizes_fit(const GpuCorrGeometry& geo, int multiplier) {
  const long long filters = static_cast<long long>(geo.channels) * multiplier;
  return multiplier >= 1 && fits_int(filters) && fits_int(plane_size(geo.image)) &&
         fits_int(plane_size(geo.output)) && fits_int(filters * plane_size(geo.kernel));
}

}  // namespace

cudaError_t launch_depthwise_forward(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                     int multiplier, const void* image, const void* kernel,
                                     void* output, cudaStream_t stream) {
  if (!sizes_fit(geo, multiplier)) return cudaErrorInvalidValue;
  const long long planes = static_cast<long long>(batch) * geo.channels * multiplier;
  if (!fits_int(planes)) return cudaErrorInvalidValue;
  if (planes == 0 || plane_size(geo.output) == 0) return cudaSuccess;
  const dim3 grid = plane_grid(plane_size(geo.output), planes);
  return with_type(type, [&]<typename T>(T*) {
    depthwise_forward_kernel<T><<<grid, kThreads, 0, stream>>>(
        geo, static_cast<int>(planes), multiplier, static_cast<const T*>(image),
        static_cast<const T*>(kernel), static_cast<T*>(output));
  });
}

cudaError_t launch_depthwise_grad_inputs(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                         int multiplier, const void* kernel, const void* topgrad,
                                         void* image_grad, cudaStream_t stream) {
  if (!sizes_fit(geo, multiplier)) return cudaErrorInvalidValue;
  const long long planes = static_cast<long long>(batch) * geo.channels;
  if (!fits_int(planes)) return cudaErrorInvalidValue;
  if (planes == 0 || plane_size(geo.image) == 0) return cudaSuccess;
  const dim3 grid = plane_grid(plane_size(geo.image), planes);
  return with_type(type, [&]<typename T>(T*) {
    depthwise_grad_inputs_kernel<T><<<grid, kThreads, 0, stream>>>(
        geo, static_cast<int>(planes), multiplier, static_cast<const T*>(kernel),
        static_cast<const T*>(topgrad), static_cast<T*>(image_grad));
  });
}

cudaError_t launch_depthwise_grad_weights(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                          int multiplier, const void* image, const void* topgrad,
                                          int slices, void* partials, cudaStream_t stream) {
  if (!sizes_fit(geo, multiplier) || slices < 1 || batch < 0) return cudaErrorInvalidValue;
  const long long n = static_cast<long long>(geo.channels) * multiplier * plane_size(geo.kernel);
  const long long blocks = n * slices;
  if (!fits_int(blocks)) return cudaErrorInvalidValue;
  if (blocks == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    using Acc = typename AccumulatorOf<T>::type;
    depthwise_grad_weights_kernel<T><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        geo, batch, multiplier, slices, static_cast<const T*>(image),
        static_cast<const T*>(topgrad), static_cast<Acc*>(partials));
  });
}

}  // namespace convgraph::gpu
