// Private to the depthwise loops (depthwise_kernels.hpp): the forward and the gradient with respect
// to the inputs, as always-inlined templates that each instruction-set version
// (depthwise_conv_<isa>.cpp) compiles into one unit function. The row loops keep a run of output
// positions in vector registers; ring_plane serves 2-D depthwise planes with 3 x 3 and 5 x 5 taps
// from a ring of padded rows; conv_block serves everything else from the padded source planes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "convgraph/ops/cpu/depthwise_problem.hpp"
#include "convgraph/ops/cpu/depthwise_simd.hpp"

namespace convgraph::depthwise_detail {

// ---- the row loops ----

// U chunks of one row: OUT[o][q + u * lanes + l] = sum over rows r and taps k of
// W[r][k * NO + o] * ROWS[r][(q + u * lanes + l) * ss + OX[k]]. K is the tap count when known at
// compile time, else 0 (KCOUNT).
template <typename T, int NO, int K, int SS, int U>
[[gnu::always_inline]] inline void correlate_chunks(std::int64_t q, std::int64_t ss,
                                                    std::int64_t nrows, const T* const* rows,
                                                    const T* const* w, const std::int64_t* ox,
                                                    std::int64_t kcount, T* const* out) {
  using V = typename Vec<T>::V;
  constexpr int lanes = Vec<T>::lanes;
  const std::int64_t step = SS > 0 ? SS : ss;
  const std::int64_t kn = K > 0 ? K : kcount;
  V acc[U][NO];
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) acc[u][o] = V{};
  }
  for (std::int64_t r = 0; r < nrows; ++r) {
    const T* src = rows[r] + q * step;
    const T* wr = w[r];
    for (std::int64_t k = 0; k < kn; ++k) {
      for (int u = 0; u < U; ++u) {
        V v;
        load_strided<T, SS>(v, src + u * lanes * step + ox[k], ss);
        for (int o = 0; o < NO; ++o) acc[u][o] += wr[k * NO + o] * v;
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) store(out[o] + q + u * lanes, acc[u][o]);
  }
}

// A whole row of N >= lanes positions. Two chunks at a time when there are few output planes:
// each weight is then loaded once for two vectors of products.
template <typename T, int NO, int K, int SS>
[[gnu::always_inline]] inline void correlate_row(std::int64_t n, std::int64_t ss,
                                                 std::int64_t nrows, const T* const* rows,
                                                 const T* const* w, const std::int64_t* ox,
                                                 std::int64_t kcount, T* const* out) {
  constexpr int lanes = Vec<T>::lanes;
  constexpr int U = NO <= 2 ? 2 : 1;
  std::int64_t q = 0;
  for (; q + U * lanes <= n; q += U * lanes) {
    correlate_chunks<T, NO, K, SS, U>(q, ss, nrows, rows, w, ox, kcount, out);
  }
  for (; q + lanes <= n; q += lanes) {
    correlate_chunks<T, NO, K, SS, 1>(q, ss, nrows, rows, w, ox, kcount, out);
  }
  // The same values are written again where the last chunk overlaps the one before.
  if (q < n) correlate_chunks<T, NO, K, SS, 1>(n - lanes, ss, nrows, rows, w, ox, kcount, out);
}

template <typename T, int NO, int SS>
[[gnu::always_inline]] inline void correlate_row_k(std::int64_t n, std::int64_t ss,
                                                   std::int64_t nrows, const T* const* rows,
                                                   const T* const* w, const std::int64_t* ox,
                                                   std::int64_t kcount, T* const* out) {
  switch (kcount) {
    case 1:
      return correlate_row<T, NO, 1, SS>(n, ss, nrows, rows, w, ox, kcount, out);
    case 2:
      return correlate_row<T, NO, 2, SS>(n, ss, nrows, rows, w, ox, kcount, out);
    case 3:
      return correlate_row<T, NO, 3, SS>(n, ss, nrows, rows, w, ox, kcount, out);
    case 5:
      return correlate_row<T, NO, 5, SS>(n, ss, nrows, rows, w, ox, kcount, out);
    default:
      return correlate_row<T, NO, 0, SS>(n, ss, nrows, rows, w, ox, kcount, out);
  }
}

