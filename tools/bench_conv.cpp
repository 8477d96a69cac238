// convgraph_bench_conv: times convgraph's convolutions on the conv benchmark suite, in all three
// directions (forward, gradient wrt the inputs, gradient wrt the weights), once per
// implementation, and writes JSON in the schema of the suite's peer_cpu.py so that compare.py can
// set it beside PyTorch measured in the same sitting. See docs/benchmarks.md.
//
//   convgraph_bench_conv --suite SUITE.json --device cpu --out OUT.json
//       [--only NAME,NAME] [--impls corrmm,onednn,meta] [--dirs fwd,bwd_data,bwd_filter]
//       [--threads 2] [--reps 5] [--min-time 0.5] [--warmup 2] [--max-foreign 0.10] [--retries 2]
//       [--blas-coretype auto|env|CORE]
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
#include <string>
#include <vector>

#include "convgraph/convgraph.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/runtime/allocator.hpp"

extern "C" {
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
}

using namespace convgraph;
using json = nlohmann::json;

namespace {

const char* const kDirections[] = {"fwd", "bwd_data", "bwd_filter"};

// The compile flags that select each implementation (threads=N is appended).
const std::map<std::string, std::string>& impl_flags() {
  static const std::map<std::string, std::string> flags = {
      {"corrmm", "optimizer_excluding=conv_dnn:conv_meta"},
      {"onednn", "optimizer_excluding=conv_gemm:conv_meta"},
      {"meta", "optimizer_including=conv_meta"},
  };
  return flags;
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
std::string effective_flags(const std::string& flags, const std::set<std::string>& known,
                            int threads) {
  std::string out;
  for (const std::string& item : split_list(flags)) {
    const auto eq = item.find('=');
    std::string kept = item;
    if (eq != std::string::npos) {
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

Graph build_graph(const Layer& l, const std::string& dir) {
  const std::vector<std::int64_t> stride(l.dims, l.stride), dilation(l.dims, l.dilation);
  ConvOptions opt{.input_shape = static_of(l.image_shape()),
                  .filter_shape = static_of(l.filter_shape()),
                  .border_mode = BorderMode(l.pad),
                  .subsample = stride,
                  .filter_flip = false,  // cross-correlation, as PyTorch
                  .filter_dilation = dilation,
                  .num_groups = l.groups};
  const bool d3 = l.dims == 3;
  Variable x = tensor("x", DType::float32, static_of(l.image_shape()));
  Variable w = tensor("w", DType::float32, static_of(l.filter_shape()));
  Variable gy = tensor("gy", DType::float32, static_of(l.output_shape()));
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

// max |a - b| / max |a|.
double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor ca = a.contiguous(), cb = b.contiguous();
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// WARMUP calls, then calls until MIN_TIME seconds have passed and at least MIN_REPS were made.
// Each call is timed on its own; the output of the last call is kept in LAST.
Timing time_calls(const Function& f, const std::vector<Tensor>& args, int warmup, int min_reps,
                  double min_time, Tensor& last) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) last = f(args).at(0);
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

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  }
  return "?";
}

struct Options {
  std::string suite, device = "cpu", out, only, impls = "corrmm,onednn,meta",
                     dirs = "fwd,bwd_data,bwd_filter", blas_coretype = "auto";
  int threads = 2, reps = 5, warmup = 2, retries = 2;
  double min_time = 0.5, max_foreign = 0.10;
};

int run(const Options& o) {
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
    if (!impl_flags().count(i)) {
      std::fprintf(stderr,
                   "convgraph_bench_conv: unknown implementation '%s' (corrmm, onednn, meta)\n",
                   i.c_str());
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
    flags[i] = effective_flags(impl_flags().at(i), known, o.threads);
    requested[i] = impl_flags().at(i) + ",threads=" + std::to_string(o.threads);
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
          const Timing& t =
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
        const json& e = rec["impls"][best][dir];
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_conv: time convgraph's convolutions on the conv suite"};
  Options o;
  app.add_option("--suite", o.suite, "the suite (suite.json)")->required();
  app.add_option("--device", o.device, "cpu (gpu: not yet implemented)")
      ->check(CLI::IsMember({"cpu", "gpu"}));
  app.add_option("--out", o.out, "write the results here (JSON, the schema of peer_cpu.py)");
  app.add_option("--only", o.only, "comma-separated substrings of layer names");
  app.add_option("--impls", o.impls, "comma-separated: corrmm, onednn, meta");
  app.add_option("--dirs", o.dirs, "comma-separated: fwd, bwd_data, bwd_filter");
  app.add_option("--threads", o.threads, "CPU threads (convgraph, OpenMP, OpenBLAS)")
      ->check(CLI::PositiveNumber);
  app.add_option("--reps", o.reps, "at least this many timed calls")->check(CLI::PositiveNumber);
  app.add_option("--min-time", o.min_time, "time calls for at least this many seconds");
  app.add_option("--warmup", o.warmup, "untimed calls first");
  app.add_option("--max-foreign", o.max_foreign,
                 "repeat a measurement when other processes used more than this share of the CPUs");
  app.add_option("--retries", o.retries, "at most this many repeats");
  app.add_option("--blas-coretype", o.blas_coretype,
                 "OpenBLAS kernels: auto (the blas.coretype flag; its auto picks SkylakeX with "
                 "AVX-512), env (keep OPENBLAS_CORETYPE), or a core name");
  CLI11_PARSE(app, argc, argv);

  if (o.device != "cpu") {
    std::fprintf(stderr,
                 "convgraph_bench_conv: --device %s: not yet implemented (GPU backend issue)\n",
                 o.device.c_str());
    return 2;
  }
  ensure_environment(o.threads, o.blas_coretype, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph_bench_conv: %s\n", e.what());
    return 2;
  }
}
