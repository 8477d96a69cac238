// The cuDNN convolutions. Compiled in every CUDA build; the content needs cuDNN.
//
// How a call runs:
//   1. the checks of the common base (ops/concrete_conv.hpp), before anything is written;
//   2. the data is converted when cuDNN has no (data, compute) configuration for the requested
//      precision (cuDNN has only f16/f16, f16/f32, f32/f32 and f64/f64): the inputs are
//      cast to the compute dtype on the device and the result is cast back;
//   3. the kernel's plan for these shapes: the descriptors and a ranked list of (algorithm, math
//      type) candidates (see cudnn_algo.hpp for where the ranking comes from);
//   4. the first candidate whose workspace can be allocated and that cuDNN runs. A candidate
//      cuDNN does not support for the problem is skipped for good; one whose workspace does not
//      fit in memory now is only skipped for this call.
#include "convgraph/ops/gpu/cudnn_conv.hpp"

#include <fmt/format.h>

#include "convgraph/build_config.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv_checks.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"
#include "convgraph/ops/gpu/cudnn_algo.hpp"
#include "convgraph/ops/gpu/cudnn_graph.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"
#include "convgraph/runtime/cuda/cudnn_handle.hpp"
#include "convgraph/runtime/cuda/stream_delay.hpp"
#include "convgraph/runtime/device_backend.hpp"
#include "convgraph/runtime/timing.hpp"

namespace convgraph {
namespace {

using cudnn_detail::Buffers;
using cudnn_detail::Candidate;
using cudnn_detail::ConvDesc;
using cudnn_detail::Descriptors;
using cudnn_detail::EngineChoice;
using cudnn_detail::EngineRules;
using cudnn_detail::Geometry;
using cudnn_detail::GraphPlan;
using cudnn_detail::GraphProblem;

// time_*: how many of the graph API's plans are timed, from the heuristics and from the fallback
// list each (with the legacy algorithms).
constexpr std::size_t kTimedPlans = 12;
// Timed runs per plan, after one warm-up run; the fastest counts.
constexpr int kTimedRuns = 5;

constexpr const char* kFloat16Backward =
    "float16 precision (dnn.conv.precision) is disabled for cuDNN backward convolutions because "
    "of computation errors; use float32 (as_input_f32, the default) or float64";

const char* op_name(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward:
      return "GpuDnnConv";
    case ConvDirection::grad_inputs:
      return "GpuDnnConvGradI";
    case ConvDirection::grad_weights:
      break;
  }
  return "GpuDnnConvGradW";
}

const char* algo_flag(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward:
      return "dnn.conv.algo_fwd";
    case ConvDirection::grad_inputs:
      return "dnn.conv.algo_bwd_data";
    case ConvDirection::grad_weights:
      break;
  }
  return "dnn.conv.algo_bwd_filter";
}

// ---- precision (the flag dnn.conv.precision) ----

DType resolve_precision(const std::string& precision, DType data) {
  if (precision == "as_input") return data;
  if (precision == "as_input_f32") return data == DType::float16 ? DType::float32 : data;
  if (precision == "float16") return DType::float16;
  if (precision == "float64") return DType::float64;
  return DType::float32;
}

bool valid_precision(const std::string& precision) {
  return precision == "as_input_f32" || precision == "as_input" || precision == "float16" ||
         precision == "float32" || precision == "float64";
}

// The dtype the data is handed to cuDNN in: the data's own when cuDNN has the configuration
// (TRUE_HALF, PSEUDO_HALF, FLOAT, DOUBLE), else the compute dtype itself.
DType run_dtype(DType data, DType compute) {
  const bool supported = data == compute || (data == DType::float16 && compute == DType::float32);
  return supported ? data : compute;
}

cudnnDataType_t cudnn_type(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return CUDNN_DATA_HALF;
    case DType::float64:
      return CUDNN_DATA_DOUBLE;
    default:
      return CUDNN_DATA_FLOAT;
  }
}

const char* compute_name(cudnnDataType_t type) {
  return type == CUDNN_DATA_HALF ? "float16" : type == CUDNN_DATA_DOUBLE ? "float64" : "float32";
}

// The math type a problem starts from. float32: FMA math forbids tensor cores, so no TF32,
// unless allowed (CUDNN_DEFAULT_MATH lets cuDNN use TF32 on Ampere and later). float16 data may
// always use tensor cores. The environment variable NVIDIA_TF32_OVERRIDE is not relied upon.
cudnnMathType_t base_math(DType run, bool allow_tf32) {
  if (run == DType::float16) return CUDNN_TENSOR_OP_MATH;
  if (run == DType::float32) return allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}

// ---- requirements and the problem's geometry ----

