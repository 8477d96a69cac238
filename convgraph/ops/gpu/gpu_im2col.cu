// The kernels of gpu_im2col.hpp. All of them move data at (or near) memory bandwidth, so what
// matters is bytes per instruction and how few integer divisions each element costs:
//
// - im2col: one thread per (image, channel, V consecutive output positions). The divisions into
//   coordinates happen once per thread; the thread then walks the taps, each tap one V-wide
//   store (16 bytes: 8 float16, 4 float32, 2 float64) into its row of the column matrix. V > 1
//   needs positions to be contiguous (layout.position == 1) and rows to keep the alignment
//   (layout.row % V == 0); the thread's V positions are aligned to the column matrix's address,
//   not to the position index, so that per-image blocks starting anywhere (P odd, chunks of a few
//   images) still store aligned vectors, with scalar stores at the two ends of each block.
// - col2im: a gather, one thread per V consecutive elements of an image row: no atomics, every
//   image element written once, deterministic. The taps reaching the row are worked out once per
//   thread on the outer axes; along the row a division per tap gives the first output column
//   and its remainder, then the V elements step through them incrementally.
// - permute3: rows copied as 16-byte words when the innermost axis stays contiguous, a tiled
//   transpose through shared memory when the innermost destination stride is not 1 but another
//   axis has a unit destination stride, an element-wise copy otherwise.
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "convgraph/ops/gpu/gpu_im2col.hpp"
#include "convgraph/ops/gpu/gpu_kernel_common.cuh"

