#include "convgraph/runtime/step_memory.hpp"

#include <utility>

namespace convgraph {

namespace {
thread_local ScopedStepWorkspace* t_step = nullptr;
}  // namespace

Tensor output_buffer(const Tensor& given, DType dtype, const Shape& shape, Device device) {
  if (given.defined() && given.dtype() == dtype && given.shape() == shape &&
      given.device() == device && given.is_contiguous()) {
    return given;
  }
  return Tensor::empty(dtype, shape, device);
}

std::int64_t workspace_piece_bytes(std::int64_t bytes) {
  return (bytes + 63) / 64 * 64;
}

Workspace::Workspace(std::int64_t bytes, Device device) : device_(device) {
  if (bytes <= 0) return;
  if (t_step != nullptr) {
    t_step->requested_ += bytes;
    if (!t_step->taken_ && t_step->block_ != nullptr &&
        static_cast<std::int64_t>(t_step->block_->bytes()) >= bytes &&
        t_step->block_->device() == device) {
      t_step->taken_ = true;
      storage_ = t_step->block_;
      planned_ = true;
      return;
    }
  }
  if (t_step != nullptr) t_step->allocated_ += bytes;
  storage_ = Tensor::empty(DType::int8, {bytes}, device).storage();
}

Tensor Workspace::take(DType dtype, const Shape& shape) {
  const std::int64_t bytes = shape_numel(shape) * static_cast<std::int64_t>(dtype_size(dtype));
  const std::int64_t piece = workspace_piece_bytes(bytes);
  if (storage_ == nullptr || used_ + piece > static_cast<std::int64_t>(storage_->bytes())) {
    return Tensor::empty(dtype, shape, device_);
  }
  auto view = std::make_shared<Storage>(static_cast<char*>(storage_->data()) + used_,
                                        static_cast<std::size_t>(bytes), device_, storage_);
  used_ += piece;
  return Tensor::wrap(std::move(view), dtype, shape);
}

ScopedStepWorkspace::ScopedStepWorkspace(std::shared_ptr<Storage> block)
    : block_(std::move(block)), previous_(t_step) {
  t_step = this;
}

ScopedStepWorkspace::~ScopedStepWorkspace() {
  t_step = previous_;
}

}  // namespace convgraph
