#include "convgraph/ops/conv/conv_params.hpp"

#include <fmt/format.h>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/tensor/shape.hpp"

namespace convgraph {

// ---- AxisBorder / BorderMode ----

std::pair<Dim, Dim> AxisBorder::resolve(const Dim& dilated_extent) const {
  switch (kind) {
    case Kind::valid:
      return {Dim(0), Dim(0)};
    case Kind::full: {
      const Dim p = dilated_extent - Dim(1);
      return {p, p};
    }
    case Kind::half: {
      const Dim p = floor_div(dilated_extent, Dim(2));
      return {p, p};
    }
    case Kind::pads:
      return {Dim(before), Dim(after)};
  }
  return {Dim(0), Dim(0)};
}

std::pair<std::int64_t, std::int64_t> AxisBorder::resolve(std::int64_t dilated_extent) const {
  switch (kind) {
    case Kind::valid:
      return {0, 0};
    case Kind::full:
      return {dilated_extent - 1, dilated_extent - 1};
    case Kind::half:
      return {dilated_extent / 2, dilated_extent / 2};
    case Kind::pads:
      return {before, after};
  }
  return {0, 0};
}

BorderMode BorderMode::pairs(const std::vector<std::pair<std::int64_t, std::int64_t>>& pads) {
  std::vector<Entry> entries;
  for (const auto& p : pads) entries.emplace_back(p);
  return BorderMode(std::move(entries));
}

std::string BorderMode::str() const {
  if (text_) return fmt::format("'{}'", *text_);
  if (all_) return std::to_string(*all_);
  std::vector<std::string> parts;
  for (const Entry& e : *per_axis_) {
    if (const auto* i = std::get_if<std::int64_t>(&e)) {
      parts.push_back(std::to_string(*i));
    } else {
      const auto& p = std::get<std::pair<std::int64_t, std::int64_t>>(e);
      parts.push_back(fmt::format("({}, {})", p.first, p.second));
    }
  }
  return fmt::format("({})", fmt::join(parts, ", "));
}

std::vector<AxisBorder> BorderMode::normalize(int convdim) const {
  const auto n = static_cast<std::size_t>(convdim);
  if (text_) {
    if (*text_ == "valid") return std::vector<AxisBorder>(n, AxisBorder::valid());
    if (*text_ == "full") return std::vector<AxisBorder>(n, AxisBorder::full());
    if (*text_ == "half") return std::vector<AxisBorder>(n, AxisBorder::half());
    throw ValueError(fmt::format(
        "invalid border_mode '{}'; expected \"valid\", \"full\", \"half\", a non-negative integer "
        "or one entry per spatial axis ({} entries)",
        *text_, convdim));
  }
  std::vector<AxisBorder> result;
  if (all_) {
    if (*all_ < 0) {
      throw ValueError(
          fmt::format("invalid border_mode {}; an integer border_mode must be "
                      "non-negative",
                      *all_));
    }
    result.assign(n, AxisBorder::pads(*all_, *all_));
  } else {
    if (per_axis_->size() != n) {
      throw ValueError(
          fmt::format("invalid border_mode {}: it has {} entries, expected one per "
                      "spatial axis ({})",
                      str(), per_axis_->size(), convdim));
    }
    for (const Entry& e : *per_axis_) {
      if (const auto* i = std::get_if<std::int64_t>(&e)) {
        if (*i < 0) {
          throw ValueError(
              fmt::format("invalid border_mode {}: entries must be non-negative "
                          "integers or pairs of non-negative integers",
                          str()));
        }
        result.push_back(AxisBorder::pads(*i, *i));
        continue;
      }
      const auto& p = std::get<std::pair<std::int64_t, std::int64_t>>(e);
      if (p.first < 0 || p.second < 0) {
        throw ValueError(
            fmt::format("invalid border_mode {}: entries must be non-negative "
                        "integers or pairs of non-negative integers",
                        str()));
      }
      if (convdim != 2) {
        throw UnsupportedError(
            fmt::format("invalid border_mode {}: asymmetric (before, after) "
                        "padding is only implemented for 2-D convolutions, "
                        "not {}-D",
                        str(), convdim));
      }
      result.push_back(AxisBorder::pads(p.first, p.second));
    }
  }
  bool all_zero = true;
  for (const auto& b : result) all_zero = all_zero && b.before == 0 && b.after == 0;
  if (all_zero) return std::vector<AxisBorder>(n, AxisBorder::valid());
  return result;
}

// ---- ConvParams ----

bool ConvParams::all_valid() const {
  for (const auto& b : border) {
    if (b.kind != AxisBorder::Kind::valid) return false;
  }
  return true;
}

bool ConvParams::any_asymmetric() const {
  for (const auto& b : border) {
    if (!b.symmetric()) return true;
  }
  return false;
}

bool ConvParams::strided() const {
  for (auto s : subsample) {
    if (s != 1) return true;
  }
  return false;
}

bool ConvParams::dilated() const {
  for (auto d : dilation) {
    if (d != 1) return true;
  }
  return false;
}

std::size_t ConvParams::hash() const {
  std::size_t h = hash_values(convdim, filter_flip, num_groups, unshared);
  for (const auto& b : border) {
    h = hash_combine(h, hash_values(static_cast<int>(b.kind), b.before, b.after));
  }
  h = hash_combine(h, hash_range(subsample));
  h = hash_combine(h, hash_range(dilation));
  for (const auto& d : imshp) h = hash_combine(h, std::hash<std::int64_t>{}(d.value_or(-1)));
  for (const auto& d : kshp) h = hash_combine(h, std::hash<std::int64_t>{}(d.value_or(-1)));
  return h;
}

namespace {
std::string border_str(const std::vector<AxisBorder>& border) {
  bool same_kind = true;
  for (const auto& b : border) same_kind = same_kind && b.kind == border.front().kind;
  if (same_kind && border.front().kind == AxisBorder::Kind::valid) return "valid";
  if (same_kind && border.front().kind == AxisBorder::Kind::full) return "full";
  if (same_kind && border.front().kind == AxisBorder::Kind::half) return "half";
  std::vector<std::string> parts;
  for (const auto& b : border) {
    switch (b.kind) {
      case AxisBorder::Kind::valid:
        parts.emplace_back("0");
        break;
      case AxisBorder::Kind::full:
        parts.emplace_back("full");
        break;
      case AxisBorder::Kind::half:
        parts.emplace_back("half");
        break;
      case AxisBorder::Kind::pads:
        parts.push_back(b.before == b.after ? std::to_string(b.before)
                                            : fmt::format("({}, {})", b.before, b.after));
        break;
    }
  }
  return fmt::format("({})", fmt::join(parts, ", "));
}

bool all_ones(const std::vector<std::int64_t>& v) {
  for (auto x : v) {
    if (x != 1) return false;
  }
  return true;
}
}  // namespace

std::string ConvParams::str() const {
  std::string s = fmt::format("border={}", border_str(border));
  if (!all_ones(subsample)) s += fmt::format(", subsample=({})", fmt::join(subsample, ", "));
  if (!filter_flip) s += ", cross";
  if (!all_ones(dilation)) s += fmt::format(", dilation=({})", fmt::join(dilation, ", "));
  if (num_groups != 1) s += fmt::format(", groups={}", num_groups);
  if (unshared) s += ", unshared";
  return s;
}

ConvParams make_conv_params(int convdim, const BorderMode& border_mode,
                            std::vector<std::int64_t> subsample, bool filter_flip,
                            std::vector<std::int64_t> dilation, std::int64_t num_groups,
                            bool unshared, StaticShape imshp, StaticShape kshp) {
  if (convdim != 2 && convdim != 3) {
    throw ValueError(
        fmt::format("convolution dimension {} is not supported; expected 2 or 3", convdim));
  }
  const auto n = static_cast<std::size_t>(convdim);
  ConvParams p;
  p.convdim = convdim;
  p.filter_flip = filter_flip;
  p.subsample = subsample.empty() ? std::vector<std::int64_t>(n, 1) : std::move(subsample);
  p.dilation = dilation.empty() ? std::vector<std::int64_t>(n, 1) : std::move(dilation);
  p.border = border_mode.normalize(convdim);
  if (unshared && convdim != 2) {
    throw UnsupportedError(
        fmt::format("unshared convolution is only implemented for 2-D, not "
                    "{}-D",
                    convdim));
  }
  p.unshared = unshared;
  const std::size_t image_rank = 2 + n;
  const std::size_t kernel_rank = 2 + (unshared ? 2 : 1) * n;
  p.imshp = imshp.empty() ? StaticShape(image_rank) : std::move(imshp);
  p.kshp = kshp.empty() ? StaticShape(kernel_rank) : std::move(kshp);
  if (p.imshp.size() != image_rank) {
    throw ValueError(
        fmt::format("imshp {} has {} entries; expected {} (batch, channels and {} "
                    "spatial dims), or none",
                    static_shape_str(p.imshp), p.imshp.size(), image_rank, convdim));
  }
  if (p.kshp.size() != kernel_rank) {
    throw ValueError(fmt::format("kshp {} has {} entries; expected {}{}, or none",
                                 static_shape_str(p.kshp), p.kshp.size(), kernel_rank,
                                 unshared ? " for an unshared kernel" : ""));
  }
  for (const auto* hint : {&p.imshp, &p.kshp}) {
    for (const auto& d : *hint) {
      if (d && *d < 0) {
        throw ValueError(
            fmt::format("{} {} has a negative entry; entries must be non-negative "
                        "or unknown",
                        hint == &p.imshp ? "imshp" : "kshp", static_shape_str(*hint)));
      }
    }
  }
  if (p.subsample.size() != n) {
    throw ValueError(fmt::format("subsample ({}) has {} elements; expected {}",
                                 fmt::join(p.subsample, ", "), p.subsample.size(), convdim));
  }
  if (p.dilation.size() != n) {
    throw ValueError(fmt::format("filter_dilation ({}) has {} elements; expected {}",
                                 fmt::join(p.dilation, ", "), p.dilation.size(), convdim));
  }
  for (auto s : p.subsample) {
    if (s < 1) {
      throw ValueError(
          fmt::format("subsample ({}) must be positive", fmt::join(p.subsample, ", ")));
    }
  }
  for (auto d : p.dilation) {
    if (d < 1) {
      throw ValueError(
          fmt::format("filter_dilation ({}) must be positive", fmt::join(p.dilation, ", ")));
    }
  }
  if (num_groups < 1) {
    throw ValueError(fmt::format("num_groups is {}; it must be at least 1", num_groups));
  }
  p.num_groups = num_groups;
  check_conv_geometry_limits("make_conv_params", p);
  return p;
}

void check_conv_geometry_limits(const std::string& fn, const ConvParams& p) {
  auto fail = [&](const std::string& what, std::int64_t value) {
    throw ValueError(
        fmt::format("{}: {} has an entry of {}, beyond the largest that convolutions "
                    "take ({}, the 32-bit limit of their implementations)",
                    fn, what, value, kMaxConvGeometry));
  };
  for (std::int64_t s : p.subsample) {
    if (s > kMaxConvGeometry) fail(fmt::format("subsample ({})", fmt::join(p.subsample, ", ")), s);
  }
  for (std::int64_t d : p.dilation) {
    if (d > kMaxConvGeometry) {
      fail(fmt::format("filter_dilation ({})", fmt::join(p.dilation, ", ")), d);
    }
  }
  for (const AxisBorder& b : p.border) {
    if (b.kind != AxisBorder::Kind::pads) continue;
    for (std::int64_t pad : {b.before, b.after}) {
      // Negative pads (cropping) only come from parameters built by hand; bounded all the same.
      if (pad > kMaxConvGeometry || pad < -kMaxConvGeometry) {
        fail(fmt::format("border_mode {}", p.str()), pad);
      }
    }
  }
}

// ---- shape helpers ----

namespace {
Dim dilated_extent(const Dim& kernel, std::int64_t dilation) {
  return (kernel - Dim(1)) * Dim(dilation) + Dim(1);
}
std::int64_t at_or_one(const std::vector<std::int64_t>& v, std::size_t i) {
  return v.empty() ? 1 : v.at(i);
}

// The per-axis parameters must have one entry per spatial axis (dilation may be empty: ones).
void check_per_axis(const char* who, std::size_t convdim, const std::vector<AxisBorder>& border,
                    const std::vector<std::int64_t>& subsample,
                    const std::vector<std::int64_t>& dilation) {
  auto fail = [&](const char* what, std::size_t size) {
    throw ValueError(fmt::format("{}: {} has {} entries; expected one per spatial axis ({})", who,
                                 what, size, convdim));
  };
  if (border.size() != convdim) fail("border", border.size());
  if (subsample.size() != convdim) fail("subsample", subsample.size());
  if (!dilation.empty() && dilation.size() != convdim) fail("dilation", dilation.size());
}

std::size_t spatial_rank(const char* who, const ShapeDims& shape) {
  if (shape.size() < 3) {
    throw ValueError(
        fmt::format("{}: a shape of {} entries has no spatial axes; expected batch, "
                    "channels and 2 or 3 spatial dims",
                    who, shape.size()));
  }
  return shape.size() - 2;
}
}  // namespace

Dim get_conv_shape_1axis(const Dim& image, const Dim& kernel, const AxisBorder& border,
                         std::int64_t subsample, std::int64_t dilation) {
  if (image.is_unknown() || kernel.is_unknown()) return Dim::unknown();
  const Dim dk = dilated_extent(kernel, dilation);
  const auto [before, after] = border.resolve(dk);
  return floor_div(image + before + after - dk, Dim(subsample)) + Dim(1);
}

ShapeDims get_conv_output_shape(const ShapeDims& image_shape, const ShapeDims& kernel_shape,
                                const std::vector<AxisBorder>& border,
                                const std::vector<std::int64_t>& subsample,
                                const std::vector<std::int64_t>& dilation) {
  const std::size_t convdim = spatial_rank("get_conv_output_shape", image_shape);
  check_per_axis("get_conv_output_shape", convdim, border, subsample, dilation);
  if (kernel_shape.size() < convdim + 2) {
    throw ValueError(
        fmt::format("get_conv_output_shape: the kernel shape has {} entries; "
                    "expected at least {}",
                    kernel_shape.size(), convdim + 2));
  }
  ShapeDims out{image_shape.at(0), kernel_shape.at(0)};
  const std::size_t k0 = kernel_shape.size() - convdim;
  for (std::size_t a = 0; a < convdim; ++a) {
    out.push_back(get_conv_shape_1axis(image_shape[2 + a], kernel_shape[k0 + a], border.at(a),
                                       subsample.at(a), at_or_one(dilation, a)));
  }
  return out;
}

Dim get_conv_gradweights_shape_1axis(const Dim& image, const Dim& top, const AxisBorder& border,
                                     std::int64_t subsample, std::int64_t dilation) {
  if (image.is_unknown() || top.is_unknown() || subsample != 1 ||
      border.kind == AxisBorder::Kind::half) {
    return Dim::unknown();
  }
  Dim span;
  switch (border.kind) {
    case AxisBorder::Kind::full:
      span = top - image;
      break;
    case AxisBorder::Kind::valid:
      span = image - top;
      break;
    default:
      span = image + Dim(border.before) + Dim(border.after) - top;
      break;
  }
  if (span.is_constant() && (span.value() < 0 || span.value() % dilation != 0)) {
    return Dim::unknown();  // no kernel size gives these shapes
  }
  return floor_div(span, Dim(dilation)) + Dim(1);
}

ShapeDims get_conv_gradweights_shape(const ShapeDims& image_shape, const ShapeDims& top_shape,
                                     const std::vector<AxisBorder>& border,
                                     const std::vector<std::int64_t>& subsample,
                                     const std::vector<std::int64_t>& dilation,
                                     std::int64_t num_groups, bool unshared) {
  const std::size_t convdim = spatial_rank("get_conv_gradweights_shape", image_shape);
  check_per_axis("get_conv_gradweights_shape", convdim, border, subsample, dilation);
  if (top_shape.size() != image_shape.size()) {
    throw ValueError(
        fmt::format("get_conv_gradweights_shape: the image shape has {} entries but "
                    "the top shape {}",
                    image_shape.size(), top_shape.size()));
  }
  ShapeDims out{top_shape.at(1)};
  if (unshared) {
    for (std::size_t a = 0; a < convdim; ++a) out.push_back(top_shape.at(2 + a));
  }
  out.push_back(image_shape.at(1).is_unknown() ? Dim::unknown()
                                               : floor_div(image_shape[1], Dim(num_groups)));
  for (std::size_t a = 0; a < convdim; ++a) {
    out.push_back(get_conv_gradweights_shape_1axis(image_shape[2 + a], top_shape.at(2 + a),
                                                   border.at(a), subsample.at(a),
                                                   at_or_one(dilation, a)));
  }
  return out;
}

Dim get_conv_gradinputs_shape_1axis(const Dim& kernel, const Dim& top, const AxisBorder& border,
                                    std::int64_t subsample, std::int64_t dilation) {
  if (kernel.is_unknown() || top.is_unknown() || subsample != 1) return Dim::unknown();
  const Dim dk = dilated_extent(kernel, dilation);
  const auto [before, after] = border.resolve(dk);
  const Dim image = top + dk - Dim(1) - before - after;
  if (image.is_constant() && image.value() < 0) return Dim::unknown();
  return image;
}

ShapeDims get_conv_gradinputs_shape(const ShapeDims& kernel_shape, const ShapeDims& top_shape,
                                    const std::vector<AxisBorder>& border,
                                    const std::vector<std::int64_t>& subsample,
                                    const std::vector<std::int64_t>& dilation,
                                    std::int64_t num_groups) {
  const std::size_t convdim = spatial_rank("get_conv_gradinputs_shape", top_shape);
  check_per_axis("get_conv_gradinputs_shape", convdim, border, subsample, dilation);
  if (kernel_shape.size() < convdim + 2) {
    throw ValueError(
        fmt::format("get_conv_gradinputs_shape: the kernel shape has {} entries; "
                    "expected at least {}",
                    kernel_shape.size(), convdim + 2));
  }
  const Dim& channels = kernel_shape.at(kernel_shape.size() - convdim - 1);
  ShapeDims out{top_shape.at(0),
                channels.is_unknown() ? Dim::unknown() : channels * Dim(num_groups)};
  const std::size_t k0 = kernel_shape.size() - convdim;
  for (std::size_t a = 0; a < convdim; ++a) {
    out.push_back(get_conv_gradinputs_shape_1axis(kernel_shape[k0 + a], top_shape.at(2 + a),
                                                  border.at(a), subsample.at(a),
                                                  at_or_one(dilation, a)));
  }
  return out;
}

bool check_conv_gradinputs_shape(const ShapeDims& image_shape, const ShapeDims& kernel_shape,
                                 const ShapeDims& output_shape,
                                 const std::vector<AxisBorder>& border,
                                 const std::vector<std::int64_t>& subsample,
                                 const std::vector<std::int64_t>& dilation) {
  if (image_shape.size() != output_shape.size() || image_shape.size() < 3) return false;
  const std::size_t convdim = image_shape.size() - 2;
  const bool unshared_kernel = convdim == 2 && kernel_shape.size() == 2 + 2 * convdim;
  if (kernel_shape.size() != image_shape.size() && !unshared_kernel) return false;
  if (subsample.size() != convdim || border.size() != convdim) return false;
  if (!dilation.empty() && dilation.size() != convdim) return false;
  const ShapeDims expected =
      get_conv_output_shape(image_shape, kernel_shape, border, subsample, dilation);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (expected[i].is_constant() && output_shape[i].is_constant() &&
        expected[i].value() != output_shape[i].value()) {
      return false;
    }
  }
  return true;
}

std::vector<std::pair<std::int64_t, std::int64_t>> border_mode_to_pad(
    const std::vector<AxisBorder>& border, const std::vector<std::int64_t>& dilated_extents) {
  if (border.size() != dilated_extents.size()) {
    throw ValueError(fmt::format("border_mode_to_pad: {} border entries for {} kernel extents",
                                 border.size(), dilated_extents.size()));
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> pads;
  for (std::size_t a = 0; a < border.size(); ++a)
    pads.push_back(border[a].resolve(dilated_extents[a]));
  return pads;
}

}  // namespace convgraph