namespace convgraph::gpu {
namespace {

using kernel_common::AccumulatorOf;
using kernel_common::fits_int;
using kernel_common::store_as;
using kernel_common::with_type;

constexpr int kThreads = 256;

// Grid-stride loops cover what a capped grid leaves over.
unsigned int grid_for(long long n) {
  const long long blocks = (n + kThreads - 1) / kThreads;
  const long long cap = 65535LL * 32;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

template <typename T>
__device__ typename AccumulatorOf<T>::type load(const T* p) {
  return *p;
}
template <>
__device__ float load<__half>(const __half* p) {
  return __half2float(*p);
}

// V consecutive elements, stored (or loaded) with one instruction of V * sizeof(T) bytes (at most
// 16) at an address aligned to it.
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// The widest vector of T a kernel uses: 16 bytes.
template <typename T>
constexpr int kMaxVector = static_cast<int>(16 / sizeof(T));

// *DST = X as one store instruction of sizeof(X) bytes (DST aligned to it). Through PTX: the
// compiler splits a plain struct copy into per-element stores once the elements were computed
// one by one (as col2im's sums are). No "memory" clobber: nothing else in the kernels touches
// the stored elements, and the loads of the next tap may move ahead of the store.
template <typename T, int V>
__device__ inline void store_vector(T* dst, const Vec<T, V>& x) {
  constexpr int kBytes = static_cast<int>(sizeof(Vec<T, V>));
  if constexpr (V == 1) {
    dst[0] = x.v[0];
  } else {
    unsigned int w[kBytes / 4];
    memcpy(w, &x, kBytes);
    const std::size_t global = __cvta_generic_to_global(dst);
    if constexpr (kBytes == 16) {
      asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(global), "r"(w[0]), "r"(w[1]),
                   "r"(w[2]), "r"(w[3]));
    } else if constexpr (kBytes == 8) {
      asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(global), "r"(w[0]), "r"(w[1]));
    } else {
      asm volatile("st.global.u32 [%0], %1;" ::"l"(global), "r"(w[0]));
    }
  }
}

template <typename T, int V>
__device__ inline bool aligned_for(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % sizeof(Vec<T, V>) == 0;
}

// How many elements before P the last V-aligned address is (0 for V == 1): a thread's V
// elements start at g * V minus this, so that its vector stores are aligned.
template <typename T, int V>
__device__ inline int misalignment(const T* p) {
  return V == 1 ? 0 : static_cast<int>((reinterpret_cast<std::uintptr_t>(p) / sizeof(T)) % V);
}

// ---- im2col ----

// The stored tap T of K read mirrored when the filter is flipped.
__device__ inline int read_tap(int t, int k, bool flip) {
  return flip ? k - 1 - t : t;
}

// One thread per (plane = image * C + channel, group of V consecutive output positions of the
// range); GROUPS groups per plane. Entry (c * taps + t, b, p) of the column matrix is the image
// at z * s + tap' * d - pad on each axis for output position FIRST + p, 0 in the padding.
template <typename T, int V>
__global__ void im2col_kernel(GpuCorrGeometry geo, int planes, int groups, int first_position,
                              int positions, const T* __restrict__ image, T* __restrict__ col,
                              ColumnLayout layout) {
  const int oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int taps = kd * kh * kw;
  const int plane_size = id * ih * iw;
  const int total = planes * groups;  // <= planes * P (groups <= P), checked to fit
  const T zero = static_cast<T>(0.0f);
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int plane = index / groups;
    const int g = index - plane * groups;
    const int c = plane % geo.channels;
    const int b = plane / geo.channels;
    // Entry (c * taps, b, 0): the row of tap 0 of this plane.
    T* const base = col + static_cast<long long>(c) * taps * layout.row + b * layout.image;
    const int p0 = g * V - misalignment<T, V>(base);
    if (p0 >= positions) continue;
    const int first = p0 < 0 ? 0 : p0;
    // Per position v: whether it is this plane's (p in [0, count) of the range) and the image
    // coordinates that the unmirrored tap (0, 0, 0) reads (z * s - pad on each axis).
    bool valid[V];
    int zb[V], yb[V], xb[V];
    {
      const int at = first_position + first;
      int x = at % ow;
      int y = (at / ow) % oh;
      int z = at / (ow * oh);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        valid[v] = p0 + v >= first && p0 + v < positions;
        zb[v] = z * geo.stride[0] - geo.pad_before[0];
        yb[v] = y * geo.stride[1] - geo.pad_before[1];
        xb[v] = x * geo.stride[2] - geo.pad_before[2];
        if (valid[v] && ++x == ow) {
          x = 0;
          if (++y == oh) {
            y = 0;
            ++z;
          }
        }
      }
    }
    bool full = true;
#pragma unroll
    for (int v = 0; v < V; ++v) full = full && valid[v];
    const T* src = image + static_cast<long long>(plane) * plane_size;
    T* dst = base + p0 * layout.position;  // V > 1 only where layout.position == 1
    for (int a = 0; a < kd; ++a) {
      const int dz = read_tap(a, kd, geo.flip) * geo.dilation[0];
      bool z_in[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        z_in[v] = valid[v] && static_cast<unsigned>(zb[v] + dz) < static_cast<unsigned>(id);
      }
      for (int i = 0; i < kh; ++i) {
        const int dy = read_tap(i, kh, geo.flip) * geo.dilation[1];
        // Per position: whether the image row read is inside the image, and its offset (only
        // in-range offsets are formed, so that no intermediate leaves int32).
        bool zy_in[V];
        int line[V];
#pragma unroll
        for (int v = 0; v < V; ++v) {
          zy_in[v] = z_in[v] && static_cast<unsigned>(yb[v] + dy) < static_cast<unsigned>(ih);
          line[v] = zy_in[v] ? ((zb[v] + dz) * ih + yb[v] + dy) * iw : 0;
        }
        for (int j = 0; j < kw; ++j) {
          const int dx = read_tap(j, kw, geo.flip) * geo.dilation[2];
          Vec<T, V> out;
#pragma unroll
          for (int v = 0; v < V; ++v) {
            const int x = xb[v] + dx;
            const bool in = zy_in[v] && static_cast<unsigned>(x) < static_cast<unsigned>(iw);
            out.v[v] = in ? src[line[v] + x] : zero;
          }
          if (full && aligned_for<T, V>(dst)) {
            store_vector(dst, out);
          } else {
#pragma unroll
            for (int v = 0; v < V; ++v) {
              if (valid[v]) dst[v * layout.position] = out.v[v];
            }
          }
          dst += layout.row;
        }
      }
    }
  }
}