template <typename T, int NO>
[[gnu::always_inline]] inline void correlate_row_any(std::int64_t n, std::int64_t ss,
                                                     std::int64_t nrows, const T* const* rows,
                                                     const T* const* w, const std::int64_t* ox,
                                                     std::int64_t kcount, T* const* out) {
  if (ss == 1) return correlate_row_k<T, NO, 1>(n, ss, nrows, rows, w, ox, kcount, out);
  if (ss == 2) return correlate_row_k<T, NO, 2>(n, ss, nrows, rows, w, ox, kcount, out);
  correlate_row_k<T, NO, 0>(n, ss, nrows, rows, w, ox, kcount, out);
}

// The depthwise kernels' interior: COUNT consecutive output rows that each read the same R
// source rows (R = kernel rows, K taps per row), moved by ROW_STEP elements from one output row to
// the next. The R * K * NO weights are broadcast into registers once for the whole run instead of
// being reloaded for every chunk, and four chunks run at once for a single output plane: the
// rows' sums are then four independent chains of multiply-adds.
//
// Reads: a vector read at every tap's offset would mostly straddle two cache lines, which costs
// two loads, and the loads, not the multiply-adds, would set the pace. When the rows are laid out
// for it (ALIGNED, see plan_padding), each row is read in aligned vectors from the leftmost tap's
// position on, and the vector of each tap is cut out of two neighbours with one permute. Taps are
// ordered leftmost first (the caller's order permuted), so the first needs no permute.
template <typename T, int NO, int R, int K, int SS, int U>
[[gnu::always_inline]] inline void run_chunks(std::int64_t q, std::int64_t ss,
                                              const T* const (&src)[R][K], T* const* dst,
                                              const typename Vec<T>::V (&w)[R][K][NO]) {
  using V = typename Vec<T>::V;
  constexpr int lanes = Vec<T>::lanes;
  const std::int64_t step = SS > 0 ? SS : ss;
  V acc[U][NO];
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) acc[u][o] = V{};
  }
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        V v;
        load_strided<T, SS>(v, src[r][k] + (q + u * lanes) * step, ss);
        for (int o = 0; o < NO; ++o) acc[u][o] += w[r][k][o] * v;
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) store(dst[o] + q + u * lanes, acc[u][o]);
  }
}

template <typename T, int NO, int R, int K, int U>
[[gnu::always_inline]] inline void run_chunks_aligned(std::int64_t q, const T* const (&base)[R],
                                                      T* const* dst,
                                                      const typename Vec<T>::V (&w)[R][K][NO],
                                                      const typename Vec<T>::I (&shift)[K]) {
  using V = typename Vec<T>::V;
  constexpr int lanes = Vec<T>::lanes;
  V acc[U][NO];
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) acc[u][o] = V{};
  }
  for (int r = 0; r < R; ++r) {
    V block[U + 1];
    for (int j = 0; j <= U; ++j) load(block[j], base[r] + q + j * lanes);
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        const V v = k == 0 ? block[u] : __builtin_shuffle(block[u], block[u + 1], shift[k]);
        for (int o = 0; o < NO; ++o) acc[u][o] += w[r][k][o] * v;
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    for (int o = 0; o < NO; ++o) store(dst[o] + q + u * lanes, acc[u][o]);
  }
}

// The aligned reads of a single output plane, summed per tap column first: for each tap k,
// P_k = sum over rows r of w[r][k] * (the aligned vector of row r at the chunk's position). Output
// chunk q is the sum over k of P_k's elements d_k on (d_k = tap k's distance from the leftmost
// tap), cut out of P_k at q and at q + lanes with one permute. Each row vector is read once and
// feeds all its taps, and there are K - 1 permutes per output vector instead of R * (K - 1).
//
// tap_sums computes the K sums of the vector at AT; run_blocks_aligned writes U output chunks from
// the sums P[0] of the chunk at Q (computed by the previous call or before the first), and leaves
// those of the chunk at Q + U * lanes in P[0]. With NT, the chunks are written with non-temporal
// stores of 16 bytes (the baseline ISA has no wider ones): DST + Q must be 16-byte aligned.
template <typename T, int R, int K>
[[gnu::always_inline]] inline void tap_sums(typename Vec<T>::V (&p)[K], const T* const (&base)[R],
                                            std::int64_t at,
                                            const typename Vec<T>::V (&w)[R][K][1]) {
  using V = typename Vec<T>::V;
  for (int r = 0; r < R; ++r) {
    V b;
    load(b, base[r] + at);
    for (int k = 0; k < K; ++k) p[k] = r == 0 ? w[r][k][0] * b : p[k] + w[r][k][0] * b;
  }
}

