#include <cuda_fp16.h>

#include <climits>
#include <cstddef>
#include <vector>

#include "convgraph/ops/gpu/gpu_direct_grouped.hpp"
#include "convgraph/ops/gpu/gpu_kernel_common.cuh"

namespace convgraph::gpu {
namespace {

using kernel_common::AccumulatorOf;
using kernel_common::fits_int;
using kernel_common::store_as;
using kernel_common::with_type;

// Forward and gradInputs: each thread computes kRows rows x kCols columns of results, the rows
// TY apart and the columns TX apart (TX x TY threads), so a tile is kRows * TY rows by kCols * TX
// columns and a warp reads consecutive shared-memory words.
constexpr int kRows = 2;
constexpr int kCols = 4;
constexpr int kMaxThreads = 256;
constexpr int kMaxThreadsX = 64;
// Forward and gradInputs blocks of 256 threads resident per SM the register allocation must
// allow, by the bytes of a thread's accumulators per result (CHUNK * ACC_BYTES): 4 (64 registers
// a thread, 32 warps per SM) for one float, 3 (80) up to 16 bytes, else 2. Resident warps are
// what hides the global loads' latency here (a block stages, syncs, computes); more blocks than
// these make ptxas spill (checked with -Xptxas -v for sm_90).
template <int Chunk, int AccBytes>
constexpr int kMinBlocks = Chunk* AccBytes <= 4    ? 4
                           : Chunk* AccBytes <= 16 ? 3
                                                   : 2;
// Staging loads in flight per thread (stage_units): 8 where a thread keeps one float per result,
// 4 for two, 2 with more accumulators (the registers left).
template <int Chunk, int AccBytes>
constexpr int kConvBatch = Chunk* AccBytes <= 4   ? 8
                           : Chunk* AccBytes <= 8 ? 4
                                                  : 2;
// Up to this many filters (forward) or channels (gradInputs) of one group per block.
constexpr int kMaxChunk = 4;
// gradWeights: 32 x 8 threads.
constexpr int kWeightThreadsX = 32;
constexpr int kWeightThreadsY = 8;
constexpr int kWeightThreads = kWeightThreadsX * kWeightThreadsY;
// gradWeights blocks resident per SM the registers must allow, by the bytes of a thread's N
// accumulators (each with an int offset): 4 (64 registers) up to 9 floats, 3 (80) up to 18, 2
// (128) up to 32, else 1 (no bound: the float64 ones with many accumulators).
template <int N, int AccBytes>
constexpr int kWeightMinBlocks = N* AccBytes <= 36    ? 4
                                 : N* AccBytes <= 72  ? 3
                                 : N* AccBytes <= 128 ? 2
                                                      : 1;
// gradWeights staging loads in flight per thread (more spill with 64 / 80 registers).
constexpr int kWeightBatch = 4;
// gradWeights work items cover about this many output positions (fewer items: fewer
// stage / sync / compute / sync rounds per block).
constexpr long long kWeightTilePositions = 4096;
// Dynamic shared memory of one block (below the 48 KiB that needs no opt-in).
constexpr long long kSharedBudget = 44 * 1024;

// Loads through the read-only data cache (the inputs are never written by a launch).
__device__ inline float load(const float* p) {
  return __ldg(p);
}
__device__ inline double load(const double* p) {
  return __ldg(p);
}
__device__ inline float load(const __half* p) {
  return __half2float(__ldg(p));
}

// A loaded value in the accumulator type.
__device__ inline float load_value(float v) {
  return v;
}
__device__ inline double load_value(double v) {
  return v;
}
__device__ inline float load_value(__half v) {
  return __half2float(v);
}

// floor(a / b) for b > 0.
__host__ __device__ inline int floor_div(int a, int b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// What one staging unit loads: an element, or (PAIRS) two adjacent float16 elements as one
// 4-byte __half2.
template <typename T, bool Pairs>
struct StageUnit {
  using type = T;
};
template <>
struct StageUnit<__half, true> {
  using type = __half2;
};

// stage_plane's loop over units of V = 1 or 2 (PAIRS) columns: unit (r, q) covers staged row r,
// image columns XA + q * V .. + V - 1. Each thread takes units TID, TID + THREADS, ... (stepping
// (r, q) without divisions) in batches of BATCH: it issues all loads of a batch before storing
// any, so BATCH loads per thread are in flight at once instead of one (the kernels were bound by
// the latency of one load after another). A unit's packed destination CODE = (staged index of
// its first element + 1) * 4 + (write the first element) + 2 * (write the second; a pair's first
// element sits at staged column -1 when C0 is odd); -1 past the last row.
template <int Batch, bool Pairs, typename T, typename Acc>
__device__ inline void stage_units(Acc* __restrict__ dst, const T* __restrict__ src, int h, int w,
                                   int r0, int c0, int rows, int cols) {
  using U = typename StageUnit<T, Pairs>::type;
  constexpr int V = Pairs ? 2 : 1;
  const int threads = static_cast<int>(blockDim.x);
  const int tid = static_cast<int>(threadIdx.x);
  const int xa = Pairs ? c0 - (c0 & 1) : c0;  // even for pairs (floor, negative c0 included)
  const int per_row = Pairs ? (c0 + cols - 1 - xa) / 2 + 1 : cols;
  const int dr = threads / per_row, dq = threads - dr * per_row;
  int r = tid / per_row, q = tid - r * per_row;
  while (r < rows) {
    U v[Batch];
    int code[Batch];
#pragma unroll
    for (int k = 0; k < Batch; ++k) {
      const int y = r0 + r, x = xa + q * V;
      // Pairs: x and w are even, so x < w covers both elements.
      const bool in = r < rows && y >= 0 && y < h && x >= 0 && x < w;
      if constexpr (Pairs) {
        v[k] =
            in ? __ldg(reinterpret_cast<const __half2*>(src + y * w + x)) : __float2half2_rn(0.0f);
      } else {
        v[k] = in ? __ldg(src + y * w + x) : T(0);
      }
      const int col = x - c0;
      code[k] =
          r < rows ? (r * cols + col + 1) * 4 + (col >= 0 ? 1 : 0) + (col + 1 < cols ? 2 : 0) : -1;
      q += dq;
      r += dr;
      if (q >= per_row) {
        q -= per_row;
        ++r;
      }
    }
#pragma unroll
    for (int k = 0; k < Batch; ++k) {
      if (code[k] < 0) continue;
      Acc* d = dst + ((code[k] >> 2) - 1);
      if constexpr (Pairs) {
        const float2 f = __half22float2(v[k]);
        if (code[k] & 1) d[0] = f.x;
        if (code[k] & 2) d[1] = f.y;
      } else {
        d[0] = Acc(load_value(v[k]));
      }
    }
  }
}

// DST[r * COLS + q] <- SRC[(R0 + r) * W + C0 + q] for r < ROWS, q < COLS, converted to the
// accumulator type; 0 where (R0 + r, C0 + q) is outside [0, H) x [0, W) (H = 0: all zeros, SRC
// never read). float16 planes of even width at a 4-byte aligned SRC load __half2 pairs (every
// row then starts on an even element; a pair is wholly inside or outside the row, and the pair
// straddling C0 or C0 + COLS stores only its element inside the staged columns); anything else
// loads element by element. BATCH loads per thread in flight (stage_units).
template <int Batch, typename T, typename Acc>
__device__ void stage_plane(Acc* __restrict__ dst, const T* __restrict__ src, int h, int w, int r0,
                            int c0, int rows, int cols) {
  if constexpr (sizeof(T) == 2) {
    if ((w & 1) == 0 && (reinterpret_cast<unsigned long long>(src) & 3ULL) == 0) {
      stage_units<Batch, true>(dst, src, h, w, r0, c0, rows, cols);
      return;
    }
  }
  stage_units<Batch, false>(dst, src, h, w, r0, c0, rows, cols);
}

// The tiling of a forward or gradInputs launch: TX x TY computing threads (THREADS, a multiple of
// 32, in the block), the staged plane (ROWS x COLS), the tiles over the result's rows and
// columns, and how many chunks of up to kMaxChunk filters (forward) or channels (gradInputs) a
// group is cut into, CHUNK of them each.
struct ConvTile {
  int tx = 1, ty = 1, threads = 32;
  int rows = 1, cols = 1;
  int ytiles = 1, xtiles = 1;
  int chunk = 1, chunks = 1;
  int shared_bytes = 0;
};

// The tiling of a gradWeights launch: TH x TW output positions per work item, the staged planes
// (ROWS x COLS each), and the chunks of (channel, tap) pairs: PLANES_PER_CHUNK (channel, depth
// tap) planes with TAPS_PER_CHUNK of their kh * kw taps (TAP_CHUNKS such ranges per plane), at
// most N pairs per chunk (the kernel's accumulator count).
struct WeightsTile {
  int n = 1;
  int th = 1, tw = 1, rows = 1, cols = 1;
  int ytiles = 1, xtiles = 1;
  int planes_per_chunk = 1, taps_per_chunk = 1, tap_chunks = 1, chunks = 1;
  long long items = 0;
  int shared_bytes = 0;
};

// Where the block's tile of a forward or gradInputs launch lies (blockIdx.x = (depth z, row tile,
// column tile)): the result's depth Z, the tile's first row Y0 and first column X0.
struct TileOrigin {
  int z, y0, x0;
};

__device__ inline TileOrigin tile_origin(const ConvTile& tile) {
  int t = static_cast<int>(blockIdx.x);
  const int xt = t % tile.xtiles;
  t /= tile.xtiles;
  const int yt = t % tile.ytiles;
  return {t / tile.ytiles, yt * kRows * tile.ty, xt * kCols * tile.tx};
}

// S_W[n * kh * kw + u] <- the weight that read tap u = (ui, uj) applies (the stored tap mirrored
// when FLIP is set) for the chunk's entry n < C, whose kh x kw taps of the plane start at
// FIRST + n * STRIDE; 0 for the entries from VALID on (past the group's filters or channels).
template <int C, typename T, typename Acc>
__device__ void stage_chunk_weights(Acc* __restrict__ s_w, const T* __restrict__ first,
                                    long long stride, int valid, int kh, int kw, bool flip) {
  const int khw = kh * kw;
  for (int e = static_cast<int>(threadIdx.x); e < C * khw; e += static_cast<int>(blockDim.x)) {
    const int n = e / khw;
    const int u = e - n * khw;
    const int ui = u / kw;
    const int uj = u - ui * kw;
    const int ti = flip ? kh - 1 - ui : ui;
    const int tj = flip ? kw - 1 - uj : uj;
    s_w[e] = n < valid ? Acc(load(first + n * stride + ti * kw + tj)) : Acc(0);
  }
}

// The thread's results ACC[n][r][v] of the chunk's entries n < VALID into the H x W planes
// DST + n * PLANE_STRIDE: row Y0 + TY + r * tile.ty, column X0 + TX + v * tile.tx, where inside
// the plane.
template <int C, typename T, typename Acc>
__device__ void store_tile(const Acc (&acc)[C][kRows][kCols], T* __restrict__ dst,
                           long long plane_stride, int valid, int y0, int x0, int ty, int tx,
                           const ConvTile& tile, int h, int w) {
#pragma unroll
  for (int n = 0; n < C; ++n) {
    if (n >= valid) continue;
    T* plane = dst + n * plane_stride;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int y = y0 + ty + r * tile.ty;
      if (y >= h) continue;
#pragma unroll
      for (int v = 0; v < kCols; ++v) {
        const int x = x0 + tx + v * tile.tx;
        if (x < w) plane[y * w + x] = store_as<T>(acc[n][r][v]);
      }
    }
  }
}

// Forward. Block (blockIdx.x = (output depth z, row tile, column tile), blockIdx.y = chunk of
// filters of one group, blockIdx.z = image; y and z loop past the grid's caps).
template <typename T, int FB>
__global__ void __launch_bounds__(kMaxThreads,
                                  kMinBlocks<FB, sizeof(typename AccumulatorOf<T>::type)>)
    grouped_forward_kernel(GpuCorrGeometry geo, GroupedShape gs, ConvTile tile,
                           const T* __restrict__ image, const T* __restrict__ kernel,
                           T* __restrict__ output) {
  using Acc = typename AccumulatorOf<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Acc* s_in = reinterpret_cast<Acc*>(shared_bytes);
  Acc* s_w = s_in + tile.rows * tile.cols;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int khw = kh * kw, taps = kd * khw;
  const int sy = geo.stride[1], sx = geo.stride[2];
  const int dy = geo.dilation[1], dx = geo.dilation[2];
  const int cg = gs.channels_per_group, mg = gs.filters_per_group;
  const int filters = gs.groups * mg;
  const int image_size = id * ih * iw;
  const int positions = od * oh * ow;
  const int cols = tile.cols;
  const TileOrigin origin = tile_origin(tile);
  const int z = origin.z, y0 = origin.y0, x0 = origin.x0;
  const int tid = static_cast<int>(threadIdx.x);
  const bool active = tid < tile.tx * tile.ty;
  const int tx = tid % tile.tx, ty = tid / tile.tx;
  int base[kRows][kCols];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int v = 0; v < kCols; ++v) {
      base[r][v] = (ty + r * tile.ty) * sy * cols + (tx + v * tile.tx) * sx;
    }
  }
  const int chunk_count = gs.groups * tile.chunks;
  for (int fc = static_cast<int>(blockIdx.y); fc < chunk_count; fc += static_cast<int>(gridDim.y)) {
    const int g = fc / tile.chunks;
    const int j0 = (fc % tile.chunks) * FB;
    for (int b = static_cast<int>(blockIdx.z); b < gs.batch; b += static_cast<int>(gridDim.z)) {
      Acc acc[FB][kRows][kCols];
#pragma unroll
      for (int fb = 0; fb < FB; ++fb) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
#pragma unroll
          for (int v = 0; v < kCols; ++v) acc[fb][r][v] = Acc(0);
        }
      }
      for (int cp = 0; cp < cg; ++cp) {
        const int c = g * cg + cp;
        const T* plane0 = image + (static_cast<long long>(b) * geo.channels + c) * image_size;
        for (int ua = 0; ua < kd; ++ua) {
          const int iz = z * geo.stride[0] - geo.pad_before[0] + ua * geo.dilation[0];
          if (iz < 0 || iz >= id) continue;  // the same for the whole block
          const int a = geo.flip ? kd - 1 - ua : ua;
          stage_plane<kConvBatch<FB, sizeof(Acc)>>(
              s_in, plane0 + static_cast<long long>(iz) * ih * iw, ih, iw,
              y0 * sy - geo.pad_before[1], x0 * sx - geo.pad_before[2], tile.rows, cols);
          // The chunk's weights of plane (cp, a), in reading order (mirrored when flipped).
          stage_chunk_weights<FB>(
              s_w, kernel + (static_cast<long long>(g * mg + j0) * cg + cp) * taps + a * khw,
              static_cast<long long>(cg) * taps, mg - j0, kh, kw, geo.flip);
          __syncthreads();
          if (active) {
#pragma unroll 1
            for (int ui = 0; ui < kh; ++ui) {
#pragma unroll 1
              for (int uj = 0; uj < kw; ++uj) {
                const int off = ui * dy * cols + uj * dx;
                Acc w[FB];
#pragma unroll
                for (int fb = 0; fb < FB; ++fb) w[fb] = s_w[fb * khw + ui * kw + uj];
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
#pragma unroll
                  for (int v = 0; v < kCols; ++v) {
                    const Acc x = s_in[base[r][v] + off];
#pragma unroll
                    for (int fb = 0; fb < FB; ++fb) acc[fb][r][v] += x * w[fb];
                  }
                }
              }
            }
          }
          __syncthreads();
        }
      }
      if (active) {
        store_tile(acc,
                   output + (static_cast<long long>(b) * filters + g * mg + j0) * positions +
                       static_cast<long long>(z) * oh * ow,
                   positions, mg - j0, y0, x0, ty, tx, tile, oh, ow);
      }
    }
  }
}

