// The static memory plan of a Plan: where each intermediate value and each kernel workspace lives
// during a call, as an offset into one arena per device, computed from the values' lifetimes over
// the plan's step order. A call run with it allocates no intermediate buffer: each step finds its
// outputs (and its workspace) in the arena, and values that die early leave their place to later
// ones.
//
// What is planned, from the final Plan alone (whatever its steps, in-place pairs and updates):
//   - an output of a step whose kernel writes into given outputs (Kernel::writes_given_outputs)
//     and whose shape is known: static in the plan, or, for a plan made from an observed call,
//     determined by the shapes of the call's inputs (PlanStep::shape_follows_inputs);
//   - views (PlanStep::views) live in the buffer they view, which lives as long as they do;
//   - an in-place output (PlanStep::inplace) takes its input's block when nothing else reads that
//     block afterwards;
//   - a step's workspace (Kernel::workspace_bytes) lives during its step only.
//   - a shared variable's new value on the host (an update) lives in the arena from its step to
//     the end of the call, when nothing else returns its buffer: the Function copies it into the
//     variable's own buffer once the call has succeeded (PlannedValue::staged_update), so that
//     the new parameters of a training step take the place of activations dead by then instead
//     of adding to the arena.
// What is not, and is allocated at each call (and said so by str()): the function's results (a
// result must stay valid after the next call, so it has a buffer of its own), new values that
// share a buffer with a result or another new value, values viewing an argument or constant,
// values whose shape depends on input values, and outputs of kernels that allocate their own.
//
// Offsets: blocks are placed largest first, each at the lowest-waste gap between the blocks
// already placed whose lifetimes overlap its own (best fit), as TFLite's and XLA's heap simulators
// do; then, on plans of at most kGreedyVariantsLimit blocks, in variants of that order each at the
// lowest gap that holds it (first fit); and by a linear best fit in step order (a free list by
// size); the smallest arena wins. Past kGreedyLimit blocks only the linear method runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/runtime/plan.hpp"

namespace convgraph {

enum class ValuePlacement : std::uint8_t {
  external,   // an argument or constant: the caller's (or the plan's) memory
  arena,      // a block of the arena
  allocated,  // allocated at each call
  unused,     // a slot no step writes
};

struct PlannedValue {
  ValuePlacement placement = ValuePlacement::unused;
  // Arena: its block. A view or an in-place output shares its base's block.
  int block = -1;
  // The value's own bytes (0 for a view or an in-place output, which take no memory of their
  // own); -1 when its shape is not known.
  std::int64_t bytes = 0;
  std::optional<Shape> shape;
  // Of a view or an in-place output: the slot whose buffer it shares; -1 otherwise.
  int base = -1;
  // Allocated: why ("a result of the function", "its kernel allocates its outputs", ...).
  std::string reason;
  // Arena: a shared variable's new value (or a value sharing its buffer) kept in the arena to the
  // end of the call; execute() returns it there and the Function copies it into the variable's
  // buffer before the arena serves another call.
  bool staged_update = false;
};

struct MemoryBlock {
  int device = 0;  // index into MemoryPlan::devices
  std::int64_t offset = 0;
  std::int64_t bytes = 0;
  int first_step = 0;  // the lifetime, in steps, both ends included
  int last_step = 0;
  int slot = -1;            // the value it was made for, or -1 for a workspace
  int workspace_step = -1;  // the step whose workspace it is
};

struct MemoryPlan {
  // The devices with an arena, the CPU first; the arena of each, in bytes.
  std::vector<Device> devices;
  std::vector<std::int64_t> arena_bytes;
  // The most the arena's blocks hold at once, per device: no placement needs less (the arena's
  // excess over it is fragmentation).
  std::vector<std::int64_t> lower_bound_bytes;
  // The peak of a call: the arena plus the most that values allocated at each call hold at once,
  // per device.
  std::vector<std::int64_t> peak_bytes;
  // False when a value allocated at each call has an unknown size (the peak is then a floor), or
  // sizes of values whose shape depends on input values were taken from one observed call.
  bool peak_exact = true;
  // Whether the plan places anything (false with the flag memory_plan off: it then only counts).
  bool placed = true;
  std::vector<PlannedValue> values;  // per slot
  std::vector<MemoryBlock> blocks;
  // Per step: the block of its workspace (-1: none), the bytes it asked for (-1: unknown), and
  // the in-place pairs (output, input) whose output takes its input's block.
  std::vector<int> workspace_block;
  std::vector<std::int64_t> workspace_bytes;
  std::vector<std::vector<std::pair<int, int>>> inplace;
  // Per step: the measured bytes of temporaries its kernel did not announce (counted in the peak,
  // not placed); empty until a call has measured them.
  std::vector<std::int64_t> temporaries;

