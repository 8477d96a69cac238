// convgraph_bench_net: a whole training step of a network, built through the public API as a
// user writes it: parameters are shared variables, the step is one Function computing the loss
// and the gradients and updating every parameter with SGD (CompileOptions::updates).
//
// Networks:
//   resnet50_conv  ResNet-50 with every BatchNorm replaced by the conv's own bias, the max-pool by
//   a
//                  3x3/2 conv (the workload of the shared bench's net.md, step for step as its
//                  PyTorch peer peer_net.py: the same topology, initialisation rule, loss and SGD)
//   mobilenet_conv MobileNet-v1 (width 1.0) with every BatchNorm replaced by a bias: a 3x3/2
//                  stem, 13 depthwise-separable blocks (3x3 depthwise + bias + ReLU, 1x1 + bias +
//                  ReLU), global mean pool, linear 1024 -> 1000, the same loss and SGD; a second,
//                  differently shaped graph (depthwise, few FLOPs per byte) so that nothing is
//                  tuned to one network. tools/peer_net_mobilenet.py is its PyTorch peer.
//
// Reports, as a table and JSON (--out): build, grad and compile times; the first call; the
// median, mean and minimum of the timed steps; the loss of every step; peak memory planned and
// measured: the memory plan's peak of a call (Function::planned_peak_bytes), the executor's
// measured peak (Function::last_peak_bytes) and the process's peak resident memory growth over
// the steps (VmHWM, as peer_net.py measures it). --memory-plan-out writes the plan's text.
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/convgraph.hpp"
#include "convgraph/ops/tensor/fused_elemwise.hpp"
#include "convgraph/runtime/allocator.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif

using namespace convgraph;

using convgraph::bench::cpu_description;
using convgraph::bench::median;
using convgraph::bench::median_ms;
using convgraph::bench::ms_since;

namespace {

using Clock = std::chrono::steady_clock;

// A field of /proc/self/status in bytes (VmHWM, VmRSS); -1 when it cannot be read.
std::int64_t vm_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stoll(line.substr(field.size() + 1)) * 1024;  // "VmHWM:   123456 kB"
    }
  }
  return -1;
}

// Busy jiffies of the whole machine, from /proc/stat's first line, and the total.
std::pair<std::int64_t, std::int64_t> cpu_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  std::int64_t busy = 0, total = 0, v = 0;
  for (int i = 0; i < 8 && (in >> v); ++i) {
    total += v;
    if (i != 3 && i != 4) busy += v;  // not idle, not iowait
  }
  return {busy, total};
}

// The network under construction: its parameters as shared variables, initialised as the peer
// does (He-normal conv filters, fan_in; zero conv biases; the linear layer as PyTorch's default).
class Builder {
 public:
  explicit Builder(std::uint64_t seed) : rng_(seed) {}

  // conv2d (cross-correlation, padding K/2, stride STRIDE, GROUPS groups) + a per-channel bias.
  Variable conv(const Variable& x, std::int64_t in, std::int64_t out, std::int64_t k,
                std::int64_t stride, std::int64_t groups = 1, double scale = 1.0) {
    const std::int64_t fan_in = in / groups * k * k;
    const std::string id = std::to_string(convs_++);
    SharedVariable w =
        shared("w" + id, normal({out, in / groups, k, k}, scale * std::sqrt(2.0 / fan_in)));
    SharedVariable b = shared("b" + id, Tensor::zeros(DType::float32, {out}));
    params_.push_back(w);
    params_.push_back(b);
    flops_ += 2.0 * static_cast<double>(out * (in / groups) * k * k) * out_hw(x, k, stride);
    const Variable y = conv2d(x, w,
                              {.filter_shape = {out, in / groups, k, k},
                               .border_mode = k / 2,
                               .subsample = {stride, stride},
                               .filter_flip = false,
                               .num_groups = groups});
    return y + dimshuffle(b, {-1, 0, -1, -1});
  }

