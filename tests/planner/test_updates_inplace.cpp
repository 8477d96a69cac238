// Updates computed into the shared variables' own buffers (updates_inplace=early): the same
// values as an explicit step, never over a value still needed, the documented state after a
// failing call, and a lower peak.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::max_abs_diff;
using convgraph::testing::random_tensor;

namespace {

const char* const kEarly = "updates_inplace=early";

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Function compile_with(const std::vector<Variable>& in, const std::vector<Variable>& out,
                      const std::string& flags, std::vector<Update> updates = {}) {
  CompileOptions options;
  options.flags = flags;
  options.updates = std::move(updates);
  return compile(in, out, options);
}

// The buffer a shared variable holds now (the borrowed handle is dropped at once, so that the
// next call may still take the buffer).
const void* buffer_of(const SharedVariable& v) {
  return v.get_value(true).raw_data();
}

// A small conv net: 3x3 conv + bias + relu, 1x1 conv (its filters have two dims of 1, which a
// fused kernel must not take for broadcast ones), mean of squares.
struct ConvNet {
  Variable x = tensor("x", DType::float32, {2, 3, 8, 8});
  Variable cost;
  std::vector<Variable> params;  // as given: shared variables, or plain inputs

  explicit ConvNet(std::vector<Variable> p) : params(std::move(p)) {
    Variable h = relu(conv2d(x, params[0], {.border_mode = "half"}) +
                      dimshuffle(params[1], {-1, 0, -1, -1}));
    Variable y = conv2d(h, params[2], {.border_mode = "half"});
    cost = mean(y * y);
  }
};

std::vector<Tensor> initial_params() {
  return {random_tensor(DType::float32, {4, 3, 3, 3}, 1, -0.5, 0.5),
          random_tensor(DType::float32, {4}, 2, -0.1, 0.1),
          random_tensor(DType::float32, {5, 4, 1, 1}, 3, -0.5, 0.5)};
}

}  // namespace

TEST_CASE("updates in place: SGD steps of a conv net match an explicit step", "[shared][inplace]") {
  const std::vector<Tensor> init = initial_params();
  std::vector<SharedVariable> shared_params;
  std::vector<Variable> params;
  for (std::size_t i = 0; i < init.size(); ++i) {
    shared_params.push_back(shared("p" + std::to_string(i), init[i]));
    params.push_back(shared_params.back());
  }
  const ConvNet net(params);
  const double rate = 0.05;
  const std::vector<Variable> g = grad(net.cost, params);
  std::vector<Update> updates;
  for (std::size_t i = 0; i < params.size(); ++i) {
    updates.push_back({params[i], params[i] - rate * g[i]});
  }
  Function train = compile_with({net.x}, {net.cost}, kEarly, updates);
  // Every parameter is updated in its own buffer, the bias too, which the forward pass reads
  // through a view (dimshuffle): the view's readers run before its update.
  REQUIRE(train.plan().overwritable_inputs.size() == 3);

  // The explicit step: the same net on plain inputs, returning the new values.
  std::vector<Variable> plain;
  for (std::size_t i = 0; i < init.size(); ++i) {
    StaticShape dims;
    for (const std::int64_t d : init[i].shape()) dims.push_back(d);
    plain.push_back(tensor("q" + std::to_string(i), DType::float32, dims));
  }
  const ConvNet ref(plain);
  const std::vector<Variable> gq = grad(ref.cost, plain);
  std::vector<Variable> outs{ref.cost};
  for (std::size_t i = 0; i < plain.size(); ++i) outs.push_back(plain[i] - rate * gq[i]);
  std::vector<Variable> ins{ref.x};
  ins.insert(ins.end(), plain.begin(), plain.end());
  Function explicit_step = compile(ins, outs);

  std::vector<Tensor> values = init;
  for (int step = 0; step < 4; ++step) {
    CAPTURE(step);
    const Tensor x = random_tensor(DType::float32, {2, 3, 8, 8}, 10 + step);
    std::vector<Tensor> args{x};
    args.insert(args.end(), values.begin(), values.end());
    const std::vector<Tensor> expected = explicit_step(args);
    const void* filters_before = buffer_of(shared_params[0]);
    const Tensor cost = train({x})[0];
    REQUIRE(max_abs_diff(cost, expected[0]) <= 1e-6);
    for (std::size_t i = 0; i < values.size(); ++i) {
      values[i] = expected[1 + i];
      REQUIRE(max_abs_diff(shared_params[i].get_value(), values[i]) <= 1e-6);
    }
    // Written where it was: no new buffer for the filters.
    REQUIRE(buffer_of(shared_params[0]) == filters_before);
  }
}

