// The static memory plan (runtime/memory_plan.hpp): its peak against the measured one, results
// against calls without it, re-planning for new input shapes, values whose shape depends on
// input values, results kept across calls, and concurrent calls.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "convgraph/convgraph.hpp"
#include "convgraph/runtime/memory_plan.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

Function compile_with(const std::vector<Variable>& in, const std::vector<Variable>& out,
                      const std::string& flags, std::vector<Update> updates = {}) {
  CompileOptions options;
  options.flags = flags;
  options.updates = std::move(updates);
  return compile(in, out, options);
}

// Equal element for element (NaN equal to NaN), same dtype and shape.
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const std::vector<double> x = a.to_vector<double>();
  const std::vector<double> y = b.to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i])))) return false;
  }
  return true;
}

// A random graph over [4, 5] arguments (and a [1, 5] one): elementwise ops with broadcasting,
// views, reductions, a matrix product and a join; a few values returned, views among them.
struct RandomGraph {
  std::vector<Variable> inputs;
  std::vector<Variable> outputs;
};

RandomGraph random_graph(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  RandomGraph g;
  for (int i = 0; i < 3; ++i) {
    g.inputs.push_back(tensor("a" + std::to_string(i), DType::float32, {4, 5}));
  }
  g.inputs.push_back(tensor("row", DType::float32, {1, 5}));
  std::vector<Variable> full(g.inputs.begin(), g.inputs.begin() + 3);
  std::vector<Variable> rows{g.inputs[3]};
  full.push_back(constant(random_tensor(DType::float32, {4, 5}, seed + 1000)));
  const int nodes = 4 + static_cast<int>(pick(16));
  for (int n = 0; n < nodes; ++n) {
    const Variable a = full[pick(full.size())];
    const Variable b = pick(4) == 0 ? rows[pick(rows.size())] : full[pick(full.size())];
    switch (pick(12)) {
      case 0:
        full.push_back(a + b);
        break;
      case 1:
        full.push_back(a - b);
        break;
      case 2:
        full.push_back(b * a);
        break;
      case 3:
        full.push_back(tanh(a));
        break;
      case 4:
        full.push_back(relu(neg(a)));
        break;
      case 5:
        full.push_back(sigmoid(a) * 2.0);
        break;
      case 6:
        full.push_back(reshape(reshape(a, {Dim(20)}), {Dim(4), Dim(5)}));
        break;
      case 7:
        full.push_back(transpose(transpose(a) * 0.5));
        break;
      case 8:
        rows.push_back(sum(a, {0}, true));
        break;
      case 9:
        full.push_back(dot(a, dot(transpose(a), a)) * 0.01);
        break;
      case 10:
        full.push_back(exp(neg(a * a)));
        break;
      default:
        full.push_back(where(gt(a, b), a, b * b));
        break;
    }
  }
  const int outs = 1 + static_cast<int>(pick(3));
  for (int k = 0; k < outs; ++k) {
    const bool row = pick(5) == 0;
    g.outputs.push_back(row ? rows[pick(rows.size())] : full[full.size() - 1 - pick(3)]);
  }
  return g;
}

std::vector<Tensor> random_args(std::uint64_t seed) {
  std::vector<Tensor> args;
  for (int i = 0; i < 4; ++i) {
    args.push_back(random_tensor(DType::float32, i < 3 ? Shape{4, 5} : Shape{1, 5}, seed + i));
  }
  return args;
}

