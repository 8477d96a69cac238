// Helpers shared by the tests of the concrete convolutions against the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/test_util.hpp"

namespace convgraph::testing {

// The last N axes of SHAPE (the spatial sizes of an image or kernel shape).
inline Shape spatial_of(const Shape& shape, int n) {
  return Shape(shape.end() - n, shape.end());
}

// The base tolerance of a convolution result of DTYPE (float64 or float32), before scaling.
inline double conv_tolerance(DType dtype) {
  return dtype == DType::float64 ? 1e-10 : 2e-5;
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

}  // namespace convgraph::testing
