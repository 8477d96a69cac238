#include "convgraph/graph/shared.hpp"

#include <fmt/format.h>

#include <utility>

namespace convgraph {

Tensor SharedValue::load() const {
  const std::lock_guard<std::mutex> lock(mutex);
  return value;
}

void SharedValue::store(Tensor new_value) {
  Tensor old;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    old = std::exchange(value, std::move(new_value));
  }
  // OLD's buffer, when this was its last holder, is freed here, outside the lock.
}

bool SharedValue::held_only_by(long holders) const {
  const std::lock_guard<std::mutex> lock(mutex);
  return value.defined() && value.storage().use_count() == holders;
}

void SharedValue::store_copy(const Tensor& staged, long holders) {
  Tensor old;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (value.defined() && value.storage().use_count() == holders) {
      value.copy_from(staged);
      return;
    }
    // Somebody borrowed the old value (get_value(true), a call in flight): it keeps it.
    old = std::exchange(value, staged.clone());
  }
}

void SharedValue::check(const Tensor& v, const std::string& who) const {
  if (!v.defined())
    throw ValueError(fmt::format("{}: expected {}, got no tensor", who, type.str()));
  if (v.dtype() != type.dtype) {
    throw TypeError(fmt::format("{}: expected {}, got a value of dtype {} ({})", who, type.str(),
                                dtype_name(v.dtype()), TensorType::of(v).str()));
  }
  if (v.device() != type.device) {
    throw TypeError(
        fmt::format("{}: expected {}, got a value on {}", who, type.str(), v.device().str()));
  }
  if (TensorType::of(v).dims != type.dims) {
    throw ShapeError(fmt::format("{}: expected {}, got a value of shape {}", who, type.str(),
                                 shape_str(v.shape())));
  }
  // A copy of a view reaching past its buffer would read past it.
  const std::string outside = v.out_of_storage();
  if (!outside.empty()) {
    throw ValueError(
        fmt::format("{}: the tensor's view reaches outside its buffer ({})", who, outside));
  }
}

SharedVariable::SharedVariable(const Variable& var) : Variable(var) {
  if (!var.defined() || !var.is_shared()) {
    throw ValueError(fmt::format("{} is not a shared variable (made with shared())", var.label()));
  }
}

const SharedValue& SharedVariable::container() const {
  return *container_ptr();
}

const std::shared_ptr<SharedValue>& SharedVariable::container_ptr() const {
  if (!defined() || !is_shared()) {
    throw ValueError("use of an empty SharedVariable handle (default-constructed)");
  }
  return get()->shared;
}

Tensor SharedVariable::get_value(bool borrow) const {
  Tensor value = container().load();
  return borrow ? value : value.clone();
}

void SharedVariable::set_value(const Tensor& value) {
  const std::shared_ptr<SharedValue>& c = container_ptr();
  c->check(value, fmt::format("set_value of shared variable {}", label()));
  c->store(value.clone());
}

SharedVariable shared(std::string name, const Tensor& value) {
  if (name.empty()) throw ValueError("shared(): a shared variable needs a name");
  if (!value.defined()) {
    throw ValueError(fmt::format("shared('{}'): the tensor is undefined", name));
  }
  auto container = std::make_shared<SharedValue>();
  container->type = TensorType::of(value);
  container->check(value, fmt::format("shared('{}')", name));
  container->value = value.clone();
  Variable var = make_input(container->type, std::move(name));
  var.mutable_data()->shared = std::move(container);
  return SharedVariable(var);
}

}  // namespace convgraph
