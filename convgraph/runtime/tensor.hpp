// Tensor: a typed, strided view of a reference-counted buffer. Copies of a Tensor share the
// buffer; views (slices, permutations, reshapes of contiguous data) share it too. Shapes, strides
// and offsets are int64 and counted in elements.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/base/dtype.hpp"
#include "convgraph/base/error.hpp"
#include "convgraph/runtime/allocator.hpp"
#include "convgraph/runtime/device.hpp"

namespace convgraph {

using Shape = std::vector<std::int64_t>;
using Strides = std::vector<std::int64_t>;

// "[2, 3, 4]"
std::string shape_str(const Shape& shape);
// Product of the dims; throws ValueError on a negative dim or on overflow.
std::int64_t shape_numel(const Shape& shape);
// Row-major (C order) strides of SHAPE.
Strides contiguous_strides(const Shape& shape);

// Empty when a view of SHAPE, STRIDES (any sign) and OFFSET reads only elements
// [0, STORAGE_ELEMENTS) of its buffer, else what is wrong: the element range it reaches, or the
// size too large to compute (the arithmetic is overflow-checked). An empty view (a zero dim)
// reads nothing; its offset must still lie in [0, STORAGE_ELEMENTS].
std::string view_bounds_problem(const Shape& shape, const Strides& strides, std::int64_t offset,
                                std::int64_t storage_elements);

// Counts the bytes of the buffers allocated while it is the current meter of the allocating
// thread (ScopedAllocationMeter), until each is freed, and the peak of that count per device kind.
// A call of a Function measures its peak with one: its intermediates, outputs and the temporaries
// of its kernels. Buffers allocated on other threads (inside a kernel's parallel region) are not
// seen.
class AllocationMeter {
 public:
  std::int64_t live_bytes(Device device) const;
  std::int64_t peak_bytes(Device device) const;
  // The peak since the last start_step() (the live bytes then, at least).
  std::int64_t step_peak_bytes(Device device) const;
  void start_step();
  void add(Device device, std::int64_t bytes);
  void remove(Device device, std::int64_t bytes);

 private:
  // CPU, then devices: [0] CPU, [1] any other device (one device per plan in practice).
  static int index(Device device) { return device.is_cpu() ? 0 : 1; }
  std::atomic<std::int64_t> live_[2] = {0, 0};
  std::atomic<std::int64_t> peak_[2] = {0, 0};
  std::atomic<std::int64_t> step_peak_[2] = {0, 0};
};

// Makes METER the current thread's meter until destroyed (the previous one is restored).
class ScopedAllocationMeter {
 public:
  explicit ScopedAllocationMeter(std::shared_ptr<AllocationMeter> meter);
  ~ScopedAllocationMeter();
  ScopedAllocationMeter(const ScopedAllocationMeter&) = delete;
  ScopedAllocationMeter& operator=(const ScopedAllocationMeter&) = delete;

