#include "convgraph/runtime/plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/device_backend.hpp"
#include "convgraph/runtime/memory_plan.hpp"
#include "convgraph/runtime/profile.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

std::string spec_str(const ValueSpec& spec) {
  std::string dims;
  for (std::size_t i = 0; i < spec.dims.size(); ++i) {
    if (i) dims += ", ";
    dims += spec.dims[i] ? std::to_string(*spec.dims[i]) : std::string("?");
  }
  return fmt::format("{}[{}]", dtype_name(spec.dtype), dims);
}

void check_argument(const ValueSpec& spec, const Tensor& value, std::size_t index) {
  const std::string who = spec.name.empty() ? fmt::format("input {}", index)
                                            : fmt::format("input {} ('{}')", index, spec.name);
  if (!value.defined()) throw ValueError(fmt::format("{}: no tensor given", who));
  if (value.dtype() != spec.dtype) {
    throw TypeError(fmt::format("{}: got dtype {}, expected {} ({})", who,
                                dtype_name(value.dtype()), dtype_name(spec.dtype), spec_str(spec)));
  }
  if (value.rank() != static_cast<int>(spec.dims.size())) {
    throw TypeError(fmt::format("{}: got rank {} (shape {}), expected rank {} ({})", who,
                                value.rank(), shape_str(value.shape()), spec.dims.size(),
                                spec_str(spec)));
  }
  for (std::size_t i = 0; i < spec.dims.size(); ++i) {
    if (spec.dims[i] && *spec.dims[i] != value.shape()[i]) {
      throw ShapeError(fmt::format("{}: got shape {}, but dim {} must be {} ({})", who,
                                   shape_str(value.shape()), i, *spec.dims[i], spec_str(spec)));
    }
  }
  if (value.device() != spec.device) {
    throw ValueError(fmt::format("{}: tensor is on {}, expected {}", who, value.device().str(),
                                 spec.device.str()));
  }
  // Kernels trust shapes, strides and offsets: a view past its buffer would be read past it.
  const std::string outside = value.out_of_storage();
  if (!outside.empty()) {
    throw ValueError(
        fmt::format("{}: the tensor's view reaches outside its buffer ({})", who, outside));
  }
}

// Rethrows the current exception with CONTEXT prepended, keeping its type.
[[noreturn]] void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (ConvGraphError& e) {
    e.prepend(context);
    throw;
  } catch (const std::bad_alloc&) {
    throw MemoryError(context + "out of memory");
  } catch (const std::exception& e) {
    throw ConvGraphError(context + "internal error: " + e.what());
  }
}

// Drops "<op>: " from the front of E's message when STEP's label is about to name the op: the
// op's text, its name without parameters, or the kernel's name.
void drop_op_prefix(const PlanStep& step, ConvGraphError& e) {
  const std::string_view message = e.what();
  const std::string_view op = step.op_text;
  const std::string kernel = step.kernel != nullptr ? step.kernel->name() : std::string();
  // An in-place form ("Elemwise{add,inplace}") fails with its ordinary form's name.
  std::string ordinary;
  if (const auto mark = op.find(",inplace"); mark != std::string_view::npos) {
    ordinary = std::string(op.substr(0, mark)) + std::string(op.substr(op.find('}', mark)));
  }
  for (const std::string_view prefix :
       {op, op.substr(0, op.find('{')), std::string_view(kernel), std::string_view(ordinary)}) {
    if (!prefix.empty() && message.size() > prefix.size() + 2 && message.starts_with(prefix) &&
        message.substr(prefix.size(), 2) == ": ") {
      e.drop_prefix(prefix.size() + 2);
      return;
    }
  }
}

}  // namespace

namespace {

// Makes the function's streams current for a call, and waits for them when it ends (also when it
// fails: queued kernels may still read buffers the caller frees next), unless the call succeeded
// and was asked not to wait.
class StreamScope {
 public:
  explicit StreamScope(const std::vector<std::shared_ptr<DeviceStream>>& streams)
      : streams_(streams) {
    for (const auto& s : streams_) s->enter();
  }
  ~StreamScope() {
    for (const auto& s : streams_) {
      if (!queued_only_) {
        try {
          s->synchronize();
        } catch (...) {
          // An error already propagating is the one to report; finish() reports the others.
        }
      }
      s->leave();
    }
  }
  // The call's work is all queued and nobody waits for it here.
  void leave_queued() { queued_only_ = true; }
  void synchronize() {
    for (const auto& s : streams_) s->synchronize();
  }

