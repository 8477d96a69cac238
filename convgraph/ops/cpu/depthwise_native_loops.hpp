// Private to the depthwise loops (depthwise_kernels.hpp): depthwise planes of multiplier 1 in 2-D
// with 3 x 3 or 5 x 5 taps and an x stride of 1, written in the CPU's own vector width (BYTES: 16
// for the baseline x86-64 ISA, 32 for AVX2) instead of the 64-byte vectors of the other loops.
//
// Why a second set: the 64-byte vectors are two registers each on AVX2 and four on the baseline,
// which has 16 of them. The ring loops (ring_plane) keep 9 broadcast weights and 15 tap sums in
// vectors: 48 registers on AVX2, so most of every multiply-add went through the stack, and the
// depthwise layer of the suite ran 4 to 6 times slower than its memory traffic allows. Here a
// 3 x 3 plane keeps its 9 weights and 2 chunks of sums in registers (11 of 16), and reads each
// tap's vector with an unaligned load, which costs no more than an aligned one on these CPUs
// unlike the cross-lane permutes that cut it out of aligned neighbours.
//
// Rows are copied one at a time into a small ring of zero-padded rows, one output row ahead of
// their first use (as ring_plane does), so that every read of an output row falls inside a row.
// Output rows of whole, aligned vectors go out with non-temporal stores when the output is large
// (Problem::stream).
#pragma once

#include <algorithm>
#include <cstdint>

#include "convgraph/ops/cpu/depthwise_problem.hpp"
#include "convgraph/ops/cpu/depthwise_simd.hpp"

namespace convgraph::depthwise_detail {

template <typename T, int BYTES>
struct Native {
  typedef T V __attribute__((vector_size(BYTES)));
  typedef typename Vec<T>::Lane Lane;
  typedef Lane I __attribute__((vector_size(BYTES)));
  static constexpr std::int64_t lanes = BYTES / static_cast<int>(sizeof(T));
};

// Non-temporal store of V at P (aligned on 16 bytes), in 16-byte parts: the baseline has no
// wider ones, and the parts of one line are combined before they reach memory all the same.
template <typename T, typename V>
[[gnu::always_inline]] inline void stream_store(T* p, const V& v) {
  for (std::size_t j = 0; j < sizeof(V) / 16; ++j) {
    if constexpr (sizeof(T) == 4) {
      typedef float V4 __attribute__((vector_size(16)));
      V4 part;
      __builtin_memcpy(&part, reinterpret_cast<const char*>(&v) + 16 * j, 16);
      __builtin_ia32_movntps(reinterpret_cast<float*>(p) + 4 * j, part);
    } else {
      typedef double V2 __attribute__((vector_size(16)));
      V2 part;
      __builtin_memcpy(&part, reinterpret_cast<const char*>(&v) + 16 * j, 16);
      __builtin_ia32_movntpd(reinterpret_cast<double*>(p) + 2 * j, part);
    }
  }
}

// The ring of padded source rows of one plane: source row IY sits in slot IY mod SLOTS (a power of
// two), its data at LEFT within a row of WP elements; one more row after the ring stays zero. While
// the layout stays the same, the pads still hold the zeros written when it was set.
//
// While it copies a row, the ring prefetches the row AHEAD rows further on, or the matching row of
// NEXT (the plane of the thread's next unit; null at its last) past the end of the plane: a row
// is a few hundred bytes, and waiting on memory for each row as its copy reaches it was where
// these loops spent their time.
template <typename T>
struct RowRing {
  T* base = nullptr;
  const T* zero = nullptr;
  const T* plane = nullptr;
  const T* next = nullptr;
  std::int64_t slots = 1, wp = 0, left = 0, width = 0, height = 0, copied = 0, ahead = 0;