// Gradient with respect to the image, a gather. Block (blockIdx.x = (image depth z, row tile,
// column tile), blockIdx.y = chunk of channels of one group, blockIdx.z = image). The staged
// topgrad plane starts at output row O_LO_Y = ceil((y0 + pad - (kh - 1) * dy) / sy), the first
// output row any tap can reach from the tile (likewise for columns). UNIT: unit strides in rows
// and columns, where every tap of every element reads the staged plane.
template <typename T, int CB, bool Unit>
__global__ void __launch_bounds__(kMaxThreads,
                                  kMinBlocks<CB, sizeof(typename AccumulatorOf<T>::type)>)
    grouped_grad_inputs_kernel(GpuCorrGeometry geo, GroupedShape gs, ConvTile tile,
                               const T* __restrict__ kernel, const T* __restrict__ topgrad,
                               T* __restrict__ image_grad) {
  using Acc = typename AccumulatorOf<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Acc* s_top = reinterpret_cast<Acc*>(shared_bytes);
  Acc* s_w = s_top + tile.rows * tile.cols;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int khw = kh * kw, taps = kd * khw;
  const int sy = geo.stride[1], sx = geo.stride[2];
  const int dy = geo.dilation[1], dx = geo.dilation[2];
  const int py = geo.pad_before[1], px = geo.pad_before[2];
  const int cg = gs.channels_per_group, mg = gs.filters_per_group;
  const int filters = gs.groups * mg;
  const int image_size = id * ih * iw;
  const int positions = od * oh * ow;
  const int cols = tile.cols;
  const TileOrigin origin = tile_origin(tile);
  const int z = origin.z, y0 = origin.y0, x0 = origin.x0;
  const int o_lo_y = floor_div(y0 + py - (kh - 1) * dy + sy - 1, sy);
  const int o_lo_x = floor_div(x0 + px - (kw - 1) * dx + sx - 1, sx);
  const int tid = static_cast<int>(threadIdx.x);
  const bool active = tid < tile.tx * tile.ty;
  const int tx = tid % tile.tx, ty = tid / tile.tx;
  // UNIT: element (r, v) reads staged entry base - (ui * dy * cols + uj * dx) through read tap
  // (ui, uj). Otherwise: cy[r] - ui * dy (cx[v] - uj * dx) must be a non-negative multiple of
  // the stride, whose quotient is the staged row (column).
  int base[kRows][kCols];
  int cy[kRows], cx[kCols];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    cy[r] = y0 + ty + r * tile.ty + py - o_lo_y * sy;
#pragma unroll
    for (int v = 0; v < kCols; ++v) {
      base[r][v] = (ty + r * tile.ty + (kh - 1) * dy) * cols + tx + v * tile.tx + (kw - 1) * dx;
    }
  }