 private:
  const std::vector<std::shared_ptr<DeviceStream>>& streams_;
  bool queued_only_ = false;
};

std::vector<Tensor> execute_steps(const Plan& plan, const std::vector<Tensor>& args,
                                  ExecutionStats* stats, Profiler* profiler, StreamScope& streams,
                                  const std::vector<bool>& donated, MemoryRun* memory);

}  // namespace

std::vector<Tensor> execute(const Plan& plan, const std::vector<Tensor>& args,
                            ExecutionStats* stats, Profiler* profiler,
                            const std::vector<std::shared_ptr<DeviceStream>>& streams, bool wait,
                            const std::vector<bool>& donated, MemoryRun* memory) {
  if (streams.size() != plan.devices.size()) {
    throw ConvGraphError(
        fmt::format("internal error: the plan runs on {} device(s) but {} stream(s) were given",
                    plan.devices.size(), streams.size()));
  }
  const ScopedCpuThreads threads(plan.threads);
  StreamScope scope(streams);
  std::vector<Tensor> results = execute_steps(plan, args, stats, profiler, scope, donated, memory);
  if (wait || profiler != nullptr) {
    scope.synchronize();
  } else {
    scope.leave_queued();
  }
  return results;
}

namespace {

// For profiled calls: when each slot was written and dropped, and its buffer, so that the values
// alive at the peak can be listed once the call is over (a walk over the slots at every new peak
// would make a growing forward pass quadratic).
class SlotHistory {
 public:
  explicit SlotHistory(std::size_t slots)
      : written_(slots, -1), dropped_(slots, -1), buffer_(slots, nullptr), bytes_(slots, 0) {}

  void written(int slot, int step, const Tensor& t, bool counted) {
    const auto s = static_cast<std::size_t>(slot);
    written_[s] = step;
    buffer_[s] = counted && t.defined() ? t.storage().get() : nullptr;
    bytes_[s] = buffer_[s] != nullptr ? static_cast<std::int64_t>(buffer_[s]->bytes()) : 0;
  }
  void dropped(int slot, int step) { dropped_[static_cast<std::size_t>(slot)] = step; }

  // The buffers counted after step STEP: written at or before it and not dropped before it
  // (a slot released after STEP still counts at STEP). Two slots alive at once with the same
  // buffer address view one buffer. Biggest first.
  std::vector<LiveValue> alive_at(int step) const {
    std::vector<LiveValue> values;
    std::unordered_set<const Storage*> seen;
    for (std::size_t s = 0; s < written_.size(); ++s) {
      if (buffer_[s] == nullptr || written_[s] > step || (dropped_[s] >= 0 && dropped_[s] < step)) {
        continue;
      }
      if (!seen.insert(buffer_[s]).second) continue;
      values.push_back({static_cast<int>(s), written_[s], std::string(), bytes_[s]});
    }
    std::stable_sort(values.begin(), values.end(),
                     [](const LiveValue& a, const LiveValue& b) { return a.bytes > b.bytes; });
    return values;
  }

