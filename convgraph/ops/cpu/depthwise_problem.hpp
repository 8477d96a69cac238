// Private to the depthwise loops (depthwise_kernels.hpp): a direction's problem as the loops see
// it (per-axis plans of phases and taps, the padded source layout), the per-thread buffers, the
// copy of a unit's source planes into padded rows, and the unit functions each instruction-set
// version provides.
#pragma once

#include <cstdint>
#include <vector>

#include "convgraph/ops/cpu/depthwise_kernels.hpp"
#include "convgraph/ops/cpu/depthwise_simd.hpp"
#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph::depthwise_detail {

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

// A direction's problem: output planes from source planes, group by group.
template <typename T>
struct ConvParts;

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
  // The parts a unit runs, of the instruction-set version in use.
  const ConvParts<T>* parts = nullptr;

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
  // The same for the native-width loops (RowRing, depthwise_native_loops.hpp).
  std::vector<T> native_ring;
  std::int64_t native_layout[4] = {-1, -1, -1, -1};
  T* native_base = nullptr;
};

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

// ---- the instruction-set versions ----

// The loops are compiled for AVX-512, AVX2 + FMA and the baseline x86-64 instruction set, each a
// separate function (of the target attribute), and the best version the CPU runs is picked at
// load time. A unit of the forward or the input gradient (conv_unit) runs one of five parts:
// ring_plane with 3 x 3 or 5 x 5 taps, or conv_block of 1, 2 or 4 output planes. The parts are
// functions of their own, compiled in separate files (depthwise_units.cpp, once per instruction
// set, element type and group of parts): inlined into one function per version, they made a
// function so large that GCC's RTL partial redundancy elimination alone took minutes.
template <typename T>
using RingFn = void (*)(const Problem<T>&, Scratch<T>&, std::int64_t b, std::int64_t g);
template <typename T>
using BlockFn = void (*)(const Problem<T>&, Scratch<T>&, std::int64_t b, std::int64_t g,
                         std::int64_t o0);
template <typename T>
struct ConvParts {
  RingFn<T> ring3x3 = nullptr, ring5x5 = nullptr;
  BlockFn<T> block1 = nullptr, block2 = nullptr, block4 = nullptr;
};

// One unit of the forward or the gradient with respect to the inputs (conv_unit,
// depthwise_conv_loops.hpp), and one unit of the gradient with respect to the weights
// (weight_unit, depthwise_weight_loops.hpp).
template <typename T>
using ConvUnitFn = void (*)(const Problem<T>&, Scratch<T>&, std::int64_t unit, std::int64_t next);
template <typename T>
using WeightUnitFn = void (*)(const Problem<T>&, Scratch<T>&, std::int64_t unit, const T* topgrad,
                              T* sums);

// Each version's functions for ISA and T: explicit specializations, declared here and defined in
// depthwise_units.cpp (the forward and input-gradient parts) and depthwise_weights.cpp.
template <DirectIsa ISA, typename T>
ConvUnitFn<T> conv_unit_fn();
template <DirectIsa ISA, typename T>
RingFn<T> ring_fn(int taps);  // 3 or 5
template <DirectIsa ISA, typename T, int NO>
BlockFn<T> block_fn();
template <DirectIsa ISA, typename T>
WeightUnitFn<T> weight_unit_fn();

// The loops in the CPU's own vector width (depthwise_native_loops.hpp, compiled in
// depthwise_native.cpp) of version ISA: the forward / input-gradient plane of 3 x 3 or 5 x 5 taps
// and the 3 x 3 weight-gradient unit, or null for AVX-512, whose 64-byte loops are already its
// own width.
template <typename T>
using NativePlaneFn = void (*)(const Problem<T>&, Scratch<T>&, std::int64_t b, std::int64_t g,
                               const T* next);  // NEXT: the source plane to prefetch after it
template <typename T>
NativePlaneFn<T> native_plane_fn(DirectIsa isa, int taps);
template <typename T>
WeightUnitFn<T> native_weight_fn(DirectIsa isa);

#define CONVGRAPH_DEPTHWISE_VERSION(ISA, T)        \
  template <>                                      \
  ConvUnitFn<T> conv_unit_fn<DirectIsa::ISA, T>(); \
  template <>                                      \
  RingFn<T> ring_fn<DirectIsa::ISA, T>(int taps);  \
  template <>                                      \
  BlockFn<T> block_fn<DirectIsa::ISA, T, 1>();     \
  template <>                                      \
  BlockFn<T> block_fn<DirectIsa::ISA, T, 2>();     \
  template <>                                      \
  BlockFn<T> block_fn<DirectIsa::ISA, T, 4>();     \
  template <>                                      \
  WeightUnitFn<T> weight_unit_fn<DirectIsa::ISA, T>();
CONVGRAPH_DEPTHWISE_VERSION(avx512, float)
CONVGRAPH_DEPTHWISE_VERSION(avx512, double)
CONVGRAPH_DEPTHWISE_VERSION(avx2, float)
CONVGRAPH_DEPTHWISE_VERSION(avx2, double)
CONVGRAPH_DEPTHWISE_VERSION(baseline, float)
CONVGRAPH_DEPTHWISE_VERSION(baseline, double)
#undef CONVGRAPH_DEPTHWISE_VERSION

}  // namespace convgraph::depthwise_detail
