// Basic indexing: integer indices and slices with steps, reading (subtensor) and writing into a
// copy (inc_subtensor, set_subtensor). Bounds follow Python: negative values count from the end,
// slice bounds are clamped, an integer index out of range is an IndexError-like ShapeError.
#pragma once

#include <optional>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// One entry of an index: an integer (the axis is dropped) or a slice start:stop:step (any part
// may be absent). Values may be constants or symbolic int64 scalars.
struct IndexItem {
  bool is_slice = true;
  std::optional<Dim> start, stop, step;  // for a slice; START holds the index otherwise

  static IndexItem index(Dim i) { return {false, std::move(i), std::nullopt, std::nullopt}; }
  static IndexItem slice(std::optional<Dim> start = std::nullopt,
                         std::optional<Dim> stop = std::nullopt,
                         std::optional<Dim> step = std::nullopt) {
    return {true, std::move(start), std::move(stop), std::move(step)};
  }
  static IndexItem all() { return slice(); }
};

// X[items...]; axes beyond the items are kept whole.
Variable subtensor(const Variable& x, const std::vector<IndexItem>& items);
// A copy of X with Y added into X[items...] (Y broadcasts to the indexed shape).
Variable inc_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y);
// A copy of X with X[items...] replaced by Y.
Variable set_subtensor(const Variable& x, const std::vector<IndexItem>& items, const Variable& y);

}  // namespace convgraph
