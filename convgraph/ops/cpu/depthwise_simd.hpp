// Private to the depthwise loops (depthwise_kernels.hpp): the 64-byte GCC vectors they are
// written with, which each instruction-set version lowers to its own registers, their loads and
// stores, and the prefetching of the next unit's sources.
#pragma once

#include <algorithm>
#include <cstdint>

namespace convgraph::depthwise_detail {

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
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
inline std::int64_t over_read(std::int64_t ss) {
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

}  // namespace convgraph::depthwise_detail
