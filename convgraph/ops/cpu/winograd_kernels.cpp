// The Winograd F(4x4, 3x3) loops (see winograd_kernels.hpp).
//
// The output tiles are cut into blocks of a few dozen to a few hundred tiles. A block goes through
// three steps: the input transform writes V[e][channel][tile] (36 matrices, tiles contiguous),
// 36 GEMMs give M[e][out channel][tile] = U[e] x V[e], and the output transform reads M back into
// the output. A block's V and M are sized to stay in the caches between the steps, where 36
// whole-problem matrices would go to memory and back; the block is at least as wide as the
// transformed filters make worthwhile (each block reads all of U, 36 x out x in elements).
//
// U itself is bounded (WinogradTuning::filter_bytes): past the bound it is never held whole, but
// transformed a block of output channels at a time, just before that block's GEMMs and output
// transform (the memory plan reserves the workspace at the peak of a training step, where res5's
// whole U took 36 MiB).
//
// Threads: with enough tiles each thread runs its own blocks with single-threaded GEMMs (no
// barrier); otherwise (small images with many channels: ResNet's last stages) all threads work on
// each block, the input transform split over channels, then the GEMMs over the 36 elements (a
// whole U, read once per block rather than once per thread) or whole blocks of output channels
// per thread (blocks of U).
//
// The transforms work on 8 (float) or 4 (double) tiles at once, one per vector lane, with GCC's
// vector extensions; an AVX2 + FMA version is chosen at run time where the CPU has it.
#include "convgraph/ops/cpu/winograd_kernels.hpp"

#include <emmintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <vector>

#include "convgraph/runtime/blas.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {
namespace {

std::mutex tuning_mutex;
WinogradTuning tuning_value;

// One AVX2 register of T.
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int kLanes = static_cast<int>(32 / sizeof(T));

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}
std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return ceil_div(a, b) * b;
}

// The distance between two consecutive elements' matrices of a block (V, M or the weight
// gradient's W: ROWS rows of LD), in elements: an odd number of cache lines. The transforms write
// (or read) one vector in each of the 36 matrices in turn; a matrix of power-of-two size would put
// all 36 in one or two cache sets, where a line is evicted before the next chunk completes it
// (res2's input transform wrote V at a quarter of the speed it does with the padding).
template <typename T>
std::int64_t element_stride(std::int64_t rows, std::int64_t ld) {
  constexpr std::int64_t line = 64 / static_cast<std::int64_t>(sizeof(T));
  return (ceil_div(rows * ld, line) | 1) * line;
}

// A run of at most one vector's worth of tiles of one tile row: the unit the transforms work on,
// one tile per lane. Their 6x6 input patches overlap by two columns, so the run's input is a few
// contiguous vectors per row, and the lanes are taken apart (and put back together in the output)
// with shuffles rather than gathered element by element.
struct Chunk {
  std::int64_t b = 0;    // batch item
  std::int64_t oy = 0;   // the tiles' first output row
  std::int64_t ox = 0;   // the first tile's first output column
  std::int64_t col = 0;  // the first tile's column in the block's matrices
  int n = 0;             // tiles (lanes in use)
};

// The chunks of tiles [FIRST, FIRST + COUNT) (row-major over batch, tile rows, tile columns).
template <typename T>
void fill_chunks(const WinogradGeometry& g, std::int64_t first, std::int64_t count,
                 std::vector<Chunk>& chunks) {
  chunks.clear();
  const std::int64_t th = g.tiles_h(), tw = g.tiles_w();
  for (std::int64_t t = first; t < first + count;) {
    const std::int64_t tx = t % tw;
    const std::int64_t n = std::min({std::int64_t{kLanes<T>}, tw - tx, first + count - t});
    Chunk c;
    c.b = t / (th * tw);
    c.oy = (t / tw) % th * kWinogradTile;
    c.ox = tx * kWinogradTile;
    c.col = t - first;
    c.n = static_cast<int>(n);
    chunks.push_back(c);
    t += n;
  }
}

// Integer vectors of the lane count of T, for shuffle masks and lane masks.
template <typename T>
struct MaskOf;
template <>
struct MaskOf<float> {
  typedef std::int32_t type __attribute__((vector_size(32)));
};
template <>
struct MaskOf<double> {
  typedef std::int64_t type __attribute__((vector_size(32)));
};
template <typename T>
using Mask = typename MaskOf<T>::type;

// Vectors holding a chunk's input row: 4 columns per tile and 2 more (5 vectors for either type).
template <typename T>
constexpr int kRowVectors = (4 * kLanes<T> + 2 + kLanes<T> - 1) / kLanes<T>;

// OUT = the L elements of ROW (a row of W elements, or none: zeros) from X0 on, zero outside.
template <typename T>
[[gnu::always_inline]] inline void load_row(const T* row, std::int64_t x0, std::int64_t w,
                                            Vec<T>& out) {
  constexpr int L = kLanes<T>;
  if (row == nullptr || x0 >= w || x0 + L <= 0) {
    out = Vec<T>{};
  } else if (x0 >= 0 && x0 + L <= w) {
    std::memcpy(&out, row + x0, sizeof(out));
  } else {
    alignas(32) T buf[L];
    for (int l = 0; l < L; ++l) buf[l] = x0 + l >= 0 && x0 + l < w ? row[x0 + l] : T(0);
    std::memcpy(&out, buf, sizeof(out));
  }
}

// D[s][l] = the element 4 l + s of the row R (kRowVectors vectors): tap s of each tile's patch.
template <typename T>
[[gnu::always_inline]] inline void split_tiles(const Vec<T>* r, Vec<T>* d) {
  using M = Mask<T>;
  if constexpr (kLanes<T> == 8) {
    d[0] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{0, 4, 8, 12, 0, 4, 8, 12}),
                             __builtin_shuffle(r[2], r[3], M{0, 4, 8, 12, 0, 4, 8, 12}),
                             M{0, 1, 2, 3, 8, 9, 10, 11});
    d[1] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{1, 5, 9, 13, 1, 5, 9, 13}),
                             __builtin_shuffle(r[2], r[3], M{1, 5, 9, 13, 1, 5, 9, 13}),
                             M{0, 1, 2, 3, 8, 9, 10, 11});
    d[2] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{2, 6, 10, 14, 2, 6, 10, 14}),
                             __builtin_shuffle(r[2], r[3], M{2, 6, 10, 14, 2, 6, 10, 14}),
                             M{0, 1, 2, 3, 8, 9, 10, 11});
    d[3] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{3, 7, 11, 15, 3, 7, 11, 15}),
                             __builtin_shuffle(r[2], r[3], M{3, 7, 11, 15, 3, 7, 11, 15}),
                             M{0, 1, 2, 3, 8, 9, 10, 11});
    d[4] = __builtin_shuffle(d[0], r[4], M{1, 2, 3, 4, 5, 6, 7, 8});
    d[5] = __builtin_shuffle(d[1], r[4], M{1, 2, 3, 4, 5, 6, 7, 9});
  } else {
    d[0] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{0, 4, 0, 4}),
                             __builtin_shuffle(r[2], r[3], M{0, 4, 0, 4}), M{0, 1, 4, 5});
    d[1] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{1, 5, 1, 5}),
                             __builtin_shuffle(r[2], r[3], M{1, 5, 1, 5}), M{0, 1, 4, 5});
    d[2] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{2, 6, 2, 6}),
                             __builtin_shuffle(r[2], r[3], M{2, 6, 2, 6}), M{0, 1, 4, 5});
    d[3] = __builtin_shuffle(__builtin_shuffle(r[0], r[1], M{3, 7, 3, 7}),
                             __builtin_shuffle(r[2], r[3], M{3, 7, 3, 7}), M{0, 1, 4, 5});
    d[4] = __builtin_shuffle(d[0], r[4], M{1, 2, 3, 4});
    d[5] = __builtin_shuffle(d[1], r[4], M{1, 2, 3, 5});
  }
}

