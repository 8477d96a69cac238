// The gradient-with-respect-to-the-weights unit of the depthwise loops (depthwise_weight_loops.hpp)
// compiled for AVX-512, AVX2 + FMA and the baseline x86-64 instruction set, in float and double.
#include "convgraph/ops/cpu/depthwise_weight_loops.hpp"

namespace convgraph::depthwise_detail {

namespace {

template <typename T>
[[gnu::target("avx512f,fma")]] void weight_unit_avx512(const Problem<T>& p, Scratch<T>& s,
                                                       std::int64_t unit, const T* topgrad,
                                                       T* sums) {
  weight_unit(p, s, unit, topgrad, sums);
}

template <typename T>
[[gnu::target("avx2,fma")]] void weight_unit_avx2(const Problem<T>& p, Scratch<T>& s,
                                                  std::int64_t unit, const T* topgrad, T* sums) {
  weight_unit(p, s, unit, topgrad, sums);
}

template <typename T>
void weight_unit_baseline(const Problem<T>& p, Scratch<T>& s, std::int64_t unit, const T* topgrad,
                          T* sums) {
  weight_unit(p, s, unit, topgrad, sums);
}

}  // namespace

template <>
WeightUnitFn<float> weight_unit_fn<DirectIsa::avx512, float>() {
  return &weight_unit_avx512<float>;
}
template <>
WeightUnitFn<double> weight_unit_fn<DirectIsa::avx512, double>() {
  return &weight_unit_avx512<double>;
}
template <>
WeightUnitFn<float> weight_unit_fn<DirectIsa::avx2, float>() {
  return &weight_unit_avx2<float>;
}
template <>
WeightUnitFn<double> weight_unit_fn<DirectIsa::avx2, double>() {
  return &weight_unit_avx2<double>;
}
template <>
WeightUnitFn<float> weight_unit_fn<DirectIsa::baseline, float>() {
  return &weight_unit_baseline<float>;
}
template <>
WeightUnitFn<double> weight_unit_fn<DirectIsa::baseline, double>() {
  return &weight_unit_baseline<double>;
}

}  // namespace convgraph::depthwise_detail