template <typename T, int R, int K, int U, int N, bool NT = false>
[[gnu::always_inline]] inline void run_blocks_aligned(std::int64_t q, const T* const (&base)[R],
                                                      T* dst,
                                                      const typename Vec<T>::V (&w)[R][K][1],
                                                      const typename Vec<T>::I (&shift)[K],
                                                      typename Vec<T>::V (&p)[N][K]) {
  static_assert(N > U);
  using V = typename Vec<T>::V;
  constexpr int lanes = Vec<T>::lanes;
  for (int u = 1; u <= U; ++u) tap_sums<T, R, K>(p[u], base, q + u * lanes, w);
  for (int u = 0; u < U; ++u) {
    V acc = p[u][0];
    for (int k = 1; k < K; ++k) acc += __builtin_shuffle(p[u][k], p[u + 1][k], shift[k]);
    if constexpr (NT) {
      T* d = dst + q + u * lanes;
      if constexpr (sizeof(T) == 4) {
        typedef float V4 __attribute__((vector_size(16)));
        for (int j = 0; j < 4; ++j) {
          V4 part;
          __builtin_memcpy(&part, reinterpret_cast<const char*>(&acc) + 16 * j, 16);
          __builtin_ia32_movntps(reinterpret_cast<float*>(d) + 4 * j, part);
        }
      } else {
        typedef double V2 __attribute__((vector_size(16)));
        for (int j = 0; j < 4; ++j) {
          V2 part;
          __builtin_memcpy(&part, reinterpret_cast<const char*>(&acc) + 16 * j, 16);
          __builtin_ia32_movntpd(reinterpret_cast<double*>(d) + 2 * j, part);
        }
      }
    } else {
      store(dst + q + u * lanes, acc);
    }
  }
  for (int k = 0; k < K; ++k) p[0][k] = p[U][k];
}

template <typename T, int NO, int R, int K, int SS>
[[gnu::always_inline]] inline void correlate_run(std::int64_t count, std::int64_t row_step,
                                                 const T* const* rows, const T* const* weights,
                                                 const std::int64_t* offsets, std::int64_t n,
                                                 std::int64_t ss, T* const* out,
                                                 std::int64_t out_step, bool aligned,
                                                 Prefetch& pf) {
  using V = typename Vec<T>::V;
  using I = typename Vec<T>::I;
  constexpr int lanes = Vec<T>::lanes;
  constexpr int U = NO == 1 && R * K <= 9 ? 4 : 2;
  int order[K];
  for (int k = 0; k < K; ++k) order[k] = k;
  std::sort(order, order + K, [&](int a, int b) { return offsets[a] < offsets[b]; });
  V w[R][K][NO];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      for (int o = 0; o < NO; ++o) w[r][k][o] = V{} + weights[r][order[k] * NO + o];
    }
  }
  // One pointer per row and tap (each unaligned read is then a base plus the chunk's position),
  // and per row the leftmost tap's for the aligned reads.
  const T* src[R][K];
  const T* base[R];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) src[r][k] = rows[r] + offsets[order[k]];
    base[r] = src[r][0];
  }
  I shift[K];
  for (int k = 0; k < K; ++k) {
    typename Vec<T>::Lane index[lanes];
    for (int l = 0; l < lanes; ++l) {
      index[l] = static_cast<typename Vec<T>::Lane>(l + offsets[order[k]] - offsets[order[0]]);
    }
    __builtin_memcpy(&shift[k], index, sizeof(I));
  }
  T* dst[NO];
  for (int o = 0; o < NO; ++o) dst[o] = out[o];
  for (std::int64_t y = 0; y < count; ++y) {
    prefetch_slice(pf);
    std::int64_t q = 0;
    if constexpr (NO == 1 && R * K <= 9) {
      if (aligned && n >= lanes) {
        V p[U + 1][K];
        tap_sums<T, R, K>(p[0], base, 0, w);
        for (; q + U * lanes <= n; q += U * lanes) {
          run_blocks_aligned<T, R, K, U>(q, base, dst[0], w, shift, p);
        }
        for (; q + lanes <= n; q += lanes) {
          run_blocks_aligned<T, R, K, 1>(q, base, dst[0], w, shift, p);
        }
      }
    }
    if (aligned && (NO != 1 || R * K > 9)) {
      for (; q + U * lanes <= n; q += U * lanes) {
        run_chunks_aligned<T, NO, R, K, U>(q, base, dst, w, shift);
      }
      for (; q + lanes <= n; q += lanes) run_chunks_aligned<T, NO, R, K, 1>(q, base, dst, w, shift);
    } else {
      for (; q + U * lanes <= n; q += U * lanes) {
        run_chunks<T, NO, R, K, SS, U>(q, ss, src, dst, w);
      }
      for (; q + lanes <= n; q += lanes) run_chunks<T, NO, R, K, SS, 1>(q, ss, src, dst, w);
    }
    if (q < n) run_chunks<T, NO, R, K, SS, 1>(n - lanes, ss, src, dst, w);
    for (int r = 0; r < R; ++r) {
      for (int k = 0; k < K; ++k) src[r][k] += row_step;
      base[r] += row_step;
    }
    for (int o = 0; o < NO; ++o) dst[o] += out_step;
  }
}

