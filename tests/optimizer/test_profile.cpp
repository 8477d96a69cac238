// Profiling of compiled functions: per-node rows, FLOPs, the table, the Chrome trace and the
// trace file.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include <unistd.h>

#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

// conv2d (groups 2, stride 2, half padding) + relu + sum, and the gradient with respect to the
// image and the filters: one node of each CorrMM direction.
constexpr std::int64_t kBatch = 2, kChannels = 4, kSize = 9, kFilters = 6, kGroups = 2, kTaps = 3;
constexpr std::int64_t kOut = 5;  // ceil(9 / 2) with half padding and stride 2

struct ConvNet {
  Variable x = tensor("x", DType::float32, {kBatch, kChannels, kSize, kSize});
  Variable w = tensor("w", DType::float32, {kFilters, kChannels / kGroups, kTaps, kTaps});
  std::vector<Variable> outputs;

  ConvNet() {
    Variable y = conv2d(x, w, {.border_mode = "half", .subsample = {2, 2}, .num_groups = kGroups});
    Variable cost = sum(relu(y));
    auto grads = grad(cost, {x, w});
    outputs = {cost, grads[0], grads[1]};
  }

  // The CorrMM family, whatever else this build could lower to.
  Function compile(const std::string& flags = "") const {
    CompileOptions options;
    options.flags = select_conv_impl_flags("corrmm") + "," + flags;
    return convgraph::compile({x, w}, outputs, options);
  }

  static std::vector<Tensor> args() {
    return {
        testing::random_tensor(DType::float32, {kBatch, kChannels, kSize, kSize}, 1),
        testing::random_tensor(DType::float32, {kFilters, kChannels / kGroups, kTaps, kTaps}, 2)};
  }
};

// 2 * B * M * Ho * Wo * (C / G) * kh * kw, the same for all three directions.
constexpr double kConvFlops =
    2.0 * kBatch * kFilters * kOut * kOut * (kChannels / kGroups) * kTaps * kTaps;

const ProfileRow* find_row(const ProfileReport& report, const std::string& implementation) {
  for (const ProfileRow& row : report.rows) {
    if (row.implementation == implementation) return &row;
  }
  return nullptr;
}

// A fresh, empty directory under the system's temporary directory, removed at scope exit. Named by
// the process too: ctest runs test cases in parallel processes, whose clocks may read alike.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() /
            ("convgraph-profile-test-" + std::to_string(::getpid()) + "-" + std::to_string(stamp) +
             "-" + std::to_string(counter.fetch_add(1)));
    std::filesystem::create_directories(path_);
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t count_events(const nlohmann::json& trace, const std::string& ph,
                         const std::string& cat = "") {
  return static_cast<std::size_t>(std::count_if(
      trace["traceEvents"].begin(), trace["traceEvents"].end(), [&](const nlohmann::json& e) {
        return e.value("ph", "") == ph && (cat.empty() || e.value("cat", "") == cat);
      }));
}

}  // namespace

