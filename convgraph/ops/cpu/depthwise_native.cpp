// The native-width depthwise loops (depthwise_native_loops.hpp) compiled for AVX2 + FMA (32-byte
// vectors) and the baseline x86-64 instruction set (16-byte vectors), in float and double.
#include "convgraph/ops/cpu/depthwise_native_loops.hpp"

namespace convgraph::depthwise_detail {

namespace {

template <typename T, int R, int K>
[[gnu::noinline, gnu::target("avx2,fma")]] void plane_avx2(const Problem<T>& p, Scratch<T>& s,
                                                           std::int64_t b, std::int64_t g,
                                                           const T* next) {
  native_plane<T, 32, R, K>(p, s, b, g, next);
}

template <typename T, int R, int K>
[[gnu::noinline]] void plane_baseline(const Problem<T>& p, Scratch<T>& s, std::int64_t b,
                                      std::int64_t g, const T* next) {
  native_plane<T, 16, R, K>(p, s, b, g, next);
}

template <typename T>
[[gnu::target("avx2,fma")]] void weights_avx2(const Problem<T>& p, Scratch<T>& s, std::int64_t unit,
                                              const T* topgrad, T* sums) {
  native_weight_unit<T, 32>(p, s, unit, topgrad, sums);
}

template <typename T>
void weights_baseline(const Problem<T>& p, Scratch<T>& s, std::int64_t unit, const T* topgrad,
                      T* sums) {
  native_weight_unit<T, 16>(p, s, unit, topgrad, sums);
}

}  // namespace

template <typename T>
NativePlaneFn<T> native_plane_fn(DirectIsa isa, int taps) {
  switch (isa) {
    case DirectIsa::avx2:
      return taps == 3 ? &plane_avx2<T, 3, 3> : &plane_avx2<T, 5, 5>;
    case DirectIsa::baseline:
      return taps == 3 ? &plane_baseline<T, 3, 3> : &plane_baseline<T, 5, 5>;
    case DirectIsa::avx512:
      break;
  }
  return nullptr;
}

template <typename T>
WeightUnitFn<T> native_weight_fn(DirectIsa isa) {
  switch (isa) {
    case DirectIsa::avx2:
      return &weights_avx2<T>;
    case DirectIsa::baseline:
      return &weights_baseline<T>;
    case DirectIsa::avx512:
      break;
  }
  return nullptr;
}

template NativePlaneFn<float> native_plane_fn<float>(DirectIsa, int);
template NativePlaneFn<double> native_plane_fn<double>(DirectIsa, int);
template WeightUnitFn<float> native_weight_fn<float>(DirectIsa);
template WeightUnitFn<double> native_weight_fn<double>(DirectIsa);

}  // namespace convgraph::depthwise_detail
