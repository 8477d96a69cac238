#include "convgraph/runtime/profile.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <system_error>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/plan.hpp"

namespace convgraph {
namespace {

// Chrome traces group events by process and thread; a single process id keeps every function of
// this process together, and each Profiler is a thread of its own (see trace_thread).
constexpr int kTracePid = 1;

std::chrono::steady_clock::time_point profiling_epoch() {
  static const auto epoch = std::chrono::steady_clock::now();
  return epoch;
}

double ms(std::int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
double us(std::int64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

// "1.235 G": FLOP counts span too many magnitudes for one fixed-point column.
std::string si(double value) {
  static constexpr const char* suffixes[] = {"", " k", " M", " G", " T", " P"};
  std::size_t i = 0;
  while (std::abs(value) >= 1000.0 && i + 1 < std::size(suffixes)) {
    value /= 1000.0;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}", value) : fmt::format("{:.3f}{}", value, suffixes[i]);
}

std::string bytes_str(std::int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024.0 * 1024.0) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024.0) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024.0));
  if (b >= 1024.0) return fmt::format("{:.2f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

std::string errno_message(int error) {
  return std::generic_category().message(error);
}

// A name no other writer (thread or process) picks for its temporary file: a random token drawn
// once per process, and a counter.
std::string temporary_name(const std::string& path) {
  static const std::uint64_t token = [] {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }();
  static std::atomic<std::uint64_t> counter{0};
  return fmt::format("{}.tmp-{:016x}-{}", path, token, counter.fetch_add(1));
}

}  // namespace

// ---- Profiler ----

Profiler::Profiler(std::shared_ptr<const Plan> plan, ProfilerOptions options)
    : plan_(std::move(plan)) {
  static std::atomic<int> next_thread{1};
  trace_thread_ = next_thread.fetch_add(1);
  const std::size_t steps = plan_ ? plan_->steps.size() : 0;
  steps_.resize(steps);
  const std::size_t fitting = std::max<std::size_t>(1, options.max_trace_events / (steps + 1));
  trace_capacity_ = std::max<std::size_t>(1, std::min(options.max_trace_calls, fitting));
  profiling_epoch();  // fixes the epoch before the first call is timed
}

std::int64_t Profiler::now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              profiling_epoch())
      .count();
}

void Profiler::record(CallSample call) {
  std::lock_guard lock(mutex_);
  if (call.steps.size() != steps_.size()) {
    throw ConvGraphError(
        fmt::format("internal error: profiler of a plan of {} steps given a call of {} steps",
                    steps_.size(), call.steps.size()));
  }
  ++calls_;
  total_ns_ += call.duration_ns;
  peak_bytes_ = std::max(peak_bytes_, call.peak_bytes);
  last_peak_bytes_ = call.peak_bytes;
  last_peak_step_ = call.peak_step;
  // Kept for the last call only: the trace does not show them.
  last_peak_values_ = std::move(call.peak_values);
  call.peak_values.clear();
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    StepTotals& t = steps_[i];
    const StepSample& s = call.steps[i];
    t.min_ns = t.calls == 0 ? s.duration_ns : std::min(t.min_ns, s.duration_ns);
    t.max_ns = t.calls == 0 ? s.duration_ns : std::max(t.max_ns, s.duration_ns);
    ++t.calls;
    t.total_ns += s.duration_ns;
    if (s.flops) {
      t.flops += *s.flops;
      ++t.calls_with_flops;
    }
  }
  recent_.push_back(std::move(call));
  while (recent_.size() > trace_capacity_) recent_.pop_front();
}

