#include "convgraph/runtime/layout.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

void check_fits(Layout layout, const Shape& shape, const char* which) {
  if (!layout_fits(layout, shape)) {
    throw ValueError(fmt::format(
        "reorder_layout: a value of shape {} cannot be held in the {} layout {}: it needs rank 3 "
        "or more and channels (axis 1) a multiple of {}",
        shape_str(shape), which, layout_name(layout, static_cast<int>(shape.size())),
        layout_block(layout)));
  }
}

// DST (COLS x ROWS) = SRC (ROWS x COLS) transposed. Tiles of 16 rows: a tile of the
// source (16 rows of a block's elements: a whole line or four) is read while 16-element runs of
// each destination row are written, so both sides go through the caches in whole lines (an
// element-by-element copy through a permuted view ran at 13 GB/s on the stem's 25 MiB output).
template <typename E>
void transpose(const E* src, E* dst, std::int64_t rows, std::int64_t cols) {
  constexpr std::int64_t kTile = 16;
  for (std::int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const std::int64_t r1 = std::min(rows, r0 + kTile);
    for (std::int64_t c = 0; c < cols; ++c) {
      E* out = dst + c * rows;
      for (std::int64_t r = r0; r < r1; ++r) out[r] = src[r * cols + c];
    }
  }
}

}  // namespace

std::int64_t layout_block(Layout layout) {
  switch (layout) {
    case Layout::logical:
      return 1;
    case Layout::blocked_c8:
      return 8;
    case Layout::blocked_c16:
      return 16;
  }
  return 1;
}

std::string layout_name(Layout layout, int rank) {
  if (layout == Layout::logical) return "logical";
  const std::int64_t block = layout_block(layout);
  switch (rank) {
    case 3:
      return fmt::format("nCw{}c", block);
    case 4:
      return fmt::format("nChw{}c", block);
    case 5:
      return fmt::format("nCdhw{}c", block);
    default:
      return fmt::format("blocked:c{}", block);
  }
}

bool layout_fits(Layout layout, const Shape& shape) {
  if (layout == Layout::logical) return true;
  return shape.size() >= 3 && shape[1] % layout_block(layout) == 0;
}

Tensor reorder_layout(const Tensor& value, Layout from, Layout to, const Tensor& given) {
  if (!value.device().is_cpu()) {
    throw DeviceError(
        fmt::format("reorder_layout: the value is on {}; layouts are reordered on "
                    "the CPU only",
                    value.device().str()));
  }
  check_fits(from, value.shape(), "source");
  check_fits(to, value.shape(), "target");
  const Tensor src = value.contiguous();
  Tensor out = output_buffer(given, value.dtype(), value.shape());
  if (out.numel() == 0) return out;
  if (from == to) {
    if (out.raw_data() != src.raw_data()) std::memcpy(out.raw_data(), src.raw_data(), src.nbytes());
    return out;
  }
  // Blocked to blocked of another size goes through the logical order.
  if (from != Layout::logical && to != Layout::logical) {
    return reorder_layout(reorder_layout(src, from, Layout::logical), Layout::logical, to, given);
  }
  // The logical order is [N, C / block, block, positions], the blocked one [N, C / block,
  // positions, block]: each (n, channel block) group is a [block, positions] matrix transposed.
  const bool to_blocked = from == Layout::logical;
  const std::int64_t block = layout_block(to_blocked ? to : from);
  const Shape& shape = value.shape();
  std::int64_t positions = 1;
  for (std::size_t a = 2; a < shape.size(); ++a) positions *= shape[a];
  const std::int64_t groups = shape[0] * (shape[1] / block);
  const std::int64_t rows = to_blocked ? block : positions, cols = to_blocked ? positions : block;
  const int threads = out.numel() >= (std::int64_t{1} << 15) ? cpu_threads() : 1;
  dispatch_dtype(value.dtype(), [&]<typename T>() {
    const T* in = src.data<T>();
    T* to_data = out.data<T>();
    const std::int64_t group = block * positions;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t g = 0; g < groups; ++g) {
      transpose(in + g * group, to_data + g * group, rows, cols);
    }
  });
  return out;
}

}  // namespace convgraph