TEST_CASE("profile: a conv net profiled with profile=True has a row per node", "[profile]") {
  const ConvNet net;
  // Without fusion, so that the elementwise ops stay nodes run by their perform().
  Function f = net.compile("profile=True,optimizer_excluding=fusion");
  REQUIRE(f.profiling());
  const auto args = ConvNet::args();
  constexpr int kCalls = 3;
  for (int i = 0; i < kCalls; ++i) f(args);

  const ProfileReport report = f.profile();
  REQUIRE(report.enabled);
  REQUIRE(report.calls == kCalls);
  REQUIRE(report.rows.size() == f.plan().steps.size());
  REQUIRE(report.rows.size() == f.graph().toposort().size());
  REQUIRE(report.total_ms > 0);
  REQUIRE(report.steps_ms > 0);
  REQUIRE(report.steps_ms <= report.total_ms);
  REQUIRE(report.peak_bytes > 0);
  REQUIRE(report.last_peak_bytes == f.last_peak_bytes());

  double percent = 0, summed_ms = 0;
  std::vector<std::size_t> steps;
  for (std::size_t i = 0; i < report.rows.size(); ++i) {
    const ProfileRow& row = report.rows[i];
    INFO(row.node);
    REQUIRE(row.calls == kCalls);
    REQUIRE(row.total_ms > 0);
    REQUIRE(row.min_ms <= row.ms_per_call());
    REQUIRE(row.ms_per_call() <= row.max_ms);
    REQUIRE_FALSE(row.op.empty());
    REQUIRE(row.node == f.plan().steps[row.step].label);
    if (i > 0) REQUIRE(report.rows[i - 1].total_ms >= row.total_ms);  // longest first
    percent += row.percent;
    summed_ms += row.total_ms;
    steps.push_back(row.step);
  }
  REQUIRE(percent == Approx(100.0));
  REQUIRE(summed_ms == Approx(report.steps_ms));
  std::sort(steps.begin(), steps.end());
  REQUIRE(std::adjacent_find(steps.begin(), steps.end()) == steps.end());  // each node once

  // The convolutions name the implementation the optimizer chose.
  for (const char* implementation : {"CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights"}) {
    INFO(implementation);
    const ProfileRow* row = find_row(report, implementation);
    REQUIRE(row != nullptr);
    REQUIRE(row->node.find(implementation) != std::string::npos);
  }
  // Ops without a concrete implementation run their reference perform().
  const auto relu_row = std::find_if(report.rows.begin(), report.rows.end(),
                                     [](const ProfileRow& r) { return r.op == "Elemwise"; });
  REQUIRE(relu_row != report.rows.end());
  REQUIRE(relu_row->implementation == "perform");

  const std::string table = report.table();
  INFO(table);
  REQUIRE(table.find("GFLOP/s") != std::string::npos);
  REQUIRE(table.find("CorrMM_gradWeights") != std::string::npos);
  REQUIRE(table.find(fmt::format("{} calls", kCalls)) != std::string::npos);
  // One header line and one line per node after the summary's blank line.
  const std::string body = table.substr(table.find("\n\n") + 2);
  REQUIRE(static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n')) ==
          report.rows.size() + 1);
}

TEST_CASE("profile: convolution rows count FLOPs and GFLOP/s", "[profile]") {
  const ConvNet net;
  // Without fusion, so that an Elemwise node shows an op that does not count FLOPs.
  Function f = net.compile("profile=True,optimizer_excluding=fusion");
  const auto args = ConvNet::args();
  f(args);
  f(args);
  const ProfileReport report = f.profile();
  for (const char* implementation : {"CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights"}) {
    INFO(implementation);
    const ProfileRow* row = find_row(report, implementation);
    REQUIRE(row != nullptr);
    REQUIRE(row->flops_per_call.has_value());
    REQUIRE(*row->flops_per_call == Approx(kConvFlops));
    REQUIRE(row->gflops_per_second.has_value());
    REQUIRE(*row->gflops_per_second ==
            Approx(kConvFlops * 2 / (row->total_ms * 1e6)).epsilon(1e-9));
  }
  REQUIRE(report.flops_per_call.has_value());
  REQUIRE(*report.flops_per_call >= 3 * kConvFlops);
  // An op that does not count FLOPs shows none, rather than zero.
  const auto relu_row = std::find_if(report.rows.begin(), report.rows.end(),
                                     [](const ProfileRow& r) { return r.op == "Elemwise"; });
  REQUIRE(relu_row != report.rows.end());
  REQUIRE_FALSE(relu_row->flops_per_call.has_value());
  REQUIRE_FALSE(relu_row->gflops_per_second.has_value());
}