// The inverse for output rows: W (4 vectors) = the 4 L outputs of one row of the chunk, tile l's
// column j at 4 l + j, from Y[j][l].
template <typename T>
[[gnu::always_inline]] inline void join_tiles(const Vec<T>* y, Vec<T>* w) {
  using M = Mask<T>;
  if constexpr (kLanes<T> == 8) {
    const Vec<T> p = __builtin_shuffle(y[0], y[1], M{0, 8, 1, 9, 2, 10, 3, 11});
    const Vec<T> q = __builtin_shuffle(y[2], y[3], M{0, 8, 1, 9, 2, 10, 3, 11});
    const Vec<T> p2 = __builtin_shuffle(y[0], y[1], M{4, 12, 5, 13, 6, 14, 7, 15});
    const Vec<T> q2 = __builtin_shuffle(y[2], y[3], M{4, 12, 5, 13, 6, 14, 7, 15});
    w[0] = __builtin_shuffle(p, q, M{0, 1, 8, 9, 2, 3, 10, 11});
    w[1] = __builtin_shuffle(p, q, M{4, 5, 12, 13, 6, 7, 14, 15});
    w[2] = __builtin_shuffle(p2, q2, M{0, 1, 8, 9, 2, 3, 10, 11});
    w[3] = __builtin_shuffle(p2, q2, M{4, 5, 12, 13, 6, 7, 14, 15});
  } else {
    const Vec<T> p = __builtin_shuffle(y[0], y[1], M{0, 4, 1, 5});
    const Vec<T> q = __builtin_shuffle(y[2], y[3], M{0, 4, 1, 5});
    const Vec<T> p2 = __builtin_shuffle(y[0], y[1], M{2, 6, 3, 7});
    const Vec<T> q2 = __builtin_shuffle(y[2], y[3], M{2, 6, 3, 7});
    w[0] = __builtin_shuffle(p, q, M{0, 1, 4, 5});
    w[1] = __builtin_shuffle(p, q, M{2, 3, 6, 7});
    w[2] = __builtin_shuffle(p2, q2, M{0, 1, 4, 5});
    w[3] = __builtin_shuffle(p2, q2, M{2, 3, 6, 7});
  }
}

// ---- the 1-D transforms, on vectors at X[0], X[S], X[2S], ... into Y[0], Y[T], ... ----

// B^T: 6 inputs to 6.
template <typename V>
[[gnu::always_inline]] inline void bt_1d(const V* x, int s, V* y, int t) {
  const V x0 = x[0], x1 = x[s], x2 = x[2 * s], x3 = x[3 * s], x4 = x[4 * s], x5 = x[5 * s];
  y[0] = 4 * x0 - 5 * x2 + x4;
  y[t] = (x3 + x4) - 4 * (x1 + x2);
  y[2 * t] = (x4 - x3) + 4 * (x1 - x2);
  y[3 * t] = (x4 - x2) + 2 * (x3 - x1);
  y[4 * t] = (x4 - x2) - 2 * (x3 - x1);
  y[5 * t] = 4 * x1 - 5 * x3 + x5;
}

// A^T: 6 inputs to 4.
template <typename V>
[[gnu::always_inline]] inline void at_1d(const V* m, int s, V* y, int t) {
  const V a = m[s] + m[2 * s], b = m[s] - m[2 * s];
  const V c = m[3 * s] + m[4 * s], d = m[3 * s] - m[4 * s];
  y[0] = m[0] + a + c;
  y[t] = b + 2 * d;
  y[2 * t] = a + 4 * c;
  y[3 * t] = b + 8 * d + m[5 * s];
}

// G: 3 taps to 6.
template <typename T, typename V>
[[gnu::always_inline]] inline void g_1d(const V* g, int s, V* y, int t) {
  const V g0 = g[0], g1 = g[s], g2 = g[2 * s];
  const V even = g0 + g2;
  y[0] = g0 * T(0.25);
  y[t] = (even + g1) * T(-1.0 / 6.0);
  y[2 * t] = (even - g1) * T(-1.0 / 6.0);
  const V e2 = g0 * T(1.0 / 24.0) + g2 * T(1.0 / 6.0);
  y[3 * t] = e2 + g1 * T(1.0 / 12.0);
  y[4 * t] = e2 - g1 * T(1.0 / 12.0);
  y[5 * t] = g2;
}

// ---- the three steps of a block ----

// V[e][c][col] for channels [C0, C1) and the tiles of CHUNKS. Each chunk writes whole vectors:
// the lanes past its tiles land in the next chunk's columns (written after it) or past the
// block's last column (never read).
template <typename T>
[[gnu::always_inline]] inline void input_impl(const WinogradGeometry& g, const T* in,
                                              const Chunk* chunks, std::int64_t nchunks,
                                              std::int64_t c0, std::int64_t c1, T* v,
                                              std::int64_t ld) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  constexpr int R = kRowVectors<T>;
  const std::int64_t stride = element_stride<T>(g.in_channels, ld);
  for (std::int64_t c = c0; c < c1; ++c) {
    for (std::int64_t i = 0; i < nchunks; ++i) {
      const Chunk& ch = chunks[i];
      const T* p = in + g.in_plane(ch.b, c);
      const std::int64_t iy = ch.oy + g.off_h, ix = ch.ox + g.off_w;
      // First across the patch's six rows, on whole row vectors: tmp[a][k] = (B^T d)[a] for the
      // columns of row vector k.
      V tmp[kWinogradAlpha][R];
      {
        V rows[kWinogradAlpha][R];
        for (int r = 0; r < kWinogradAlpha; ++r) {
          const std::int64_t y = iy + r;
          const T* row = y >= 0 && y < g.in_h ? p + y * g.in_w : nullptr;
          for (int k = 0; k < R; ++k) load_row(row, ix + k * L, g.in_w, rows[r][k]);
        }
        for (int k = 0; k < R; ++k) bt_1d(&rows[0][k], R, &tmp[0][k], R);
      }
      // Then along each row, the tiles taken apart into lanes.
      T* dst = v + c * ld + ch.col;
      for (int a = 0; a < kWinogradAlpha; ++a) {
        V d[kWinogradAlpha], e[kWinogradAlpha];
        split_tiles<T>(tmp[a], d);
        bt_1d(d, 1, e, 1);
        for (int s = 0; s < kWinogradAlpha; ++s) {
          std::memcpy(dst + (a * kWinogradAlpha + s) * stride, &e[s], sizeof(V));
        }
      }
    }
  }
}

