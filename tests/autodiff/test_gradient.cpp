#include <cmath>

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

// An op without a gradient, to check that missing gradients surface as errors.
class NoGradOp final : public Op {
 public:
  std::string name() const override { return "NoGrad"; }
  bool equals(const Op& other) const override { return dynamic_cast<const NoGradOp*>(&other); }
  std::size_t hash() const override { return 17; }
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override {
    return {inputs.at(0).type()};
  }
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    outputs[0] = inputs[0].clone();
  }
};
}  // namespace

TEST_CASE("grad: the chain rule through a composite", "[autodiff]") {
  Variable x = vector("x", DType::float64);
  Variable cost = sum(mul(exp(x), x));  // d/dx = exp(x) * (1 + x)
  Variable g = grad(cost, x);
  const Tensor a = Tensor::from_vector<double>({-1.0, 0.0, 0.5}, {3});
  const auto got = eval(g, {x}, {a}).to_vector<double>();
  for (std::size_t i = 0; i < 3; ++i) {
    const double v = a.to_vector<double>()[i];
    REQUIRE(got[i] == Approx(std::exp(v) * (1 + v)).epsilon(1e-12));
  }
  // A variable used twice accumulates both paths.
  Variable y = scalar("y", DType::float64);
  Variable gy = grad(add(mul(y, y), y), y);  // 2y + 1
  REQUIRE(eval(gy, {y}, {Tensor::scalar(DType::float64, 3.0)}).item_double() == 7.0);
}

TEST_CASE("grad: bad requests are errors", "[autodiff]") {
  Variable x = vector("x", DType::float64);
  Variable other = vector("other", DType::float64);
  // A non-scalar cost.
  std::string msg = message_of([&] { grad(exp(x), x); });
  REQUIRE(msg.find("scalar") != std::string::npos);
  REQUIRE_THROWS_AS(grad(exp(x), x), TypeError);
  // wrt not in the graph: an error by default, zeros on request.
  Variable cost = sum(exp(x));
  msg = message_of([&] { grad(cost, other); });
  REQUIRE(msg.find("'other'") != std::string::npos);
  REQUIRE_THROWS_AS(grad(cost, other), ValueError);
  Variable z = grad(cost, other, GradOptions{DisconnectedPolicy::zero});
  REQUIRE(eval(z, {other}, {Tensor::from_vector<double>({1, 2}, {2})}).to_vector<double>() ==
          std::vector<double>{0, 0});
  // Integer wrt and integer cost.
  REQUIRE_THROWS_AS(grad(cost, vector("i", DType::int32)), TypeError);
  Variable i = vector("i", DType::int64);
  REQUIRE_THROWS_AS(grad(sum(i), i), TypeError);
  // A path through an op without a gradient.
  Variable blocked = apply(std::make_shared<NoGradOp>(), {x});
  msg = message_of([&] { grad(sum(blocked), x); });
  REQUIRE(msg.find("NoGrad") != std::string::npos);
  REQUIRE_THROWS_AS(grad(sum(blocked), x), UnsupportedError);
  // An op without a gradient is fine off the path from the cost to wrt.
  Variable y = vector("y", DType::float64);
  Variable off_path = apply(std::make_shared<NoGradOp>(), {y});
  REQUIRE_NOTHROW(grad(add(sum(x), sum(off_path)), x));
}

TEST_CASE("Lop and Rop agree with the Jacobian", "[autodiff]") {
  // f(x) = x * exp(x) elementwise: J = diag(exp(x) (1 + x)).
  Variable x = vector("x", DType::float64);
  Variable v = vector("v", DType::float64);
  Variable f = mul(x, exp(x));
  const Tensor a = random_tensor(DType::float64, {5}, 3);
  const Tensor dv = random_tensor(DType::float64, {5}, 4);
  const auto lop = eval(Lop({f}, {x}, {v})[0], {x, v}, {a, dv}).to_vector<double>();
  const auto rop = eval(Rop({f}, {x}, {v})[0], {x, v}, {a, dv}).to_vector<double>();
  const auto av = a.to_vector<double>();
  const auto vv = dv.to_vector<double>();
  for (std::size_t k = 0; k < 5; ++k) {
    const double j = std::exp(av[k]) * (1 + av[k]);
    REQUIRE(lop[k] == Approx(j * vv[k]).epsilon(1e-12));
    REQUIRE(rop[k] == Approx(j * vv[k]).epsilon(1e-12));
  }
  REQUIRE_THROWS_AS(Rop({f}, {x}, {}), ValueError);
  REQUIRE_THROWS_AS(Rop({f}, {x}, {matrix("m", DType::float64)}), TypeError);
  // An output independent of wrt has a zero directional derivative.
  Variable other = vector("o", DType::float64);
  const auto zero = eval(Rop({exp(other)}, {x}, {v})[0], {other, x, v}, {a, a, dv});
  REQUIRE(zero.to_vector<double>() == std::vector<double>(5, 0.0));
  REQUIRE(check_rop([](const std::vector<Variable>& in) { return mul(in[0], exp(in[1])); },
                    {random_tensor(DType::float64, {3}, 5), random_tensor(DType::float64, {3}, 6)})
              .empty());
}

TEST_CASE("verify_grad: accepts right gradients and rejects wrong ones", "[autodiff]") {
  REQUIRE_NOTHROW(verify_grad([](const std::vector<Variable>& in) { return tanh(in[0]); },
                              {random_tensor(DType::float64, {4, 3}, 9)}));
  // An op whose symbolic gradient is off by a factor of 2.
  class WrongGradOp final : public Op {
   public:
    std::string name() const override { return "WrongGrad"; }
    bool equals(const Op& o) const override { return dynamic_cast<const WrongGradOp*>(&o); }
    std::size_t hash() const override { return 99; }
    std::vector<TensorType> make_outputs(const std::vector<Variable>& in) const override {
      return {in.at(0).type()};
    }
    void perform(const std::vector<Tensor>& in, std::vector<Tensor>& out) const override {
      out[0] = in[0].clone();  // identity
    }
    std::vector<Variable> grad(const std::vector<Variable>&, const std::vector<Variable>&,
                               const std::vector<Variable>& g) const override {
      return {mul(g[0], constant(2.0, g[0].dtype()))};
    }
  };
  auto wrong = [](const std::vector<Variable>& in) {
    return apply(std::make_shared<WrongGradOp>(), {in[0]});
  };
  const std::string msg =
      message_of([&] { verify_grad(wrong, {random_tensor(DType::float64, {3}, 1)}); });
  REQUIRE(msg.find("disagrees with finite differences") != std::string::npos);
  REQUIRE_THROWS_AS(verify_grad(wrong, {random_tensor(DType::float64, {3}, 1)}), GradientError);
  REQUIRE_THROWS_AS(verify_grad(wrong, {random_tensor(DType::int32, {3}, 1)}), TypeError);
}