TEST_CASE("updates in place: a borrowed value keeps the old value and is not written",
          "[shared][inplace]") {
  SharedVariable w = shared("w", Tensor::from_vector<float>({1, 2, 3, 4}, {4}));
  Variable x = tensor("x", DType::float32, {4});
  Function f = compile_with({x}, {sum(x * w)}, kEarly, {{w, w - x}});
  REQUIRE(f.plan().overwritable_inputs.size() == 1);
  const Tensor ones = Tensor::from_vector<float>({1, 1, 1, 1}, {4});

  const Tensor borrowed = w.get_value(true);
  REQUIRE(f({ones})[0].item_double() == 10.0);
  // The caller's handle still sees the old value; the variable has the new one in a new buffer.
  REQUIRE(borrowed.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{0, 1, 2, 3});
  REQUIRE(w.get_value(true).raw_data() != borrowed.raw_data());

  // Nobody holds it now: written in place.
  const void* before = buffer_of(w);
  f({ones});
  REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{-1, 0, 1, 2});
  REQUIRE(buffer_of(w) == before);
  // An argument that is the variable's own buffer is not written either.
  const Tensor own = w.get_value(true);
  const std::vector<float> own_values = own.to_vector<float>();
  f({own});
  REQUIRE(own.to_vector<float>() == own_values);
  REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE("updates in place: a call failing after an update says which variables it wrote",
          "[shared][inplace]") {
  // W's update reads nothing the rest of the call needs, and the memory schedule runs it first
  // (it allocates least); the assert on X runs after it, and V's update after the assert.
  for (const bool early : {true, false}) {
    CAPTURE(early);
    SharedVariable w = shared("w", Tensor::from_vector<float>({5, 5, 5, 5}, {4}));
    SharedVariable v = shared("v", Tensor::from_vector<float>({0}, {1}));
    Variable x = tensor("x", DType::float32, {256, 256});
    Variable checked =
        assert_op(x * 2.0, {gt(min(x), constant(0.0, DType::float32))}, "x must be positive");
    Variable total = sum(checked);
    Function f = compile_with({x}, {total}, early ? kEarly : "",
                              {{w, w - 1.0}, {v, v + dimshuffle(total, {-1})}});
    // The step writing into w's input slot: its in-place update.
    const auto& vars = f.shared_variables();
    const auto w_at = std::find_if(vars.begin(), vars.end(),
                                   [&](const SharedVariable& s) { return s.get() == w.get(); });
    REQUIRE(w_at != vars.end());
    const int w_slot = f.plan().input_slots[1 + static_cast<std::size_t>(w_at - vars.begin())];
    std::size_t update_step = 0, assert_step = 0;
    for (std::size_t i = 0; i < f.plan().steps.size(); ++i) {
      const PlanStep& step = f.plan().steps[i];
      if (step.op_text.starts_with("Assert")) assert_step = i;
      for (const auto& [k, j] : step.inplace) {
        if (step.inputs[static_cast<std::size_t>(j)] == w_slot) update_step = i;
      }
    }
    if (early) {
      REQUIRE(f.plan().overwritable_inputs.size() >= 1);
      REQUIRE(update_step < assert_step);
    }
    f({Tensor::full(DType::float32, {256, 256}, 1.0)});
    REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{4, 4, 4, 4});
    REQUIRE(v.get_value().to_vector<float>() == std::vector<float>{2.0f * 256 * 256});

    const std::string msg = message_of([&] {
      f({Tensor::full(DType::float32, {256, 256}, -1.0)});
    });
    REQUIRE(contains(msg, "x must be positive"));
    CHECK_THROWS_AS(f({Tensor::full(DType::float32, {256, 256}, -1.0)}), AssertionError);
    // V's update never ran: its old value stays in both modes.
    REQUIRE(v.get_value().to_vector<float>() == std::vector<float>{2.0f * 256 * 256});
    if (early) {
      // W was updated in place before the assert failed, on each of the two failing calls; the
      // error says so.
      REQUIRE(contains(msg, "updates_inplace=early"));
      REQUIRE(contains(msg, "'w'"));
      REQUIRE_FALSE(contains(msg, "'v'"));
      REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{2, 2, 2, 2});
    } else {
      // All or nothing: no shared variable changed.
      REQUIRE_FALSE(contains(msg, "updates_inplace"));
      REQUIRE(w.get_value().to_vector<float>() == std::vector<float>{4, 4, 4, 4});
    }
  }
}