  const T* row(std::int64_t iy) const {
    return iy >= 0 && iy < height ? base + (iy & (slots - 1)) * wp : zero;
  }
};

// Bytes prefetched ahead of the row being copied.
inline constexpr std::int64_t prefetch_ahead_bytes = 2048;

// Prefetches the elements [P, P + COUNT).
template <typename T>
[[gnu::always_inline]] inline void prefetch_span(const T* p, std::int64_t count) {
  const char* from = reinterpret_cast<const char*>(p);
  const char* end = from + count * std::int64_t{sizeof(T)};
  for (; from < end; from += 64) __builtin_prefetch(from, 0, 3);
  __builtin_prefetch(end - 1, 0, 3);
}

// A ring for PLANE (P's source layout) whose rows stay in use over SPAN consecutive rows; NEXT is
// the plane to prefetch after it.
template <typename T>
[[gnu::always_inline]] inline RowRing<T> native_ring(const Problem<T>& p, Scratch<T>& s,
                                                     const T* plane, const T* next,
                                                     std::int64_t span) {
  RowRing<T> ring;
  while (ring.slots < span) ring.slots *= 2;
  ring.wp = p.padded_width;
  ring.left = p.pad_left;
  ring.width = p.axes[2].src_size;
  ring.height = p.axes[1].src_size;
  ring.plane = plane;
  ring.next = next;
  ring.ahead = std::max<std::int64_t>(
      1, prefetch_ahead_bytes / std::max<std::int64_t>(1, ring.width * std::int64_t{sizeof(T)}));
  const std::int64_t layout[4] = {ring.wp, ring.left, ring.width, ring.slots};
  if (!std::equal(layout, layout + 4, s.native_layout)) {
    s.native_ring.assign(static_cast<std::size_t>((ring.slots + 1) * ring.wp + Vec<T>::lanes),
                         T(0));
    std::copy(layout, layout + 4, s.native_layout);
    const auto address = reinterpret_cast<std::uintptr_t>(s.native_ring.data());
    s.native_base = s.native_ring.data() + (64 - address % 64) % 64 / sizeof(T);
  }
  ring.base = s.native_base;
  ring.zero = ring.base + ring.slots * ring.wp;
  return ring;
}

// Copies source rows [max(FROM, next uncopied), min(TO, height - 1)] into the ring.
template <typename T, int BYTES>
[[gnu::always_inline]] inline void ring_fill(RowRing<T>& ring, std::int64_t from, std::int64_t to) {
  using V = typename Native<T, BYTES>::V;
  constexpr std::int64_t lanes = Native<T, BYTES>::lanes;
  ring.copied = std::max(ring.copied, from);
  const std::int64_t width = ring.width;
  for (const std::int64_t last = std::min(to, ring.height - 1); ring.copied <= last;
       ++ring.copied) {
    const std::int64_t later = ring.copied + ring.ahead;
    if (later < ring.height) {
      prefetch_span(ring.plane + later * width, width);
    } else if (ring.next != nullptr && later - ring.height < ring.height) {
      prefetch_span(ring.next + (later - ring.height) * width, width);
    }
    const T* src = ring.plane + ring.copied * width;
    T* dst = ring.base + (ring.copied & (ring.slots - 1)) * ring.wp + ring.left;
    if (width >= lanes) {
      V v;
      std::int64_t x = 0;
      for (; x + lanes <= width; x += lanes) {
        load(v, src + x);
        store(dst + x, v);
      }
      if (x < width) {
        load(v, src + width - lanes);
        store(dst + width - lanes, v);
      }
    } else {
      for (std::int64_t x = 0; x < width; ++x) dst[x] = src[x];
    }
  }
}

// U chunks of output positions from Q on: OUT[q + x] = sum over rows r and taps k of
// W[r][k] * ROWS[r][XOFF[k] + q + x].
template <typename T, int BYTES, int R, int K, int U, bool NT>
[[gnu::always_inline]] inline void native_chunks(std::int64_t q, const T* const (&rows)[R],
                                                 const std::int64_t (&xoff)[K],
                                                 const typename Native<T, BYTES>::V (&w)[R][K],
                                                 T* out) {
  using V = typename Native<T, BYTES>::V;
  constexpr std::int64_t lanes = Native<T, BYTES>::lanes;
  V acc[U];
  for (int u = 0; u < U; ++u) acc[u] = V{};
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      for (int u = 0; u < U; ++u) {
        V v;
        load(v, rows[r] + xoff[k] + q + u * lanes);
        acc[u] += w[r][k] * v;
      }
    }
  }
  for (int u = 0; u < U; ++u) {
    if constexpr (NT) {
      stream_store(out + q + u * lanes, acc[u]);
    } else {
      store(out + q + u * lanes, acc[u]);
    }
  }
}

