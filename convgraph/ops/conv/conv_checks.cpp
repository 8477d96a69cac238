#include "convgraph/ops/conv/conv_checks.hpp"

#include <fmt/format.h>

#include "convgraph/base/error.hpp"

namespace convgraph {

std::int64_t floor_div_int(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

void check_conv_params(const std::string& fn, const ConvParams& p) {
  const auto n = static_cast<std::size_t>(p.convdim);
  if (p.convdim != 2 && p.convdim != 3) {
    throw ValueError(fmt::format("{}: convdim is {}; expected 2 or 3", fn, p.convdim));
  }
  if (p.border.size() != n || p.subsample.size() != n || p.dilation.size() != n) {
    throw ValueError(
        fmt::format("{}: ConvParams has {} border, {} subsample and {} dilation entries; expected "
                    "{} of each (build it with make_conv_params)",
                    fn, p.border.size(), p.subsample.size(), p.dilation.size(), n));
  }
  for (std::size_t a = 0; a < n; ++a) {
    if (p.subsample[a] < 1 || p.dilation[a] < 1) {
      throw ValueError(fmt::format("{}: subsample ({}) and dilation ({}) must be positive", fn,
                                   fmt::join(p.subsample, ", "), fmt::join(p.dilation, ", ")));
    }
  }
  if (p.num_groups < 1) {
    throw ValueError(fmt::format("{}: num_groups is {}; expected at least 1", fn, p.num_groups));
  }
  if (p.unshared && p.convdim != 2) {
    throw UnsupportedError(fmt::format(
        "{}: unshared convolution is only implemented for 2-D, not {}-D", fn, p.convdim));
  }
  check_conv_geometry_limits(fn, p);
}

void check_conv_spatial_argument(const std::string& fn, const char* what, const Shape& spatial,
                                 int convdim, std::int64_t minimum) {
  bool ok = static_cast<int>(spatial.size()) == convdim;
  for (std::int64_t v : spatial) ok = ok && v >= minimum;
  if (!ok) {
    throw ShapeError(fmt::format("{}: {} is {}; expected {} sizes, each at least {}", fn, what,
                                 shape_str(spatial), convdim, minimum));
  }
}

std::string describe_conv(const ConvParams& p, const Shape& image, const Shape& kernel) {
  return fmt::format("image shape {}, kernel shape {}, {}", shape_str(image), shape_str(kernel),
                     p.str());
}

}  // namespace convgraph
