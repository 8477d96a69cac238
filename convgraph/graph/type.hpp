// TensorType: what the graph knows about a value before it runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/base/dtype.hpp"
#include "convgraph/runtime/device.hpp"
#include "convgraph/runtime/layout.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// A static dimension: known size, or std::nullopt when only known at run time.
using StaticDim = std::optional<std::int64_t>;
using StaticShape = std::vector<StaticDim>;

struct TensorType {
  DType dtype = DType::float32;
  StaticShape dims;  // one entry per axis; rank = dims.size()
  Device device = Device::cpu();
  // The order of the value's elements in memory (runtime/layout.hpp): the logical one unless the
  // layout pass chose a blocked one between ops that understand it. The dims stay the logical
  // shape whatever the layout.
  Layout layout = Layout::logical;

  TensorType() = default;
  // Throws ValueError on a negative static dim (check_static_shape).
  TensorType(DType d, StaticShape shape, Device dev = Device::cpu());
  // A type of rank RANK (>= 0) with every dim unknown.
  static TensorType of_rank(DType dtype, int rank, Device device = Device::cpu());
  // The exact type of a runtime value.
  static TensorType of(const Tensor& value);

  int rank() const { return static_cast<int>(dims.size()); }
  // Static size of AXIS (negative counts from the end).
  StaticDim dim(int axis) const;
  bool broadcastable(int axis) const { return dim(axis) == StaticDim{1}; }
  bool fully_known() const;
  bool operator==(const TensorType&) const = default;

  // True when a value of type OTHER can stand where this type is expected: same dtype, rank,
  // device and layout, and no static dim contradicting one of ours.
  bool accepts(const TensorType& other) const;
  // Empty when VALUE fits this type, else what is wrong ("dtype float64, expected float32").
  std::string mismatch(const Tensor& value) const;

  // "float32[8, 3, ?, ?]" (a device suffix when not on the CPU: "float32[8, 3]@cuda0"; a layout
  // suffix when not the logical one, or always with ALWAYS_LAYOUT: "float32[8, 64, 56, 56]
  // {nChw8c}", "float32[8, 3]{logical}").
  std::string str(bool always_layout = false) const;
};

std::string static_shape_str(const StaticShape& dims);

// The shape when every dim of DIMS is known, else nothing.
std::optional<Shape> known_shape(const StaticShape& dims);

// Static dims are sizes: known ones must be >= 0. Throws ValueError naming WHO (e.g. "tensor
// 'x'"), the dim's index and its value otherwise.
void check_static_shape(const StaticShape& dims, const std::string& who);

}  // namespace convgraph
