#include "convgraph/graph/dim.hpp"

#include <fmt/format.h>

namespace convgraph {

Dim::Dim(Variable var) {
  if (!var.defined()) return;  // unknown
  if (var.ndim() != 0 || !is_integer(var.dtype())) {
    throw TypeError(fmt::format("a symbolic dimension must be an integer scalar; {} has type {}",
                                var.label(), var.type().str()));
  }
  if (var.is_constant()) {
    kind_ = Kind::constant;
    value_ = var.constant_value().item<std::int64_t>();
  } else {
    kind_ = Kind::symbolic;
    var_ = std::move(var);
  }
}

std::int64_t Dim::value() const {
  if (!is_constant()) throw ValueError(fmt::format("dimension {} is not a constant", str()));
  return value_;
}

const Variable& Dim::variable() const {
  if (!is_symbolic()) throw ValueError(fmt::format("dimension {} is not symbolic", str()));
  return var_;
}

std::string Dim::str() const {
  switch (kind_) {
    case Kind::constant:
      return std::to_string(value_);
    case Kind::symbolic:
      return var_.label();
    case Kind::unknown:
      return "?";
  }
  return "?";
}

ShapeDims dims_of(const TensorType& type) {
  ShapeDims out;
  out.reserve(type.dims.size());
  for (const auto& d : type.dims) out.push_back(Dim::from_static(d));
  return out;
}

StaticShape to_static(const ShapeDims& dims) {
  StaticShape out;
  out.reserve(dims.size());
  for (const auto& d : dims) out.push_back(d.to_static());
  return out;
}

}  // namespace convgraph