// No two blocks alive at a common step share a byte; the arena holds every block and is at least
// the plan's lower bound.
void check_placement(const MemoryPlan& mp) {
  for (std::size_t d = 0; d < mp.devices.size(); ++d) {
    CHECK(mp.arena_bytes[d] >= mp.lower_bound_bytes[d]);
  }
  for (std::size_t i = 0; i < mp.blocks.size(); ++i) {
    const MemoryBlock& a = mp.blocks[i];
    CHECK(a.offset + a.bytes <= mp.arena_bytes[static_cast<std::size_t>(a.device)]);
    for (std::size_t j = i + 1; j < mp.blocks.size(); ++j) {
      const MemoryBlock& b = mp.blocks[j];
      if (a.device != b.device || a.last_step < b.first_step || b.last_step < a.first_step) {
        continue;
      }
      const bool apart = a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;
      if (!apart) {
        FAIL_CHECK("blocks " << i << " and " << j << " overlap: [" << a.offset << ", +" << a.bytes
                             << ") steps " << a.first_step << "-" << a.last_step << " and ["
                             << b.offset << ", +" << b.bytes << ") steps " << b.first_step << "-"
                             << b.last_step);
      }
    }
  }
}

std::vector<Tensor> clones(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.clone());
  return out;
}

}  // namespace

TEST_CASE("memory plan: random graphs give the same results with and without it", "[memory_plan]") {
  int planned = 0;
  for (const char* flags : {"", "optimizer_excluding=fusion"}) {
    for (std::uint64_t seed = 1; seed <= 150; ++seed) {
      CAPTURE(flags, seed);
      const RandomGraph g = random_graph(seed);
      Function with = compile_with(g.inputs, g.outputs, flags);
      Function without = compile_with(
          g.inputs, g.outputs, std::string(flags) + (*flags ? "," : "") + "memory_plan=False");
      REQUIRE(with.memory_plan() != nullptr);  // static shapes: planned at compile time
      REQUIRE(with.memory_plans_built() == 1);
      planned += with.memory_plan()->planned_values();
      // No placement needs less than the most the blocks hold at once; none overlaps.
      check_placement(*with.memory_plan());
      REQUIRE(without.memory_plan()->planned_values() == 0);
      // Two calls with different arguments: the first call's results stay what they were.
      const std::vector<Tensor> args1 = random_args(seed * 11);
      const std::vector<Tensor> args2 = random_args(seed * 13);
      const std::vector<Tensor> first = with(args1);
      const std::vector<Tensor> first_copy = clones(first);
      const std::vector<Tensor> second = with(args2);
      const std::vector<Tensor> expected1 = without(args1);
      const std::vector<Tensor> expected2 = without(args2);
      for (std::size_t k = 0; k < first.size(); ++k) {
        REQUIRE(same_values(first[k], expected1[k]));
        REQUIRE(same_values(first[k], first_copy[k]));
        REQUIRE(same_values(second[k], expected2[k]));
      }
      REQUIRE(with.last_plan_misses() == 0);
      // The planned peak is the measured one (every size is static here).
      INFO(with.memory_plan_str() << "\n" << with.str());
      CHECK(with.last_peak_bytes() == with.planned_peak_bytes());
      INFO(without.memory_plan_str());
      CHECK(without.last_peak_bytes() == without.planned_peak_bytes());
    }
  }
  // The property is only tested if values were planned.
  REQUIRE(planned > 300);
}

TEST_CASE("memory plan: a chain in place runs in one block; peak planned equals measured",
          "[memory_plan]") {
  Variable x = tensor("x", DType::float32, {1000, 1000});
  // Without fusion: add and relu write in place into the product's buffer.
  Variable y = relu(x * 2.0 + 1.0);
  Variable z = sum(transpose(y), {0}) + 1.0;  // a view and a reduction after it
  Function f = compile_with({x}, {z}, "optimizer_excluding=fusion");
  Function off = compile_with({x}, {z}, "optimizer_excluding=fusion,memory_plan=False");
  const std::shared_ptr<const MemoryPlan> plan = f.memory_plan();
  REQUIRE(plan != nullptr);
  const std::int64_t one = 1000 * 1000 * 4;
  // The product, its two in-place successors and the transposed view share one block.
  REQUIRE(plan->arena_bytes_on(Device::cpu()) >= one);
  REQUIRE(plan->arena_bytes_on(Device::cpu()) < one + 8192);
  int in_place = 0;
  for (const auto& pairs : plan->inplace) in_place += static_cast<int>(pairs.size());
  REQUIRE(in_place >= 2);
  const Tensor a = random_tensor(DType::float32, {1000, 1000}, 3);
  REQUIRE(same_values(f({a})[0], off({a})[0]));
  REQUIRE(f.last_plan_misses() == 0);
  CHECK(f.planned_peak_bytes() == f.last_peak_bytes());
  CHECK(off.planned_peak_bytes() == off.last_peak_bytes());
  const std::string text = f.memory_plan_str();
  CHECK(text.find("Memory plan on cpu") != std::string::npos);
  CHECK(text.find("shares slot") != std::string::npos);
  CHECK(text.find("a result of the function") != std::string::npos);
}

