#include "convgraph/optimizer/conv_meta_check.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace convgraph {

double relative_max_error(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) return std::numeric_limits<double>::infinity();
  const std::vector<double> a = actual.to(Device::cpu()).to_vector<double>();
  const std::vector<double> e = expected.to(Device::cpu()).to_vector<double>();
  double scale = 0, error = 0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (!std::isfinite(e[i])) {
      // The reference itself overflowed: only the same value agrees.
      const bool same = (std::isnan(e[i]) && std::isnan(a[i])) || a[i] == e[i];
      if (!same) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    scale = std::max(scale, std::abs(e[i]));
    error = std::max(error, std::abs(a[i] - e[i]));
  }
  if (scale == 0) return error == 0 ? 0 : std::numeric_limits<double>::infinity();
  return error / scale;
}

double meta_tolerance(DType dtype, bool allow_tf32) {
  switch (dtype) {
    case DType::float64:
      return 1e-9;
    case DType::float32:
      return allow_tf32 ? 2e-2 : 1e-3;
    default:  // float16: float16 rounding of inputs and results, maybe float16 accumulation
      return 1e-1;
  }
}

Tensor meta_reference_result(const AbstractConv& op, const Tensor& a, const Tensor& b,
                             const Shape& spatial) {
  const Tensor host_a = a.to(Device::cpu());
  const Tensor host_b = b.to(Device::cpu());
  switch (op.direction()) {
    case ConvDirection::forward:
      return reference_conv_forward(op.params(), host_a, host_b);
    case ConvDirection::grad_inputs:
      return reference_conv_grad_inputs(op.params(), host_a, host_b, spatial);
    case ConvDirection::grad_weights:
      return reference_conv_grad_weights(op.params(), host_a, host_b, spatial);
  }
  return {};
}

}  // namespace convgraph