// The output of channels [K0, K1) for the tiles of CHUNKS from M[e][k][col]. Returns false when
// some output element of the chunks' tiles is not finite.
template <typename T>
[[gnu::always_inline]] inline bool output_impl(const WinogradGeometry& g, const T* m,
                                               const Chunk* chunks, std::int64_t nchunks,
                                               std::int64_t k0, std::int64_t k1, T* out,
                                               std::int64_t ld) {
  using V = Vec<T>;
  using M = Mask<T>;
  constexpr int L = kLanes<T>;
  const std::int64_t stride = element_stride<T>(g.out_channels, ld);
  M lane{};
  for (int l = 0; l < L; ++l) lane[l] = l;
  // 0 while every value is finite: x - x is NaN exactly for Inf and NaN.
  V bad = {};
  for (std::int64_t k = k0; k < k1; ++k) {
    for (std::int64_t i = 0; i < nchunks; ++i) {
      const Chunk& ch = chunks[i];
      const T* src = m + k * ld + ch.col;
      V mv[kWinogradElements], tmp[kWinogradTile * kWinogradAlpha];
      V y[kWinogradTile * kWinogradTile];
      for (int e = 0; e < kWinogradElements; ++e) std::memcpy(&mv[e], src + e * stride, sizeof(V));
      for (int s = 0; s < kWinogradAlpha; ++s) {
        at_1d(mv + s, kWinogradAlpha, tmp + s, kWinogradAlpha);
      }
      for (int r = 0; r < kWinogradTile; ++r) {
        at_1d(tmp + r * kWinogradAlpha, 1, y + r * kWinogradTile, 1);
      }
      // Lanes past the chunk's tiles hold other columns' values: left out of the check.
      const M used = lane < M{} + ch.n;
      for (int q = 0; q < kWinogradTile * kWinogradTile; ++q) {
        bad += used ? y[q] - y[q] : V{};
      }
      T* p = out + g.out_plane(ch.b, k) + ch.oy * g.out_w + ch.ox;
      const int rows = static_cast<int>(std::min<std::int64_t>(kWinogradTile, g.out_h - ch.oy));
      const std::int64_t cols = std::min<std::int64_t>(kWinogradTile * ch.n, g.out_w - ch.ox);
      for (int r = 0; r < rows; ++r) {
        V w[kWinogradTile];
        join_tiles<T>(y + r * kWinogradTile, w);
        T* row = p + r * g.out_w;
        for (int q = 0; q < kWinogradTile; ++q) {
          if ((q + 1) * L <= cols) {
            if (g.accumulate) {
              V old;
              std::memcpy(&old, row + q * L, sizeof(V));
              w[q] += old;
            }
            std::memcpy(row + q * L, &w[q], sizeof(V));
          } else if (q * L < cols) {
            alignas(32) T buf[L];
            std::memcpy(buf, &w[q], sizeof(V));
            for (std::int64_t x = q * L; x < cols; ++x) {
              row[x] = g.accumulate ? row[x] + buf[x - q * L] : buf[x - q * L];
            }
          }
        }
      }
    }
  }
  alignas(32) T lanes[L];
  std::memcpy(lanes, &bad, sizeof(V));
  for (int l = 0; l < L; ++l) {
    if (lanes[l] != T(0)) return false;
  }
  return true;
}

// DST[0, N) = SRC[0, N) by non-temporal stores (16 bytes at a time: SSE2, which every x86-64 CPU
// has); DST 16-byte aligned, N a whole number of 16-byte pieces.
[[gnu::always_inline]] inline void stream_run(float* dst, const float* src, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
}
[[gnu::always_inline]] inline void stream_run(double* dst, const double* src, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
}

// Rows [ROW0, ROW1) of U[e][row][col] (see winograd_transform_filters), into a U of UROWS rows
// per element starting at row UROW0 (a block of rows, or all of them).
//
// The 36 matrices of U lie a whole matrix apart (a power of two apart for power-of-two channel
// counts), so 36 stores of one vector each, one per matrix, all fall in the same cache set and
// evict one another before their lines are complete (on res5's 512 x 512 filters the transform
// took 40% of the call). A group of columns is transformed into a small buffer first, then each
// matrix's run of the group is copied out as whole lines. The taps are first copied, a block of
// rows at a time, into a scratch laid out tap by tap ([row][tap][col]), from which the transform
// loads whole vectors of columns (gathering them from W one lane at a time stalled every load
// behind eight scalar stores); with TRANSPOSE that copy also reads W a filter at a time, the
// block's rows of a filter being one contiguous run of W.
//
// STREAM: U is written with non-temporal stores, where the matrices are larger than the caches
// (res5's 36 x 512 x 512 elements: 36 MiB): they would be read from memory before being
// overwritten, and evict everything else on the way to memory.
template <typename T>
[[gnu::always_inline]] inline void filters_impl(const T* w, std::int64_t filters,
                                                std::int64_t channels, bool transpose, bool reverse,
                                                bool stream, T* u, std::int64_t urow0,
                                                std::int64_t urows, std::int64_t row0,
                                                std::int64_t row1) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  constexpr int kGroup = 8 * L;  // columns per group
  constexpr std::int64_t kRowBlock = 16;
  const std::int64_t cols = transpose ? filters : channels;
  // [row in block][tap][column]; the columns past COLS are zeros, transformed and never stored.
  // Rows an odd number of cache lines long: the copy writes 9 (or 9 x 16) of them in turn.
  const std::int64_t line = 64 / static_cast<std::int64_t>(sizeof(T));
  const std::int64_t padded = (ceil_div(cols, line) | 1) * line;
  // (Through a pointer: std::vector's members are not compiled for AVX2, so they are not inlined
  // into this function's AVX2 version.)
  std::vector<T> storage(static_cast<std::size_t>(kRowBlock * 9 * padded), T(0));
  T* const scratch = storage.data();
  alignas(32) T buf[kWinogradElements][kGroup];
  for (std::int64_t rb = row0; rb < row1; rb += kRowBlock) {
    const std::int64_t rn = std::min(row1 - rb, kRowBlock);
    if (transpose) {
      for (std::int64_t col = 0; col < cols; ++col) {
        const T* src = w + (col * channels + rb) * 9;
        for (std::int64_t r = 0; r < rn; ++r) {
          for (int q = 0; q < 9; ++q) scratch[(r * 9 + q) * padded + col] = src[r * 9 + q];
        }
      }
    } else {
      for (std::int64_t r = 0; r < rn; ++r) {
        const T* src = w + (rb + r) * channels * 9;
        for (std::int64_t col = 0; col < cols; ++col) {
          for (int q = 0; q < 9; ++q) scratch[(r * 9 + q) * padded + col] = src[col * 9 + q];
        }
      }
    }
    for (std::int64_t r = 0; r < rn; ++r) {
      const std::int64_t row = rb + r;
      const T* taps = scratch + r * 9 * padded;
      for (std::int64_t g0 = 0; g0 < cols; g0 += kGroup) {
        const std::int64_t gn = std::min<std::int64_t>(kGroup, cols - g0);
        for (std::int64_t first = g0; first < g0 + gn; first += L) {
          V gv[9], tmp[kWinogradAlpha * 3], ev[kWinogradElements];
          for (int q = 0; q < 9; ++q) {
            std::memcpy(&gv[q], taps + (reverse ? 8 - q : q) * padded + first, sizeof(V));
          }
          for (int j = 0; j < 3; ++j) g_1d<T>(gv + j, 3, tmp + j, 3);
          for (int a = 0; a < kWinogradAlpha; ++a) {
            g_1d<T>(tmp + a * 3, 1, ev + a * kWinogradAlpha, 1);
          }
          for (int k = 0; k < kWinogradElements; ++k) {
            std::memcpy(&buf[k][first - g0], &ev[k], sizeof(V));
          }
        }
        for (int k = 0; k < kWinogradElements; ++k) {
          T* dst = u + (k * urows + row - urow0) * cols + g0;
          if (stream && gn == kGroup && reinterpret_cast<std::uintptr_t>(dst) % 16 == 0) {
            stream_run(dst, buf[k], kGroup);
          } else {
            std::memcpy(dst, buf[k], static_cast<std::size_t>(gn) * sizeof(T));
          }
        }
      }
    }
  }
  // Non-temporal stores are weakly ordered: complete them before the GEMMs read U.
  if (stream) _mm_sfence();
}

