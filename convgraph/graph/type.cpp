#include "convgraph/graph/type.hpp"

#include <fmt/format.h>

namespace convgraph {

TensorType::TensorType(DType d, StaticShape shape, Device dev)
    : dtype(d), dims(std::move(shape)), device(dev) {
  check_static_shape(dims, "TensorType");
}

TensorType TensorType::of_rank(DType dtype, int rank, Device device) {
  if (rank < 0) {
    throw ValueError(fmt::format("TensorType: rank {} is negative; expected 0 or more", rank));
  }
  return TensorType(dtype, StaticShape(static_cast<std::size_t>(rank)), device);
}

void check_static_shape(const StaticShape& dims, const std::string& who) {
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] && *dims[i] < 0) {
      throw ValueError(
          fmt::format("{}: dim {} of {} is {}; a static dim must be non-negative "
                      "(or unknown: std::nullopt)",
                      who, i, static_shape_str(dims), *dims[i]));
    }
  }
}

std::optional<Shape> known_shape(const StaticShape& dims) {
  Shape shape;
  shape.reserve(dims.size());
  for (const StaticDim& d : dims) {
    if (!d) return std::nullopt;
    shape.push_back(*d);
  }
  return shape;
}

TensorType TensorType::of(const Tensor& value) {
  StaticShape dims(value.shape().begin(), value.shape().end());
  return TensorType(value.dtype(), std::move(dims), value.device());
}

StaticDim TensorType::dim(int axis) const {
  const int a = axis < 0 ? axis + rank() : axis;
  if (a < 0 || a >= rank()) {
    throw ValueError(fmt::format("axis {} is out of range for type {}", axis, str()));
  }
  return dims[static_cast<std::size_t>(a)];
}

bool TensorType::fully_known() const {
  for (const auto& d : dims) {
    if (!d) return false;
  }
  return true;
}

bool TensorType::accepts(const TensorType& other) const {
  if (dtype != other.dtype || rank() != other.rank() || device != other.device ||
      layout != other.layout) {
    return false;
  }
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] && other.dims[i] && *dims[i] != *other.dims[i]) return false;
  }
  return true;
}

std::string TensorType::mismatch(const Tensor& value) const {
  if (!value.defined()) return "no value (undefined tensor)";
  if (value.dtype() != dtype) {
    return fmt::format("dtype {}, expected {}", dtype_name(value.dtype()), dtype_name(dtype));
  }
  if (value.rank() != rank()) {
    return fmt::format("rank {} (shape {}), expected rank {} ({})", value.rank(),
                       shape_str(value.shape()), rank(), str());
  }
  for (int i = 0; i < rank(); ++i) {
    const auto& d = dims[static_cast<std::size_t>(i)];
    if (d && *d != value.shape()[static_cast<std::size_t>(i)]) {
      return fmt::format("shape {}, but dim {} must be {} ({})", shape_str(value.shape()), i, *d,
                         str());
    }
  }
  if (value.device() != device) {
    return fmt::format("device {}, expected {}", value.device().str(), device.str());
  }
  return "";
}

std::string static_shape_str(const StaticShape& dims) {
  std::string out = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) out += ", ";
    out += dims[i] ? std::to_string(*dims[i]) : std::string("?");
  }
  return out + "]";
}

std::string TensorType::str(bool always_layout) const {
  std::string s = fmt::format("{}{}", dtype_name(dtype), static_shape_str(dims));
  if (!device.is_cpu()) s += "@" + device.str();
  if (always_layout || layout != Layout::logical) s += "{" + layout_name(layout, rank()) + "}";
  return s;
}

}  // namespace convgraph
