// Element types of tensors, their properties, promotion, and compile-time dispatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "convgraph/base/error.hpp"
#include "convgraph/base/half.hpp"

namespace convgraph {

enum class DType : std::uint8_t { float16, float32, float64, int8, int32, int64, boolean };

inline constexpr DType kAllDTypes[] = {DType::float16, DType::float32, DType::float64, DType::int8,
                                       DType::int32,   DType::int64,   DType::boolean};

// "float32", "int64", "bool", ...
std::string_view dtype_name(DType dtype);
// Parses the names of dtype_name, plus the aliases f16/f32/f64/i8/i32/i64/half/float/double.
std::optional<DType> parse_dtype(std::string_view name);
// Like parse_dtype, but throws ValueError naming WHAT and listing the accepted names.
DType parse_dtype_or_throw(std::string_view name, std::string_view what);

std::size_t dtype_size(DType dtype);
constexpr bool is_float(DType d) {
  return d == DType::float16 || d == DType::float32 || d == DType::float64;
}
constexpr bool is_integer(DType d) {
  return d == DType::int8 || d == DType::int32 || d == DType::int64;
}
constexpr bool is_bool(DType d) {
  return d == DType::boolean;
}

// The dtype both operands are computed in: bool < integers < floats; within a kind the wider one
// wins; an integer combined with a float gives that float (as in PyTorch, not numpy).
DType promote(DType a, DType b);

// The C++ storage type of a dtype.
template <DType D>
struct StorageOf;
template <>
struct StorageOf<DType::float16> {
  using type = Half;
};
template <>
struct StorageOf<DType::float32> {
  using type = float;
};
template <>
struct StorageOf<DType::float64> {
  using type = double;
};
template <>
struct StorageOf<DType::int8> {
  using type = std::int8_t;
};
template <>
struct StorageOf<DType::int32> {
  using type = std::int32_t;
};
template <>
struct StorageOf<DType::int64> {
  using type = std::int64_t;
};
template <>
struct StorageOf<DType::boolean> {
  using type = bool;
};
template <DType D>
using storage_t = typename StorageOf<D>::type;

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<Half>() {
  return DType::float16;
}
template <>
constexpr DType dtype_of<float>() {
  return DType::float32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::float64;
}
template <>
constexpr DType dtype_of<std::int8_t>() {
  return DType::int8;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::int32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::int64;
}
template <>
constexpr DType dtype_of<bool>() {
  return DType::boolean;
}

// The type arithmetic on T is carried out in: float for Half, T otherwise.
template <typename T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<Half> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeOf<T>::type;

// Converts between storage and compute types (and between any two arithmetic types).
template <typename To, typename From>
inline To convert(From value) {
  if constexpr (std::is_same_v<From, Half>) {
    return convert<To>(to_float(value));
  } else if constexpr (std::is_same_v<To, Half>) {
    return Half(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

// Calls fn.template operator()<T>() with T the storage type of DTYPE:
//   dispatch_dtype(t.dtype(), [&]<typename T>() { ... });
template <typename Fn>
decltype(auto) dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float16:
      return fn.template operator()<Half>();
    case DType::float32:
      return fn.template operator()<float>();
    case DType::float64:
      return fn.template operator()<double>();
    case DType::int8:
      return fn.template operator()<std::int8_t>();
    case DType::int32:
      return fn.template operator()<std::int32_t>();
    case DType::int64:
      return fn.template operator()<std::int64_t>();
    case DType::boolean:
      return fn.template operator()<bool>();
  }
  throw ValueError("dispatch_dtype: invalid dtype value");
}

}  // namespace convgraph
