// Dim: one dimension in shape inference. It is a known constant, a symbolic int64 scalar
// Variable (computed by the graph at run time), or unknown (when types alone are inferred and no
// graph should be built). Arithmetic on Dims is declared in ops/tensor/shape.hpp, which builds
// graph nodes for symbolic values and folds constants.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/graph/type.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

class Dim {
 public:
  Dim() = default;                                                   // unknown
  Dim(std::int64_t value) : kind_(Kind::constant), value_(value) {}  // NOLINT: implicit by design
  Dim(int value) : Dim(static_cast<std::int64_t>(value)) {}          // NOLINT
  // VAR must be a rank-0 int64 variable; a constant variable becomes a constant Dim.
  explicit Dim(Variable var);
  static Dim unknown() { return Dim(); }
  static Dim from_static(StaticDim d) { return d ? Dim(*d) : Dim(); }

  bool is_constant() const { return kind_ == Kind::constant; }
  bool is_symbolic() const { return kind_ == Kind::symbolic; }
  bool is_unknown() const { return kind_ == Kind::unknown; }
  // The constant value; throws ValueError when not constant.
  std::int64_t value() const;
  // The symbolic variable; throws ValueError when not symbolic.
  const Variable& variable() const;
  StaticDim to_static() const { return is_constant() ? StaticDim(value_) : std::nullopt; }
  // "7", "?" or the variable's label.
  std::string str() const;

 private:
  enum class Kind : unsigned char { unknown, constant, symbolic };
  Kind kind_ = Kind::unknown;
  std::int64_t value_ = 0;
  Variable var_;
};

using ShapeDims = std::vector<Dim>;

// The static shape of a type as Dims (unknown where unknown).
ShapeDims dims_of(const TensorType& type);
StaticShape to_static(const ShapeDims& dims);

}  // namespace convgraph
