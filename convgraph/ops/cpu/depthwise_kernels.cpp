// Direct loops for depthwise and small-group convolutions (see depthwise_kernels.hpp).
//
// One unit of work is a (batch item, group) pair: its source planes are copied once into a
// per-thread buffer whose rows carry zero padding left and right, so that every read of an output
// row falls inside a row and the inner loops have no bounds to check; rows above and below the
// source are skipped (a test per row, not per element). Each output row is then computed in chunks
// of one vector register of positions per output plane: the sums over source rows, taps and
// source planes stay in registers, and each output element is stored once. The last chunk of a row
// overlaps the one before it instead of running a scalar tail.
//
// The forward and the gradient with respect to the inputs share the engine: both are, per axis,
// out[start + step * q] = sum over taps of w[tap] * src[q * src_step + offset(tap)]. The forward
// has one "phase" per axis (step 1, src_step = stride). The input gradient at stride s splits each
// axis into s phases (the outputs congruent to r modulo s), each a stride-1 correlation of the
// topgrad with the taps that reach that residue; phases along x go through a row buffer and are
// interleaved into the output row.
//
// The loops are compiled three times, for AVX-512, AVX2 + FMA and the baseline x86-64 ISA (the
// library is built for the baseline); the best version the CPU runs is picked at load time. They
// are written with GCC vector extensions of 64 bytes, which each version lowers to its registers.
#include "convgraph/ops/cpu/depthwise_kernels.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

namespace convgraph {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return -floor_div(-a, b);
}

// ---- vectors ----

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef std::int32_t Lane;
  typedef std::int32_t I __attribute__((vector_size(64)));
  static constexpr int lanes = 16;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef std::int64_t Lane;
  typedef std::int64_t I __attribute__((vector_size(64)));
  static constexpr int lanes = 8;
};

// Vectors travel by reference only: passing 64-byte vectors by value would change the calling
// convention between the ISA versions (and GCC warns about it).
template <typename T, typename V>
[[gnu::always_inline]] inline void load(V& v, const T* p) {
  __builtin_memcpy(&v, p, sizeof(V));
}

