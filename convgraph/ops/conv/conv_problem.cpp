#include "convgraph/ops/conv/conv_problem.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "convgraph/base/checked_math.hpp"
#include "convgraph/ops/conv/conv_checks.hpp"

namespace convgraph {
namespace {

Shape last_axes(const Shape& shape, int n) {
  return Shape(shape.end() - n, shape.end());
}

// The padded image, dilated kernel and output sizes of every axis, in checked arithmetic: the
// kernel and image sizes come from tensors (an empty one may have any size), the strides,
// dilations and pads are at most kMaxConvGeometry, and no intermediate value may overflow.
void set_spatial(const std::string& fn, ConvProblem& pr, const ConvParams& p,
                 const Shape& image_spatial, const Shape& kernel_spatial) {
  pr.groups = p.num_groups;
  pr.image_spatial = image_spatial;
  pr.kernel_spatial = kernel_spatial;
  pr.stride = p.subsample;
  pr.dilation = p.dilation;
  pr.pad_before.clear();
  pr.pad_after.clear();
  pr.output_spatial.clear();
  for (int a = 0; a < p.convdim; ++a) {
    const auto i = static_cast<std::size_t>(a);
    const std::optional<std::int64_t> dilated =
        checked_add(checked_mul(kernel_spatial[i] - 1, p.dilation[i]), 1);
    if (!dilated) {
      throw ShapeError(fmt::format(
          "{}: on spatial axis {}, the kernel size {} dilated by filter_dilation ({}) spans more "
          "than int64 can count",
          fn, a, kernel_spatial[i], fmt::join(p.dilation, ", ")));
    }
    const auto [before, after] = p.border[i].resolve(*dilated);
    const std::optional<std::int64_t> span =
        checked_sub(checked_add(checked_add(image_spatial[i], before), after), *dilated);
    if (!span) {
      throw ShapeError(fmt::format(
          "{}: on spatial axis {}, the image size {} padded by ({}, {}) (border_mode {}) minus "
          "the dilated kernel extent {} is beyond what int64 can count",
          fn, a, image_spatial[i], before, after, p.str(), *dilated));
    }
    pr.pad_before.push_back(before);
    pr.pad_after.push_back(after);
    // floor(span / stride) + 1 cannot overflow: the padded image fits in int64 and the dilated
    // extent is at least 1, so the span is at most INT64_MAX - 1.
    pr.output_spatial.push_back(floor_div_int(*span, p.subsample[i]) + 1);
  }
}

void check_output_possible(const std::string& fn, const ConvProblem& pr, const ConvParams& p,
                           const Shape& image, const Shape& kernel) {
  for (std::int64_t o : pr.output_spatial) {
    if (o < 1) {
      throw ShapeError(
          fmt::format("{}: the convolution would produce an impossible output of spatial size {} "
                      "({}); every spatial size must be at least 1",
                      fn, shape_str(pr.output_spatial), describe_conv(p, image, kernel)));
    }
  }
}

void set_channels(const std::string& fn, ConvProblem& pr, std::int64_t channels,
                  std::int64_t filters, std::int64_t kernel_channels, const char* source) {
  const std::int64_t g = pr.groups;
  if (channels % g != 0) {
    throw ShapeError(
        fmt::format("{}: the {} has {} channels, which is not divisible by num_groups={}", fn,
                    source, channels, g));
  }
  if (filters % g != 0) {
    throw ShapeError(fmt::format(
        "{}: there are {} filters, which is not divisible by num_groups={}", fn, filters, g));
  }
  if (channels / g != kernel_channels) {
    throw ShapeError(
        fmt::format("{}: the kernel has {} input channels, but the {} has {} channels in {} "
                    "group(s), so each group needs {}",
                    fn, kernel_channels, source, channels, g, channels / g));
  }
  pr.channels = channels;
  pr.filters = filters;
}

void check_unshared_regions(const std::string& fn, const ConvProblem& pr, const ConvParams& p,
                            const Shape& kernel) {
  if (!p.unshared) return;
  const Shape regions(kernel.begin() + 1, kernel.begin() + 1 + p.convdim);
  if (regions != pr.output_spatial) {
    throw ShapeError(
        fmt::format("{}: the unshared kernel of shape {} has a region grid of {}, but the output "
                    "grid is {}; they must be equal",
                    fn, shape_str(kernel), shape_str(regions), shape_str(pr.output_spatial)));
  }
}

Shape output_shape(const ConvProblem& pr) {
  Shape out{pr.batch, pr.filters};
  out.insert(out.end(), pr.output_spatial.begin(), pr.output_spatial.end());
  return out;
}

}  // namespace

bool ConvProblem::asymmetric_padding() const {
  return pad_before != pad_after;
}

ConvProblem resolve_conv_problem(const std::string& fn, ConvDirection direction,
                                 const ConvParams& p, const Shape& a, const Shape& b,
                                 const Shape& spatial) {
  const int n = p.convdim;
  ConvProblem pr;
  switch (direction) {
    case ConvDirection::forward: {
      const Shape kernel_spatial = last_axes(b, n);
      check_conv_spatial_argument(fn, "the kernel's spatial shape", kernel_spatial, n, 1);
      set_spatial(fn, pr, p, last_axes(a, n), kernel_spatial);
      pr.batch = a[0];
      set_channels(fn, pr, a[1], b[0], b[b.size() - static_cast<std::size_t>(n) - 1], "image");
      check_output_possible(fn, pr, p, a, b);
      check_unshared_regions(fn, pr, p, b);
      pr.image = a;
      pr.kernel = b;
      pr.output = output_shape(pr);
      pr.result = pr.output;
      break;
    }
    case ConvDirection::grad_inputs: {
      check_conv_spatial_argument(fn, "input_shape (the image's spatial shape)", spatial, n, 0);
      const Shape kernel_spatial = last_axes(a, n);
      check_conv_spatial_argument(fn, "the kernel's spatial shape", kernel_spatial, n, 1);
      const std::int64_t kernel_channels = a[a.size() - static_cast<std::size_t>(n) - 1];
      Shape image{b[0], kernel_channels * p.num_groups};
      image.insert(image.end(), spatial.begin(), spatial.end());
      set_spatial(fn, pr, p, spatial, kernel_spatial);
      pr.batch = b[0];
      set_channels(fn, pr, image[1], a[0], kernel_channels, "image gradient");
      check_output_possible(fn, pr, p, image, a);
      const Shape expected = output_shape(pr);
      if (expected != b) {
        throw ShapeError(fmt::format(
            "{}: invalid input_shape for gradInputs: the given input_shape would produce an "
            "output of shape {}, but the given topgrad has shape {} (input_shape {}, {})",
            fn, shape_str(expected), shape_str(b), shape_str(spatial), describe_conv(p, image, a)));
      }
      check_unshared_regions(fn, pr, p, a);
      pr.image = image;
      pr.kernel = a;
      pr.output = b;
      pr.result = image;
      break;
    }
    case ConvDirection::grad_weights: {
      check_conv_spatial_argument(fn, "filter_shape (the kernel's spatial shape)", spatial, n, 1);
      set_spatial(fn, pr, p, last_axes(a, n), spatial);
      pr.batch = a[0];
      set_channels(fn, pr, a[1], b[1], a[1] / p.num_groups, "image");
      Shape kernel{pr.filters};
      if (p.unshared) {
        kernel.insert(kernel.end(), pr.output_spatial.begin(), pr.output_spatial.end());
      }
      kernel.push_back(pr.channels_per_group());
      kernel.insert(kernel.end(), spatial.begin(), spatial.end());
      check_output_possible(fn, pr, p, a, kernel);
      const Shape expected = output_shape(pr);
      if (expected != b) {
        throw ShapeError(fmt::format(
            "{}: invalid filter_shape for gradWeights: the given filter_shape would produce an "
            "output of shape {}, but the given topgrad has shape {} (filter_shape {}, {})",
            fn, shape_str(expected), shape_str(b), shape_str(spatial),
            describe_conv(p, a, kernel)));
      }
      pr.image = a;
      pr.kernel = kernel;
      pr.output = b;
      pr.result = kernel;
      break;
    }
  }
  return pr;
}

void check_conv_hints(const std::string& fn, ConvDirection direction, const ConvParams& p,
                      const Shape& a, const Shape& b, const Shape& result) {
  auto check = [&](const Shape& shape, const StaticShape& hint, const char* what,
                   const char* hint_name) {
    for (std::size_t i = 0; i < hint.size() && i < shape.size(); ++i) {
      if (hint[i] && *hint[i] != shape[i]) {
        throw ShapeError(
            fmt::format("{}: the {} has shape {}, which does not match the given {} {}", fn, what,
                        shape_str(shape), hint_name, static_shape_str(hint)));
      }
    }
  };
  switch (direction) {
    case ConvDirection::forward:
      check(a, p.imshp, "image", "imshp");
      check(b, p.kshp, "kernel", "kshp");
      break;
    case ConvDirection::grad_inputs:
      check(a, p.kshp, "kernel", "kshp");
      check(result, p.imshp, "image gradient", "imshp");
      break;
    case ConvDirection::grad_weights:
      check(a, p.imshp, "image", "imshp");
      check(result, p.kshp, "kernel gradient", "kshp");
      break;
  }
}

}  // namespace convgraph