// Floating tensors on a CUDA device, shared kernels, symmetric padding; and, the rule of cuDNN's
// own, no float16 math in a backward direction under PRECISION.
ConcreteConvRequirements cudnn_requirements(ConvDirection direction, const std::string& precision) {
  ConcreteConvRequirements r;
  r.library = "cuDNN";
  r.device = DeviceKind::cuda;
  r.unshared = false;
  r.asymmetric_padding = false;
  r.advice = "use GpuCorrMM (conv_gemm)";
  r.check_data = [direction, precision](const std::string& fn, DType data) {
    if (direction != ConvDirection::forward &&
        resolve_precision(precision, data) == DType::float16) {
      throw TypeError(fmt::format("{}: {} (precision {} on {} data)", fn, kFloat16Backward,
                                  precision, dtype_name(data)));
    }
  };
  return r;
}

// A checked problem in cuDNN's terms, and the shape of what the call returns. Padding is
// symmetric here: the requirements refuse asymmetric padding before this.
struct Prepared {
  Geometry g;
  Shape result;
};

Prepared to_prepared(const ConvProblem& q, ConvDirection direction, const ConvParams& p) {
  Prepared out;
  Geometry& g = out.g;
  g.direction = direction;
  g.convdim = p.convdim;
  g.flip = p.filter_flip;
  g.image = q.image;
  g.kernel = q.kernel;
  g.output = q.output;
  for (std::size_t i = 0; i < q.stride.size(); ++i) {
    g.pads.push_back(static_cast<int>(q.pad_before[i]));
    g.strides.push_back(static_cast<int>(q.stride[i]));
    g.dilations.push_back(static_cast<int>(q.dilation[i]));
  }
  g.groups = static_cast<int>(q.groups);
  out.result = q.result;
  return out;
}

// cuDNN's kernels may use vector loads: data that does not start on a 16-byte boundary (a view
// with an offset) is copied to a fresh, aligned buffer.
Tensor aligned(const Tensor& t) {
  Tensor c = t.contiguous();
  if (reinterpret_cast<std::uintptr_t>(c.raw_data()) % 16 != 0) c = c.clone();
  return c;
}

// ---- the kernel ----

// One candidate of a plan, with its convolution descriptor (the math type lives there), or for
// an engine of the graph API its execution plan.
struct PlanCandidate {
  Candidate choice;
  std::shared_ptr<const ConvDesc> conv;
  std::shared_ptr<const GraphPlan> graph;
  bool queried = false;  // workspace_size asked already
  bool usable = false;
  std::size_t workspace = 0;
  std::string why_not;
};

// What a kernel keeps per combination of input shapes, device and dtype.
struct Plan {
  int device = 0;
  Shape a, b, spatial;
  DType run = DType::float32;
  std::shared_ptr<const Descriptors> descriptors;
  // The graph API's operation graph of the problem (runtime selections only; null when cuDNN has
  // none for it: GRAPH_WHY says why).
  std::shared_ptr<GraphProblem> graph;
  std::string graph_why;
  std::vector<PlanCandidate> candidates;
  // Candidates before this one were found unsupported by cuDNN for this problem.
  std::atomic<std::size_t> first{0};
};

std::size_t default_selection_limit(int device) {
  // No flag: what is free now, less a margin for the data, and never more than 4 GiB (timing
  // with a larger scratch buffer finds nothing the limit excludes in practice, and the caching
  // allocator would keep the block).
  constexpr std::size_t cap = std::size_t{4} << 30;
  const std::size_t free_bytes = cuda::free_memory(device);
  return std::min(cap, free_bytes / 10 * 9);
}

class CudnnConvKernel final : public ConcreteConvKernel<Prepared> {
 public:
  CudnnConvKernel(std::string name, ConvDirection direction, ConvParams params,
                  CudnnConvOptions options)
      : ConcreteConvKernel(std::move(name), direction, std::move(params),
                           cudnn_requirements(direction, options.precision)),
        options_(std::move(options)) {}

 protected:
  Prepared prepare(const ConvProblem& problem) const override {
    return to_prepared(problem, direction(), params());
  }

  Tensor execute(const Prepared& prepared, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    const DType data = a.dtype();
    const DType compute_dtype = resolve_precision(options_.precision, data);
    const Shape& result = prepared.result;
    const Device device = a.device();
    // Empty problems: nothing to compute, or sums over nothing (zeros). cuDNN rejects zero dims.
    if (shape_numel(result) == 0) return Tensor::empty(data, result, device);
    if (a.numel() == 0 || b.numel() == 0) {
      Tensor zeros = Tensor::empty(data, result, device);
      zeros.fill(0.0);
      return zeros;
    }

    const DType run = run_dtype(data, compute_dtype);
    Geometry g = prepared.g;
    g.data_type = cudnn_type(run);
    g.compute_type = cudnn_type(compute_dtype);
    const Tensor a_run = aligned(a.cast(run));
    const Tensor b_run = aligned(b.cast(run));
    cuda::set_device(device.index);
    std::shared_ptr<Plan> plan;
    // The descriptor and selection calls report what failed; the node is named here.
    try {
      plan = plan_for(device.index, a_run, b_run, spatial, run, g);
    } catch (const MemoryError& e) {
      throw MemoryError(fmt::format("{}: {}", name(), e.what()));
    } catch (const DeviceError& e) {
      throw DeviceError(fmt::format("{}: {}", name(), e.what()));
    } catch (const UnsupportedError& e) {
      throw UnsupportedError(fmt::format("{}: {}", name(), e.what()));
    }
    Tensor out = Tensor::empty(run, result, device);
    run_plan(*plan, a_run, b_run, out);
    return run == data ? out : out.cast(data);
  }

