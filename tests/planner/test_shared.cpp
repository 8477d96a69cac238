// Shared variables and updates (graph/shared.hpp, CompileOptions::updates): values that live with
// their variables, read by compiled functions without being passed, and replaced after a call.
#include <functional>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

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

std::vector<double> values(const Tensor& t) {
  return t.to_vector<double>();
}

// A - RATE * B, elementwise, on the host.
Tensor sgd_step(const Tensor& a, const Tensor& b, double rate) {
  std::vector<double> out = values(a);
  const std::vector<double> g = values(b);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] -= rate * g[i];
  return Tensor::from_vector<double>(out, a.shape());
}

}  // namespace

TEST_CASE("shared: an SGD step on a linear model matches an explicit step", "[shared]") {
  const Tensor w0 = random_tensor(DType::float64, {3}, 1);
  const Tensor b0 = Tensor::scalar(DType::float64, 0.25);
  SharedVariable w = shared("w", w0);
  SharedVariable b = shared("b", b0);
  Variable X = matrix("X", DType::float64);
  Variable y = vector("y", DType::float64);
  Variable error = dot(X, w) + b - y;
  Variable cost = mean(error * error);
  const std::vector<Variable> g = grad(cost, {w, b});
  const double rate = 0.1;
  Function train =
      compile({X, y}, {cost}, {.updates = {{w, w - rate * g[0]}, {b, b - rate * g[1]}}});

  // The same model with plain inputs: the explicit step.
  Variable wv = tensor("wv", DType::float64, {3});
  Variable bv = scalar("bv", DType::float64);
  Variable error_v = dot(X, wv) + bv - y;
  Variable cost_v = mean(error_v * error_v);
  const std::vector<Variable> g_v = grad(cost_v, {wv, bv});
  Function gradients = compile({X, y, wv, bv}, {cost_v, g_v[0], g_v[1]});

  Tensor w_ref = w0;
  Tensor b_ref = b0;
  for (int step = 0; step < 5; ++step) {
    const Tensor xs = random_tensor(DType::float64, {8, 3}, 10 + step);
    const Tensor ys = random_tensor(DType::float64, {8}, 20 + step);
    const std::vector<Tensor> expected = gradients({xs, ys, w_ref, b_ref});
    const std::vector<Tensor> out = train({xs, ys});
    REQUIRE(out.size() == 1);  // the updates' values are not results
    // The cost is computed from the values before the step.
    REQUIRE_ALLCLOSE(out[0], expected[0], 1e-12, 1e-12);
    w_ref = sgd_step(w_ref, expected[1], rate);
    b_ref = sgd_step(b_ref, expected[2], rate);
    REQUIRE_ALLCLOSE(w.get_value(), w_ref, 1e-12, 1e-12);
    REQUIRE_ALLCLOSE(b.get_value(), b_ref, 1e-12, 1e-12);
  }
  // The steps did move the weights.
  CHECK(testing::max_abs_diff(w.get_value(), w0) > 1e-3);
}

TEST_CASE("shared: updates see the values from before the call, so {a, b}, {b, a} swaps",
          "[shared]") {
  SharedVariable a = shared("a", Tensor::from_vector<float>({1, 2}, {2}));
  SharedVariable b = shared("b", Tensor::from_vector<float>({3, 4}, {2}));
  Function swap = compile({}, {}, {.updates = {{a, b}, {b, a}}});
  REQUIRE(swap({}).empty());
  CHECK(values(a.get_value()) == std::vector<double>{3, 4});
  CHECK(values(b.get_value()) == std::vector<double>{1, 2});
  swap({});
  CHECK(values(a.get_value()) == std::vector<double>{1, 2});
  CHECK(values(b.get_value()) == std::vector<double>{3, 4});
  // Each holds a buffer of its own.
  CHECK(a.get_value(true).storage() != b.get_value(true).storage());
}