ProfileReport Profiler::report() const {
  ProfileReport r;
  r.enabled = true;
  r.trace_thread = trace_thread_;
  std::lock_guard lock(mutex_);
  r.calls = calls_;
  r.total_ms = ms(total_ns_);
  r.peak_bytes = peak_bytes_;
  r.last_peak_bytes = last_peak_bytes_;
  r.last_peak_step = last_peak_step_;
  r.last_peak_values = last_peak_values_;
  const auto label = [&](std::int64_t step) {
    return step >= 0 && static_cast<std::size_t>(step) < plan_->steps.size()
               ? plan_->steps[static_cast<std::size_t>(step)].label
               : std::string();
  };
  r.last_peak_node = label(last_peak_step_);
  for (LiveValue& v : r.last_peak_values) v.node = label(v.step);
  r.first_recent_call = calls_ - static_cast<std::int64_t>(recent_.size()) + 1;
  r.recent_calls.assign(recent_.begin(), recent_.end());
  if (calls_ == 0) return r;

  std::int64_t steps_ns = 0, counted_ns = 0;
  double counted_flops = 0;
  bool any_flops = false;
  for (const StepTotals& t : steps_) steps_ns += t.total_ns;
  r.steps_ms = ms(steps_ns);
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const StepTotals& t = steps_[i];
    const PlanStep& step = plan_->steps[i];
    ProfileRow row;
    row.step = i;
    row.node = step.label;
    row.op = step.op_name;
    row.implementation = step.implementation;
    row.calls = t.calls;
    row.total_ms = ms(t.total_ns);
    row.min_ms = ms(t.min_ns);
    row.max_ms = ms(t.max_ns);
    row.percent = steps_ns > 0
                      ? 100.0 * static_cast<double>(t.total_ns) / static_cast<double>(steps_ns)
                      : 0.0;
    // A rate needs the FLOPs of every call it is measured over.
    if (t.calls > 0 && t.calls_with_flops == t.calls) {
      row.flops_per_call = t.flops / static_cast<double>(t.calls);
      // FLOPs per nanosecond are GFLOP/s.
      if (t.total_ns > 0) row.gflops_per_second = t.flops / static_cast<double>(t.total_ns);
      counted_flops += t.flops;
      counted_ns += t.total_ns;
      any_flops = true;
    }
    r.rows.push_back(std::move(row));
  }
  if (any_flops) {
    r.flops_per_call = counted_flops / static_cast<double>(calls_);
    if (counted_ns > 0) r.gflops_per_second = counted_flops / static_cast<double>(counted_ns);
  }
  std::stable_sort(r.rows.begin(), r.rows.end(), [](const ProfileRow& a, const ProfileRow& b) {
    return a.total_ms > b.total_ms;
  });
  return r;
}

void Profiler::reset() {
  std::lock_guard lock(mutex_);
  calls_ = 0;
  total_ns_ = 0;
  peak_bytes_ = 0;
  last_peak_bytes_ = 0;
  last_peak_step_ = -1;
  last_peak_values_.clear();
  std::fill(steps_.begin(), steps_.end(), StepTotals{});
  recent_.clear();
}

void Profiler::write_chrome_trace(const std::string& path) const {
  const std::string text = report().chrome_trace_json();
  // Serialised so that an older trace never replaces a newer one of the same function.
  std::lock_guard lock(write_mutex_);
  write_file_atomically(path, text);
}

// ---- ProfileReport ----

