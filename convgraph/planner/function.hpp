// Function: a compiled graph that can be called with tensors.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/shared.hpp"
#include "convgraph/runtime/memory_plan.hpp"
#include "convgraph/runtime/plan.hpp"
#include "convgraph/runtime/profile.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class FunctionGraph;
class DeviceStream;

class Function {
 public:
  Function() = default;
  // SHARED: the shared variables whose values feed the plan's shared inputs, in their order.
  Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph,
           std::vector<SharedVariable> shared = {});

  // Runs the plan. ARGS must match the compiled inputs in count, dtype, rank and static dims;
  // otherwise a ValueError/TypeError/ShapeError names the input and what was expected. Shared
  // variables are not arguments: the call reads their values when it starts, and once it has
  // succeeded stores the new values of its updates (a call that throws changes none). Each
  // value is read and replaced whole (a mutex per shared variable), but calls are not
  // serialized: two calls at once that update the same shared variable both start from the
  // values they found, and the one finishing last wins, so run a training step from one thread.
  //
  // With the flag updates_inplace=early, an update may instead be computed into its shared
  // variable's own buffer during the call, as soon as nothing reads the old value any more (and
  // only when nobody else holds that buffer: a tensor borrowed with get_value(true) keeps the
  // old value, and then that variable is updated into a new buffer as usual). A call that throws
  // after such an update leaves those variables at their new values and every other one at its
  // old value, and its error names the variables written (docs/planner.md).
  std::vector<Tensor> operator()(const std::vector<Tensor>& args) const;
  std::vector<Tensor> call(const std::vector<Tensor>& args) const { return (*this)(args); }

  // ---- asynchronous calls (docs/gpu.md) ----
  // Queues a call on the function's device streams and returns without waiting for the device.
  // Outputs on a device are complete for work queued after the call on stream(device), and for
  // everyone once synchronize() returns; outputs on the host are complete on return. The call's
  // device inputs and outputs are kept alive until synchronize(), so they may be dropped at once. A
  // plan on the CPU alone, a profiled call, a call with updates and a failing call wait as call()
  // does.
  std::vector<Tensor> call_async(const std::vector<Tensor>& args) const;
  // Waits for the work of every call_async so far; DeviceError when some of it failed.
  void synchronize() const;
  // The stream the function's calls run on DEVICE; null for the CPU or a device the plan does not
  // use. To record events around calls, or to order other work with them.
  std::shared_ptr<DeviceStream> stream(Device device) const;

  // Peak bytes held by buffers allocated during the last call on the host (intermediates,
  // outputs and kernels' temporaries, the memory plan's arena included; inputs and constants are
  // not counted), and on devices.
  std::int64_t last_peak_bytes() const;
  std::int64_t last_device_peak_bytes() const;

  // ---- the static memory plan (runtime/memory_plan.hpp, docs/runtime.md) ----
  // Calls run with a memory plan unless the flag memory_plan is off: intermediates and kernel
  // workspaces at offsets of one arena per device, so that a call allocates only its results and
  // what the plan cannot place. The plan depends on the input shapes (shared variables' included):
  // with every shape static it is made at compile time; otherwise the first call with new input
  // shapes runs without one, and a plan made from what it saw serves the later calls with those
  // shapes (one plan per set of shapes, cached). Each concurrent call has an arena of its own.
  //
  // The planned peak bytes of a call on DEVICE (the host by default): its arena plus what it
  // allocates besides (results, values the plan cannot place), as last_peak_bytes() measures
  // it. Of the plan of the last call's shapes (or the compile-time plan); -1 when there is none
  // yet. With memory_plan off, the same count without an arena.
  std::int64_t planned_peak_bytes(Device device = Device::cpu()) const;
  // That plan as text: each arena, then every value (its offset and lifetime, or why it is
  // allocated at each call) and workspace in step order. Empty when there is none yet.
  std::string memory_plan_str() const;
  // The plan itself (null when there is none yet).
  std::shared_ptr<const MemoryPlan> memory_plan() const;
  // How many memory plans this function (and its copies) has made: one per set of input shapes.
  std::int64_t memory_plans_built() const;
  // Outputs of the last call that the plan placed in the arena but whose kernel put elsewhere.
  std::int64_t last_plan_misses() const;
  // The optimized graph, for printing and inspection.
  const FunctionGraph& graph() const { return *graph_; }
  const Plan& plan() const { return *plan_; }
  // debugprint of the optimized graph; after the outputs, the updates ("Updates:", then each
  // shared variable and the tree of its new value).
  std::string str() const;

  // ---- shared variables (graph/shared.hpp) ----
  // The shared variables the function reads or updates, as the user made them.
  const std::vector<SharedVariable>& shared_variables() const { return shared_; }
  // Each update: the shared variable and the variable of the optimized graph() computing its new
  // value, in the order of CompileOptions::updates.
  std::vector<std::pair<SharedVariable, Variable>> updates() const;

  // ---- profiling (docs/profiling.md) ----
  // Starts (or stops) timing each node of each call; the flag profile=True turns it on at
  // compile time. Stopping keeps what was collected; starting again adds to it. Starting with a
  // trace file set checks now that it can be written (ValueError naming the path otherwise).
  // Not for a Function that other threads are calling at the same time.
  void enable_profiling(bool on = true);
  bool profiling() const { return profiling_; }
  // Per-node times, calls, FLOPs and GFLOP/s and the peak memory of a call, over the profiled
  // calls so far. Of a function never profiled: a report saying so, with no rows.
  ProfileReport profile() const;
  // Forgets the profiled calls (e.g. after warm-up calls).
  void reset_profile();
  // Where the Chrome trace goes after each profiled call (the flag profile.trace_file); empty:
  // nowhere. Checked as enable_profiling says. The file is replaced atomically, never
  // half-written; a write that fails throws ValueError naming the path, after the call's work.
  void set_profile_trace_file(std::string path);
  const std::string& profile_trace_file() const { return trace_file_; }

 private:
  // ARGS followed by the shared variables' values now (ARGS itself when there are none); a
  // ValueError when ARGS has the wrong count.
  std::vector<Tensor> with_shared_values(const std::vector<Tensor>& args) const;
  // Takes the updates' new values off the end of RESULTS and checks them against their shared
  // variables (ShapeError naming one whose dims were unknown until now); copies a value sharing a
  // buffer with a result the caller gets or with another new value. Changes no shared variable.
  std::vector<Tensor> take_updates(std::vector<Tensor>& results) const;
  // Stores the new values NEW_VALUES (from take_updates): a staged update (in the arena) is
  // copied into its variable's buffer, or, when another thread borrowed that buffer since
  // take_updates, into a new one; never throws, but for memory running out in that race.
  void store_updates(std::vector<Tensor>& new_values) const;
  // Writes the Chrome trace after a profiled call (PROFILER not null) when a trace file is set.
  void write_trace(Profiler* profiler) const;
  // Puts in front of E, the error of a failed call, which shared variables the call had already
  // updated in their own buffers (updates_inplace=early); nothing when none.
  void note_written_in_place(ConvGraphError& e) const;

  std::shared_ptr<const Plan> plan_;
  std::shared_ptr<const FunctionGraph> graph_;
  std::vector<SharedVariable> shared_;
  std::shared_ptr<ExecutionStats> stats_;
  std::vector<std::shared_ptr<DeviceStream>> streams_;
  // The device tensors of queued calls, kept alive until synchronize() (shared by copies).
  struct Pending;
  std::shared_ptr<Pending> pending_;
  // The memory plans by input shapes and their idle arenas (shared by copies).
  struct MemoryState;
  std::shared_ptr<MemoryState> memory_;
  // Runs the plan on ARGS (with the shared variables' values) with the memory plan of their
  // shapes, making it first when there is none; DONATED as execute() takes it. FINISH, when
  // given, receives the results while the call still holds its arena (staged updates are there).
  using Finish = std::function<void(std::vector<Tensor>&)>;
  std::vector<Tensor> run_planned(const std::vector<Tensor>& inputs, Profiler* profiler, bool wait,
                                  const std::vector<bool>& donated = {},
                                  const Finish& finish = {}) const;
  // Created on the first enable_profiling(true); kept when profiling stops, for profile().
  std::shared_ptr<Profiler> profiler_;
  bool profiling_ = false;
  std::string trace_file_;
};

}  // namespace convgraph