#pragma unroll
  for (int v = 0; v < kCols; ++v) cx[v] = x0 + tx + v * tile.tx + px - o_lo_x * sx;
  const int chunk_count = gs.groups * tile.chunks;
  for (int cc = static_cast<int>(blockIdx.y); cc < chunk_count; cc += static_cast<int>(gridDim.y)) {
    const int g = cc / tile.chunks;
    const int c0 = (cc % tile.chunks) * CB;
    for (int b = static_cast<int>(blockIdx.z); b < gs.batch; b += static_cast<int>(gridDim.z)) {
      Acc acc[CB][kRows][kCols];
#pragma unroll
      for (int cb = 0; cb < CB; ++cb) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
#pragma unroll
          for (int v = 0; v < kCols; ++v) acc[cb][r][v] = Acc(0);
        }
      }
      for (int m = 0; m < mg; ++m) {
        const int f = g * mg + m;
        const T* plane0 = topgrad + (static_cast<long long>(b) * filters + f) * positions;
        for (int ua = 0; ua < kd; ++ua) {
          // The output depth that reads image depth z through read tap ua, if any.
          const int n = z + geo.pad_before[0] - ua * geo.dilation[0];
          if (n < 0 || n % geo.stride[0] != 0) continue;  // the same for the whole block
          const int oz = n / geo.stride[0];
          if (oz >= od) continue;
          const int a = geo.flip ? kd - 1 - ua : ua;
          stage_plane<kConvBatch<CB, sizeof(Acc)>>(s_top,
                                                   plane0 + static_cast<long long>(oz) * oh * ow,
                                                   oh, ow, o_lo_y, o_lo_x, tile.rows, cols);
          stage_chunk_weights<CB>(s_w,
                                  kernel + (static_cast<long long>(f) * cg + c0) * taps + a * khw,
                                  taps, cg - c0, kh, kw, geo.flip);
          __syncthreads();
          if (active) {
#pragma unroll 1
            for (int ui = 0; ui < kh; ++ui) {
              int row[kRows];
              if (!Unit) {
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                  const int my = cy[r] - ui * dy;
                  row[r] = (my >= 0 && my % sy == 0) ? (my / sy) * cols : -1;
                }
              }
#pragma unroll 1
              for (int uj = 0; uj < kw; ++uj) {
                Acc w[CB];
#pragma unroll
                for (int cb = 0; cb < CB; ++cb) w[cb] = s_w[cb * khw + ui * kw + uj];
                if (Unit) {
                  const int off = ui * dy * cols + uj * dx;
#pragma unroll
                  for (int r = 0; r < kRows; ++r) {
#pragma unroll
                    for (int v = 0; v < kCols; ++v) {
                      const Acc x = s_top[base[r][v] - off];
#pragma unroll
                      for (int cb = 0; cb < CB; ++cb) acc[cb][r][v] += x * w[cb];
                    }
                  }
                } else {
                  int col[kCols];
#pragma unroll
                  for (int v = 0; v < kCols; ++v) {
                    const int mx = cx[v] - uj * dx;
                    col[v] = (mx >= 0 && mx % sx == 0) ? mx / sx : -1;
                  }
#pragma unroll
                  for (int r = 0; r < kRows; ++r) {
#pragma unroll
                    for (int v = 0; v < kCols; ++v) {
                      if (row[r] >= 0 && col[v] >= 0) {
                        const Acc x = s_top[row[r] + col[v]];
#pragma unroll
                        for (int cb = 0; cb < CB; ++cb) acc[cb][r][v] += x * w[cb];
                      }
                    }
                  }
                }
              }
            }
          }
          __syncthreads();
        }
      }
      if (active) {
        store_tile(acc,
                   image_grad +
                       (static_cast<long long>(b) * geo.channels + g * cg + c0) * image_size +
                       static_cast<long long>(z) * ih * iw,
                   image_size, cg - c0, y0, x0, ty, tx, tile, ih, iw);
      }
    }
  }
}