TEST_CASE("shared: get_value copies, set_value copies and checks dtype, shape and device",
          "[shared]") {
  Tensor initial = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  SharedVariable w = shared("w", initial);
  CHECK(w.name() == "w");
  CHECK(w.is_shared());
  CHECK(w.type().str() == "float32[2, 3]");
  CHECK(w.value_type().str() == "float32[2, 3]");
  // shared() copied the tensor: writing the caller's changes nothing.
  initial.data<float>()[0] = 100;
  CHECK(values(w.get_value())[0] == 1);
  // get_value copies; get_value(true) is the tensor held.
  Tensor copy = w.get_value();
  copy.data<float>()[1] = 200;
  CHECK(values(w.get_value())[1] == 2);
  CHECK(w.get_value(true).storage() == w.get_value(true).storage());
  CHECK(w.get_value().storage() != w.get_value(true).storage());

  Tensor next = Tensor::full(DType::float32, {2, 3}, 7);
  w.set_value(next);
  next.data<float>()[0] = 0;
  CHECK(values(w.get_value()) == std::vector<double>(6, 7));

  // Wrong shape: ShapeError naming the variable, its type and the shape given.
  std::string msg = message_of([&] { w.set_value(Tensor::zeros(DType::float32, {3, 2})); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "float32[2, 3]"));
  CHECK(contains(msg, "[3, 2]"));
  CHECK_THROWS_AS(w.set_value(Tensor::zeros(DType::float32, {3, 2})), ShapeError);
  CHECK_THROWS_AS(w.set_value(Tensor::zeros(DType::float32, {6})), ShapeError);
  // Wrong dtype: TypeError naming it.
  msg = message_of([&] { w.set_value(Tensor::zeros(DType::float64, {2, 3})); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "float64"));
  CHECK_THROWS_AS(w.set_value(Tensor::zeros(DType::float64, {2, 3})), TypeError);
  CHECK_THROWS_AS(w.set_value(Tensor()), ValueError);
  // A failed set_value changed nothing.
  CHECK(values(w.get_value()) == std::vector<double>(6, 7));

  // A view is copied into a contiguous value.
  const Tensor big = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  w.set_value(big.permute({1, 0}));
  CHECK(values(w.get_value()) == std::vector<double>{1, 3, 5, 2, 4, 6});

  CHECK_THROWS_AS(shared("", initial), ValueError);
  CHECK_THROWS_AS(shared("u", Tensor()), ValueError);
  CHECK_THROWS_AS(SharedVariable(matrix("m", DType::float32)), ValueError);
  CHECK_THROWS_AS(SharedVariable().get_value(), ValueError);
}

TEST_CASE("shared: bad updates are rejected at compile time, naming the variable", "[shared]") {
  SharedVariable w = shared("w", Tensor::zeros(DType::float32, {3}));
  SharedVariable v = shared("v", Tensor::zeros(DType::float32, {4}));
  Variable x = vector("x", DType::float32);

  // Another dtype.
  std::string msg = message_of([&] {
    compile({}, {}, {.updates = {{w, cast(w, DType::float64)}}});
  });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "float64"));
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, cast(w, DType::float64)}}}), TypeError);
  // Another static shape.
  msg = message_of([&] { compile({}, {}, {.updates = {{w, v * 2.0}}}); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "float32[3]"));
  CHECK(contains(msg, "float32[4]"));
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, v * 2.0}}}), ShapeError);
  // Another rank.
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, sum(w)}}}), ShapeError);
  // Not a shared variable.
  msg = message_of([&] { compile({x}, {}, {.updates = {{x, x * 2.0}}}); });
  CHECK(contains(msg, "'x'"));
  CHECK(contains(msg, "not a shared variable"));
  CHECK_THROWS_AS(compile({x}, {}, {.updates = {{x, x * 2.0}}}), ValueError);
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w * 2.0, w}}}), ValueError);
  // Updated twice.
  msg = message_of([&] { compile({}, {}, {.updates = {{w, w + 1.0}, {w, w + 2.0}}}); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "twice"));
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, w + 1.0}, {w, w + 2.0}}}), ValueError);
  // A shared variable given as an explicit input.
  msg = message_of([&] { compile({w}, {w * 2.0}); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "shared variable"));
  CHECK_THROWS_AS(compile({w}, {w * 2.0}), ValueError);
  // A new value depending on a free variable that is not an input.
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, w + x}}}), ValueError);
  // An undefined new value.
  CHECK_THROWS_AS(compile({}, {}, {.updates = {{w, Variable()}}}), ValueError);
}