// Runs correlate_run when (NROWS, KCOUNT, SS, NO) has a version; returns whether it did.
template <typename T, int NO>
[[gnu::always_inline]] inline bool correlate_run_any(
    std::int64_t nrows, std::int64_t kcount, std::int64_t count, std::int64_t row_step,
    const T* const* rows, const T* const* weights, const std::int64_t* offsets, std::int64_t n,
    std::int64_t ss, T* const* out, std::int64_t out_step, bool aligned, Prefetch& pf) {
  if constexpr (NO <= 2) {
    if (nrows == 3 && kcount == 3) {
      if (ss == 1) {
        correlate_run<T, NO, 3, 3, 1>(count, row_step, rows, weights, offsets, n, ss, out, out_step,
                                      aligned && ss == 1, pf);
        return true;
      }
      if (ss == 2) {
        correlate_run<T, NO, 3, 3, 2>(count, row_step, rows, weights, offsets, n, ss, out, out_step,
                                      aligned && ss == 1, pf);
        return true;
      }
    }
  }
  if constexpr (NO == 1) {
    if (nrows == 5 && kcount == 5) {
      if (ss == 1) {
        correlate_run<T, NO, 5, 5, 1>(count, row_step, rows, weights, offsets, n, ss, out, out_step,
                                      aligned && ss == 1, pf);
        return true;
      }
      if (ss == 2) {
        correlate_run<T, NO, 5, 5, 2>(count, row_step, rows, weights, offsets, n, ss, out, out_step,
                                      aligned && ss == 1, pf);
        return true;
      }
    }
  }
  return false;
}

