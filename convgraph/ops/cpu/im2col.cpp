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

// One row of the column matrix (one channel and stored tap) over output lines [line_begin,
// line_end): where it reads the image. Output (z, y, x) reads plane element
// ((z * sz + off_z) * ih + y * sy + off_y) * iw + x * sx + off_x, inside the image exactly for
// z in [z_lo, z_hi), y in [y_lo, y_hi) and x in [x_lo, x_hi).
struct RowReads {
  std::int64_t line_begin, line_end;
  std::int64_t oh, ow, ih, iw;
  std::int64_t sz, sy, sx;
  std::int64_t off_z, off_y, off_x;
  std::int64_t z_lo, z_hi, y_lo, y_hi, x_lo, x_hi;
};

RowReads row_reads(const CorrGeometry& geo, std::int64_t tap, std::int64_t line_begin,
                   std::int64_t line_end) {
  const std::int64_t khw = geo.kernel[1] * geo.kernel[2];
  const auto a = static_cast<std::size_t>(tap / khw);
  const auto i = static_cast<std::size_t>(tap % khw / geo.kernel[2]);
  const auto j = static_cast<std::size_t>(tap % geo.kernel[2]);
  return {line_begin,           line_end,
          geo.output[1],        geo.output[2],
          geo.image[1],         geo.image[2],
          geo.stride[0],        geo.stride[1],
          geo.stride[2],        geo.tap_offset[0][a],
          geo.tap_offset[1][i], geo.tap_offset[2][j],
          geo.valid_lo[0][a],   geo.valid_hi[0][a],
          geo.valid_lo[1][i],   geo.valid_hi[1][i],
          geo.valid_lo[2][j],   geo.valid_hi[2][j]};
}

// Calls VISIT(line_index, offset) for each line whose (z, y) read is inside the image and whose x
// range is not empty, offset being the plane offset of the read of output x_lo; calls
// SKIP(line_index) for the others.
template <typename Skip, typename Visit>
[[gnu::always_inline]] inline void for_each_line(const RowReads& r, Skip&& skip, Visit&& visit) {
  std::int64_t z = r.line_begin / r.oh;
  std::int64_t y = r.line_begin - z * r.oh;
  const bool empty_x = r.x_lo >= r.x_hi;
  for (std::int64_t line = 0; line < r.line_end - r.line_begin; ++line) {
    if (empty_x || z < r.z_lo || z >= r.z_hi || y < r.y_lo || y >= r.y_hi) {
      skip(line);
    } else {
      visit(line,
            ((z * r.sz + r.off_z) * r.ih + y * r.sy + r.off_y) * r.iw + r.off_x + r.x_lo * r.sx);
    }
    if (++y == r.oh) {
      y = 0;
      ++z;
    }
  }
}

// The per-row loops, written out and always inlined into clones for AVX-512, AVX2 and the
// baseline ISA (the library is built for the baseline), picked at load time. Strides 2 and 4 get
// loops of their own, which the compiler turns into vector permutes: with them the stride-2 and
// stride-4 stem layers ran 10-25% faster end to end than with scalar strided copies.
template <typename T>
[[gnu::always_inline]] inline void im2col_row_impl(const RowReads& r, const T* plane, T* dst) {
  const std::int64_t n = r.x_hi - r.x_lo;
  for_each_line(
      r, [&](std::int64_t line) { std::fill(dst + line * r.ow, dst + (line + 1) * r.ow, T(0)); },
      [&](std::int64_t line, std::int64_t offset) {
        T* d = dst + line * r.ow;
        const T* src = plane + offset;
        for (std::int64_t x = 0; x < r.x_lo; ++x) d[x] = T(0);
        T* out = d + r.x_lo;
        if (r.sx == 1) {
          // glibc's memcpy beats the vectorised loop here by a few percent (measured on 3x3
          // layers).
          std::memcpy(out, src, static_cast<std::size_t>(n) * sizeof(T));
        } else if (r.sx == 2) {
          for (std::int64_t k = 0; k < n; ++k) out[k] = src[2 * k];
        } else if (r.sx == 4) {
          for (std::int64_t k = 0; k < n; ++k) out[k] = src[4 * k];
        } else {
          for (std::int64_t k = 0; k < n; ++k) out[k] = src[k * r.sx];
        }
        for (std::int64_t x = r.x_hi; x < r.ow; ++x) d[x] = T(0);
      });
}

template <typename T>
[[gnu::always_inline]] inline void col2im_row_impl(const RowReads& r, const T* src_row, T* plane) {
  const std::int64_t n = r.x_hi - r.x_lo;
  for_each_line(
      r, [](std::int64_t) {},
      [&](std::int64_t line, std::int64_t offset) {
        const T* src = src_row + line * r.ow + r.x_lo;
        T* dst = plane + offset;
        if (r.sx == 1) {
          for (std::int64_t k = 0; k < n; ++k) dst[k] += src[k];
        } else if (r.sx == 2) {
          for (std::int64_t k = 0; k < n; ++k) dst[2 * k] += src[k];
        } else if (r.sx == 4) {
          for (std::int64_t k = 0; k < n; ++k) dst[4 * k] += src[k];
        } else {
          for (std::int64_t k = 0; k < n; ++k) dst[k * r.sx] += src[k];
        }
      });
}

#define CONVGRAPH_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

CONVGRAPH_ISA_CLONES void im2col_row(const RowReads& r, const float* plane, float* dst) {
  im2col_row_impl(r, plane, dst);
}
CONVGRAPH_ISA_CLONES void im2col_row(const RowReads& r, const double* plane, double* dst) {
  im2col_row_impl(r, plane, dst);
}
CONVGRAPH_ISA_CLONES void col2im_row(const RowReads& r, const float* src, float* plane) {
  col2im_row_impl(r, src, plane);
}
CONVGRAPH_ISA_CLONES void col2im_row(const RowReads& r, const double* src, double* plane) {
  col2im_row_impl(r, src, plane);
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
      const std::int64_t lo =
          std::clamp<std::int64_t>(ceil_div(-offset, geo.stride[a]), 0, geo.output[a]);
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
  for (std::int64_t r = row_begin; r < row_end; ++r) {
    const std::int64_t c = r / taps;
    im2col_row(row_reads(geo, r - c * taps, line_begin, line_end), image + c * geo.image_size(),
               col + r * ld);
  }
}

template <typename T>
void col2im(const CorrGeometry& geo, const T* col, std::int64_t ld, std::int64_t channel_begin,
            std::int64_t channel_end, std::int64_t line_begin, std::int64_t line_end, T* image) {
  const std::int64_t taps = geo.taps();
  for (std::int64_t c = channel_begin; c < channel_end; ++c) {
    for (std::int64_t t = 0; t < taps; ++t) {
      col2im_row(row_reads(geo, t, line_begin, line_end), col + (c * taps + t) * ld,
                 image + c * geo.image_size());
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