// Each step in a baseline and an AVX2 + FMA version. The AVX2 version is tuned as for Haswell:
// the generic tuning splits every unaligned 256-bit load and store in two, and the transforms
// load and store whole vectors at any column.
#define CONVGRAPH_WINOGRAD_AVX2 [[gnu::noinline, gnu::target("avx2,fma,tune=haswell")]]

template <typename T>
CONVGRAPH_WINOGRAD_AVX2 void input_avx2(const WinogradGeometry& g, const T* in, const Chunk* chunks,
                                        std::int64_t nchunks, std::int64_t c0, std::int64_t c1,
                                        T* v, std::int64_t ld) {
  input_impl(g, in, chunks, nchunks, c0, c1, v, ld);
}
template <typename T>
[[gnu::noinline]] void input_base(const WinogradGeometry& g, const T* in, const Chunk* chunks,
                                  std::int64_t nchunks, std::int64_t c0, std::int64_t c1, T* v,
                                  std::int64_t ld) {
  input_impl(g, in, chunks, nchunks, c0, c1, v, ld);
}
template <typename T>
CONVGRAPH_WINOGRAD_AVX2 bool output_avx2(const WinogradGeometry& g, const T* m, const Chunk* chunks,
                                         std::int64_t nchunks, std::int64_t k0, std::int64_t k1,
                                         T* out, std::int64_t ld) {
  return output_impl(g, m, chunks, nchunks, k0, k1, out, ld);
}
template <typename T>
[[gnu::noinline]] bool output_base(const WinogradGeometry& g, const T* m, const Chunk* chunks,
                                   std::int64_t nchunks, std::int64_t k0, std::int64_t k1, T* out,
                                   std::int64_t ld) {
  return output_impl(g, m, chunks, nchunks, k0, k1, out, ld);
}
template <typename T>
CONVGRAPH_WINOGRAD_AVX2 void filters_avx2(const T* w, std::int64_t filters, std::int64_t channels,
                                          bool transpose, bool reverse, bool stream, T* u,
                                          std::int64_t urow0, std::int64_t urows, std::int64_t row0,
                                          std::int64_t row1) {
  filters_impl(w, filters, channels, transpose, reverse, stream, u, urow0, urows, row0, row1);
}
template <typename T>
[[gnu::noinline]] void filters_base(const T* w, std::int64_t filters, std::int64_t channels,
                                    bool transpose, bool reverse, bool stream, T* u,
                                    std::int64_t urow0, std::int64_t urows, std::int64_t row0,
                                    std::int64_t row1) {
  filters_impl(w, filters, channels, transpose, reverse, stream, u, urow0, urows, row0, row1);
}

bool have_avx2() {
  static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!cpu) return false;
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  return tuning_value.avx2;
}

// The filters' side of a correlation: W (filters, channels, 3, 3) read as the rows of U (see
// winograd_transform_filters).
template <typename T>
struct Filters {
  const T* w = nullptr;
  std::int64_t filters = 0, channels = 0;
  bool transpose = false, reverse = false;
};

// Rows [ROW0, ROW1) of U into a U of UROWS rows per element starting at row UROW0, on the calling
// thread. Without non-temporal stores: a block of rows is sized to stay in the caches.
template <typename T>
void filters_step(const Filters<T>& f, T* u, std::int64_t urow0, std::int64_t urows,
                  std::int64_t row0, std::int64_t row1) {
  if (have_avx2()) {
    filters_avx2(f.w, f.filters, f.channels, f.transpose, f.reverse, false, u, urow0, urows, row0,
                 row1);
  } else {
    filters_base(f.w, f.filters, f.channels, f.transpose, f.reverse, false, u, urow0, urows, row0,
                 row1);
  }
}

template <typename T>
void input_step(const WinogradGeometry& g, const T* in, const Chunk* chunks, std::int64_t nchunks,
                std::int64_t c0, std::int64_t c1, T* v, std::int64_t ld) {
  if (have_avx2()) {
    input_avx2(g, in, chunks, nchunks, c0, c1, v, ld);
  } else {
    input_base(g, in, chunks, nchunks, c0, c1, v, ld);
  }
}

template <typename T>
bool output_step(const WinogradGeometry& g, const T* m, const Chunk* chunks, std::int64_t nchunks,
                 std::int64_t k0, std::int64_t k1, T* out, std::int64_t ld) {
  return have_avx2() ? output_avx2(g, m, chunks, nchunks, k0, k1, out, ld)
                     : output_base(g, m, chunks, nchunks, k0, k1, out, ld);
}

// The GEMMs of elements [E0, E1), output channels [K0, K1): M[e] = U[e] x V[e] on NCOLS columns,
// U holding UROWS rows per element from row UROW0 on.
template <typename T>
void gemm_step(const WinogradGeometry& g, const T* u, std::int64_t urow0, std::int64_t urows,
               const T* v, T* m, std::int64_t ld, std::int64_t ncols, std::int64_t e0,
               std::int64_t e1, std::int64_t k0, std::int64_t k1) {
  const std::int64_t cin = g.in_channels, cout = g.out_channels;
  const std::int64_t v_stride = element_stride<T>(cin, ld), m_stride = element_stride<T>(cout, ld);
  for (std::int64_t e = e0; e < e1; ++e) {
    gemm(false, false, k1 - k0, ncols, cin, T(1), u + (e * urows + k0 - urow0) * cin, cin,
         v + e * v_stride, ld, T(0), m + e * m_stride + k0 * ld, ld);
  }
}