TEST_CASE("profile: AbstractConv counts FLOPs in every direction", "[profile]") {
  const ConvParams p = make_conv_params(2, BorderMode("half"), {2, 2}, true, {}, kGroups);
  const Shape image = {kBatch, kChannels, kSize, kSize};
  const Shape kernel = {kFilters, kChannels / kGroups, kTaps, kTaps};
  const Shape output = {kBatch, kFilters, kOut, kOut};
  const Shape spatial = {2};
  const auto forward = AbstractConv(ConvDirection::forward, p).flops({image, kernel}, {output});
  const auto grad_inputs =
      AbstractConv(ConvDirection::grad_inputs, p).flops({kernel, output, spatial}, {image});
  const auto grad_weights =
      AbstractConv(ConvDirection::grad_weights, p).flops({image, output, spatial}, {kernel});
  REQUIRE(forward.has_value());
  REQUIRE(grad_inputs.has_value());
  REQUIRE(grad_weights.has_value());
  REQUIRE(*forward == Approx(kConvFlops));
  REQUIRE(*grad_inputs == Approx(kConvFlops));
  REQUIRE(*grad_weights == Approx(kConvFlops));
  // Shapes that are not a convolution's give no count instead of a wrong one.
  REQUIRE_FALSE(AbstractConv(ConvDirection::forward, p).flops({image}, {output}).has_value());
  REQUIRE_FALSE(
      AbstractConv(ConvDirection::forward, p).flops({{2, 4}, kernel}, {output}).has_value());
}

TEST_CASE("profile: the Chrome trace is Trace Event Format JSON", "[profile]") {
  const ConvNet net;
  Function f = net.compile("profile=True");
  const auto args = ConvNet::args();
  constexpr int kCalls = 2;
  for (int i = 0; i < kCalls; ++i) f(args);
  const ProfileReport report = f.profile();
  const nlohmann::json trace = nlohmann::json::parse(report.chrome_trace_json());
  REQUIRE(trace.contains("traceEvents"));
  REQUIRE(trace["traceEvents"].is_array());
  const std::size_t steps = f.plan().steps.size();
  REQUIRE(count_events(trace, "X", "call") == kCalls);
  REQUIRE(count_events(trace, "X", "node") == kCalls * steps);
  REQUIRE(count_events(trace, "C") == kCalls * steps);

  std::map<std::string, int> implementations;
  for (const auto& e : trace["traceEvents"]) {
    REQUIRE(e.contains("name"));
    REQUIRE(e.contains("ph"));
    REQUIRE(e["pid"].is_number_integer());
    REQUIRE(e["tid"] == report.trace_thread);
    if (e["ph"] != "X") continue;
    REQUIRE(e["name"].is_string());
    REQUIRE(e["cat"].is_string());
    REQUIRE(e["ts"].is_number());
    REQUIRE(e["dur"].is_number());
    REQUIRE(e["dur"].get<double>() >= 0);
    REQUIRE(e["args"].is_object());
    if (e["cat"] == "node") ++implementations[e["args"]["implementation"].get<std::string>()];
  }
  REQUIRE(implementations["CorrMM"] == kCalls);
  REQUIRE(implementations["CorrMM_gradWeights"] == kCalls);

  // Steps lie inside their call, in plan order.
  std::vector<const nlohmann::json*> calls, nodes;
  for (const auto& e : trace["traceEvents"]) {
    if (e.value("ph", "") != "X") continue;
    (e["cat"] == "call" ? calls : nodes).push_back(&e);
  }
  const double call_start = (*calls[0])["ts"].get<double>();
  const double call_end = call_start + (*calls[0])["dur"].get<double>();
  double previous = call_start;
  for (std::size_t i = 0; i < steps; ++i) {
    const double ts = (*nodes[i])["ts"].get<double>();
    REQUIRE(ts >= previous);
    REQUIRE(ts + (*nodes[i])["dur"].get<double>() <= call_end + 1e-3);
    previous = ts;
  }
}

