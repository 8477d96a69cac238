#include "convgraph/ops/cpu/corrmm_nonfinite.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace convgraph {
namespace {

using Axes = std::array<std::int64_t, 3>;

// Output position Y as (z, y, x).
Axes position_of(const CorrGeometry& geo, std::int64_t y) {
  return {y / (geo.output[1] * geo.output[2]), y / geo.output[2] % geo.output[1],
          y % geo.output[2]};
}

// Stored tap T as (a, i, j).
Axes tap_of(const CorrGeometry& geo, std::int64_t t) {
  return {t / (geo.kernel[1] * geo.kernel[2]), t / geo.kernel[2] % geo.kernel[1],
          t % geo.kernel[2]};
}

// Whether TAP reads inside the image at output position O (the tap tables' ranges).
bool reads_inside(const CorrGeometry& geo, const Axes& tap, const Axes& o) {
  for (std::size_t a = 0; a < 3; ++a) {
    const auto t = static_cast<std::size_t>(tap[a]);
    if (o[a] < geo.valid_lo[a][t] || o[a] >= geo.valid_hi[a][t]) return false;
  }
  return true;
}

// The element of an image plane that TAP reads at output O, O inside its range.
std::int64_t read_offset(const CorrGeometry& geo, const Axes& tap, const Axes& o) {
  std::int64_t offset = 0;
  for (std::size_t a = 0; a < 3; ++a) {
    offset = offset * geo.image[a] + o[a] * geo.stride[a] +
             geo.tap_offset[a][static_cast<std::size_t>(tap[a])];
  }
  return offset;
}

// Per axis, the outputs [lo, hi) at which every tap reads inside the image. Outside this box
// (the border band) some tap reads padding.
struct InnerBox {
  Axes lo{0, 0, 0}, hi{0, 0, 0};
  bool covers(const CorrGeometry& geo) const {
    for (std::size_t a = 0; a < 3; ++a) {
      if (lo[a] != 0 || hi[a] != geo.output[a]) return false;
    }
    return true;
  }
};

InnerBox inner_box(const CorrGeometry& geo) {
  InnerBox box;
  for (std::size_t a = 0; a < 3; ++a) {
    box.lo[a] = 0;
    box.hi[a] = geo.output[a];
    for (std::int64_t t = 0; t < geo.kernel[a]; ++t) {
      const auto u = static_cast<std::size_t>(t);
      box.lo[a] = std::max(box.lo[a], geo.valid_lo[a][u]);
      box.hi[a] = std::min(box.hi[a], geo.valid_hi[a][u]);
    }
    box.hi[a] = std::max(box.hi[a], box.lo[a]);
  }
  return box;
}

// FN(y) for every output position y of the border band (outside BOX).
template <typename Fn>
void for_each_border_position(const CorrGeometry& geo, const InnerBox& box, Fn&& fn) {
  for (std::int64_t z = 0; z < geo.output[0]; ++z) {
    for (std::int64_t y = 0; y < geo.output[1]; ++y) {
      const std::int64_t line = (z * geo.output[1] + y) * geo.output[2];
      const bool inner_line = z >= box.lo[0] && z < box.hi[0] && y >= box.lo[1] && y < box.hi[1];
      for (std::int64_t x = 0; x < geo.output[2]; ++x) {
        if (inner_line && x == box.lo[2]) x = box.hi[2];
        if (x >= geo.output[2]) break;
        fn(line + x);
      }
    }
  }
}

template <typename T>
bool finite(T value) {
  return std::isfinite(value);
}

}  // namespace