// A whole output row of N >= lanes positions; the last chunk overlaps the one before it.
template <typename T, int BYTES, int R, int K, bool NT>
[[gnu::always_inline]] inline void native_row(std::int64_t n, const T* const (&rows)[R],
                                              const std::int64_t (&xoff)[K],
                                              const typename Native<T, BYTES>::V (&w)[R][K],
                                              T* out) {
  constexpr std::int64_t lanes = Native<T, BYTES>::lanes;
  // 3 x 3: 9 weights and 2 chunks of sums in registers. 5 x 5: the weights do not fit, and are
  // read from the stack by the multiply-adds, each read shared by 4 chunks.
  constexpr int U = R * K <= 9 ? 2 : 4;
  std::int64_t q = 0;
  for (; q + U * lanes <= n; q += U * lanes) {
    native_chunks<T, BYTES, R, K, U, NT>(q, rows, xoff, w, out);
  }
  for (; q + lanes <= n; q += lanes) native_chunks<T, BYTES, R, K, 1, NT>(q, rows, xoff, w, out);
  if (q < n) native_chunks<T, BYTES, R, K, 1, false>(n - lanes, rows, xoff, w, out);
}

// The output plane of unit (B, G) of the forward or the input gradient (see native_applies).
// Source rows above and below the plane read the ring's zero row with zero weights (as if
// skipped: an infinite weight does not turn them into NaN).
template <typename T, int BYTES, int R, int K>
[[gnu::always_inline]] inline void native_plane(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                                std::int64_t g, const T* next) {
  using V = typename Native<T, BYTES>::V;
  constexpr std::int64_t lanes = Native<T, BYTES>::lanes;
  const AxisPlan &ay = p.axes[1], &ax = p.axes[2];
  const Phase &py = ay.phases[0], &px = ax.phases[0];
  const std::int64_t sy = ay.src_step, n = px.count;
  const auto [ylo_at, yhi_at] = std::minmax_element(py.offsets.begin(), py.offsets.end());
  const std::int64_t ylo = *ylo_at, yhi = *yhi_at;
  const T* plane = p.src + (b * p.src_channels + g) * p.src_plane;
  RowRing<T> ring = native_ring(p, s, plane, next, yhi - ylo + 1 + sy);
  T* out = p.dst + (b * p.out_channels + g) * p.out_plane;
  const std::int64_t kw = p.geo->kernel[2];
  V w[R][K];
  std::int64_t xoff[K];
  for (int k = 0; k < K; ++k) xoff[k] = p.pad_left + px.offsets[static_cast<std::size_t>(k)];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      w[r][k] = V{} + p.weight(g, 0, 0,
                               py.taps[static_cast<std::size_t>(r)] * kw +
                                   px.taps[static_cast<std::size_t>(k)]);
    }
  }
  for (std::int64_t y = 0; y < py.count; ++y) {
    // The rows of this output row and the next one that are not in the ring yet.
    ring_fill<T, BYTES>(ring, y * sy + ylo, (y + 1) * sy + yhi);
    const T* rows[R];
    V wy[R][K];
    for (int r = 0; r < R; ++r) {
      const std::int64_t iy = y * sy + py.offsets[static_cast<std::size_t>(r)];
      const bool inside = iy >= 0 && iy < ring.height;
      rows[r] = ring.row(iy);
      for (int k = 0; k < K; ++k) wy[r][k] = inside ? w[r][k] : V{};
    }
    T* o = out + y * n;
    if (n >= lanes) {
      if (p.stream && n % lanes == 0 && reinterpret_cast<std::uintptr_t>(o) % 16 == 0) {
        native_row<T, BYTES, R, K, true>(n, rows, xoff, wy, o);
      } else {
        native_row<T, BYTES, R, K, false>(n, rows, xoff, wy, o);
      }
    } else {
      for (std::int64_t x = 0; x < n; ++x) {
        T sum = 0;
        for (int r = 0; r < R; ++r) {
          for (int k = 0; k < K; ++k) sum += wy[r][k][0] * rows[r][xoff[k] + x];
        }
        o[x] = sum;
      }
    }
  }
  if (p.stream) __builtin_ia32_sfence();
}