TEST_CASE("memory plan: a conv net step with updates, workspaces included", "[memory_plan]") {
  const Tensor filters0 = random_tensor(DType::float32, {8, 3, 3, 3}, 3, -0.5, 0.5);
  const Tensor filters1 = random_tensor(DType::float32, {8, 8, 3, 3}, 5, -0.5, 0.5);
  const Tensor bias0 = random_tensor(DType::float32, {8}, 4, -0.1, 0.1);
  for (const char* flags :
       {"", "optimizer_excluding=fusion", "memory_plan=False", "allow_gc=False",
        "optimizer_excluding=onednn", "updates_inplace=atomic", "updates_inplace=early"}) {
    CAPTURE(flags);
    SharedVariable w0 = shared("w0", filters0.clone());
    SharedVariable w1 = shared("w1", filters1.clone());
    SharedVariable b = shared("b", bias0.clone());
    Variable x = tensor("x", DType::float32, {4, 3, 16, 16});
    Variable target = tensor("t", DType::float32, {4, 8, 16, 16});
    Variable h = relu(conv2d(x, w0, {.border_mode = "half"}) + dimshuffle(b, {-1, 0, -1, -1}));
    Variable y = conv2d(h, w1, {.border_mode = "half"});
    Variable loss = mean((y - target) * (y - target));
    const std::vector<Variable> g = grad(loss, {w0, w1, b});
    Function step =
        compile_with({x, target}, {loss}, flags,
                     {{w0, w0 - 0.01 * g[0]}, {w1, w1 - 0.01 * g[1]}, {b, b - 0.01 * g[2]}});
    REQUIRE(step.planned_peak_bytes() > 0);  // known after compile
    if (step.memory_plan() != nullptr) check_placement(*step.memory_plan());
    for (int call = 0; call < 3; ++call) {
      const Tensor images = random_tensor(DType::float32, {4, 3, 16, 16}, 30 + call);
      const Tensor wanted = random_tensor(DType::float32, {4, 8, 16, 16}, 40 + call);
      step({images, wanted});
      CHECK(step.last_plan_misses() == 0);
      CHECK(step.last_peak_bytes() == step.planned_peak_bytes());
    }
    // Updates computed into their variables' buffers take no memory of the plan's: the values
    // of w0, w1 and b are not counted.
    if (std::string(flags) == "updates_inplace=early") {
      const std::string text = step.memory_plan_str();
      std::size_t count = 0;
      for (std::size_t at = text.find("computed into its shared variable's buffer");
           at != std::string::npos;
           at = text.find("computed into its shared variable's buffer", at + 1)) {
        ++count;
      }
      CHECK(count == 3);
    }
  }
}

