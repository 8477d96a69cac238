// Profiling of compiled functions: what the executor measures per step and per call, the
// Profiler that accumulates it, and the ProfileReport a user reads (a text table sorted by time,
// or a Chrome trace). See docs/profiling.md.
//
// The executor only measures when it is handed a Profiler: a function that is not profiled reads
// no clock at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace convgraph {

struct Plan;

// One step of one call, as the executor measured it. Times are nanoseconds since the process's
// profiling epoch (the same for every Profiler, so traces of several functions line up).
struct StepSample {
  std::int64_t start_ns = 0;
  std::int64_t duration_ns = 0;
  std::optional<double> flops;  // as the step's op counts them for this call's shapes
  // Bytes held by buffers this call allocated, right after the step (its outputs included).
  std::int64_t live_bytes = 0;
};

// A buffer held by the executor at the peak of a call: the slot holding it (the first, when
// several view it), the step that wrote that slot, and its size.
struct LiveValue {
  int slot = 0;
  int step = -1;     // index in the plan
  std::string node;  // that step's label (filled in by Profiler::report)
  std::int64_t bytes = 0;
};

// One complete call. Calls that throw are not recorded: their partial timings would skew the
// averages of the steps that did run.
struct CallSample {
  std::int64_t start_ns = 0;
  std::int64_t duration_ns = 0;  // the whole call: argument checks and executor included
  std::int64_t peak_bytes = 0;
  std::vector<StepSample> steps;  // one per plan step, in plan order
  // The first step after which the live bytes reached PEAK_BYTES, and the buffers alive then,
  // biggest first (-1 and none when the call allocated nothing).
  std::int64_t peak_step = -1;
  std::vector<LiveValue> peak_values;
};

// One plan step (one node), accumulated over the profiled calls.
struct ProfileRow {
  std::size_t step = 0;        // index in the plan, i.e. execution order
  std::string node;            // the step's label ("node #12 CorrMM{border=valid}")
  std::string op;              // what the node computes ("AbstractConv2d", "Elemwise")
  std::string implementation;  // what ran it ("CorrMM", or "perform": the op's reference code)
  std::int64_t calls = 0;
  double total_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  double percent = 0;  // of the summed time of all steps
  // Mean over the calls; absent when the op does not count its FLOPs.
  std::optional<double> flops_per_call;
  // Summed FLOPs over summed time; absent without FLOPs or without measurable time.
  std::optional<double> gflops_per_second;

  double ms_per_call() const { return calls > 0 ? total_ms / static_cast<double>(calls) : 0.0; }
};

struct ProfileReport {
  // Whether the function is profiling now. A report of a function that was never profiled has
  // no calls and no rows.
  bool enabled = false;
  std::int64_t calls = 0;
  double total_ms = 0;  // wall time of the profiled calls
  double steps_ms = 0;  // of which inside the steps' kernels (the rest: checks, bookkeeping)
  std::optional<double> flops_per_call;     // of the steps whose ops count FLOPs
  std::optional<double> gflops_per_second;  // those FLOPs over the time of those steps
  std::int64_t peak_bytes = 0;              // highest peak of one call (buffers the call allocated)
  std::int64_t last_peak_bytes = 0;         // the peak of the last profiled call
  std::vector<ProfileRow> rows;             // one per step, sorted by total time, longest first
  // Of the last profiled call: the step where its peak was reached and the values alive there,
  // biggest first (what a memory plan or a change of schedule can act on).
  std::int64_t last_peak_step = -1;
  std::string last_peak_node;
  std::vector<LiveValue> last_peak_values;
  // The most recent calls step by step, oldest first (bounded: see ProfilerOptions).
  std::vector<CallSample> recent_calls;
  std::int64_t first_recent_call = 1;  // the number (from 1) of recent_calls[0]
  int trace_thread = 0;                // "tid" of this function's events, distinct per Profiler

  // An aligned text table: a summary line, then one line per node, longest first.
  std::string table() const;
  // The values alive at the peak of the last profiled call, biggest first: at most MAX_ROWS
  // lines, then one line summing the rest.
  std::string memory_table(std::size_t max_rows = 20) const;
  // The recent calls in the Trace Event Format (chrome://tracing, ui.perfetto.dev): one "X"
  // event per call and per step, a "C" counter of live bytes, and metadata naming the thread.
  std::string chrome_trace_json() const;
};

struct ProfilerOptions {
  // The trace keeps the most recent calls, at most this many...
  std::size_t max_trace_calls = 100;
  // ...and, for big plans, only as many as fit this many step events (at least one call), so
  // that writing the trace after each call stays cheap.
  std::size_t max_trace_events = 20000;
};

// Accumulates the samples of one function's calls. Thread-safe: concurrent calls of one function
// record whole calls under a lock (their times then include the contention between them).
class Profiler {
 public:
  explicit Profiler(std::shared_ptr<const Plan> plan, ProfilerOptions options = {});

  // Nanoseconds since the process's profiling epoch (std::chrono::steady_clock).
  static std::int64_t now_ns();

  // Adds one complete call (steps in plan order, one per step).
  void record(CallSample call);
  ProfileReport report() const;
  // Forgets every recorded call.
  void reset();

  // The report's chrome_trace_json(), written to PATH atomically (see write_file_atomically).
  void write_chrome_trace(const std::string& path) const;

 private:
  struct StepTotals {
    std::int64_t calls = 0;
    std::int64_t total_ns = 0;
    std::int64_t min_ns = 0;
    std::int64_t max_ns = 0;
    double flops = 0;
    std::int64_t calls_with_flops = 0;
  };

  std::shared_ptr<const Plan> plan_;
  std::size_t trace_capacity_;  // calls kept for the trace
  int trace_thread_;
  mutable std::mutex mutex_;
  std::int64_t calls_ = 0;
  std::int64_t total_ns_ = 0;
  std::int64_t peak_bytes_ = 0;
  std::int64_t last_peak_bytes_ = 0;
  std::int64_t last_peak_step_ = -1;
  std::vector<LiveValue> last_peak_values_;
  std::vector<StepTotals> steps_;
  std::deque<CallSample> recent_;
  mutable std::mutex write_mutex_;  // one trace write at a time per function
};

// Writes TEXT to PATH so that PATH never holds a partial file: the text goes to a new temporary
// file in the same directory (same file system), which is then renamed over PATH. Throws
// ValueError naming PATH and the reason when that fails.
void write_file_atomically(const std::string& path, const std::string& text);

// Throws ValueError naming PATH and the reason unless a file can be created in its directory
// (and PATH is not a directory). WHAT names the setting in the message ("profile.trace_file").
void check_file_writable(const std::string& path, const std::string& what);

}  // namespace convgraph