// Gradient with respect to the weights. Block (blockIdx.x = filter f, blockIdx.y = slice s,
// blockIdx.z = chunk of (channel, tap) pairs; each loops past the grid's caps). Accumulator k < nk
// holds pair (plane p0 + k / nt, tap t0 + k % nt) of the chunk; those from nk to N read staged
// entry 0 and are never written out (no branch in the inner loop).
template <typename T, int N>
__global__ void __launch_bounds__(kWeightThreads,
                                  kWeightMinBlocks<N, sizeof(typename AccumulatorOf<T>::type)>)
    grouped_grad_weights_kernel(GpuCorrGeometry geo, GroupedShape gs, WeightsTile wt, int slices,
                                const T* __restrict__ image, const T* __restrict__ topgrad,
                                typename AccumulatorOf<T>::type* __restrict__ partials) {
  using Acc = typename AccumulatorOf<T>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int plane_size = wt.rows * wt.cols;
  Acc* s_in = reinterpret_cast<Acc*>(shared_bytes);
  Acc* s_top = s_in + wt.planes_per_chunk * plane_size;
  Acc* s_red = s_top + wt.th * wt.tw;
  const int od = geo.output[0], oh = geo.output[1], ow = geo.output[2];
  const int id = geo.image[0], ih = geo.image[1], iw = geo.image[2];
  const int kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const int khw = kh * kw, taps = kd * khw;
  const int sy = geo.stride[1], sx = geo.stride[2];
  const int dy = geo.dilation[1], dx = geo.dilation[2];
  const int cg = gs.channels_per_group, mg = gs.filters_per_group;
  const int filters = gs.groups * mg;
  const int image_size = id * ih * iw;
  const int positions = od * oh * ow;
  const int planes = cg * kd;
  const int cols = wt.cols;
  const long long weights = static_cast<long long>(filters) * cg * taps;
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31, warp = tid >> 5;
  for (int f = static_cast<int>(blockIdx.x); f < filters; f += static_cast<int>(gridDim.x)) {
    const int g = f / mg;
    const T* top_f = topgrad + static_cast<long long>(f) * positions;
    for (int s = static_cast<int>(blockIdx.y); s < slices; s += static_cast<int>(gridDim.y)) {
      // Slice s: items [begin, end), the first ITEMS % SLICES slices one longer.
      const long long per = wt.items / slices;
      const long long extra = wt.items % slices;
      const long long begin = s * per + (s < extra ? s : extra);
      const long long end = begin + per + (s < extra ? 1 : 0);
      for (int ch = static_cast<int>(blockIdx.z); ch < wt.chunks;
           ch += static_cast<int>(gridDim.z)) {
        const int p0 = (ch / wt.tap_chunks) * wt.planes_per_chunk;
        const int np = min(wt.planes_per_chunk, planes - p0);
        const int t0 = (ch % wt.tap_chunks) * wt.taps_per_chunk;
        const int nt = min(wt.taps_per_chunk, khw - t0);
        const int nk = np * nt;
        int off[N];
        Acc acc[N];
#pragma unroll
        for (int k = 0; k < N; ++k) {
          acc[k] = Acc(0);
          off[k] = 0;
          if (k < nk) {
            const int pp = k / nt;
            const int tt = t0 + (k - pp * nt);
            const int ti = tt / kw;
            const int tj = tt - ti * kw;
            const int ui = geo.flip ? kh - 1 - ti : ti;
            const int uj = geo.flip ? kw - 1 - tj : tj;
            off[k] = pp * plane_size + ui * dy * cols + uj * dx;
          }
        }
        for (long long item = begin; item < end; ++item) {
          long long rest = item;
          const int xt = static_cast<int>(rest % wt.xtiles);
          rest /= wt.xtiles;
          const int yt = static_cast<int>(rest % wt.ytiles);
          rest /= wt.ytiles;
          const int oz = static_cast<int>(rest % od);
          const int b = static_cast<int>(rest / od);
          const int y0 = yt * wt.th, x0 = xt * wt.tw;
          stage_plane<kWeightBatch>(s_top,
                                    top_f + static_cast<long long>(b) * filters * positions +
                                        static_cast<long long>(oz) * oh * ow,
                                    oh, ow, y0, x0, wt.th, wt.tw);
          for (int pp = 0; pp < np; ++pp) {
            const int plane = p0 + pp;
            const int cp = plane / kd;
            const int a = plane - cp * kd;
            const int ua = geo.flip ? kd - 1 - a : a;
            const int iz = oz * geo.stride[0] - geo.pad_before[0] + ua * geo.dilation[0];
            const bool valid = iz >= 0 && iz < id;
            const T* src =
                valid ? image +
                            (static_cast<long long>(b) * geo.channels + g * cg + cp) * image_size +
                            static_cast<long long>(iz) * ih * iw
                      : image;
            stage_plane<kWeightBatch>(s_in + pp * plane_size, src, valid ? ih : 0, iw,
                                      y0 * sy - geo.pad_before[1], x0 * sx - geo.pad_before[2],
                                      wt.rows, cols);
          }
          __syncthreads();
          for (int y = warp; y < wt.th && y0 + y < oh; y += kWeightThreadsY) {
            for (int x = lane; x < wt.tw && x0 + x < ow; x += kWeightThreadsX) {
              const Acc top = s_top[y * wt.tw + x];
              const int base = y * sy * cols + x * sx;
#pragma unroll
              for (int k = 0; k < N; ++k) acc[k] += top * s_in[base + off[k]];
            }
          }
          __syncthreads();
        }
        // A fixed-order reduction: within each warp by shuffles, then across the warps.
#pragma unroll
        for (int k = 0; k < N; ++k) {
          Acc v = acc[k];
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
          if (lane == 0) s_red[warp * N + k] = v;
        }
        __syncthreads();
        for (int k = tid; k < nk; k += kWeightThreads) {
          Acc sum = Acc(0);
          for (int w = 0; w < kWeightThreadsY; ++w) sum += s_red[w * N + k];
          const int pp = k / nt;
          const int tt = t0 + (k - pp * nt);
          partials[s * weights + static_cast<long long>(f) * cg * taps +
                   static_cast<long long>(p0 + pp) * khw + tt] = sum;
        }
        __syncthreads();
      }
    }
  }
}

