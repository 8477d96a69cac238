#include "convgraph/runtime/tensor.hpp"

#include "convgraph/runtime/device_backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "convgraph/base/checked_math.hpp"
#include "convgraph/runtime/strided.hpp"

namespace convgraph {

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw ValueError(fmt::format("negative dimension in shape {}", shape_str(shape)));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) {
      throw ValueError(
          fmt::format("shape {} has more elements than int64 can count", shape_str(shape)));
    }
    n *= d;
  }
  return n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

std::string view_bounds_problem(const Shape& shape, const Strides& strides, std::int64_t offset,
                                std::int64_t storage_elements) {
  if (shape.size() != strides.size()) {
    return fmt::format("shape {} has {} dims but {} strides are given", shape_str(shape),
                       shape.size(), strides.size());
  }
  const std::string view = fmt::format("shape {}, strides ({}), offset {}", shape_str(shape),
                                       fmt::join(strides, ", "), offset);
  bool empty = false;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return fmt::format("{}: dim {} is negative", view, i);
    empty = empty || shape[i] == 0;
  }
  // An empty view reads no element, whatever its offset (a slice past the end of an empty axis,
  // then padded, has one beyond the buffer): nothing to check.
  if (empty) return "";
  // The lowest and highest element read, relative to OFFSET: each axis adds (dim - 1) * stride
  // to one end.
  std::optional<std::int64_t> low = 0, high = 0;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    const std::optional<std::int64_t> extent = checked_mul(shape[i] - 1, strides[i]);
    if (!extent) {
      return fmt::format("{}: dim {} spans more elements than int64 can count", view, i);
    }
    if (*extent < 0) {
      low = checked_add(low, *extent);
    } else {
      high = checked_add(high, *extent);
    }
  }
  const std::optional<std::int64_t> first = checked_add(low, offset);
  const std::optional<std::int64_t> last = checked_add(high, offset);
  if (!first || !last) return fmt::format("{}: reaches beyond what int64 can count", view);
  if (*first < 0 || *last >= storage_elements) {
    return fmt::format(
        "{}: reads elements {} to {}, outside the buffer of {} elements "
        "(valid: 0 to {})",
        view, *first, *last, storage_elements, storage_elements - 1);
  }
  return "";
}

namespace {
thread_local std::shared_ptr<AllocationMeter> t_meter;
}  // namespace

std::int64_t AllocationMeter::live_bytes(Device device) const {
  return live_[index(device)].load(std::memory_order_relaxed);
}

std::int64_t AllocationMeter::peak_bytes(Device device) const {
  return peak_[index(device)].load(std::memory_order_relaxed);
}

std::int64_t AllocationMeter::step_peak_bytes(Device device) const {
  return step_peak_[index(device)].load(std::memory_order_relaxed);
}

