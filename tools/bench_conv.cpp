// convgraph_bench_conv: times convgraph's convolutions on the conv benchmark suite, in all three
// directions (forward, gradient wrt the inputs, gradient wrt the weights), once per
// implementation, and writes JSON in the schema of the suite's peer_cpu.py (CPU) or peer_gpu.py
// (GPU) so that compare.py can set it beside PyTorch measured in the same sitting. See
// docs/benchmarks.md.
//
//   convgraph_bench_conv --suite SUITE.json --device cpu --out OUT.json
//       [--only NAME,NAME] [--impls corrmm,onednn,default,meta] [--dirs fwd,bwd_data,bwd_filter]
//       [--threads 2] [--reps 5] [--min-time 0.5] [--warmup 2] [--max-foreign 0.10] [--retries 2]
//       [--blas-coretype auto|env|CORE] [--extra-flags K=V,...]
//   convgraph_bench_conv --suite SUITE.json --device cuda --out OUT.json
//       [--precision fp32,tf32,fp16] [--impls cudnn,gpu_corrmm,meta] [--fp16-fwd-precision P]
//       [--only ...] [--dirs ...] [--reps 20] [--warmup 3] [--min-time 0] [--deadline S]
//       [--no-floor] [--smoke] [--max-spread 0.5] [--retries 2] [--extra-flags K=V,...]
//
// GPU mode: batch_gpu, inputs and outputs on the device (no host transfers timed), device time
// per call from CUDA events around calls queued with Function::call_async behind a delay kernel;
// the median of >= 20 calls (30 when a call takes under 5 ms) after warm-up, as peer_gpu.py times
// PyTorch. The wall clock of a synchronous call is reported beside it (call_wall_ms).
//
// Threads: OpenMP (libgomp) and OpenBLAS read OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
// OPENBLAS_CORETYPE in their load-time constructors, which run before main(). main() therefore
// sets them from --threads (and --blas-coretype) and, when that changed anything, re-executes
// itself once so that the libraries start with them; the convgraph flag `threads` is set too, in
// the process-wide configuration and in every compile's flags.
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "convgraph/convgraph.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/runtime/allocator.hpp"
#include "convgraph/runtime/device_backend.hpp"
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/ops/gpu/gpu_im2col.hpp"
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#endif

extern "C" {
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
}

using namespace convgraph;
using json = nlohmann::json;

using convgraph::bench::cpu_model;
using convgraph::bench::median;
using convgraph::bench::median_ms;
using convgraph::bench::ms_since;

namespace {

const char* const kDirections[] = {"fwd", "bwd_data", "bwd_filter"};

// GPU mode: cuDNN picks its algorithms by timing them once per problem.
const char* const kCudnnTimeOnce =
    "dnn.conv.algo_fwd=time_once,dnn.conv.algo_bwd_data=time_once,"
    "dnn.conv.algo_bwd_filter=time_once";

// The compile flags that select implementation NAME on DEVICE: a registry row of that device
// (conv.impl=NAME), "meta" (the meta-optimizer over every implementation) or, on the CPU,
// "default" (the default lowering's rules: what a compile without flags picks). std::nullopt for
// any other name. threads=N (and on the GPU the device and precision flags) are added.
std::optional<std::string> impl_flags(const std::string& name, DeviceKind device) {
  const bool gpu = device == DeviceKind::cuda;
  if (name == "meta") {
    return gpu ? std::string("optimizer_including=conv_meta,metaopt.verbose=0,") + kCudnnTimeOnce
               : std::string("optimizer_including=conv_meta");
  }
  if (name == "default" && !gpu) return std::string();
  const ConvImplementation* row = conv_registry().find(name);
  if (row == nullptr || row->device != device) return std::nullopt;
  std::string flags = select_conv_impl_flags(name);
  // The vendor library is measured as itself: an error, not a silent decline, where unusable.
  if (gpu && row->carries("conv_dnn")) flags += std::string(",dnn.enabled=True,") + kCudnnTimeOnce;
  return flags;
}

// "corrmm, onednn, winograd, meta, default": what --impls accepts on DEVICE.
std::string known_impls(DeviceKind device) {
  std::vector<std::string> names;
  for (const ConvImplementation& row : conv_registry().all()) {
    if (row.device == device) names.push_back(row.name);
  }
  names.emplace_back("meta");
  if (device == DeviceKind::cpu) names.emplace_back("default");
  return fmt::format("{}", fmt::join(names, ", "));
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// FLAGS with the tags no pass carries removed from optimizer_including / optimizer_excluding
// (naming an unknown tag changes nothing but prints a warning at every compile), then threads=N.
// Other flags (device=..., dnn.*) are kept as they are.
std::string effective_flags(const std::string& flags, const std::set<std::string>& known,
                            int threads) {
  std::string out;
  for (const std::string& item : split_list(flags)) {
    const auto eq = item.find('=');
    std::string kept = item;
    const std::string key = eq == std::string::npos ? item : item.substr(0, eq);
    if (key == "optimizer_including" || key == "optimizer_excluding") {
      std::string tags;
      std::stringstream in(item.substr(eq + 1));
      std::string tag;
      while (std::getline(in, tag, ':')) {
        if (known.count(tag)) tags += (tags.empty() ? "" : ":") + tag;
      }
      kept = tags.empty() ? "" : item.substr(0, eq + 1) + tags;
    }
    if (!kept.empty()) out += kept + ",";
  }
  return out + "threads=" + std::to_string(threads);
}

// ---- environment (see the comment at the top) ------------------------------------------------

std::string env_or(const char* key, const char* fallback) {
  const char* v = std::getenv(key);
  return v != nullptr ? v : fallback;
}

// The OpenBLAS core to request. REQUEST "auto" follows the blas.coretype flag, whose "auto" means
// SkylakeX on a CPU with the AVX-512 subsets it needs (OpenBLAS 0.3.21 does not recognise newer
// CPUs such as Zen 5 and falls back to its AVX2 kernels) and nothing otherwise; "env" keeps an
// inherited OPENBLAS_CORETYPE; any other value is used as it is. Empty: leave OpenBLAS alone.
std::string wanted_coretype(const std::string& request) {
  const char* inherited = std::getenv("OPENBLAS_CORETYPE");
  if (request == "env") return inherited != nullptr ? inherited : "";
  if (request != "auto") return request;
  std::string flag = "auto";
  try {
    flag = Config::from_environment().get("blas.coretype");
  } catch (const std::exception&) {
    // A bad CONVGRAPH_FLAGS is reported later, where the configuration is used.
  }
  if (flag != "auto") return flag;
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return avx512 ? "SkylakeX" : (inherited != nullptr ? inherited : "");
}

// Sets the thread and core variables; re-executes the program once if that changed anything.
// The OPENBLAS_CORETYPE found at the start is kept in CONVGRAPH_BENCH_INHERITED_CORETYPE.
void ensure_environment(int threads, const std::string& coretype_request, char** argv) {
  if (std::getenv("CONVGRAPH_BENCH_REEXEC") == nullptr) {
    setenv("CONVGRAPH_BENCH_INHERITED_CORETYPE", env_or("OPENBLAS_CORETYPE", "").c_str(), 1);
  }
  std::map<std::string, std::string> want = {{"OMP_NUM_THREADS", std::to_string(threads)},
                                             {"OPENBLAS_NUM_THREADS", std::to_string(threads)}};
  const std::string core = wanted_coretype(coretype_request);
  if (!core.empty()) want["OPENBLAS_CORETYPE"] = core;
  bool changed = false;
  for (const auto& [key, value] : want) {
    const char* current = std::getenv(key.c_str());
    if (current == nullptr || value != current) {
      setenv(key.c_str(), value.c_str(), 1);
      changed = true;
    }
  }
  if (changed && std::getenv("CONVGRAPH_BENCH_REEXEC") == nullptr) {
    setenv("CONVGRAPH_BENCH_REEXEC", "1", 1);
    std::fflush(stdout);
    execv("/proc/self/exe", argv);
    std::perror("convgraph_bench_conv: re-exec failed; the thread settings may not apply");
  }
}

// ---- CPU accounting (what peer_cpu.py does): other processes' share of the CPUs --------------

struct CpuSample {
  double busy = 0, steal = 0, own = 0, wall = 0;
};

CpuSample cpu_sample() {
  CpuSample s;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  std::vector<double> v;
  stat >> cpu;
  for (int i = 0; i < 8; ++i) {
    double x = 0;
    stat >> x;
    v.push_back(x);
  }
  const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (double x : v) total += x;
  s.busy = (total - v[3] - v[4]) / tck;  // minus idle and iowait
  s.steal = v[7] / tck;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.own = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
          static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  s.wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  return s;
}

// (foreign CPU share, steal share) between two samples, as fractions of all CPUs.
std::pair<double, double> foreign_load(const CpuSample& a, const CpuSample& b) {
  const double ncpu = static_cast<double>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  const double wall = std::max(b.wall - a.wall, 1e-9);
  const double foreign = ((b.busy - a.busy) - (b.own - a.own)) / (wall * ncpu);
  return {std::max(0.0, foreign), (b.steal - a.steal) / (wall * ncpu)};
}

std::vector<double> loadavg() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) != 3) return {};
  return {l[0], l[1], l[2]};
}