 private:
  std::shared_ptr<AllocationMeter> previous_;
};

// A block of device memory. Owned: allocated from the device's allocator and returned to it when
// the last reference goes. Borrowed: a range of memory that OWNER keeps alive (a block of a
// memory-plan arena, runtime/memory_plan.hpp), never freed by the Storage itself.
class Storage {
 public:
  Storage(std::size_t bytes, Device device);
  Storage(void* data, std::size_t bytes, Device device, std::shared_ptr<const void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Whether this is a borrowed range (of an arena) rather than memory of its own.
  bool borrowed() const { return allocator_ == nullptr; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<AllocationMeter> meter_;  // the meter that counted it, if any
};

class Tensor {
 public:
  // An undefined tensor (defined() is false).
  Tensor() = default;

  // Uninitialised contents.
  static Tensor empty(DType dtype, const Shape& shape, Device device = Device::cpu());
  // A contiguous tensor of DTYPE and SHAPE over STORAGE from its first byte (which must hold it:
  // ValueError otherwise). The memory plan's outputs and workspaces are made so.
  static Tensor wrap(std::shared_ptr<Storage> storage, DType dtype, const Shape& shape);
  static Tensor zeros(DType dtype, const Shape& shape);
  static Tensor full(DType dtype, const Shape& shape, double value);
  // Copies VALUES (row-major, numel(SHAPE) of them) into a new tensor of T's dtype.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // A rank-0 tensor holding VALUE converted to DTYPE.
  static Tensor scalar(DType dtype, double value);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  std::int64_t offset() const { return offset_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Size of axis AXIS; negative axes count from the end.
  std::int64_t dim(int axis) const;
  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage_with(const Tensor& other) const {
    return storage_ != nullptr && storage_ == other.storage_;
  }

  // Typed pointer to element [0, ..., 0]; throws TypeError if T is not the dtype's storage type.
  template <typename T>
  T* data() const {
    check_access(dtype_of<T>());
    return static_cast<T*>(storage_->data()) + offset_;
  }
  void* raw_data() const {
    return static_cast<char*>(storage_->data()) +
           offset_ * static_cast<std::int64_t>(dtype_size(dtype_));
  }

  // The single element of a tensor with numel() == 1, converted to T.
  template <typename T>
  T item() const;
  double item_double() const { return item<double>(); }
  // All elements in row-major order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- views (share the buffer) ----
  // Each checks its arguments and throws ValueError naming the axis, the value and the valid
  // range; negative axes count from the end. No view reaches outside the buffer.

  // SHAPE (non-negative dims) with STRIDES (one per dim, any sign) from element OFFSET of the
  // buffer; every element it reads must lie in the buffer.
  Tensor as_strided(const Shape& shape, const Strides& strides, std::int64_t offset) const;
  // Axis I of the result is axis PERM[I] of this tensor.
  Tensor permute(const std::vector<int>& perm) const;
  // Elements START, START+STEP, ... before STOP along AXIS, bounds already normalised as Python
  // does: STEP != 0, START and STOP in [0, dim] for STEP > 0 and in [-1, dim - 1] for STEP < 0
  // (none when STOP is not past START in the step's direction).
  Tensor slice(int axis, std::int64_t start, std::int64_t stop, std::int64_t step) const;
  // Element INDEX (0 <= INDEX < dim) of AXIS, which the result no longer has.
  Tensor select(int axis, std::int64_t index) const;
  // A view when the data is contiguous, else a contiguous copy reshaped.
  Tensor reshape(const Shape& shape) const;
  // A new axis of size 1 at AXIS (0 <= AXIS <= rank; negative counts from rank + 1).
  Tensor unsqueeze(int axis) const;

  // Empty when this view reads only elements of its buffer, else what is wrong. Views made by
  // the functions above always do; Function checks its arguments anyway, as the one place where
  // tensors enter a plan.
  std::string out_of_storage() const;

  // ---- copies ----
  Tensor contiguous() const;  // this tensor if already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor cast(DType dtype) const;
  Tensor to(Device device) const;
  // Copies SRC (same shape; dtype converted) into this tensor's elements.
  void copy_from(const Tensor& src);
  void fill(double value);

  // Compact printing for debugging and error messages (elided past MAX_ELEMENTS).
  std::string to_string(std::int64_t max_elements = 64) const;

 private:
  void check_access(DType requested) const;
  // Elements of this tensor's dtype that its buffer holds.
  std::int64_t storage_elements() const;
  // The axis AXIS (negative: from the end) as an index, or ValueError naming WHO.
  std::size_t axis_index(const char* who, int axis) const;

  // Tests build views that the functions above refuse, to check that the refusal is repeated
  // where tensors enter a plan. Declared only: a test defines it.
  friend struct TensorTestAccess;

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::float32;
  Shape shape_;
  Strides strides_;
  std::int64_t offset_ = 0;
};

// Exact equality of dtype, shape and every element.
bool tensor_equal(const Tensor& a, const Tensor& b);

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  const std::int64_t n = shape_numel(shape);
  if (static_cast<std::int64_t>(values.size()) != n) {
    throw ShapeError("Tensor::from_vector: " + std::to_string(values.size()) +
                     " values given for shape " + shape_str(shape) + " (" + std::to_string(n) +
                     " elements expected)");
  }
  Tensor t = empty(dtype_of<T>(), shape);
  T* out = t.data<T>();
  for (std::int64_t i = 0; i < n; ++i) out[i] = values[static_cast<std::size_t>(i)];
  return t;
}

template <typename T>
T Tensor::item() const {
  if (!defined() || numel() != 1) {
    throw ShapeError("Tensor::item: expected a tensor with exactly one element, got shape " +
                     (defined() ? shape_str(shape_) : std::string("undefined")));
  }
  const Tensor c = to(Device::cpu());
  return dispatch_dtype(
      dtype_, [&]<typename S>() { return convert<T>(convert<compute_t<S>>(*c.data<S>())); });
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  const Tensor c = to(Device::cpu()).contiguous();
  std::vector<T> result(static_cast<std::size_t>(c.numel()));
  dispatch_dtype(dtype_, [&]<typename S>() {
    const S* p = c.data<S>();
    for (std::size_t i = 0; i < result.size(); ++i) {
      result[i] = convert<T>(convert<compute_t<S>>(p[i]));
    }
  });
  return result;
}

}  // namespace convgraph