// ---- host side: plans, checks, launches ----

long long ceil_div(long long a, long long b) {
  return (a + b - 1) / b;
}

long long volume(const int (&axes)[3]) {
  return static_cast<long long>(axes[0]) * axes[1] * axes[2];
}

// Extent of the input (or topgrad) a tile of N results reads along one axis.
long long forward_extent(long long n, int k, int s, int d) {
  return (n - 1) * s + static_cast<long long>(k - 1) * d + 1;
}
long long grad_inputs_extent(long long n, int k, int s, int d) {
  return (n - 1 + static_cast<long long>(k - 1) * d) / s + 1;
}

// The thread layout and tiles of a forward (GRAD_INPUTS false: results are the output, the
// staged plane the input) or gradInputs launch, shrunk until the staged plane and the weights of
// a chunk fit the shared-memory budget with ACC-byte accumulators. False if even one thread's
// tile does not fit.
bool plan_conv(const GpuCorrGeometry& geo, const GroupedShape& gs, bool grad_inputs, int acc,
               ConvTile* out) {
  const int* result = grad_inputs ? geo.image : geo.output;
  const long long h = result[1] < 1 ? 1 : result[1];
  const long long w = result[2] < 1 ? 1 : result[2];
  const int members = grad_inputs ? gs.channels_per_group : gs.filters_per_group;
  ConvTile tile;
  tile.chunk = members < kMaxChunk ? members : kMaxChunk;
  tile.chunks = static_cast<int>(ceil_div(members, tile.chunk));
  long long tx = ceil_div(w, kCols);
  if (tx > kMaxThreadsX) tx = kMaxThreadsX;
  long long ty = kMaxThreads / tx;
  if (ty > ceil_div(h, kRows)) ty = ceil_div(h, kRows);
  if (ty < 1) ty = 1;
  const long long weights = static_cast<long long>(tile.chunk) * geo.kernel[1] * geo.kernel[2];
  for (;;) {
    const long long rows =
        grad_inputs ? grad_inputs_extent(kRows * ty, geo.kernel[1], geo.stride[1], geo.dilation[1])
                    : forward_extent(kRows * ty, geo.kernel[1], geo.stride[1], geo.dilation[1]);
    const long long cols =
        grad_inputs ? grad_inputs_extent(kCols * tx, geo.kernel[2], geo.stride[2], geo.dilation[2])
                    : forward_extent(kCols * tx, geo.kernel[2], geo.stride[2], geo.dilation[2]);
    // rows and cols are each below 2^31 (the spatial sizes are below 2^29); compare without
    // multiplying them when either alone is over the budget.
    const long long limit = kSharedBudget / acc;
    if (rows <= limit && cols <= limit && weights <= limit &&
        (rows * cols + weights) * acc <= kSharedBudget) {
      tile.rows = static_cast<int>(rows);
      tile.cols = static_cast<int>(cols);
      tile.shared_bytes = static_cast<int>((rows * cols + weights) * acc);
      break;
    }
    if (ty > 1) {
      ty = (ty + 1) / 2;
    } else if (tx > 1) {
      tx = (tx + 1) / 2;
    } else {
      return false;
    }
  }
  tile.tx = static_cast<int>(tx);
  tile.ty = static_cast<int>(ty);
  tile.threads = static_cast<int>(ceil_div(tx * ty, 32) * 32);
  tile.ytiles = static_cast<int>(ceil_div(h, kRows * ty));
  tile.xtiles = static_cast<int>(ceil_div(w, kCols * tx));
  const long long depth = result[0] < 1 ? 1 : result[0];
  if (!fits_int(depth * tile.ytiles * tile.xtiles)) return false;
  *out = tile;
  return true;
}