namespace {

// A random training-like graph over shared [4, 5] variables S and [4, 5] arguments: elementwise
// ops (broadcast rows included), reductions and views; a few results, and updates of some shared
// variables with random values of the graph (one may read the others' old values).
struct RandomStep {
  std::vector<Variable> args;
  std::vector<Variable> results;
  std::vector<Update> updates;
};

RandomStep random_step(std::uint64_t seed, const std::vector<SharedVariable>& s) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  RandomStep r;
  for (int i = 0; i < 2; ++i) {
    r.args.push_back(tensor("a" + std::to_string(i), DType::float32, {4, 5}));
  }
  std::vector<Variable> full(r.args.begin(), r.args.end());
  for (const SharedVariable& v : s) full.push_back(v);
  std::vector<Variable> rows{sum(full[0], {0}, true)};
  const int nodes = 3 + static_cast<int>(pick(12));
  for (int n = 0; n < nodes; ++n) {
    const Variable a = full[pick(full.size())];
    const Variable b = pick(4) == 0 ? rows[pick(rows.size())] : full[pick(full.size())];
    switch (pick(9)) {
      case 0:
        full.push_back(a + b);
        break;
      case 1:
        full.push_back(a - b * 0.5);
        break;
      case 2:
        full.push_back(a * b);
        break;
      case 3:
        full.push_back(tanh(a));
        break;
      case 4:
        full.push_back(relu(a) + 0.25);
        break;
      case 5:
        full.push_back(transpose(transpose(a) * 0.5));
        break;
      case 6:
        rows.push_back(mean(a, {0}, true));
        break;
      case 7:
        full.push_back(reshape(reshape(a, {Dim(20)}), {Dim(4), Dim(5)}) * 1.5);
        break;
      default:
        full.push_back(where(gt(a, b), a, b));
        break;
    }
  }
  r.results.push_back(sum(full.back()));
  if (pick(2) == 0) r.results.push_back(full[pick(full.size())]);
  for (const SharedVariable& v : s) {
    switch (pick(4)) {
      case 0:
        break;  // not updated
      case 1:
        r.updates.push_back(
            {v, v - 0.1 * full[full.size() - 1 - pick(std::min<std::size_t>(full.size(), 4))]});
        break;
      case 2:
        r.updates.push_back({v, tanh(v) + full[pick(full.size())] * 0.01});
        break;
      default:
        r.updates.push_back({v, full[pick(full.size())] * 0.5 + rows[pick(rows.size())]});
        break;
    }
  }
  return r;
}

}  // namespace

