// The Winograd F(4x4, 3x3) loops (see winograd_kernels.hpp).
//
// The output tiles are cut into blocks of a few dozen to a few hundred tiles. A block goes through
// three steps: the input transform writes V[e][channel][tile] (36 matrices, tiles contiguous),
// 36 GEMMs give M[e][out channel][tile] = U[e] x V[e], and the output transform reads M back into
// the output. A block's V and M are sized to stay in the caches between the steps, where 36
// whole-problem matrices would go to memory and back; the block is at least as wide as the
// transformed filters make worthwhile (each block reads all of U, 36 x out x in elements).
//
// Threads: with enough tiles each thread runs its own blocks with single-threaded GEMMs (no
// barrier); otherwise (small images with many channels: ResNet's last stages) all threads work on
// each block, the transforms split over channels and the GEMMs over the 36 elements, so that U is
// read once per block rather than once per thread.
//
// The transforms work on 8 (float) or 4 (double) tiles at once, one per vector lane, with GCC's
// vector extensions; an AVX2 + FMA version is chosen at run time where the CPU has it.
#include "convgraph/ops/cpu/winograd_kernels.hpp"

#include <omp.h>

#include <algorithm>
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

// Where one tile of a block reads and writes.
struct TileRef {
  std::int64_t b = 0;       // batch item
  std::int64_t oy = 0;      // first output row and column of the tile
  std::int64_t ox = 0;
  bool inside = false;      // the 6x6 input patch lies inside the input
  bool full = false;        // all 16 outputs exist
};

void fill_tiles(const WinogradGeometry& g, std::int64_t first, std::int64_t count,
                std::vector<TileRef>& tiles) {
  tiles.resize(static_cast<std::size_t>(count));
  const std::int64_t th = g.tiles_h(), tw = g.tiles_w();
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t t = first + i;
    TileRef& r = tiles[static_cast<std::size_t>(i)];
    r.b = t / (th * tw);
    r.oy = (t / tw) % th * kWinogradTile;
    r.ox = t % tw * kWinogradTile;
    const std::int64_t iy = r.oy + g.off_h, ix = r.ox + g.off_w;
    r.inside = iy >= 0 && ix >= 0 && iy + kWinogradAlpha <= g.in_h && ix + kWinogradAlpha <= g.in_w;
    r.full = r.oy + kWinogradTile <= g.out_h && r.ox + kWinogradTile <= g.out_w;
  }
}

// ---- the 1-D transforms, on vectors at X[0], X[S], X[2S], ... into Y[0], Y[S'], ... ----

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

// V[e][c][i] for channels [C0, C1) of the COUNT tiles of TILES; columns up to the next multiple of
// the lane count are written as zeros (the GEMMs run on whole vectors' worth of columns).
template <typename T>
[[gnu::always_inline]] inline void input_impl(const WinogradGeometry& g, const T* in,
                                              const TileRef* tiles, std::int64_t count,
                                              std::int64_t c0, std::int64_t c1, T* v,
                                              std::int64_t ld) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const std::int64_t plane = g.in_h * g.in_w;
  alignas(32) T d[kWinogradElements][L];
  for (std::int64_t c = c0; c < c1; ++c) {
    for (std::int64_t first = 0; first < count; first += L) {
      const int n = static_cast<int>(std::min<std::int64_t>(L, count - first));
      for (int l = 0; l < L; ++l) {
        if (l >= n) {
          for (int k = 0; k < kWinogradElements; ++k) d[k][l] = T(0);
          continue;
        }
        const TileRef& t = tiles[first + l];
        const T* p = in + (t.b * g.in_channels + c) * plane;
        const std::int64_t iy = t.oy + g.off_h, ix = t.ox + g.off_w;
        if (t.inside) {
          const T* q = p + iy * g.in_w + ix;
          for (int r = 0; r < kWinogradAlpha; ++r) {
            for (int s = 0; s < kWinogradAlpha; ++s) d[r * kWinogradAlpha + s][l] = q[r * g.in_w + s];
          }
          continue;
        }
        for (int r = 0; r < kWinogradAlpha; ++r) {
          const std::int64_t y = iy + r;
          const bool row = y >= 0 && y < g.in_h;
          for (int s = 0; s < kWinogradAlpha; ++s) {
            const std::int64_t x = ix + s;
            d[r * kWinogradAlpha + s][l] = row && x >= 0 && x < g.in_w ? p[y * g.in_w + x] : T(0);
          }
        }
      }
      V dv[kWinogradElements], tmp[kWinogradElements], e[kWinogradElements];
      for (int k = 0; k < kWinogradElements; ++k) std::memcpy(&dv[k], d[k], sizeof(V));
      for (int s = 0; s < kWinogradAlpha; ++s) bt_1d(dv + s, kWinogradAlpha, tmp + s, kWinogradAlpha);
      for (int r = 0; r < kWinogradAlpha; ++r) {
        bt_1d(tmp + r * kWinogradAlpha, 1, e + r * kWinogradAlpha, 1);
      }
      for (int k = 0; k < kWinogradElements; ++k) {
        std::memcpy(v + (k * g.in_channels + c) * ld + first, &e[k], sizeof(V));
      }
    }
  }
}