// The pair chunking and tiles of a gradWeights launch with ACC-byte accumulators: the accumulator
// count N (a kernel instantiation) with the least work per output position (N per chunk, plus the
// topgrad staging each chunk repeats) among those whose tiles fit.
bool plan_weights(const GpuCorrGeometry& geo, const GroupedShape& gs, int acc, WeightsTile* out) {
  static constexpr int kCounts[] = {1, 4, 9, 18, 27, 32};
  const long long khw = static_cast<long long>(geo.kernel[1]) * geo.kernel[2];
  const long long planes = static_cast<long long>(gs.channels_per_group) * geo.kernel[0];
  const long long oh = geo.output[1] < 1 ? 1 : geo.output[1];
  const long long ow = geo.output[2] < 1 ? 1 : geo.output[2];
  bool found = false;
  long long best_cost = 0;
  for (int n : kCounts) {
    WeightsTile wt;
    wt.n = n;
    long long ppc = 1, tpc = khw, tcs = 1, chunks = 0;
    if (khw <= n) {
      ppc = n / khw < planes ? n / khw : planes;
      chunks = ceil_div(planes, ppc);
      ppc = ceil_div(planes, chunks);
    } else {
      tcs = ceil_div(khw, n);
      tpc = ceil_div(khw, tcs);
      chunks = planes * tcs;
    }
    if (!fits_int(chunks)) continue;
    const long long cost = chunks * (n + 4);
    if (found && cost >= best_cost) continue;
    wt.planes_per_chunk = static_cast<int>(ppc);
    wt.taps_per_chunk = static_cast<int>(tpc);
    wt.tap_chunks = static_cast<int>(tcs);
    wt.chunks = static_cast<int>(chunks);
    // Tiles of about kWeightTilePositions positions, at most 128 columns wide, balanced over the
    // output.
    long long xtiles = ceil_div(ow, 128);
    long long tw = ceil_div(ow, xtiles);
    long long th0 = kWeightTilePositions / tw < 1 ? 1 : kWeightTilePositions / tw;
    long long th = ceil_div(oh, ceil_div(oh, th0));
    bool fits = false;
    for (;;) {
      const long long rows = forward_extent(th, geo.kernel[1], geo.stride[1], geo.dilation[1]);
      const long long cols = forward_extent(tw, geo.kernel[2], geo.stride[2], geo.dilation[2]);
      const long long limit = kSharedBudget / acc;
      if (rows <= limit && cols <= limit &&
          (ppc * rows * cols + th * tw + static_cast<long long>(kWeightThreadsY) * n) * acc <=
              kSharedBudget) {
        wt.rows = static_cast<int>(rows);
        wt.cols = static_cast<int>(cols);
        wt.shared_bytes = static_cast<int>(
            (ppc * rows * cols + th * tw + static_cast<long long>(kWeightThreadsY) * n) * acc);
        fits = true;
        break;
      }
      if (th > 1) {
        th = (th + 1) / 2;
      } else if (tw > 1) {
        tw = (tw + 1) / 2;
      } else {
        break;
      }
    }
    if (!fits) continue;
    wt.th = static_cast<int>(th);
    wt.tw = static_cast<int>(tw);
    wt.ytiles = static_cast<int>(ceil_div(oh, th));
    wt.xtiles = static_cast<int>(ceil_div(ow, tw));
    // Output positions 0 on an axis: no work items (the partials come out zero).
    const bool empty = geo.output[0] < 1 || geo.output[1] < 1 || geo.output[2] < 1;
    wt.items = empty ? 0 : static_cast<long long>(gs.batch) * geo.output[0] * wt.ytiles * wt.xtiles;
    found = true;
    best_cost = cost;
    *out = wt;
  }
  return found;
}