  // For DEVICE (0 when it has none).
  std::int64_t arena_bytes_on(Device device) const;
  std::int64_t peak_bytes_on(Device device) const;
  // How many values are in the arena and how many are allocated at each call.
  int planned_values() const;
  int allocated_values() const;
  // The plan as text: each arena and peak, then one line per value and workspace in step order
  // (its step, placement, offset, bytes, lifetime, and why a value is not planned).
  std::string str(const Plan& plan) const;
};

// What is known of the values of one kind of call.
struct MemoryPlanInput {
  // Per slot: its shape, where known (the outputs of steps; the rest is ignored).
  std::vector<std::optional<Shape>> shapes;
  // Per step: the workspace bytes its kernel takes, where known.
  std::vector<std::optional<std::int64_t>> workspaces;
  // Per slot: whether its shape may differ between calls of these input shapes (it depends on
  // input values; the shape above, if any, is one observed call's): such a value is allocated at
  // each call, counted at that size, and the peak is not exact.
  std::vector<bool> varies;
  // Per step: the host bytes its kernel took for temporaries it did not announce (beyond its
  // outputs and its workspace), measured in a call, then those of the end of the call (copies of
  // results); empty when not measured yet.
  std::vector<std::int64_t> temporaries;
  // Per slot: an output the op declares as a view that its kernel computed as a copy in a
  // measured call (a reshape of non-contiguous data): it has a buffer of its own.
  std::vector<bool> copied_views;
};

// The memory plan of PLAN for calls whose values have the shapes in INPUT. With PLACE false
// nothing goes into an arena: the plan only counts what each call allocates.
MemoryPlan build_memory_plan(const Plan& plan, const MemoryPlanInput& input, bool place = true);

// Blocks above this count are placed by the linear method; above the second, by the linear
// method and the classic greedy one only.
inline constexpr std::size_t kGreedyLimit = 4096;
inline constexpr std::size_t kGreedyVariantsLimit = 1024;

// The memory of one plan for one call at a time: one buffer per device, cut into the plan's
// blocks (each a Storage of its own, so that the executor can tell who holds which).
class Arena {
 public:
  explicit Arena(const MemoryPlan& plan);
  const std::shared_ptr<Storage>& block(int index) const {
    return blocks_[static_cast<std::size_t>(index)];
  }
  std::int64_t bytes(std::size_t device_index) const;

 private:
  std::vector<std::shared_ptr<Storage>> regions_;  // per device
  std::vector<std::shared_ptr<Storage>> blocks_;
};

// What execute() needs to run a plan with its memory plan, and what it records of a call made to
// build one.
struct MemoryRun {
  const MemoryPlan* plan = nullptr;  // with ARENA: outputs and workspaces go there
  const Arena* arena = nullptr;
  // When set: the shape of every value and the workspace bytes of every step, recorded by the
  // call.
  MemoryPlanInput* observe = nullptr;
  // When set: the bytes of temporaries each step's kernel took beyond its outputs and announced
  // workspace (MemoryPlanInput::temporaries), measured by the call.
  std::vector<std::int64_t>* temporaries = nullptr;
  // When set: which declared views the call got as copies (MemoryPlanInput::copied_views).
  std::vector<bool>* copied_views = nullptr;
  // Written by the call: outputs the plan placed that the kernel put elsewhere.
  std::int64_t misses = 0;
};

}  // namespace convgraph
