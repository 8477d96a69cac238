#include "convgraph/runtime/layout.hpp"

#include <fmt/format.h>

#include <cstring>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

// Copies the elements of one (channel block, image) pair: BLOCK rows of POSITIONS elements in
// the logical order against POSITIONS rows of BLOCK elements in the blocked one. TO_BLOCKED says
// which way. Elements are moved as whole words of their size.
template <typename Word>
void move_block(const Word* src, Word* dst, std::int64_t block, std::int64_t positions,
                bool to_blocked) {
  if (to_blocked) {
    for (std::int64_t s = 0; s < positions; ++s) {
      for (std::int64_t j = 0; j < block; ++j) dst[s * block + j] = src[j * positions + s];
    }
  } else {
    for (std::int64_t j = 0; j < block; ++j) {
      for (std::int64_t s = 0; s < positions; ++s) dst[j * positions + s] = src[s * block + j];
    }
  }
}

template <typename Word>
void move_all(const void* src, void* dst, std::int64_t groups, std::int64_t block,
              std::int64_t positions, bool to_blocked) {
  const auto* from = static_cast<const Word*>(src);
  auto* to = static_cast<Word*>(dst);
  const std::int64_t group_size = block * positions;
  const int threads = groups * group_size >= (std::int64_t{1} << 15) ? cpu_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t g = 0; g < groups; ++g) {
    move_block(from + g * group_size, to + g * group_size, block, positions, to_blocked);
  }
}

void check_fits(Layout layout, const Shape& shape, const char* which) {
  if (!layout_fits(layout, shape)) {
    throw ValueError(fmt::format(
        "reorder_layout: a value of shape {} cannot be held in the {} layout {}: it needs rank 3 "
        "or more and channels (axis 1) a multiple of {}",
        shape_str(shape), which, layout_name(layout, static_cast<int>(shape.size())),
        layout_block(layout)));
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
  const bool to_blocked = from == Layout::logical;
  const std::int64_t block = layout_block(to_blocked ? to : from);
  const Shape& shape = value.shape();
  std::int64_t positions = 1;
  for (std::size_t a = 2; a < shape.size(); ++a) positions *= shape[a];
  const std::int64_t groups = shape[0] * (shape[1] / block);
  switch (dtype_size(value.dtype())) {
    case 1:
      move_all<std::uint8_t>(src.raw_data(), out.raw_data(), groups, block, positions, to_blocked);
      break;
    case 2:
      move_all<std::uint16_t>(src.raw_data(), out.raw_data(), groups, block, positions, to_blocked);
      break;
    case 4:
      move_all<std::uint32_t>(src.raw_data(), out.raw_data(), groups, block, positions, to_blocked);
      break;
    case 8:
      move_all<std::uint64_t>(src.raw_data(), out.raw_data(), groups, block, positions, to_blocked);
      break;
    default:
      throw UnsupportedError(fmt::format("reorder_layout: elements of {} bytes ({})",
                                         dtype_size(value.dtype()), dtype_name(value.dtype())));
  }
  return out;
}

}  // namespace convgraph