TEST_CASE("profile: the trace keeps only the most recent calls", "[profile]") {
  const ConvNet net;
  Function f = net.compile();
  // A profiler keeping two calls, handed to the executor directly.
  auto plan = std::make_shared<Plan>(f.plan());
  Profiler profiler(plan, ProfilerOptions{.max_trace_calls = 2});
  const auto args = ConvNet::args();
  for (int i = 0; i < 5; ++i) execute(*plan, args, nullptr, &profiler);
  const ProfileReport report = profiler.report();
  REQUIRE(report.calls == 5);
  REQUIRE(report.recent_calls.size() == 2);
  REQUIRE(report.first_recent_call == 4);
  REQUIRE(report.recent_calls[0].start_ns < report.recent_calls[1].start_ns);
  for (const ProfileRow& row : report.rows) REQUIRE(row.calls == 5);
  const auto trace = nlohmann::json::parse(report.chrome_trace_json());
  REQUIRE(count_events(trace, "X", "call") == 2);

  profiler.reset();
  REQUIRE(profiler.report().calls == 0);
  REQUIRE(profiler.report().recent_calls.empty());
}

TEST_CASE("profile: profile.trace_file is written after each profiled call", "[profile]") {
  const TemporaryDirectory dir;
  const auto path = dir.path() / "trace.json";
  const ConvNet net;
  Function f = net.compile("profile=True,profile.trace_file=" + path.string());
  REQUIRE(f.profile_trace_file() == path.string());
  REQUIRE_FALSE(std::filesystem::exists(path));  // the writability check leaves nothing behind
  const auto args = ConvNet::args();
  f(args);
  REQUIRE(std::filesystem::exists(path));
  auto trace = nlohmann::json::parse(read_file(path));
  REQUIRE(count_events(trace, "X", "call") == 1);
  f(args);
  trace = nlohmann::json::parse(read_file(path));
  REQUIRE(count_events(trace, "X", "call") == 2);
  REQUIRE(count_events(trace, "X", "node") == 2 * f.plan().steps.size());
  // Written through a temporary file that is renamed: nothing else is left in the directory.
  REQUIRE(std::distance(std::filesystem::directory_iterator(dir.path()),
                        std::filesystem::directory_iterator()) == 1);

  // Without profiling the file is not touched.
  std::filesystem::remove(path);
  f.enable_profiling(false);
  f(args);
  REQUIRE_FALSE(std::filesystem::exists(path));
}

TEST_CASE("profile: an unwritable trace file is an error naming the path", "[profile]") {
  const TemporaryDirectory dir;
  const ConvNet net;

  SECTION("a missing directory, at compile time") {
    const auto path = dir.path() / "missing" / "trace.json";
    try {
      net.compile("profile=True,profile.trace_file=" + path.string());
      FAIL("compile accepted an unwritable trace file");
    } catch (const ValueError& e) {
      const std::string message = e.what();
      INFO(message);
      REQUIRE(message.find("profile.trace_file") != std::string::npos);
      REQUIRE(message.find(path.string()) != std::string::npos);
      REQUIRE(message.find("does not exist") != std::string::npos);
    }
  }
  SECTION("a directory, at compile time") {
    try {
      net.compile("profile=True,profile.trace_file=" + dir.path().string());
      FAIL("compile accepted a directory as the trace file");
    } catch (const ValueError& e) {
      const std::string message = e.what();
      INFO(message);
      REQUIRE(message.find(dir.path().string()) != std::string::npos);
      REQUIRE(message.find("is a directory") != std::string::npos);
    }
  }
  SECTION("when profiling starts later") {
    const auto path = dir.path() / "missing" / "trace.json";
    // Not profiling: the path is kept, not checked, and compile succeeds.
    Function f = net.compile("profile.trace_file=" + path.string());
    REQUIRE_FALSE(f.profiling());
    REQUIRE_THROWS_AS(f.enable_profiling(true), ValueError);
    REQUIRE_FALSE(f.profiling());
    f.set_profile_trace_file("");
    f.enable_profiling(true);
    REQUIRE_THROWS_AS(f.set_profile_trace_file(path.string()), ValueError);
    REQUIRE(f.profile_trace_file().empty());
  }
  SECTION("when the directory disappears after compiling") {
    const auto sub = dir.path() / "sub";
    std::filesystem::create_directories(sub);
    Function f = net.compile("profile=True,profile.trace_file=" + (sub / "trace.json").string());
    std::filesystem::remove_all(sub);
    try {
      f(ConvNet::args());
      FAIL("the call did not report the failed trace write");
    } catch (const ValueError& e) {
      const std::string message = e.what();
      INFO(message);
      REQUIRE(message.rfind("profile.trace_file: ", 0) == 0);
      REQUIRE(message.find((sub / "trace.json").string()) != std::string::npos);
    }
    // The call itself completed and was profiled.
    REQUIRE(f.profile().calls == 1);
  }
}