void AllocationMeter::start_step() {
  for (int i = 0; i < 2; ++i) {
    step_peak_[i].store(live_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

void AllocationMeter::add(Device device, std::int64_t bytes) {
  const int i = index(device);
  const std::int64_t now = live_[i].fetch_add(bytes, std::memory_order_relaxed) + bytes;
  for (std::atomic<std::int64_t>* peak : {&peak_[i], &step_peak_[i]}) {
    std::int64_t seen = peak->load(std::memory_order_relaxed);
    while (now > seen && !peak->compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }
}

void AllocationMeter::remove(Device device, std::int64_t bytes) {
  live_[index(device)].fetch_sub(bytes, std::memory_order_relaxed);
}

ScopedAllocationMeter::ScopedAllocationMeter(std::shared_ptr<AllocationMeter> meter)
    : previous_(std::exchange(t_meter, std::move(meter))) {}

ScopedAllocationMeter::~ScopedAllocationMeter() {
  t_meter = std::move(previous_);
}

Storage::Storage(std::size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
  if (t_meter != nullptr) {
    meter_ = t_meter;
    meter_->add(device_, static_cast<std::int64_t>(bytes_));
  }
}

Storage::Storage(void* data, std::size_t bytes, Device device, std::shared_ptr<const void> owner)
    : data_(data), bytes_(bytes), device_(device), owner_(std::move(owner)) {}

Storage::~Storage() {
  if (allocator_ != nullptr) allocator_->deallocate(data_, bytes_);
  if (meter_ != nullptr) meter_->remove(device_, static_cast<std::int64_t>(bytes_));
}

Tensor Tensor::wrap(std::shared_ptr<Storage> storage, DType dtype, const Shape& shape) {
  const std::int64_t n = shape_numel(shape);
  const std::size_t elem = dtype_size(dtype);
  if (storage == nullptr ||
      static_cast<std::uint64_t>(n) > storage->bytes() / static_cast<std::uint64_t>(elem)) {
    throw ValueError(
        fmt::format("Tensor::wrap: a tensor of shape {} and dtype {} needs {} bytes; "
                    "the buffer has {}",
                    shape_str(shape), dtype_name(dtype), n * static_cast<std::int64_t>(elem),
                    storage == nullptr ? 0 : storage->bytes()));
  }
  Tensor t;
  t.storage_ = std::move(storage);
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::empty(DType dtype, const Shape& shape, Device device) {
  const std::int64_t n = shape_numel(shape);
  const std::size_t elem = dtype_size(dtype);
  if (static_cast<std::uint64_t>(n) > std::numeric_limits<std::size_t>::max() / 2 / elem) {
    throw MemoryError(fmt::format("cannot allocate a tensor of shape {} and dtype {}: too large",
                                  shape_str(shape), dtype_name(dtype)));
  }
  Tensor t;
  t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(n) * elem, device);
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::zeros(DType dtype, const Shape& shape) {
  Tensor t = empty(dtype, shape);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(DType dtype, const Shape& shape, double value) {
  Tensor t = empty(dtype, shape);
  t.fill(value);
  return t;
}

Tensor Tensor::scalar(DType dtype, double value) {
  return full(dtype, {}, value);
}

std::int64_t Tensor::dim(int axis) const {
  const int r = rank();
  const int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) {
    throw ValueError(fmt::format("axis {} is out of range for a tensor of rank {}", axis, r));
  }
  return shape_[static_cast<std::size_t>(a)];
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape_) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  std::int64_t expected = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (shape_[i] == 0) return true;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void Tensor::check_access(DType requested) const {
  if (!defined()) throw ValueError("access to the data of an undefined tensor");
  if (requested != dtype_) {
    throw TypeError(fmt::format("tensor data requested as {} but the tensor holds {}",
                                dtype_name(requested), dtype_name(dtype_)));
  }
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, std::int64_t offset) const {
  if (!defined()) throw ValueError("Tensor::as_strided: the tensor is undefined");
  const std::string problem = view_bounds_problem(shape, strides, offset, storage_elements());
  if (!problem.empty()) throw ValueError("Tensor::as_strided: " + problem);
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = strides;
  t.offset_ = offset;
  return t;
}

std::int64_t Tensor::storage_elements() const {
  return static_cast<std::int64_t>(storage_->bytes() / dtype_size(dtype_));
}

std::string Tensor::out_of_storage() const {
  if (!defined()) return "";
  return view_bounds_problem(shape_, strides_, offset_, storage_elements());
}

std::size_t Tensor::axis_index(const char* who, int axis) const {
  const int r = rank();
  if (axis < -r || axis >= r) {
    throw ValueError(
        fmt::format("{}: axis {} is out of range for a tensor of rank {} (shape {}); "
                    "expected {} to {}",
                    who, axis, r, shape_str(shape_), -r, r - 1));
  }
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

Tensor Tensor::permute(const std::vector<int>& perm) const {
  if (perm.size() != shape_.size()) {
    throw ValueError(
        fmt::format("permute: {} axes given for a tensor of rank {}", perm.size(), shape_.size()));
  }
  Shape shape(perm.size());
  Strides strides(perm.size());
  std::vector<bool> seen(perm.size(), false);
  for (std::size_t i = 0; i < perm.size(); ++i) {
    const int p = perm[i];
    if (p < 0 || p >= rank() || seen[static_cast<std::size_t>(p)]) {
      throw ValueError(fmt::format("permute: [{}] is not a permutation of 0..{}",
                                   fmt::join(perm, ", "), rank() - 1));
    }
    seen[static_cast<std::size_t>(p)] = true;
    shape[i] = shape_[static_cast<std::size_t>(p)];
    strides[i] = strides_[static_cast<std::size_t>(p)];
  }
  return as_strided(shape, strides, offset_);
}

Tensor Tensor::slice(int axis, std::int64_t start, std::int64_t stop, std::int64_t step) const {
  const std::size_t a = axis_index("Tensor::slice", axis);
  const std::int64_t dim = shape_[a];
  if (step == 0) {
    throw ValueError(
        fmt::format("Tensor::slice: step 0 on axis {} (shape {}); the step must be "
                    "non-zero",
                    axis, shape_str(shape_)));
  }
  const std::int64_t low = step > 0 ? 0 : -1, high = step > 0 ? dim : dim - 1;
  if (start < low || start > high || stop < low || stop > high) {
    throw ValueError(fmt::format(
        "Tensor::slice: start {}, stop {} are out of range for axis {} of size {} (shape {}) "
        "with step {}; expected both in [{}, {}]",
        start, stop, axis, dim, shape_str(shape_), step, low, high));
  }
  Shape shape = shape_;
  Strides strides = strides_;
  // Within the bounds above the count cannot overflow (|start - stop| <= dim + 1); the stride
  // only grows where two or more elements are taken, and is checked all the same.
  std::int64_t count = 0;
  if (step > 0 && stop > start) count = (stop - start - 1) / step + 1;
  if (step < 0 && start > stop) {
    count = step == std::numeric_limits<std::int64_t>::min() ? 1 : (start - stop - 1) / -step + 1;
  }
  shape[a] = count;
  // One element or none: the stride is never stepped, and STEP may be anything.
  const std::optional<std::int64_t> stride =
      count <= 1 ? strides_[a] : checked_mul(strides_[a], step);
  if (!stride) {
    throw ValueError(
        fmt::format("Tensor::slice: step {} on axis {} (stride {}) gives a stride "
                    "beyond what int64 can count",
                    step, axis, strides_[a]));
  }
  strides[a] = *stride;
  const std::int64_t offset = count > 0 ? offset_ + start * strides_[a] : offset_;
  return as_strided(shape, strides, offset);
}

Tensor Tensor::select(int axis, std::int64_t index) const {
  const std::size_t a = axis_index("Tensor::select", axis);
  if (index < 0 || index >= shape_[a]) {
    throw ValueError(fmt::format(
        "Tensor::select: index {} is out of range for axis {} of size {} (shape {}); expected "
        "{}",
        index, axis, shape_[a], shape_str(shape_),
        shape_[a] == 0 ? std::string("none: the axis is empty")
                       : fmt::format("0 to {}", shape_[a] - 1)));
  }
  Shape shape = shape_;
  Strides strides = strides_;
  const std::int64_t offset = offset_ + index * strides_[a];
  shape.erase(shape.begin() + static_cast<std::ptrdiff_t>(a));
  strides.erase(strides.begin() + static_cast<std::ptrdiff_t>(a));
  return as_strided(shape, strides, offset);
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape_numel(shape) != numel()) {
    throw ShapeError(fmt::format("cannot reshape a tensor of shape {} ({} elements) to {}",
                                 shape_str(shape_), numel(), shape_str(shape)));
  }
  const Tensor c = contiguous();
  return c.as_strided(shape, contiguous_strides(shape), c.offset_);
}

Tensor Tensor::unsqueeze(int axis) const {
  const int r = rank();
  if (axis < -r - 1 || axis > r) {
    throw ValueError(
        fmt::format("Tensor::unsqueeze: axis {} is out of range for a tensor of rank "
                    "{} (shape {}); expected {} to {}",
                    axis, r, shape_str(shape_), -r - 1, r));
  }
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + r + 1 : axis);
  Shape shape = shape_;
  Strides strides = strides_;
  shape.insert(shape.begin() + static_cast<std::ptrdiff_t>(a), 1);
  strides.insert(strides.begin() + static_cast<std::ptrdiff_t>(a), 0);
  return as_strided(shape, strides, offset_);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, shape_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::cast(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(dtype, shape_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor t = empty(dtype_, shape_, target);
  copy_between_devices(t, *this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape_ != shape_) {
    throw ShapeError(fmt::format("copy: source shape {} differs from destination shape {}",
                                 shape_str(src.shape_), shape_str(shape_)));
  }
  if (!device().is_cpu() || !src.device().is_cpu()) {
    copy_between_devices(*this, src);
    return;
  }
  dispatch_dtype(dtype_, [&]<typename D>() {
    dispatch_dtype(src.dtype_, [&]<typename S>() {
      D* dst = static_cast<D*>(storage_->data());
      const S* from = static_cast<const S*>(src.storage_->data());
      for_each_run<2>(shape_, {&strides_, &src.strides_},
                      [&](const std::array<std::int64_t, 2>& off, std::int64_t n,
                          const std::array<std::int64_t, 2>& inner) {
                        D* d = dst + offset_ + off[0];
                        const S* s = from + src.offset_ + off[1];
                        if constexpr (std::is_same_v<D, S>) {
                          if (inner[0] == 1 && inner[1] == 1) {
                            std::memcpy(d, s, static_cast<std::size_t>(n) * sizeof(D));
                            return;
                          }
                          // A broadcast source (Alloc of a smaller value): one value per run.
                          if (inner[0] == 1 && inner[1] == 0) {
                            std::fill_n(d, n, *s);
                            return;
                          }
                        }
                        for (std::int64_t i = 0; i < n; ++i) {
                          if constexpr (std::is_same_v<D, bool>) {
                            d[i * inner[0]] =
                                convert<compute_t<S>>(s[i * inner[1]]) != compute_t<S>(0);
                          } else {
                            d[i * inner[0]] = convert<D>(convert<compute_t<S>>(s[i * inner[1]]));
                          }
                        }
                      });
    });
  });
}

void Tensor::fill(double value) {
  if (!device().is_cpu()) {
    fill_on_device(*this, value);
    return;
  }
  dispatch_dtype(dtype_, [&]<typename T>() {
    const T v = std::is_same_v<T, bool> ? static_cast<T>(value != 0.0) : convert<T>(value);
    T* base = static_cast<T*>(storage_->data());
    for_each_run<1>(shape_, {&strides_},
                    [&](const std::array<std::int64_t, 1>& off, std::int64_t n,
                        const std::array<std::int64_t, 1>& inner) {
                      T* d = base + offset_ + off[0];
                      for (std::int64_t i = 0; i < n; ++i) d[i * inner[0]] = v;
                    });
  });
}

std::string Tensor::to_string(std::int64_t max_elements) const {
  if (!defined()) return "Tensor(undefined)";
  const auto values = to_vector<double>();
  std::string body;
  const std::int64_t n =
      std::min<std::int64_t>(static_cast<std::int64_t>(values.size()), max_elements);
  for (std::int64_t i = 0; i < n; ++i) {
    if (i) body += ", ";
    body += fmt::format("{:.6g}", values[static_cast<std::size_t>(i)]);
  }
  if (n < static_cast<std::int64_t>(values.size())) body += ", ...";
  return fmt::format("Tensor({}{}, [{}])", dtype_name(dtype_), shape_str(shape_), body);
}

bool tensor_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return dispatch_dtype(a.dtype(), [&]<typename T>() {
    const T* pa = ca.data<T>();
    const T* pb = cb.data<T>();
    for (std::int64_t i = 0; i < ca.numel(); ++i) {
      if (convert<compute_t<T>>(pa[i]) != convert<compute_t<T>>(pb[i])) return false;
    }
    return true;
  });
}

}  // namespace convgraph
