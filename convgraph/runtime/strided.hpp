// Iteration over N-d strided operands that share one iteration shape. Axes are coalesced where
// every operand allows it, so contiguous data becomes one long inner loop.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace convgraph {

// Calls BODY(offsets, count, inner_strides) for each innermost run: OFFSETS[k] is the element
// offset of operand k at the start of the run, INNER_STRIDES[k] its stride along the run. STRIDES
// holds each operand's strides over SHAPE (broadcast axes have stride 0).
template <std::size_t N, typename Body>
void for_each_run(const std::vector<std::int64_t>& shape,
                  const std::array<const std::vector<std::int64_t>*, N>& strides, Body&& body) {
  // Drop size-1 axes and merge adjacent axes that are contiguous with each other for every operand.
  std::vector<std::int64_t> dims;
  std::array<std::vector<std::int64_t>, N> st;
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] == 0) return;
    if (shape[axis] == 1) continue;
    bool merge = !dims.empty();
    for (std::size_t k = 0; k < N && merge; ++k) {
      merge = st[k].back() == (*strides[k])[axis] * shape[axis];
    }
    if (merge) {
      dims.back() *= shape[axis];
      for (std::size_t k = 0; k < N; ++k) st[k].back() = (*strides[k])[axis];
    } else {
      dims.push_back(shape[axis]);
      for (std::size_t k = 0; k < N; ++k) st[k].push_back((*strides[k])[axis]);
    }
  }
  std::array<std::int64_t, N> offsets{};
  std::array<std::int64_t, N> inner{};
  if (dims.empty()) {
    body(offsets, std::int64_t{1}, inner);
    return;
  }
  const std::size_t nd = dims.size();
  for (std::size_t k = 0; k < N; ++k) inner[k] = st[k][nd - 1];
  const std::int64_t run = dims[nd - 1];
  std::vector<std::int64_t> index(nd, 0);
  while (true) {
    body(offsets, run, inner);
    // Advance the outer index (all axes but the last).
    std::size_t axis = nd - 1;
    while (true) {
      if (axis == 0) return;
      --axis;
      ++index[axis];
      for (std::size_t k = 0; k < N; ++k) offsets[k] += st[k][axis];
      if (index[axis] < dims[axis]) break;
      for (std::size_t k = 0; k < N; ++k) offsets[k] -= st[k][axis] * dims[axis];
      index[axis] = 0;
    }
  }
}

}  // namespace convgraph