 private:
  std::vector<int> written_, dropped_;
  std::vector<const Storage*> buffer_;
  std::vector<std::int64_t> bytes_;
};

std::vector<Tensor> execute_steps(const Plan& plan, const std::vector<Tensor>& args,
                                  ExecutionStats* stats, Profiler* profiler, StreamScope& streams,
                                  const std::vector<bool>& donated, MemoryRun* memory) {
  // Every clock read below is behind `if (profiler)`: an unprofiled call pays one branch per step.
  CallSample sample;
  if (profiler != nullptr) {
    sample.start_ns = Profiler::now_ns();
    sample.steps.resize(plan.steps.size());
  }
  if (args.size() != plan.input_slots.size()) {
    std::vector<std::string> names;
    for (const auto& spec : plan.input_specs) names.push_back(spec_str(spec) + " " + spec.name);
    throw ValueError(fmt::format("function called with {} inputs, expected {} ({})", args.size(),
                                 plan.input_slots.size(), fmt::join(names, ", ")));
  }
  for (std::size_t i = 0; i < args.size(); ++i) check_argument(plan.input_specs[i], args[i], i);
  if (!donated.empty() && donated.size() != args.size()) {
    throw ConvGraphError(fmt::format("internal error: {} donation flags for {} arguments",
                                     donated.size(), args.size()));
  }
  if (stats != nullptr) stats->overwritten_inputs.clear();
  // The slots of donated arguments a step may write into: slot -> argument index.
  std::unordered_map<int, int> donated_slots;
  for (int i : plan.overwritable_inputs) {
    if (!donated.empty() && donated[static_cast<std::size_t>(i)]) {
      donated_slots.emplace(plan.input_slots[static_cast<std::size_t>(i)], i);
    }
  }
  std::unordered_set<const Storage*> overwritten;  // donated buffers written into

  std::vector<Tensor> slots(static_cast<std::size_t>(plan.num_slots));
  // Buffers not allocated by this call (inputs and constants) are not counted in the peak.
  std::unordered_set<const Storage*> external;
  for (std::size_t i = 0; i < args.size(); ++i) {
    slots[static_cast<std::size_t>(plan.input_slots[i])] = args[i];
    external.insert(args[i].storage().get());
  }
  for (const auto& [slot, value] : plan.constants) {
    slots[static_cast<std::size_t>(slot)] = value;
    external.insert(value.storage().get());
  }

  // Profiled calls: the step after which the most was alive, and what was alive then.
  std::int64_t peak_seen = -1;
  int peak_step = -1;
  std::optional<SlotHistory> history;
  if (profiler != nullptr) history.emplace(slots.size());
  // Everything this thread allocates from here on is counted, kernels' temporaries included; the
  // arena was allocated before the call and is added whole.
  const auto meter = std::make_shared<AllocationMeter>();
  const ScopedAllocationMeter metering(meter);
  const MemoryPlan* memory_plan =
      memory != nullptr && memory->arena != nullptr ? memory->plan : nullptr;
  const Arena* arena = memory_plan != nullptr ? memory->arena : nullptr;
  std::int64_t arena_host = 0, arena_device = 0;
  if (memory_plan != nullptr) {
    for (std::size_t d = 0; d < memory_plan->devices.size(); ++d) {
      (memory_plan->devices[d].is_cpu() ? arena_host : arena_device) += arena->bytes(d);
    }
  }
  MemoryPlanInput* observe = memory != nullptr ? memory->observe : nullptr;
  if (observe != nullptr) {
    observe->shapes.assign(static_cast<std::size_t>(plan.num_slots), std::nullopt);
    observe->workspaces.assign(plan.steps.size(), std::nullopt);
    for (std::size_t i = 0; i < args.size(); ++i) {
      observe->shapes[static_cast<std::size_t>(plan.input_slots[i])] = args[i].shape();
    }
    for (const auto& [slot, value] : plan.constants) {
      observe->shapes[static_cast<std::size_t>(slot)] = value.shape();
    }
  }
  std::int64_t inplace_outputs = 0;
  std::int64_t misses = 0;
  std::vector<std::int64_t>* temporaries = memory != nullptr ? memory->temporaries : nullptr;
  // One entry per step, and one for the end of the call (copies of results).
  if (temporaries != nullptr) temporaries->assign(plan.steps.size() + 1, 0);
  if (memory != nullptr && memory->copied_views != nullptr) {
    memory->copied_views->assign(static_cast<std::size_t>(plan.num_slots), false);
  }

  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
  std::vector<int> destroyed;  // the slots whose buffer the step's outputs took
  struct Donation {
    int output;
    int argument;
    const Storage* buffer;
  };
  std::vector<Donation> donations;  // the donated buffers handed to the step's kernel
  for (std::size_t index = 0; index < plan.steps.size(); ++index) {
    const PlanStep& step = plan.steps[index];
    inputs.clear();
    for (int s : step.inputs) inputs.push_back(slots[static_cast<std::size_t>(s)]);
    outputs.assign(step.outputs.size(), Tensor());
    destroyed.clear();
    donations.clear();
    if (memory_plan != nullptr) {
      for (std::size_t k = 0; k < step.outputs.size(); ++k) {
        const PlannedValue& v = memory_plan->values[static_cast<std::size_t>(step.outputs[k])];
        if (v.placement == ValuePlacement::arena && v.base < 0) {
          outputs[k] = Tensor::wrap(arena->block(v.block), step.output_specs[k].dtype, *v.shape);
        }
      }
    }
    for (const auto& [k, j] : step.inplace) {
      // Two holders, the slot and INPUTS, mean nobody else sees the buffer: no view of it in
      // another slot, no caller's argument, constant or shared variable's container. A block of
      // the arena has a third, the arena, and is taken only where the memory plan says so.
      const Tensor& victim = inputs[static_cast<std::size_t>(j)];
      if (!victim.defined()) continue;
      const int victim_slot = step.inputs[static_cast<std::size_t>(j)];
      // A donated argument is held by the caller's container too, which gave it up for the call.
      const auto donor = donated_slots.find(victim_slot);
      const bool in_arena = victim.storage()->borrowed();
      if (in_arena) {
        if (memory_plan == nullptr) continue;
        const auto& pairs = memory_plan->inplace[index];
        if (std::find(pairs.begin(), pairs.end(), std::pair<int, int>(k, j)) == pairs.end()) {
          continue;
        }
      }
      const bool free_buffer =
          donor != donated_slots.end() || victim.storage().use_count() == (in_arena ? 3 : 2);
      if (free_buffer && victim.dtype() == step.output_specs[static_cast<std::size_t>(k)].dtype &&
          victim.device().is_cpu() && victim.is_contiguous()) {
        outputs[static_cast<std::size_t>(k)] = victim;
        destroyed.push_back(victim_slot);
        ++inplace_outputs;
        if (donor != donated_slots.end()) {
          // Recorded before the kernel runs: if it fails, the buffer may be partly written.
          donations.push_back({k, donor->second, victim.storage().get()});
          if (stats != nullptr) stats->overwritten_inputs.push_back(donor->second);
        }
      }
    }
    const std::int64_t start_ns = profiler != nullptr ? Profiler::now_ns() : 0;
    try {
      const int workspace = memory_plan != nullptr ? memory_plan->workspace_block[index] : -1;
      const ScopedStepWorkspace step_workspace(workspace >= 0 ? arena->block(workspace) : nullptr);
      if (temporaries != nullptr) meter->start_step();
      step.kernel->run(inputs, outputs);
      if (observe != nullptr) observe->workspaces[index] = step_workspace.requested_bytes();
      if (temporaries != nullptr) {
        // What the step held at its highest beyond what it holds now (its inputs and outputs),
        // less the workspace it allocated itself (which the plan counts already).
        const std::int64_t transient = meter->step_peak_bytes(Device::cpu()) -
                                       meter->live_bytes(Device::cpu()) -
                                       step_workspace.allocated_bytes();
        (*temporaries)[index] = std::max<std::int64_t>(0, transient);
      }
      // A device kernel only queued its work: wait for it, so that the time is its own.
      if (profiler != nullptr) streams.synchronize();
    } catch (ConvGraphError& e) {
      drop_op_prefix(step, e);
      rethrow_with_context(step.label + ": ");
    } catch (...) {
      rethrow_with_context(step.label + ": ");
    }
    // A kernel may leave a buffer handed to it and allocate (runtime/kernel.hpp).
    for (const Donation& d : donations) {
      const Tensor& out = outputs[static_cast<std::size_t>(d.output)];
      if (out.defined() && out.storage().get() == d.buffer) {
        overwritten.insert(d.buffer);
      } else if (stats != nullptr) {
        auto& list = stats->overwritten_inputs;
        if (auto it = std::find(list.begin(), list.end(), d.argument); it != list.end()) {
          list.erase(it);
        }
      }
    }
    if (profiler != nullptr) {
      sample.steps[index].start_ns = start_ns;
      sample.steps[index].duration_ns = Profiler::now_ns() - start_ns;
    }
    for (std::size_t k = 0; k < step.outputs.size(); ++k) {
      const ValueSpec& spec = step.output_specs[k];
      const Tensor& out = outputs[k];
      if (!out.defined() || out.dtype() != spec.dtype ||
          out.rank() != static_cast<int>(spec.dims.size())) {
        throw ConvGraphError(fmt::format(
            "{}: internal error: kernel {} produced {} for output {}, expected {}", step.label,
            step.kernel->name(),
            out.defined() ? fmt::format("{}{}", dtype_name(out.dtype()), shape_str(out.shape()))
                          : std::string("nothing"),
            k, spec_str(spec)));
      }
      for (std::size_t d = 0; d < spec.dims.size(); ++d) {
        if (spec.dims[d] && *spec.dims[d] != out.shape()[d]) {
          throw ShapeError(fmt::format(
              "{}: output {} has shape {} but the graph inferred {} (inputs inconsistent with "
              "the static shapes the graph was built with)",
              step.label, k, shape_str(out.shape()), spec_str(spec)));
        }
      }
    }
    if (memory_plan != nullptr) {
      for (std::size_t k = 0; k < step.outputs.size(); ++k) {
        const PlannedValue& v = memory_plan->values[static_cast<std::size_t>(step.outputs[k])];
        const Storage* planned =
            v.placement == ValuePlacement::arena ? arena->block(v.block).get() : nullptr;
        Storage* got = outputs[k].storage().get();
        if (got == planned) continue;
        // A donated argument written in place is the update's own buffer, not a miss.
        if (planned != nullptr && !overwritten.count(got)) ++misses;
        // Memory of the arena that the plan did not give this value (a view the op did not
        // declare): its block may be reused while the value lives, so the value gets a copy.
        if (got->borrowed()) outputs[k] = outputs[k].clone();
      }
    }
    if (memory != nullptr && memory->copied_views != nullptr) {
      for (const auto& [k, j] : step.views) {
        const Tensor& out = outputs[static_cast<std::size_t>(k)];
        const Tensor& in = inputs[static_cast<std::size_t>(j)];
        if (out.defined() && in.defined() && !out.shares_storage_with(in)) {
          (*memory->copied_views)[static_cast<std::size_t>(
              step.outputs[static_cast<std::size_t>(k)])] = true;
        }
      }
    }
    if (observe != nullptr) {
      for (std::size_t k = 0; k < step.outputs.size(); ++k) {
        observe->shapes[static_cast<std::size_t>(step.outputs[k])] = outputs[k].shape();
      }
    }
    if (profiler != nullptr) {
      StepSample& step_sample = sample.steps[index];
      // What this call has allocated and still holds, the step's new outputs included (inputs
      // are released only after the step, so they count too).
      step_sample.live_bytes = arena_host + meter->live_bytes(Device::cpu());
      if (step_sample.live_bytes > peak_seen) {
        peak_seen = step_sample.live_bytes;
        peak_step = static_cast<int>(index);
      }
      // Counted from this call's shapes (they may differ between calls), outside the timed span.
      if (step.flops) {
        std::vector<Shape> input_shapes, output_shapes;
        for (const Tensor& t : inputs) input_shapes.push_back(t.defined() ? t.shape() : Shape{});
        for (const Tensor& t : outputs) output_shapes.push_back(t.shape());
        step_sample.flops = step.flops(input_shapes, output_shapes);
      }
    }
    for (std::size_t k = 0; k < step.outputs.size(); ++k) {
      Tensor& slot = slots[static_cast<std::size_t>(step.outputs[k])];
      if (history) {
        history->written(step.outputs[k], static_cast<int>(index), outputs[k],
                         external.count(outputs[k].storage().get()) == 0);
      }
      slot = std::move(outputs[k]);
    }
    // A destroyed slot holds garbage and nobody reads it again: dropped whatever allow_gc says,
    // so that the next step in place on the same buffer finds it held once.
    for (int s : destroyed) {
      Tensor& slot = slots[static_cast<std::size_t>(s)];
      slot = Tensor();
      if (history) history->dropped(s, static_cast<int>(index));
    }
    if (plan.release_intermediates) {
      for (int s : step.release_after) {
        Tensor& slot = slots[static_cast<std::size_t>(s)];
        slot = Tensor();
        if (history) history->dropped(s, static_cast<int>(index));
      }
    }
  }

  // The last step's inputs would otherwise stay alive until the call returns.
  inputs.clear();
  outputs.clear();
  if (temporaries != nullptr) meter->start_step();
  std::vector<Tensor> results;
  results.reserve(plan.output_slots.size());
  for (int s : plan.output_slots) {
    // Never hand out the caller's own buffers (or a constant's) as a result: a later write to
    // the result would change them. Nor the arena's: the next call overwrites it, except for a
    // staged update, which the caller copies out before the arena serves another call.
    const Tensor& value = slots[static_cast<std::size_t>(s)];
    const Storage* buffer = value.storage().get();
    const bool staged = memory_plan != nullptr &&
                        memory_plan->values[static_cast<std::size_t>(s)].staged_update &&
                        buffer->borrowed();
    results.push_back((external.count(buffer) && !overwritten.count(buffer)) ||
                              (buffer->borrowed() && !staged)
                          ? value.clone()
                          : value);
  }
  if (temporaries != nullptr) {
    temporaries->back() = std::max<std::int64_t>(
        0, meter->step_peak_bytes(Device::cpu()) - meter->live_bytes(Device::cpu()));
  }
  const std::int64_t peak = arena_host + meter->peak_bytes(Device::cpu());
  if (stats != nullptr) {
    stats->peak_bytes = peak;
    stats->device_peak_bytes = arena_device + meter->peak_bytes(Device::cuda(0));
    stats->inplace_outputs = inplace_outputs;
    stats->plan_misses = misses;
  }
  if (memory != nullptr) memory->misses = misses;
  if (profiler != nullptr) {
    sample.peak_bytes = peak;
    sample.peak_step = peak_step;
    if (peak_step >= 0) sample.peak_values = history->alive_at(peak_step);
    sample.duration_ns = Profiler::now_ns() - sample.start_ns;
    profiler->record(std::move(sample));
  }
  return results;
}

}  // namespace

}  // namespace convgraph