template <typename T>
void reconcile_forward_padding(const CorrGeometry& geo, const T* image, const T* kernel, T* out) {
  const InnerBox box = inner_box(geo);
  if (box.covers(geo)) return;  // no tap reads padding
  const std::int64_t filters = geo.filters, positions = geo.positions();
  const std::int64_t regions = geo.regions(), cg = geo.channels_per_group, taps = geo.taps();
  // The output elements (filter, position) where a non-finite weight met padding.
  std::vector<std::uint8_t> marked;
  for (std::int64_t m = 0; m < filters; ++m) {
    for (std::int64_t r = 0; r < regions; ++r) {
      for (std::int64_t c = 0; c < cg; ++c) {
        const T* w = kernel + ((m * regions + r) * cg + c) * taps;
        for (std::int64_t t = 0; t < taps; ++t) {
          if (finite(w[t])) continue;
          if (marked.empty()) marked.assign(static_cast<std::size_t>(filters * positions), 0);
          const Axes tap = tap_of(geo, t);
          auto mark = [&](std::int64_t y) {
            if (!reads_inside(geo, tap, position_of(geo, y))) {
              marked[static_cast<std::size_t>(m * positions + y)] = 1;
            }
          };
          if (geo.unshared) {
            mark(r);  // region r is output position r
          } else {
            for_each_border_position(geo, box, mark);
          }
        }
      }
    }
  }
  if (marked.empty()) return;
  const std::int64_t image_size = geo.image_size();
  for (std::int64_t m = 0; m < filters; ++m) {
    const std::int64_t g = m / geo.filters_per_group;
    for (std::int64_t y = 0; y < positions; ++y) {
      if (!marked[static_cast<std::size_t>(m * positions + y)]) continue;
      const Axes o = position_of(geo, y);
      const std::int64_t r = geo.unshared ? y : 0;
      for (std::int64_t b = 0; b < geo.batch; ++b) {
        // Products with padding are zero or NaN: only a NaN can differ from the reference.
        T& result = out[(b * filters + m) * positions + y];
        if (!std::isnan(result)) continue;
        double acc = 0.0;
        for (std::int64_t c = 0; c < cg; ++c) {
          const T* plane = image + (b * geo.channels + g * cg + c) * image_size;
          const T* w = kernel + ((m * regions + r) * cg + c) * taps;
          for (std::int64_t t = 0; t < taps; ++t) {
            const Axes tap = tap_of(geo, t);
            if (!reads_inside(geo, tap, o)) continue;
            acc += static_cast<double>(plane[read_offset(geo, tap, o)]) * static_cast<double>(w[t]);
          }
        }
        result = static_cast<T>(acc);
      }
    }
  }
}

template <typename T>
void reconcile_grad_weights_padding(const CorrGeometry& geo, const T* image, const T* topgrad,
                                    T* out) {
  const InnerBox box = inner_box(geo);
  if (box.covers(geo)) return;
  const std::int64_t filters = geo.filters, positions = geo.positions();
  const std::int64_t regions = geo.regions(), cg = geo.channels_per_group, taps = geo.taps();
  // Padding adds products 0 * topgrad to the sums, which are zero or NaN: an entry that is not
  // NaN is the reference's. The weight gradient is small, so this look is cheap.
  const std::int64_t size = filters * regions * cg * taps;
  if (std::none_of(out, out + size, [](T v) { return std::isnan(v); })) return;
  // The kernel entries (filter, region, tap) that summed a non-finite topgrad value with padding.
  std::vector<std::uint8_t> marked;
  for (std::int64_t b = 0; b < geo.batch; ++b) {
    for (std::int64_t m = 0; m < filters; ++m) {
      const T* top = topgrad + (b * filters + m) * positions;
      for_each_border_position(geo, box, [&](std::int64_t y) {
        if (finite(top[y])) return;
        if (marked.empty()) marked.assign(static_cast<std::size_t>(filters * regions * taps), 0);
        const Axes o = position_of(geo, y);
        const std::int64_t r = geo.unshared ? y : 0;
        for (std::int64_t t = 0; t < taps; ++t) {
          if (!reads_inside(geo, tap_of(geo, t), o)) {
            marked[static_cast<std::size_t>((m * regions + r) * taps + t)] = 1;
          }
        }
      });
    }
  }
  if (marked.empty()) return;
  const std::int64_t image_size = geo.image_size();
  for (std::int64_t m = 0; m < filters; ++m) {
    const std::int64_t g = m / geo.filters_per_group;
    for (std::int64_t r = 0; r < regions; ++r) {
      const std::int64_t first = geo.unshared ? r : 0;
      const std::int64_t last = geo.unshared ? r + 1 : positions;
      for (std::int64_t t = 0; t < taps; ++t) {
        if (!marked[static_cast<std::size_t>((m * regions + r) * taps + t)]) continue;
        const Axes tap = tap_of(geo, t);
        for (std::int64_t c = 0; c < cg; ++c) {
          T& result = out[((m * regions + r) * cg + c) * taps + t];
          if (!std::isnan(result)) continue;
          double acc = 0.0;
          for (std::int64_t b = 0; b < geo.batch; ++b) {
            const T* plane = image + (b * geo.channels + g * cg + c) * image_size;
            const T* top = topgrad + (b * filters + m) * positions;
            for (std::int64_t y = first; y < last; ++y) {
              const Axes o = position_of(geo, y);
              if (!reads_inside(geo, tap, o)) continue;
              acc += static_cast<double>(plane[read_offset(geo, tap, o)]) *
                     static_cast<double>(top[y]);
            }
          }
          result = static_cast<T>(acc);
        }
      }
    }
  }
}