 private:
  bool runtime_algorithm() const { return cudnn_detail::is_runtime_algorithm(options_.algo); }
  bool selects_once() const { return options_.algo.ends_with("_once"); }
  bool times() const { return options_.algo.starts_with("time_"); }

  // A fixed algorithm after the safety rules (cases cuDNN is known to get wrong or to refuse): the
  // 'none' algorithm of the direction instead.
  int safe_fixed_algorithm(const Geometry& g) const {
    using cudnn_detail::algorithm_value;
    const int algo = algorithm_value(direction(), options_.algo);
    const int none = cudnn_detail::none_algorithm(direction());
    const bool strided =
        std::any_of(g.strides.begin(), g.strides.end(), [](int s) { return s != 1; });
    const bool three_d = g.convdim == 3;
    const std::string& name = options_.algo;
    if (three_d && !cudnn_detail::fixed_algorithm_allowed_in_3d(direction(), name)) return none;
    if (direction() == ConvDirection::forward && name == "small" && three_d && g.image[0] > 65536) {
      return none;
    }
    if (!three_d && name == "fft") {
      const bool large = g.image[2] > 1024 || g.image[3] > 1024;
      const bool one_by_one = g.kernel[2] == 1 && g.kernel[3] == 1;
      if (strided || large || one_by_one) return none;
    }
    if (!three_d && name == "fft_tiling" && direction() != ConvDirection::grad_weights && strided) {
      return none;
    }
    return algo;
  }

  // The key of a runtime selection; the compute dtype and math type are part of it because the
  // same shapes rank differently under TF32 or pseudo-half.
  cudnn_detail::SelectionKey selection_key(int device, const Geometry& g, DType run,
                                           cudnnMathType_t math) const {
    const std::string selection = times() ? "time" : "guess";
    const std::string shapes = fmt::format("image {} kernel {} output {}", shape_str(g.image),
                                           shape_str(g.kernel), shape_str(g.output));
    const std::string compute = compute_name(g.compute_type);
    const std::string limit = options_.workspace_limit_bytes > 0
                                  ? std::to_string(options_.workspace_limit_bytes)
                                  : std::string("free");
    cudnn_detail::SelectionKey key;
    key.memory =
        fmt::format("{}|cuda{}|{}|{}d|{}|{}|{}/{}|{}|tf32={}|ws={}|graph", op_name(direction()),
                    device, selection, g.convdim, params().str(), shapes, dtype_name(run), compute,
                    cudnn_detail::math_name(math), options_.allow_tf32, limit);
    key.persistent.tuner = "cudnn_algo";
    key.persistent.device = cudnn_detail::device_fingerprint(device);
    key.persistent.fields = {
        {"direction", op_name(direction())},
        {"convdim", std::to_string(g.convdim)},
        {"params", params().str()},
        {"shapes", shapes},
        {"dtype", std::string(dtype_name(run))},
        {"precision", compute},
        {"math", cudnn_detail::math_name(math)},
        {"tf32", options_.allow_tf32 ? "True" : "False"},
        {"selection", selection},
        {"workspace_limit", limit},
        // 2: the ranking includes the graph API's engines ("engine=...;knobs=...").
        // 3: engines timed behind a delay kernel (device time only), 5 runs each.
        {"cudnn_key_version", "3"},
    };
    key.cache.mode = options_.autotune_cache == "off"         ? AutotuneCacheMode::off
                     : options_.autotune_cache == "read_only" ? AutotuneCacheMode::read_only
                                                              : AutotuneCacheMode::read_write;
    if (key.cache.mode != AutotuneCacheMode::off) {
      key.cache.path = options_.autotune_cache_path.empty() ? default_autotune_cache_path()
                                                            : options_.autotune_cache_path;
    }
    return key;
  }

  // The engines of the graph API a problem may use (the workspace limit of the flag, else
  // LIMIT).
  EngineRules engine_rules(std::size_t limit) const {
    EngineRules rules;
    rules.allow_tf32 = options_.allow_tf32;
    rules.workspace_limit = options_.workspace_limit_bytes > 0
                                ? static_cast<std::size_t>(options_.workspace_limit_bytes)
                                : limit;
    return rules;
  }

