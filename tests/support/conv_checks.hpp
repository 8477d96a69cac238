// Helpers shared by the tests of the concrete convolutions against the reference.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "support/catch.hpp"
#include "support/test_util.hpp"

namespace convgraph::testing {

// The last N axes of SHAPE (the spatial sizes of an image or kernel shape).
inline Shape spatial_of(const Shape& shape, int n) {
  return Shape(shape.end() - n, shape.end());
}

// The base tolerance of a convolution result of DTYPE. float64 and float32: before scaling by the
// length of the sums (require_close_scaled, conv_mismatch). float16: relative to the result's
// magnitude (conv_mismatch), since its output is rounded to 11 bits and a device may form the
// sums in float16.
inline double conv_tolerance(DType dtype) {
  switch (dtype) {
    case DType::float64:
      return 1e-10;
    case DType::float16:
      return 2e-2;
    default:
      return 2e-5;
  }
}

// Requires RESULT close to EXPECTED, relatively and absolutely, within BASE_TOL scaled by the
// square root of the number of TERMS summed into each element.
inline void require_close_scaled(const Tensor& result, const Tensor& expected, double base_tol,
                                 double terms) {
  const double tol = base_tol * std::max(1.0, std::sqrt(terms));
  const std::string report = allclose_report(result, expected, tol, tol);
  INFO(report);
  REQUIRE(report.empty());
}

// require_close_scaled at float32's convolution tolerance: for float32 kernels against the
// reference.
inline void require_close_f32(const Tensor& result, const Tensor& expected, double terms) {
  require_close_scaled(result, expected, conv_tolerance(DType::float32), terms);
}

// Why RESULT, a convolution of DTYPE on any device, is not close enough to EXPECTED, the float64
// reference computed from the same (DTYPE-representable) values; empty when it is. float64 and
// float32: within conv_tolerance scaled by the square root of the number of TERMS summed into each
// element, relatively and absolutely. float16: within conv_tolerance relatively and that much of
// the larger of 1 and the reference's largest magnitude absolutely.
inline std::string conv_mismatch(const Tensor& result, const Tensor& expected, DType dtype,
                                 double terms) {
  if (!result.defined()) return "no result";
  if (result.dtype() != dtype) {
    return fmt::format("dtype {} but expected {}", dtype_name(result.dtype()), dtype_name(dtype));
  }
  const Tensor actual = result.to(Device::cpu()).cast(DType::float64);
  if (dtype == DType::float16) {
    double magnitude = 1;
    for (double v : expected.to_vector<double>()) magnitude = std::max(magnitude, std::abs(v));
    return allclose_report(actual, expected, conv_tolerance(dtype),
                           conv_tolerance(dtype) * magnitude);
  }
  const double tol = conv_tolerance(dtype) * std::max(1.0, std::sqrt(terms));
  return allclose_report(actual, expected, tol, tol);
}

}  // namespace convgraph::testing
