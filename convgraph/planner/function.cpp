#include "convgraph/planner/function.hpp"

#include <fmt/format.h>

#include <map>
#include <mutex>
#include <optional>

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/device_backend.hpp"

namespace convgraph {

struct Function::Pending {
  std::mutex mutex;
  std::vector<Tensor> tensors;
};

struct Function::MemoryState {
  struct Entry {
    std::shared_ptr<const MemoryPlan> plan;
    // What the plan was made from, and whether it has the kernels' unannounced temporaries yet
    // (measured by the first call that runs with it, when the plan was made at compile time).
    MemoryPlanInput input;
    bool measured = false;
    // Arenas no call is using; a call takes one (or makes one) and gives it back.
    std::vector<std::unique_ptr<Arena>> idle;
  };
  std::mutex mutex;
  std::map<std::vector<Shape>, Entry> plans;  // by the shapes of the call's inputs
  std::shared_ptr<const MemoryPlan> current;  // the last call's
  std::int64_t built = 0;
  std::int64_t misses = 0;
};

namespace {

std::vector<Shape> shapes_of(const std::vector<Tensor>& inputs) {
  std::vector<Shape> shapes;
  shapes.reserve(inputs.size());
  for (const Tensor& t : inputs) shapes.push_back(t.shape());
  return shapes;
}

// What the plan's static types say of every value and workspace, when they say it all: then
// the memory plan is made at compile time. KEY receives the input shapes.
std::optional<MemoryPlanInput> static_plan_input(const Plan& plan, std::vector<Shape>& key) {
  // Workspaces sized per thread are asked with the thread count the calls will run with.
  const ScopedCpuThreads threads(plan.threads);
  MemoryPlanInput in;
  in.shapes.assign(static_cast<std::size_t>(plan.num_slots), std::nullopt);
  std::vector<DType> dtypes(static_cast<std::size_t>(plan.num_slots), DType::float32);
  key.clear();
  for (std::size_t i = 0; i < plan.input_slots.size(); ++i) {
    auto shape = known_shape(plan.input_specs[i].dims);
    if (!shape) return std::nullopt;
    key.push_back(*shape);
    const auto slot = static_cast<std::size_t>(plan.input_slots[i]);
    in.shapes[slot] = std::move(shape);
    dtypes[slot] = plan.input_specs[i].dtype;
  }
  for (const auto& [slot, value] : plan.constants) {
    in.shapes[static_cast<std::size_t>(slot)] = value.shape();
    dtypes[static_cast<std::size_t>(slot)] = value.dtype();
  }
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  for (const PlanStep& step : plan.steps) {
    input_shapes.clear();
    input_dtypes.clear();
    for (int s : step.inputs) {
      const auto& shape = in.shapes[static_cast<std::size_t>(s)];
      if (!shape) return std::nullopt;
      input_shapes.push_back(*shape);
      input_dtypes.push_back(dtypes[static_cast<std::size_t>(s)]);
    }
    in.workspaces.push_back(step.kernel->workspace_bytes(input_shapes, input_dtypes));
    if (!in.workspaces.back()) return std::nullopt;
    for (std::size_t k = 0; k < step.outputs.size(); ++k) {
      auto shape = known_shape(step.output_specs[k].dims);
      if (!shape) return std::nullopt;
      const auto slot = static_cast<std::size_t>(step.outputs[k]);
      in.shapes[slot] = std::move(shape);
      dtypes[slot] = step.output_specs[k].dtype;
    }
  }
  return in;
}

// OBSERVED (what a call recorded) with each value marked as varying unless its shape follows
// from the input shapes: static, or computed by a step whose output shape follows its inputs'
// shapes from inputs whose shapes do.
MemoryPlanInput observed_plan_input(const Plan& plan, MemoryPlanInput observed) {
  std::vector<bool> determined(static_cast<std::size_t>(plan.num_slots), false);
  for (int s : plan.input_slots) determined[static_cast<std::size_t>(s)] = true;
  for (const auto& [slot, value] : plan.constants)
    determined[static_cast<std::size_t>(slot)] = true;
  for (const PlanStep& step : plan.steps) {
    bool inputs_known = true;
    for (int s : step.inputs)
      inputs_known = inputs_known && determined[static_cast<std::size_t>(s)];
    for (std::size_t k = 0; k < step.outputs.size(); ++k) {
      const bool follows = k < step.shape_follows_inputs.size() && step.shape_follows_inputs[k];
      determined[static_cast<std::size_t>(step.outputs[k])] =
          known_shape(step.output_specs[k].dims).has_value() || (inputs_known && follows);
    }
  }
  observed.varies.resize(determined.size());
  for (std::size_t s = 0; s < determined.size(); ++s) observed.varies[s] = !determined[s];
  return observed;
}

}  // namespace

namespace {
// The holders of a shared variable's buffer during a call when nobody else sees it: its
// container and the call's list of inputs.
constexpr long kCallHolders = 2;
}  // namespace

Function::Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph,
                   std::vector<SharedVariable> shared)
    : plan_(std::move(plan)),
      graph_(std::move(graph)),
      shared_(std::move(shared)),
      stats_(std::make_shared<ExecutionStats>()),
      pending_(std::make_shared<Pending>()),
      memory_(std::make_shared<MemoryState>()) {
  // One stream per device the plan runs on, for the lifetime of the function (and its copies).
  if (plan_) {
    for (const Device& device : plan_->devices) streams_.push_back(create_device_stream(device));
    if (static_cast<int>(shared_.size()) != plan_->num_shared_inputs) {
      throw ConvGraphError(
          fmt::format("internal error: the plan reads {} shared variable(s) but {} were given",
                      plan_->num_shared_inputs, shared_.size()));
    }
    std::vector<Shape> key;
    if (auto input = static_plan_input(*plan_, key)) {
      auto memory_plan =
          std::make_shared<const MemoryPlan>(build_memory_plan(*plan_, *input, plan_->memory_plan));
      MemoryState::Entry& entry = memory_->plans[key];
      entry.plan = memory_plan;
      entry.input = std::move(*input);
      memory_->current = std::move(memory_plan);
      memory_->built = 1;
    }
  }
}