TEST_CASE("memory plan: updates stay in the arena and are copied into the variables' buffers",
          "[memory_plan]") {
  const Tensor filters0 = random_tensor(DType::float32, {8, 3, 3, 3}, 3, -0.5, 0.5);
  const Tensor filters1 = random_tensor(DType::float32, {8, 8, 3, 3}, 5, -0.5, 0.5);
  const Tensor bias0 = random_tensor(DType::float32, {8}, 4, -0.1, 0.1);
  struct Net {
    SharedVariable w0, w1, b;
    Function step;
  };
  // RETURN_W1: the new value of w1 is also a result of the function.
  auto make = [&](const std::string& flags, bool return_w1) {
    Net n{shared("w0", filters0.clone()), shared("w1", filters1.clone()),
          shared("b", bias0.clone()), Function()};
    Variable x = tensor("x", DType::float32, {4, 3, 16, 16});
    Variable h = relu(conv2d(x, n.w0, {.border_mode = "half"}) + dimshuffle(n.b, {-1, 0, -1, -1}));
    Variable y = conv2d(h, n.w1, {.border_mode = "half"});
    Variable loss = mean(y * y);
    const std::vector<Variable> g = grad(loss, {n.w0, n.w1, n.b});
    Variable new_w1 = n.w1 - 0.01 * g[1];
    std::vector<Variable> outputs{loss};
    if (return_w1) outputs.push_back(new_w1);
    n.step = compile_with({x}, outputs, flags,
                          {{n.w0, n.w0 - 0.01 * g[0]}, {n.w1, new_w1}, {n.b, n.b - 0.01 * g[2]}});
    return n;
  };
  auto images = [](int call) { return random_tensor(DType::float32, {4, 3, 16, 16}, 60 + call); };
  Net reference = make("memory_plan=False", false);
  for (int call = 0; call < 2; ++call) reference.step({images(call)});

  SECTION("new values take the variables' own buffers, planned peak equal to the measured one") {
    Net net = make("", false);
    // Nothing but the loss is allocated at each call: the three new values are in the arena.
    REQUIRE(net.step.memory_plan() != nullptr);
    CHECK(net.step.memory_plan()->allocated_values() == 1);
    CHECK(net.step.memory_plan_str().find("copied into its shared variable") != std::string::npos);
    const void* w0_buffer = net.w0.get_value(true).raw_data();
    const void* b_buffer = net.b.get_value(true).raw_data();
    for (int call = 0; call < 2; ++call) {
      net.step({images(call)});
      CHECK(net.step.last_plan_misses() == 0);
      CHECK(net.step.last_peak_bytes() == net.step.planned_peak_bytes());
    }
    CHECK(net.w0.get_value(true).raw_data() == w0_buffer);
    CHECK(net.b.get_value(true).raw_data() == b_buffer);
    CHECK(same_values(net.w0.get_value(), reference.w0.get_value()));
    CHECK(same_values(net.w1.get_value(), reference.w1.get_value()));
    CHECK(same_values(net.b.get_value(), reference.b.get_value()));
    CHECK_FALSE(same_values(net.w0.get_value(), filters0));
  }
  SECTION("a borrowed value keeps the old value; the variable gets a new buffer") {
    Net net = make("", false);
    net.step({images(0)});
    const Tensor borrowed = net.w1.get_value(true);
    const Tensor before = borrowed.clone();
    net.step({images(1)});
    CHECK(same_values(borrowed, before));
    CHECK(net.w1.get_value(true).raw_data() != borrowed.raw_data());
    CHECK(same_values(net.w1.get_value(), reference.w1.get_value()));
  }
  SECTION("a new value also returned as a result is allocated, and the two do not share") {
    Net net = make("", true);
    REQUIRE(net.step.memory_plan() != nullptr);
    // The loss, and w1's gradient with the new value computed over it.
    CHECK(net.step.memory_plan()->allocated_values() == 3);
    std::vector<Tensor> out;
    for (int call = 0; call < 2; ++call) {
      out = net.step({images(call)});
      CHECK(net.step.last_peak_bytes() == net.step.planned_peak_bytes());
    }
    CHECK(same_values(out[1], reference.w1.get_value()));
    CHECK(same_values(net.w1.get_value(), reference.w1.get_value()));
    CHECK(out[1].raw_data() != net.w1.get_value(true).raw_data());
    CHECK(same_values(net.w0.get_value(), reference.w0.get_value()));
  }
}