template <typename T, typename V>
[[gnu::always_inline]] inline void store(T* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// V <- P[0], P[ss], P[2 ss], ... SS is the stride when known at compile time (1 or 2), else 0. At
// stride 2 two contiguous vectors are read and their even elements kept (one permute), so the read
// runs one element past the last one used: the padding plans for it.
template <typename T, int SS, typename V>
[[gnu::always_inline]] inline void load_strided(V& v, const T* p, std::int64_t ss) {
  constexpr int lanes = Vec<T>::lanes;
  if constexpr (SS == 1) {
    load(v, p);
  } else if constexpr (SS == 2) {
    V a, b;
    load(a, p);
    load(b, p + lanes);
    typename Vec<T>::I even;
    for (int l = 0; l < lanes; ++l) even[l] = 2 * l;
    v = __builtin_shuffle(a, b, even);
  } else {
    for (int l = 0; l < lanes; ++l) v[l] = p[l * ss];
  }
}

// Elements read past the last one used at source stride SS.
std::int64_t over_read(std::int64_t ss) {
  return ss == 2 ? 1 : 0;
}

// ---- prefetching ----

// While a thread computes one unit of the forward or the input gradient, it prefetches the source
// planes of its next unit into L2, a slice per output row, so that the next unit's padded copy
// finds them there instead of waiting on L3 or memory with nothing to overlap the wait (5% on the
// depthwise layer of the suite). The weight gradient reads two planes per unit in step with its
// sums, which the hardware prefetcher follows as well on its own.
struct Prefetch {
  const char* from = nullptr;
  std::int64_t done = 0, bytes = 0, step = 0;
};

// Plans prefetching [FROM, FROM + BYTES) (nothing when FROM is null) in STEPS slices.
inline void plan_prefetch(Prefetch& pf, const void* from, std::int64_t bytes, std::int64_t steps) {
  pf.from = static_cast<const char*>(from);
  pf.done = 0;
  pf.bytes = from ? bytes : 0;
  pf.step = (ceil_div(bytes, std::max<std::int64_t>(steps, 1)) + 63) / 64 * 64;
}

// The progress is kept in locals: updated through PF in the loop, it went to memory on every line.
[[gnu::always_inline]] inline void prefetch_slice(Prefetch& pf) {
  const std::int64_t end = std::min(pf.bytes, pf.done + pf.step);
  std::int64_t done = pf.done;
  for (; done < end; done += 64) __builtin_prefetch(pf.from + done, 0, 2);
  pf.done = std::max(done, pf.done);
}

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

// Lane-wise weight-gradient sums of one source row against one topgrad row:
// ACC[k][l] += sum over chunks q of TOP[q + l] * ROW[(q + l) * ss + OX[k]], over positions
// [0, n). Full chunks run as they are; the last one (TAIL_TOP, at position TAIL_Q) counts only
// the lanes TAIL_MASK keeps: the mask is applied to the products, so what it drops cannot turn a
// sum into NaN.
template <typename T, int K, int SS>
[[gnu::always_inline]] inline void weight_sums_row(std::int64_t full, std::int64_t ss, const T* row,
                                                   const T* top, const std::int64_t* ox,
                                                   std::int64_t kcount, T* acc, bool tail,
                                                   std::int64_t tail_q, const T* tail_top,
                                                   const typename Vec<T>::I& tail_mask) {
  using V = typename Vec<T>::V;
  using I = typename Vec<T>::I;
  constexpr int lanes = Vec<T>::lanes;
  const std::int64_t step = SS > 0 ? SS : ss;
  if constexpr (K > 0) {
    V a[K];
    for (int k = 0; k < K; ++k) load(a[k], acc + k * lanes);
    for (std::int64_t q = 0; q < full; q += lanes) {
      V t;
      load(t, top + q);
      for (int k = 0; k < K; ++k) {
        V v;
        load_strided<T, SS>(v, row + q * step + ox[k], ss);
        a[k] += t * v;
      }
    }
    if (tail) {
      V t;
      load(t, tail_top);
      for (int k = 0; k < K; ++k) {
        V v;
        load_strided<T, SS>(v, row + tail_q * step + ox[k], ss);
        a[k] += (V)((I)(t * v) & tail_mask);
      }
    }
    for (int k = 0; k < K; ++k) store(acc + k * lanes, a[k]);
  } else {
    for (std::int64_t k = 0; k < kcount; ++k) {
      V a;
      load(a, acc + k * lanes);
      for (std::int64_t q = 0; q < full; q += lanes) {
        V t, v;
        load(t, top + q);
        load_strided<T, SS>(v, row + q * step + ox[k], ss);
        a += t * v;
      }
      if (tail) {
        V t, v;
        load(t, tail_top);
        load_strided<T, SS>(v, row + tail_q * step + ox[k], ss);
        a += (V)((I)(t * v) & tail_mask);
      }
      store(acc + k * lanes, a);
    }
  }
}

// The same sums for the KH source rows ROWS[i] that one topgrad row meets through the y taps,
// with K taps per row: KH * K independent sums, kept in registers (A) over the whole plane, and
// each topgrad vector read once for all of them. Without this, the K sums of a single row were
// chains of dependent multiply-adds that set the pace. A row outside the source is a row of zeros.
template <typename T, int KH, int K, int SS>
[[gnu::always_inline]] inline void weight_sums_rows(std::int64_t full, std::int64_t ss,
                                                    const T* const (&rows)[KH], const T* top,
                                                    const std::int64_t* ox,
                                                    typename Vec<T>::V (&a)[KH][K], bool tail,
                                                    std::int64_t tail_q, const T* tail_top,
                                                    const typename Vec<T>::I& tail_mask) {
  using V = typename Vec<T>::V;
  using I = typename Vec<T>::I;
  constexpr int lanes = Vec<T>::lanes;
  const std::int64_t step = SS > 0 ? SS : ss;
  for (std::int64_t q = 0; q < full; q += lanes) {
    V t;
    load(t, top + q);
    for (int i = 0; i < KH; ++i) {
      for (int k = 0; k < K; ++k) {
        V v;
        load_strided<T, SS>(v, rows[i] + q * step + ox[k], ss);
        a[i][k] += t * v;
      }
    }
  }
  if (tail) {
    V t;
    load(t, tail_top);
    for (int i = 0; i < KH; ++i) {
      for (int k = 0; k < K; ++k) {
        V v;
        load_strided<T, SS>(v, rows[i] + tail_q * step + ox[k], ss);
        a[i][k] += (V)((I)(t * v) & tail_mask);
      }
    }
  }
}

template <typename T, int SS>
[[gnu::always_inline]] inline void weight_sums_row_k(std::int64_t full, std::int64_t ss,
                                                     const T* row, const T* top,
                                                     const std::int64_t* ox, std::int64_t kcount,
                                                     T* acc, bool tail, std::int64_t tail_q,
                                                     const T* tail_top,
                                                     const typename Vec<T>::I& tail_mask) {
  switch (kcount) {
    case 1:
      return weight_sums_row<T, 1, SS>(full, ss, row, top, ox, kcount, acc, tail, tail_q, tail_top,
                                       tail_mask);
    case 3:
      return weight_sums_row<T, 3, SS>(full, ss, row, top, ox, kcount, acc, tail, tail_q, tail_top,
                                       tail_mask);
    case 5:
      return weight_sums_row<T, 5, SS>(full, ss, row, top, ox, kcount, acc, tail, tail_q, tail_top,
                                       tail_mask);
    default:
      return weight_sums_row<T, 0, SS>(full, ss, row, top, ox, kcount, acc, tail, tail_q, tail_top,
                                       tail_mask);
  }
}

// ---- plans ----

// The outputs start + step * q (q < count) of one axis, and for each tap that reaches them (a
// stored tap index) the source index of output q: q * src_step + offset.
struct Phase {
  std::int64_t start = 0, count = 0;
  std::vector<std::int64_t> taps, offsets;
};

struct AxisPlan {
  std::int64_t out_size = 1, out_step = 1, src_size = 1, src_step = 1;
  std::vector<Phase> phases;
};

AxisPlan forward_axis(const CorrGeometry& geo, std::size_t a) {
  AxisPlan plan{geo.output[a], 1, geo.image[a], geo.stride[a], {}};
  Phase phase{0, geo.output[a], {}, {}};
  for (std::int64_t t = 0; t < geo.kernel[a]; ++t) {
    phase.taps.push_back(t);
    phase.offsets.push_back(geo.tap_offset[a][static_cast<std::size_t>(t)]);
  }
  plan.phases.push_back(std::move(phase));
  return plan;
}

// Image position i is read by output o through a tap of offset f when i = o * s + f: so the
// outputs congruent to r (mod s) get the taps with f = r (mod s), from topgrad position
// q + (r - f) / s for i = r + s q.
AxisPlan backward_axis(const CorrGeometry& geo, std::size_t a) {
  const std::int64_t s = geo.stride[a];
  AxisPlan plan{geo.image[a], s, geo.output[a], 1, {}};
  for (std::int64_t r = 0; r < std::min(s, geo.image[a]); ++r) {
    Phase phase{r, ceil_div(geo.image[a] - r, s), {}, {}};
    for (std::int64_t t = 0; t < geo.kernel[a]; ++t) {
      const std::int64_t f = geo.tap_offset[a][static_cast<std::size_t>(t)];
      if (((r - f) % s + s) % s != 0) continue;
      phase.taps.push_back(t);
      phase.offsets.push_back((r - f) / s);
    }
    plan.phases.push_back(std::move(phase));
  }
  return plan;
}

// A direction's problem: output planes from source planes, group by group.
template <typename T>
struct Problem {
  const CorrGeometry* geo = nullptr;
  AxisPlan axes[3];
  bool backward = false;  // gradient wrt the inputs: outputs are image planes, sources topgrad
  std::int64_t outs = 0, srcs = 0;                  // planes per group
  std::int64_t out_channels = 0, src_channels = 0;  // planes per batch item
  std::int64_t out_plane = 0, src_plane = 0;        // elements per plane
  const T* src = nullptr;
  const T* kernel = nullptr;
  T* dst = nullptr;
  // The x padding of the copied source rows, and their length.
  std::int64_t pad_left = 0, padded_width = 0;
  // Whether the rows are laid out for correlate_run's aligned reads (see plan_padding).
  bool aligned_taps = false;
  // Longest row the engine computes (a phase's positions, at least a vector).
  std::int64_t max_row = 0;
  // Whether units go through ring_plane (see ring_applies), and whether it writes whole vectors
  // with non-temporal stores (see stream_bytes).
  bool ring = false, stream = false;

  // Rows of a source plane, and elements of a padded one.
  std::int64_t src_rows() const { return axes[0].src_size * axes[1].src_size; }
  std::int64_t padded_plane() const { return src_rows() * padded_width; }
  // The weight of output plane O and source plane S of group G at stored tap TAP.
  T weight(std::int64_t g, std::int64_t o, std::int64_t s, std::int64_t tap) const {
    const std::int64_t mg = geo->filters_per_group, cg = geo->channels_per_group;
    const std::int64_t filter = g * mg + (backward ? s : o);
    const std::int64_t channel = backward ? o : s;
    return kernel[(filter * cg + channel) * geo->taps() + tap];
  }
};

// Sets the padding of the source rows so that every read of the x plan's phases (over at least a
// vector of positions) stays inside a padded row.
template <typename T>
void plan_padding(Problem<T>& p) {
  constexpr std::int64_t lanes = Vec<T>::lanes;
  const AxisPlan& x = p.axes[2];
  std::int64_t lo = 0, hi = x.src_size - 1;
  p.max_row = lanes;
  for (const Phase& ph : x.phases) {
    const std::int64_t n = std::max(ph.count, lanes);
    p.max_row = std::max(p.max_row, n);
    for (std::int64_t f : ph.offsets) {
      lo = std::min(lo, f);
      hi = std::max(hi, (n - 1) * x.src_step + f + over_read(x.src_step));
    }
  }
  p.pad_left = -lo;
  // A single stride-1 phase whose taps span at most a vector: correlate_run reads the rows in
  // aligned vectors from the leftmost tap on, two per chunk; those reads must be aligned (the
  // rows start on 64-byte boundaries, the leftmost tap's read of output 0 as well) and in the row.
  const Phase& ph = x.phases[0];
  if (x.phases.size() == 1 && x.src_step == 1 && !ph.offsets.empty()) {
    const auto [first, last] = std::minmax_element(ph.offsets.begin(), ph.offsets.end());
    if (*last - *first <= lanes) {
      p.aligned_taps = true;
      p.pad_left += ((-(p.pad_left + *first)) % lanes + lanes) % lanes;
      const std::int64_t n = std::max(ph.count, lanes);
      hi = std::max(hi, n + lanes + *first - 1);
    }
  }
  p.padded_width = hi + p.pad_left + 1;
  if (p.aligned_taps) p.padded_width = ceil_div(p.padded_width, lanes) * lanes;
}

// Per-thread buffers, kept from one unit to the next and from one call to the next (see
// thread_scratch).
template <typename T>
struct Scratch {
  std::vector<T> padded, table, tmp, acc;
  std::vector<const T*> rows, weights;
  std::vector<std::int64_t> row_taps;
  Prefetch prefetch;
  // The layout of the padded planes (row length, left pad, row data length, rows, planes): while
  // it stays the same, the pads still hold the zeros written when it was set, and only the rows'
  // data is copied.
  std::int64_t padded_layout[5] = {-1, -1, -1, -1, -1};
  // The first padded plane, on a 64-byte boundary inside PADDED.
  T* padded_base = nullptr;
  // The ring of padded rows (see ring_plane), its layout (row length, left pad, row data length,
  // rows) and its first row, on a 64-byte boundary; one more row after the ring stays zero.
  std::vector<T> ring;
  std::int64_t ring_layout[4] = {-1, -1, -1, -1};
  T* ring_base = nullptr;
};

// The calling thread's buffers. They outlive the call: freed at its end, a worker thread's buffers
// went back to the system (glibc trims the arenas of threads other than the main one) and were
// faulted in again on the next call, which cost a tenth of a depthwise layer's time. Buffers that
// grew past 64 MiB (large 3-D volumes) are released after the call instead.
template <typename T>
Scratch<T>& thread_scratch() {
  thread_local Scratch<T> scratch;
  return scratch;
}

template <typename T>
void trim_scratch(Scratch<T>& s) {
  constexpr std::size_t limit = std::size_t{64} << 20;
  if ((s.padded.capacity() + s.table.capacity() + s.tmp.capacity() + s.acc.capacity()) * sizeof(T) >
      limit) {
    s = Scratch<T>();
  }
}

// Copies source planes [FIRST, FIRST + COUNT) of batch item B into the padded buffer.
// Rows are copied in vectors (the last one overlapping the one before) rather than through
// memcpy: at a few hundred bytes a row, the call and its size dispatch cost as much as the copy.
template <typename T>
[[gnu::always_inline]] inline void pad_sources(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                               std::int64_t first, std::int64_t count) {
  using V = typename Vec<T>::V;
  constexpr std::int64_t lanes = Vec<T>::lanes;
  const std::int64_t width = p.axes[2].src_size, wp = p.padded_width, rows = p.src_rows();
  const std::int64_t left = p.pad_left;
  const std::int64_t layout[5] = {wp, left, width, rows, count};
  if (!std::equal(layout, layout + 5, s.padded_layout)) {
    s.padded.assign(static_cast<std::size_t>(count * p.padded_plane() + lanes), T(0));
    std::copy(layout, layout + 5, s.padded_layout);
    const auto address = reinterpret_cast<std::uintptr_t>(s.padded.data());
    s.padded_base = s.padded.data() + (64 - address % 64) % 64 / sizeof(T);
  }
  for (std::int64_t c = 0; c < count; ++c) {
    const T* plane = p.src + (b * p.src_channels + first + c) * p.src_plane;
    T* dst = s.padded_base + c * p.padded_plane();
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* from = plane + r * width;
      T* to = dst + r * wp + left;
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
  }
}

// ---- source rows padded just before their use ----

// Depthwise planes (one source plane per output plane, multiplier 1) in 2-D, whose x axis is a
// single stride-1 phase read in aligned vectors and whose y axis is a single phase, with 3 x 3 or
// 5 x 5 taps. Their units skip pad_sources and the prefetching of the next unit (see ring_plane).
// On the depthwise layer of the suite this alone measured as fast as the whole-plane copy, not
// faster; what it gained came with the non-temporal stores below.
template <typename T>
bool ring_applies(const Problem<T>& p) {
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  if (p.outs != 1 || p.srcs != 1 || !p.aligned_taps) return false;
  if (az.src_size != 1 || az.out_size != 1 || az.phases.size() != 1 ||
      az.phases[0].offsets.size() != 1 || az.phases[0].offsets[0] != 0) {
    return false;
  }
  if (ay.phases.size() != 1 || ay.out_step != 1 || ax.phases.size() != 1 || ax.src_step != 1 ||
      ax.out_step != 1 || ax.phases[0].count < Vec<T>::lanes) {
    return false;
  }
  const std::size_t r = ay.phases[0].taps.size(), k = ax.phases[0].taps.size();
  return (r == 3 && k == 3) || (r == 5 && k == 5);
}

// Outputs of at least this many bytes are written by ring_plane with non-temporal stores, that
// do not read each output line into the cache before writing it and leave the cache to the
// sources (the depthwise layer of the suite, 12 MiB of output, took a tenth less time).
constexpr std::int64_t stream_bytes = std::int64_t{8} << 20;

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

// Unit = batch item * groups + group: every output plane of that group.
template <typename T>
[[gnu::always_inline]] inline void conv_unit(const Problem<T>& p, Scratch<T>& s, std::int64_t unit,
                                             std::int64_t next) {
  const std::int64_t groups = p.geo->groups;
  const std::int64_t b = unit / groups, g = unit % groups;
  if (p.ring) {
    if (p.axes[1].phases[0].taps.size() == 3) {
      ring_plane<T, 3, 3>(p, s, b, g);
    } else {
      ring_plane<T, 5, 5>(p, s, b, g);
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
      conv_block<T, 4>(p, s, b, g, o0);
      o0 += 4;
    } else if (left >= 2) {
      conv_block<T, 2>(p, s, b, g, o0);
      o0 += 2;
    } else {
      conv_block<T, 1>(p, s, b, g, o0);
      o0 += 1;
    }
  }
}

// Unit = batch item * filters + filter (depthwise: one channel per group): the lane-wise sums of
// that filter's taps over the batch item, added to SUMS (filters x taps).
template <typename T>
[[gnu::always_inline]] inline void weight_unit(const Problem<T>& p, Scratch<T>& s,
                                               std::int64_t unit, const T* topgrad, T* sums) {
  using I = typename Vec<T>::I;
  constexpr std::int64_t lanes = Vec<T>::lanes;
  const CorrGeometry& geo = *p.geo;
  const std::int64_t filters = geo.filters, taps = geo.taps();
  const std::int64_t b = unit / filters, m = unit % filters;
  const std::int64_t kh = geo.kernel[1], kw = geo.kernel[2];
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  const Phase &pz = az.phases[0], &py = ay.phases[0], &px = ax.phases[0];
  pad_sources(p, s, b, m / geo.filters_per_group, 1);
  s.acc.assign(static_cast<std::size_t>(taps * lanes), T(0));
  s.tmp.assign(static_cast<std::size_t>(lanes), T(0));
  const std::int64_t n = ax.out_size;
  // Whole chunks, then a last one: overlapping the one before (only its new lanes counted), or,
  // in rows shorter than a vector, a zero-padded copy of the row.
  const std::int64_t full = n / lanes * lanes;
  const bool tail = full < n;
  const std::int64_t tail_q = n >= lanes ? n - lanes : 0;
  const std::int64_t keep_from = n >= lanes ? lanes - (n - full) : 0;
  I mask;
  for (std::int64_t l = 0; l < lanes; ++l) mask[l] = (l >= keep_from && l < keep_from + n) ? -1 : 0;
  const T* top_plane = topgrad + (b * filters + m) * geo.positions();
  const T* padded = s.padded_base + p.pad_left;
  // 2-D 3 x 3 kernels (any stride, dilation, padding): the three source rows of each topgrad row
  // in one pass (weight_sums_rows); rows outside the source read a row of zeros.
  if (pz.taps.size() == 1 && py.taps.size() == 3 && px.taps.size() == 3 && az.out_size == 1 &&
      ax.src_step <= 2) {
    constexpr int KH = 3, K = 3;
    using V = typename Vec<T>::V;
    s.table.assign(static_cast<std::size_t>(p.padded_width + 2 * lanes), T(0));
    const T* zeros = s.table.data() + p.pad_left;
    V a[KH][K];
    for (int i = 0; i < KH; ++i) {
      for (int k = 0; k < K; ++k) a[i][k] = V{};
    }
    const std::int64_t iz = pz.offsets[0];
    const bool inside_z = iz >= 0 && iz < az.src_size;
    for (std::int64_t oy = 0; oy < ay.out_size; ++oy) {
      const T* top = top_plane + oy * n;
      const T* tail_top = top + tail_q;
      if (n < lanes) {
        std::copy(top, top + n, s.tmp.data());
        tail_top = s.tmp.data();
      }
      const T* rows[KH];
      for (int i = 0; i < KH; ++i) {
        const std::int64_t iy = oy * ay.src_step + py.offsets[static_cast<std::size_t>(i)];
        rows[i] = inside_z && iy >= 0 && iy < ay.src_size
                      ? padded + (iz * ay.src_size + iy) * p.padded_width
                      : zeros;
      }
      if (ax.src_step == 1) {
        weight_sums_rows<T, KH, K, 1>(full, 1, rows, top, px.offsets.data(), a, tail, tail_q,
                                      tail_top, mask);
      } else {
        weight_sums_rows<T, KH, K, 2>(full, 2, rows, top, px.offsets.data(), a, tail, tail_q,
                                      tail_top, mask);
      }
    }
    for (int i = 0; i < KH; ++i) {
      for (int k = 0; k < K; ++k) {
        T* acc = s.acc.data() + (py.taps[static_cast<std::size_t>(i)] * kw +
                                 px.taps[static_cast<std::size_t>(k)]) *
                                    lanes;
        store(acc, a[i][k]);
      }
    }
  } else {
    for (std::int64_t oz = 0; oz < az.out_size; ++oz) {
      for (std::int64_t oy = 0; oy < ay.out_size; ++oy) {
        const T* top = top_plane + (oz * ay.out_size + oy) * n;
        const T* tail_top = top + tail_q;
        if (n < lanes) {
          std::copy(top, top + n, s.tmp.data());
          tail_top = s.tmp.data();
        }
        for (std::size_t ka = 0; ka < pz.taps.size(); ++ka) {
          const std::int64_t iz = oz * az.src_step + pz.offsets[ka];
          if (iz < 0 || iz >= az.src_size) continue;
          for (std::size_t ki = 0; ki < py.taps.size(); ++ki) {
            const std::int64_t iy = oy * ay.src_step + py.offsets[ki];
            if (iy < 0 || iy >= ay.src_size) continue;
            const T* row = padded + (iz * ay.src_size + iy) * p.padded_width;
            T* acc = s.acc.data() + (pz.taps[ka] * kh + py.taps[ki]) * kw * lanes;
            const std::int64_t ss = ax.src_step;
            if (ss == 1) {
              weight_sums_row_k<T, 1>(full, ss, row, top, px.offsets.data(), kw, acc, tail, tail_q,
                                      tail_top, mask);
            } else if (ss == 2) {
              weight_sums_row_k<T, 2>(full, ss, row, top, px.offsets.data(), kw, acc, tail, tail_q,
                                      tail_top, mask);
            } else {
              weight_sums_row_k<T, 0>(full, ss, row, top, px.offsets.data(), kw, acc, tail, tail_q,
                                      tail_top, mask);
            }
          }
        }
      }
    }
  }
  for (std::int64_t t = 0; t < taps; ++t) {
    T sum = 0;
    for (std::int64_t l = 0; l < lanes; ++l) sum += s.acc[static_cast<std::size_t>(t * lanes + l)];
    sums[m * taps + t] += sum;
  }
}

// ---- the ISA versions ----

template <typename T>
struct Units {
  void (*conv)(const Problem<T>&, Scratch<T>&, std::int64_t, std::int64_t);
  void (*weights)(const Problem<T>&, Scratch<T>&, std::int64_t, const T*, T*);
};

#define CONVGRAPH_DIRECT_ISA(suffix, attributes)                                              \
  template <typename T>                                                                       \
  attributes void conv_unit_##suffix(const Problem<T>& p, Scratch<T>& s, std::int64_t unit,   \
                                     std::int64_t next) {                                     \
    conv_unit(p, s, unit, next);                                                              \
  }                                                                                           \
  template <typename T>                                                                       \
  attributes void weight_unit_##suffix(const Problem<T>& p, Scratch<T>& s, std::int64_t unit, \
                                       const T* topgrad, T* sums) {                           \
    weight_unit(p, s, unit, topgrad, sums);                                                   \
  }

