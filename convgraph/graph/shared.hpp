// Shared variables, as Theano's theano.shared: graph inputs that hold their own value. A compiled
// function reads the value at each call without the caller passing it, and may replace it after
// the call (CompileOptions::updates, planner/compile.hpp). Typical use: the weights of a network
// that a training step updates.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "convgraph/graph/type.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// The container of a shared variable's value, shared by the user's handle, the copies of the graph
// that compiled functions hold, and those functions. Its type never changes: the first value's
// dtype, device and full shape.
struct SharedValue {
  TensorType type;
  // Guards VALUE: a read, a write and a call's replacement of it each happen whole.
  mutable std::mutex mutex;
  Tensor value;

  // A handle on the tensor held now (no copy).
  Tensor load() const;
  // Holds VALUE from now on (no copy, no check).
  void store(Tensor value);
  // Whether the held buffer has HOLDERS holders in all (this container and HOLDERS - 1 that the
  // caller knows of), so that nobody else would see a write into it.
  bool held_only_by(long holders) const;
  // Copies STAGED (of this variable's type) into the held buffer when it has HOLDERS holders in
  // all (as held_only_by), else holds a copy of STAGED in a new buffer; either way, under the
  // lock, so that a reader sees the old value or the new one whole.
  void store_copy(const Tensor& staged, long holders);
  // Checks that VALUE may be held (dtype, device and shape of TYPE, a view inside its buffer);
  // otherwise throws TypeError (dtype, device), ShapeError (shape) or ValueError (no tensor, a
  // view outside its buffer): "WHO: expected float32[3, 4], got a value of shape [3, 5]".
  void check(const Tensor& value, const std::string& who) const;
};

// A Variable whose value lives with it. Usable wherever a Variable is (in expressions, as wrt of
// grad(), in debugprint); it must not be given as an explicit input of compile().
class SharedVariable : public Variable {
 public:
  SharedVariable() = default;
  // A handle on VAR, which must be a shared variable (ValueError naming it otherwise).
  explicit SharedVariable(const Variable& var);

  // The value now. A copy unless BORROW, as in Theano: with BORROW the tensor held is returned, and
  // writing into it writes into the shared variable (a call with updates replaces the value held,
  // so a borrowed tensor keeps the old value).
  Tensor get_value(bool borrow = false) const;
  // Replaces the value with a copy of VALUE (the caller's tensor is never held). VALUE must have
  // the variable's dtype and device (TypeError) and shape (ShapeError); the message names the
  // variable, its type and what was given.
  void set_value(const Tensor& value);
  // The declared type: dtype, full static shape and device of the first value.
  const TensorType& value_type() const { return container().type; }
  const SharedValue& container() const;
  const std::shared_ptr<SharedValue>& container_ptr() const;
};

// A shared variable named NAME holding a copy of VALUE; its type is VALUE's dtype, device and
// full shape. ValueError for an undefined tensor, an empty name or a view outside its buffer.
SharedVariable shared(std::string name, const Tensor& value);

}  // namespace convgraph