  // The fastest of KTIMEDRUNS runs of PLAN after a warm-up run, in seconds; nullopt when cuDNN
  // refuses to run it. BUFFERS' output is a scratch buffer. The timed runs are queued behind a
  // delay kernel that outlasts their queueing on the host, so the events measure the device
  // alone: a small convolution (tens of microseconds) otherwise measures cuDNN's host-side launch
  // cost too, which differs between engines and would rank them by it.
  std::optional<double> time_plan(cudnnHandle_t handle, int device, const Geometry& g,
                                  const GraphPlan& plan, const Buffers& buffers,
                                  void* workspace) const {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point t0 = Clock::now();
    const cudnnStatus_t warm = cudnn_detail::graph_launch(handle, g, plan, buffers, workspace);
    const double launch_ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    if (warm != CUDNN_STATUS_SUCCESS) {
      if (cuda::cudnn_not_supported(warm) || cuda::cudnn_bad_param(warm)) return std::nullopt;
      cuda::check_cudnn(warm, fmt::format("timing engine {}", plan.choice.str()));
    }
    // The shared profiler (runtime/timing.hpp) queues the timed runs on the current stream
    // behind a delay kernel sized from the warm-up's queueing time.
    const std::shared_ptr<DeviceStream> stream = current_device_stream(Device::cuda(device));
    return min_device_seconds(
        *stream,
        [&] {
          cuda::check_cudnn(cudnn_detail::graph_launch(handle, g, plan, buffers, workspace),
                            fmt::format("timing engine {}", plan.choice.str()));
        },
        kTimedRuns, launch_ns / 1e9);
  }

  // guess_* / time_*: the ranking of the legacy algorithms and of the graph API's engines for
  // this problem. FRESH: ignore the caches (a remembered engine that cannot be re-created).
  // BUILT receives the execution plans made on the way, by Candidate::engine; *FROM_CACHE says
  // whether the ranking came from a cache.
  std::vector<Candidate> select(int device, Plan& plan, cudnnMathType_t math, DType run,
                                const Tensor& a, const Tensor& b, bool fresh,
                                std::map<std::string, std::shared_ptr<GraphPlan>>* built,
                                bool* from_cache) const {
    const Descriptors& d = *plan.descriptors;
    const cudnn_detail::SelectionKey key = selection_key(device, d.g, run, math);
    const std::lock_guard<std::mutex> lock(cudnn_detail::selection_mutex());
    *from_cache = false;
    if (!fresh) {
      if (auto cached = cudnn_detail::cached_selection(key, direction())) {
        *from_cache = true;
        return *cached;
      }
    }
    cudnnHandle_t handle = cuda::cudnn_handle(device);
    const ConvDesc conv(d.g, math);
    const std::size_t limit = options_.workspace_limit_bytes > 0
                                  ? static_cast<std::size_t>(options_.workspace_limit_bytes)
                                  : default_selection_limit(device);
    const EngineRules rules = engine_rules(limit);
    auto engine_candidate = [&](const std::shared_ptr<GraphPlan>& p, double seconds) {
      Candidate c;
      c.algo = -1;
      c.seconds = seconds;
      c.engine = p->choice.str();
      (*built)[c.engine] = p;
      return c;
    };
    std::vector<Candidate> ranked;
    std::size_t scratch_bytes = 0;
    if (!times()) {
      // The graph API's first plan, then the legacy heuristics' algorithms.
      if (plan.graph) {
        std::string why;
        const auto plans = plan.graph->heuristic_plans(handle, rules, 1, &why);
        if (!plans.empty()) ranked.push_back(engine_candidate(plans.front(), 0));
      }
      for (const Candidate& c : cudnn_detail::guess_algorithms(handle, d, conv, limit)) {
        ranked.push_back(c);
      }
      cudnn_detail::count_guessed();
    } else {
      // The output of the timing runs goes to a scratch buffer: the real output is then written
      // exactly once, by the algorithm chosen.
      Tensor scratch_out = Tensor::empty(run,
                                         d.g.direction == ConvDirection::forward       ? d.g.output
                                         : d.g.direction == ConvDirection::grad_inputs ? d.g.image
                                                                                       : d.g.kernel,
                                         a.device());
      const Buffers buffers{a.raw_data(), b.raw_data(), scratch_out.raw_data()};
      scratch_bytes = cudnn_detail::largest_workspace(handle, d, conv, limit);
      {
        Tensor workspace = scratch_workspace(&scratch_bytes, a.device());
        ranked = cudnn_detail::time_algorithms(handle, d, conv, buffers,
                                               workspace.defined() ? workspace.raw_data() : nullptr,
                                               scratch_bytes);
      }
      // The graph API's first plans, timed on the same data.
      if (plan.graph) {
        std::string why;
        auto plans = plan.graph->heuristic_plans(handle, rules, kTimedPlans, &why,
                                                 /*with_fallback=*/true);
        std::size_t graph_bytes = 0;
        for (const auto& p : plans) graph_bytes = std::max(graph_bytes, p->workspace);
        Tensor workspace = scratch_workspace(&graph_bytes, a.device());
        std::vector<std::string> timings;
        for (const auto& p : plans) {
          if (p->workspace > graph_bytes) continue;  // less memory than needed now
          const auto seconds = time_plan(handle, device, d.g, *p, buffers,
                                         workspace.defined() ? workspace.raw_data() : nullptr);
          if (!seconds) continue;
          ranked.push_back(engine_candidate(p, *seconds));
          timings.push_back(fmt::format("{}: {:.4f} ms", p->choice.str(), *seconds * 1e3));
        }
        scratch_bytes = std::max(scratch_bytes, graph_bytes);
        if (cudnn_detail::graph_trace()) {
          fmt::print(stderr, "convgraph cuDNN graph: {} timed {}\n", name(),
                     fmt::join(timings, ", "));
        }
      }
      std::stable_sort(ranked.begin(), ranked.end(), [](const Candidate& x, const Candidate& y) {
        return x.seconds < y.seconds;
      });
      cudnn_detail::count_timed();
    }
    if (cudnn_detail::graph_trace() && !ranked.empty()) {
      fmt::print(stderr, "convgraph cuDNN graph: {} selected {} ({:.4f} ms){}\n", name(),
                 describe(ranked.front()), ranked.front().seconds * 1e3,
                 plan.graph ? std::string() : fmt::format(" (no graph: {})", plan.graph_why));
    }
    cudnn_detail::store_selection(key, ranked, direction(), scratch_bytes);
    return ranked;
  }