std::string ProfileReport::table() const {
  if (calls == 0) {
    return enabled ? std::string("Profile: profiling is on, but no call has completed yet.\n")
                   : std::string(
                         "Profile: profiling is off for this function (compile it with the flag "
                         "profile=True, or call Function::enable_profiling()).\n");
  }
  std::string out = fmt::format("Profile{} of {} call{}: {:.3f} ms in total, {:.3f} ms per call\n",
                                enabled ? "" : " (profiling now off)", calls, calls == 1 ? "" : "s",
                                total_ms, total_ms / static_cast<double>(calls));
  out += fmt::format(
      "  in the nodes: {:.3f} ms ({:.1f}%; the rest is argument checks and executor "
      "bookkeeping)\n",
      steps_ms, total_ms > 0 ? 100.0 * steps_ms / total_ms : 0.0);
  if (flops_per_call) {
    const std::string count = si(*flops_per_call);
    // "226.492 MFLOP", "500 FLOP".
    const char* space = std::isdigit(static_cast<unsigned char>(count.back())) ? " " : "";
    out +=
        fmt::format("  FLOPs per call: {}{}FLOP, {} GFLOP/s in the nodes that count them\n", count,
                    space, gflops_per_second ? fmt::format("{:.2f}", *gflops_per_second) : "-");
  }
  out += fmt::format("  peak memory of a call: {} (last call {})\n\n", bytes_str(peak_bytes),
                     bytes_str(last_peak_bytes));

  const std::vector<std::string> header = {"%",      "total ms",       "ms/call",   "calls",
                                           "min ms", "max ms",         "FLOP/call", "GFLOP/s",
                                           "op",     "implementation", "node"};
  // Numbers are right-aligned, names left-aligned; the node label comes last so that a long one
  // does not push the other columns apart.
  const std::size_t first_text = 8;
  std::vector<std::vector<std::string>> cells;
  cells.push_back(header);
  for (const ProfileRow& row : rows) {
    cells.push_back({fmt::format("{:.1f}", row.percent), fmt::format("{:.3f}", row.total_ms),
                     fmt::format("{:.3f}", row.ms_per_call()), fmt::format("{}", row.calls),
                     fmt::format("{:.3f}", row.min_ms), fmt::format("{:.3f}", row.max_ms),
                     row.flops_per_call ? si(*row.flops_per_call) : "-",
                     row.gflops_per_second ? fmt::format("{:.2f}", *row.gflops_per_second) : "-",
                     row.op, row.implementation, row.node});
  }
  std::vector<std::size_t> width(header.size(), 0);
  for (const auto& line : cells) {
    for (std::size_t c = 0; c < line.size(); ++c) width[c] = std::max(width[c], line[c].size());
  }
  for (const auto& line : cells) {
    std::string text;
    for (std::size_t c = 0; c < line.size(); ++c) {
      if (c) text += "  ";
      if (c + 1 == line.size()) {
        text += line[c];
      } else if (c < first_text) {
        text += fmt::format("{:>{}}", line[c], width[c]);
      } else {
        text += fmt::format("{:<{}}", line[c], width[c]);
      }
    }
    out += text + "\n";
  }
  return out;
}

std::string ProfileReport::memory_table(std::size_t max_rows) const {
  if (last_peak_step < 0) {
    return "Peak memory: no profiled call has allocated anything yet.\n";
  }
  std::string out = fmt::format(
      "Peak memory of the last call: {} after step {} ({}); {} values alive:\n",
      bytes_str(last_peak_bytes), last_peak_step, last_peak_node, last_peak_values.size());
  std::int64_t rest = 0;
  std::size_t rest_count = 0;
  for (std::size_t i = 0; i < last_peak_values.size(); ++i) {
    const LiveValue& v = last_peak_values[i];
    if (i < max_rows) {
      out += fmt::format("  {:>10}  step {:>5}  {}\n", bytes_str(v.bytes), v.step, v.node);
    } else {
      rest += v.bytes;
      ++rest_count;
    }
  }
  if (rest_count > 0)
    out += fmt::format("  {:>10}  in {} more values\n", bytes_str(rest), rest_count);
  return out;
}

