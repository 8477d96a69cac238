#include "convgraph/optimizer/conv_meta_check.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace convgraph {

namespace {

template <typename A, typename E>
double relative_max_error_of(const A* a, const E* e, std::size_t n) {
  double scale = 0, error = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto ai = static_cast<double>(a[i]);
    const auto ei = static_cast<double>(e[i]);
    if (!std::isfinite(ei)) {
      // The reference itself overflowed: only the same value agrees.
      const bool same = (std::isnan(ei) && std::isnan(ai)) || ai == ei;
      if (!same) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isfinite(ai)) return std::numeric_limits<double>::infinity();
    scale = std::max(scale, std::abs(ei));
    error = std::max(error, std::abs(ai - ei));
  }
  if (scale == 0) return error == 0 ? 0 : std::numeric_limits<double>::infinity();
  return error / scale;
}

// T's values as a contiguous host tensor of float32 or float64 (others are converted to float64).
Tensor host_floats(const Tensor& t) {
  Tensor host = t.to(Device::cpu()).contiguous();
  if (host.dtype() != DType::float32 && host.dtype() != DType::float64) {
    host = host.cast(DType::float64);
  }
  return host;
}

}  // namespace

double relative_max_error(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) return std::numeric_limits<double>::infinity();
  // Read in place: the check runs on every timed convolution, and a network's outputs are large.
  const Tensor a = host_floats(actual);
  const Tensor e = host_floats(expected);
  const auto n = static_cast<std::size_t>(e.numel());
  const bool a32 = a.dtype() == DType::float32;
  const bool e32 = e.dtype() == DType::float32;
  if (a32 && e32) return relative_max_error_of(a.data<float>(), e.data<float>(), n);
  if (a32) return relative_max_error_of(a.data<float>(), e.data<double>(), n);
  if (e32) return relative_max_error_of(a.data<double>(), e.data<float>(), n);
  return relative_max_error_of(a.data<double>(), e.data<double>(), n);
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