// ---- col2im ----

// The output position O that reads image coordinate I through stored tap T on one axis, or -1
// when none does (I falls between strided reads, or outside the output).
__device__ inline int output_reading(int i, int t, int k, int s, int d, int pad, bool flip,
                                     int out) {
  const int n = i + pad - read_tap(t, k, flip) * d;
  if (n < 0) return -1;
  if (s == 1) return n < out ? n : -1;
  if (n % s != 0) return -1;
  const int o = n / s;
  return o < out ? o : -1;
}

// One thread per (image row = ((b * C + c) * depth + iz) * height + iy, group of V consecutive
// elements of the row); GROUPS groups per row. Each element is the sum of the column entries
// read from it: per tap, the output coordinate n = i + pad - tap' * d must be a multiple of the
// stride (o = n / s) inside the output.
template <typename T, int V>
__global__ void col2im_kernel(GpuCorrGeometry geo, int rows, int groups, const T* __restrict__ col,
                              ColumnLayout layout, T* __restrict__ image) {
  using Acc = typename AccumulatorOf<T>::type;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int sx = geo.stride[2];
  const int taps = kd * kh * kw;
  const int total = rows * groups;  // <= rows * width (groups <= width), checked to fit
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int row = index / groups;
    const int g = index - row * groups;
    T* const out = image + static_cast<long long>(row) * iw;
    const int x0 = g * V - misalignment<T, V>(out);
    if (x0 >= iw) continue;
    const int iy = row % ih;
    const int iz = (row / ih) % id;
    const int plane = row / (ih * id);
    const int c = plane % geo.channels;
    const int b = plane / geo.channels;
    const T* base = col + static_cast<long long>(c) * taps * layout.row + b * layout.image;
    bool valid[V];
    Acc sum[V];
    bool full = true;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      valid[v] = x0 + v >= 0 && x0 + v < iw;
      full = full && valid[v];
      sum[v] = Acc(0);
    }
    for (int a = 0; a < kd; ++a) {
      const int oz = output_reading(iz, a, kd, geo.stride[0], geo.dilation[0], geo.pad_before[0],
                                    geo.flip, od);
      if (oz < 0) continue;
      for (int i = 0; i < kh; ++i) {
        const int oy = output_reading(iy, i, kh, geo.stride[1], geo.dilation[1], geo.pad_before[1],
                                      geo.flip, oh);
        if (oy < 0) continue;
        // Tap (a, i, 0), output row (oz, oy).
        const T* line = base + static_cast<long long>((a * kh + i) * kw) * layout.row +
                        static_cast<long long>((oz * oh + oy) * ow) * layout.position;
        for (int j = 0; j < kw; ++j, line += layout.row) {
          // Element x0 + v reads output column q with remainder r: n = x0 + v + pad - tap' * d
          // = q * s + r, 0 <= r < s; it is read where r == 0 and 0 <= q < ow.
          const int n0 = x0 + geo.pad_before[2] - read_tap(j, kw, geo.flip) * geo.dilation[2];
          int q = n0, r = 0;
          if (sx != 1) {
            q = n0 >= 0 ? n0 / sx : -((sx - 1 - n0) / sx);
            r = n0 - q * sx;
          }
#pragma unroll
          for (int v = 0; v < V; ++v) {
            if (valid[v] && r == 0 && static_cast<unsigned>(q) < static_cast<unsigned>(ow)) {
              sum[v] += load(line + q * layout.position);
            }
            if (++r == sx) {
              r = 0;
              ++q;
            }
          }
        }
      }
    }
    if (full && aligned_for<T, V>(out + x0)) {
      Vec<T, V> result;
#pragma unroll
      for (int v = 0; v < V; ++v) result.v[v] = store_as<T>(sum[v]);
      store_vector(out + x0, result);
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        if (valid[v]) out[x0 + v] = store_as<T>(sum[v]);
      }
    }
  }
}