// One unit (batch item * filters + filter) of the weight gradient of a 3 x 3 plane: the 9 tap
// sums in vector registers over the whole plane (each topgrad vector read once for all of them),
// added to SUMS (filters x taps) at the end. Rows above and below the source read the zero row.
// The last chunk of a row overlaps the one before it and counts only its new lanes; rows shorter
// than a vector go through a zero-padded copy of the topgrad row. The lanes a chunk must not count
// are dropped from the products, so that they cannot turn a sum into NaN.
template <typename T, int BYTES>
[[gnu::always_inline]] inline void native_weight_unit(const Problem<T>& p, Scratch<T>& s,
                                                      std::int64_t unit, const T* topgrad,
                                                      T* sums) {
  using V = typename Native<T, BYTES>::V;
  using I = typename Native<T, BYTES>::I;
  constexpr std::int64_t lanes = Native<T, BYTES>::lanes;
  constexpr int R = 3, K = 3;
  const CorrGeometry& geo = *p.geo;
  const std::int64_t filters = geo.filters, taps = geo.taps(), kw = geo.kernel[2];
  const std::int64_t b = unit / filters, m = unit % filters;
  const AxisPlan &ay = p.axes[1], &ax = p.axes[2];
  const Phase &py = ay.phases[0], &px = ax.phases[0];
  const std::int64_t sy = ay.src_step, n = ax.out_size;
  const auto [ylo_at, yhi_at] = std::minmax_element(py.offsets.begin(), py.offsets.end());
  const std::int64_t ylo = *ylo_at, yhi = *yhi_at;
  const T* plane = p.src + (b * p.src_channels + m / geo.filters_per_group) * p.src_plane;
  const std::int64_t positions = geo.positions();
  // The thread's next unit is the following one (the weight gradient's units run in contiguous
  // runs per thread).
  const bool last = unit + 1 >= geo.batch * filters;
  const std::int64_t nb = (unit + 1) / filters, nm = (unit + 1) % filters;
  const T* next =
      last ? nullptr : p.src + (nb * p.src_channels + nm / geo.filters_per_group) * p.src_plane;
  const T* next_top = last ? nullptr : topgrad + (nb * filters + nm) * positions;
  RowRing<T> ring = native_ring(p, s, plane, next, yhi - ylo + 1 + sy);
  const T* top_plane = topgrad + (b * filters + m) * positions;
  std::int64_t xoff[K];
  for (int k = 0; k < K; ++k) xoff[k] = p.pad_left + px.offsets[static_cast<std::size_t>(k)];
  const std::int64_t full = n / lanes * lanes;
  const bool tail = full < n;
  const std::int64_t tail_q = n >= lanes ? n - lanes : 0;
  const std::int64_t keep_from = n >= lanes ? lanes - (n - full) : 0;
  I mask;
  for (std::int64_t l = 0; l < lanes; ++l) mask[l] = (l >= keep_from && l < keep_from + n) ? -1 : 0;
  s.tmp.assign(static_cast<std::size_t>(lanes), T(0));
  V a[R][K];
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) a[r][k] = V{};
  }
  for (std::int64_t y = 0; y < ay.out_size; ++y) {
    ring_fill<T, BYTES>(ring, y * sy + ylo, (y + 1) * sy + yhi);
    const T* rows[R];
    for (int r = 0; r < R; ++r) {
      rows[r] = ring.row(y * sy + py.offsets[static_cast<std::size_t>(r)]) + xoff[0];
    }
    const std::int64_t d1 = xoff[1] - xoff[0], d2 = xoff[2] - xoff[0];
    const T* top = top_plane + y * n;
    const std::int64_t later = y + ring.ahead;
    if (later < ay.out_size) {
      prefetch_span(top_plane + later * n, n);
    } else if (next_top != nullptr && later - ay.out_size < ay.out_size) {
      prefetch_span(next_top + (later - ay.out_size) * n, n);
    }
    for (std::int64_t q = 0; q < full; q += lanes) {
      V t;
      load(t, top + q);
      for (int r = 0; r < R; ++r) {
        V v0, v1, v2;
        load(v0, rows[r] + q);
        load(v1, rows[r] + q + d1);
        load(v2, rows[r] + q + d2);
        a[r][0] += t * v0;
        a[r][1] += t * v1;
        a[r][2] += t * v2;
      }
    }
    if (tail) {
      const T* tail_top = top + tail_q;
      if (n < lanes) {
        std::copy(top, top + n, s.tmp.data());
        tail_top = s.tmp.data();
      }
      V t;
      load(t, tail_top);
      for (int r = 0; r < R; ++r) {
        for (int k = 0; k < K; ++k) {
          V v;
          load(v, rows[r] + (xoff[k] - xoff[0]) + tail_q);
          a[r][k] += (V)((I)(t * v) & mask);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      T sum = 0;
      for (std::int64_t l = 0; l < lanes; ++l) sum += a[r][k][l];
      sums[m * taps + py.taps[static_cast<std::size_t>(r)] * kw +
           px.taps[static_cast<std::size_t>(k)]] += sum;
    }
  }
}

}  // namespace convgraph::depthwise_detail
