#include "convgraph/optimizer/conv_meta.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>

#include "convgraph/build_config.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_meta_candidates.hpp"
#include "convgraph/optimizer/conv_meta_check.hpp"
#include "convgraph/planner/compile.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "convgraph/runtime/device_backend.hpp"
#include "convgraph/runtime/timing.hpp"
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#endif
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#endif

namespace convgraph {
namespace {

// ---- counters ----

struct Counters {
  std::atomic<std::int64_t> nodes_replaced{0}, cache_hits{0}, nodes_timed{0}, candidates_timed{0},
      nodes_left{0}, candidates_rejected{0}, candidates_cut{0}, candidates_cut_at_warm_up{0},
      candidates_warmed_up_twice{0}, nodes_decided_by_first_calls{0}, candidates_skipped{0},
      candidates_dropped_in_refine{0};
  // Where the pass's time goes (wall seconds), accumulated over every node; see ConvMetaStats.
  std::atomic<double> seconds_total{0}, seconds_inputs{0}, seconds_build{0}, seconds_compile{0},
      seconds_warm_up{0}, seconds_timed{0}, seconds_refine{0}, seconds_check{0};
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void add_seconds(std::atomic<double>& into, double seconds) {
  double old = into.load();
  while (!into.compare_exchange_weak(old, old + seconds)) {
  }
}

Counters& counters() {
  static Counters instance;
  return instance;
}

void say(const std::string& line) {
  std::fprintf(stderr, "convgraph: conv_meta: %s\n", line.c_str());
}

StaticShape as_static(const Shape& shape) {
  return StaticShape(shape.begin(), shape.end());
}

// ---- building on the node's own inputs ----

Variable build_on_node(const MetaCandidate& c, Node& node, const AbstractConv& op,
                       const ProblemShapes& shapes, const PassContext& ctx, std::string* why_not) {
  std::vector<Variable> inputs = node.inputs;
  // The choice was made for these shapes, and alternatives drop the hints. Where the graph
  // knows a shape only from the hints, check it at run time, as the abstract op checks hints.
  const char* message =
      "conv_meta: the input shape differs from the one the convolution was "
      "tuned for (imshp / kshp hints)";
  inputs[0] = assert_shape(inputs[0], as_static(shapes.first), message, true);
  inputs[1] = assert_shape(inputs[1], as_static(shapes.second), message, true);
  try {
    Variable lowered = build_meta_candidate(c, op, inputs, shapes, ctx, why_not);
    // An alternative reads the inputs in another order, so its dtype follows another input: a
    // node built without the builders' casts could get a replacement of another type.
    const TensorType& expected = node.output_data[0].type;
    if (lowered.defined() && !expected.accepts(lowered.type())) {
      *why_not =
          fmt::format("it computes a {}, the node a {}", lowered.type().str(), expected.str());
      return {};
    }
    return lowered;
  } catch (const std::exception& e) {
    // A candidate that cannot be built must never fail the compile: the later passes remain.
    *why_not = e.what();
    return {};
  }
}

// ---- timing ----

// Uniform values in [-1, 1) from a splitmix64 stream: what the timing needs is data of the right
// shape that is not all zeros (nor denormal), made fast, since a network's inputs are large (a
// Mersenne Twister through a vector of doubles took seconds over resnet50's convolutions).
template <typename T>
void fill_uniform(T* out, std::int64_t n, std::uint64_t seed) {
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
  for (std::int64_t i = 0; i < n; ++i) {
    state += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    // The top 53 bits as a double in [0, 1), then scaled to [-1, 1).
    const double unit = static_cast<double>(z >> 11) * 0x1.0p-53;
    out[i] = static_cast<T>(2.0 * unit - 1.0);
  }
}

Tensor random_input(const TensorType& type, const Shape& shape, std::uint64_t seed) {
  const std::int64_t n = shape_numel(shape);
  Tensor t;
  if (type.dtype == DType::float32) {
    t = Tensor::empty(DType::float32, shape);
    fill_uniform(t.data<float>(), n, seed);
  } else if (type.dtype == DType::float64) {
    t = Tensor::empty(DType::float64, shape);
    fill_uniform(t.data<double>(), n, seed);
  } else {
    std::vector<double> values(static_cast<std::size_t>(n));
    fill_uniform(values.data(), n, seed);
    t = Tensor::from_vector<double>(values, shape).cast(type.dtype);
  }
  return type.device.is_cpu() ? t : t.to(type.device);
}

// The seconds of one call of F on ARGS: device time from events on its stream when it runs on a
// device, else the fastest of repeated host calls (runtime/timing.hpp).
double time_function(const Function& f, const std::vector<Tensor>& args, int max_host_runs = 10) {
  if (!f.plan().devices.empty()) {
    if (const std::shared_ptr<DeviceStream> stream = f.stream(f.plan().devices.front())) {
      // One call alone: how long the host takes to queue it, and about how long it runs.
      const Clock::time_point t0 = Clock::now();
      f.call_async(args);
      const double queue_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      f.synchronize();
      const double call_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      const double seconds = min_device_seconds(
          *stream, [&] { f.call_async(args); }, call_seconds > 0.02 ? 3 : 10, queue_seconds);
      f.synchronize();
      return seconds;
    }
  }
  return min_host_seconds([&] { f(args); }, max_host_runs);
}

// The node's inputs as the candidates run on them: fresh random values of the node's shapes.
struct TimingInputs {
  Variable a, b;
  std::vector<Variable> graph_inputs;  // a, b and the constant shape input of the gradients
  std::vector<Tensor> values;          // for a and b
};

TimingInputs make_timing_inputs(const Node& node, const ProblemShapes& shapes) {
  const TensorType& t0 = node.inputs[0].type();
  const TensorType& t1 = node.inputs[1].type();
  const TensorType first(t0.dtype, as_static(shapes.first), t0.device);
  const TensorType second(t1.dtype, as_static(shapes.second), t1.device);
  TimingInputs in;
  in.a = make_input(first, "meta_input0");
  in.b = make_input(second, "meta_input1");
  in.graph_inputs = {in.a, in.b};
  if (node.inputs.size() > 2) in.graph_inputs.push_back(node.inputs[2]);  // the shape input
  in.values = {random_input(first, shapes.first, 1), random_input(second, shapes.second, 2)};
  return in;
}

struct Timing {
  const MetaCandidate* candidate = nullptr;
  bool ran = false;        // compiled and timed
  bool attempted = false;  // applicable: it was compiled (and may have thrown)
  double seconds = 0;
  bool warm_up_only = false;         // SECONDS is its warm-up call's: a clear loser already
  bool heavy_loser = false;          // that warm-up took over kHeavyLossFactor times the limit
  std::string why_not;               // not applicable, or the exception
  std::optional<Function> function;  // kept for the check of the winner
  std::optional<Tensor> result;      // of its first timed call on the host, for the check
  // Wall time of each step, for the pass's time split (ConvMetaStats, metaopt.verbose=2).
  double build_seconds = 0, compile_seconds = 0, warm_up_seconds = 0, timed_seconds = 0,
         refine_seconds = 0;
  int refine_calls = 0;
};

// How much slower than the fastest first call so far a warm-up call may be before the candidate
// is cut without a timed call: twice the clear-loser margin, since a warm-up also pays one-time
// costs (first touch of its buffers) that the timed calls do not.
constexpr double kWarmUpLoserFactor = 2.0;
// A warm-up call over this many times the warm-up cut's limit (6x the fastest first call at the
// default margin) counts toward metaopt.skip_after_warm_up_cuts. A busy machine can stretch one
// call past the limit; twice past it on consecutive problems is the candidate, not the machine.
constexpr double kHeavyLossFactor = 2.0;

// Compiles candidate C and runs it once (the warm-up); on the host, then times one call, unless
// the warm-up alone took more than WARM_UP_LIMIT seconds (a clear loser: its warm-up time is kept,
// and it is not timed again).
Timing time_candidate(const MetaCandidate& c, const AbstractConv& op, const ProblemShapes& shapes,
                      const TimingInputs& in, const PassContext& ctx, const Config& timing_config,
                      double warm_up_limit) {
  Timing timing;
  timing.candidate = &c;
  Clock::time_point t0 = Clock::now();
  try {
    const Variable lowered =
        build_meta_candidate(c, op, in.graph_inputs, shapes, ctx, &timing.why_not);
    timing.build_seconds = seconds_since(t0);
    if (!lowered.defined()) return timing;
    timing.attempted = true;
    CompileOptions options;
    options.config = timing_config;
    // On a device, the result stays there: a copy to the host is not the candidate's cost.
    options.outputs_on_device = !in.a.type().device.is_cpu();
    t0 = Clock::now();
    Function f = compile({in.a, in.b}, {lowered}, options);
    timing.compile_seconds = seconds_since(t0);
    // Warm-up: first-touch allocation and one-time set-up are not what we compare.
    const bool host = in.a.type().device.is_cpu();
    t0 = Clock::now();
    f(in.values);
    double warm_up = seconds_since(t0);
    timing.warm_up_seconds = warm_up;
    if (host && warm_up > warm_up_limit) {
      // One-time set-up can take far more than the margin allows for: oneDNN generates its
      // kernels' code at the first call (62 ms for a Winograd weight gradient whose calls take
      // 6). A second call decides; the cut judges it instead.
      ++counters().candidates_warmed_up_twice;
      t0 = Clock::now();
      f(in.values);
      warm_up = seconds_since(t0);
      timing.warm_up_seconds += warm_up;
    }
    if (host && warm_up > warm_up_limit) {
      timing.seconds = warm_up;
      timing.warm_up_only = true;
      timing.heavy_loser = warm_up > kHeavyLossFactor * warm_up_limit;
    } else {
      // On the host one timed call first; the contenders are timed again once every candidate
      // has had its first call (refine_contenders). Its result is kept for the check of the
      // winner, which then needs no call of its own.
      t0 = Clock::now();
      if (host) {
        std::vector<Tensor> out = f(in.values);
        timing.seconds = seconds_since(t0);
        timing.result = std::move(out.at(0));
      } else {
        timing.seconds = time_function(f, in.values, 10);
      }
      timing.timed_seconds = seconds_since(t0);
    }
    timing.function = std::move(f);
    timing.ran = true;
  } catch (const std::exception& e) {
    timing.attempted = true;
    timing.why_not = e.what();
  }
  return timing;
}

// What timing T cost the compile, for metaopt.verbose=2.
std::string cost_of(const Timing& t) {
  return fmt::format(
      " [cost: build {:.0f} ms, compile {:.0f} ms, warm-up {:.0f} ms, timed {:.0f} ms, "
      "refine {:.0f} ms]",
      1e3 * t.build_seconds, 1e3 * t.compile_seconds, 1e3 * t.warm_up_seconds,
      1e3 * t.timed_seconds, 1e3 * t.refine_seconds);
}

// How long one contender's repeated calls may take in all; its later rounds are skipped past it.
constexpr double kRefineBudgetSeconds = 0.2;

// Times again the host candidates whose first call took at most LOSER_PERCENT of the fastest first
// call; the clear losers keep their one call's time. The contenders are called in rounds, one call
// each, at most REFINE_RUNS rounds; each keeps its fastest call. After round r a contender over
// 100 + (LOSER_PERCENT - 100) / 2^r percent of the leader's fastest call (125%, then 112.5%, ... at
// the default 150) leaves the race: the margin shrinks as the leader's time firms up. The race ends
// when one contender is left; when the first calls leave one alone, nothing is timed again (more
// calls could only lower its time). A call's noise on a quiet machine is a few percent: under load
// a loser may stay longer, and the leader itself is never dropped.
void refine_contenders(std::vector<Timing>& timings, const TimingInputs& in,
                       std::int64_t loser_percent, std::int64_t refine_runs, std::int64_t verbose) {
  if (!in.a.type().device.is_cpu()) {  // device candidates are timed in full at once
    for (const Timing& t : timings) {
      if (t.ran && verbose >= 2) {
        say(fmt::format("  * {}: {:.5g} s{}", t.candidate->name, t.seconds, cost_of(t)));
      }
    }
    return;
  }
  const double factor = loser_percent > 0 ? static_cast<double>(loser_percent) / 100.0
                                          : std::numeric_limits<double>::infinity();
  auto fastest = [&]() {
    double best = std::numeric_limits<double>::infinity();
    for (const Timing& t : timings) {
      if (t.ran) best = std::min(best, t.seconds);
    }
    return best;
  };
  const double best_first = fastest();
  std::vector<Timing*> racing;
  std::vector<std::string> notes(timings.size());
  for (Timing& t : timings) {
    if (!t.ran) continue;
    if (t.seconds > factor * best_first) {
      ++counters().candidates_cut;
      if (t.warm_up_only) ++counters().candidates_cut_at_warm_up;
      notes[static_cast<std::size_t>(&t - timings.data())] =
          fmt::format(" ({}, over {}% of the fastest: not timed again)",
                      t.warm_up_only ? "its warm-up call" : "one call", loser_percent);
      continue;
    }
    racing.push_back(&t);
  }
  if (loser_percent > 0 && racing.size() == 1) {
    ++counters().nodes_decided_by_first_calls;
    notes[static_cast<std::size_t>(racing.front() - timings.data())] =
        " (the only contender: not timed again)";
    racing.clear();
  }
  for (std::int64_t round = 1; round <= refine_runs && racing.size() > 1; ++round) {
    for (Timing* t : racing) {
      if (t->refine_seconds + t->seconds > kRefineBudgetSeconds) continue;
      try {
        const Clock::time_point t0 = Clock::now();
        (*t->function)(in.values);
        const double call = seconds_since(t0);
        t->seconds = std::min(t->seconds, call);
        t->refine_seconds += call;
        ++t->refine_calls;
      } catch (const std::exception& e) {
        t->ran = false;
        t->why_not = e.what();
        if (verbose >= 1) say(fmt::format("  * {}: exception: {}", t->candidate->name, t->why_not));
      }
    }
    std::erase_if(racing, [](const Timing* t) { return !t->ran; });
    const double leader = fastest();
    const double margin = 1.0 + (factor - 1.0) / static_cast<double>(std::int64_t{1} << round);
    std::erase_if(racing, [&](Timing* t) {
      if (t->seconds <= margin * leader) return false;
      ++counters().candidates_dropped_in_refine;
      notes[static_cast<std::size_t>(t - timings.data())] =
          fmt::format(" (over {:.4g}% of the leader after {} more calls: not timed again)",
                      100.0 * margin, t->refine_calls);
      return true;
    });
  }
  if (verbose >= 2) {
    for (std::size_t i = 0; i < timings.size(); ++i) {
      const Timing& t = timings[i];
      if (!t.ran) continue;
      say(fmt::format("  * {}: {:.5g} s{}{}", t.candidate->name, t.seconds, notes[i], cost_of(t)));
    }
  }
}

// The flags a candidate's own small Function is compiled with: it is already concrete, so only
// the plain pipeline is needed, silently; DebugMode or profiling would time their own overhead.
Config make_timing_config(const Config& base) {
  Config c = base;
  for (const char* list : {"optimizer_including", "optimizer_excluding", "optimizer_requiring",
                           "optimizer.print_before", "optimizer.print_after", "conv.impl"}) {
    c.set(list, "");
  }
  c.set("optimizer.list_passes", "False");
  c.set("mode", "FAST_RUN");
  c.set("profile", "False");
  // A candidate's calls allocate from the caching allocator, warm after the warm-up call; a memory
  // plan's arena would be built by the first timed call and first touched by the second.
  c.set("memory_plan", "False");
  return c;
}

// ---- the check of a winner (conv_meta_check.hpp) ----

class WinnerCheck {
 public:
  WinnerCheck(const AbstractConv& op, const ProblemShapes& shapes, const TimingInputs& in,
              const Config& config)
      : op_(op), shapes_(shapes), in_(in) {
    const TensorType& out = in.a.type();
    tolerance_ = meta_tolerance(out.dtype, config.get_bool("dnn.conv.allow_tf32"));
    flops_ = conv_flops(op.params(), image_shape(), kernel_shape(), forward_output_shape());
  }

