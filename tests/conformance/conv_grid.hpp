// The parameter grid of the convolution conformance suite: the problems every implementation in
// the registry is run on (conformance/conv_conformance.hpp runs them). One problem is a
// ConvParams, an image and a kernel shape and a dtype; a grid is the cross product of lists of
// border modes, strides, dilations, groups, flips, kernel sizes, unshared or not and dtypes, with
// the batch, the image size and whether the shapes are known at compile time rotating from one
// problem to the next.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/ops/conv/conv_params.hpp"
#include "support/conv_checks.hpp"

namespace convgraph::testing {

// One problem of the grid.
struct ConvCase {
  std::string grid;       // the grid it comes from
  std::size_t index = 0;  // its position in that grid
  ConvParams params;
  Shape image;   // (B, C, spatial...)
  Shape kernel;  // (M, C / G, k...); unshared: (M, output spatial..., C / G, k...)
  DType dtype = DType::float64;
  bool static_shapes = true;  // whether the graph's inputs carry these shapes at compile time

  int convdim() const { return params.convdim; }
  Shape image_spatial() const { return spatial_of(image, convdim()); }
  Shape kernel_spatial() const { return spatial_of(kernel, convdim()); }
  std::int64_t batch() const { return image[0]; }
  std::int64_t filters() const { return kernel[0]; }

  // The output's spatial sizes; an entry is 0 where the image is too small for the kernel.
  Shape output_spatial() const {
    return output_spatial_of(params, image_spatial(), kernel_spatial());
  }
  bool possible() const {
    for (std::int64_t o : output_spatial()) {
      if (o < 1) return false;
    }
    return true;
  }
  // Whether some spatial axis of the kernel has size 1.
  bool kernel_has_a_one() const {
    for (std::int64_t k : kernel_spatial()) {
      if (k == 1) return true;
    }
    return false;
  }
  // A 1x1(x1) kernel with stride 1 and no padding: where implementations take shortcuts (the
  // image is its own column matrix).
  bool pointwise() const {
    const Shape k = kernel_spatial();
    for (std::size_t a = 0; a < k.size(); ++a) {
      const auto [before, after] = params.border[a].resolve(std::int64_t{1});
      if (k[a] != 1 || params.subsample[a] != 1 || before != 0 || after != 0) return false;
    }
    return true;
  }
  std::string str() const {
    return fmt::format("{} grid #{}: {{{}}}, image {}, kernel {}, {}, {} shapes", grid, index,
                       params.str(), shape_str(image), shape_str(kernel), dtype_name(dtype),
                       static_shapes ? "static" : "unknown");
  }