  // A scratch workspace of *BYTES for timing, halved while it cannot be allocated (less memory
  // than cudaMemGetInfo promised: time with what there is); *BYTES is what it got.
  static Tensor scratch_workspace(std::size_t* bytes, Device device) {
    while (*bytes > 0) {
      try {
        return Tensor::empty(DType::int8, {static_cast<std::int64_t>(*bytes)}, device);
      } catch (const MemoryError&) {
        *bytes = *bytes < (std::size_t{1} << 20) ? 0 : *bytes / 2;
      }
    }
    return Tensor();
  }

  std::shared_ptr<Plan> plan_for(int device, const Tensor& a, const Tensor& b, const Shape& spatial,
                                 DType run, const Geometry& g) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = plans_.begin(); it != plans_.end(); ++it) {
      const Plan& p = **it;
      if (p.device == device && p.run == run && p.a == a.shape() && p.b == b.shape() &&
          p.spatial == spatial) {
        std::rotate(it, it + 1, plans_.end());  // most recently used last
        return plans_.back();
      }
    }
    auto plan = std::make_shared<Plan>();
    plan->device = device;
    plan->a = a.shape();
    plan->b = b.shape();
    plan->spatial = spatial;
    plan->run = run;
    plan->descriptors = std::make_shared<const Descriptors>(g);
    const Descriptors& d = *plan->descriptors;
    const cudnnMathType_t math = base_math(run, options_.allow_tf32);
    // Our output shape and cuDNN's must agree, or cuDNN would read or write out of bounds.
    {
      const ConvDesc probe(g, math);
      const Shape theirs = cudnn_detail::cudnn_output_shape(d, probe);
      if (theirs != g.output) {
        throw ValueError(
            fmt::format("{}: impossible convolution output dim: expected {} but "
                        "cuDNN computes {} ({})",
                        name(), shape_str(g.output), shape_str(theirs),
                        describe_conv(params(), g.image, g.kernel)));
      }
    }

    cudnnHandle_t handle = cuda::cudnn_handle(device);
    std::vector<Candidate> ranked;
    // The execution plans of the graph API's engines, by Candidate::engine, and why those that
    // could not be made were not.
    std::map<std::string, std::shared_ptr<GraphPlan>> built;
    std::map<std::string, std::string> unbuilt;
    if (!runtime_algorithm()) {
      // A fixed algorithm names a legacy algorithm: the legacy API only, as always.
      ranked.push_back({safe_fixed_algorithm(g), math, 0, {}});
    } else {
      plan->graph = GraphProblem::create(handle, g, &plan->graph_why);
      bool from_cache = false;
      if (selects_once() && once_) {
        ranked = *once_;
      } else {
        ranked = select(device, *plan, math, run, a, b, false, &built, &from_cache);
        if (selects_once()) once_ = ranked;
      }
      // The engines chosen earlier (by another kernel, another shape of *_once, another
      // process) get their plans for this problem now: those ranked before the first candidate
      // that has one (a plan may take long to make; the ones behind are only fallbacks).
      auto recreate = [&] {
        unbuilt.clear();
        bool covered = false;
        for (const Candidate& c : ranked) {
          if (!c.is_engine() || built.count(c.engine) != 0) covered = true;
          if (!c.is_engine() || built.count(c.engine) != 0 || unbuilt.count(c.engine) != 0) {
            continue;
          }
          if (covered) {
            unbuilt[c.engine] = "not re-created (a candidate ranked before it was available)";
            continue;
          }
          const auto choice = EngineChoice::parse(c.engine);
          std::string why = plan->graph ? "" : "no graph: " + plan->graph_why;
          std::shared_ptr<GraphPlan> made;
          if (choice && plan->graph) {
            made = plan->graph->recreate(handle, *choice,
                                         engine_rules(static_cast<std::size_t>(-1)), &why);
          }
          if (made) {
            built[c.engine] = made;
          } else {
            unbuilt[c.engine] = fmt::format("could not be re-created ({})", why);
          }
        }
      };
      recreate();
      // A remembered winner that cannot be re-created (another cuDNN, a changed library): the
      // cache is stale for it, so select again.
      if (from_cache && !ranked.empty() && ranked.front().is_engine() &&
          built.count(ranked.front().engine) == 0) {
        ranked = select(device, *plan, math, run, a, b, true, &built, &from_cache);
        if (selects_once()) once_ = ranked;
        recreate();
      }
    }
    // Then the direction's 'none', then every other algorithm: an algorithm cuDNN refuses for
    // this problem falls back instead of failing.
    ranked.push_back({cudnn_detail::none_algorithm(direction()), math, 0, {}});
    for (int algo = 0; algo < cudnn_detail::algorithm_count(direction()); ++algo) {
      ranked.push_back({algo, math, 0, {}});
    }
    const bool fma_only = run == DType::float32 && !options_.allow_tf32;
    std::vector<std::shared_ptr<const ConvDesc>> descs;
    for (Candidate c : ranked) {
      if (fma_only && !c.is_engine()) c.math = CUDNN_FMA_MATH;  // no TF32 unless allowed
      const bool seen = std::any_of(plan->candidates.begin(), plan->candidates.end(),
                                    [&](const PlanCandidate& pc) { return pc.choice == c; });
      if (seen) continue;
      PlanCandidate pc;
      pc.choice = c;
      if (c.is_engine()) {
        // Engines carry their own math (the rules filtered TF32 out where it is not allowed).
        auto it = built.find(c.engine);
        if (it != built.end()) {
          pc.graph = it->second;
        } else {
          pc.queried = true;
          pc.why_not = unbuilt.count(c.engine) != 0 ? unbuilt[c.engine] : "no plan";
        }
        plan->candidates.push_back(std::move(pc));
        continue;
      }
      for (const auto& desc : descs) {
        if (desc->math() == c.math) pc.conv = desc;
      }
      if (!pc.conv) {
        pc.conv = std::make_shared<const ConvDesc>(g, c.math);
        descs.push_back(pc.conv);
      }
      plan->candidates.push_back(std::move(pc));
    }
    // The preferred candidate and the first fallback are sized now; the rest only when reached.
    for (std::size_t i = 0; i < plan->candidates.size() && i < 2; ++i) {
      query(handle, d, plan->candidates[i]);
    }
    if (plans_.size() >= kPlans) plans_.erase(plans_.begin());  // least recently used
    plans_.push_back(plan);
    return plan;
  }

  void query(cudnnHandle_t handle, const Descriptors& d, PlanCandidate& pc) const {
    pc.queried = true;
    std::size_t bytes = 0;
    if (pc.choice.is_engine()) {
      if (!pc.graph) return;  // why_not says why
      pc.workspace = pc.graph->workspace;
      pc.usable = true;
      if (options_.workspace_limit_bytes > 0 &&
          pc.workspace > static_cast<std::size_t>(options_.workspace_limit_bytes)) {
        pc.usable = false;
        pc.why_not = fmt::format(
            "needs {:.1f} MiB of workspace, more than "
            "dnn.conv.workspace_limit_mb allows",
            pc.workspace / 1048576.0);
      }
      return;
    }
    const cudnnStatus_t status =
        cudnn_detail::workspace_size(handle, d, *pc.conv, pc.choice.algo, &bytes);
    if (status == CUDNN_STATUS_SUCCESS) {
      pc.workspace = bytes;
      pc.usable = true;
      if (options_.workspace_limit_bytes > 0 &&
          bytes > static_cast<std::size_t>(options_.workspace_limit_bytes)) {
        pc.usable = false;
        pc.why_not = fmt::format(
            "needs {:.1f} MiB of workspace, more than "
            "dnn.conv.workspace_limit_mb allows",
            bytes / 1048576.0);
      }
      return;
    }
    // An algorithm that does not handle this problem says so here (NOT_SUPPORTED, or BAD_PARAM
    // for parameters it has no kernel for).
    if (cuda::cudnn_not_supported(status) || cuda::cudnn_bad_param(status)) {
      pc.why_not =
          fmt::format("not supported for this problem ({})", cuda::cudnn_status_text(status));
      return;
    }
    cuda::check_cudnn(status, fmt::format("{}: sizing the workspace of algorithm {}", name(),
                                          describe(pc.choice)));
  }

  std::string describe(const Candidate& c) const {
    if (c.is_engine()) return fmt::format("graph-API {}", c.engine);
    return fmt::format("{} ({} math)", cudnn_detail::algorithm_name(direction(), c.algo),
                       cudnn_detail::math_name(c.math));
  }

  void run_plan(Plan& plan, const Tensor& a, const Tensor& b, Tensor& out) const {
    const Descriptors& d = *plan.descriptors;
    const Device device = out.device();
    cudnnHandle_t handle = cuda::cudnn_handle(device.index);
    const Buffers buffers{a.raw_data(), b.raw_data(), out.raw_data()};
    std::vector<std::string> failures;
    bool out_of_memory = false;
    const std::size_t first = plan.first.load();
    for (std::size_t i = first; i < plan.candidates.size(); ++i) {
      PlanCandidate pc = plan.candidates[i];  // a copy: unqueried ones are sized for this call
      if (!pc.queried) query(handle, d, pc);
      if (!pc.usable) {
        failures.push_back(fmt::format("{}: {}", describe(pc.choice), pc.why_not));
        continue;
      }
      Tensor workspace;
      if (pc.workspace > 0) {
        try {
          workspace = Tensor::empty(DType::int8, {static_cast<std::int64_t>(pc.workspace)}, device);
        } catch (const MemoryError& e) {
          failures.push_back(fmt::format("{}: workspace of {:.1f} MiB: {}", describe(pc.choice),
                                         pc.workspace / 1048576.0, e.what()));
          out_of_memory = true;
          continue;
        }
      }
      void* ws = workspace.defined() ? workspace.raw_data() : nullptr;
      const cudnnStatus_t status =
          pc.graph ? cudnn_detail::graph_launch(handle, d.g, *pc.graph, buffers, ws)
                   : cudnn_detail::launch(handle, d, *pc.conv, pc.choice.algo, buffers, ws,
                                          pc.workspace);
      if (status == CUDNN_STATUS_SUCCESS) {
        // Skip the refused ones next time; memory may be free again, so never skip past those.
        if (i > first && !out_of_memory) plan.first.store(i);
        return;
      }
      if (cuda::cudnn_not_supported(status)) {
        failures.push_back(fmt::format("{}: refused at run time ({})", describe(pc.choice),
                                       cuda::cudnn_status_text(status)));
        continue;
      }
      cuda::check_cudnn(status,
                        fmt::format("{}: running algorithm {} ({})", name(), describe(pc.choice),
                                    describe_conv(params(), d.g.image, d.g.kernel)));
    }
    const std::string text = fmt::format(
        "{}: no cuDNN algorithm could run this convolution ({}, {} data, {} compute):\n  - {}",
        name(), describe_conv(params(), d.g.image, d.g.kernel), dtype_name(plan.run),
        compute_name(d.g.compute_type), fmt::join(failures, "\n  - "));
    if (out_of_memory) throw MemoryError(text);
    throw DeviceError(text);
  }

  static constexpr std::size_t kPlans = 8;

  CudnnConvOptions options_;
  mutable std::mutex mutex_;
  mutable std::vector<std::shared_ptr<Plan>> plans_;
  mutable std::optional<std::vector<Candidate>> once_;  // the choice of *_once
};

}  // namespace