// Sets the BLAS thread count for a scope and restores it afterwards.
class BlasThreads {
 public:
  explicit BlasThreads(int threads) : previous_(blas_num_threads()) {
    if (previous_ != threads) set_blas_num_threads(threads);
  }
  ~BlasThreads() {
    if (previous_ >= 1 && blas_num_threads() != previous_) set_blas_num_threads(previous_);
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

// The first exception of a parallel region, rethrown after it (exceptions must not cross it).
class RegionError {
 public:
  template <typename Fn>
  void guard(Fn&& fn) {
    try {
      fn();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
};

// [begin, end) of part PART when COUNT items are split into PARTS contiguous runs.
std::pair<std::int64_t, std::int64_t> split(std::int64_t count, int parts, int part) {
  return {count * part / parts, count * (part + 1) / parts};
}

struct Plan {
  int threads = 1;
  bool shared = false;
  std::int64_t block = 0;   // tiles per block (a multiple of the lane count): the workspace's ld
  std::int64_t blocks = 0;  // number of blocks
  // Output channels (rows of U) per block of the transformed filters, and the number of such
  // blocks; one block: U is transformed once for the whole call.
  std::int64_t rows = 0;
  std::int64_t row_blocks = 0;
};

template <typename T>
Plan make_plan(const WinogradGeometry& g, const WinogradTuning& tuning) {
  constexpr int L = kLanes<T>;
  Plan plan;
  const std::int64_t tiles = g.tiles();
  const std::int64_t work = g.batch * g.out_h * g.out_w * g.in_channels * g.out_channels * 9;
  plan.threads = work < tuning.parallel_work ? 1 : std::max(1, cpu_threads());
  // Wide enough that reading U costs no more than the block's data, narrow enough to stay in the
  // caches, and never wider than the problem.
  const std::int64_t cin = g.in_channels, cout = g.out_channels;
  const std::int64_t per_tile =
      kWinogradElements * (cin + cout) * static_cast<std::int64_t>(sizeof(T));
  const std::int64_t want = std::max(tuning.min_block_tiles, cin * cout / (cin + cout));
  const std::int64_t fit = std::max<std::int64_t>(L, tuning.block_bytes / per_tile);
  std::int64_t block = std::min(round_up(tiles, L), round_up(std::min(want, fit), L));
  switch (tuning.mode) {
    case WinogradTuning::Mode::private_blocks:
      plan.shared = false;
      break;
    case WinogradTuning::Mode::shared_blocks:
      plan.shared = plan.threads > 1;
      break;
    case WinogradTuning::Mode::automatic:
      plan.shared = plan.threads > 1 && tiles < plan.threads * block;
      break;
  }
  // Blocks of equal size, and with private blocks a whole number of them per thread.
  std::int64_t blocks = ceil_div(tiles, block);
  if (!plan.shared && plan.threads > 1) blocks = round_up(blocks, plan.threads);
  plan.block = round_up(ceil_div(tiles, blocks), L);
  plan.blocks = ceil_div(tiles, plan.block);
  // The transformed filters whole when they fit the tuning's bound; else blocks of rows of equal
  // size, one per thread at a time (each thread transforms the rows it multiplies by, with no
  // barrier between the three steps), the threads' blocks together within the bound.
  const std::int64_t per_row = kWinogradElements * cin * static_cast<std::int64_t>(sizeof(T));
  if (cout * per_row <= tuning.filter_bytes) {
    plan.rows = cout;
    plan.row_blocks = 1;
    return plan;
  }
  const std::int64_t most = std::max<std::int64_t>(1, tuning.filter_bytes / plan.threads / per_row);
  plan.row_blocks = std::min(cout, round_up(ceil_div(cout, most), plan.threads));
  plan.rows = ceil_div(cout, plan.row_blocks);
  plan.row_blocks = ceil_div(cout, plan.rows);
  return plan;
}

// ---- the weight gradient ----
//
// The forward tile is A^T [U . V] A with U = G g G^T; so the gradient of the 3x3 filter g is
// G^T [sum over tiles of (A dY A^T) . V] G, with dY the output gradient's 4x4 tile and V the
// input patch's transform (the forward's own). Summed over the tiles, the 36 element-wise products
// become 36 GEMMs, [out channels x tiles] x [tiles x in channels], accumulated block by block.

// A: 4 values to 6 (the transpose of A^T above).
template <typename V>
[[gnu::always_inline]] inline void a_1d(const V* p, int s, V* z, int t) {
  const V p0 = p[0], p1 = p[s], p2 = p[2 * s], p3 = p[3 * s];
  const V even = p0 + p2, odd = p1 + p3;
  const V even4 = p0 + 4 * p2, odd8 = 2 * p1 + 8 * p3;
  z[0] = p0;
  z[t] = even + odd;
  z[2 * t] = even - odd;
  z[3 * t] = even4 + odd8;
  z[4 * t] = even4 - odd8;
  z[5 * t] = p3;
}

// W[e][k][col] = (A dY A^T)[e] for output channels [K0, K1) and the tiles of CHUNKS (element e
// = 6 a + s, a along rows, as V's), one tile per lane. Like V, whole vectors are written: lanes
// past a chunk's tiles land in the next chunk's columns or past the block's last one.
template <typename T>
[[gnu::always_inline]] inline void topgrad_impl(const WinogradGeometry& g, const T* dy,
                                                const Chunk* chunks, std::int64_t nchunks,
                                                std::int64_t k0, std::int64_t k1, T* w,
                                                std::int64_t ld) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  constexpr int R = kRowVectors<T>;
  const std::int64_t stride = element_stride<T>(g.out_channels, ld);
  for (std::int64_t k = k0; k < k1; ++k) {
    for (std::int64_t i = 0; i < nchunks; ++i) {
      const Chunk& ch = chunks[i];
      const T* p = dy + g.out_plane(ch.b, k);
      // tile[r][j]: row r, column j of each lane's 4x4 tile (zero outside the output gradient).
      V tile[kWinogradTile][kWinogradTile];
      for (int r = 0; r < kWinogradTile; ++r) {
        const std::int64_t y = ch.oy + r;
        const T* row = y < g.out_h ? p + y * g.out_w : nullptr;
        V rows[R];
        for (int v = 0; v < R - 1; ++v) load_row(row, ch.ox + v * L, g.out_w, rows[v]);
        rows[R - 1] = V{};  // the patches' two extra columns: not part of a 4x4 tile
        V d[kWinogradAlpha];
        split_tiles<T>(rows, d);
        for (int j = 0; j < kWinogradTile; ++j) tile[r][j] = d[j];
      }
      // A down each column, then along each of the six rows.
      V t[kWinogradAlpha][kWinogradTile];
      for (int j = 0; j < kWinogradTile; ++j)
        a_1d(&tile[0][j], kWinogradTile, &t[0][j], kWinogradTile);
      T* dst = w + k * ld + ch.col;
      for (int a = 0; a < kWinogradAlpha; ++a) {
        V z[kWinogradAlpha];
        a_1d(t[a], 1, z, 1);
        for (int e = 0; e < kWinogradAlpha; ++e) {
          std::memcpy(dst + (a * kWinogradAlpha + e) * stride, &z[e], sizeof(V));
        }
      }
    }
  }
}

template <typename T>
CONVGRAPH_WINOGRAD_AVX2 void topgrad_avx2(const WinogradGeometry& g, const T* dy,
                                          const Chunk* chunks, std::int64_t nchunks,
                                          std::int64_t k0, std::int64_t k1, T* w, std::int64_t ld) {
  topgrad_impl(g, dy, chunks, nchunks, k0, k1, w, ld);
}
template <typename T>
[[gnu::noinline]] void topgrad_base(const WinogradGeometry& g, const T* dy, const Chunk* chunks,
                                    std::int64_t nchunks, std::int64_t k0, std::int64_t k1, T* w,
                                    std::int64_t ld) {
  topgrad_impl(g, dy, chunks, nchunks, k0, k1, w, ld);
}
template <typename T>
void topgrad_step(const WinogradGeometry& g, const T* dy, const Chunk* chunks, std::int64_t nchunks,
                  std::int64_t k0, std::int64_t k1, T* w, std::int64_t ld) {
  if (have_avx2()) {
    topgrad_avx2(g, dy, chunks, nchunks, k0, k1, w, ld);
  } else {
    topgrad_base(g, dy, chunks, nchunks, k0, k1, w, ld);
  }
}

// G^T: 6 values to 3 (the transpose of G above), on scalars S or vectors V of them.
template <typename S, typename V>
[[gnu::always_inline]] inline void gt_1d(const V* m, int s, V* r, int t) {
  const V m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
  const V sum12 = m1 + m2, dif12 = m1 - m2, sum34 = m3 + m4, dif34 = m3 - m4;
  r[0] = m0 * S(0.25) - sum12 * S(1.0 / 6.0) + sum34 * S(1.0 / 24.0);
  r[t] = dif34 * S(1.0 / 12.0) - dif12 * S(1.0 / 6.0);
  r[2 * t] = (sum34 - sum12) * S(1.0 / 6.0) + m5;
}

// OUT[k][c][3][3] from M[e][k][c] for the (k, c) pairs [P0, P1) (M's element matrices PAIRS
// elements apart), taps turned around when REVERSE. Returns false when some element is not finite.
//
// The 36 matrices of M lie a whole matrix apart, so their rows share cache sets: the pairs go a
// whole line (two float vectors) at a time, one lane per pair, so that each line read is used up
// before the other 35 streams evict it.
template <typename T>
[[gnu::always_inline]] inline bool filter_gradient_impl(const T* m, std::int64_t pairs,
                                                        bool reverse, std::int64_t p0,
                                                        std::int64_t p1, T* out) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  constexpr int kVectors = static_cast<int>(64 / sizeof(V)) > 1 ? 2 : 1;
  const auto tap = [reverse](int i, int j) { return reverse ? (2 - i) * 3 + (2 - j) : i * 3 + j; };
  V bad{};
  std::int64_t p = p0;
  for (; p + kVectors * L <= p1; p += kVectors * L) {
    V mv[kVectors][kWinogradElements];
    for (int e = 0; e < kWinogradElements; ++e) {
      for (int h = 0; h < kVectors; ++h) {
        std::memcpy(&mv[h][e], m + e * pairs + p + h * L, sizeof(V));
      }
    }
    for (int h = 0; h < kVectors; ++h) {
      V rows[3 * kWinogradAlpha];  // G^T along a: [i][s]
      for (int s = 0; s < kWinogradAlpha; ++s) {
        gt_1d<T>(mv[h] + s, kWinogradAlpha, rows + s, kWinogradAlpha);
      }
      V r[9];
      for (int i = 0; i < 3; ++i) gt_1d<T>(rows + i * kWinogradAlpha, 1, r + i * 3, 1);
      alignas(32) T lanes[9][L];
      for (int q = 0; q < 9; ++q) {
        bad += r[q] - r[q];  // NaN exactly for Inf and NaN
        std::memcpy(lanes[q], &r[q], sizeof(V));
      }
      T* dst = out + (p + h * L) * 9;
      for (int l = 0; l < L; ++l) {
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) dst[l * 9 + tap(i, j)] = lanes[i * 3 + j][l];
        }
      }
    }
  }
  bool finite = true;
  {
    alignas(32) T lanes[L];
    std::memcpy(lanes, &bad, sizeof(V));
    for (int l = 0; l < L; ++l) finite = finite && lanes[l] == T(0);
  }
  for (; p < p1; ++p) {
    T rows[3 * kWinogradAlpha];
    for (int s = 0; s < kWinogradAlpha; ++s) {
      gt_1d<T>(m + s * pairs + p, kWinogradAlpha * pairs, rows + s, kWinogradAlpha);
    }
    for (int i = 0; i < 3; ++i) {
      T r[3];
      gt_1d<T>(rows + i * kWinogradAlpha, 1, r, 1);
      for (int j = 0; j < 3; ++j) {
        finite = finite && std::isfinite(r[j]);
        out[p * 9 + tap(i, j)] = r[j];
      }
    }
  }
  return finite;
}