// ---- permute3 ----
// A pure copy: the kernels move raw words (W: 2, 4, 8 or 16 bytes) whatever the element type.

// Rows of WORDS words: row (i0, i1) of SRC (contiguous) to DST + i0 * s0 + i1 * s1 (in words).
template <typename W>
__global__ void copy_rows_kernel(const W* __restrict__ src, int d1, int words, int total,
                                 W* __restrict__ dst, long long s0, long long s1) {
  for (long long next = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; next < total;
       next += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int index = static_cast<int>(next);
    const int row = index / words;
    const int w = index - row * words;
    const int i1 = row % d1;
    const int i0 = row / d1;
    dst[i0 * s0 + i1 * s1 + w] = src[index];
  }
}

constexpr int kTile = 32;
constexpr int kTileRows = 8;

// DST[o * dst_o + a + k * dst_k] <- SRC[o * src_o + a * src_a + k] for a < NA, k < NK, o < NO:
// a transpose of (a, k) batched over o. A block stages a 32 x 32 tile in shared memory: reads
// run along k (contiguous in SRC), writes along a (contiguous in DST).
template <typename W>
__global__ void transpose_kernel(const W* __restrict__ src, int na, int nk, int no, long long src_o,
                                 long long src_a, W* __restrict__ dst, long long dst_o,
                                 long long dst_k) {
  __shared__ W tile[kTile][kTile + 1];  // + 1: the column reads fall in distinct banks
  const int a0 = blockIdx.y * kTile;
  const int k0 = blockIdx.x * kTile;
  for (int o = blockIdx.z; o < no; o += gridDim.z) {
    const W* s = src + o * src_o;
    W* d = dst + o * dst_o;
#pragma unroll
    for (int r = threadIdx.y; r < kTile; r += kTileRows) {
      const int a = a0 + r, k = k0 + threadIdx.x;
      if (a < na && k < nk) tile[r][threadIdx.x] = s[a * src_a + k];
    }
    __syncthreads();
#pragma unroll
    for (int r = threadIdx.y; r < kTile; r += kTileRows) {
      const int k = k0 + r, a = a0 + threadIdx.x;
      if (a < na && k < nk) d[a + k * dst_k] = tile[threadIdx.x][r];
    }
    __syncthreads();
  }
}