// The output plane of unit (B, G) for ring_applies problems. Each source row is copied into a
// ring of a few padded rows (in L1) one output row ahead of its first use, so that the copy's
// loads overlap the computation of the row before; every output row then reads its R rows from
// the ring in aligned vectors as correlate_run does. Rows above and below the source read a row
// of zeros with zero weights (as if skipped: an infinite weight does not turn them into NaN).
template <typename T, int R, int K>
[[gnu::always_inline]] inline void ring_plane(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                              std::int64_t g) {
  using V = typename Vec<T>::V;
  using I = typename Vec<T>::I;
  constexpr std::int64_t lanes = Vec<T>::lanes;
  const CorrGeometry& geo = *p.geo;
  const AxisPlan &ay = p.axes[1], &ax = p.axes[2];
  const Phase &py = ay.phases[0], &px = ax.phases[0];
  const std::int64_t src_h = ay.src_size, width = ax.src_size, wp = p.padded_width;
  const std::int64_t sy = ay.src_step, n = px.count, left = p.pad_left;
  const auto [ylo_at, yhi_at] = std::minmax_element(py.offsets.begin(), py.offsets.end());
  const std::int64_t ylo = *ylo_at, yhi = *yhi_at;
  std::int64_t slots = 1;
  while (slots < yhi - ylo + 1 + sy) slots *= 2;
  // While the layout stays the same, the pads still hold the zeros written when it was set.
  const std::int64_t layout[4] = {wp, left, width, slots};
  if (!std::equal(layout, layout + 4, s.ring_layout)) {
    s.ring.assign(static_cast<std::size_t>((slots + 1) * wp + lanes), T(0));
    std::copy(layout, layout + 4, s.ring_layout);
    const auto address = reinterpret_cast<std::uintptr_t>(s.ring.data());
    s.ring_base = s.ring.data() + (64 - address % 64) % 64 / sizeof(T);
  }
  T* const ring = s.ring_base;
  const T* const zero = ring + slots * wp;
  const T* const plane = p.src + (b * p.src_channels + g) * p.src_plane;
  T* out = p.dst + (b * p.out_channels + g) * p.out_plane;
  const bool stream = p.stream;

  int order[K];
  for (int k = 0; k < K; ++k) order[k] = k;
  std::sort(order, order + K, [&](int a, int c) { return px.offsets[a] < px.offsets[c]; });
  V w[R][K][1], wb[R][K][1];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      w[r][k][0] = V{} + p.weight(g, 0, 0,
                                  py.taps[static_cast<std::size_t>(r)] * geo.kernel[2] +
                                      px.taps[static_cast<std::size_t>(order[k])]);
    }
  }
  I shift[K];
  std::int64_t xoff[K];
  for (int k = 0; k < K; ++k) {
    xoff[k] = left + px.offsets[static_cast<std::size_t>(order[k])];
    typename Vec<T>::Lane index[lanes];
    for (std::int64_t l = 0; l < lanes; ++l) {
      index[l] = static_cast<typename Vec<T>::Lane>(l + xoff[k] - xoff[0]);
    }
    __builtin_memcpy(&shift[k], index, sizeof(I));
  }

  std::int64_t copied = 0;  // the next source row to copy
  for (std::int64_t y = 0; y < py.count; ++y) {
    // Copy the rows this output row and the next one read that are not in the ring yet.
    copied = std::max(copied, y * sy + ylo);
    const std::int64_t need = std::min(src_h - 1, (y + 1) * sy + yhi);
    for (; copied <= need; ++copied) {
      const T* from = plane + copied * width;
      T* to = ring + (copied & (slots - 1)) * wp + left;
      if (width >= lanes) {
        V v;
        std::int64_t x = 0;
        for (; x + lanes <= width; x += lanes) {
          load(v, from + x);
          store(to + x, v);
        }
        if (x < width) {
          load(v, from + width - lanes);
          store(to + width - lanes, v);
        }
      } else {
        for (std::int64_t x = 0; x < width; ++x) to[x] = from[x];
      }
    }
    const T* base[R];
    const T* src[R][K];
    bool border = false;
    for (int r = 0; r < R; ++r) {
      const std::int64_t iy = y * sy + py.offsets[static_cast<std::size_t>(r)];
      const bool inside = iy >= 0 && iy < src_h;
      border |= !inside;
      const T* row = inside ? ring + (iy & (slots - 1)) * wp : zero;
      for (int k = 0; k < K; ++k) src[r][k] = row + xoff[k];
      base[r] = src[r][0];
    }
    if (border) {
      for (int r = 0; r < R; ++r) {
        const std::int64_t iy = y * sy + py.offsets[static_cast<std::size_t>(r)];
        for (int k = 0; k < K; ++k) wb[r][k][0] = iy >= 0 && iy < src_h ? w[r][k][0] : V{};
      }
    }
    const V(&wy)[R][K][1] = border ? wb : w;
    T* dst[1] = {out};
    std::int64_t q = 0;
    if constexpr (R * K <= 9) {
      constexpr int U = 4;
      V sums[U + 1][K];
      tap_sums<T, R, K>(sums[0], base, 0, wy);
      if (stream && n % lanes == 0 && reinterpret_cast<std::uintptr_t>(out) % 16 == 0) {
        for (; q + U * lanes <= n; q += U * lanes) {
          run_blocks_aligned<T, R, K, U, U + 1, true>(q, base, out, wy, shift, sums);
        }
        for (; q + lanes <= n; q += lanes) {
          run_blocks_aligned<T, R, K, 1, U + 1, true>(q, base, out, wy, shift, sums);
        }
      }
      for (; q + U * lanes <= n; q += U * lanes) {
        run_blocks_aligned<T, R, K, U>(q, base, out, wy, shift, sums);
      }
      for (; q + lanes <= n; q += lanes)
        run_blocks_aligned<T, R, K, 1>(q, base, out, wy, shift, sums);
    } else {
      for (; q + 2 * lanes <= n; q += 2 * lanes) {
        run_chunks_aligned<T, 1, R, K, 2>(q, base, dst, wy, shift);
      }
      for (; q + lanes <= n; q += lanes) run_chunks_aligned<T, 1, R, K, 1>(q, base, dst, wy, shift);
    }
    if (q < n) run_chunks<T, 1, R, K, 1, 1>(n - lanes, 1, src, dst, wy);
    out += n;
  }
  if (stream) __builtin_ia32_sfence();
}

