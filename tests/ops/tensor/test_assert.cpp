#include <functional>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/assert.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
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

Tensor bool_scalar(bool value) {
  return Tensor::scalar(DType::boolean, value ? 1.0 : 0.0);
}

}  // namespace

TEST_CASE("assert: passes the value through when every condition holds", "[assert]") {
  Variable x = matrix("x", DType::float32);
  Variable c = scalar("c", DType::boolean);
  Variable y = assert_op(x, {c, gt(sum(x), constant(0.0, DType::float32))}, "x must be positive");
  REQUIRE(y.type() == x.type());
  REQUIRE(y.owner() != nullptr);
  REQUIRE(y.owner()->op->name() == "Assert");
  const Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  REQUIRE(tensor_equal(eval(y, {x, c}, {a, bool_scalar(true)}), a));

  // perform hands back the input itself: a view, no copy of the data.
  std::vector<Tensor> outputs(1);
  y.owner()->op->perform({a, bool_scalar(true), bool_scalar(true)}, outputs);
  REQUIRE(outputs[0].shares_storage_with(a));
  REQUIRE(outputs[0].raw_data() == a.raw_data());
  REQUIRE(y.owner()->op->view_map() == std::vector<std::pair<int, int>>{{0, 0}});
  REQUIRE_FALSE(y.owner()->op->foldable());
}

TEST_CASE("assert: a false condition raises the kind's exception with the message", "[assert]") {
  Variable x = vector("x", DType::float64);
  Variable c = scalar("c", DType::boolean);
  const Tensor a = Tensor::from_vector<double>({1, 2}, {2});

  Variable y = assert_op(x, {c}, "the batch must not be empty");
  std::string msg = message_of([&] { eval(y, {x, c}, {a, bool_scalar(false)}); });
  REQUIRE(msg.find("the batch must not be empty") != std::string::npos);
  REQUIRE_THROWS_AS(eval(y, {x, c}, {a, bool_scalar(false)}), AssertionError);

  Variable s = assert_op(x, {c}, "input channels differ from the filters'", AssertKind::shape);
  msg = message_of([&] { eval(s, {x, c}, {a, bool_scalar(false)}); });
  REQUIRE(msg.find("input channels differ from the filters'") != std::string::npos);
  REQUIRE_THROWS_AS(eval(s, {x, c}, {a, bool_scalar(false)}), ShapeError);

  // A condition computed from the value; only the failing call raises.
  Variable positive = assert_op(x, {gt(min(x), constant(0.0, DType::float64))}, "x > 0");
  REQUIRE_NOTHROW(eval(positive, {x}, {a}));
  REQUIRE_THROWS_AS(eval(positive, {x}, {Tensor::from_vector<double>({1, -2}, {2})}),
                    AssertionError);
}

TEST_CASE("assert: constant conditions are resolved when the graph is built", "[assert]") {
  Variable x = vector("x", DType::float32);
  const Variable yes = constant(bool_scalar(true));
  const Variable no = constant(bool_scalar(false));
  // Only constant-true conditions: no node at all.
  REQUIRE(assert_op(x, {yes, yes}, "always") == x);
  REQUIRE(assert_op(x, {}, "nothing to check") == x);
  // Constant-true ones are dropped, the others stay.
  Variable c = scalar("c", DType::boolean);
  Variable y = assert_op(x, {yes, c}, "one left");
  REQUIRE(y.owner() != nullptr);
  REQUIRE(y.owner()->inputs.size() == 2);
  REQUIRE(y.owner()->inputs[1] == c);
  // A constant-false condition fails now.
  std::string msg = message_of([&] { assert_op(x, {c, no}, "never true"); });
  REQUIRE(msg.find("never true") != std::string::npos);
  REQUIRE_THROWS_AS(assert_op(x, {c, no}, "never true"), AssertionError);
  REQUIRE_THROWS_AS(assert_op(x, {no}, "bad shape", AssertKind::shape), ShapeError);
}

TEST_CASE("assert: conditions must be bool scalars", "[assert]") {
  Variable x = vector("x", DType::float32);
  std::string msg = message_of([&] { assert_op(x, {scalar("i", DType::int32)}, "m"); });
  REQUIRE(msg.find("bool scalar") != std::string::npos);
  REQUIRE(msg.find("int32") != std::string::npos);
  REQUIRE_THROWS_AS(assert_op(x, {scalar("i", DType::int32)}, "m"), TypeError);
  REQUIRE_THROWS_AS(assert_op(x, {vector("v", DType::boolean)}, "m"), TypeError);
  REQUIRE_THROWS_AS(apply(std::make_shared<Assert>("m", AssertKind::assertion), {x}), ValueError);
}

TEST_CASE("assert: op identity and printing", "[assert]") {
  const Assert a("m", AssertKind::assertion), b("m", AssertKind::assertion);
  const Assert c("m", AssertKind::shape), d("other", AssertKind::assertion);
  REQUIRE(a.equals(b));
  REQUIRE(a.hash() == b.hash());
  REQUIRE_FALSE(a.equals(c));
  REQUIRE_FALSE(a.equals(d));
  REQUIRE(c.str() == "Assert{shape: 'm'}");
  REQUIRE(a.str() == "Assert{assertion: 'm'}");
}

TEST_CASE("assert: gradient and R-operator pass through", "[assert]") {
  const Tensor a = random_tensor(DType::float64, {3, 2}, 5, 0.5, 1.5);
  const auto fn = [](const std::vector<Variable>& in) {
    const Variable positive = gt(min(in[0]), constant(0.0, DType::float64));
    return mul(assert_op(in[0], {positive}, "x > 0"), in[0]);
  };
  REQUIRE_NOTHROW(verify_grad(fn, {a}));
  const std::string report = check_rop(fn, {a});
  INFO(report);
  REQUIRE(report.empty());

  Variable x = vector("x", DType::float64);
  Variable c = scalar("c", DType::boolean);
  Variable g = grad(sum(assert_op(x, {c}, "checked")), x);
  REQUIRE(eval(g, {x, c}, {Tensor::from_vector<double>({1, 2}, {2}), bool_scalar(true)})
              .to_vector<double>() == std::vector<double>{1, 1});
  // The eval point stays behind the same check.
  Variable v = vector("v", DType::float64);
  Variable r = Rop({assert_op(x, {c}, "checked")}, {x}, {v}).front();
  REQUIRE(r.owner() != nullptr);
  REQUIRE(r.owner()->op->name() == "Assert");
  REQUIRE_THROWS_AS(eval(r, {x, v, c},
                         {Tensor::from_vector<double>({1, 2}, {2}),
                          Tensor::from_vector<double>({3, 4}, {2}), bool_scalar(false)}),
                    AssertionError);
}