// ---- options ----

std::string CudnnConvOptions::str() const {
  std::string s = fmt::format("algo={}", algo);
  if (precision != "as_input_f32") s += fmt::format(", precision={}", precision);
  if (allow_tf32) s += ", tf32";
  if (workspace_limit_bytes > 0) {
    s += fmt::format(", workspace_limit_mb={}", workspace_limit_bytes >> 20);
  }
  return s;
}

CudnnConvOptions cudnn_options_from(const Config& config, ConvDirection direction) {
  CudnnConvOptions o;
  o.algo = config.get(algo_flag(direction));
  o.precision = config.get("dnn.conv.precision");
  o.allow_tf32 = config.get_bool("dnn.conv.allow_tf32");
  o.workspace_limit_bytes = config.get_int("dnn.conv.workspace_limit_mb") << 20;
  o.autotune_cache = config.get("autotune.cache");
  o.autotune_cache_path = config.get("autotune.cache_path");
  return o;
}

// ---- the op ----

GpuDnnConv::GpuDnnConv(ConvDirection direction, ConvParams params, CudnnConvOptions options)
    : ConcreteConv(direction, std::move(params)), options_(std::move(options)) {
  // PARAMS has moved into the base.
  const ConvParams& p = this->params();
  const std::string who = fmt::format("{}{{{}}}", op_name(direction), p.str());
  const auto& fixed = cudnn_detail::fixed_algorithm_names(direction);
  const bool is_fixed = std::find(fixed.begin(), fixed.end(), options_.algo) != fixed.end();
  if (!is_fixed && !cudnn_detail::is_runtime_algorithm(options_.algo)) {
    throw ValueError(
        fmt::format("{}: unknown cuDNN algorithm '{}' for {}; expected one of {}, guess_once, "
                    "guess_on_shape_change, time_once, time_on_shape_change",
                    who, options_.algo, algo_flag(direction), fmt::join(fixed, ", ")));
  }
  if (is_fixed && p.convdim == 3 &&
      !cudnn_detail::fixed_algorithm_allowed_in_3d(direction, options_.algo)) {
    throw ValueError(
        fmt::format("{}: convolution algo {} can't be used for 3d convolutions ({}); 3-D "
                    "convolutions accept {}, or one of the guess_* / time_* values",
                    who, options_.algo, algo_flag(direction),
                    direction == ConvDirection::forward       ? "none, small, fft_tiling"
                    : direction == ConvDirection::grad_inputs ? "none, deterministic, fft_tiling"
                                                              : "none, small"));
  }
  if (!valid_precision(options_.precision)) {
    throw ValueError(fmt::format(
        "{}: dnn.conv.precision is '{}'; expected as_input_f32, as_input, float16, float32 or "
        "float64",
        who, options_.precision));
  }
  if (options_.precision == "float16" && direction != ConvDirection::forward) {
    throw TypeError(fmt::format("{}: {}", who, kFloat16Backward));
  }
  if (options_.workspace_limit_bytes < 0) {
    throw ValueError(
        fmt::format("{}: negative workspace limit {}", who, options_.workspace_limit_bytes));
  }
  check_conv_params(who, p);
  check_conv_requirements(who, p, cudnn_requirements(direction, options_.precision));
}