CONVGRAPH_DIRECT_ISA(avx512, __attribute__((target("avx512f,fma"))))
CONVGRAPH_DIRECT_ISA(avx2, __attribute__((target("avx2,fma"))))
CONVGRAPH_DIRECT_ISA(baseline, )
#undef CONVGRAPH_DIRECT_ISA

DirectIsa supported_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return DirectIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DirectIsa::avx2;
  return DirectIsa::baseline;
}

std::atomic<DirectIsa>& isa_in_use() {
  static std::atomic<DirectIsa> isa{supported_isa()};
  return isa;
}

template <typename T>
Units<T> units_for(DirectIsa isa) {
  switch (isa) {
    case DirectIsa::avx512:
      return {&conv_unit_avx512<T>, &weight_unit_avx512<T>};
    case DirectIsa::avx2:
      return {&conv_unit_avx2<T>, &weight_unit_avx2<T>};
    case DirectIsa::baseline:
      break;
  }
  return {&conv_unit_baseline<T>, &weight_unit_baseline<T>};
}

// [begin, end) of part PART when COUNT items are split into PARTS contiguous runs.
std::pair<std::int64_t, std::int64_t> split(std::int64_t count, int parts, int part) {
  return {count * part / parts, count * (part + 1) / parts};
}

// Runs FN(scratch, slot, unit, next unit of the same thread or -1) over [0, UNITS) on up to THREADS
// threads: units handed out as threads finish them, or (FIXED) in contiguous runs, one per thread,
// so that per-thread sums come out the same from run to run. Returns the number of slots used.
template <typename T, typename Fn>
int run_units(int threads, std::int64_t units, bool fixed, Fn&& fn) {
  threads = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), units));
  if (threads <= 1) {
    Scratch<T>& s = thread_scratch<T>();
    for (std::int64_t u = 0; u < units; ++u) fn(s, 0, u, u + 1 < units ? u + 1 : -1);
    trim_scratch(s);
    return 1;
  }
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    const int slot = omp_get_thread_num();
    const int size = omp_get_num_threads();
    if (slot == 0) team = size;
    // Exceptions (allocation failures) must not cross the parallel region.
    try {
      Scratch<T>& s = thread_scratch<T>();
      if (fixed) {
        const auto [begin, end] = split(units, size, slot);
        for (std::int64_t u = begin; u < end; ++u) fn(s, slot, u, u + 1 < end ? u + 1 : -1);
      } else {
        // Each thread claims its next unit before running the current one, to prefetch it.
        std::int64_t u = next++;
        while (u < units) {
          const std::int64_t following = next++;
          fn(s, slot, u, following < units ? following : -1);
          u = following;
        }
      }
      trim_scratch(s);
    } catch (...) {
#pragma omp critical(convgraph_direct_conv_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return team;
}

