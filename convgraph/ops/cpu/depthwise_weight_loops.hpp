// Private to the depthwise loops (depthwise_kernels.hpp): the gradient with respect to the weights
// of depthwise convolutions, as always-inlined templates that each instruction-set version
// (depthwise_weights.cpp) compiles into one unit function: lane-wise sums of the taps over a
// batch item, kept in vector registers over whole planes.
#pragma once

#include <algorithm>
#include <cstdint>

#include "convgraph/ops/cpu/depthwise_problem.hpp"
#include "convgraph/ops/cpu/depthwise_simd.hpp"

namespace convgraph::depthwise_detail {

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

}  // namespace convgraph::depthwise_detail