int acc_size(GpuElement type) {
  return type == GpuElement::f64 ? 8 : 4;
}

// The grouping is consistent with the geometry and every count the kernels index with int fits;
// every coordinate a tile forms (up to a few thousand strides past the output) stays far below
// 2^31.
bool shape_ok(const GpuCorrGeometry& geo, const GroupedShape& gs) {
  if (gs.batch < 0 || gs.groups < 1 || gs.channels_per_group < 1 || gs.filters_per_group < 1) {
    return false;
  }
  if (static_cast<long long>(gs.groups) * gs.channels_per_group != geo.channels) return false;
  const long long filters = static_cast<long long>(gs.groups) * gs.filters_per_group;
  if (!fits_int(filters) || !fits_int(volume(geo.image)) || !fits_int(volume(geo.output)) ||
      !fits_int(filters * gs.channels_per_group * volume(geo.kernel))) {
    return false;
  }
  for (int a = 0; a < 3; ++a) {
    if (geo.image[a] < 0 || geo.output[a] < 0 || geo.kernel[a] < 1 || geo.stride[a] < 1 ||
        geo.dilation[a] < 1 || geo.pad_before[a] < 0) {
      return false;
    }
    const long long reach = (static_cast<long long>(geo.output[a]) + 2048) * geo.stride[a] +
                            static_cast<long long>(geo.kernel[a]) * geo.dilation[a] +
                            geo.pad_before[a] + geo.image[a];
    if (reach >= (1LL << 30)) return false;
  }
  return true;
}

unsigned int capped(long long n) {
  return static_cast<unsigned int>(n < 1 ? 1 : (n > 65535 ? 65535 : n));
}

// Blocks of grouped_grad_weights_kernel<T, N> resident per SM with SMEM bytes of shared memory;
// 0 if the runtime cannot tell (no device).
template <typename T>
int weights_blocks_per_sm(int n, int smem) {
  int blocks = 0;
  cudaError_t status = cudaSuccess;
  const auto query = [&](auto kernel) {
    status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kWeightThreads,
                                                           static_cast<std::size_t>(smem));
  };
  switch (n) {
    case 1:
      query(grouped_grad_weights_kernel<T, 1>);
      break;
    case 4:
      query(grouped_grad_weights_kernel<T, 4>);
      break;
    case 9:
      query(grouped_grad_weights_kernel<T, 9>);
      break;
    case 18:
      query(grouped_grad_weights_kernel<T, 18>);
      break;
    case 27:
      query(grouped_grad_weights_kernel<T, 27>);
      break;
    default:
      query(grouped_grad_weights_kernel<T, 32>);
      break;
  }
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky; keep it out of the next launch's status
    return 0;
  }
  return blocks;
}

}  // namespace

bool direct_grouped_supported(const GpuCorrGeometry& geo, const GroupedShape& shape) {
  ConvTile tile;
  WeightsTile wt;
  return shape_ok(geo, shape) && plan_conv(geo, shape, false, 8, &tile) &&
         plan_conv(geo, shape, true, 8, &tile) && plan_weights(geo, shape, 8, &wt);
}

cudaError_t launch_grouped_forward(GpuElement type, const GpuCorrGeometry& geo,
                                   const GroupedShape& shape, const void* image, const void* kernel,
                                   void* output, cudaStream_t stream) {
  ConvTile tile;
  if (!shape_ok(geo, shape) || !plan_conv(geo, shape, false, acc_size(type), &tile)) {
    return cudaErrorInvalidValue;
  }
  if (shape.batch == 0 || volume(geo.output) == 0) return cudaSuccess;
  const dim3 grid(
      static_cast<unsigned int>(static_cast<long long>(geo.output[0]) * tile.ytiles * tile.xtiles),
      capped(static_cast<long long>(shape.groups) * tile.chunks), capped(shape.batch));
  return with_type(type, [&]<typename T>(T*) {
    const auto* x = static_cast<const T*>(image);
    const auto* w = static_cast<const T*>(kernel);
    auto* y = static_cast<T*>(output);
    const int smem = tile.shared_bytes;
    switch (tile.chunk) {
      case 1:
        grouped_forward_kernel<T, 1>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, x, w, y);
        break;
      case 2:
        grouped_forward_kernel<T, 2>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, x, w, y);
        break;
      case 3:
        grouped_forward_kernel<T, 3>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, x, w, y);
        break;
      default:
        grouped_forward_kernel<T, 4>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, x, w, y);
        break;
    }
  });
}

