// Function: a compiled graph that can be called with tensors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/runtime/plan.hpp"
#include "convgraph/runtime/profile.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class FunctionGraph;
class DeviceStream;

class Function {
 public:
  Function() = default;
  Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph);

  // Runs the plan. ARGS must match the compiled inputs in count, dtype, rank and static dims;
  // otherwise a ValueError/TypeError/ShapeError names the input and what was expected.
  std::vector<Tensor> operator()(const std::vector<Tensor>& args) const;
  std::vector<Tensor> call(const std::vector<Tensor>& args) const { return (*this)(args); }

  // ---- asynchronous calls (docs/gpu.md) ----
  // Queues a call on the function's device streams and returns without waiting for the device.
  // Outputs on a device are complete for work queued after the call on stream(device), and for
  // everyone once synchronize() returns; outputs on the host are complete on return. The call's
  // device inputs and outputs are kept alive until synchronize(), so they may be dropped at once. A
  // plan on the CPU alone, a profiled call and a failing call wait as call() does.
  std::vector<Tensor> call_async(const std::vector<Tensor>& args) const;
  // Waits for the work of every call_async so far; DeviceError when some of it failed.
  void synchronize() const;
  // The stream the function's calls run on DEVICE; null for the CPU or a device the plan does not
  // use. To record events around calls, or to order other work with them.
  std::shared_ptr<DeviceStream> stream(Device device) const;

  // Peak bytes held by buffers allocated during the last call (intermediates, outputs and
  // workspaces; inputs and constants are not counted).
  std::int64_t last_peak_bytes() const;
  // The optimized graph, for printing and inspection.
  const FunctionGraph& graph() const { return *graph_; }
  const Plan& plan() const { return *plan_; }
  // debugprint of the optimized graph.
  std::string str() const;

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
  std::shared_ptr<const Plan> plan_;
  std::shared_ptr<const FunctionGraph> graph_;
  std::shared_ptr<ExecutionStats> stats_;
  std::vector<std::shared_ptr<DeviceStream>> streams_;
  // The device tensors of queued calls, kept alive until synchronize() (shared by copies).
  struct Pending;
  std::shared_ptr<Pending> pending_;
  // Created on the first enable_profiling(true); kept when profiling stops, for profile().
  std::shared_ptr<Profiler> profiler_;
  bool profiling_ = false;
  std::string trace_file_;
};

}  // namespace convgraph