// ---- the suite --------------------------------------------------------------------------------

struct Layer {
  std::string name;
  int dims = 2;
  std::int64_t n = 0, c = 0, k = 0, groups = 1, stride = 1, pad = 0, dilation = 1;
  Shape in_spatial, kernel, out_spatial;  // 2 or 3 entries each
  json raw;

  Shape image_shape() const { return concat({n, c}, in_spatial); }
  Shape filter_shape() const { return concat({k, c / groups}, kernel); }
  Shape output_shape() const { return concat({n, k}, out_spatial); }
  double flops() const {
    double f = 2.0 * static_cast<double>(n * k * (c / groups));
    for (auto v : kernel) f *= static_cast<double>(v);
    for (auto v : out_spatial) f *= static_cast<double>(v);
    return f;
  }

 private:
  static Shape concat(Shape head, const Shape& tail) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  }
};

Layer parse_layer(const json& j, int dims, std::int64_t batch) {
  Layer l;
  l.name = j.at("name").get<std::string>();
  l.dims = dims;
  l.raw = j;
  l.n = batch;
  l.c = j.at("C");
  l.k = j.at("K");
  l.groups = j.value("groups", 1);
  l.stride = j.value("stride", 1);
  l.pad = j.value("pad", 0);
  l.dilation = j.value("dilation", 1);
  if (dims == 3) {
    l.in_spatial = {j.at("D"), j.at("H"), j.at("W")};
    l.kernel = {j.at("T"), j.at("R"), j.at("S")};
  } else {
    l.in_spatial = {j.at("H"), j.at("W")};
    l.kernel = {j.at("R"), j.at("S")};
  }
  for (std::size_t i = 0; i < l.in_spatial.size(); ++i) {
    l.out_spatial.push_back(
        (l.in_spatial[i] + 2 * l.pad - l.dilation * (l.kernel[i] - 1) - 1) / l.stride + 1);
  }
  return l;
}

StaticShape static_of(const Shape& s) {
  return StaticShape(s.begin(), s.end());
}
ShapeDims dims_of(const Shape& s) {
  return ShapeDims(s.begin(), s.end());
}

// The graph of one direction: its inputs (in call order) and its one output.
struct Graph {
  std::vector<Variable> inputs;
  Variable output;
};

Graph build_graph(const Layer& l, const std::string& dir, DType dtype = DType::float32) {
  const std::vector<std::int64_t> stride(l.dims, l.stride), dilation(l.dims, l.dilation);
  ConvOptions opt{.input_shape = static_of(l.image_shape()),
                  .filter_shape = static_of(l.filter_shape()),
                  .border_mode = BorderMode(l.pad),
                  .subsample = stride,
                  .filter_flip = false,  // cross-correlation, as PyTorch
                  .filter_dilation = dilation,
                  .num_groups = l.groups};
  const bool d3 = l.dims == 3;
  Variable x = tensor("x", dtype, static_of(l.image_shape()));
  Variable w = tensor("w", dtype, static_of(l.filter_shape()));
  Variable gy = tensor("gy", dtype, static_of(l.output_shape()));
  if (dir == "fwd") return {{x, w}, d3 ? conv3d(x, w, opt) : conv2d(x, w, opt)};
  if (dir == "bwd_data") {
    const ShapeDims shape = dims_of(l.image_shape());
    return {
        {w, gy},
        d3 ? conv3d_grad_wrt_inputs(gy, w, shape, opt) : conv2d_grad_wrt_inputs(gy, w, shape, opt)};
  }
  const ShapeDims shape = dims_of(l.filter_shape());
  return {
      {x, gy},
      d3 ? conv3d_grad_wrt_weights(x, gy, shape, opt) : conv2d_grad_wrt_weights(x, gy, shape, opt)};
}

// Uniform values in [-1, 1) from a fast generator (the values do not matter, only that they are
// not special: no zeros, no denormals).
Tensor random_tensor(const Shape& shape, std::uint64_t seed) {
  Tensor t = Tensor::empty(DType::float32, shape);
  float* p = t.data<float>();
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  const std::int64_t n = t.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    p[i] = static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ULL << 23) - 1.0);
  }
  return t;
}

// max |a - b| / max |a|, on the host in float32 (tensors on a device or in float16 are copied).
double rel_diff(const Tensor& a, const Tensor& b) {
  const auto host_f32 = [](const Tensor& t) {
    return t.to(Device::cpu()).cast(DType::float32).contiguous();
  };
  const Tensor ca = host_f32(a), cb = host_f32(b);
  const float* pa = ca.data<float>();
  const float* pb = cb.data<float>();
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < ca.numel(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(pa[i]) - pb[i]));
    den = std::max(den, std::abs(static_cast<double>(pa[i])));
  }
  return den > 0 ? num / den : num;
}