// Output planes [O0, O0 + NO) of group G, batch item B, from the padded sources.
template <typename T, int NO>
[[gnu::always_inline]] inline void conv_block(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                              std::int64_t g, std::int64_t o0) {
  const CorrGeometry& geo = *p.geo;
  const std::int64_t kd = geo.kernel[0], kh = geo.kernel[1], kw = geo.kernel[2];
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  const std::int64_t src_h = ay.src_size, out_h = ay.out_size, out_w = ax.out_size;
  // Weight tables, one per x phase: [source][z tap][y tap][phase tap][output].
  std::vector<std::int64_t> table_at(ax.phases.size() + 1, 0);
  for (std::size_t i = 0; i < ax.phases.size(); ++i) {
    table_at[i + 1] =
        table_at[i] + p.srcs * kd * kh * static_cast<std::int64_t>(ax.phases[i].taps.size()) * NO;
  }
  s.table.resize(static_cast<std::size_t>(table_at.back()));
  for (std::size_t i = 0; i < ax.phases.size(); ++i) {
    const Phase& ph = ax.phases[i];
    const auto kn = static_cast<std::int64_t>(ph.taps.size());
    T* table = s.table.data() + table_at[i];
    for (std::int64_t zy = 0; zy < p.srcs * kd * kh; ++zy) {
      const std::int64_t src = zy / (kd * kh), tap_zy = zy % (kd * kh);
      for (std::int64_t k = 0; k < kn; ++k) {
        for (std::int64_t o = 0; o < NO; ++o) {
          table[(zy * kn + k) * NO + o] =
              p.weight(g, o0 + o, src, tap_zy * kw + ph.taps[static_cast<std::size_t>(k)]);
        }
      }
    }
  }
  const std::int64_t max_rows = p.srcs * kd * kh;
  s.rows.resize(static_cast<std::size_t>(max_rows));
  s.weights.resize(static_cast<std::size_t>(max_rows));
  s.row_taps.resize(static_cast<std::size_t>(max_rows));
  s.tmp.resize(static_cast<std::size_t>(NO * p.max_row));
  T* planes[NO];
  for (int o = 0; o < NO; ++o) {
    planes[o] = p.dst + (b * p.out_channels + g * p.outs + o0 + o) * p.out_plane;
  }
  for (const Phase& pz : az.phases) {
    for (std::int64_t zq = 0; zq < pz.count; ++zq) {
      const std::int64_t oz = pz.start + zq * az.out_step;
      for (const Phase& py : ay.phases) {
        // The output rows whose every y tap reads inside the source: there, with a single x phase
        // written in place, whole runs of rows can go to correlate_run.
        std::int64_t run_lo = 0, run_hi = py.count;
        for (std::int64_t f : py.offsets) {
          run_lo = std::max(run_lo, ceil_div(-f, ay.src_step));
          run_hi = std::min(run_hi, floor_div(src_h - 1 - f, ay.src_step) + 1);
        }
        const bool runs = NO <= 2 && ax.phases.size() == 1 && ax.out_step == 1 &&
                          ax.phases[0].count >= Vec<T>::lanes && run_hi - run_lo >= 2;
        for (std::int64_t yq = 0; yq < py.count; ++yq) {
          const std::int64_t oy = py.start + yq * ay.out_step;
          prefetch_slice(s.prefetch);
          // The source rows this output row reads.
          std::int64_t nrows = 0;
          for (std::int64_t src = 0; src < p.srcs; ++src) {
            const T* padded = s.padded_base + src * p.padded_plane() + p.pad_left;
            for (std::size_t ka = 0; ka < pz.taps.size(); ++ka) {
              const std::int64_t iz = zq * az.src_step + pz.offsets[ka];
              if (iz < 0 || iz >= az.src_size) continue;
              for (std::size_t ki = 0; ki < py.taps.size(); ++ki) {
                const std::int64_t iy = yq * ay.src_step + py.offsets[ki];
                if (iy < 0 || iy >= src_h) continue;
                const auto r = static_cast<std::size_t>(nrows++);
                s.rows[r] = padded + (iz * src_h + iy) * p.padded_width;
                s.row_taps[r] = (src * kd + pz.taps[ka]) * kh + py.taps[ki];
              }
            }
          }
          T* out_rows[NO];
          for (int o = 0; o < NO; ++o) out_rows[o] = planes[o] + (oz * out_h + oy) * out_w;
          if (runs && yq == run_lo && nrows > 0) {
            const Phase& px = ax.phases[0];
            const auto kn = static_cast<std::int64_t>(px.taps.size());
            for (std::int64_t r = 0; r < nrows; ++r) {
              const auto ur = static_cast<std::size_t>(r);
              s.weights[ur] = s.table.data() + s.row_taps[ur] * kn * NO;
            }
            if (correlate_run_any<T, NO>(nrows, kn, run_hi - run_lo, ay.src_step * p.padded_width,
                                         s.rows.data(), s.weights.data(), px.offsets.data(),
                                         px.count, ax.src_step, out_rows, ay.out_step * out_w,
                                         p.aligned_taps, s.prefetch)) {
              yq = run_hi - 1;
              continue;
            }
          }
          for (std::size_t i = 0; i < ax.phases.size(); ++i) {
            const Phase& px = ax.phases[i];
            const auto kn = static_cast<std::int64_t>(px.taps.size());
            if (nrows == 0 || kn == 0) {
              for (int o = 0; o < NO; ++o) {
                for (std::int64_t q = 0; q < px.count; ++q) {
                  out_rows[o][px.start + q * ax.out_step] = T(0);
                }
              }
              continue;
            }
            for (std::int64_t r = 0; r < nrows; ++r) {
              const auto ur = static_cast<std::size_t>(r);
              s.weights[ur] = s.table.data() + table_at[i] + s.row_taps[ur] * kn * NO;
            }
            const bool in_place = ax.out_step == 1 && px.count >= Vec<T>::lanes;
            const std::int64_t n = std::max<std::int64_t>(px.count, Vec<T>::lanes);
            T* dst[NO];
            for (int o = 0; o < NO; ++o) {
              dst[o] = in_place ? out_rows[o] + px.start : s.tmp.data() + o * p.max_row;
            }
            correlate_row_any<T, NO>(n, ax.src_step, nrows, s.rows.data(), s.weights.data(),
                                     px.offsets.data(), kn, dst);
            if (!in_place) {
              for (int o = 0; o < NO; ++o) {
                for (std::int64_t q = 0; q < px.count; ++q) {
                  out_rows[o][px.start + q * ax.out_step] = dst[o][q];
                }
              }
            }
          }
        }
      }
    }
  }
}