  static Shape output_spatial_of(const ConvParams& p, const Shape& image, const Shape& kernel) {
    Shape out;
    for (std::size_t a = 0; a < image.size(); ++a) {
      const std::int64_t dilated = (kernel[a] - 1) * p.dilation[a] + 1;
      const auto [before, after] = p.border[a].resolve(dilated);
      const std::int64_t span = image[a] + before + after - dilated;
      out.push_back(span < 0 ? 0 : span / p.subsample[a] + 1);
    }
    return out;
  }
};

// A grid: the cross product of the lists from BORDERS (outermost) to DTYPES (innermost). The
// batch, the image's spatial size and whether the shapes are static rotate with the problem's
// number through lists whose lengths (5, the images' length, 11) share no factor with the loops'
// sizes, so that over the grid every value meets every other. Problems whose output would be
// empty are kept for shared kernels (an implementation must reject them with a ShapeError, which
// only the run time can do: they get unknown static shapes) and dropped for unshared ones (no
// kernel shape exists for them).
struct GridSpec {
  std::string name;
  int convdim = 2;
  std::vector<BorderMode> borders;
  std::vector<std::vector<std::int64_t>> strides, dilations;
  std::vector<std::int64_t> groups{1};
  std::vector<bool> flips{true, false};
  std::vector<Shape> kernels;  // spatial sizes
  std::vector<bool> unshared{false};
  std::vector<DType> dtypes{DType::float64, DType::float32, DType::float16};
  std::int64_t channels = 4, filters = 4;
  std::vector<std::int64_t> batches{1, 2, 1, 3, 2};
  std::vector<Shape> images;  // spatial sizes, rotating
};

inline std::vector<ConvCase> make_grid(const GridSpec& spec) {
  std::vector<ConvCase> cases;
  std::size_t problem = 0;
  for (const BorderMode& border : spec.borders) {
    for (const auto& stride : spec.strides) {
      for (const auto& dilation : spec.dilations) {
        for (std::int64_t groups : spec.groups) {
          for (bool flip : spec.flips) {
            for (const Shape& k : spec.kernels) {
              for (bool unshared : spec.unshared) {
                const std::size_t n = problem++;
                const std::int64_t batch = spec.batches[n % spec.batches.size()];
                const Shape& spatial = spec.images[n % spec.images.size()];
                const ConvParams p = make_conv_params(spec.convdim, border, stride, flip, dilation,
                                                      groups, unshared);
                Shape image{batch, spec.channels};
                image.insert(image.end(), spatial.begin(), spatial.end());
                Shape kernel{spec.filters};
                const Shape out = ConvCase::output_spatial_of(p, spatial, k);
                bool possible = true;
                for (std::int64_t o : out) possible = possible && o >= 1;
                if (unshared) {
                  if (!possible) continue;
                  kernel.insert(kernel.end(), out.begin(), out.end());
                }
                kernel.push_back(spec.channels / groups);
                kernel.insert(kernel.end(), k.begin(), k.end());
                for (DType dtype : spec.dtypes) {
                  ConvCase c;
                  c.grid = spec.name;
                  c.index = cases.size();
                  c.params = p;
                  c.image = image;
                  c.kernel = kernel;
                  c.dtype = dtype;
                  c.static_shapes = possible && n % 11 < 8;
                  cases.push_back(std::move(c));
                }
              }
            }
          }
        }
      }
    }
  }
  return cases;
}

// Every EVERY-th case of CASES from OFFSET. For a sample that still holds every value of every
// list, EVERY must share no factor with the lengths of the grid's lists and rotations
// (sampling_is_coprime).
inline std::vector<ConvCase> sample(const std::vector<ConvCase>& cases, std::size_t every,
                                    std::size_t offset = 0) {
  std::vector<ConvCase> out;
  for (std::size_t i = offset % every; i < cases.size(); i += every) out.push_back(cases[i]);
  return out;
}

// Whether EVERY shares no factor with the length of any list or rotation of SPEC.
inline bool sampling_is_coprime(const GridSpec& spec, std::size_t every) {
  const std::size_t lengths[] = {spec.borders.size(),
                                 spec.strides.size(),
                                 spec.dilations.size(),
                                 spec.groups.size(),
                                 spec.flips.size(),
                                 spec.kernels.size(),
                                 spec.unshared.size(),
                                 spec.dtypes.size(),
                                 spec.batches.size(),
                                 spec.images.size(),
                                 11};
  for (std::size_t length : lengths) {
    std::size_t a = every, b = length;
    while (b != 0) {
      const std::size_t r = a % b;
      a = b;
      b = r;
    }
    if (a != 1) return false;
  }
  return true;
}

// ---- the grids ----

// The 2-D border modes: every form a user can write (a name, one pad, one pad per axis,
// asymmetric (before, after) pairs).
inline std::vector<BorderMode> conformance_borders_2d() {
  return {BorderMode("valid"),
          BorderMode("full"),
          BorderMode("half"),
          BorderMode(1),
          BorderMode({std::int64_t{2}, std::int64_t{0}}),
          BorderMode::pairs({{1, 0}, {0, 2}}),
          BorderMode::pairs({{0, 3}, {2, 1}})};
}

// Shared 2-D kernels: every border mode, strides and dilations (equal, mixed, one axis only),
// groups (4 of 4 channels is depthwise), flips, odd, even, mixed and 1-wide kernel sizes, on odd
// and even image sizes.
inline GridSpec grid_2d_spec() {
  GridSpec s;
  s.name = "2-D";
  s.convdim = 2;
  s.borders = conformance_borders_2d();
  s.strides = {{1, 1}, {2, 2}, {2, 3}, {3, 1}};
  s.dilations = {{1, 1}, {2, 1}, {3, 2}};
  s.groups = {1, 2, 4};
  s.kernels = {{3, 3}, {2, 2}, {3, 2}, {1, 3}, {3, 1}, {1, 1}};
  s.images = {{7, 6}, {9, 7}, {6, 11}, {5, 8}, {8, 5}, {7, 9}, {11, 6}};
  return s;
}

// 3-D: named, single and per-axis pads (asymmetric pairs are 2-D only), mixed strides and
// dilations, groups, and kernels with 1 on some axes (1xkxk, kx1x1, 1x1x1).
inline GridSpec grid_3d_spec() {
  GridSpec s;
  s.name = "3-D";
  s.convdim = 3;
  s.borders = {BorderMode("valid"), BorderMode("full"), BorderMode("half"), BorderMode(1),
               BorderMode({std::int64_t{1}, std::int64_t{0}, std::int64_t{2}})};
  s.strides = {{1, 1, 1}, {2, 1, 3}};
  s.dilations = {{1, 1, 1}, {1, 2, 3}};
  s.groups = {1, 2};
  s.kernels = {{2, 3, 2}, {1, 3, 3}, {3, 1, 1}, {1, 1, 1}};
  s.channels = 2;
  s.images = {{5, 6, 7}, {4, 5, 6}, {6, 4, 5}};
  return s;
}

// Unshared (locally connected) 2-D kernels: every border mode, strides, dilations, groups, flips,
// and kernel sizes including 1x1, 1xk and kx1.
inline GridSpec grid_unshared_spec() {
  GridSpec s;
  s.name = "unshared";
  s.convdim = 2;
  s.borders = conformance_borders_2d();
  s.strides = {{1, 1}, {2, 1}};
  s.dilations = {{1, 1}, {1, 2}};
  s.groups = {1, 2};
  s.kernels = {{3, 2}, {1, 1}, {1, 3}, {2, 1}};
  s.unshared = {true};
  s.images = {{6, 5}, {5, 7}, {7, 6}};
  return s;
}

// Kernel sizes of 1 on some axis, shared and unshared, in every direction: where the shortcuts
// are (a pointwise kernel needs no column matrix). With and without padding and strides, grouped,
// depthwise and not, batch 1 and more. Small enough to run whole in the default suite.
inline GridSpec grid_ones_2d_spec() {
  GridSpec s;
  s.name = "2-D kernel sizes of 1";
  s.convdim = 2;
  s.borders = {BorderMode("valid"), BorderMode("full"), BorderMode(1),
               BorderMode::pairs({{0, 1}, {2, 0}})};
  s.strides = {{1, 1}, {2, 1}};
  s.dilations = {{1, 1}};
  s.groups = {1, 2, 4};
  s.kernels = {{1, 1}, {1, 3}, {3, 1}};
  s.unshared = {false, true};
  s.images = {{5, 4}, {4, 7}, {6, 5}};
  return s;
}

inline GridSpec grid_ones_3d_spec() {
  GridSpec s;
  s.name = "3-D kernel sizes of 1";
  s.convdim = 3;
  s.borders = {BorderMode("valid"), BorderMode("half"), BorderMode(1)};
  s.strides = {{1, 1, 1}, {2, 1, 1}};
  s.dilations = {{1, 1, 1}};
  s.groups = {1, 2};
  s.flips = {true};
  s.kernels = {{1, 1, 1}, {1, 3, 3}, {3, 1, 1}, {1, 1, 3}};
  s.images = {{3, 4, 5}, {4, 5, 3}, {5, 3, 4}};
  return s;
}

// Every grid of the suite, in the order the tests run them.
inline std::vector<GridSpec> conformance_grid_specs() {
  return {grid_2d_spec(), grid_3d_spec(), grid_unshared_spec(), grid_ones_2d_spec(),
          grid_ones_3d_spec()};
}

}  // namespace convgraph::testing