std::vector<Tensor> Function::run_planned(const std::vector<Tensor>& inputs, Profiler* profiler,
                                          bool wait, const std::vector<bool>& donated,
                                          const Finish& finish) const {
  std::vector<Shape> key = shapes_of(inputs);
  std::shared_ptr<const MemoryPlan> memory_plan;
  std::unique_ptr<Arena> arena;
  bool measure = false;
  {
    const std::lock_guard<std::mutex> lock(memory_->mutex);
    auto it = memory_->plans.find(key);
    if (it != memory_->plans.end()) {
      memory_plan = it->second.plan;
      measure = !it->second.measured;
      memory_->current = memory_plan;
      if (!it->second.idle.empty()) {
        arena = std::move(it->second.idle.back());
        it->second.idle.pop_back();
      } else {
        // Arenas of other input shapes wait idle for a call that may not come: let them go
        // before making a new one.
        for (auto& [other, entry] : memory_->plans) {
          if (other != key) entry.idle.clear();
        }
      }
    }
  }
  if (memory_plan == nullptr) {
    // New input shapes: this call runs without a plan and records what the plan needs.
    MemoryPlanInput observed;
    MemoryRun run;
    run.observe = &observed;
    run.temporaries = &observed.temporaries;
    run.copied_views = &observed.copied_views;
    std::vector<Tensor> results =
        execute(*plan_, inputs, stats_.get(), profiler, streams_, wait, donated, &run);
    MemoryPlanInput input = observed_plan_input(*plan_, std::move(observed));
    auto made =
        std::make_shared<const MemoryPlan>(build_memory_plan(*plan_, input, plan_->memory_plan));
    {
      const std::lock_guard<std::mutex> lock(memory_->mutex);
      auto [it, fresh] = memory_->plans.try_emplace(std::move(key));
      if (fresh) {
        it->second.plan = std::move(made);
        it->second.input = std::move(input);
        it->second.measured = true;
        ++memory_->built;
      }
      memory_->current = it->second.plan;
      memory_->misses = 0;
    }
    if (finish) finish(results);
    return results;
  }
  // Without waiting, device work may still use a device arena after the call returns: such a
  // call runs without the plan.
  bool device_arena = false;
  for (std::size_t d = 0; d < memory_plan->devices.size(); ++d) {
    device_arena =
        device_arena || (!memory_plan->devices[d].is_cpu() && memory_plan->arena_bytes[d] > 0);
  }
  std::vector<std::int64_t> temporaries;
  std::vector<bool> copied_views;
  // After a call that measured the kernels' unannounced temporaries: the plan counts them.
  auto note_temporaries = [&] {
    if (!measure) return;
    const std::lock_guard<std::mutex> lock(memory_->mutex);
    auto it = memory_->plans.find(key);
    if (it == memory_->plans.end() || it->second.measured) return;
    it->second.input.temporaries = std::move(temporaries);
    it->second.input.copied_views = std::move(copied_views);
    it->second.plan = std::make_shared<const MemoryPlan>(
        build_memory_plan(*plan_, it->second.input, plan_->memory_plan));
    it->second.measured = true;
    // The layout may differ (a view found to be a copy has a block of its own now): arenas made
    // for the previous plan are not reused.
    it->second.idle.clear();
    memory_->current = it->second.plan;
  };
  if (!memory_plan->placed || (!wait && device_arena)) {
    MemoryRun run;
    run.temporaries = measure ? &temporaries : nullptr;
    run.copied_views = measure ? &copied_views : nullptr;
    std::vector<Tensor> results =
        execute(*plan_, inputs, stats_.get(), profiler, streams_, wait, donated, &run);
    note_temporaries();
    if (finish) finish(results);
    return results;
  }
  if (arena == nullptr) arena = std::make_unique<Arena>(*memory_plan);
  // The arena goes back to the idle ones when the call ends, also when it throws.
  // An arena made for a plan that has since been replaced is dropped.
  struct GiveBack {
    MemoryState& state;
    const std::vector<Shape>& key;
    const std::shared_ptr<const MemoryPlan>& plan;
    std::unique_ptr<Arena>& arena;
    ~GiveBack() {
      const std::lock_guard<std::mutex> lock(state.mutex);
      auto it = state.plans.find(key);
      if (it != state.plans.end() && it->second.plan == plan) {
        it->second.idle.push_back(std::move(arena));
      }
    }
  } give_back{*memory_, key, memory_plan, arena};
  MemoryRun run;
  run.plan = memory_plan.get();
  run.arena = arena.get();
  run.temporaries = measure ? &temporaries : nullptr;
  run.copied_views = measure ? &copied_views : nullptr;
  std::vector<Tensor> results =
      execute(*plan_, inputs, stats_.get(), profiler, streams_, wait, donated, &run);
  {
    const std::lock_guard<std::mutex> lock(memory_->mutex);
    memory_->misses = run.misses;
  }
  note_temporaries();
  // Before the arena goes back (GIVE_BACK): staged updates are still in it.
  if (finish) finish(results);
  return results;
}