TEST_CASE("updates in place: random graphs agree with the out-of-place and DebugMode runs",
          "[shared][inplace]") {
  const char* const modes[] = {kEarly, "optimizer_excluding=inplace", "mode=DebugMode"};
  std::int64_t overwritable = 0;
  for (std::uint64_t seed = 1; seed <= 120; ++seed) {
    CAPTURE(seed);
    std::vector<std::vector<SharedVariable>> vars(3);
    std::vector<Function> fs;
    for (int m = 0; m < 3; ++m) {
      for (int i = 0; i < 3; ++i) {
        vars[static_cast<std::size_t>(m)].push_back(
            shared("s" + std::to_string(i),
                   random_tensor(DType::float32, {4, 5}, seed * 10 + static_cast<unsigned>(i))));
      }
      const RandomStep step = random_step(seed, vars[static_cast<std::size_t>(m)]);
      fs.push_back(compile_with(step.args, step.results, modes[m], step.updates));
    }
    overwritable += static_cast<std::int64_t>(fs[0].plan().overwritable_inputs.size());
    REQUIRE(fs[1].plan().overwritable_inputs.empty());
    REQUIRE(fs[2].plan().overwritable_inputs.empty());
    for (int call = 0; call < 3; ++call) {
      const std::vector<Tensor> args{
          random_tensor(DType::float32, {4, 5}, seed * 100 + static_cast<unsigned>(call)),
          random_tensor(DType::float32, {4, 5}, seed * 100 + 50 + static_cast<unsigned>(call))};
      const std::vector<Tensor> copies{args[0].clone(), args[1].clone()};
      std::vector<std::vector<Tensor>> got;
      for (Function& f : fs) got.push_back(f(args));
      for (int m = 1; m < 3; ++m) {
        for (std::size_t k = 0; k < got[0].size(); ++k) {
          REQUIRE(max_abs_diff(got[0][k], got[static_cast<std::size_t>(m)][k]) <= 1e-5);
        }
        for (std::size_t i = 0; i < 3; ++i) {
          REQUIRE(max_abs_diff(vars[0][i].get_value(),
                               vars[static_cast<std::size_t>(m)][i].get_value()) <= 1e-5);
        }
      }
      // The arguments are never written.
      for (std::size_t i = 0; i < args.size(); ++i) REQUIRE(max_abs_diff(args[i], copies[i]) == 0);
    }
  }
  // The property is only tested if updates were computed in place.
  REQUIRE(overwritable > 60);
}

TEST_CASE("updates in place: the peak of a training step drops", "[shared][inplace]") {
  // A dense net of 6 layers of 256 x 256 weights on a batch of 4 rows: the weights dwarf the
  // activations. Atomic updates keep each new value (in its gradient's buffer) until the call
  // ends, so the last layers' backward runs beside the first layers' new weights; in place, each
  // gradient dies into its own weight.
  static constexpr std::int64_t kWidth = 256;
  auto build = [](const std::string& flags, std::vector<SharedVariable>& ws) {
    Variable x = tensor("x", DType::float32, {4, kWidth});
    Variable h = x;
    for (int i = 0; i < 6; ++i) {
      ws.push_back(
          shared("w" + std::to_string(i), random_tensor(DType::float32, {kWidth, kWidth},
                                                        40 + static_cast<unsigned>(i), -0.1, 0.1)));
      h = tanh(dot(h, ws.back()));
    }
    Variable cost = mean(h * h);
    const std::vector<Variable> wrt(ws.begin(), ws.end());
    const std::vector<Variable> g = grad(cost, wrt);
    std::vector<Update> updates;
    for (std::size_t i = 0; i < wrt.size(); ++i) updates.push_back({wrt[i], wrt[i] - 0.1 * g[i]});
    return compile_with({x}, {cost}, flags, updates);
  };
  std::vector<SharedVariable> wa, we;
  Function atomic = build("", wa);
  Function early = build(kEarly, we);
  // Read through a view too (the transpose in the backward pass), and still in place.
  REQUIRE(early.plan().overwritable_inputs.size() == 6);
  REQUIRE(atomic.plan().overwritable_inputs.empty());
  const Tensor x = random_tensor(DType::float32, {4, kWidth}, 9);
  for (int call = 0; call < 2; ++call) {
    REQUIRE(max_abs_diff(atomic({x})[0], early({x})[0]) <= 1e-6);
    for (std::size_t i = 0; i < wa.size(); ++i) {
      REQUIRE(max_abs_diff(wa[i].get_value(), we[i].get_value()) <= 1e-6);
    }
  }
  const std::int64_t matrix = kWidth * kWidth * 4;
  INFO("atomic " << atomic.last_peak_bytes() << ", early " << early.last_peak_bytes());
  REQUIRE(early.last_peak_bytes() + 3 * matrix <= atomic.last_peak_bytes());
}