TEST_CASE("shared: a call that throws leaves every shared value unchanged", "[shared]") {
  SharedVariable counter = shared("counter", Tensor::scalar(DType::float64, 0));
  SharedVariable w = shared("w", Tensor::from_vector<double>({1, 2, 3}, {3}));
  Variable x = vector("x", DType::float64);
  // The new value of w has a dim known only at run time.
  Function f = compile({x}, {sum(x)}, {.updates = {{counter, counter + 1.0}, {w, x * 2.0}}});
  f({Tensor::from_vector<double>({1, 1, 1}, {3})});
  CHECK(values(counter.get_value()) == std::vector<double>{1});
  CHECK(values(w.get_value()) == std::vector<double>{2, 2, 2});

  // The update of w gets the wrong shape: an error naming w, and counter is not updated either.
  const Tensor four = Tensor::from_vector<double>({1, 2, 3, 4}, {4});
  const std::string msg = message_of([&] { f({four}); });
  CHECK(contains(msg, "'w'"));
  CHECK(contains(msg, "float64[3]"));
  CHECK(contains(msg, "[4]"));
  CHECK_THROWS_AS(f({four}), ShapeError);
  CHECK(values(counter.get_value()) == std::vector<double>{1});
  CHECK(values(w.get_value()) == std::vector<double>{2, 2, 2});

  // A kernel failing during the call: nothing changes either.
  Variable y = vector("y", DType::float64);
  Function g = compile({x, y}, {x + y}, {.updates = {{counter, counter + 1.0}}});
  CHECK_THROWS_AS(g({four, Tensor::from_vector<double>({1, 2}, {2})}), ShapeError);
  CHECK(values(counter.get_value()) == std::vector<double>{1});
  g({four, four});
  CHECK(values(counter.get_value()) == std::vector<double>{2});

  // Arguments are counted without the shared variables.
  CHECK(contains(message_of([&] { g({four}); }), "1 inputs, expected 2"));
  CHECK_THROWS_AS(g({four, four, Tensor::scalar(DType::float64, 0)}), ValueError);
  CHECK(values(counter.get_value()) == std::vector<double>{2});
}

TEST_CASE("shared: functions sharing a variable see each other's updates", "[shared]") {
  SharedVariable total = shared("total", Tensor::scalar(DType::float32, 0));
  Variable x = scalar("x", DType::float32);
  // Returns the total before adding X (outputs see the values from before the call).
  Function accumulate = compile({x}, {total}, {.updates = {{total, total + x}}});
  Function twice = compile({}, {total * 2.0});
  Function reset = compile({}, {}, {.updates = {{total, total * 0.0}}});

  CHECK(values(accumulate({Tensor::scalar(DType::float32, 3)})[0]) == std::vector<double>{0});
  CHECK(values(accumulate({Tensor::scalar(DType::float32, 4)})[0]) == std::vector<double>{3});
  CHECK(values(twice({})[0]) == std::vector<double>{14});
  total.set_value(Tensor::scalar(DType::float32, 10));
  CHECK(values(twice({})[0]) == std::vector<double>{20});
  reset({});
  CHECK(values(twice({})[0]) == std::vector<double>{0});

  // A result never shares a buffer with a shared value.
  const Tensor returned = accumulate({Tensor::scalar(DType::float32, 5)})[0];
  CHECK(returned.storage() != total.get_value(true).storage());
  CHECK(accumulate.shared_variables().size() == 1);
  CHECK(accumulate.shared_variables()[0] == total);
  CHECK(twice.updates().empty());
  REQUIRE(accumulate.updates().size() == 1);
  CHECK(accumulate.updates()[0].first == total);
}

