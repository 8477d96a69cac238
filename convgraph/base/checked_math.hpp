// Overflow-checked int64 arithmetic for sizes, strides, offsets and convolution geometry computed
// from values a user controls. Each returns std::nullopt where the exact result does not fit in
// int64 (signed overflow would be undefined behaviour), so that the caller can report which of
// its parameters is too large.
#pragma once

#include <cstdint>
#include <optional>

namespace convgraph {

inline std::optional<std::int64_t> checked_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<std::int64_t> checked_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The first argument of a chain of checked operations may itself be a failed one.
inline std::optional<std::int64_t> checked_add(std::optional<std::int64_t> a, std::int64_t b) {
  return a ? checked_add(*a, b) : std::nullopt;
}
inline std::optional<std::int64_t> checked_sub(std::optional<std::int64_t> a, std::int64_t b) {
  return a ? checked_sub(*a, b) : std::nullopt;
}
inline std::optional<std::int64_t> checked_mul(std::optional<std::int64_t> a, std::int64_t b) {
  return a ? checked_mul(*a, b) : std::nullopt;
}

}  // namespace convgraph