  // Whether T's result agrees with the reference, or (above kMetaReferenceMaxFlops) with another
  // candidate of RANKED that ran; *WHY says how it was checked or why it is wrong.
  bool passes(Timing& t, std::vector<Timing*>& ranked, std::string* why) {
    const Tensor mine = result(t);
    if (flops_ <= kMetaReferenceMaxFlops) return against_reference(mine, why);
    bool others = false;
    for (Timing* other : ranked) {
      if (other == &t) continue;
      others = true;
      const double error = relative_max_error(mine, result(*other));
      if (error <= tolerance_) {
        *why = fmt::format("agrees with {} (relative error {:.2g})", other->candidate->name, error);
        return true;
      }
    }
    if (!others) {
      *why = "the only candidate that ran: nothing to choose between";
      return true;
    }
    // It agrees with none of the others: only the reference can tell who is wrong.
    return against_reference(mine, why);
  }

 private:
  Shape image_shape() const {
    return op_.direction() == ConvDirection::grad_inputs ? shapes_.output : shapes_.first;
  }
  // The forward convolution's output: the gradients' topgrad. (Counting the gradients' own
  // output instead, a weight gradient's kernel-sized one, made large problems look tiny and sent
  // them to the slow reference.)
  Shape forward_output_shape() const {
    return op_.direction() == ConvDirection::forward ? shapes_.output : shapes_.second;
  }
  Shape kernel_shape() const {
    switch (op_.direction()) {
      case ConvDirection::forward:
        return shapes_.second;
      case ConvDirection::grad_inputs:
        return shapes_.first;
      case ConvDirection::grad_weights:
        return shapes_.output;
    }
    return {};
  }
  Tensor result(Timing& t) {
    auto it = std::find_if(results_.begin(), results_.end(),
                           [&](const auto& entry) { return entry.first == &t; });
    if (it != results_.end()) return it->second;
    Tensor out = t.result ? *t.result : (*t.function)(in_.values)[0];
    results_.emplace_back(&t, out);
    return out;
  }
  bool against_reference(const Tensor& mine, std::string* why) {
    if (!reference_) {
      reference_ = meta_reference_result(op_, in_.values[0], in_.values[1], shapes_.spatial);
    }
    const double error = relative_max_error(mine, *reference_);
    const bool ok = error <= tolerance_;
    *why = fmt::format("relative error {:.2g} against the reference (tolerance {:.2g})", error,
                       tolerance_);
    return ok;
  }