std::string ProfileReport::chrome_trace_json() const {
  using nlohmann::json;
  json events = json::array();
  const std::string thread_name = fmt::format("convgraph Function #{}", trace_thread);
  events.push_back({{"name", "process_name"},
                    {"ph", "M"},
                    {"pid", kTracePid},
                    {"tid", trace_thread},
                    {"args", {{"name", "convgraph"}}}});
  events.push_back({{"name", "thread_name"},
                    {"ph", "M"},
                    {"pid", kTracePid},
                    {"tid", trace_thread},
                    {"args", {{"name", thread_name}}}});
  // The rows are sorted by time; the samples are in plan order.
  std::vector<const ProfileRow*> row_of_step(rows.size(), nullptr);
  for (const ProfileRow& row : rows) {
    if (row.step < row_of_step.size()) row_of_step[row.step] = &row;
  }
  const std::string counter = fmt::format("live bytes ({})", thread_name);
  for (std::size_t c = 0; c < recent_calls.size(); ++c) {
    const CallSample& call = recent_calls[c];
    const std::int64_t number = first_recent_call + static_cast<std::int64_t>(c);
    events.push_back({{"name", fmt::format("call {}", number)},
                      {"cat", "call"},
                      {"ph", "X"},
                      {"ts", us(call.start_ns)},
                      {"dur", us(call.duration_ns)},
                      {"pid", kTracePid},
                      {"tid", trace_thread},
                      {"args", {{"call", number}, {"peak_bytes", call.peak_bytes}}}});
    for (std::size_t i = 0; i < call.steps.size(); ++i) {
      const StepSample& s = call.steps[i];
      const ProfileRow* row = i < row_of_step.size() ? row_of_step[i] : nullptr;
      json args = {{"call", number}, {"live_bytes", s.live_bytes}};
      if (row != nullptr) {
        args["op"] = row->op;
        args["implementation"] = row->implementation;
      }
      if (s.flops) {
        args["flops"] = *s.flops;
        if (s.duration_ns > 0) args["GFLOP/s"] = *s.flops / static_cast<double>(s.duration_ns);
      }
      events.push_back({{"name", row != nullptr ? row->node : fmt::format("step {}", i)},
                        {"cat", "node"},
                        {"ph", "X"},
                        {"ts", us(s.start_ns)},
                        {"dur", us(s.duration_ns)},
                        {"pid", kTracePid},
                        {"tid", trace_thread},
                        {"args", std::move(args)}});
      events.push_back({{"name", counter},
                        {"ph", "C"},
                        {"ts", us(s.start_ns + s.duration_ns)},
                        {"pid", kTracePid},
                        {"tid", trace_thread},
                        {"args", {{"bytes", s.live_bytes}}}});
    }
  }
  json trace = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  return trace.dump();
}

// ---- files ----

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string temp = temporary_name(path);
  // "x": never reuse (or follow a link planted at) an existing name.
  std::FILE* file = std::fopen(temp.c_str(), "wx");
  if (file == nullptr) {
    throw ValueError(fmt::format("cannot write '{}': creating the temporary file '{}' failed: {}",
                                 path, temp, errno_message(errno)));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const int write_error = errno;
  // No fsync: the rename is what keeps readers from seeing a partial file; durability across a
  // power loss is not worth a disk flush after every profiled call.
  const bool closed = std::fclose(file) == 0;
  const int close_error = errno;
  std::error_code ignored;
  if (!written || !closed) {
    std::filesystem::remove(temp, ignored);
    throw ValueError(fmt::format("cannot write '{}': writing '{}' failed: {}", path, temp,
                                 errno_message(written ? close_error : write_error)));
  }
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    std::filesystem::remove(temp, ignored);
    throw ValueError(fmt::format("cannot write '{}': renaming '{}' to it failed: {}", path, temp,
                                 error.message()));
  }
}

void check_file_writable(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path file(path);
  std::error_code error;
  if (fs::is_directory(file, error)) {
    throw ValueError(
        fmt::format("{}: cannot write '{}': it is a directory; expected a file path", what, path));
  }
  const fs::path directory = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (!fs::is_directory(directory, error)) {
    throw ValueError(fmt::format("{}: cannot write '{}': the directory '{}' does not exist", what,
                                 path, directory.string()));
  }
  // Permissions alone do not tell (read-only mounts, ACLs, running as root): try what a write does.
  const std::string probe = temporary_name(path);
  std::FILE* file_handle = std::fopen(probe.c_str(), "wx");
  if (file_handle == nullptr) {
    throw ValueError(fmt::format("{}: cannot write '{}': cannot create a file in '{}': {}", what,
                                 path, directory.string(), errno_message(errno)));
  }
  std::fclose(file_handle);
  fs::remove(probe, error);
}

}  // namespace convgraph