TEST_CASE("memory plan: CorrMM's weight and input gradients take their workspaces from the arena",
          "[memory_plan]") {
  // A 1x1 layer over 7x7 positions (CorrMM groups images into one GEMM and, on two threads, keeps
  // partial sums for the second) and a 3x3 one; the input gradients (of both, the image's too)
  // stage their multi-image GEMMs in workspaces.
  for (const char* threads : {"threads=1", "threads=2"}) {
    CAPTURE(threads);
    SharedVariable w1 = shared("w1", random_tensor(DType::float32, {96, 64, 1, 1}, 8, -0.1, 0.1));
    SharedVariable w3 = shared("w3", random_tensor(DType::float32, {32, 96, 3, 3}, 9, -0.1, 0.1));
    Variable x = tensor("x", DType::float32, {8, 64, 7, 7});
    Variable y = conv2d(relu(conv2d(x, w1)), w3, {.border_mode = "half"});
    Variable loss = mean(y * y);
    const std::vector<Variable> g = grad(loss, {w1, w3, x});
    std::vector<Tensor> results[2];
    for (int plan = 0; plan < 2; ++plan) {
      Function step = compile_with(
          {x}, {loss, g[0], g[1], g[2]},
          std::string(threads) + ",conv.impl=corrmm" + (plan == 0 ? ",memory_plan=False" : ""));
      results[plan] = step({random_tensor(DType::float32, {8, 64, 7, 7}, 70)});
      if (plan == 0) continue;
      const std::shared_ptr<const MemoryPlan> mp = step.memory_plan();
      REQUIRE(mp != nullptr);
      check_placement(*mp);
      const std::string text = step.memory_plan_str();
      INFO(text);
      // Each weight and input gradient's step has a workspace in the arena.
      int weight_workspaces = 0, input_workspaces = 0;
      for (std::size_t i = 0; i < step.plan().steps.size(); ++i) {
        const std::string& label = step.plan().steps[i].label;
        const bool weights = label.rfind("CorrMM_gradWeights", 0) == 0;
        const bool inputs = label.rfind("CorrMM_gradInputs", 0) == 0;
        if (!weights && !inputs) continue;
        INFO(label);
        CHECK(mp->workspace_block[i] >= 0);
        CHECK(mp->workspace_bytes[i] > 0);
        ++(weights ? weight_workspaces : input_workspaces);
      }
      CHECK(weight_workspaces == 2);
      CHECK(input_workspaces == 2);
      for (int call = 0; call < 2; ++call) {
        step({random_tensor(DType::float32, {8, 64, 7, 7}, 71 + call)});
        CHECK(step.last_plan_misses() == 0);
        CHECK(step.last_peak_bytes() == step.planned_peak_bytes());
      }
    }
    for (std::size_t k = 0; k < results[0].size(); ++k) {
      CHECK(same_values(results[0][k], results[1][k]));
    }
  }
}

TEST_CASE("memory plan: the same steps and values with it as without it, over SGD steps",
          "[memory_plan]") {
  std::vector<std::vector<float>> losses(2);
  std::vector<Tensor> finals;
  for (int run = 0; run < 2; ++run) {
    SharedVariable w = shared("w", random_tensor(DType::float32, {6, 3, 3, 3}, 7, -0.5, 0.5));
    Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
    Variable y = relu(conv2d(x, w, {.border_mode = "half"}));
    Variable loss = mean(y * y);
    Function step = compile_with({x}, {loss}, run == 0 ? "" : "memory_plan=False",
                                 {{w, w - 0.1 * grad(loss, std::vector<Variable>{w})[0]}});
    for (int i = 0; i < 4; ++i) {
      losses[static_cast<std::size_t>(run)].push_back(
          step({random_tensor(DType::float32, {2, 3, 10, 10}, 50 + i)})[0].item<float>());
    }
    finals.push_back(w.get_value());
  }
  REQUIRE(losses[0] == losses[1]);
  REQUIRE(same_values(finals[0], finals[1]));
}

