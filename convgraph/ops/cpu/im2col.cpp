#include "convgraph/ops/cpu/im2col.hpp"

#include <algorithm>
#include <cstring>

namespace convgraph {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return -floor_div(-a, b);
}

// The tap of row R of the column matrix, split per axis.
struct RowTaps {
  std::int64_t a, i, j;
};

RowTaps split_tap(const CorrGeometry& geo, std::int64_t tap) {
  const std::int64_t khw = geo.kernel[1] * geo.kernel[2];
  const std::int64_t a = tap / khw;
  const std::int64_t rest = tap - a * khw;
  const std::int64_t i = rest / geo.kernel[2];
  return {a, i, rest - i * geo.kernel[2]};
}

// Walks output lines [LINE_BEGIN, LINE_END) of one row of the column matrix. For each line,
// calls SKIP(line_index) when the whole line reads padding, else VISIT(line_index, image_offset)
// where image_offset is the plane offset of the read of output x = 0 (it may be negative or past
// the row: only x in [lo, hi) of the axis-2 table may be read, and that range is not empty).
template <typename Skip, typename Visit>
void for_each_line(const CorrGeometry& geo, const RowTaps& tap, std::int64_t line_begin,
                   std::int64_t line_end, Skip&& skip, Visit&& visit) {
  const std::int64_t oh = geo.output[1];
  const std::int64_t ih = geo.image[1], iw = geo.image[2];
  const std::int64_t off0 = geo.tap_offset[0][static_cast<std::size_t>(tap.a)];
  const std::int64_t lo0 = geo.valid_lo[0][static_cast<std::size_t>(tap.a)];
  const std::int64_t hi0 = geo.valid_hi[0][static_cast<std::size_t>(tap.a)];
  const std::int64_t off1 = geo.tap_offset[1][static_cast<std::size_t>(tap.i)];
  const std::int64_t lo1 = geo.valid_lo[1][static_cast<std::size_t>(tap.i)];
  const std::int64_t hi1 = geo.valid_hi[1][static_cast<std::size_t>(tap.i)];
  const std::int64_t off2 = geo.tap_offset[2][static_cast<std::size_t>(tap.j)];
  // A tap whose x range is empty reads only padding; VISIT may then assume lo < hi.
  const bool empty_x = geo.valid_lo[2][static_cast<std::size_t>(tap.j)] >=
                       geo.valid_hi[2][static_cast<std::size_t>(tap.j)];
  std::int64_t z = line_begin / oh;
  std::int64_t y = line_begin - z * oh;
  for (std::int64_t line = line_begin; line < line_end; ++line) {
    if (empty_x || z < lo0 || z >= hi0 || y < lo1 || y >= hi1) {
      skip(line - line_begin);
    } else {
      const std::int64_t iz = z * geo.stride[0] + off0;
      const std::int64_t iy = y * geo.stride[1] + off1;
      visit(line - line_begin, (iz * ih + iy) * iw + off2);
    }
    if (++y == oh) {
      y = 0;
      ++z;
    }
  }
}

}  // namespace

bool CorrGeometry::pointwise() const {
  for (int a = 0; a < 3; ++a) {
    const auto i = static_cast<std::size_t>(a);
    if (kernel[i] != 1 || stride[i] != 1 || pad_before[i] != 0 || pad_after[i] != 0) return false;
  }
  return true;
}

void set_tap_tables(CorrGeometry& geo) {
  for (std::size_t a = 0; a < 3; ++a) {
    const std::int64_t k = geo.kernel[a];
    geo.tap_offset[a].assign(static_cast<std::size_t>(k), 0);
    geo.valid_lo[a].assign(static_cast<std::size_t>(k), 0);
    geo.valid_hi[a].assign(static_cast<std::size_t>(k), 0);
    for (std::int64_t t = 0; t < k; ++t) {
      const std::int64_t read = geo.flip ? k - 1 - t : t;
      const std::int64_t offset = read * geo.dilation[a] - geo.pad_before[a];
      // Output o reads o * s + offset, inside the image iff 0 <= o * s + offset < image.
      const std::int64_t lo = std::clamp<std::int64_t>(ceil_div(-offset, geo.stride[a]), 0,
                                                       geo.output[a]);
      const std::int64_t hi = std::clamp<std::int64_t>(
          floor_div(geo.image[a] - 1 - offset, geo.stride[a]) + 1, lo, geo.output[a]);
      const auto u = static_cast<std::size_t>(t);
      geo.tap_offset[a][u] = offset;
      geo.valid_lo[a][u] = lo;
      geo.valid_hi[a][u] = hi;
    }
  }
}