TEST_CASE("shared: a value both returned and stored is not shared between them", "[shared]") {
  SharedVariable w = shared("w", Tensor::from_vector<double>({1, 2}, {2}));
  // The output and the update are one node after merging.
  Function f = compile({}, {w - 1.0}, {.updates = {{w, w - 1.0}}});
  Tensor out = f({})[0];
  CHECK(values(out) == std::vector<double>{0, 1});
  CHECK(values(w.get_value()) == std::vector<double>{0, 1});
  out.data<double>()[0] = 50;
  CHECK(values(w.get_value()) == std::vector<double>{0, 1});
  // Two updates computing the same value get buffers of their own.
  SharedVariable a = shared("a", Tensor::from_vector<double>({1, 2}, {2}));
  SharedVariable b = shared("b", Tensor::from_vector<double>({5, 6}, {2}));
  Function same = compile({}, {}, {.updates = {{a, b + 1.0}, {b, b + 1.0}}});
  same({});
  CHECK(values(a.get_value()) == std::vector<double>{6, 7});
  CHECK(values(b.get_value()) == std::vector<double>{6, 7});
  CHECK(a.get_value(true).storage() != b.get_value(true).storage());
}

TEST_CASE("shared: debugprint and Function::str show shared variables and updates", "[shared]") {
  SharedVariable w = shared("w", Tensor::zeros(DType::float32, {2}));
  const std::string tree = debugprint(w * 2.0);
  CHECK(contains(tree, "w [id B] [shared] float32[2]"));
  Variable x = vector("x", DType::float32);
  Function f = compile({x}, {sum(x * w)}, {.updates = {{w, w + x}}});
  const std::string text = f.str();
  INFO(text);
  CHECK(contains(text, "[shared]"));
  CHECK(contains(text, "Updates:\n'w' <-\n"));
  CHECK(contains(to_dot({w * 2.0}), "w [shared]"));
  // The plan records which input each update replaces.
  REQUIRE(f.plan().updates.size() == 1);
  CHECK(f.plan().num_shared_inputs == 1);
  CHECK(f.plan().updates[0].input == 1);
  CHECK(f.plan().updates[0].output == 1);
}

TEST_CASE("shared: a conv net step updating its filters and bias matches an explicit step",
          "[shared]") {
  const Tensor filters0 = random_tensor(DType::float64, {4, 3, 3, 3}, 3, -0.5, 0.5);
  const Tensor bias0 = random_tensor(DType::float64, {4}, 4, -0.1, 0.1);
  SharedVariable filters = shared("filters", filters0);
  SharedVariable bias = shared("bias", bias0);
  Variable x = tensor("x", DType::float64, {std::nullopt, 3, 6, 6});
  Variable target = tensor4("target", DType::float64);
  auto loss_of = [&](const Variable& f, const Variable& b) {
    Variable y = relu(conv2d(x, f, {.border_mode = "half"}) + dimshuffle(b, {-1, 0, -1, -1}));
    return mean((y - target) * (y - target));
  };
  const double rate = 0.05;
  Variable loss = loss_of(filters, bias);
  const std::vector<Variable> g = grad(loss, {filters, bias});
  Function train =
      compile({x, target}, {loss},
              {.updates = {{filters, filters - rate * g[0]}, {bias, bias - rate * g[1]}}});
  Variable fv = tensor("fv", DType::float64, {4, 3, 3, 3});
  Variable bv = tensor("bv", DType::float64, {4});
  Variable loss_v = loss_of(fv, bv);
  const std::vector<Variable> g_v = grad(loss_v, {fv, bv});
  Function gradients = compile({x, target, fv, bv}, {loss_v, g_v[0], g_v[1]});

  Tensor f_ref = filters0;
  Tensor b_ref = bias0;
  std::vector<double> losses;
  for (int step = 0; step < 3; ++step) {
    const Tensor images = random_tensor(DType::float64, {2, 3, 6, 6}, 30 + step);
    const Tensor wanted = random_tensor(DType::float64, {2, 4, 6, 6}, 40 + step, 0.0, 1.0);
    const std::vector<Tensor> expected = gradients({images, wanted, f_ref, b_ref});
    const std::vector<Tensor> out = train({images, wanted});
    REQUIRE_ALLCLOSE(out[0], expected[0], 1e-10, 1e-12);
    f_ref = sgd_step(f_ref, expected[1], rate);
    b_ref = sgd_step(b_ref, expected[2], rate);
    REQUIRE_ALLCLOSE(filters.get_value(), f_ref, 1e-10, 1e-12);
    REQUIRE_ALLCLOSE(bias.get_value(), b_ref, 1e-10, 1e-12);
  }
  CHECK(testing::max_abs_diff(filters.get_value(), filters0) > 1e-4);
}