template <typename T>
void run_conv(Problem<T>& p, int threads) {
  plan_padding(p);
  p.ring = ring_applies(p);
  p.stream = p.ring &&
             p.geo->batch * p.out_channels * p.out_plane * std::int64_t{sizeof(T)} >= stream_bytes;
  const Units<T> units = units_for<T>(direct_conv_isa());
  run_units<T>(
      threads, p.geo->batch * p.geo->groups, false,
      [&](Scratch<T>& s, int, std::int64_t u, std::int64_t next) { units.conv(p, s, u, next); });
}

}  // namespace

bool direct_conv_applies(const CorrGeometry& geo) {
  if (geo.unshared) return false;
  const CorrGemmTuning tuning = corr_gemm_tuning();
  if (geo.filters_per_group > tuning.direct_max_filters) return false;
  if (geo.channels_per_group == 1) return true;
  return geo.groups > 1 && geo.channels_per_group <= tuning.direct_max_channels;
}

bool direct_grad_weights_applies(const CorrGeometry& geo) {
  return !geo.unshared && geo.channels_per_group == 1 &&
         geo.filters_per_group <= corr_gemm_tuning().direct_max_filters;
}

DirectIsa direct_conv_isa() {
  return isa_in_use().load();
}

DirectIsa set_direct_conv_isa(DirectIsa isa) {
  const DirectIsa best = supported_isa();
  const DirectIsa used =
      static_cast<unsigned char>(isa) <= static_cast<unsigned char>(best) ? isa : best;
  isa_in_use().store(used);
  return used;
}