// Unit = batch item * groups + group: every output plane of that group, through the parts of the
// version in use (P.parts).
template <typename T>
[[gnu::always_inline]] inline void conv_unit(const Problem<T>& p, Scratch<T>& s, std::int64_t unit,
                                             std::int64_t next) {
  const std::int64_t groups = p.geo->groups;
  const std::int64_t b = unit / groups, g = unit % groups;
  if (p.ring) {
    if (p.axes[1].phases[0].taps.size() == 3) {
      p.parts->ring3x3(p, s, b, g);
    } else {
      p.parts->ring5x5(p, s, b, g);
    }
    return;
  }
  pad_sources(p, s, b, g * p.srcs, p.srcs);
  const T* next_src =
      next < 0 ? nullptr
               : p.src + (next / groups * p.src_channels + next % groups * p.srcs) * p.src_plane;
  plan_prefetch(s.prefetch, next_src, p.srcs * p.src_plane * std::int64_t{sizeof(T)},
                p.axes[0].out_size * p.axes[1].out_size);
  for (std::int64_t o0 = 0; o0 < p.outs;) {
    const std::int64_t left = p.outs - o0;
    if (left >= 4) {
      p.parts->block4(p, s, b, g, o0);
      o0 += 4;
    } else if (left >= 2) {
      p.parts->block2(p, s, b, g, o0);
      o0 += 2;
    } else {
      p.parts->block1(p, s, b, g, o0);
      o0 += 1;
    }
  }
}

}  // namespace convgraph::depthwise_detail