// The output of channels [K0, K1) for the COUNT tiles of TILES from M[e][k][i]. Returns false
// when some output element is not finite.
template <typename T>
[[gnu::always_inline]] inline bool output_impl(const WinogradGeometry& g, const T* m,
                                               const TileRef* tiles, std::int64_t count,
                                               std::int64_t k0, std::int64_t k1, T* out,
                                               std::int64_t ld) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const std::int64_t plane = g.out_h * g.out_w;
  alignas(32) T y[kWinogradTile * kWinogradTile][L];
  // 0 while every value is finite: x - x is NaN exactly for Inf and NaN.
  V bad = {};
  for (std::int64_t k = k0; k < k1; ++k) {
    for (std::int64_t first = 0; first < count; first += L) {
      const int n = static_cast<int>(std::min<std::int64_t>(L, count - first));
      V mv[kWinogradElements], tmp[kWinogradTile * kWinogradAlpha], yv[kWinogradTile * kWinogradTile];
      for (int e = 0; e < kWinogradElements; ++e) {
        std::memcpy(&mv[e], m + (e * g.out_channels + k) * ld + first, sizeof(V));
      }
      for (int s = 0; s < kWinogradAlpha; ++s) at_1d(mv + s, kWinogradAlpha, tmp + s, kWinogradAlpha);
      for (int i = 0; i < kWinogradTile; ++i) {
        at_1d(tmp + i * kWinogradAlpha, 1, yv + i * kWinogradTile, 1);
      }
      for (int q = 0; q < kWinogradTile * kWinogradTile; ++q) {
        bad += yv[q] - yv[q];
        std::memcpy(y[q], &yv[q], sizeof(V));
      }
      for (int l = 0; l < n; ++l) {
        const TileRef& t = tiles[first + l];
        T* p = out + (t.b * g.out_channels + k) * plane + t.oy * g.out_w + t.ox;
        if (t.full) {
          for (int i = 0; i < kWinogradTile; ++i) {
            for (int j = 0; j < kWinogradTile; ++j) p[i * g.out_w + j] = y[i * kWinogradTile + j][l];
          }
          continue;
        }
        const int rows = static_cast<int>(std::min<std::int64_t>(kWinogradTile, g.out_h - t.oy));
        const int cols = static_cast<int>(std::min<std::int64_t>(kWinogradTile, g.out_w - t.ox));
        for (int i = 0; i < rows; ++i) {
          for (int j = 0; j < cols; ++j) p[i * g.out_w + j] = y[i * kWinogradTile + j][l];
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

// Rows [ROW0, ROW1) of U[e][row][col] (see winograd_transform_filters).
template <typename T>
[[gnu::always_inline]] inline void filters_impl(const T* w, std::int64_t filters,
                                                std::int64_t channels, bool transpose,
                                                bool reverse, T* u, std::int64_t row0,
                                                std::int64_t row1) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  const std::int64_t rows = transpose ? channels : filters;
  const std::int64_t cols = transpose ? filters : channels;
  alignas(32) T taps[9][L];
  alignas(32) T e[kWinogradElements][L];
  for (std::int64_t row = row0; row < row1; ++row) {
    for (std::int64_t first = 0; first < cols; first += L) {
      const int n = static_cast<int>(std::min<std::int64_t>(L, cols - first));
      for (int l = 0; l < L; ++l) {
        const std::int64_t col = first + std::min(l, n - 1);
        const T* src = w + (transpose ? col * channels + row : row * channels + col) * 9;
        for (int q = 0; q < 9; ++q) taps[q][l] = src[reverse ? 8 - q : q];
      }
      V gv[9], tmp[kWinogradAlpha * 3], ev[kWinogradElements];
      for (int q = 0; q < 9; ++q) std::memcpy(&gv[q], taps[q], sizeof(V));
      for (int j = 0; j < 3; ++j) g_1d<T>(gv + j, 3, tmp + j, 3);
      for (int a = 0; a < kWinogradAlpha; ++a) g_1d<T>(tmp + a * 3, 1, ev + a * kWinogradAlpha, 1);
      for (int k = 0; k < kWinogradElements; ++k) {
        T* dst = u + (k * rows + row) * cols + first;
        if (n == L) {
          std::memcpy(dst, &ev[k], sizeof(V));
        } else {
          std::memcpy(e[k], &ev[k], sizeof(V));
          for (int l = 0; l < n; ++l) dst[l] = e[k][l];
        }
      }
    }
  }
}

// Each step in a baseline and an AVX2 + FMA version.
#define CONVGRAPH_WINOGRAD_AVX2 [[gnu::noinline, gnu::target("avx2,fma")]]

template <typename T>
CONVGRAPH_WINOGRAD_AVX2 void input_avx2(const WinogradGeometry& g, const T* in,
                                         const TileRef* tiles, std::int64_t count,
                                         std::int64_t c0, std::int64_t c1, T* v,
                                         std::int64_t ld) {
  input_impl(g, in, tiles, count, c0, c1, v, ld);
}
template <typename T>
[[gnu::noinline]] void input_base(const WinogradGeometry& g, const T* in, const TileRef* tiles,
                                  std::int64_t count, std::int64_t c0, std::int64_t c1, T* v,
                                  std::int64_t ld) {
  input_impl(g, in, tiles, count, c0, c1, v, ld);
}
template <typename T>
CONVGRAPH_WINOGRAD_AVX2 bool output_avx2(const WinogradGeometry& g, const T* m,
                                          const TileRef* tiles, std::int64_t count,
                                          std::int64_t k0, std::int64_t k1, T* out,
                                          std::int64_t ld) {
  return output_impl(g, m, tiles, count, k0, k1, out, ld);
}
template <typename T>
[[gnu::noinline]] bool output_base(const WinogradGeometry& g, const T* m, const TileRef* tiles,
                                   std::int64_t count, std::int64_t k0, std::int64_t k1, T* out,
                                   std::int64_t ld) {
  return output_impl(g, m, tiles, count, k0, k1, out, ld);
}
template <typename T>
CONVGRAPH_WINOGRAD_AVX2 void filters_avx2(const T* w, std::int64_t filters,
                                           std::int64_t channels, bool transpose, bool reverse,
                                           T* u, std::int64_t row0, std::int64_t row1) {
  filters_impl(w, filters, channels, transpose, reverse, u, row0, row1);
}
template <typename T>
[[gnu::noinline]] void filters_base(const T* w, std::int64_t filters, std::int64_t channels,
                                    bool transpose, bool reverse, T* u, std::int64_t row0,
                                    std::int64_t row1) {
  filters_impl(w, filters, channels, transpose, reverse, u, row0, row1);
}

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

template <typename T>
void input_step(const WinogradGeometry& g, const T* in, const TileRef* tiles, std::int64_t count,
                std::int64_t c0, std::int64_t c1, T* v, std::int64_t ld) {
  if (have_avx2()) {
    input_avx2(g, in, tiles, count, c0, c1, v, ld);
  } else {
    input_base(g, in, tiles, count, c0, c1, v, ld);
  }
}

template <typename T>
bool output_step(const WinogradGeometry& g, const T* m, const TileRef* tiles, std::int64_t count,
                 std::int64_t k0, std::int64_t k1, T* out, std::int64_t ld) {
  return have_avx2() ? output_avx2(g, m, tiles, count, k0, k1, out, ld)
                     : output_base(g, m, tiles, count, k0, k1, out, ld);
}

// The GEMMs of elements [E0, E1), output channels [K0, K1): M[e] = U[e] x V[e] on NCOLS columns.
template <typename T>
void gemm_step(const WinogradGeometry& g, const T* u, const T* v, T* m, std::int64_t ld,
               std::int64_t ncols, std::int64_t e0, std::int64_t e1, std::int64_t k0,
               std::int64_t k1) {
  const std::int64_t cin = g.in_channels, cout = g.out_channels;
  for (std::int64_t e = e0; e < e1; ++e) {
    gemm(false, false, k1 - k0, ncols, cin, T(1), u + (e * cout + k0) * cin, cin,
         v + e * cin * ld, ld, T(0), m + (e * cout + k0) * ld, ld);
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
  const std::int64_t per_tile = kWinogradElements * (cin + cout) * static_cast<std::int64_t>(sizeof(T));
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
  return plan;
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
  auto run = [&](std::int64_t row0, std::int64_t row1) {
    if (have_avx2()) {
      filters_avx2(w, filters, channels, transpose, reverse, u, row0, row1);
    } else {
      filters_base(w, filters, channels, transpose, reverse, u, row0, row1);
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

template <typename T>
bool winograd_correlate(const WinogradGeometry& g, const T* in, const T* u, T* out) {
  const Plan plan = make_plan<T>(g, winograd_tuning());
  const std::int64_t tiles = g.tiles();
  const std::int64_t ld = plan.block;
  const std::int64_t v_size = kWinogradElements * g.in_channels * ld;
  const std::int64_t m_size = kWinogradElements * g.out_channels * ld;
  const int slots = plan.shared ? 1 : plan.threads;
  // From the caching allocator: a call's workspace is not returned to the system and faulted in
  // again on the next call.
  Tensor workspace = Tensor::empty(dtype_of<T>(), {slots * (v_size + m_size)});
  T* base = workspace.data<T>();
  const BlasThreads blas(1);
  RegionError error;
  int all_finite = 1;

  if (!plan.shared) {
    // Each thread its own blocks: a whole number of equal runs of blocks, no barrier.
    auto run = [&](int slot, int parts) {
      T* v = base + slot * (v_size + m_size);
      T* m = v + v_size;
      std::vector<TileRef> refs;
      bool finite = true;
      const auto [b0, b1] = split(plan.blocks, parts, slot);
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        const std::int64_t first = blk * plan.block;
        const std::int64_t count = std::min(plan.block, tiles - first);
        fill_tiles(g, first, count, refs);
        input_step(g, in, refs.data(), count, 0, g.in_channels, v, ld);
        gemm_step(g, u, v, m, ld, round_up(count, kLanes<T>), 0, kWinogradElements, 0,
                  g.out_channels);
        finite = output_step(g, m, refs.data(), count, 0, g.out_channels, out, ld) && finite;
      }
      return finite;
    };
    if (plan.threads <= 1) return run(0, 1);
#pragma omp parallel num_threads(plan.threads) reduction(&& : all_finite)
    {
      error.guard([&] {
        all_finite = run(omp_get_thread_num(), omp_get_num_threads()) ? 1 : 0;
      });
    }
    error.rethrow();
    return all_finite != 0;
  }

  // All threads on each block. The GEMMs are split over the 36 elements, and over output channels
  // too when there are more threads than elements to go round evenly.
  T* v = base;
  T* m = base + v_size;
  std::vector<TileRef> refs;
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
      error.guard([&] { fill_tiles(g, first, count, refs); });
      // (the single's barrier: the tiles are known to all)
      error.guard([&] {
        const auto [c0, c1] = split(g.in_channels, team, me);
        if (c0 < c1) input_step(g, in, refs.data(), count, c0, c1, v, ld);
      });
#pragma omp barrier
      error.guard([&] {
        const auto [i0, i1] = split(items, team, me);
        for (std::int64_t i = i0; i < i1; ++i) {
          const auto [k0, k1] = split(g.out_channels, static_cast<int>(k_parts),
                                      static_cast<int>(i % k_parts));
          if (k0 < k1) gemm_step(g, u, v, m, ld, round_up(count, kLanes<T>), i / k_parts,
                                 i / k_parts + 1, k0, k1);
        }
      });
#pragma omp barrier
      error.guard([&] {
        const auto [k0, k1] = split(g.out_channels, team, me);
        if (k0 < k1) finite = output_step(g, m, refs.data(), count, k0, k1, out, ld) && finite;
      });
      // The next block's input transform overwrites V, and its tiles replace REFS.
#pragma omp barrier
    }
    all_finite = finite ? 1 : 0;
  }
  error.rethrow();
  return all_finite != 0;
}

template void winograd_transform_filters<float>(const float*, std::int64_t, std::int64_t, bool,
                                                bool, float*);
template void winograd_transform_filters<double>(const double*, std::int64_t, std::int64_t, bool,
                                                 bool, double*);
template bool winograd_correlate<float>(const WinogradGeometry&, const float*, const float*,
                                        float*);
template bool winograd_correlate<double>(const WinogradGeometry&, const double*, const double*,
                                         double*);

}  // namespace convgraph