template <typename T>
CONVGRAPH_WINOGRAD_AVX2 bool filter_gradient_avx2(const T* m, std::int64_t pairs, bool reverse,
                                                  std::int64_t p0, std::int64_t p1, T* out) {
  return filter_gradient_impl(m, pairs, reverse, p0, p1, out);
}
template <typename T>
[[gnu::noinline]] bool filter_gradient_base(const T* m, std::int64_t pairs, bool reverse,
                                            std::int64_t p0, std::int64_t p1, T* out) {
  return filter_gradient_impl(m, pairs, reverse, p0, p1, out);
}
template <typename T>
bool filter_gradient_step(const T* m, std::int64_t pairs, bool reverse, std::int64_t p0,
                          std::int64_t p1, T* out) {
  return have_avx2() ? filter_gradient_avx2(m, pairs, reverse, p0, p1, out)
                     : filter_gradient_base(m, pairs, reverse, p0, p1, out);
}

}  // namespace

WinogradTuning winograd_tuning() {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  return tuning_value;
}

void set_winograd_tuning(const WinogradTuning& tuning) {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  tuning_value = tuning;
}

template <typename T>
void winograd_transform_filters(const T* w, std::int64_t filters, std::int64_t channels,
                                bool transpose, bool reverse, T* u) {
  const std::int64_t rows = transpose ? channels : filters;
  const int threads = rows * filters * channels < (std::int64_t{1} << 16) ? 1 : cpu_threads();
  // Past half the last-level cache of this class of machines (32 MiB), U goes to memory anyway.
  constexpr std::int64_t kStreamBytes = std::int64_t{16} << 20;
  const bool stream =
      kWinogradElements * filters * channels * static_cast<std::int64_t>(sizeof(T)) > kStreamBytes;
  auto run = [&](std::int64_t row0, std::int64_t row1) {
    if (have_avx2()) {
      filters_avx2(w, filters, channels, transpose, reverse, stream, u, 0, rows, row0, row1);
    } else {
      filters_base(w, filters, channels, transpose, reverse, stream, u, 0, rows, row0, row1);
    }
  };
  if (threads <= 1) {
    run(0, rows);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const auto [begin, end] = split(rows, omp_get_num_threads(), omp_get_thread_num());
    if (begin < end) run(begin, end);
  }
}

namespace {
// The elements of the transformed filters' buffers PLAN needs for G: all of U when it is one
// block of rows, else one block per thread (each thread transforms the rows it multiplies by).
template <typename T>
std::int64_t filters_workspace(const WinogradGeometry& g, const Plan& plan) {
  const std::int64_t block = kWinogradElements * plan.rows * g.in_channels;
  return plan.row_blocks == 1 ? block : plan.threads * block;
}

// The workspace of winograd_correlate for G under PLAN: the transformed filters, then per slot
// the block's V and M.
template <typename T>
std::int64_t correlate_workspace(const WinogradGeometry& g, const Plan& plan) {
  // Room for the last chunk's whole-vector writes past the block's last column.
  const std::int64_t ld = plan.block + kLanes<T>;
  const int slots = plan.shared ? 1 : plan.threads;
  return filters_workspace<T>(g, plan) +
         slots * kWinogradElements *
             (element_stride<T>(g.in_channels, ld) + element_stride<T>(g.out_channels, ld));
}
}  // namespace