template <typename T>
void reconcile_grad_inputs_padding(const CorrGeometry& geo, const T* kernel, const T* topgrad,
                                   T* out) {
  // Unshared kernels never run through the direct loops, and the GEMMs only sum products of
  // existing outputs: nothing to do.
  if (geo.unshared) return;
  const std::int64_t filters = geo.filters, positions = geo.positions(),
                     cg = geo.channels_per_group;
  const std::int64_t taps = geo.taps(), image_size = geo.image_size();
  // The output position O that reads image element P through TAP: false when P is off the
  // tap's stride grid (no output, existing or not, reads it through this tap). O may lie outside
  // the output: the zero-padded topgrad of the direct loops.
  auto virtual_output = [&](const Axes& tap, const Axes& p, Axes& o) {
    for (std::size_t a = 0; a < 3; ++a) {
      const std::int64_t q = p[a] - geo.tap_offset[a][static_cast<std::size_t>(tap[a])];
      if (q % geo.stride[a] != 0) return false;
      o[a] = q / geo.stride[a];
    }
    return true;
  };
  auto exists = [&](const Axes& o) {
    for (std::size_t a = 0; a < 3; ++a) {
      if (o[a] < 0 || o[a] >= geo.output[a]) return false;
    }
    return true;
  };
  auto image_position = [&](std::int64_t p) -> Axes {
    return {p / (geo.image[1] * geo.image[2]), p / geo.image[2] % geo.image[1], p % geo.image[2]};
  };
  // The image elements (channel, position) that a non-finite weight reaches through an output
  // that does not exist.
  std::vector<std::uint8_t> marked;
  for (std::int64_t m = 0; m < filters; ++m) {
    const std::int64_t g = m / geo.filters_per_group;
    for (std::int64_t c = 0; c < cg; ++c) {
      const T* w = kernel + (m * cg + c) * taps;
      for (std::int64_t t = 0; t < taps; ++t) {
        if (finite(w[t])) continue;
        if (marked.empty()) marked.assign(static_cast<std::size_t>(geo.channels * image_size), 0);
        const Axes tap = tap_of(geo, t);
        for (std::int64_t p = 0; p < image_size; ++p) {
          Axes o{};
          if (virtual_output(tap, image_position(p), o) && !exists(o)) {
            marked[static_cast<std::size_t>((g * cg + c) * image_size + p)] = 1;
          }
        }
      }
    }
  }
  if (marked.empty()) return;
  for (std::int64_t cc = 0; cc < geo.channels; ++cc) {
    const std::int64_t g = cc / cg, c = cc % cg;
    for (std::int64_t p = 0; p < image_size; ++p) {
      if (!marked[static_cast<std::size_t>(cc * image_size + p)]) continue;
      const Axes ip = image_position(p);
      for (std::int64_t b = 0; b < geo.batch; ++b) {
        T& result = out[(b * geo.channels + cc) * image_size + p];
        if (!std::isnan(result)) continue;  // the extra products are zero or NaN
        double acc = 0.0;
        for (std::int64_t m = g * geo.filters_per_group; m < (g + 1) * geo.filters_per_group; ++m) {
          const T* top = topgrad + (b * filters + m) * positions;
          const T* w = kernel + (m * cg + c) * taps;
          for (std::int64_t t = 0; t < taps; ++t) {
            Axes o{};
            if (!virtual_output(tap_of(geo, t), ip, o) || !exists(o)) continue;
            acc += static_cast<double>(top[(o[0] * geo.output[1] + o[1]) * geo.output[2] + o[2]]) *
                   static_cast<double>(w[t]);
          }
        }
        result = static_cast<T>(acc);
      }
    }
  }
}

template void reconcile_forward_padding<float>(const CorrGeometry&, const float*, const float*,
                                               float*);
template void reconcile_forward_padding<double>(const CorrGeometry&, const double*, const double*,
                                                double*);
template void reconcile_grad_weights_padding<float>(const CorrGeometry&, const float*, const float*,
                                                    float*);
template void reconcile_grad_weights_padding<double>(const CorrGeometry&, const double*,
                                                     const double*, double*);

template void reconcile_grad_inputs_padding<float>(const CorrGeometry&, const float*, const float*,
                                                   float*);
template void reconcile_grad_inputs_padding<double>(const CorrGeometry&, const double*,
                                                    const double*, double*);

}  // namespace convgraph