// Any strides: one thread per element.
template <typename W>
__global__ void permute3_kernel(const W* __restrict__ src, int d1, int d2, int total,
                                W* __restrict__ dst, long long s0, long long s1, long long s2) {
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

// ---- reductions and conversions ----

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

// ---- launchers ----

// Runs FN with std::integral_constant<int, V> for V in 1, 2, 4, ... up to the vector width of T
// (V must be one of them).
template <typename T, typename Fn>
void with_vector(int v, Fn&& fn) {
  if constexpr (kMaxVector<T> >= 8) {
    if (v == 8) return fn(std::integral_constant<int, 8>{});
  }
  if constexpr (kMaxVector<T> >= 4) {
    if (v == 4) return fn(std::integral_constant<int, 4>{});
  }
  if (v == 2) return fn(std::integral_constant<int, 2>{});
  fn(std::integral_constant<int, 1>{});
}

// The elements per thread along a line of LENGTH elements: the widest vector of T (at most
// 16 bytes) that divides ALIGNMENT (the stride between lines that must keep the vectors
// aligned; 0: none) and leaves the line some 4 vectors long, so that short lines do not leave
// most of a thread's slots past their end. 1 where lines are not contiguous.
template <typename T>
int vector_width(long long length, long long alignment, bool contiguous) {
  if (!contiguous) return 1;
  int v = kMaxVector<T>;
  while (v > 1 && (alignment % v != 0 || 4LL * v > length)) v /= 2;
  return v;
}

// Groups of V elements covering a line of LENGTH whose first element may sit anywhere in a
// vector: ceil((length + V - 1) / V), which is at most LENGTH.
long long groups_for(long long length, int v) {
  return v == 1 ? length : (length + 2LL * v - 2) / v;
}

int ilog_words(std::uintptr_t bits) {
  // The largest of 16, 8, 4, 2, 1 dividing BITS.
  int w = 16;
  while (w > 1 && bits % w != 0) w /= 2;
  return w;
}

template <typename W>
void launch_copy_rows(const void* src, long long rows_d0, long long d1, long long words, void* dst,
                      long long s0, long long s1, cudaStream_t stream) {
  const long long total = rows_d0 * d1 * words;
  copy_rows_kernel<W><<<grid_for(total), kThreads, 0, stream>>>(
      static_cast<const W*>(src), static_cast<int>(d1), static_cast<int>(words),
      static_cast<int>(total), static_cast<W*>(dst), s0, s1);
}

template <typename W>
void launch_permute_words(const void* src, long long d0, long long d1, long long d2, void* dst,
                          long long s0, long long s1, long long s2, cudaStream_t stream) {
  // A tiled transpose where some outer axis has a unit destination stride: axis a (unit
  // stride) against the innermost axis k, batched over the other one, o.
  if (s0 == 1 || s1 == 1) {
    const bool a_is_0 = s0 == 1;
    const long long na = a_is_0 ? d0 : d1, no = a_is_0 ? d1 : d0;
    const long long src_a = a_is_0 ? d1 * d2 : d2, src_o = a_is_0 ? d2 : d1 * d2;
    const long long dst_o = a_is_0 ? s1 : s0;
    const long long tiles_a = (na + kTile - 1) / kTile, tiles_k = (d2 + kTile - 1) / kTile;
    if (tiles_a <= 65535) {
      const dim3 grid(static_cast<unsigned int>(tiles_k), static_cast<unsigned int>(tiles_a),
                      static_cast<unsigned int>(no < 65535 ? no : 65535));
      transpose_kernel<W><<<grid, dim3(kTile, kTileRows), 0, stream>>>(
          static_cast<const W*>(src), static_cast<int>(na), static_cast<int>(d2),
          static_cast<int>(no), src_o, src_a, static_cast<W*>(dst), dst_o, s2);
      return;
    }
  }
  const long long total = d0 * d1 * d2;
  permute3_kernel<W><<<grid_for(total), kThreads, 0, stream>>>(
      static_cast<const W*>(src), static_cast<int>(d1), static_cast<int>(d2),
      static_cast<int>(total), static_cast<W*>(dst), s0, s1, s2);
}

}  // namespace

cudaError_t launch_im2col(GpuElement type, const GpuCorrGeometry& geo, int images,
                          const void* image, void* col, ColumnLayout layout, cudaStream_t stream) {
  const long long all = static_cast<long long>(geo.output[0]) * geo.output[1] * geo.output[2];
  if (layout.first < 0 || layout.first > all || layout.count < -1 ||
      layout.count > all - layout.first) {
    return cudaErrorInvalidValue;
  }
  const long long positions = layout.count < 0 ? all - layout.first : layout.count;
  const long long planes = static_cast<long long>(images) * geo.channels;
  if (!fits_int(planes * positions)) return cudaErrorInvalidValue;
  if (planes * positions == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    // Vectors along the positions need them contiguous, and every row's start aligned like the
    // first row's.
    const int width = vector_width<T>(positions, layout.row, layout.position == 1);
    with_vector<T>(width, [&](auto v) {
      constexpr int V = decltype(v)::value;
      const long long groups = groups_for(positions, V);
      im2col_kernel<T, V><<<grid_for(planes * groups), kThreads, 0, stream>>>(
          geo, static_cast<int>(planes), static_cast<int>(groups), static_cast<int>(layout.first),
          static_cast<int>(positions), static_cast<const T*>(image), static_cast<T*>(col), layout);
    });
  });
}

