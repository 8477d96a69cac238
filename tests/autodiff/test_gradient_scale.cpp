// Differentiating graphs far deeper than the call stack: grad, Lop and Rop walk them with an
// explicit stack, and the gradient graphs they build are released without recursion.
#include <cmath>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {
constexpr int kDeep = 200000;
}  // namespace

TEST_CASE("grad: a chain of 200,000 nodes is differentiated in both modes", "[autodiff][scale]") {
  Variable x = vector("x", DType::float64);
  Variable y = x;
  for (int i = 0; i < kDeep; ++i) y = tanh(y);
  Variable g = grad(sum(y), x);
  REQUIRE(g.owner() != nullptr);
  REQUIRE(g.type() == x.type());
  // The gradient of each tanh reads its output: the gradient graph is as deep as the chain.
  std::size_t depth = 0;
  for (Node* n = g.owner(); n != nullptr && depth <= 4 * kDeep; n = n->inputs[0].owner()) ++depth;
  REQUIRE(depth >= static_cast<std::size_t>(kDeep));

  Variable v = vector("v", DType::float64);
  Variable r = Rop({y}, {x}, {v}).front();
  REQUIRE(r.owner() != nullptr);
  REQUIRE(r.type() == y.type());
  Variable l = Lop({y}, {x}, {v}).front();
  REQUIRE(l.type() == x.type());
}