std::vector<Tensor> Function::with_shared_values(const std::vector<Tensor>& args) const {
  if (shared_.empty()) return args;
  const std::size_t expected = plan_->input_slots.size() - shared_.size();
  if (args.size() != expected) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < expected; ++i) names.push_back(plan_->input_specs[i].name);
    throw ValueError(fmt::format(
        "function called with {} inputs, expected {} ({}); its {} shared variable(s) are not "
        "arguments",
        args.size(), expected, fmt::join(names, ", "), shared_.size()));
  }
  std::vector<Tensor> all = args;
  all.reserve(args.size() + shared_.size());
  for (const SharedVariable& var : shared_) all.push_back(var.container().load());
  return all;
}

std::vector<Tensor> Function::take_updates(std::vector<Tensor>& results) const {
  const std::vector<PlanUpdate>& updates = plan_->updates;
  if (updates.empty()) return {};
  const std::size_t own = results.size() - updates.size();
  const std::size_t num_args = plan_->input_slots.size() - shared_.size();
  std::vector<Tensor> new_values;
  new_values.reserve(updates.size());
  for (const PlanUpdate& u : updates) {
    const SharedVariable& var = shared_[static_cast<std::size_t>(u.input) - num_args];
    Tensor value = std::move(results[static_cast<std::size_t>(u.output)]);
    var.container().check(
        value, fmt::format("the update of shared variable {} (no shared variable was changed)",
                           var.label()));
    if (value.storage()->borrowed()) {
      // A staged update, in the arena (the memory plan gave it no other result to share a buffer
      // with): copied into the variable's buffer by store_updates, unless somebody else holds
      // that buffer; then into a new one, made here so that storing cannot fail.
      if (!var.container().held_only_by(kCallHolders)) value = value.clone();
      new_values.push_back(std::move(value));
      continue;
    }
    // The value becomes the variable's own (no copy), unless the caller or another update holds
    // its buffer too: a later write through one must not change the other. execute() already
    // copied values sharing a buffer with an input, so with a shared variable's old value too.
    bool aliased = false;
    for (std::size_t j = 0; j < own && !aliased; ++j) {
      aliased = results[j].defined() && results[j].storage() == value.storage();
    }
    for (const Tensor& other : new_values) {
      aliased = aliased || other.storage() == value.storage();
    }
    new_values.push_back(aliased ? value.clone() : std::move(value));
  }
  results.resize(own);
  return new_values;
}