cudaError_t launch_grouped_grad_inputs(GpuElement type, const GpuCorrGeometry& geo,
                                       const GroupedShape& shape, const void* kernel,
                                       const void* topgrad, void* image_grad, cudaStream_t stream) {
  ConvTile tile;
  if (!shape_ok(geo, shape) || !plan_conv(geo, shape, true, acc_size(type), &tile)) {
    return cudaErrorInvalidValue;
  }
  if (shape.batch == 0 || volume(geo.image) == 0) return cudaSuccess;
  const dim3 grid(
      static_cast<unsigned int>(static_cast<long long>(geo.image[0]) * tile.ytiles * tile.xtiles),
      capped(static_cast<long long>(shape.groups) * tile.chunks), capped(shape.batch));
  const bool unit = geo.stride[1] == 1 && geo.stride[2] == 1;
  return with_type(type, [&]<typename T>(T*) {
    const auto* w = static_cast<const T*>(kernel);
    const auto* top = static_cast<const T*>(topgrad);
    auto* dx = static_cast<T*>(image_grad);
    const int smem = tile.shared_bytes;
    const auto launch = [&]<int CB>() {
      if (unit) {
        grouped_grad_inputs_kernel<T, CB, true>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, w, top, dx);
      } else {
        grouped_grad_inputs_kernel<T, CB, false>
            <<<grid, tile.threads, smem, stream>>>(geo, shape, tile, w, top, dx);
      }
    };
    switch (tile.chunk) {
      case 1:
        launch.template operator()<1>();
        break;
      case 2:
        launch.template operator()<2>();
        break;
      case 3:
        launch.template operator()<3>();
        break;
      default:
        launch.template operator()<4>();
        break;
    }
  });
}

int grouped_grad_weights_slices(GpuElement type, const GpuCorrGeometry& geo,
                                const GroupedShape& shape, int sm_count) {
  WeightsTile wt;
  if (!shape_ok(geo, shape) || !plan_weights(geo, shape, acc_size(type), &wt)) return 1;
  if (wt.items < 2) return 1;
  // The blocks of the launch resident at once (from the kernel's registers and shared memory; 4
  // per SM if the runtime cannot tell).
  int per_sm = 0;
  switch (type) {
    case GpuElement::f16:
      per_sm = weights_blocks_per_sm<__half>(wt.n, wt.shared_bytes);
      break;
    case GpuElement::f32:
      per_sm = weights_blocks_per_sm<float>(wt.n, wt.shared_bytes);
      break;
    case GpuElement::f64:
      per_sm = weights_blocks_per_sm<double>(wt.n, wt.shared_bytes);
      break;
  }
  if (per_sm < 1) per_sm = 4;
  const long long capacity = static_cast<long long>(per_sm) * (sm_count < 1 ? 1 : sm_count);
  const long long blocks =
      static_cast<long long>(shape.groups) * shape.filters_per_group * wt.chunks;
  // Every block of a wave runs the same number of items (within one), so the time goes by whole
  // waves of the longest slice: pick the slice count that keeps the SMs busiest, measured as
  // (blocks / resident capacity of the waves it takes) x (mean items / most items of a slice),
  // the fewest slices within 3% of the best (fewer partial sums to add).
  const long long most = wt.items < 4096 ? wt.items : 4096;
  std::vector<double> score(static_cast<std::size_t>(most) + 1, 0.0);
  double best = 0.0;
  for (long long s = 1; s <= most; ++s) {
    const long long n = blocks * s;
    const long long waves = ceil_div(n, capacity);
    const double fill = static_cast<double>(n) / static_cast<double>(waves * capacity);
    const double balance =
        static_cast<double>(wt.items) / static_cast<double>(s * ceil_div(wt.items, s));
    score[static_cast<std::size_t>(s)] = fill * balance;
    if (fill * balance > best) best = fill * balance;
  }
  for (long long s = 1; s <= most; ++s) {
    if (score[static_cast<std::size_t>(s)] >= 0.97 * best) return static_cast<int>(s);
  }
  return 1;
}

cudaError_t launch_grouped_grad_weights(GpuElement type, const GpuCorrGeometry& geo,
                                        const GroupedShape& shape, const void* image,
                                        const void* topgrad, int slices, void* partials,
                                        cudaStream_t stream) {
  WeightsTile wt;
  if (!shape_ok(geo, shape) || slices < 1 || !plan_weights(geo, shape, acc_size(type), &wt)) {
    return cudaErrorInvalidValue;
  }
  const long long filters = static_cast<long long>(shape.groups) * shape.filters_per_group;
  if (filters * shape.channels_per_group * volume(geo.kernel) == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>(filters), capped(slices), capped(wt.chunks));
  return with_type(type, [&]<typename T>(T*) {
    using Acc = typename AccumulatorOf<T>::type;
    const auto* x = static_cast<const T*>(image);
    const auto* top = static_cast<const T*>(topgrad);
    auto* out = static_cast<Acc*>(partials);
    const int smem = wt.shared_bytes;
    switch (wt.n) {
      case 1:
        grouped_grad_weights_kernel<T, 1>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
      case 4:
        grouped_grad_weights_kernel<T, 4>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
      case 9:
        grouped_grad_weights_kernel<T, 9>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
      case 18:
        grouped_grad_weights_kernel<T, 18>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
      case 27:
        grouped_grad_weights_kernel<T, 27>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
      default:
        grouped_grad_weights_kernel<T, 32>
            <<<grid, kWeightThreads, smem, stream>>>(geo, shape, wt, slices, x, top, out);
        break;
    }
  });
}

}  // namespace convgraph::gpu