  // Linear layer IN -> OUT with bias (PyTorch's default initialisation: uniform in
  // +-1/sqrt(IN) for both).
  Variable linear(const Variable& x, std::int64_t in, std::int64_t out) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    SharedVariable w = shared("wfc", uniform({in, out}, bound));
    SharedVariable b = shared("bfc", uniform({out}, bound));
    params_.push_back(w);
    params_.push_back(b);
    flops_ += 2.0 * static_cast<double>(in * out);
    return dot(x, w) + dimshuffle(b, {-1, 0});
  }

  const std::vector<SharedVariable>& params() const { return params_; }
  int convs() const { return convs_; }
  // Forward FLOPs of one image (2 x MACs of the convolutions and the linear layer).
  double forward_flops_per_image() const { return flops_; }

 private:
  // Output pixels of a K x K, stride-STRIDE, pad-K/2 convolution of X (whose static H, W are
  // known).
  static double out_hw(const Variable& x, std::int64_t k, std::int64_t stride) {
    const auto& dims = x.type().dims;
    const std::int64_t h = *dims[2];
    const std::int64_t w = *dims[3];
    const std::int64_t ho = (h + 2 * (k / 2) - k) / stride + 1;
    const std::int64_t wo = (w + 2 * (k / 2) - k) / stride + 1;
    return static_cast<double>(ho * wo);
  }

  Tensor normal(const Shape& shape, double stddev) {
    std::normal_distribution<float> dist(0.0f, static_cast<float>(stddev));
    std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
    for (float& e : v) e = dist(rng_);
    return Tensor::from_vector(v, shape);
  }

  Tensor uniform(const Shape& shape, double bound) {
    std::uniform_real_distribution<float> dist(static_cast<float>(-bound),
                                               static_cast<float>(bound));
    std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
    for (float& e : v) e = dist(rng_);
    return Tensor::from_vector(v, shape);
  }

  std::mt19937 rng_;
  std::vector<SharedVariable> params_;
  int convs_ = 0;
  double flops_ = 0;
};

struct Network {
  Variable x, target, loss;
  std::vector<SharedVariable> params;
  int convs = 0;
  double forward_flops_per_image = 0;
};

// ResNet-50 v1.5 without BatchNorm (net.md): stem 7x7/2 and 3x3/2, bottlenecks [3, 4, 6, 3], the
// stride on the 3x3, projection shortcuts where the shape changes, the last conv of each
// residual branch scaled by 1/sqrt(16).
Network resnet50_conv(std::int64_t batch, std::int64_t image) {
  Builder b(0);
  Network net;
  net.x = tensor("x", DType::float32, {batch, 3, image, image});
  net.target = tensor("target", DType::float32, {batch, 1000});
  Variable h = relu(b.conv(net.x, 3, 64, 7, 2));
  h = relu(b.conv(h, 64, 64, 3, 2));
  const int layers[] = {3, 4, 6, 3};
  const double branch_scale = 1.0 / std::sqrt(16.0);
  std::int64_t channels = 64;
  for (int stage = 0; stage < 4; ++stage) {
    const std::int64_t width = std::int64_t{64} << stage;
    for (int block = 0; block < layers[stage]; ++block) {
      const std::int64_t stride = (block == 0 && stage > 0) ? 2 : 1;
      const std::int64_t out = width * 4;
      Variable y = relu(b.conv(h, channels, width, 1, 1));
      y = relu(b.conv(y, width, width, 3, stride));
      y = b.conv(y, width, out, 1, 1, 1, branch_scale);
      const Variable shortcut =
          (stride != 1 || channels != out) ? b.conv(h, channels, out, 1, stride) : h;
      h = relu(y + shortcut);
      channels = out;
    }
  }
  const Variable logits = b.linear(mean(h, {2, 3}), channels, 1000);
  net.loss = mean_squared_error(logits, net.target);
  net.params = b.params();
  net.convs = b.convs();
  net.forward_flops_per_image = b.forward_flops_per_image();
  return net;
}

// MobileNet-v1 without BatchNorm: 3x3/2 stem (3 -> 32), then depthwise-separable blocks.
Network mobilenet_conv(std::int64_t batch, std::int64_t image) {
  Builder b(0);
  Network net;
  net.x = tensor("x", DType::float32, {batch, 3, image, image});
  net.target = tensor("target", DType::float32, {batch, 1000});
  Variable h = relu(b.conv(net.x, 3, 32, 3, 2));
  struct Block {
    std::int64_t out, stride;
  };
  const Block blocks[] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},  {512, 2}, {512, 1},
                          {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
  std::int64_t channels = 32;
  for (const Block& blk : blocks) {
    h = relu(b.conv(h, channels, channels, 3, blk.stride, channels));  // depthwise
    h = relu(b.conv(h, channels, blk.out, 1, 1));                      // pointwise
    channels = blk.out;
  }
  const Variable logits = b.linear(mean(h, {2, 3}), channels, 1000);
  net.loss = mean_squared_error(logits, net.target);
  net.params = b.params();
  net.convs = b.convs();
  net.forward_flops_per_image = b.forward_flops_per_image();
  return net;
}