cudaError_t launch_col2im(GpuElement type, const GpuCorrGeometry& geo, int images, const void* col,
                          ColumnLayout layout, void* image, cudaStream_t stream) {
  const long long all = static_cast<long long>(geo.output[0]) * geo.output[1] * geo.output[2];
  if (layout.first != 0 || (layout.count >= 0 && layout.count != all)) return cudaErrorInvalidValue;
  const long long width = geo.image[2];
  const long long rows =
      static_cast<long long>(images) * geo.channels * geo.image[0] * geo.image[1];
  if (!fits_int(rows * width)) return cudaErrorInvalidValue;
  if (rows * width == 0) return cudaSuccess;
  return with_type(type, [&]<typename T>(T*) {
    // Rows of the image are contiguous; each thread finds its own alignment.
    const int vector = vector_width<T>(width, 0, true);
    with_vector<T>(vector, [&](auto v) {
      constexpr int V = decltype(v)::value;
      const long long groups = groups_for(width, V);
      col2im_kernel<T, V><<<grid_for(rows * groups), kThreads, 0, stream>>>(
          geo, static_cast<int>(rows), static_cast<int>(groups), static_cast<const T*>(col), layout,
          static_cast<T*>(image));
    });
  });
}

cudaError_t launch_permute3(GpuElement type, const void* src, long long d0, long long d1,
                            long long d2, void* dst, long long s0, long long s1, long long s2,
                            cudaStream_t stream) {
  const long long total = d0 * d1 * d2;
  if (d0 < 0 || d1 < 0 || d2 < 0 || !fits_int(total)) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  const long long size = type == GpuElement::f16 ? 2 : (type == GpuElement::f32 ? 4 : 8);
  if (s2 == 1) {
    // Rows of d2 elements stay contiguous: a batched row copy, in the widest words (up to 16
    // bytes) that the row length, the outer strides (where their axis has more than one entry)
    // and both addresses allow.
    std::uintptr_t bits = static_cast<std::uintptr_t>(d2 * size) |
                          reinterpret_cast<std::uintptr_t>(src) |
                          reinterpret_cast<std::uintptr_t>(dst);
    if (d0 > 1) bits |= static_cast<std::uintptr_t>(s0 * size);
    if (d1 > 1) bits |= static_cast<std::uintptr_t>(s1 * size);
    const int word = ilog_words(bits);  // >= size: everything is a multiple of it
    const long long words = d2 * size / word;
    const long long w0 = s0 * size / word, w1 = s1 * size / word;
    switch (word) {
      case 16:
        launch_copy_rows<uint4>(src, d0, d1, words, dst, w0, w1, stream);
        break;
      case 8:
        launch_copy_rows<uint2>(src, d0, d1, words, dst, w0, w1, stream);
        break;
      case 4:
        launch_copy_rows<unsigned int>(src, d0, d1, words, dst, w0, w1, stream);
        break;
      default:
        launch_copy_rows<unsigned short>(src, d0, d1, words, dst, w0, w1, stream);
        break;
    }
    return cudaGetLastError();
  }
  switch (type) {
    case GpuElement::f16:
      launch_permute_words<unsigned short>(src, d0, d1, d2, dst, s0, s1, s2, stream);
      break;
    case GpuElement::f32:
      launch_permute_words<unsigned int>(src, d0, d1, d2, dst, s0, s1, s2, stream);
      break;
    case GpuElement::f64:
      launch_permute_words<unsigned long long>(src, d0, d1, d2, dst, s0, s1, s2, stream);
      break;
  }
  return cudaGetLastError();
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
