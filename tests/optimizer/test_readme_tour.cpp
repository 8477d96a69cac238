// The README's API tour, line for line, so that it keeps compiling and running.
#include <sstream>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

TEST_CASE("readme: the API tour builds, differentiates, compiles and runs", "[readme]") {
  const Tensor images = testing::random_tensor(DType::float32, {2, 3, 32, 32}, 1);
  const Tensor initial = testing::random_tensor(DType::float32, {16, 3, 3, 3}, 2);
  std::ostringstream cout;

  Variable x = tensor("x", DType::float32, {std::nullopt, 3, 32, 32});  // batch unknown
  SharedVariable w = shared("w", initial);                              // holds a value
  Variable y = relu(conv2d(x, w, {.border_mode = "half", .subsample = {2, 2}}));
  Variable loss = mean(y * y);
  Variable gw = grad(loss, w);                                             // builds more graph
  Function step = compile({x}, {loss}, {.updates = {{w, w - 0.1 * gw}}});  // optimizes, plans
  std::vector<Tensor> out = step({images});  // runs (checks dtypes and shapes), then updates w
  Tensor weights = w.get_value();            // the weights after the step
  cout << debugprint(loss) << step.last_peak_bytes();  // see what was built and used

  REQUIRE(y.type().str() == "float32[?, 16, 16, 16]");
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].item_double() > 0.0);
  REQUIRE(weights.shape() == Shape{16, 3, 3, 3});
  // The step moved the weights.
  REQUIRE(testing::max_abs_diff(weights, initial) > 0.0);
  REQUIRE(cout.str().find("AbstractConv2d{border=half, subsample=(2, 2)}") != std::string::npos);
  REQUIRE(cout.str().find("w [id") != std::string::npos);
  REQUIRE(step.last_peak_bytes() > 0);
}