template <typename T>
std::int64_t winograd_correlate_workspace(const WinogradGeometry& g) {
  return correlate_workspace<T>(g, make_plan<T>(g, winograd_tuning()));
}

template <typename T>
bool winograd_correlate(const WinogradGeometry& g, const T* in, const T* w, bool transpose,
                        bool reverse, T* out, T* workspace) {
  const Plan plan = make_plan<T>(g, winograd_tuning());
  const std::int64_t tiles = g.tiles();
  // Room for the last chunk's whole-vector writes past the block's last column.
  const std::int64_t ld = plan.block + kLanes<T>;
  const std::int64_t v_size = kWinogradElements * element_stride<T>(g.in_channels, ld);
  const std::int64_t m_size = kWinogradElements * element_stride<T>(g.out_channels, ld);
  const std::int64_t u_size = kWinogradElements * plan.rows * g.in_channels;
  const Filters<T> f{w, transpose ? g.in_channels : g.out_channels,
                     transpose ? g.out_channels : g.in_channels, transpose, reverse};
  // Without one given, from the caching allocator: a call's workspace is not returned to the
  // system and faulted in again on the next call.
  Tensor own;
  if (workspace == nullptr) {
    own = Tensor::empty(dtype_of<T>(), {correlate_workspace<T>(g, plan)});
    workspace = own.data<T>();
  }
  T* const u_base = workspace;
  T* const base = workspace + filters_workspace<T>(g, plan);
  // One block of rows: U is transformed once, by all threads, before the blocks of tiles.
  const bool whole_u = plan.row_blocks == 1;
  if (whole_u) {
    winograd_transform_filters<T>(f.w, f.filters, f.channels, transpose, reverse, u_base);
  }
  const BlasThreads blas(1);
  RegionError error;
  int all_finite = 1;

  if (!plan.shared) {
    // Each thread its own blocks: a whole number of equal runs of blocks, no barrier. With several
    // blocks of rows each thread transforms each block of rows again for each of its blocks of
    // tiles (36 x rows x channels elements against the GEMMs' 36 x rows x channels x tiles
    // multiply-adds).
    auto run = [&](int slot, int parts) {
      T* u = whole_u ? u_base : u_base + slot * u_size;
      T* v = base + slot * (v_size + m_size);
      T* m = v + v_size;
      std::vector<Chunk> chunks;
      bool finite = true;
      const auto [b0, b1] = split(plan.blocks, parts, slot);
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        const std::int64_t first = blk * plan.block;
        const std::int64_t count = std::min(plan.block, tiles - first);
        fill_chunks<T>(g, first, count, chunks);
        const auto nchunks = static_cast<std::int64_t>(chunks.size());
        input_step(g, in, chunks.data(), nchunks, 0, g.in_channels, v, ld);
        for (std::int64_t rb = 0; rb < plan.row_blocks; ++rb) {
          const std::int64_t r0 = rb * plan.rows;
          const std::int64_t r1 = std::min(g.out_channels, r0 + plan.rows);
          const std::int64_t urow0 = whole_u ? 0 : r0;
          if (!whole_u) filters_step(f, u, r0, plan.rows, r0, r1);
          gemm_step(g, u, urow0, plan.rows, v, m, ld, count, 0, kWinogradElements, r0, r1);
          finite = output_step(g, m, chunks.data(), nchunks, r0, r1, out, ld) && finite;
        }
      }
      return finite;
    };
    if (plan.threads <= 1) return run(0, 1);
#pragma omp parallel num_threads(plan.threads) reduction(&& : all_finite)
    {
      error.guard([&] { all_finite = run(omp_get_thread_num(), omp_get_num_threads()) ? 1 : 0; });
    }
    error.rethrow();
    return all_finite != 0;
  }

  // All threads on each block of tiles. With the whole U, the GEMMs are split over the 36
  // elements, and over output channels too when there are more threads than elements to go round
  // evenly; with blocks of rows, each thread takes whole blocks of rows: their filters' transform,
  // GEMMs and output transform.
  T* v = base;
  T* m = base + v_size;
  std::vector<Chunk> chunks;
  const std::int64_t k_parts = ceil_div(2 * plan.threads, kWinogradElements);
  const std::int64_t items = kWinogradElements * k_parts;
#pragma omp parallel num_threads(plan.threads) reduction(&& : all_finite)
  {
    const int team = omp_get_num_threads(), me = omp_get_thread_num();
    bool finite = true;
    for (std::int64_t blk = 0; blk < plan.blocks; ++blk) {
      const std::int64_t first = blk * plan.block;
      const std::int64_t count = std::min(plan.block, tiles - first);
#pragma omp single
      error.guard([&] { fill_chunks<T>(g, first, count, chunks); });
      // (the single's barrier: the tiles are known to all)
      const auto nchunks = static_cast<std::int64_t>(chunks.size());
      error.guard([&] {
        const auto [c0, c1] = split(g.in_channels, team, me);
        if (c0 < c1) input_step(g, in, chunks.data(), nchunks, c0, c1, v, ld);
      });
#pragma omp barrier
      if (whole_u) {
        error.guard([&] {
          const auto [i0, i1] = split(items, team, me);
          for (std::int64_t i = i0; i < i1; ++i) {
            const auto [k0, k1] =
                split(g.out_channels, static_cast<int>(k_parts), static_cast<int>(i % k_parts));
            if (k0 < k1) {
              gemm_step(g, u_base, 0, g.out_channels, v, m, ld, count, i / k_parts, i / k_parts + 1,
                        k0, k1);
            }
          }
        });
#pragma omp barrier
        error.guard([&] {
          const auto [k0, k1] = split(g.out_channels, team, me);
          if (k0 < k1)
            finite = output_step(g, m, chunks.data(), nchunks, k0, k1, out, ld) && finite;
        });
      } else {
        error.guard([&] {
          T* u = u_base + me * u_size;
          const auto [rb0, rb1] = split(plan.row_blocks, team, me);
          for (std::int64_t rb = rb0; rb < rb1; ++rb) {
            const std::int64_t r0 = rb * plan.rows;
            const std::int64_t r1 = std::min(g.out_channels, r0 + plan.rows);
            filters_step(f, u, r0, plan.rows, r0, r1);
            gemm_step(g, u, r0, plan.rows, v, m, ld, count, 0, kWinogradElements, r0, r1);
            finite = output_step(g, m, chunks.data(), nchunks, r0, r1, out, ld) && finite;
          }
        });
      }
      // The next block's input transform overwrites V, and its chunks replace these.
#pragma omp barrier
    }
    all_finite = finite ? 1 : 0;
  }
  error.rethrow();
  return all_finite != 0;
}

