#include "convgraph/planner/function.hpp"

#include <mutex>

#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/runtime/device_backend.hpp"

namespace convgraph {

struct Function::Pending {
  std::mutex mutex;
  std::vector<Tensor> tensors;
};

Function::Function(std::shared_ptr<const Plan> plan, std::shared_ptr<const FunctionGraph> graph)
    : plan_(std::move(plan)),
      graph_(std::move(graph)),
      stats_(std::make_shared<ExecutionStats>()),
      pending_(std::make_shared<Pending>()) {
  // One stream per device the plan runs on, for the lifetime of the function (and its copies).
  if (plan_) {
    for (const Device& device : plan_->devices) streams_.push_back(create_device_stream(device));
  }
}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  if (!profiling_) return execute(*plan_, args, stats_.get(), nullptr, streams_);
  auto results = execute(*plan_, args, stats_.get(), profiler_.get(), streams_);
  if (!trace_file_.empty()) {
    try {
      profiler_->write_chrome_trace(trace_file_);
    } catch (ConvGraphError& e) {
      e.prepend("profile.trace_file: ");
      throw;
    }
  }
  return results;
}

std::vector<Tensor> Function::call_async(const std::vector<Tensor>& args) const {
  if (!plan_) throw ValueError("call of an empty Function (default-constructed, never compiled)");
  if (profiling_ || streams_.empty()) return (*this)(args);
  std::vector<Tensor> results =
      execute(*plan_, args, stats_.get(), nullptr, streams_, /*wait=*/false);
  const std::lock_guard<std::mutex> lock(pending_->mutex);
  // Device buffers the queued work reads or writes: freed now, another stream could get them.
  const std::vector<Tensor>& outputs = results;
  for (const std::vector<Tensor>* list : {&args, &outputs}) {
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
  return graph_ ? debugprint(*graph_) : std::string();
}

}  // namespace convgraph