void Function::store_updates(std::vector<Tensor>& new_values) const {
  const std::size_t num_args = plan_->input_slots.size() - shared_.size();
  for (std::size_t k = 0; k < new_values.size(); ++k) {
    const PlanUpdate& u = plan_->updates[k];
    SharedValue& container = *shared_[static_cast<std::size_t>(u.input) - num_args].container_ptr();
    if (new_values[k].storage()->borrowed()) {
      container.store_copy(new_values[k], kCallHolders);
    } else {
      container.store(std::move(new_values[k]));
    }
  }
}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  Profiler* profiler = profiling_ ? profiler_.get() : nullptr;
  if (shared_.empty()) {
    std::vector<Tensor> results = run_planned(args, profiler, /*wait=*/true);
    write_trace(profiler);
    return results;
  }
  std::vector<Tensor> all = with_shared_values(args);
  // With updates_inplace=early, a shared variable's buffer is given to the call when nobody but
  // its container holds it (the container and ALL): no tensor borrowed with get_value(true), no
  // result of an earlier call, no argument of this one sees it.
  std::vector<bool> donated;
  if (!plan_->overwritable_inputs.empty()) {
    donated.assign(all.size(), false);
    for (int i : plan_->overwritable_inputs) {
      const Tensor& value = all[static_cast<std::size_t>(i)];
      donated[static_cast<std::size_t>(i)] = value.defined() && value.storage().use_count() == 2;
    }
  }
  std::vector<Tensor> results;
  // Checked before the trace is written and stored after it, so that a call that throws leaves
  // every shared variable as it was (but those already written in place). Done while the call
  // still holds its arena: staged updates are copied out of it.
  auto finish = [&](std::vector<Tensor>& call_results) {
    std::vector<Tensor> new_values = take_updates(call_results);
    write_trace(profiler);
    store_updates(new_values);
  };
  try {
    results = run_planned(all, profiler, /*wait=*/true, donated, finish);
  } catch (ConvGraphError& e) {
    note_written_in_place(e);
    throw;
  }
  return results;
}

void Function::write_trace(Profiler* profiler) const {
  if (profiler == nullptr || trace_file_.empty()) return;
  try {
    profiler_->write_chrome_trace(trace_file_);
  } catch (ConvGraphError& e) {
    e.prepend("profile.trace_file: ");
    throw;
  }
}

void Function::note_written_in_place(ConvGraphError& e) const {
  const std::vector<int>& written = stats_->overwritten_inputs;
  if (written.empty()) return;
  const std::size_t num_args = plan_->input_slots.size() - shared_.size();
  std::vector<std::string> names;
  for (int i : written) {
    names.push_back(shared_[static_cast<std::size_t>(i) - num_args].label());
  }
  e.prepend(fmt::format(
      "updates_inplace=early: the call failed after computing the update of shared variable(s) "
      "{} into their own buffers, so they hold their new values (the last one possibly in part, "
      "if its own step failed) and every other shared variable keeps its old value; the error: ",
      fmt::join(names, ", ")));
}