TEST_CASE("profile: without profiling nothing is timed", "[profile]") {
  const ConvNet net;
  Function f = net.compile();
  REQUIRE_FALSE(f.profiling());
  const auto args = ConvNet::args();
  f(args);
  ProfileReport report = f.profile();
  REQUIRE_FALSE(report.enabled);
  REQUIRE(report.calls == 0);
  REQUIRE(report.rows.empty());
  REQUIRE(report.recent_calls.empty());
  REQUIRE(report.table().find("profiling is off") != std::string::npos);
  const auto empty_trace = nlohmann::json::parse(report.chrome_trace_json());
  REQUIRE(count_events(empty_trace, "X") == 0);

  // Switched on for two calls and off again: only those two are counted, and the report says
  // profiling is off now.
  f.enable_profiling();
  f(args);
  f(args);
  f.enable_profiling(false);
  f(args);
  report = f.profile();
  REQUIRE_FALSE(report.enabled);
  REQUIRE(report.calls == 2);
  REQUIRE(report.rows.front().calls == 2);
  REQUIRE(report.table().find("profiling now off") != std::string::npos);

  // Warm-up calls can be forgotten.
  f.reset_profile();
  f.enable_profiling();
  REQUIRE(f.profile().table().find("no call has completed") != std::string::npos);
  f(args);
  REQUIRE(f.profile().calls == 1);
}

TEST_CASE("profile: the values alive at the peak are listed with their producers", "[profile]") {
  // a = x * 2 and b = x * 3 are both alive when c = a + b is computed: the peak is after the
  // add, with the three 4,000-byte buffers alive (the argument is not counted). Without the
  // memory plan: its arena is counted whole from the start of the call.
  const Variable x = tensor("x", DType::float32, {1000});
  const Variable a = x * 2.0;
  const Variable b = x * 3.0;
  const Variable c = a + b;
  Function f =
      compile({x}, {exp(c)},
              {.flags = "profile=True,memory_plan=False,optimizer_excluding=fusion:inplace"});
  f({Tensor::full(DType::float32, {1000}, 1.0)});
  const ProfileReport report = f.profile();
  REQUIRE(report.last_peak_bytes == 12000);
  REQUIRE(report.last_peak_step >= 0);
  const PlanStep& peak_step = f.plan().steps[static_cast<std::size_t>(report.last_peak_step)];
  REQUIRE(peak_step.op_text == "Elemwise{add}");
  REQUIRE(report.last_peak_node == peak_step.label);
  REQUIRE(report.last_peak_values.size() == 3);
  std::int64_t total = 0;
  for (const LiveValue& v : report.last_peak_values) {
    REQUIRE(v.bytes == 4000);
    REQUIRE(v.step <= report.last_peak_step);
    REQUIRE(v.node == f.plan().steps[static_cast<std::size_t>(v.step)].label);
    total += v.bytes;
  }
  REQUIRE(total == report.last_peak_bytes);
  const std::string table = report.memory_table(2);
  REQUIRE(table.find("3 values alive") != std::string::npos);
  REQUIRE(table.find("in 1 more values") != std::string::npos);
  REQUIRE(table.find(peak_step.label) != std::string::npos);
}
