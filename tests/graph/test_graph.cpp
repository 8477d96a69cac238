#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("graph: variables, types and labels", "[graph]") {
  Variable x = tensor4("x", DType::float32);
  REQUIRE(x.ndim() == 4);
  REQUIRE(x.owner() == nullptr);
  REQUIRE(x.type().str() == "float32[?, ?, ?, ?]");
  Variable y = tensor("y", DType::float64, {8, std::nullopt});
  REQUIRE(y.type().str() == "float64[8, ?]");
  REQUIRE(y.type().broadcastable(0) == false);
  REQUIRE(tensor("b", DType::float32, {1, 3}).type().broadcastable(0));
  Variable z = add(x, x);
  REQUIRE(z.owner() != nullptr);
  REQUIRE(z.label().find("Elemwise{add}") != std::string::npos);
  z.named("z");
  REQUIRE(z.label() == "'z'");
  REQUIRE_THROWS_AS(Variable().type(), ValueError);
  REQUIRE(
      TensorType(DType::float32, {8, std::nullopt}).accepts(TensorType(DType::float32, {8, 3})));
  REQUIRE_FALSE(TensorType(DType::float32, {8, 4}).accepts(TensorType(DType::float32, {8, 3})));
  REQUIRE_FALSE(TensorType(DType::float32, {8}).accepts(TensorType(DType::float64, {8})));
}

TEST_CASE("graph: a FunctionGraph is a private copy", "[graph]") {
  Variable x = matrix("x", DType::float64);
  Variable y = exp(x);
  Variable z = mul(y, y);
  FunctionGraph fg({x}, {z});
  REQUIRE(fg.num_nodes() == 2);
  REQUIRE(fg.inputs()[0] != x);
  REQUIRE(fg.copy_of(x) == fg.inputs()[0]);
  const Variable y_copy = fg.copy_of(y);
  REQUIRE(y_copy.owner() != y.owner());
  REQUIRE(fg.clients(y_copy).size() == 2);
  // Rewriting the copy leaves the user's graph alone.
  fg.replace(y_copy, fg.inputs()[0], "test");
  REQUIRE(fg.num_nodes() == 1);
  REQUIRE(z.owner()->inputs[0] == y);
  fg.check_integrity();
}

TEST_CASE("graph: replace checks types and prunes dead nodes", "[graph]") {
  Variable x = vector("x", DType::float32);
  Variable a = exp(x);
  Variable b = log(a);
  FunctionGraph fg({x}, {b});
  const Variable a_copy = fg.copy_of(a);
  const Variable wrong = cast(fg.inputs()[0], DType::float64);
  const std::string msg = message_of([&] { fg.replace(a_copy, wrong, "bad rewrite"); });
  REQUIRE(msg.find("cannot replace") != std::string::npos);
  REQUIRE(msg.find("float64") != std::string::npos);
  REQUIRE_THROWS_AS(fg.replace(a_copy, wrong), TypeError);
  fg.check_integrity();
  // A replacement may read the variable it replaces.
  fg.replace(a_copy, sqrt(a_copy), "wrap");
  REQUIRE(fg.num_nodes() == 3);
  fg.check_integrity();
  // Replacing the output by the input drops every node.
  fg.replace(fg.outputs()[0], fg.inputs()[0]);
  REQUIRE(fg.num_nodes() == 0);
  fg.check_integrity();
  // A replacement reading a variable foreign to the graph is refused.
  Variable other = vector("other", DType::float32);
  REQUIRE_THROWS_AS(fg.replace(fg.outputs()[0], exp(other)), ValueError);
  fg.check_integrity();
}

TEST_CASE("graph: inputs must be free variables and cover the graph", "[graph]") {
  Variable x = vector("x", DType::float32);
  Variable y = vector("y", DType::float32);
  Variable z = add(x, y);
  const std::string msg = message_of([&] { FunctionGraph fg({x}, {z}); });
  REQUIRE(msg.find("'y'") != std::string::npos);
  REQUIRE(msg.find("not among the function's inputs") != std::string::npos);
  REQUIRE_THROWS_AS(FunctionGraph({z}, {z}), ValueError);
  REQUIRE_THROWS_AS(FunctionGraph({x, x}, {x}), ValueError);
  REQUIRE_THROWS_AS(FunctionGraph({constant(1.0, DType::float32)}, {x}), ValueError);
}

TEST_CASE("graph: merging equal nodes and constants", "[graph]") {
  Variable x = vector("x", DType::float64);
  Variable a = mul(x, constant(2.0, DType::float64));
  Variable b = mul(x, constant(2.0, DType::float64));
  Variable c = add(exp(a), exp(b));
  FunctionGraph fg({x}, {c});
  REQUIRE(fg.num_nodes() == 5);
  REQUIRE(fg.merge_equal_nodes() > 0);
  REQUIRE(fg.num_nodes() == 3);
  fg.check_integrity();
  // Different ops are not merged.
  FunctionGraph fg2({x}, {add(exp(x), log(x))});
  fg2.merge_equal_nodes();
  REQUIRE(fg2.num_nodes() == 3);
}

TEST_CASE("graph: debugprint golden output", "[graph]") {
  Variable x = tensor("x", DType::float32, {8, std::nullopt});
  Variable two = constant(2.0, DType::float32);
  Variable m = mul(x, two);
  Variable z = add(m, exp(m));
  z.named("z");
  const std::string expected =
      "Elemwise{add} [id A] 'z' float32[8, ?]\n"
      " |Elemwise{mul} [id B] float32[8, ?]\n"
      " | |x [id C] float32[8, ?]\n"
      " | |TensorConstant{2} [id D] float32[]\n"
      " |Elemwise{exp} [id E] float32[8, ?]\n"
      " | |Elemwise{mul} [id B] (see above)\n";
  REQUIRE(debugprint(z) == expected);
  const std::string dot = to_dot({z});
  REQUIRE(dot.find("digraph convgraph") == 0);
  REQUIRE(dot.find("Elemwise{exp}") != std::string::npos);
}
