// Plan: the scheduled steps of a compiled function over numbered value slots, and the executor
// that runs it. A Plan is independent of the graph it came from.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/base/dtype.hpp"
#include "convgraph/runtime/kernel.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// What a runtime value must look like: dtype, rank, and the dims known at compile time.
struct ValueSpec {
  std::string name;  // for error messages
  DType dtype = DType::float32;
  std::vector<std::optional<std::int64_t>> dims;
  Device device = Device::cpu();
};

struct PlanStep {
  std::shared_ptr<const Kernel> kernel;
  std::vector<int> inputs;   // slots read
  std::vector<int> outputs;  // slots written
  std::vector<ValueSpec> output_specs;
  // Slots whose last reader is this step: released after it runs (when allow_gc is on).
  std::vector<int> release_after;
  // In place: (output k, input j) pairs where output k may be computed into the buffer of
  // input j, which this step reads last and which is no argument, constant or result of the
  // function. At run time the executor hands the kernel input j's tensor as output k only when
  // nothing but the slot holds its buffer (no view of it in another slot, no shared variable's
  // container, no caller), it is contiguous and has the output's dtype; the kernel writes into it
  // or, when it does not fit, allocates as usual (runtime/kernel.hpp).
  std::vector<std::pair<int, int>> inplace;
  // (output k, input j) pairs where output k may be a view of input j (the op's view_map): the
  // memory plan keeps input j's buffer alive as long as the view.
  std::vector<std::pair<int, int>> views;
  // Per output: whether its shape follows from the shapes of the step's inputs alone (not from
  // their values), so that a memory plan made for one set of input shapes can place it.
  std::vector<bool> shape_follows_inputs;
  // The node as debugprint of the compiled graph shows it, for errors and profiles
  // ("Elemwise{add} [id C]"); OP_TEXT is its op alone ("Elemwise{add}"), which a kernel's own
  // message may already start with.
  std::string label;
  std::string op_text;
  // For profiles: what the node computes ("AbstractConv2d") and what runs it ("CorrMM", or
  // "perform" for an op's reference implementation).
  std::string op_name;
  std::string implementation;
  // The FLOPs of one run, from the shapes of its inputs and outputs; empty, or std::nullopt,
  // when the op does not count them. Only called when the function is profiled.
  std::function<std::optional<double>(const std::vector<Shape>&, const std::vector<Shape>&)> flops;
};

// A new value for an input held across calls (a shared variable): after a successful call, the
// value of output OUTPUT replaces that of input INPUT (indices into output_slots and input_slots).
struct PlanUpdate {
  int input = 0;
  int output = 0;
};

struct Plan {
  int num_slots = 0;
  std::vector<int> input_slots;
  std::vector<ValueSpec> input_specs;
  std::vector<int> output_slots;
  // The last NUM_SHARED_INPUTS inputs hold shared variables' values: the Function passes them to
  // execute() after the caller's arguments. The last UPDATES.size() outputs are their new values;
  // execute() returns them with the others (a value it returns never shares a buffer with an
  // input or constant) and the Function stores them once the call has succeeded.
  int num_shared_inputs = 0;
  std::vector<PlanUpdate> updates;
  // Inputs (indices into input_slots, shared variables' values) that a step may compute its
  // output into (PlanStep::inplace), the update of that shared variable, when the caller donates
  // the buffer for the call (execute()'s DONATED). Steps reading the old value all run before.
  std::vector<int> overwritable_inputs;
  std::vector<std::pair<int, Tensor>> constants;  // slot, value
  std::vector<PlanStep> steps;
  bool release_intermediates = true;
  // The `threads` flag of the configuration the plan was compiled with (0 = OpenMP's default):
  // its CPU kernels run with it, whatever the process-wide flag says at call time.
  std::int64_t threads = 0;
  // The devices other than the CPU that steps run on; execute() runs their work on streams.
  std::vector<Device> devices;
  // The flag memory_plan: whether calls run with a static memory plan (runtime/memory_plan.hpp).
  bool memory_plan = true;
};

// Per-call statistics, written by execute().
struct ExecutionStats {
  // The peak bytes of the buffers the call allocated (its arena included), on the host and on
  // devices: intermediates, results and kernels' temporaries, as runtime/tensor.hpp's
  // AllocationMeter counts them.
  std::int64_t peak_bytes = 0;
  std::int64_t device_peak_bytes = 0;
  // Outputs that the memory plan placed in its arena but the kernel put elsewhere.
  std::int64_t plan_misses = 0;
  // Outputs that took an input's buffer (PlanStep::inplace) in the call.
  std::int64_t inplace_outputs = 0;
  // The donated inputs (indices into the arguments) whose buffers a step has written into, in
  // the order it happened; kept up to date during the call, so that after a failure it says which
  // ones hold new contents.
  std::vector<int> overwritten_inputs;
};

class Profiler;
class DeviceStream;
struct MemoryRun;

// Checks ARGS against the plan's input specs and runs every step. Errors from kernels are
// rethrown with the step's label prepended, keeping their type; where the message already starts
// with the op ("Elemwise{add}: ...", the op's name or the kernel's), the label replaces it, so
// that the op is named once. With a PROFILER (made for this
// plan), each step is timed and the completed call recorded; without one no clock is read.
// STREAMS (one per entry of plan.devices) receive the device work of the call; execute() returns
// when it is done, or, with WAIT false, once it is queued (a call that fails still waits). With a
// profiler, every device step is waited for, so its time is its own.
//
// DONATED (empty, or one flag per argument): argument i's buffer is the caller's to give for the
// call, and a step of Plan::overwritable_inputs may write its output into it; the result read
// from such a step is then returned without a copy, in that buffer. A buffer not donated is never
// written, whatever the plan says. With MEMORY (and its plan), outputs and workspaces go into its
// arena; a result that would share the arena is copied out, except a staged update
// (PlannedValue::staged_update), returned in the arena: the caller must copy it out before the
// arena serves another call.
std::vector<Tensor> execute(const Plan& plan, const std::vector<Tensor>& args,
                            ExecutionStats* stats = nullptr, Profiler* profiler = nullptr,
                            const std::vector<std::shared_ptr<DeviceStream>>& streams = {},
                            bool wait = true, const std::vector<bool>& donated = {},
                            MemoryRun* memory = nullptr);

}  // namespace convgraph
