// Where a kernel's outputs and temporaries come from. A step of a plan run with a memory plan
// (runtime/memory_plan.hpp) finds its outputs allocated in the plan's arena, and may find a
// workspace block there too; a kernel that takes them through these helpers allocates nothing
// when they fit, and allocates as before when they do not (or when the step is not planned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// GIVEN when it is defined, of DTYPE, SHAPE and DEVICE and contiguous (the buffer the plan gave
// the output), else a fresh tensor of that dtype, shape and device.
Tensor output_buffer(const Tensor& given, DType dtype, const Shape& shape,
                     Device device = Device::cpu());

// Bytes a workspace piece of BYTES takes: pieces start on 64-byte boundaries.
std::int64_t workspace_piece_bytes(std::int64_t bytes);

// A kernel's temporary memory for one run, carved into pieces. Made with the total its
// Kernel::workspace_bytes announced: it is the step's planned workspace block when the executor
// set one of at least that size on this thread, else a buffer of its own.
class Workspace {
 public:
  explicit Workspace(std::int64_t bytes, Device device = Device::cpu());
  // The next piece: a contiguous tensor of DTYPE and SHAPE. Past the announced total it
  // allocates the piece on its own (a kernel whose announcement was short stays correct).
  Tensor take(DType dtype, const Shape& shape);
  // Whether the memory is the plan's.
  bool planned() const { return planned_; }

 private:
  std::shared_ptr<Storage> storage_;
  std::int64_t used_ = 0;
  Device device_;
  bool planned_ = false;
};

// Set by the executor around a kernel's run: the step's planned workspace block (null: none), and
// a record of the workspace bytes the kernel asked for (what a memory plan built from an observed
// call uses).
class ScopedStepWorkspace {
 public:
  explicit ScopedStepWorkspace(std::shared_ptr<Storage> block);
  ~ScopedStepWorkspace();
  ScopedStepWorkspace(const ScopedStepWorkspace&) = delete;
  ScopedStepWorkspace& operator=(const ScopedStepWorkspace&) = delete;
  // The bytes of the Workspaces made during the step (their announced totals), summed, and those
  // of them that were allocated rather than the planned block.
  std::int64_t requested_bytes() const { return requested_; }
  std::int64_t allocated_bytes() const { return allocated_; }

 private:
  friend class Workspace;
  std::shared_ptr<Storage> block_;
  bool taken_ = false;
  std::int64_t requested_ = 0;
  std::int64_t allocated_ = 0;
  ScopedStepWorkspace* previous_ = nullptr;
};

}  // namespace convgraph
