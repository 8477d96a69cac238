#include "convgraph/planner/function.hpp"

#include <fmt/format.h>

#include <mutex>

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/runtime/device_backend.hpp"

namespace convgraph {

struct Function::Pending {
  std::mutex mutex;
  std::vector<Tensor> tensors;
};

Function::Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph,
                   std::vector<SharedVariable> shared)
    : plan_(std::move(plan)),
      graph_(std::move(graph)),
      shared_(std::move(shared)),
      stats_(std::make_shared<ExecutionStats>()),
      pending_(std::make_shared<Pending>()) {
  // One stream per device the plan runs on, for the lifetime of the function (and its copies).
  if (plan_) {
    for (const Device& device : plan_->devices) streams_.push_back(create_device_stream(device));
    if (static_cast<int>(shared_.size()) != plan_->num_shared_inputs) {
      throw ConvGraphError(
          fmt::format("internal error: the plan reads {} shared variable(s) but {} were given",
                      plan_->num_shared_inputs, shared_.size()));
    }
  }
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
    shared_[static_cast<std::size_t>(u.input) - num_args].container_ptr()->store(
        std::move(new_values[k]));
  }
}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  Profiler* profiler = profiling_ ? profiler_.get() : nullptr;
  if (shared_.empty()) {
    std::vector<Tensor> results = execute(*plan_, args, stats_.get(), profiler, streams_);
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
  std::vector<Tensor> new_values;
  try {
    results = execute(*plan_, all, stats_.get(), profiler, streams_, /*wait=*/true, donated);
    // Checked before the trace is written and stored after it, so that a call that throws leaves
    // every shared variable as it was (but those already written in place).
    new_values = take_updates(results);
  } catch (ConvGraphError& e) {
    note_written_in_place(e);
    throw;
  }
  write_trace(profiler);
  store_updates(new_values);
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
  std::vector<Tensor> results =
      execute(*plan_, inputs, stats_.get(), nullptr, streams_, /*wait=*/false);
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

std::string Function::str() const {
  if (!graph_) return std::string();
  std::vector<Variable> updated;
  for (const auto& [var, value] : updates()) updated.push_back(var);
  return debugprint_with_updates(*graph_, updated);
}

}  // namespace convgraph