std::vector<std::pair<SharedVariable, Variable>> Function::updates() const {
  std::vector<std::pair<SharedVariable, Variable>> list;
  if (!plan_) return list;
  const std::size_t num_args = plan_->input_slots.size() - shared_.size();
  for (const PlanUpdate& u : plan_->updates) {
    list.emplace_back(shared_[static_cast<std::size_t>(u.input) - num_args],
                      graph_->outputs()[static_cast<std::size_t>(u.output)]);
  }
  return list;
}

std::vector<Tensor> Function::call_async(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  // A call with updates waits: the new values are stored complete.
  if (profiling_ || streams_.empty() || !plan_->updates.empty()) return (*this)(args);
  const std::vector<Tensor> inputs = with_shared_values(args);
  std::vector<Tensor> results = run_planned(inputs, nullptr, /*wait=*/false);
  const std::lock_guard<std::mutex> lock(pending_->mutex);
  // Device buffers the queued work reads or writes: freed now, another stream could get them.
  const std::vector<Tensor>& outputs = results;
  for (const std::vector<Tensor>* list : {&inputs, &outputs}) {
    for (const Tensor& t : *list) {
      if (t.defined() && !t.device().is_cpu()) pending_->tensors.push_back(t);
    }
  }
  return results;
}

void Function::synchronize() const {
  for (const auto& s : streams_) s->synchronize();
  if (pending_) {
    const std::lock_guard<std::mutex> lock(pending_->mutex);
    pending_->tensors.clear();
  }
}

std::shared_ptr<DeviceStream> Function::stream(Device device) const {
  if (!plan_) return nullptr;
  for (std::size_t i = 0; i < plan_->devices.size() && i < streams_.size(); ++i) {
    if (plan_->devices[i] == device) return streams_[i];
  }
  return nullptr;
}

void Function::enable_profiling(bool on) {
  if (on && !plan_) {
    throw ValueError("enable_profiling of an empty Function (default-constructed, never compiled)");
  }
  // Checked before anything runs, so that a bad path fails here and not after the first call.
  if (on && !trace_file_.empty()) check_file_writable(trace_file_, "profile.trace_file");
  if (on && !profiler_) profiler_ = std::make_shared<Profiler>(plan_);
  profiling_ = on;
}

ProfileReport Function::profile() const {
  ProfileReport report;
  if (profiler_) report = profiler_->report();
  report.enabled = profiling_;
  return report;
}

void Function::reset_profile() {
  if (profiler_) profiler_->reset();
}

void Function::set_profile_trace_file(std::string path) {
  if (profiling_ && !path.empty()) check_file_writable(path, "profile.trace_file");
  trace_file_ = std::move(path);
}

std::int64_t Function::last_peak_bytes() const {
  return stats_ ? stats_->peak_bytes : 0;
}

std::int64_t Function::last_device_peak_bytes() const {
  return stats_ ? stats_->device_peak_bytes : 0;
}

std::shared_ptr<const MemoryPlan> Function::memory_plan() const {
  if (!memory_) return nullptr;
  const std::lock_guard<std::mutex> lock(memory_->mutex);
  return memory_->current;
}

std::int64_t Function::planned_peak_bytes(Device device) const {
  const std::shared_ptr<const MemoryPlan> plan = memory_plan();
  return plan != nullptr ? plan->peak_bytes_on(device) : -1;
}

std::string Function::memory_plan_str() const {
  const std::shared_ptr<const MemoryPlan> plan = memory_plan();
  return plan != nullptr ? plan->str(*plan_) : std::string();
}

std::int64_t Function::memory_plans_built() const {
  if (!memory_) return 0;
  const std::lock_guard<std::mutex> lock(memory_->mutex);
  return memory_->built;
}

std::int64_t Function::last_plan_misses() const {
  if (!memory_) return 0;
  const std::lock_guard<std::mutex> lock(memory_->mutex);
  return memory_->misses;
}

std::string Function::str() const {
  if (!graph_) return std::string();
  std::vector<Variable> updated;
  for (const auto& [var, value] : updates()) updated.push_back(var);
  return debugprint_with_updates(*graph_, updated);
}

}  // namespace convgraph