template <typename T>
void im2col(const CorrGeometry& geo, const T* image, std::int64_t row_begin, std::int64_t row_end,
            std::int64_t line_begin, std::int64_t line_end, T* col, std::int64_t ld) {
  const std::int64_t taps = geo.taps();
  const std::int64_t ow = geo.output[2];
  const std::int64_t sx = geo.stride[2];
  const std::int64_t plane_size = geo.image_size();
  for (std::int64_t r = row_begin; r < row_end; ++r) {
    const std::int64_t c = r / taps;
    const RowTaps tap = split_tap(geo, r - c * taps);
    const auto j = static_cast<std::size_t>(tap.j);
    const std::int64_t lo = geo.valid_lo[2][j], hi = geo.valid_hi[2][j];
    const T* plane = image + c * plane_size;
    T* row = col + r * ld;
    for_each_line(
        geo, tap, line_begin, line_end,
        [&](std::int64_t line) { std::fill(row + line * ow, row + (line + 1) * ow, T(0)); },
        [&](std::int64_t line, std::int64_t offset) {
          T* dst = row + line * ow;
          std::fill(dst, dst + lo, T(0));
          if (sx == 1) {
            std::memcpy(dst + lo, plane + offset + lo,
                        static_cast<std::size_t>(hi - lo) * sizeof(T));
          } else {
            const T* src = plane + offset + lo * sx;
            for (std::int64_t x = lo; x < hi; ++x, src += sx) dst[x] = *src;
          }
          std::fill(dst + hi, dst + ow, T(0));
        });
  }
}

template <typename T>
void col2im(const CorrGeometry& geo, const T* col, std::int64_t ld, std::int64_t channel_begin,
            std::int64_t channel_end, std::int64_t line_begin, std::int64_t line_end, T* image) {
  const std::int64_t taps = geo.taps();
  const std::int64_t ow = geo.output[2];
  const std::int64_t sx = geo.stride[2];
  const std::int64_t plane_size = geo.image_size();
  for (std::int64_t c = channel_begin; c < channel_end; ++c) {
    T* plane = image + c * plane_size;
    for (std::int64_t t = 0; t < taps; ++t) {
      const RowTaps tap = split_tap(geo, t);
      const auto j = static_cast<std::size_t>(tap.j);
      const std::int64_t lo = geo.valid_lo[2][j], hi = geo.valid_hi[2][j];
      const T* row = col + (c * taps + t) * ld;
      for_each_line(
          geo, tap, line_begin, line_end, [](std::int64_t) {},
          [&](std::int64_t line, std::int64_t offset) {
            const T* src = row + line * ow;
            if (sx == 1) {
              // Offsetting by LO first keeps every pointer inside the plane.
              T* dst = plane + offset + lo;
              for (std::int64_t n = 0; n < hi - lo; ++n) dst[n] += src[lo + n];
            } else {
              T* dst = plane + offset + lo * sx;
              for (std::int64_t x = lo; x < hi; ++x, dst += sx) *dst += src[x];
            }
          });
    }
  }
}

template void im2col<float>(const CorrGeometry&, const float*, std::int64_t, std::int64_t,
                            std::int64_t, std::int64_t, float*, std::int64_t);
template void im2col<double>(const CorrGeometry&, const double*, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, double*, std::int64_t);
template void col2im<float>(const CorrGeometry&, const float*, std::int64_t, std::int64_t,
                            std::int64_t, std::int64_t, std::int64_t, float*);
template void col2im<double>(const CorrGeometry&, const double*, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t, double*);

}  // namespace convgraph
