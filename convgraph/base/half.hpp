// IEEE 754 binary16 storage type with exact round-to-nearest-even conversions. Arithmetic on the
// CPU converts to float and back; kernels do that explicitly through to_float / from_float.
#pragma once

#include <cstdint>
#include <cstring>

namespace convgraph {

struct Half {
  std::uint16_t bits = 0;

  Half() = default;
  explicit Half(float value) : bits(from_float_bits(value)) {}
  explicit operator float() const { return to_float(bits); }

  static float to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t out;
    if (exponent == 0) {
      if (mantissa == 0) {
        out = sign;
      } else {  // subnormal half: normalise
        exponent = 127 - 15 + 1;
        while ((mantissa & 0x400u) == 0) {
          mantissa <<= 1;
          --exponent;
        }
        mantissa &= 0x3ffu;
        out = sign | (exponent << 23) | (mantissa << 13);
      }
    } else if (exponent == 0x1f) {
      out = sign | 0x7f800000u | (mantissa << 13);
    } else {
      out = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float result;
    std::memcpy(&result, &out, sizeof result);
    return result;
  }

  static std::uint16_t from_float_bits(float value) {
    std::uint32_t f;
    std::memcpy(&f, &value, sizeof f);
    const std::uint32_t sign = (f >> 16) & 0x8000u;
    const std::uint32_t abs = f & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or nan
      return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow to inf
    if (abs < 0x38800000u) {  // result is subnormal or zero
      if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);
      const std::uint32_t exponent = abs >> 23;
      const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
      const std::uint32_t shift = 126 - exponent;  // 14..24
      std::uint32_t half_mantissa = mantissa >> shift;
      const std::uint32_t remainder = mantissa & ((1u << shift) - 1);
      const std::uint32_t halfway = 1u << (shift - 1);
      if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
      return static_cast<std::uint16_t>(sign | half_mantissa);
    }
    std::uint32_t rebased = abs - ((127u - 15u) << 23);
    std::uint32_t half_bits = rebased >> 13;
    const std::uint32_t remainder = rebased & 0x1fffu;
    if (remainder > 0x1000u || (remainder == 0x1000u && (half_bits & 1u))) ++half_bits;
    return static_cast<std::uint16_t>(sign | half_bits);
  }
};

inline float to_float(Half h) {
  return Half::to_float(h.bits);
}

}  // namespace convgraph