std::string GpuDnnConv::name() const {
  return op_name(direction());
}

std::string GpuDnnConv::str() const {
  return fmt::format("{}{{{}d, {}; {}}}", name(), params().convdim, params().str(), options_.str());
}

bool GpuDnnConv::same_options(const ConcreteConv& other) const {
  return static_cast<const GpuDnnConv&>(other).options_ == options_;
}

std::size_t GpuDnnConv::options_hash() const {
  std::size_t h = std::hash<std::string>{}(options_.algo);
  h = hash_combine(h, std::hash<std::string>{}(options_.precision));
  return hash_combine(h, static_cast<std::size_t>(options_.allow_tf32));
}

ConcreteConvRequirements GpuDnnConv::requirements() const {
  return cudnn_requirements(direction(), options_.precision);
}

std::shared_ptr<ConcreteConvKernelBase> GpuDnnConv::make_conv_kernel(std::string name) const {
  // Selection waits for the first call: timing needs the data, and guessing is cheap.
  return std::make_shared<CudnnConvKernel>(std::move(name), direction(), params(), options_);
}

std::string GpuDnnConv::kernel_name(const Node& node) const {
  // The node's number in errors: "GpuDnnConv{...} (node #12): ...".
  return fmt::format("{} (node #{})", str(), node.id);
}