namespace {
// The weight gradient's plan: all threads on each block, since each GEMM accumulates into its own
// element's matrix of M, which private blocks would need a copy of per thread.
template <typename T>
Plan weights_plan(const WinogradGeometry& g) {
  WinogradTuning tuning = winograd_tuning();
  tuning.mode = WinogradTuning::Mode::shared_blocks;
  return make_plan<T>(g, tuning);
}

// Whether each thread sums its own blocks of rows (one block of tiles: V is transformed once and
// the threads need not meet again), or all threads each block of rows in turn.
bool weights_rows_apart(const Plan& plan) {
  return plan.blocks == 1 && plan.row_blocks > 1;
}
// The blocks of rows' sums M the weight gradient holds at once.
std::int64_t weights_sums(const Plan& plan) {
  return weights_rows_apart(plan) ? plan.threads : 1;
}
}  // namespace

template <typename T>
std::int64_t winograd_weights_workspace(const WinogradGeometry& g) {
  const Plan plan = weights_plan<T>(g);
  const std::int64_t ld = plan.block + kLanes<T>;
  return kWinogradElements *
         (element_stride<T>(g.in_channels, ld) + element_stride<T>(g.out_channels, ld) +
          weights_sums(plan) * plan.rows * g.in_channels);
}

template <typename T>
bool winograd_correlate_weights(const WinogradGeometry& g, const T* in, const T* dy, bool reverse,
                                T* out, T* workspace) {
  const Plan plan = weights_plan<T>(g);
  const std::int64_t tiles = g.tiles();
  const std::int64_t ld = plan.block + kLanes<T>;
  const std::int64_t cin = g.in_channels, cout = g.out_channels;
  const std::int64_t v_stride = element_stride<T>(cin, ld), w_stride = element_stride<T>(cout, ld);
  const std::int64_t v_size = kWinogradElements * v_stride;
  const std::int64_t w_size = kWinogradElements * w_stride;
  Tensor own;
  if (workspace == nullptr) {
    own = Tensor::empty(dtype_of<T>(), {winograd_weights_workspace<T>(g)});
    workspace = own.data<T>();
  }
  T* v = workspace;
  T* w = v + v_size;
  T* m = w + w_size;
  const BlasThreads blas(1);
  RegionError error;
  int all_finite = 1;
  std::vector<Chunk> chunks;
#pragma omp parallel num_threads(plan.threads) reduction(&& : all_finite)
  {
    const int team = omp_get_num_threads(), me = omp_get_thread_num();
    bool finite = true;
    if (weights_rows_apart(plan)) {
#pragma omp single
      error.guard([&] { fill_chunks<T>(g, 0, tiles, chunks); });
      error.guard([&] {
        const auto [c0, c1] = split(cin, team, me);
        if (c0 < c1)
          input_step(g, in, chunks.data(), static_cast<std::int64_t>(chunks.size()), c0, c1, v, ld);
      });
#pragma omp barrier
      error.guard([&] {
        T* mine = m + me * kWinogradElements * plan.rows * cin;
        const auto [rb0, rb1] = split(plan.row_blocks, team, me);
        for (std::int64_t rb = rb0; rb < rb1; ++rb) {
          const std::int64_t r0 = rb * plan.rows;
          const std::int64_t r1 = std::min(cout, r0 + plan.rows);
          topgrad_step(g, dy, chunks.data(), static_cast<std::int64_t>(chunks.size()), r0, r1, w,
                       ld);
          for (std::int64_t e = 0; e < kWinogradElements; ++e) {
            gemm(false, true, r1 - r0, cin, tiles, T(1), w + e * w_stride + r0 * ld, ld,
                 v + e * v_stride, ld, T(0), mine + e * (r1 - r0) * cin, cin);
          }
          const std::int64_t pairs = (r1 - r0) * cin;
          finite =
              filter_gradient_step(mine, pairs, reverse, 0, pairs, out + r0 * cin * 9) && finite;
        }
      });
      all_finite = finite ? 1 : 0;
    } else {
      // A block of output channels at a time, its M (36 x rows x in channels) summed over all the
      // blocks of tiles and then transformed into its filters' gradient. With a single block of
      // tiles V is transformed once; otherwise again for each block of rows.
      for (std::int64_t rb = 0; rb < plan.row_blocks; ++rb) {
        const std::int64_t r0 = rb * plan.rows;
        const std::int64_t r1 = std::min(cout, r0 + plan.rows);
        for (std::int64_t blk = 0; blk < plan.blocks; ++blk) {
          const std::int64_t first = blk * plan.block;
          const std::int64_t count = std::min(plan.block, tiles - first);
          const bool new_v = plan.blocks > 1 || rb == 0;
#pragma omp single
          error.guard([&] {
            if (new_v) fill_chunks<T>(g, first, count, chunks);
          });
          // (the single's barrier: the tiles are known to all)
          error.guard([&] {
            const auto nchunks = static_cast<std::int64_t>(chunks.size());
            if (new_v) {
              const auto [c0, c1] = split(cin, team, me);
              if (c0 < c1) input_step(g, in, chunks.data(), nchunks, c0, c1, v, ld);
            }
            const auto [k0, k1] = split(r1 - r0, team, me);
            if (k0 < k1) topgrad_step(g, dy, chunks.data(), nchunks, r0 + k0, r0 + k1, w, ld);
          });
#pragma omp barrier
          // Each thread keeps the same elements over the blocks: M[e] is its alone.
          error.guard([&] {
            const auto [e0, e1] = split(kWinogradElements, team, me);
            for (std::int64_t e = e0; e < e1; ++e) {
              gemm(false, true, r1 - r0, cin, count, T(1), w + e * w_stride + r0 * ld, ld,
                   v + e * v_stride, ld, blk == 0 ? T(0) : T(1), m + e * (r1 - r0) * cin, cin);
            }
          });
          // The next block's transforms overwrite V and W, and its chunks replace these.
#pragma omp barrier
        }
        error.guard([&] {
          const std::int64_t pairs = (r1 - r0) * cin;
          const auto [p0, p1] = split(pairs, team, me);
          if (p0 < p1)
            finite = filter_gradient_step(m, pairs, reverse, p0, p1, out + r0 * cin * 9) && finite;
        });
        // The next block of rows' GEMMs overwrite M.
#pragma omp barrier
      }
      all_finite = finite ? 1 : 0;
    }
  }
  error.rethrow();
  return all_finite != 0;
}

template void winograd_transform_filters<float>(const float*, std::int64_t, std::int64_t, bool,
                                                bool, float*);
template void winograd_transform_filters<double>(const double*, std::int64_t, std::int64_t, bool,
                                                 bool, double*);
template bool winograd_correlate<float>(const WinogradGeometry&, const float*, const float*, bool,
                                        bool, float*, float*);
template bool winograd_correlate<double>(const WinogradGeometry&, const double*, const double*,
                                         bool, bool, double*, double*);
template std::int64_t winograd_correlate_workspace<float>(const WinogradGeometry&);
template std::int64_t winograd_correlate_workspace<double>(const WinogradGeometry&);
template bool winograd_correlate_weights<float>(const WinogradGeometry&, const float*, const float*,
                                                bool, float*, float*);
template bool winograd_correlate_weights<double>(const WinogradGeometry&, const double*,
                                                 const double*, bool, double*, double*);
template std::int64_t winograd_weights_workspace<float>(const WinogradGeometry&);
template std::int64_t winograd_weights_workspace<double>(const WinogradGeometry&);

}  // namespace convgraph