  const AbstractConv& op_;
  const ProblemShapes& shapes_;
  const TimingInputs& in_;
  double tolerance_ = 0;
  double flops_ = 0;
  std::optional<Tensor> reference_;
  std::vector<std::pair<const Timing*, Tensor>> results_;
};

// ---- one node ----

const char* direction_name(ConvDirection d) {
  switch (d) {
    case ConvDirection::forward:
      return "forward";
    case ConvDirection::grad_inputs:
      return "grad_inputs";
    case ConvDirection::grad_weights:
      return "grad_weights";
  }
  return "?";
}

std::string describe_shapes(const AbstractConv& op, const ProblemShapes& s, DType dtype) {
  const bool forward = op.direction() == ConvDirection::forward;
  const bool grad_inputs = op.direction() == ConvDirection::grad_inputs;
  return fmt::format("{} {}, {} {} -> {} ({})", grad_inputs ? "kernel" : "image",
                     shape_str(s.first), forward ? "kernel" : "topgrad", shape_str(s.second),
                     shape_str(s.output), dtype_name(dtype));
}

// The GPU's part of an autotune key: the device's name, compute capability and SM count, and the
// library versions a choice depends on.
std::string gpu_fingerprint(Device device) {
#if CONVGRAPH_HAVE_CUDA
  std::string print = cuda::fingerprint(device.index);
#if CONVGRAPH_HAVE_CUDNN
  print += "; cuDNN " + cudnn_version();
#endif
  return print;
#else
  return device.str();
#endif
}

AutotuneKey make_key(const Node& node, const AbstractConv& op, const ProblemShapes& s,
                     const std::vector<const MetaCandidate*>& offered, const PassContext& ctx) {
  const ConvParams& p = op.params();
  AutotuneKey key;
  key.tuner = "conv_meta";
  // The kernels of the function being compiled run with its configuration's thread count.
  const Device device = node.output_data[0].type.device;
  key.device = device.is_cpu() ? cpu_device_fingerprint(ctx.config.get_int("threads"))
                               : gpu_fingerprint(device);
  std::vector<std::string> names;
  for (const MetaCandidate* c : offered) names.push_back(c->name);
  key.fields = {
      {"direction", direction_name(op.direction())},
      {"convdim", std::to_string(p.convdim)},
      {"params", p.str()},
      {"hints",
       fmt::format("imshp={} kshp={}", static_shape_str(p.imshp), static_shape_str(p.kshp))},
      {"shapes", fmt::format("{} {} spatial={} output={}", shape_str(s.first), shape_str(s.second),
                             shape_str(s.spatial), shape_str(s.output))},
      {"dtype", std::string(dtype_name(node.inputs[0].dtype()))},
      // A different set of candidates may have a different winner.
      {"candidates", fmt::format("{}", fmt::join(names, ","))},
  };
  if (device.is_cuda()) {
    // What the cuDNN candidates compute with, and how they pick their algorithms.
    for (const char* flag : {"dnn.conv.precision", "dnn.conv.allow_tf32", "dnn.conv.algo_fwd",
                             "dnn.conv.algo_bwd_data", "dnn.conv.algo_bwd_filter",
                             "dnn.conv.workspace_limit_mb", "dnn.enabled"}) {
      key.fields.emplace_back(flag, ctx.config.get(flag));
    }
  }
  return key;
}

// What one run of the pass remembers between nodes: per kind of problem (problem_kind), how many
// problems in a row each candidate was cut at its warm-up call by a wide margin (heavy_loser).
struct KindHistory {
  std::map<std::string, std::map<std::string, int>> cuts;
};

// Problems of one kind differ only in their batch, channels and image size: same direction,
// parameters, kernel size, dtype and device. How the direction alternatives fare depends mostly on
// these (a 1x1 forward computed as a weight gradient is many times slower at every size).
std::string problem_kind(const AbstractConv& op, const ProblemShapes& s, const Node& node) {
  const Shape& kernel = op.direction() == ConvDirection::forward       ? s.second
                        : op.direction() == ConvDirection::grad_inputs ? s.first
                                                                       : s.output;
  const auto n = static_cast<std::ptrdiff_t>(op.params().convdim);
  const Shape taps(kernel.end() - std::min<std::ptrdiff_t>(n, std::ssize(kernel)), kernel.end());
  return fmt::format("{} {} kernel {} {} {}", direction_name(op.direction()), op.params().str(),
                     shape_str(taps), dtype_name(node.inputs[0].dtype()),
                     node.output_data[0].type.device.str());
}

Variable meta_optimize(Node& node, const AbstractConv& op,
                       const std::vector<MetaCandidate>& selected, const PassContext& ctx,
                       const Config& timing_config, std::int64_t verbose, KindHistory& history) {
  const std::string who = fmt::format("{} (node #{})", op.str(), node.id);
  const char* left = "left to the conv_impl / conv_dnn / conv_gemm passes";
  std::string why;
  const std::optional<ProblemShapes> shapes = resolve_problem_shapes(node, op, &why);
  if (!shapes) {
    if (verbose >= 1) say(fmt::format("cannot meta-optimize {}: {}; {}", who, why, left));
    ++counters().nodes_left;
    return {};
  }
  std::vector<const MetaCandidate*> offered;
  const Device device = node.output_data[0].type.device;
  for (const MetaCandidate& c : selected) {
    if (c.offered_for(op, device)) offered.push_back(&c);
  }
  const std::string problem =
      fmt::format("{}, {}", who, describe_shapes(op, *shapes, node.inputs[0].dtype()));
  if (offered.empty()) {
    if (verbose >= 1) {
      say(fmt::format("{}: the metaopt / conv.impl flags select no candidate; {}", problem, left));
    }
    ++counters().nodes_left;
    return {};
  }

  const AutotuneCacheOptions cache_options = AutotuneCacheOptions::from_config(ctx.config);
  const AutotuneKey key = make_key(node, op, *shapes, offered, ctx);
  if (const auto cached = autotune_lookup(key, cache_options)) {
    for (const MetaCandidate* c : offered) {
      if (c->name != cached->choice) continue;
      Variable v = build_on_node(*c, node, op, *shapes, ctx, &why);
      if (!v.defined()) break;  // no longer applicable here (another build): time again
      ++counters().cache_hits;
      ++counters().nodes_replaced;
      if (verbose >= 1) {
        say(fmt::format("{}: {} (from the autotune cache, {:.3g} s when timed)", problem, c->name,
                        cached->seconds));
      }
      return v;
    }
  }

  ++counters().nodes_timed;
  if (verbose >= 2) say(fmt::format("meta-optimizing {} ({} choices):", problem, offered.size()));
  const Clock::time_point node_start = Clock::now();
  // Whatever way the node ends, its time counts.
  struct NodeClock {
    Clock::time_point start;
    ~NodeClock() { add_seconds(counters().seconds_total, seconds_since(start)); }
  } node_clock{node_start};
  const TimingInputs inputs = make_timing_inputs(node, *shapes);
  add_seconds(counters().seconds_inputs, seconds_since(node_start));
  std::vector<Timing> timings;
  timings.reserve(offered.size());
  const std::int64_t loser_percent = ctx.config.get_int("metaopt.clear_loser_percent");
  const double warm_up_floor =
      static_cast<double>(ctx.config.get_int("metaopt.warm_up_cut_ms")) / 1000.0;
  const std::int64_t skip_after = ctx.config.get_int("metaopt.skip_after_warm_up_cuts");
  const bool host = device.is_cpu();
  std::map<std::string, int>& cuts_of_kind = history.cuts[problem_kind(op, *shapes, node)];
  double best_first = std::numeric_limits<double>::infinity();
  for (const MetaCandidate* c : offered) {
    if (host && skip_after > 0 && cuts_of_kind[c->name] >= skip_after) {
      ++counters().candidates_skipped;
      if (verbose >= 2) {
        say(
            fmt::format("  * {}: skipped (cut at its warm-up on the last {} problems of this kind: "
                        "metaopt.skip_after_warm_up_cuts)",
                        c->name, cuts_of_kind[c->name]));
      }
      continue;
    }
    const double warm_up_limit =
        loser_percent > 0
            ? std::max(warm_up_floor,
                       kWarmUpLoserFactor * static_cast<double>(loser_percent) / 100.0 * best_first)
            : std::numeric_limits<double>::infinity();
    Timing t = time_candidate(*c, op, *shapes, inputs, ctx, timing_config, warm_up_limit);
    if (t.ran && !t.warm_up_only) best_first = std::min(best_first, t.seconds);
    if (t.attempted) ++counters().candidates_timed;
    if (t.ran) {
      // Said below, once its timing is final.
    } else if (t.attempted) {
      if (verbose >= 1) say(fmt::format("  * {}: exception: {}", c->name, t.why_not));
    } else if (verbose >= 2) {
      say(fmt::format("  * {}: not applicable ({})", c->name, t.why_not));
    }
    timings.push_back(std::move(t));
  }
  refine_contenders(timings, inputs, loser_percent, ctx.config.get_int("metaopt.refine_runs"),
                    verbose);
  for (const Timing& t : timings) {
    if (!t.ran) continue;
    int& cuts = cuts_of_kind[t.candidate->name];
    cuts = t.heavy_loser ? cuts + 1 : 0;
  }
  for (const Timing& t : timings) {
    add_seconds(counters().seconds_build, t.build_seconds);
    add_seconds(counters().seconds_compile, t.compile_seconds);
    add_seconds(counters().seconds_warm_up, t.warm_up_seconds);
    add_seconds(counters().seconds_timed, t.timed_seconds);
    add_seconds(counters().seconds_refine, t.refine_seconds);
  }
  const Clock::time_point check_start = Clock::now();
  struct CheckClock {
    Clock::time_point start;
    ~CheckClock() { add_seconds(counters().seconds_check, seconds_since(start)); }
  } check_clock{check_start};
  std::vector<Timing*> ranked;
  AutotuneResult result;
  for (Timing& t : timings) {
    if (!t.ran) continue;
    ranked.push_back(&t);
    result.timings.emplace_back(t.candidate->name, t.seconds);
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const Timing* x, const Timing* y) { return x->seconds < y->seconds; });
  WinnerCheck check(op, *shapes, inputs, ctx.config);
  std::vector<Timing*> trusted = ranked;
  for (Timing* t : ranked) {
    const MetaCandidate& c = *t->candidate;
    std::string how;
    bool right = false;
    try {
      right = check.passes(*t, trusted, &how);
    } catch (const std::exception& e) {
      how = fmt::format("its result could not be checked: {}", e.what());
    }
    if (!right) {
      // Wrong results are a bug in an implementation: always said, whatever metaopt.verbose.
      ++counters().candidates_rejected;
      say(fmt::format("{}: candidate {} is not used: it computes a wrong result ({})", problem,
                      c.name, how));
      trusted.erase(std::find(trusted.begin(), trusted.end(), t));
      continue;
    }
    Variable v = build_on_node(c, node, op, *shapes, ctx, &why);
    if (!v.defined()) continue;
    result.choice = c.name;
    result.seconds = t->seconds;
    autotune_store(key, result, cache_options);
    ++counters().nodes_replaced;
    if (verbose >= 1) {
      say(fmt::format("{}: {} of {} candidates ran, winner {} ({:.3g} s; {})", problem,
                      ranked.size(), offered.size(), c.name, t->seconds, how));
    }
    return v;
  }
  if (verbose >= 1) say(fmt::format("{}: no candidate could run; {}", problem, left));
  ++counters().nodes_left;
  return {};
}

}  // namespace

void run_conv_meta(FunctionGraph& graph, const PassContext& ctx) {
  const std::vector<MetaCandidate> selected = selected_meta_candidates(ctx.config);
  // Read here, at compile time, so that changing the flag between compiles takes effect.
  const std::int64_t verbose = ctx.config.get_int("metaopt.verbose");
  const Config timing_config = make_timing_config(ctx.config);
  const ConvMetaStats before = conv_meta_stats();
  KindHistory history;
  const std::vector<Node*> order = graph.toposort();  // a copy: replace() changes the order
  for (Node* node : order) {
    if (!graph.contains(node)) continue;
    const auto* op = dynamic_cast<const AbstractConv*>(node->op.get());
    if (op == nullptr) continue;
    const std::shared_ptr<Node> keep = node->shared_from_this();
    const Variable replacement =
        meta_optimize(*node, *op, selected, ctx, timing_config, verbose, history);
    if (replacement.defined()) graph.replace(keep->output(0), replacement, "conv_meta");
  }
  const ConvMetaStats after = conv_meta_stats();
  if (verbose >= 1 && after.nodes_timed > before.nodes_timed) {
    auto part = [&](double ConvMetaStats::*field) { return after.*field - before.*field; };
    say(fmt::format(
        "timed {} convolutions ({} candidate timings, {} cut as clear losers, {} skipped, {} "
        "decided by the first calls, {} dropped while refining) in {:.2f} s: "
        "inputs {:.2f}, build {:.2f}, compile {:.2f}, warm-up {:.2f}, timed {:.2f}, refine {:.2f}, "
        "check {:.2f}",
        after.nodes_timed - before.nodes_timed, after.candidates_timed - before.candidates_timed,
        after.candidates_cut - before.candidates_cut,
        after.candidates_skipped - before.candidates_skipped,
        after.nodes_decided_by_first_calls - before.nodes_decided_by_first_calls,
        after.candidates_dropped_in_refine - before.candidates_dropped_in_refine,
        part(&ConvMetaStats::seconds_total), part(&ConvMetaStats::seconds_inputs),
        part(&ConvMetaStats::seconds_build), part(&ConvMetaStats::seconds_compile),
        part(&ConvMetaStats::seconds_warm_up), part(&ConvMetaStats::seconds_timed),
        part(&ConvMetaStats::seconds_refine), part(&ConvMetaStats::seconds_check)));
  }
}

GraphPass conv_meta_pass() {
  return run_conv_meta;
}

std::vector<ConvMetaCandidateInfo> conv_meta_candidates() {
  std::vector<ConvMetaCandidateInfo> out;
  for (const MetaCandidate& c : all_meta_candidates()) out.push_back({c.name, c.tags});
  return out;
}

std::vector<std::string> select_conv_meta_candidates(const Config& config) {
  std::vector<std::string> names;
  for (const MetaCandidate& c : selected_meta_candidates(config)) names.push_back(c.name);
  return names;
}

Variable build_conv_meta_candidate(const std::string& name, Node& node, const PassContext& ctx,
                                   std::string* why_not) {
  std::string ignored;
  std::string& why = why_not != nullptr ? *why_not : ignored;
  const std::vector<MetaCandidate> all = all_meta_candidates();
  const auto c =
      std::find_if(all.begin(), all.end(), [&](const MetaCandidate& k) { return k.name == name; });
  if (c == all.end()) {
    std::vector<std::string> names;
    for (const MetaCandidate& k : all) names.push_back(k.name);
    throw ValueError(fmt::format("conv_meta: no candidate named '{}'; the candidates are {}", name,
                                 fmt::join(names, ", ")));
  }
  const auto* op = dynamic_cast<const AbstractConv*>(node.op.get());
  if (op == nullptr) {
    throw ValueError(fmt::format("conv_meta: node #{} ({}) is not an abstract convolution", node.id,
                                 node.op->str()));
  }
  if (!c->offered_for(*op, node.output_data[0].type.device)) {
    why = fmt::format("{} is not offered for {}", name, op->name());
    return {};
  }
  const auto shapes = resolve_problem_shapes(node, *op, &why);
  if (!shapes) return {};
  return build_on_node(*c, node, *op, *shapes, ctx, &why);
}

ConvMetaStats conv_meta_stats() {
  const Counters& c = counters();
  ConvMetaStats s;
  s.nodes_replaced = c.nodes_replaced.load();
  s.cache_hits = c.cache_hits.load();
  s.nodes_timed = c.nodes_timed.load();
  s.candidates_timed = c.candidates_timed.load();
  s.nodes_left = c.nodes_left.load();
  s.candidates_rejected = c.candidates_rejected.load();
  s.candidates_cut = c.candidates_cut.load();
  s.candidates_cut_at_warm_up = c.candidates_cut_at_warm_up.load();
  s.candidates_warmed_up_twice = c.candidates_warmed_up_twice.load();
  s.nodes_decided_by_first_calls = c.nodes_decided_by_first_calls.load();
  s.candidates_skipped = c.candidates_skipped.load();
  s.candidates_dropped_in_refine = c.candidates_dropped_in_refine.load();
  s.seconds_total = c.seconds_total.load();
  s.seconds_inputs = c.seconds_inputs.load();
  s.seconds_build = c.seconds_build.load();
  s.seconds_compile = c.seconds_compile.load();
  s.seconds_warm_up = c.seconds_warm_up.load();
  s.seconds_timed = c.seconds_timed.load();
  s.seconds_refine = c.seconds_refine.load();
  s.seconds_check = c.seconds_check.load();
  return s;
}

void reset_conv_meta_stats() {
  Counters& c = counters();
  for (auto* n :
       {&c.nodes_replaced, &c.cache_hits, &c.nodes_timed, &c.candidates_timed, &c.nodes_left,
        &c.candidates_rejected, &c.candidates_cut, &c.candidates_cut_at_warm_up,
        &c.candidates_warmed_up_twice, &c.nodes_decided_by_first_calls, &c.candidates_skipped,
        &c.candidates_dropped_in_refine}) {
    *n = 0;
  }
  for (auto* d : {&c.seconds_total, &c.seconds_inputs, &c.seconds_build, &c.seconds_compile,
                  &c.seconds_warm_up, &c.seconds_timed, &c.seconds_refine, &c.seconds_check}) {
    *d = 0;
  }
}

}  // namespace convgraph
