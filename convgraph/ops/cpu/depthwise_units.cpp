// One instruction-set version of the forward and input-gradient loops (depthwise_conv_loops.hpp)
// for one element type. This file is compiled several times (the convgraph_depthwise_units object
// libraries of CMakeLists.txt), each time with
//   CONVGRAPH_DEPTHWISE_ISA   0 (baseline x86-64), 1 (AVX2 + FMA) or 2 (AVX-512),
//   CONVGRAPH_DEPTHWISE_TYPE  float or double,
//   CONVGRAPH_DEPTHWISE_PART  1: conv_unit, ring_plane 3 x 3 and 5 x 5, conv_block of 4 and 2
//                                planes; 2: conv_block of 1 plane (the most specialised loops),
// so that no compilation holds more than a few of the large loop functions (see the parts in
// depthwise_problem.hpp). Each function has the version's target attribute; noinline keeps the
// parts apart, as one function each.
#include "convgraph/ops/cpu/depthwise_conv_loops.hpp"

#if !defined(CONVGRAPH_DEPTHWISE_ISA) || !defined(CONVGRAPH_DEPTHWISE_TYPE) || \
    !defined(CONVGRAPH_DEPTHWISE_PART)
#error "depthwise_units.cpp is compiled with CONVGRAPH_DEPTHWISE_ISA, _TYPE and _PART defined"
#endif

#if CONVGRAPH_DEPTHWISE_ISA == 2
#define CONVGRAPH_DEPTHWISE_TARGET [[gnu::noinline, gnu::target("avx512f,fma")]]
#define CONVGRAPH_DEPTHWISE_VERSION avx512
#elif CONVGRAPH_DEPTHWISE_ISA == 1
#define CONVGRAPH_DEPTHWISE_TARGET [[gnu::noinline, gnu::target("avx2,fma")]]
#define CONVGRAPH_DEPTHWISE_VERSION avx2
#else
#define CONVGRAPH_DEPTHWISE_TARGET [[gnu::noinline]]
#define CONVGRAPH_DEPTHWISE_VERSION baseline
#endif

namespace convgraph::depthwise_detail {

namespace {

using T = CONVGRAPH_DEPTHWISE_TYPE;
constexpr DirectIsa kIsa = DirectIsa::CONVGRAPH_DEPTHWISE_VERSION;

#if CONVGRAPH_DEPTHWISE_PART == 1

CONVGRAPH_DEPTHWISE_TARGET void conv_unit_entry(const Problem<T>& p, Scratch<T>& s,
                                                std::int64_t unit, std::int64_t next) {
  conv_unit(p, s, unit, next);
}

template <int R, int K>
CONVGRAPH_DEPTHWISE_TARGET void ring_entry(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                           std::int64_t g) {
  ring_plane<T, R, K>(p, s, b, g);
}

#endif

template <int NO>
CONVGRAPH_DEPTHWISE_TARGET void block_entry(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                            std::int64_t g, std::int64_t o0) {
  conv_block<T, NO>(p, s, b, g, o0);
}

}  // namespace

#if CONVGRAPH_DEPTHWISE_PART == 1

template <>
ConvUnitFn<T> conv_unit_fn<kIsa, T>() {
  return &conv_unit_entry;
}

template <>
RingFn<T> ring_fn<kIsa, T>(int taps) {
  return taps == 3 ? &ring_entry<3, 3> : &ring_entry<5, 5>;
}

template <>
BlockFn<T> block_fn<kIsa, T, 4>() {
  return &block_entry<4>;
}

template <>
BlockFn<T> block_fn<kIsa, T, 2>() {
  return &block_entry<2>;
}

#else

template <>
BlockFn<T> block_fn<kIsa, T, 1>() {
  return &block_entry<1>;
}

#endif

}  // namespace convgraph::depthwise_detail
