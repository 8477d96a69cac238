#include "convgraph/base/dtype.hpp"

#include <fmt/format.h>

namespace convgraph {

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return "float16";
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::int8:
      return "int8";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::boolean:
      return "bool";
  }
  return "invalid";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (DType d : kAllDTypes) {
    if (dtype_name(d) == name) return d;
  }
  if (name == "f16" || name == "half") return DType::float16;
  if (name == "f32" || name == "float") return DType::float32;
  if (name == "f64" || name == "double") return DType::float64;
  if (name == "i8") return DType::int8;
  if (name == "i32") return DType::int32;
  if (name == "i64") return DType::int64;
  if (name == "boolean") return DType::boolean;
  return std::nullopt;
}

DType parse_dtype_or_throw(std::string_view name, std::string_view what) {
  if (auto d = parse_dtype(name)) return *d;
  throw ValueError(fmt::format(
      "{}: unknown dtype '{}'; expected one of float16, float32, float64, int8, int32, int64, bool",
      what, name));
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return 2;
    case DType::float32:
      return 4;
    case DType::float64:
      return 8;
    case DType::int8:
      return 1;
    case DType::int32:
      return 4;
    case DType::int64:
      return 8;
    case DType::boolean:
      return 1;
  }
  return 0;
}

namespace {
int kind_rank(DType d) {
  return is_float(d) ? 2 : is_integer(d) ? 1 : 0;
}
}  // namespace

DType promote(DType a, DType b) {
  if (a == b) return a;
  const int ka = kind_rank(a), kb = kind_rank(b);
  if (ka != kb) return ka > kb ? a : b;
  return dtype_size(a) >= dtype_size(b) ? a : b;
}

}  // namespace convgraph
