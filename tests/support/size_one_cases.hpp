// The table of convolutions with a kernel size of 1 on at least one axis (1x1, 1xk, kx1 and their
// 3-D forms), shared by the conformance grids of every implementation. Implementations take
// shortcuts on such kernels (a 1x1 kernel read at stride 1 without padding makes the image its own
// column matrix); this table makes sure every shortcut meets the cases that surround it: every
// border mode, strides and dilations on either axis, groups, both flips and, where the
// implementation has them, unshared (locally connected) kernels. Each grid runs all three
// directions (forward, gradInputs, gradWeights) on every row against the reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::testing {

struct SizeOneCase {
  std::string label;
  ConvParams params;
  Shape image, kernel;
};

// Which rows an implementation can run.
struct SizeOneFilter {
  bool unshared = true;    // unshared kernels (2-D only): CorrMM and GpuCorrMM
  bool asymmetric = true;  // asymmetric (before, after) pads (2-D only): not cuDNN
  bool three_d = true;     // 3-D problems
  std::int64_t batch = 2;
};

// The kernels' spatial sizes.
inline std::vector<Shape> size_one_kernels(int convdim) {
  if (convdim == 2) return {{1, 1}, {1, 3}, {3, 1}, {1, 2}, {2, 1}};
  return {{1, 1, 1}, {1, 1, 3}, {1, 3, 1}, {3, 1, 1}, {1, 2, 2}, {2, 1, 2}, {2, 2, 1}};
}

struct SizeOneGeometry {
  const char* label;
  BorderMode border;
  std::vector<std::int64_t> stride, dilation;
  bool asymmetric = false;
};

// The geometries each kernel size runs under ("first" / "last": the first / last spatial axis).
inline std::vector<SizeOneGeometry> size_one_geometries(int convdim) {
  const auto n = static_cast<std::size_t>(convdim);
  const std::vector<std::int64_t> ones(n, 1);
  std::vector<std::int64_t> first_2 = ones, last_2 = ones;
  first_2.front() = 2;
  last_2.back() = 2;
  std::vector<SizeOneGeometry> rows = {
      {"valid, stride 1 (the pointwise shortcut for all-1 kernels)", "valid", ones, ones},
      {"half, stride 1", "half", ones, ones},
      {"full, stride 1", "full", ones, ones},
      {"pad 1, stride 1", BorderMode(1), ones, ones},
      {"valid, stride 2 on the first axis", "valid", first_2, ones},
      {"valid, stride 2 on the last axis", "valid", last_2, ones},
      {"half, dilation 2", "half", ones, std::vector<std::int64_t>(n, 2)},
      {"pad 1, stride 2 on the last axis, dilation 2 on the first", BorderMode(1), last_2, first_2},
  };
  if (convdim == 2) {
    rows.push_back(
        {"asymmetric pads (1, 0), (0, 2)", BorderMode::pairs({{1, 0}, {0, 2}}), ones, ones, true});
  }
  return rows;
}

// Every row: kernel size x geometry x groups (1, 2) x flip x shared / unshared, on images of 4
// channels (2-D: 5 x 6, 3-D: 4 x 5 x 3) with 4 filters. Unshared rows whose output is empty are
// left out (their kernel shape would have an empty region grid).
inline std::vector<SizeOneCase> size_one_cases(const SizeOneFilter& filter = {}) {
  std::vector<SizeOneCase> cases;
  for (int convdim : {2, 3}) {
    if (convdim == 3 && !filter.three_d) continue;
    const Shape image_spatial = convdim == 2 ? Shape{5, 6} : Shape{4, 5, 3};
    for (const Shape& k : size_one_kernels(convdim)) {
      for (const SizeOneGeometry& geo : size_one_geometries(convdim)) {
        if (geo.asymmetric && !filter.asymmetric) continue;
        for (std::int64_t groups : {1, 2}) {
          for (bool flip : {true, false}) {
            for (bool unshared : {false, true}) {
              if (unshared && (convdim != 2 || !filter.unshared)) continue;
              const ConvParams p = make_conv_params(convdim, geo.border, geo.stride, flip,
                                                    geo.dilation, groups, unshared);
              Shape image{filter.batch, 4};
              image.insert(image.end(), image_spatial.begin(), image_spatial.end());
              Shape kernel{4};
              if (unshared) {
                bool empty = false;
                for (std::size_t a = 0; a < k.size(); ++a) {
                  const std::int64_t dilated = (k[a] - 1) * p.dilation[a] + 1;
                  const auto [before, after] = p.border[a].resolve(dilated);
                  const std::int64_t span = image_spatial[a] + before + after - dilated;
                  empty = empty || span < 0;
                  kernel.push_back(span < 0 ? 0 : span / p.subsample[a] + 1);
                }
                if (empty) continue;
              }
              kernel.push_back(4 / groups);
              kernel.insert(kernel.end(), k.begin(), k.end());
              cases.push_back({std::string(geo.label) + ", kernel " + shape_str(k) + ", " + p.str(),
                               p, image, kernel});
            }
          }
        }
      }
    }
  }
  return cases;
}

}  // namespace convgraph::testing