TEST_CASE("memory plan: a new batch size re-plans once and caches the plan", "[memory_plan]") {
  SharedVariable w = shared("w", random_tensor(DType::float32, {4, 3, 3, 3}, 1, -0.5, 0.5));
  Variable x = tensor("x", DType::float32, {std::nullopt, 3, 8, 8});
  Variable y = relu(conv2d(x, w, {.border_mode = "half"}) * 2.0 + 1.0);
  Variable z = sum(y * y, {1});
  Function f = compile_with({x}, {z}, "");
  Function off = compile_with({x}, {z}, "memory_plan=False");
  REQUIRE(f.memory_plans_built() == 0);  // the batch is unknown until a call
  REQUIRE(f.planned_peak_bytes() == -1);
  auto call = [&](std::int64_t batch, std::uint64_t seed) {
    const Tensor a = random_tensor(DType::float32, {batch, 3, 8, 8}, seed);
    REQUIRE(same_values(f({a})[0], off({a})[0]));
  };
  call(2, 1);  // observed, then planned
  REQUIRE(f.memory_plans_built() == 1);
  const std::shared_ptr<const MemoryPlan> two = f.memory_plan();
  REQUIRE(two->planned_values() > 0);
  call(2, 2);  // planned
  REQUIRE(f.memory_plans_built() == 1);
  CHECK(f.last_plan_misses() == 0);
  INFO(f.memory_plan_str());
  CHECK(f.last_peak_bytes() == f.planned_peak_bytes());
  call(5, 3);
  REQUIRE(f.memory_plans_built() == 2);
  call(5, 4);
  call(5, 5);
  REQUIRE(f.memory_plans_built() == 2);
  CHECK(f.last_peak_bytes() == f.planned_peak_bytes());
  CHECK(f.planned_peak_bytes() > two->peak_bytes_on(Device::cpu()));
  call(2, 6);  // cached
  REQUIRE(f.memory_plans_built() == 2);
  REQUIRE(f.memory_plan() == two);
}

TEST_CASE("memory plan: values whose shape depends on input values are allocated each call",
          "[memory_plan]") {
  Variable x = vector("x", DType::float32);
  Variable n = scalar("n", DType::int64);
  // An Alloc whose length is an input's value, then elementwise work on it.
  Variable filled = alloc(sum(x, {0}) * 0.5, {Dim(n)});
  Variable y = sum(filled * 3.0 + 1.0, {0}) + sum(x * 2.0, {0});
  Function f = compile_with({x, n}, {y}, "optimizer_excluding=fusion");
  Function off = compile_with({x, n}, {y}, "optimizer_excluding=fusion,memory_plan=False");
  const Tensor a = random_tensor(DType::float32, {7}, 1);
  for (const std::int64_t length : {3, 3, 100, 5, 1000}) {
    CAPTURE(length);
    const Tensor len = Tensor::scalar(DType::int64, static_cast<double>(length));
    REQUIRE(same_values(f({a, len})[0], off({a, len})[0]));
  }
  REQUIRE(f.memory_plans_built() == 1);  // one set of input shapes
  const std::string text = f.memory_plan_str();
  CHECK(text.find("its shape depends on input values") != std::string::npos);
  // The values of x's own shape are planned.
  CHECK(f.memory_plan()->planned_values() > 0);
  CHECK_FALSE(f.memory_plan()->peak_exact);
}