bool cudnn_usable(Device device, std::string* why) {
  if (!device.is_cuda()) {
    if (why != nullptr) *why = fmt::format("{} is not a CUDA device", device.str());
    return false;
  }
  return cuda::cudnn_device_usable(device.index, why);
}

std::string cudnn_version() {
  return cuda::cudnn_version();
}

ConvImplementationHooks cudnn_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config& config) -> std::optional<std::string> {
    const std::string enabled = config.get("dnn.enabled");
    if (enabled == "False") return std::string("disabled by the flag dnn.enabled");
    std::string why;
    if (enabled == "no_check") {
      // The user vouches for cuDNN, but a library of another major version than the header is
      // an installation error that would crash later: say so now.
      if (!cuda::cudnn_library_matches(&why)) {
        throw DeviceError(fmt::format("dnn.enabled=no_check: {}", why));
      }
    } else if (!cudnn_usable(s.device, &why)) {
      if (enabled == "True") {
        throw DeviceError(fmt::format(
            "you enabled cuDNN (dnn.enabled=True) but it cannot be used: {}. Set "
            "dnn.enabled=auto to fall back to GpuCorrMM (conv_gemm) where cuDNN is unusable",
            why));
      }
      return fmt::format("cuDNN cannot be used: {}", why);
    }
    if (!is_float(s.dtype)) {
      return fmt::format("dtype {}: cuDNN convolutions work on float16, float32 and float64",
                         dtype_name(s.dtype));
    }
    if (s.params.unshared) {
      return std::string("unshared (locally connected) kernels: cuDNN has none");
    }
    if (s.params.any_asymmetric()) {
      return fmt::format("asymmetric padding ({}): cuDNN pads both sides equally", s.params.str());
    }
    return std::nullopt;
  };
  // Flag values the op refuses for this node (float16 precision in a backward direction, a fixed
  // algorithm 3-D convolutions do not have) throw TypeError / ValueError here: the lowering takes
  // that as a decline, so the node goes to the next implementation with the reason.
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs,
                   const Config& config) {
    auto op = std::make_shared<GpuDnnConv>(s.direction, s.params,
                                           cudnn_options_from(config, s.direction));
    return convgraph::apply(std::move(op), inputs);
  };
  return hooks;
}

}  // namespace convgraph

#endif  // CONVGRAPH_HAVE_CUDNN