template <typename T>
void direct_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out, int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = forward_axis(geo, a);
  p.outs = geo.filters_per_group;
  p.srcs = geo.channels_per_group;
  p.out_channels = geo.filters;
  p.src_channels = geo.channels;
  p.out_plane = geo.positions();
  p.src_plane = geo.image_size();
  p.src = image;
  p.kernel = kernel;
  p.dst = out;
  run_conv(p, threads);
}

template <typename T>
void direct_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out,
                        int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = backward_axis(geo, a);
  p.backward = true;
  p.outs = geo.channels_per_group;
  p.srcs = geo.filters_per_group;
  p.out_channels = geo.channels;
  p.src_channels = geo.filters;
  p.out_plane = geo.image_size();
  p.src_plane = geo.positions();
  p.src = topgrad;
  p.kernel = kernel;
  p.dst = out;
  run_conv(p, threads);
}

template <typename T>
void direct_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out,
                         int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = forward_axis(geo, a);
  p.outs = 1;
  p.srcs = 1;
  p.out_channels = geo.filters;
  p.src_channels = geo.channels;
  p.out_plane = geo.positions();
  p.src_plane = geo.image_size();
  p.src = image;
  plan_padding(p);
  const std::int64_t weights = geo.filters * geo.taps();
  const std::int64_t units = geo.batch * geo.filters;
  const int slots = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), units));
  // Each thread sums its units into its own copy; the copies are added in slot order.
  std::vector<T> partial(slots > 1 ? static_cast<std::size_t>(slots * weights) : 0, T(0));
  if (slots <= 1) std::fill(out, out + weights, T(0));
  const Units<T> fns = units_for<T>(direct_conv_isa());
  const int used =
      run_units<T>(slots, units, true, [&](Scratch<T>& s, int slot, std::int64_t u, std::int64_t) {
        fns.weights(p, s, u, topgrad, slots > 1 ? partial.data() + slot * weights : out);
      });
  if (slots > 1) {
    std::fill(out, out + weights, T(0));
    for (int slot = 0; slot < used; ++slot) {
      const T* src = partial.data() + slot * weights;
      for (std::int64_t i = 0; i < weights; ++i) out[i] += src[i];
    }
  }
}

template void direct_forward<float>(const CorrGeometry&, const float*, const float*, float*, int);
template void direct_forward<double>(const CorrGeometry&, const double*, const double*, double*,
                                     int);
template void direct_grad_inputs<float>(const CorrGeometry&, const float*, const float*, float*,
                                        int);
template void direct_grad_inputs<double>(const CorrGeometry&, const double*, const double*, double*,
                                         int);
template void direct_grad_weights<float>(const CorrGeometry&, const float*, const float*, float*,
                                         int);
template void direct_grad_weights<double>(const CorrGeometry&, const double*, const double*,
                                          double*, int);

}  // namespace convgraph