// ---- timing -----------------------------------------------------------------------------------

struct Timing {
  double ms = 0, ms_min = 0, foreign = 0, steal = 0;
  std::vector<double> samples_ms;
};

// WARMUP calls, then calls until MIN_TIME seconds have passed and at least MIN_REPS were made.
// Each call is timed on its own; the output of the last call is kept in LAST. With FAST_REPS > 0,
// at least FAST_REPS calls are made when the warm-up calls after the first took under
// FAST_BELOW_MS on average (peer_gpu.py's rule: 20 calls, 30 under 5 ms).
Timing time_calls(const Function& f, const std::vector<Tensor>& args, int warmup, int min_reps,
                  double min_time, Tensor& last, int fast_reps = 0, double fast_below_ms = 0) {
  using clock = std::chrono::steady_clock;
  double warm_ms = 0;
  for (int i = 0; i < warmup; ++i) {
    const auto t0 = clock::now();
    last = f(args).at(0);
    if (i > 0) warm_ms += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  }
  if (fast_reps > 0 && warmup > 1 && warm_ms / (warmup - 1) < fast_below_ms) {
    min_reps = std::max(min_reps, fast_reps);
  }
  last = Tensor();
  Timing t;
  const CpuSample a = cpu_sample();
  const auto start = clock::now();
  while (static_cast<int>(t.samples_ms.size()) < min_reps ||
         std::chrono::duration<double>(clock::now() - start).count() < min_time) {
    last = Tensor();  // give the previous output back to the allocator first
    const auto t0 = clock::now();
    std::vector<Tensor> out = f(args);
    const auto t1 = clock::now();
    last = out.at(0);
    t.samples_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::tie(t.foreign, t.steal) = foreign_load(a, cpu_sample());
  t.ms = median(t.samples_ms);
  t.ms_min = *std::min_element(t.samples_ms.begin(), t.samples_ms.end());
  return t;
}

// GPU: device time per call from events on the function's stream, as peer_gpu.py measures
// PyTorch: WARMUP synchronous calls (the first one autotunes), then MIN_REPS calls (FAST_REPS when
// the warm-up calls after the first took under FAST_BELOW_MS), queued behind a delay kernel so
// that the host's launch gaps fall outside the events, each between two events. The wall-clock
// time of the synchronous warm-up calls (host overheads and the final wait included) is kept in
// CALL_MS, the host's time to queue one call in HOST_MS.
Timing time_device_calls(const Function& f, DeviceStream& stream, const std::vector<Tensor>& args,
                         int warmup, int min_reps, Tensor& last, int fast_reps,
                         double fast_below_ms, double* call_ms, double* host_ms) {
  using clock = std::chrono::steady_clock;
  std::vector<double> warm;
  for (int i = 0; i < std::max(warmup, 2); ++i) {
    const auto t0 = clock::now();
    last = f(args).at(0);
    if (i > 0) warm.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  *call_ms = median(warm);
  if (fast_reps > 0 && *call_ms < fast_below_ms) min_reps = std::max(min_reps, fast_reps);
  last = Tensor();
  const auto h0 = clock::now();
  last = f.call_async(args).at(0);  // the device is idle: nothing blocks the host
  *host_ms = std::chrono::duration<double, std::milli>(clock::now() - h0).count();
  f.synchronize();
  last = Tensor();
  Timing t;
  const CpuSample a = cpu_sample();
  std::vector<std::pair<std::shared_ptr<DeviceEvent>, std::shared_ptr<DeviceEvent>>> events;
  stream.delay(std::min(400.0, 1.5 * min_reps * *host_ms + 1.0));
  for (int i = 0; i < min_reps; ++i) {
    auto start = stream.record();
    last = f.call_async(args).at(0);
    events.emplace_back(std::move(start), stream.record());
  }
  f.synchronize();
  for (auto& [start, end] : events) t.samples_ms.push_back(start->elapsed_ms(*end));
  std::tie(t.foreign, t.steal) = foreign_load(a, cpu_sample());
  t.ms = median(t.samples_ms);
  t.ms_min = *std::min_element(t.samples_ms.begin(), t.samples_ms.end());
  return t;
}

std::string first_line(const std::string& s) {
  const auto p = s.find('\n');
  return p == std::string::npos ? s : s.substr(0, p);
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

struct Options {
  std::string suite, device = "cpu", out, only, impls = "corrmm,onednn,default,meta",
                     dirs = "fwd,bwd_data,bwd_filter", blas_coretype = "auto";
  int threads = 2, reps = 5, warmup = 2, retries = 2;
  double min_time = 0.5, max_foreign = 0.10;
  // GPU: repeat a measurement whose median is more than this fraction above its fastest sample.
  double max_spread = 0.5;
  // Appended to every implementation's flags (after them, so they win).
  std::string extra_flags;
  // GPU mode.
  std::string precision = "fp32,tf32,fp16", fp16_fwd_precision = "as_input_f32";
  double deadline = 0;  // seconds after the start past which no new layer starts; 0 = none
  // GpuCorrMM's column target in MiB (GpuCorrMMTuning::column_target_bytes): -1 = half the L2
  // cache, 0 = none (the default).
  double column_target_mib = 0;
  bool floor = true;
  // The GPU mode's code on the CPU (batch_cpu, device=cpu): a logic test for machines without a
  // GPU, as peer_gpu.py --smoke. Timings mean nothing.
  bool smoke = false;
  // Whether --impls, --reps, --warmup, --min-time were given (the GPU mode has its own defaults).
  bool impls_set = false, reps_set = false, warmup_set = false, min_time_set = false;
};

std::string with_extra(const std::string& flags, const std::string& extra) {
  if (flags.empty()) return extra;
  return extra.empty() ? flags : flags + "," + extra;
}

int run_cpu(const Options& o) {
  std::ifstream in(o.suite);
  if (!in) {
    std::fprintf(stderr, "convgraph_bench_conv: cannot read the suite %s\n", o.suite.c_str());
    return 2;
  }
  const json suite = json::parse(in);
  const std::int64_t batch = suite.at("batch_cpu");
  const std::vector<std::string> only = split_list(o.only);
  const std::vector<std::string> impls = split_list(o.impls);
  const std::vector<std::string> dirs = split_list(o.dirs);
  for (const auto& i : impls) {
    if (!impl_flags(i, DeviceKind::cpu)) {
      std::fprintf(stderr, "convgraph_bench_conv: unknown implementation '%s' (%s)\n", i.c_str(),
                   known_impls(DeviceKind::cpu).c_str());
      return 2;
    }
  }
  for (const auto& d : dirs) {
    if (std::find(std::begin(kDirections), std::end(kDirections), d) == std::end(kDirections)) {
      std::fprintf(stderr, "convgraph_bench_conv: unknown direction '%s'\n", d.c_str());
      return 2;
    }
  }
  std::vector<Layer> layers;
  for (const auto& [key, dims] : {std::pair<const char*, int>{"layers", 2}, {"layers3d", 3}}) {
    if (!suite.contains(key)) continue;
    for (const auto& j : suite.at(key)) {
      Layer l = parse_layer(j, dims, batch);
      const bool wanted =
          only.empty() || std::any_of(only.begin(), only.end(), [&](const std::string& s) {
            return l.name.find(s) != std::string::npos;
          });
      if (wanted) layers.push_back(std::move(l));
    }
  }
  if (layers.empty()) {
    std::fprintf(stderr, "convgraph_bench_conv: no layer of the suite matches --only %s\n",
                 o.only.c_str());
    return 2;
  }

  // The thread count for convgraph's own loops (read when the kernels run) and for compiling.
  Config config = global_config();
  config.set("threads", std::to_string(o.threads));
  set_global_config(config);
  const std::set<std::string> known = pass_database().known_tags();

  json meta = {
      {"threads", o.threads},
      {"device", o.device},
      {"date", now_iso()},
      {"convgraph_version", CONVGRAPH_VERSION},
      {"batch", batch},
      {"dtype", "float32"},
      {"layout", "NCHW/NCDHW, OIHW/OIDHW, cross-correlation"},
      {"timing", "per call, steady_clock; median (and min) after warm-up calls"},
      {"warmup", o.warmup},
      {"min_reps", o.reps},
      {"min_time_s", o.min_time},
      {"max_foreign", o.max_foreign},
      {"have_onednn", static_cast<bool>(CONVGRAPH_HAVE_ONEDNN)},
      {"known_lowering_tags",
       {{"conv_gemm", known.count("conv_gemm") > 0},
        {"conv_dnn", known.count("conv_dnn") > 0},
        {"conv_meta", known.count("conv_meta") > 0}}},
      {"OMP_NUM_THREADS", env_or("OMP_NUM_THREADS", "")},
      {"OPENBLAS_NUM_THREADS", env_or("OPENBLAS_NUM_THREADS", "")},
      {"OPENBLAS_CORETYPE", env_or("OPENBLAS_CORETYPE", "")},
      {"OPENBLAS_CORETYPE_inherited", env_or("CONVGRAPH_BENCH_INHERITED_CORETYPE", "")},
      {"CONVGRAPH_FLAGS", env_or("CONVGRAPH_FLAGS", "")},
      {"openblas_core", openblas_get_corename()},
      {"openblas_threads", openblas_get_num_threads()},
      {"cpu", cpu_model()},
      {"loadavg_start", loadavg()},
  };
  json requested = json::object(), effective = json::object();
  std::map<std::string, std::string> flags;
  for (const auto& i : impls) {
    flags[i] = effective_flags(with_extra(*impl_flags(i, DeviceKind::cpu), o.extra_flags), known,
                               o.threads);
    const std::string given = with_extra(*impl_flags(i, DeviceKind::cpu), o.extra_flags);
    requested[i] = given + (given.empty() ? "" : ",") + "threads=" + std::to_string(o.threads);
    effective[i] = flags[i];
  }
  meta["impl_flags"] = requested;
  meta["impl_flags_effective"] = effective;

  std::printf(
      "convgraph %s  threads=%d (OMP %s, OpenBLAS %d, core %s)  N=%lld  min-time %.2fs  "
      "reps>=%d\n",
      CONVGRAPH_VERSION, o.threads, env_or("OMP_NUM_THREADS", "?").c_str(),
      openblas_get_num_threads(), openblas_get_corename(), static_cast<long long>(batch),
      o.min_time, o.reps);
  if (!known.count("conv_meta") && std::count(impls.begin(), impls.end(), "meta")) {
    std::printf(
        "note: no pass carries the tag conv_meta: 'meta' compiles with the default "
        "lowering (the JSON's \"ops\" say what ran)\n");
  }
  const std::string inherited = env_or("CONVGRAPH_BENCH_INHERITED_CORETYPE", "");
  if (!inherited.empty() && inherited != env_or("OPENBLAS_CORETYPE", "")) {
    std::printf(
        "note: OPENBLAS_CORETYPE=%s from the environment replaced by %s "
        "(--blas-coretype env keeps it)\n",
        inherited.c_str(), env_or("OPENBLAS_CORETYPE", "").c_str());
  }
  std::string header = "layer                        dir       ";
  for (const auto& i : impls) header += fmt::format(" {:>9s} ms {:>6s}", i, "GF/s");
  header += "  best";
  std::printf("%s\n%s\n", header.c_str(), std::string(header.size(), '-').c_str());
  std::fflush(stdout);

  std::vector<std::string> notes;
  json results = json::array();
  for (const Layer& l : layers) {
    const double flops = l.flops();
    const Tensor x = random_tensor(l.image_shape(), 1);
    const Tensor w = random_tensor(l.filter_shape(), 2);
    const Tensor gy = random_tensor(l.output_shape(), 3);
    json rec = {{"name", l.name},
                {"dims", l.dims},
                {"layer", l.raw},
                {"N", l.n},
                {"out_spatial", l.out_spatial},
                {"flops", flops},
                {"dirs", json::object()},
                {"impls", json::object()}};
    for (const auto& i : impls) rec["impls"][i] = json::object();
    for (const std::string& dir : dirs) {
      std::string row = fmt::format("{:28s} {:10s}", l.name, dir);
      const std::vector<Tensor> args =
          dir == "fwd"
              ? std::vector<Tensor>{x, w}
              : (dir == "bwd_data" ? std::vector<Tensor>{w, gy} : std::vector<Tensor>{x, gy});
      std::optional<std::pair<std::string, Tensor>> reference;
      std::string best;
      double best_ms = 0;
      for (const std::string& impl : impls) {
        json entry;
        try {
          const Graph g = build_graph(l, dir);
          const auto c0 = std::chrono::steady_clock::now();
          const Function f = compile(g.inputs, {g.output}, CompileOptions{.flags = flags.at(impl)});
          const double compile_ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0)
                  .count();
          std::vector<std::string> ops;
          for (const Node* node : f.graph().toposort()) ops.push_back(node->op->name());
          std::vector<Timing> attempts;
          Tensor out;
          for (int attempt = 0; attempt <= o.retries; ++attempt) {
            attempts.push_back(time_calls(f, args, o.warmup, o.reps, o.min_time, out));
            if (attempts.back().foreign <= o.max_foreign) break;
          }
          const Timing t =
              *std::min_element(attempts.begin(), attempts.end(),
                                [](const Timing& a, const Timing& b) { return a.ms < b.ms; });
          std::vector<double> all_ms;
          for (const auto& a : attempts) all_ms.push_back(a.ms);
          entry = {{"ms", t.ms},
                   {"ms_min", t.ms_min},
                   {"gflops", flops / t.ms / 1e6},
                   {"gflops_best", flops / t.ms_min / 1e6},
                   {"reps", t.samples_ms.size()},
                   {"samples_ms", t.samples_ms},
                   {"foreign_cpu", t.foreign},
                   {"steal", t.steal},
                   {"attempts", attempts.size()},
                   {"all_attempts_ms", all_ms},
                   {"compile_ms", compile_ms},
                   {"ops", ops}};
          if (reference) {
            entry["rel_diff_vs_" + reference->first] = rel_diff(reference->second, out);
          } else {
            reference.emplace(impl, out);
          }
          row += fmt::format(" {:11.3f}{} {:6.1f}", t.ms, t.foreign > o.max_foreign ? '*' : ' ',
                             flops / t.ms / 1e6);
          if (best.empty() || t.ms < best_ms) {
            best = impl;
            best_ms = t.ms;
          }
        } catch (const std::exception& e) {
          entry = {{"error", e.what()}};
          row += fmt::format(" {:>12s} {:>6s}", "error", "-");
          notes.push_back(fmt::format("{} {} {}: {}", l.name, dir, impl, first_line(e.what())));
        }
        rec["impls"][impl][dir] = entry;
      }
      if (!best.empty()) {
        const json e = rec["impls"][best][dir];
        rec["dirs"][dir] = {{"ms", e["ms"]},
                            {"ms_min", e["ms_min"]},
                            {"gflops", e["gflops"]},
                            {"impl", best},
                            {"ops", e["ops"]}};
      }
      row += "  " + (best.empty() ? std::string("-") : best);
      std::printf("%s\n", row.c_str());
      std::fflush(stdout);
    }
    results.push_back(rec);
    cpu_allocator().release_cached();  // keep the footprint to one layer's buffers
  }
  meta["loadavg_end"] = loadavg();
  std::printf(
      "(* = other processes used more than %.0f%% of the CPUs during that measurement, "
      "even after %d retries)\n",
      o.max_foreign * 100, o.retries);
  if (!notes.empty()) {
    std::printf("\nerrors (first line; the JSON has the whole message):\n");
    for (const auto& n : notes) std::printf("  %s\n", n.c_str());
  }
  if (!o.out.empty()) {
    std::ofstream f(o.out);
    if (!f) {
      std::fprintf(stderr, "convgraph_bench_conv: cannot write %s\n", o.out.c_str());
      return 2;
    }
    f << json{{"meta", meta}, {"results", results}}.dump(1) << "\n";
    std::printf("\nwrote %s\n", o.out.c_str());
  }
  return 0;
}

// ---- GPU mode ---------------------------------------------------------------------------------

struct Precision {
  std::string name;
  DType dtype;
  bool tf32;
};

// peer_gpu.py's precisions: float32 with TF32 off, float32 with TF32 on, float16.
const std::vector<Precision>& gpu_precisions() {
  static const std::vector<Precision> p = {{"fp32", DType::float32, false},
                                           {"tf32", DType::float32, true},
                                           {"fp16", DType::float16, false}};
  return p;
}

// The precision's flags for a graph of direction DIR. float16: PyTorch runs cuDNN with float16
// data and float32 math (its convolution descriptor's compute type is float for half data, in
// every direction), which is dnn.conv.precision=as_input_f32, the default; the forward's value
// can be changed (as_input: float16 math) with --fp16-fwd-precision. The backward directions keep
// as_input_f32 (float16 math is a TypeError there).
std::string precision_flags(const Precision& p, const std::string& dir,
                            const std::string& fp16_fwd_precision) {
  std::string f = std::string("dnn.conv.allow_tf32=") + (p.tf32 ? "True" : "False");
  if (p.dtype == DType::float16) {
    f += ",dnn.conv.precision=" + (dir == "fwd" ? fp16_fwd_precision : "as_input_f32");
  }
  return f;
}

std::vector<Layer> select_layers(const json& suite, std::int64_t batch,
                                 const std::vector<std::string>& only) {
  std::vector<Layer> layers;
  for (const auto& [key, dims] : {std::pair<const char*, int>{"layers", 2}, {"layers3d", 3}}) {
    if (!suite.contains(key)) continue;
    for (const auto& j : suite.at(key)) {
      Layer l = parse_layer(j, dims, batch);
      const bool wanted =
          only.empty() || std::any_of(only.begin(), only.end(), [&](const std::string& s) {
            return l.name.find(s) != std::string::npos;
          });
      if (wanted) layers.push_back(std::move(l));
    }
  }
  return layers;
}

void write_json_file(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error("cannot write " + tmp);
    f << j.dump(1) << "\n";
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
  }
}

// Gives the device's cached blocks back, so that one layer's buffers do not crowd the next one.
void release_device_memory(Device device) {
#if CONVGRAPH_HAVE_CUDA
  try {
    cuda::device_allocator(device.index).release_cached();
  } catch (const std::exception&) {
    // A device in an error state says so at the next measurement.
  }
#else
  (void)device;
#endif
}

struct GpuMeasurement {
  json entry;         // the impls entry: timings, or {"error": ...}
  double ms = -1;     // < 0: failed
  Tensor out;         // the last call's output (on the device)
  std::string error;  // the first line of the error
};

GpuMeasurement measure_gpu(const Layer& l, const std::string& dir, DType dtype,
                           const std::string& flags, const std::vector<Tensor>& args,
                           const Options& o, int reps, int fast_reps, int warmup, double min_time) {
  GpuMeasurement m;
  try {
    const Graph g = build_graph(l, dir, dtype);
    const auto c0 = std::chrono::steady_clock::now();
    const Function f = compile(
        g.inputs, {g.output},
        CompileOptions{.flags = flags, .inputs_on_device = true, .outputs_on_device = true});
    const double compile_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
    std::vector<std::string> ops;
    for (const Node* node : f.graph().toposort()) ops.push_back(node->op->name());
    // On a GPU: device time from events; the smoke mode (on the CPU) times with the wall clock.
    const std::shared_ptr<DeviceStream> stream =
        f.plan().devices.empty() ? nullptr : f.stream(f.plan().devices.front());
    std::vector<Timing> attempts;
    double call_ms = -1, host_ms = -1;
    for (int attempt = 0; attempt <= o.retries; ++attempt) {
      attempts.push_back(stream
                             ? time_device_calls(f, *stream, args, warmup, reps, m.out, fast_reps,
                                                 5.0, &call_ms, &host_ms)
                             : time_calls(f, args, warmup, reps, min_time, m.out, fast_reps, 5.0));
      // Events do not see the host; a busy host only matters to the wall clock. On the device, a
      // measurement whose calls slowed down as it ran (median well above the fastest call: the
      // GPU was throttled or shared) is taken again; steady ones spread by a few percent.
      const Timing& last = attempts.back();
      if (stream ? last.ms <= (1.0 + o.max_spread) * last.ms_min : last.foreign <= o.max_foreign) {
        break;
      }
    }
    const Timing t =
        *std::min_element(attempts.begin(), attempts.end(),
                          [](const Timing& a, const Timing& b) { return a.ms < b.ms; });
    std::vector<double> all_ms;
    for (const auto& a : attempts) all_ms.push_back(a.ms);
    const double flops = l.flops();
    m.ms = t.ms;
    m.entry = {{"ms", t.ms},
               {"min_ms", t.ms_min},
               {"tflops", flops / t.ms / 1e9},
               {"tflops_best", flops / t.ms_min / 1e9},
               {"iters", t.samples_ms.size()},
               {"samples_ms", t.samples_ms},
               {"foreign_cpu", t.foreign},
               {"attempts", attempts.size()},
               {"all_attempts_ms", all_ms},
               {"compile_ms", compile_ms},
               {"ops", ops}};
    if (stream) {
      m.entry["call_wall_ms"] = call_ms;  // a synchronous call, host to host
      m.entry["host_enqueue_ms"] = host_ms;
    }
  } catch (const std::exception& e) {
    m = GpuMeasurement{};
    m.entry = {{"error", e.what()}};
    m.error = first_line(e.what());
  }
  return m;
}

int run_gpu(const Options& o) {
  const auto t_start = std::chrono::steady_clock::now();
  const auto elapsed_s = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };
  std::ifstream in(o.suite);
  if (!in) {
    std::fprintf(stderr, "convgraph_bench_conv: cannot read the suite %s\n", o.suite.c_str());
    return 2;
  }
  const json suite = json::parse(in);
  const std::int64_t batch = suite.at(o.smoke ? "batch_cpu" : "batch_gpu");
  const std::string device_name = o.smoke ? "cpu" : o.device == "gpu" ? "cuda" : o.device;
  const Device device = parse_device(device_name, "--device");
#if CONVGRAPH_HAVE_CUDA
  {
    gpu::GpuCorrMMTuning tuning = gpu::gpu_corrmm_tuning();
    tuning.column_target_bytes =
        o.column_target_mib < 0 ? -1 : static_cast<std::int64_t>(o.column_target_mib * (1 << 20));
    gpu::set_gpu_corrmm_tuning(tuning);
  }
#endif
  std::vector<Precision> precisions;
  for (const auto& name : split_list(o.precision)) {
    const auto it = std::find_if(gpu_precisions().begin(), gpu_precisions().end(),
                                 [&](const Precision& p) { return p.name == name; });
    if (it == gpu_precisions().end()) {
      std::fprintf(stderr, "convgraph_bench_conv: unknown precision '%s' (fp32, tf32, fp16)\n",
                   name.c_str());
      return 2;
    }
    precisions.push_back(*it);
  }
  const std::vector<std::string> impls =
      split_list(o.impls_set ? o.impls : std::string("cudnn,gpu_corrmm,meta"));
  const std::vector<std::string> dirs = split_list(o.dirs);
  for (const auto& i : impls) {
    if (!impl_flags(i, DeviceKind::cuda)) {
      std::fprintf(stderr, "convgraph_bench_conv: unknown GPU implementation '%s' (%s)\n",
                   i.c_str(), known_impls(DeviceKind::cuda).c_str());
      return 2;
    }
  }
  for (const auto& d : dirs) {
    if (std::find(std::begin(kDirections), std::end(kDirections), d) == std::end(kDirections)) {
      std::fprintf(stderr, "convgraph_bench_conv: unknown direction '%s'\n", d.c_str());
      return 2;
    }
  }
  if (precisions.empty() || impls.empty() || dirs.empty()) {
    std::fprintf(stderr, "convgraph_bench_conv: nothing to measure\n");
    return 2;
  }
  const std::vector<Layer> layers = select_layers(suite, batch, split_list(o.only));
  if (layers.empty()) {
    std::fprintf(stderr, "convgraph_bench_conv: no layer of the suite matches --only %s\n",
                 o.only.c_str());
    return 2;
  }

  // No device, no driver, no CUDA in this build: say so and stop (DeviceError, caught in main).
  require_device(device);

  Config config = global_config();
  config.set("threads", std::to_string(o.threads));
  set_global_config(config);
  const std::set<std::string> known = pass_database().known_tags();

  // peer_gpu.py: an autotuning call and 2 warm-up calls, then the median of >= 20 calls (30 when
  // a call takes under 5 ms).
  const int reps = o.reps_set ? o.reps : 20;
  const int fast_reps = o.reps_set ? 0 : 30;
  const int warmup = o.warmup_set ? o.warmup : 3;
  const double min_time = o.min_time_set ? o.min_time : 0.0;

  // Flags per (precision, direction, implementation): requested and effective.
  const auto requested_flags = [&](const Precision& p, const std::string& dir,
                                   const std::string& impl) {
    return with_extra("device=" + device_name + "," + *impl_flags(impl, DeviceKind::cuda) + "," +
                          precision_flags(p, dir, o.fp16_fwd_precision) + ",autotune.cache=off",
                      o.extra_flags);
  };

  json meta = {
      {"device", device_name},
      {"smoke", o.smoke},
      {"gpu", describe_device(device)},
      {"date", now_iso()},
      {"convgraph_version", CONVGRAPH_VERSION},
      {"batch", batch},
      {"threads", o.threads},
      {"timing",
       o.smoke
           ? fmt::format("smoke run on the CPU: steady_clock per call, median of >= {} "
                         "calls after {} untimed calls",
                         reps, warmup)
           : fmt::format("device time per call from CUDA events on the function's stream "
                         "(inputs and outputs on the device), the calls queued behind a delay "
                         "kernel with Function::call_async, as peer_gpu.py times PyTorch; "
                         "median (and min) of >= {} calls{} after {} synchronous calls (the "
                         "first one autotunes; their wall-clock median is call_wall_ms)",
                         reps, fast_reps > 0 ? " (30 when a call takes under 5 ms)" : "", warmup)},
      {"warmup", warmup},
      {"min_reps", reps},
      {"min_time_s", min_time},
      {"fp16_fwd_precision", o.fp16_fwd_precision},
      {"extra_flags", o.extra_flags},
      {"known_lowering_tags",
       {{"conv_gemm", known.count("conv_gemm") > 0},
        {"conv_dnn", known.count("conv_dnn") > 0},
        {"conv_meta", known.count("conv_meta") > 0}}},
      {"have_cuda", static_cast<bool>(CONVGRAPH_HAVE_CUDA)},
      {"have_cudnn", static_cast<bool>(CONVGRAPH_HAVE_CUDNN)},
      {"CONVGRAPH_FLAGS", env_or("CONVGRAPH_FLAGS", "")},
      {"cpu", cpu_model()},
      {"loadavg_start", loadavg()},
      {"precisions", json::object()},
  };
  for (const Precision& p : precisions) {
    json pm = {{"dtype", std::string(dtype_name(p.dtype))},
               {"allow_tf32", p.tf32},
               {"impl_flags", json::object()},
               {"impl_flags_effective", json::object()}};
    for (const auto& impl : impls) {
      for (const auto& dir : dirs) {
        pm["impl_flags"][impl][dir] = requested_flags(p, dir, impl);
        pm["impl_flags_effective"][impl][dir] =
            effective_flags(requested_flags(p, dir, impl), known, o.threads);
      }
    }
    meta["precisions"][p.name] = pm;
  }
  json doc = {{"meta", meta},
              {"batch", batch},
              {"layout", "NCHW/NCDHW, OIHW/OIDHW, cross-correlation"},
              {"timing", meta["timing"]},
              {"flops", "2*N*K*[Do]*Ho*Wo*(C/groups)*[T]*R*S for every direction"},
              {"layers", json::array()},
              {"skipped", json::array()}};
  const auto save = [&] {
    if (o.out.empty()) return;
    doc["meta"]["loadavg_end"] = loadavg();
    doc["elapsed_s"] = elapsed_s();
    write_json_file(o.out, doc);
  };

  std::printf("convgraph %s  %s  N=%lld  precisions %s  impls %s  reps>=%d%s  warm-up %d\n",
              CONVGRAPH_VERSION, describe_device(device).c_str(), static_cast<long long>(batch),
              o.precision.c_str(), fmt::format("{}", fmt::join(impls, ",")).c_str(), reps,
              fast_reps > 0 ? " (30 under 5 ms)" : "", warmup);
  if (!known.count("conv_meta") && std::count(impls.begin(), impls.end(), "meta")) {
    std::printf(
        "note: no pass carries the tag conv_meta: 'meta' compiles with the default "
        "lowering (the JSON's \"ops\" say what ran)\n");
  }

  // The floor: the same calls on a problem of almost no work (N=1, C=K=8, 8x8, 3x3), timed host
  // to host (call_wall_ms of synchronous calls), i.e. what a call costs besides the GPU's work
  // (graph, launches, the final synchronisation). The suite's rows are device times, as the
  // peer's: the floor says what a synchronous call adds to them.
  if (o.floor) {
    Layer fl = parse_layer(json{{"name", "floor"},
                                {"C", 8},
                                {"K", 8},
                                {"H", 8},
                                {"W", 8},
                                {"R", 3},
                                {"S", 3},
                                {"stride", 1},
                                {"pad", 1},
                                {"dilation", 1},
                                {"groups", 1}},
                           2, 1);
    const Tensor fx = random_tensor(fl.image_shape(), 1), fw = random_tensor(fl.filter_shape(), 2),
                 fgy = random_tensor(fl.output_shape(), 3);
    for (const Precision& p : precisions) {
      std::string line = fmt::format("call floor ({}, N=1 C=K=8 8x8 3x3), ms:", p.name);
      json floor = json::object();
      try {
        const Tensor x = fx.cast(p.dtype).to(device), w = fw.cast(p.dtype).to(device),
                     gy = fgy.cast(p.dtype).to(device);
        for (const auto& impl : impls) {
          for (const auto& dir : dirs) {
            const std::vector<Tensor> args =
                dir == "fwd"
                    ? std::vector<Tensor>{x, w}
                    : (dir == "bwd_data" ? std::vector<Tensor>{w, gy} : std::vector<Tensor>{x, gy});
            const GpuMeasurement m = measure_gpu(
                fl, dir, p.dtype, effective_flags(requested_flags(p, dir, impl), known, o.threads),
                args, o, 30, 0, warmup, 0.0);
            const double wall =
                m.ms >= 0 ? m.entry.value("call_wall_ms", m.ms) : -1.0;  // smoke: no events
            floor[impl][dir] = m.ms >= 0 ? json(wall) : json(m.error);
            line += m.ms >= 0 ? fmt::format(" {}/{} {:.4f}", impl, dir, wall)
                              : fmt::format(" {}/{} error", impl, dir);
          }
        }
      } catch (const std::exception& e) {
        floor = {{"error", e.what()}};
        line += " error: " + first_line(e.what());
      }
      doc["meta"]["precisions"][p.name]["call_floor_ms"] = floor;
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    release_device_memory(device);
  }

  std::string header = "layer                        prec dir       ";
  for (const auto& i : impls) header += fmt::format(" {:>10s} ms {:>6s}", i, "TF/s");
  header += "  best";
  std::printf("%s\n%s\n", header.c_str(), std::string(header.size(), '-').c_str());
  std::fflush(stdout);

  std::vector<std::string> notes;
  int n_ok = 0, n_failed = 0;
  for (const Layer& l : layers) {
    if (o.deadline > 0 && elapsed_s() > o.deadline) {
      doc["skipped"].push_back(l.name);
      std::printf("%-28s deadline (%g s) reached: skipped\n", l.name.c_str(), o.deadline);
      continue;
    }
    const double flops = l.flops();
    const Tensor hx = random_tensor(l.image_shape(), 1);
    const Tensor hw = random_tensor(l.filter_shape(), 2);
    const Tensor hgy = random_tensor(l.output_shape(), 3);
    json ent = {{"name", l.name},
                {"dims", l.dims},
                {"N", l.n},
                {"x", l.image_shape()},
                {"w", l.filter_shape()},
                {"y", l.output_shape()},
                {"stride", l.stride},
                {"pad", l.pad},
                {"dilation", l.dilation},
                {"groups", l.groups},
                {"flops", flops},
                {"gflop", flops / 1e9},
                {"layer", l.raw},
                {"results", json::object()},
                {"impls", json::object()}};
    for (const Precision& p : precisions) {
      ent["results"][p.name] = json::object();
      ent["impls"][p.name] = json::object();
      for (const auto& i : impls) ent["impls"][p.name][i] = json::object();
      Tensor x, w, gy;
      try {
        x = hx.cast(p.dtype).to(device);
        w = hw.cast(p.dtype).to(device);
        gy = hgy.cast(p.dtype).to(device);
      } catch (const std::exception& e) {
        ent["results"][p.name]["error"] = e.what();
        notes.push_back(fmt::format("{} {} (inputs): {}", l.name, p.name, first_line(e.what())));
        n_failed += static_cast<int>(dirs.size() * impls.size());
        std::printf("%-28s %-4s inputs failed: %s\n", l.name.c_str(), p.name.c_str(),
                    first_line(e.what()).c_str());
        continue;
      }
      for (const std::string& dir : dirs) {
        std::string row = fmt::format("{:28s} {:4s} {:10s}", l.name, p.name, dir);
        const std::vector<Tensor> args =
            dir == "fwd"
                ? std::vector<Tensor>{x, w}
                : (dir == "bwd_data" ? std::vector<Tensor>{w, gy} : std::vector<Tensor>{x, gy});
        std::optional<std::pair<std::string, Tensor>> reference;
        std::string best;
        double best_ms = 0;
        std::vector<std::string> errors;
        for (const std::string& impl : impls) {
          GpuMeasurement m = measure_gpu(
              l, dir, p.dtype, effective_flags(requested_flags(p, dir, impl), known, o.threads),
              args, o, reps, fast_reps, warmup, min_time);
          if (m.ms >= 0) {
            ++n_ok;
            try {
              if (reference) {
                m.entry["rel_diff_vs_" + reference->first] = rel_diff(reference->second, m.out);
              } else {
                reference.emplace(impl, m.out.to(Device::cpu()).cast(DType::float32));
              }
            } catch (const std::exception& e) {
              m.entry["rel_diff_error"] = e.what();
            }
            row += fmt::format(" {:12.4f}{} {:6.1f}", m.ms,
                               m.entry["foreign_cpu"].get<double>() > o.max_foreign ? '*' : ' ',
                               flops / m.ms / 1e9);
            if (best.empty() || m.ms < best_ms) {
              best = impl;
              best_ms = m.ms;
            }
          } else {
            ++n_failed;
            row += fmt::format(" {:>13s} {:>6s}", "error", "-");
            notes.push_back(fmt::format("{} {} {} {}: {}", l.name, p.name, dir, impl, m.error));
            errors.push_back(impl + ": " + m.error);
          }
          m.out = Tensor();
          ent["impls"][p.name][impl][dir] = std::move(m.entry);
          // Every implementation starts with the same free memory (cuDNN's workspace limit is
          // the largest free block by default).
          release_device_memory(device);
        }
        if (!best.empty()) {
          const json e = ent["impls"][p.name][best][dir];
          ent["results"][p.name][dir] = {{"ms", e["ms"]},
                                         {"min_ms", e["min_ms"]},
                                         {"tflops", e["tflops"]},
                                         {"impl", best},
                                         {"ops", e["ops"]}};
        } else {
          ent["results"][p.name][dir] = {
              {"error", fmt::format("every implementation failed; {}", fmt::join(errors, "; "))}};
        }
        row += "  " + (best.empty() ? std::string("-") : best);
        std::printf("%s\n", row.c_str());
        std::fflush(stdout);
      }
      x = w = gy = Tensor();
      release_device_memory(device);
    }
    doc["layers"].push_back(std::move(ent));
    save();
  }
  std::printf("(* = other processes used more than %.0f%% of the CPUs during that measurement)\n",
              o.max_foreign * 100);
  std::printf("measurements: %d ran, %d failed\n", n_ok, n_failed);
  if (!notes.empty()) {
    std::printf("\nerrors (first line; the JSON has the whole message):\n");
    for (const auto& n : notes) std::printf("  %s\n", n.c_str());
  }
  save();
  if (!o.out.empty()) std::printf("\nwrote %s\n", o.out.c_str());
  return n_ok > 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_conv: time convgraph's convolutions on the conv suite"};
  Options o;
  app.add_option("--suite", o.suite, "the suite (suite.json)")->required();
  app.add_option("--device", o.device, "cpu, or cuda / cudaN / gpu (the GPU mode)")
      ->check(
          [](const std::string& v) {
            if (v == "cpu" || v == "gpu") return std::string();
            try {
              parse_device(v, "--device");
              return std::string();
            } catch (const std::exception&) {
              return "unknown device '" + v + "' (cpu, cuda, cudaN, gpu)";
            }
          },
          "cpu|cuda|cudaN|gpu");
  app.add_option("--out", o.out,
                 "write the results here (JSON: the schema of peer_cpu.py on the CPU, of "
                 "peer_gpu.py on the GPU)");
  app.add_option("--only", o.only, "comma-separated substrings of layer names");
  auto* impls_opt = app.add_option(
      "--impls", o.impls,
      "comma-separated: a registry row of the device (corrmm, onednn, winograd on the CPU), meta, "
      "or default (CPU: the default lowering's choice); default corrmm,onednn,default,meta on the "
      "CPU, cudnn,gpu_corrmm,meta on the GPU");
  app.add_option("--dirs", o.dirs, "comma-separated: fwd, bwd_data, bwd_filter");
  app.add_option("--threads", o.threads, "CPU threads (convgraph, OpenMP, OpenBLAS)")
      ->check(CLI::PositiveNumber);
  auto* reps_opt =
      app.add_option("--reps", o.reps,
                     "at least this many timed calls (default 5; GPU: 20, or 30 when a call "
                     "takes under 5 ms, as peer_gpu.py)")
          ->check(CLI::PositiveNumber);
  auto* min_time_opt = app.add_option(
      "--min-time", o.min_time, "time calls for at least this many seconds (default 0.5; GPU: 0)");
  auto* warmup_opt =
      app.add_option("--warmup", o.warmup, "untimed calls first (default 2; GPU: 3)");
  app.add_option("--max-foreign", o.max_foreign,
                 "repeat a measurement when other processes used more than this share of the CPUs");
  app.add_option("--retries", o.retries, "at most this many repeats");
  app.add_option("--max-spread", o.max_spread,
                 "GPU: repeat a measurement whose median is more than this fraction above its "
                 "fastest call (the device slowed down while it ran; default 0.5)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--blas-coretype", o.blas_coretype,
                 "OpenBLAS kernels: auto (the blas.coretype flag; its auto picks SkylakeX with "
                 "AVX-512), env (keep OPENBLAS_CORETYPE), or a core name");
  app.add_option("--extra-flags", o.extra_flags,
                 "convgraph flags appended to every implementation's flags (K=V,K=V)");
  app.add_option("--precision", o.precision,
                 "GPU: comma-separated precisions, fp32 (TF32 off), tf32, fp16");
  app.add_option("--fp16-fwd-precision", o.fp16_fwd_precision,
                 "GPU: dnn.conv.precision of the fp16 forward (as_input_f32 = float32 math as "
                 "PyTorch, as_input = float16 math); the backward keeps as_input_f32")
      ->check(CLI::IsMember({"as_input_f32", "as_input", "float16", "float32"}));
  app.add_option("--deadline", o.deadline,
                 "GPU: no new layer starts after this many seconds (0 = no limit)");
  app.add_option("--corrmm-column-target", o.column_target_mib,
                 "GPU: GpuCorrMM's column-matrix target in MiB (-1: half the L2 cache; 0: none, "
                 "the default)");
  app.add_flag("--smoke", o.smoke,
               "GPU mode's code on the CPU (batch_cpu, device=cpu): a logic test without a GPU; "
               "timings mean nothing");
  app.add_flag("!--no-floor", o.floor,
               "GPU: skip the per-call floor measurement (a conv of almost no work)");
  CLI11_PARSE(app, argc, argv);
  o.impls_set = impls_opt->count() > 0;
  o.reps_set = reps_opt->count() > 0;
  o.min_time_set = min_time_opt->count() > 0;
  o.warmup_set = warmup_opt->count() > 0;

  ensure_environment(o.threads, o.blas_coretype, argv);
  try {
    return o.device == "cpu" && !o.smoke ? run_cpu(o) : run_gpu(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph_bench_conv: %s\n", e.what());
    return 2;
  }
}