Tensor random_normal(const Shape& shape, std::uint64_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (float& e : v) e = dist(rng);
  return Tensor::from_vector(v, shape);
}

// The values alive at the peak of the last profiled call, by kind: forward values still held
// (the loss depends on them: activations saved for the backward pass), gradients of the
// parameters (read by an update), the updates' new values, and the other backward values
// (gradients of activations and temporaries); then the biggest values.
void print_peak_breakdown(const Function& f) {
  const Plan& plan = f.plan();
  const ProfileReport report = f.profile();
  std::vector<int> producer(static_cast<std::size_t>(plan.num_slots), -1);
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    for (int s : plan.steps[i].outputs) producer[static_cast<std::size_t>(s)] = static_cast<int>(i);
  }
  const std::size_t num_updates = plan.updates.size();
  const std::size_t first_update = plan.output_slots.size() - num_updates;
  std::vector<bool> update_value(producer.size(), false), param_grad(producer.size(), false),
      forward(producer.size(), false);
  std::vector<bool> is_input(producer.size(), false);
  for (int s : plan.input_slots) is_input[static_cast<std::size_t>(s)] = true;
  for (std::size_t k = first_update; k < plan.output_slots.size(); ++k) {
    const int s = plan.output_slots[k];
    update_value[static_cast<std::size_t>(s)] = true;
    const int p = producer[static_cast<std::size_t>(s)];
    if (p < 0) continue;
    for (int in : plan.steps[static_cast<std::size_t>(p)].inputs) {
      if (!is_input[static_cast<std::size_t>(in)]) param_grad[static_cast<std::size_t>(in)] = true;
    }
  }
  // Ancestors of the caller's results (the loss).
  std::vector<int> stack;
  for (std::size_t k = 0; k < first_update; ++k) stack.push_back(plan.output_slots[k]);
  while (!stack.empty()) {
    const int s = stack.back();
    stack.pop_back();
    if (forward[static_cast<std::size_t>(s)]) continue;
    forward[static_cast<std::size_t>(s)] = true;
    const int p = producer[static_cast<std::size_t>(s)];
    if (p >= 0) {
      for (int in : plan.steps[static_cast<std::size_t>(p)].inputs) stack.push_back(in);
    }
  }
  std::int64_t by_kind[4] = {0, 0, 0, 0};
  int count[4] = {0, 0, 0, 0};
  const char* names[4] = {"forward values (saved for backward)", "parameter gradients",
                          "updates' new values", "other backward values"};
  for (const LiveValue& v : report.last_peak_values) {
    const auto s = static_cast<std::size_t>(v.slot);
    const int kind = update_value[s] ? 2 : param_grad[s] ? 1 : forward[s] ? 0 : 3;
    by_kind[kind] += v.bytes;
    ++count[kind];
  }
  std::printf("  peak after step %lld of %zu: %s\n", static_cast<long long>(report.last_peak_step),
              plan.steps.size(), report.last_peak_node.c_str());
  for (int k = 0; k < 4; ++k) {
    std::printf("    %-40s %4d values %9.1f MiB\n", names[k], count[k],
                static_cast<double>(by_kind[k]) / (1 << 20));
  }
  std::printf("%s", report.memory_table(25).c_str());
  // Updates computed into new buffers (all of them with updates_inplace=atomic).
  std::vector<bool> input_slot(producer.size(), false);
  for (int s : plan.input_slots) input_slot[static_cast<std::size_t>(s)] = true;
  int into_own = 0;
  std::vector<std::string> others;
  for (std::size_t k = first_update; k < plan.output_slots.size(); ++k) {
    const int p = producer[static_cast<std::size_t>(plan.output_slots[k])];
    if (p < 0) continue;
    const PlanStep& st = plan.steps[static_cast<std::size_t>(p)];
    bool own = false;
    for (const auto& [o, i] : st.inplace) {
      own = own || input_slot[static_cast<std::size_t>(st.inputs[static_cast<std::size_t>(i)])];
    }
    if (own) {
      ++into_own;
    } else if (others.size() < 8) {
      others.push_back(st.label);
    }
  }
  // Values computed and never read (a fused node's output nobody needs, say).
  std::vector<int> reads(producer.size(), 0);
  for (const PlanStep& st : plan.steps) {
    for (int in : st.inputs) ++reads[static_cast<std::size_t>(in)];
  }
  for (int s : plan.output_slots) ++reads[static_cast<std::size_t>(s)];
  int unread = 0;
  for (const PlanStep& st : plan.steps) {
    for (int out : st.outputs) unread += reads[static_cast<std::size_t>(out)] == 0 ? 1 : 0;
  }
  std::printf("  %d step outputs are never read\n", unread);
  std::printf("  %d of %zu updates computed into their shared variable's buffer%s\n", into_own,
              num_updates, others.empty() ? "" : "; others, e.g.:");
  for (const std::string& label : others) std::printf("    %s\n", label.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convgraph_bench_net: a whole training step (forward, gradients, SGD update)"};
  std::string net_name = "resnet50_conv", flags, out;
  std::int64_t batch = 8, image = 224, threads = 2;
  int steps = 5, warmup = 2;
  double lr = 0.01;
  app.add_option("--net", net_name, "resnet50_conv or mobilenet_conv")
      ->check(CLI::IsMember({"resnet50_conv", "mobilenet_conv"}));
  app.add_option("--batch", batch, "batch size N")->check(CLI::PositiveNumber);
  app.add_option("--image-size", image, "input height and width")->check(CLI::Range(32, 4096));
  app.add_option("--steps", steps, "timed steps (the median is reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps before them (the first is reported)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "CPU threads (the threads flag)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr", lr, "SGD learning rate");
  app.add_option("--flags", flags, "compile flags on top of the defaults (k=v,k=v)");
  app.add_option("--out", out, "write the results here (JSON)");
  std::string ab_flags;
  app.add_option("--ab-flags", ab_flags,
                 "compile the step a second time with these flags added (k=v,k=v) and alternate "
                 "the two in the timed steps (A B, B A, ...): each gets its median and the pairs "
                 "their ratio, in one process (a noisy machine's drift hits both alike)");
  int profile_steps = 0;
  std::string profile_out;
  app.add_option("--profile", profile_steps,
                 "after the timed steps, profile this many more and print the per-node table")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--profile-out", profile_out, "write that table here instead of stdout");
  bool peak_breakdown = false;
  app.add_flag("--peak-breakdown", peak_breakdown,
               "profile one more step and list the values alive at its peak, by kind");
  std::string memory_plan_out;
  app.add_option("--memory-plan-out", memory_plan_out,
                 "write the memory plan (Function::memory_plan_str) here");
  std::string onednn_layout_policy = "automatic";
  app.add_option("--onednn-layout", onednn_layout_policy,
                 "oneDNN's layout policy: automatic (per layer, what measured faster), blocked or "
                 "plain (set_onednn_layout)")
      ->check(CLI::IsMember({"automatic", "blocked", "plain"}));
  CLI11_PARSE(app, argc, argv);
#if CONVGRAPH_HAVE_ONEDNN
  set_onednn_layout(onednn_layout_policy == "blocked" ? OneDnnLayout::blocked
                    : onednn_layout_policy == "plain" ? OneDnnLayout::plain
                                                      : OneDnnLayout::automatic);
#endif

  try {
    std::string all_flags = fmt::format("threads={}", threads);
    if (!flags.empty()) all_flags += "," + flags;

    const auto t_build = Clock::now();
    const Network net =
        net_name == "resnet50_conv" ? resnet50_conv(batch, image) : mobilenet_conv(batch, image);
    const double build_ms = ms_since(t_build);

    std::vector<Variable> wrt(net.params.begin(), net.params.end());
    const auto t_grad = Clock::now();
    const std::vector<Variable> grads = grad(net.loss, wrt);
    const double grad_ms = ms_since(t_grad);

    CompileOptions options;
    options.flags = all_flags;
    for (std::size_t i = 0; i < wrt.size(); ++i) {
      options.updates.push_back({wrt[i], wrt[i] - grads[i] * lr});
    }
    // Code generation happens inside compile (the fusion pass prepares its kernels for the
    // static shapes) and, for shapes known only at run time, in the first call.
    auto& counters = codegen::codegen_counters();
    auto codegen_ms = [&] { return static_cast<double>(counters.generation_ns.load()) * 1e-6; };
    const double codegen0 = codegen_ms();
    const std::int64_t generated0 = counters.llvm_compilations.load();
    const std::int64_t loaded0 = counters.disk_hits.load();
    const auto t_compile = Clock::now();
    Function step = compile({net.x, net.target}, {net.loss}, options);
    const double compile_ms = ms_since(t_compile);
    const double compile_codegen_ms = codegen_ms() - codegen0;
    // The second variant of --ab-flags: the same graph and shared variables (both update them).
    const std::string b_flags = ab_flags.empty() ? "" : all_flags + "," + ab_flags;
    std::optional<Function> step_b;
    if (!ab_flags.empty()) {
      CompileOptions options_b = options;
      options_b.flags = b_flags;
      step_b.emplace(compile({net.x, net.target}, {net.loss}, options_b));
    }
    const std::int64_t kernels_generated = counters.llvm_compilations.load() - generated0;
    const std::int64_t kernels_loaded = counters.disk_hits.load() - loaded0;
    // The fused nodes and the back ends their kernels run on (the interpreter in a build without
    // LLVM, where nothing is generated).
    std::int64_t fused_nodes = 0;
    std::vector<std::string> fused_backends;
    for (Node* n : step.graph().toposort()) {
      const auto* fused = dynamic_cast<const FusedElemwise*>(n->op.get());
      if (fused == nullptr) continue;
      ++fused_nodes;
      const std::string backend(codegen::fused_backend_name(fused->backend()));
      if (std::find(fused_backends.begin(), fused_backends.end(), backend) ==
          fused_backends.end()) {
        fused_backends.push_back(backend);
      }
    }
    const std::string fused_backend = fused_backends.empty()
                                          ? std::string("none")
                                          : fmt::format("{}", fmt::join(fused_backends, "+"));

    const Tensor x = random_normal({batch, 3, image, image}, 1234);
    const Tensor target = random_normal({batch, 1000}, 1235);
    std::int64_t param_count = 0;
    for (const SharedVariable& p : net.params) param_count += p.get_value(true).numel();

    cpu_allocator().reset_peak();
    const AllocatorStats alloc_before = cpu_allocator().stats();
    const std::int64_t hwm_before = vm_status_bytes("VmHWM");
    std::vector<double> losses, warm_ms;
    for (int i = 0; i < warmup; ++i) {
      const auto t0 = Clock::now();
      losses.push_back(step({x, target})[0].item_double());
      warm_ms.push_back(ms_since(t0));
      std::fprintf(stderr, "warm-up step %d: %.1f ms, loss %.6g\n", i, warm_ms.back(),
                   losses.back());
    }
    for (int i = 0; step_b && i < warmup; ++i) (*step_b)({x, target});
    const double first_call_codegen_ms = codegen_ms() - codegen0 - compile_codegen_ms;
    const auto jiffies0 = cpu_jiffies();
    rusage usage0{};
    getrusage(RUSAGE_SELF, &usage0);
    std::vector<double> step_ms, b_ms;
    for (int i = 0; i < steps; ++i) {
      // With --ab-flags each pair runs both, in turns first (A B, then B A).
      const bool b_first = step_b && i % 2 == 1;
      for (int part = 0; part < (step_b ? 2 : 1); ++part) {
        const auto t0 = Clock::now();
        if (b_first == (part == 0) && step_b) {
          (*step_b)({x, target});
          b_ms.push_back(ms_since(t0));
        } else {
          losses.push_back(step({x, target})[0].item_double());
          step_ms.push_back(ms_since(t0));
        }
      }
    }
    rusage usage1{};
    getrusage(RUSAGE_SELF, &usage1);
    const auto jiffies1 = cpu_jiffies();
    const std::int64_t hwm_after = vm_status_bytes("VmHWM");
    // The machine's busy time beyond this process's own during the timed steps, in cores.
    auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6;
    };
    const double own_cpu_s = seconds(usage1.ru_utime) + seconds(usage1.ru_stime) -
                             seconds(usage0.ru_utime) - seconds(usage0.ru_stime);
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double busy_s = static_cast<double>(jiffies1.first - jiffies0.first) / ticks;
    const double wall_s = std::accumulate(step_ms.begin(), step_ms.end(), 0.0) * 1e-3;
    const double foreign_load = wall_s > 0 ? std::max(0.0, busy_s - own_cpu_s) / wall_s : 0.0;

    const double med = median(step_ms);
    const double step_flops = 3.0 * net.forward_flops_per_image * static_cast<double>(batch);
    const bool finite =
        std::all_of(losses.begin(), losses.end(), [](double v) { return std::isfinite(v); });
    std::printf("%s, N=%lld, %lldx%lld, %lld threads, flags '%s'\n  CPU: %s\n", net_name.c_str(),
                static_cast<long long>(batch), static_cast<long long>(image),
                static_cast<long long>(image), static_cast<long long>(threads), all_flags.c_str(),
                cpu_description().c_str());
    std::printf(
        "  %d convolutions, %lld parameters in %zu tensors, %zu nodes after optimization (%lld "
        "fused, kernels on: %s)\n",
        net.convs, static_cast<long long>(param_count), net.params.size(), step.graph().num_nodes(),
        static_cast<long long>(fused_nodes), fused_backend.c_str());
    // With --warmup 0 the first call is a timed step: there is no separate figure.
    const std::string first_step =
        warm_ms.empty() ? "not measured (--warmup 0)" : fmt::format("{:.1f} ms", warm_ms[0]);
    std::printf(
        "  build %.1f ms, grad %.1f ms, compile %.1f ms (optimize %.1f, codegen %.1f: %lld kernels "
        "generated, %lld loaded from the disk cache), first step %s (codegen %.1f)\n",
        build_ms, grad_ms, compile_ms, compile_ms - compile_codegen_ms, compile_codegen_ms,
        static_cast<long long>(kernels_generated), static_cast<long long>(kernels_loaded),
        first_step.c_str(), first_call_codegen_ms);
    std::printf(
        "  step: median %.1f ms (min %.1f, max %.1f over %d), %.2f images/s, %.1f GFLOP/s\n", med,
        *std::min_element(step_ms.begin(), step_ms.end()),
        *std::max_element(step_ms.begin(), step_ms.end()), steps,
        static_cast<double>(batch) / (med * 1e-3), step_flops / (med * 1e-3) / 1e9);
    const std::int64_t planned = step.planned_peak_bytes();
    std::printf(
        "  peak memory: planned %.3f GiB (arena %.3f GiB), measured %.3f GiB (executor), process "
        "growth (VmHWM) %.3f GiB; foreign load %.2f\n",
        static_cast<double>(planned) / (1 << 30),
        step.memory_plan()
            ? static_cast<double>(step.memory_plan()->arena_bytes_on(Device::cpu())) / (1 << 30)
            : 0.0,
        static_cast<double>(step.last_peak_bytes()) / (1 << 30),
        static_cast<double>(hwm_after - hwm_before) / (1 << 30), foreign_load);
    const AllocatorStats alloc_after = cpu_allocator().stats();
    const double gib = 1 << 30;
    std::printf(
        "  CPU allocator over the steps: peak in use %.3f GiB (%.3f before them), %.3f GiB "
        "cached now, %llu of %llu allocations from the cache\n",
        static_cast<double>(alloc_after.peak_bytes_in_use) / gib,
        static_cast<double>(alloc_before.bytes_in_use) / gib,
        static_cast<double>(alloc_after.bytes_cached) / gib,
        static_cast<unsigned long long>(alloc_after.cache_hits - alloc_before.cache_hits),
        static_cast<unsigned long long>(alloc_after.allocations - alloc_before.allocations));
    std::printf("  loss %.6g -> %.6g%s\n", losses.front(), losses.back(),
                finite ? "" : " (NOT FINITE)");
    std::vector<double> pair_ratios;
    for (std::size_t i = 0; i < b_ms.size(); ++i) pair_ratios.push_back(b_ms[i] / step_ms[i]);
    if (step_b) {
      std::printf(
          "  A/B: B adds '%s': median A %.1f ms, B %.1f ms, B/A %.3f (pairs %.3f-%.3f over %d; "
          "above 1: B slower); the figures above are A's, memory the process's\n",
          ab_flags.c_str(), med, median(b_ms), median(b_ms) / med,
          *std::min_element(pair_ratios.begin(), pair_ratios.end()),
          *std::max_element(pair_ratios.begin(), pair_ratios.end()), steps);
    }

    if (!memory_plan_out.empty()) {
      std::ofstream f(memory_plan_out);
      f << step.memory_plan_str();
      if (!f) throw ValueError("cannot write " + memory_plan_out);
    }

    if (profile_steps > 0) {
      // Profiled separately: reading the clock per node must not touch the timed steps.
      step.enable_profiling();
      for (int i = 0; i < profile_steps; ++i) step({x, target});
      step.enable_profiling(false);
      const std::string table = step.profile().table();
      if (profile_out.empty()) {
        std::printf("%s\n", table.c_str());
      } else {
        std::ofstream f(profile_out);
        f << table;
        if (!f) throw ValueError("cannot write " + profile_out);
      }
    }

    if (peak_breakdown) {
      std::vector<const void*> buffers;
      for (const SharedVariable& p : net.params) buffers.push_back(p.get_value(true).raw_data());
      step.reset_profile();
      step.enable_profiling();
      step({x, target});
      step.enable_profiling(false);
      print_peak_breakdown(step);
      int kept = 0;
      std::vector<std::string> moved;
      for (std::size_t i = 0; i < buffers.size(); ++i) {
        const bool same = net.params[i].get_value(true).raw_data() == buffers[i];
        kept += same ? 1 : 0;
        if (!same && moved.size() < 8) moved.push_back(net.params[i].label());
      }
      std::printf(
          "  %d of %zu parameters kept their buffer over that step%s %s\n", kept, buffers.size(),
          moved.empty() ? "" : "; not, e.g.:", fmt::format("{}", fmt::join(moved, ", ")).c_str());
    }

    if (!out.empty()) {
      nlohmann::json j = {
          {"net", net_name},
          {"batch", batch},
          {"image_size", image},
          {"threads", threads},
          {"cpu", cpu_description()},
          {"flags", all_flags},
          {"convs", net.convs},
          {"params", param_count},
          {"nodes", step.graph().num_nodes()},
          {"fused_nodes", fused_nodes},
          {"fused_backend", fused_backend},
          {"build_ms", build_ms},
          {"grad_ms", grad_ms},
          {"compile_ms", compile_ms},
          {"compile_optimize_ms", compile_ms - compile_codegen_ms},
          {"compile_codegen_ms", compile_codegen_ms},
          {"kernels_generated", kernels_generated},
          {"kernels_loaded_from_disk", kernels_loaded},
          {"first_call_codegen_ms", first_call_codegen_ms},
          {"first_step_ms", warm_ms.empty() ? nullptr : nlohmann::json(warm_ms[0])},
          {"warmup_step_ms", warm_ms},
          {"step_ms_all", step_ms},
          {"step_ms_median", med},
          {"step_ms_min", *std::min_element(step_ms.begin(), step_ms.end())},
          {"images_per_s", static_cast<double>(batch) / (med * 1e-3)},
          {"flops_step", step_flops},
          {"executor_peak_bytes", step.last_peak_bytes()},
          {"planned_peak_bytes", planned},
          {"planned_arena_bytes",
           step.memory_plan() ? step.memory_plan()->arena_bytes_on(Device::cpu()) : -1},
          {"memory_plans_built", step.memory_plans_built()},
          {"peak_mem_bytes", hwm_after - hwm_before},
          {"vmhwm_before_bytes", hwm_before},
          {"vmhwm_after_bytes", hwm_after},
          {"losses", losses},
          {"finite", finite},
          {"foreign_cpu_load", foreign_load},
      };
      if (step_b) {
        j["ab_flags"] = b_flags;
        j["ab_step_ms_all"] = b_ms;
        j["ab_step_ms_median"] = median(b_ms);
        j["ab_pair_ratios"] = pair_ratios;
        j["ab_ratio_of_medians"] = median(b_ms) / med;
      }
      std::ofstream f(out);
      f << j.dump(1) << "\n";
      if (!f) throw ValueError("cannot write " + out);
    }
    return finite ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convgraph_bench_net: %s\n", e.what());
    return 1;
  }
}