TEST_CASE("memory plan: concurrent calls of one function each have their own arena",
          "[memory_plan]") {
  Variable x = tensor("x", DType::float32, {64, 64});
  Variable y = relu(dot(x, x) * 0.5 + 1.0);
  Variable z = sum(tanh(y) * y, {1});
  Function f = compile_with({x}, {z}, "optimizer_excluding=fusion");
  Function off = compile_with({x}, {z}, "optimizer_excluding=fusion,memory_plan=False");
  constexpr int kThreads = 4;
  constexpr int kCalls = 30;
  std::vector<std::vector<Tensor>> args(kThreads), expected(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int c = 0; c < kCalls; ++c) {
      args[t].push_back(random_tensor(DType::float32, {64, 64}, 100 * t + c));
      expected[t].push_back(off({args[t].back()})[0]);
    }
  }
  std::vector<int> wrong(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Function copy = f;  // copies share the plan and its arenas
      for (int c = 0; c < kCalls; ++c) {
        const Function& g = c % 2 == 0 ? f : copy;
        if (!same_values(g({args[t][c]})[0], expected[t][c])) ++wrong[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) CHECK(wrong[t] == 0);
}

TEST_CASE("memory plan: device intermediates go into the device's arena", "[cuda][memory_plan]") {
  testing::require_gpu_or_skip();
  const Device gpu = Device::cuda(0);
  const Variable x = tensor("x", DType::float32, {4, 3, 20, 20});
  const Variable w0 = tensor("w0", DType::float32, {8, 3, 3, 3});
  const Variable w1 = tensor("w1", DType::float32, {8, 8, 3, 3});
  const Variable w2 = tensor("w2", DType::float32, {6, 8, 1, 1});
  // Two intermediates live only on the device, between the three convolutions.
  const Variable y = conv2d(conv2d(conv2d(x, w0, {.border_mode = "half"}), w1), w2);
  const Tensor hx = random_tensor(DType::float32, {4, 3, 20, 20}, 1);
  const Tensor h0 = random_tensor(DType::float32, {8, 3, 3, 3}, 2);
  const Tensor h1 = random_tensor(DType::float32, {8, 8, 3, 3}, 3);
  const Tensor h2 = random_tensor(DType::float32, {6, 8, 1, 1}, 4);
  std::vector<Tensor> expected;
  for (const char* impl : {"", ",optimizer_excluding=conv_dnn"}) {
    CAPTURE(impl);
    for (const char* plan : {"memory_plan=True", "memory_plan=False"}) {
      CAPTURE(plan);
      CompileOptions options;
      options.flags = std::string("device=cuda,") + plan + impl;
      options.inputs_on_device = true;
      options.outputs_on_device = true;
      const Function f = compile({x, w0, w1, w2}, {y}, options);
      const std::vector<Tensor> args{hx.to(gpu), h0.to(gpu), h1.to(gpu), h2.to(gpu)};
      // Known after compile: at least the two intermediates alive at the second convolution.
      const std::int64_t planned = f.planned_peak_bytes(gpu);
      CHECK(planned >= (4 * 8 * 400 + 4 * 8 * 324) * 4);
      for (int call = 0; call < 2; ++call) {
        const Tensor out = f(args).at(0);
        REQUIRE(out.device() == gpu);
        CHECK(f.last_plan_misses() == 0);
        // cuDNN's workspaces are counted in the plan: within 5% of the measured peak. GpuCorrMM
        // takes its column buffers outside the plan (device workspaces in the arena are the GPU
        // networks' work), so the measured peak is only bounded below by the plan's values.
        const auto measured = static_cast<double>(f.last_device_peak_bytes());
        if (std::string(impl).empty()) {
          CHECK(std::abs(measured - static_cast<double>(planned)) <= 0.05 * measured);
        } else {
          CHECK(measured >= static_cast<double>(planned) * 0.95);
        }
        if (expected.empty()) {
          expected.push_back(out.to(Device::cpu()));
        } else {
          REQUIRE_ALLCLOSE(out.to(Device::cpu()), expected[0], 1e-4, 1e-4);
        }
      }
      if (std::string(plan) == "memory_plan=True") {
        CHECK(f.memory_plan_str().find("Memory plan on cuda") != std::string::npos);
      }
    }
  }
}
