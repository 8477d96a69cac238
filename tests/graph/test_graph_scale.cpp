// Graphs far deeper than the call stack: every walk over a graph, and the destruction of its
// nodes, must use a constant amount of stack. 200,000 nodes overflow the default 8 MiB stack with
// any recursion of more than about 40 bytes a level.
#include <algorithm>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

constexpr int kDeep = 200000;

Variable tanh_chain(const Variable& x, int n) {
  Variable y = x;
  for (int i = 0; i < n; ++i) y = tanh(y);
  return y;
}

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("graph: a chain of 200,000 nodes is destroyed without recursion", "[graph][scale]") {
  {
    Variable x = vector("x", DType::float32);
    Variable y = tanh_chain(x, kDeep);
    REQUIRE(y.owner() != nullptr);
  }  // the last handle goes here: one node releases the next, 200,000 deep
  {
    // Two-input nodes, each with its own constant, and a handle kept on a node in the middle:
    // the chain below it must survive the release of the top.
    Variable x = vector("x", DType::float64);
    Variable y = x;
    Variable middle;
    for (int i = 0; i < kDeep; ++i) {
      y = y * 1.5;
      if (i == kDeep / 2) middle = y;
    }
    y = Variable();
    REQUIRE(middle.owner() != nullptr);
    REQUIRE(middle.owner()->inputs[0].owner() != nullptr);
    REQUIRE(middle.owner()->inputs[1].is_constant());
  }
}

TEST_CASE("graph: FunctionGraph copies, sorts, merges and prunes a 200,000-node chain",
          "[graph][scale]") {
  Variable x = vector("x", DType::float64);
  Variable y = x;
  for (int i = 0; i < kDeep; ++i) y = y * 1.5;  // a constant of its own for each multiply
  FunctionGraph fg({x}, {y});
  REQUIRE(fg.num_nodes() == static_cast<std::size_t>(kDeep));
  REQUIRE(fg.toposort().size() == static_cast<std::size_t>(kDeep));
  REQUIRE(fg.toposort().front()->inputs[0] == fg.inputs()[0]);
  fg.check_integrity();

  const auto copy = fg.clone();
  REQUIRE(copy->num_nodes() == static_cast<std::size_t>(kDeep));

  // The 200,000 equal constants become one, read by every multiply.
  REQUIRE(fg.merge_equal_nodes() == kDeep - 1);
  fg.check_integrity();
  const Variable shared = fg.toposort().front()->inputs[1];
  REQUIRE(fg.clients(shared).size() == static_cast<std::size_t>(kDeep));
  // The change log keeps the last 1000 reasons.
  REQUIRE(fg.change_log().size() == 1000);
  REQUIRE(fg.change_log().back() == "merge equal constants");

  // Cutting the chain in the middle prunes the lower half, one reader of the shared constant at
  // a time.
  Node* middle = fg.toposort()[kDeep / 2];
  fg.replace(middle->shared_from_this()->output(0), fg.inputs()[0], "cut");
  REQUIRE(fg.num_nodes() == static_cast<std::size_t>(kDeep - kDeep / 2 - 1));
  REQUIRE(fg.clients(shared).size() == fg.num_nodes());
  fg.check_integrity();

  // Every remaining reader goes too: the output becomes the input itself.
  fg.replace(fg.outputs()[0], fg.inputs()[0], "all");
  REQUIRE(fg.num_nodes() == 0);
  REQUIRE(fg.clients(shared).empty());
  fg.check_integrity();
}

TEST_CASE("graph: a variable with many readers loses them in any order", "[graph]") {
  // Readers lists longer than a few entries index their positions; removal swaps with the last.
  Variable x = vector("x", DType::float64);
  std::vector<Variable> outs;
  for (int i = 0; i < 100; ++i) outs.push_back(exp(x) * static_cast<double>(i + 1));
  FunctionGraph fg({x}, outs);
  REQUIRE(fg.merge_equal_nodes() == 99);  // one exp(x), read by the 100 multiplies
  const Variable e = fg.outputs()[0].owner()->inputs[0];
  REQUIRE(fg.clients(e).size() == 100);
  for (int i : {50, 0, 99, 7, 98, 1, 60, 61, 62, 2}) {
    fg.replace(fg.outputs()[static_cast<std::size_t>(i)], fg.inputs()[0]);
    fg.check_integrity();
  }
  REQUIRE(fg.clients(e).size() == 90);
  for (std::size_t i = 0; i < 100; ++i) fg.replace(fg.outputs()[i], fg.inputs()[0]);
  fg.check_integrity();
  REQUIRE(fg.num_nodes() == 0);
  REQUIRE(fg.clients(fg.inputs()[0]).size() == 100);
}

TEST_CASE("graph: debugprint of a 30,000-deep graph is linear in its depth", "[graph][scale]") {
  Variable x = vector("x", DType::float32);
  const std::string ten = debugprint(tanh_chain(x, 10000));
  const std::string twenty = debugprint(tanh_chain(x, 20000));
  REQUIRE(count_lines(ten) == 10001);
  REQUIRE(count_lines(twenty) == 20001);
  const double ratio = static_cast<double>(twenty.size()) / static_cast<double>(ten.size());
  INFO("10,000 deep: " << ten.size() << " bytes; 20,000 deep: " << twenty.size() << " bytes");
  REQUIRE(ratio > 1.9);
  REQUIRE(ratio < 2.1);

  const std::string thirty = debugprint(tanh_chain(x, 30000));
  REQUIRE(count_lines(thirty) == 30001);
  // The input sits at depth 30,000: 32 bars, then the depth.
  std::string bars;
  for (int i = 0; i < 32; ++i) bars += " |";
  const std::size_t last = thirty.rfind('\n', thirty.size() - 2) + 1;
  REQUIRE(thirty.substr(last).rfind(bars + "[depth 30000] x [id ", 0) == 0);
  // Without the cap, each line carries all its bars.
  const std::string uncapped = debugprint(tanh_chain(x, 300), {.max_indent = -1});
  REQUIRE(uncapped.find("[depth") == std::string::npos);
  REQUIRE(uncapped.size() > 300 * 300);

  // to_dot walks the same depth.
  const std::string dot = to_dot({tanh_chain(x, 30000)});
  REQUIRE(count_lines(dot) == 2 * 30000 + 1 + 2 + 3);
}

TEST_CASE("graph: debugprint shows the depth beyond max_indent", "[graph]") {
  Variable x = vector("x", DType::float32);
  Variable a = exp(x);
  Variable b = exp(a) + a;
  const std::string text = debugprint(b, {.print_types = false, .max_indent = 1});
  REQUIRE(text ==
          "Elemwise{add} [id A]\n"
          " |Elemwise{exp} [id B]\n"
          " |[depth 2] Elemwise{exp} [id C]\n"
          " |[depth 3] x [id D]\n"
          " |Elemwise{exp} [id C] (see above)\n");
  // max_depth still cuts the walk; the cap only changes how lines are drawn.
  REQUIRE(debugprint(b, {.print_types = false, .max_depth = 1, .max_indent = 0}) ==
          "Elemwise{add} [id A]\n"
          "[depth 1] Elemwise{exp} [id B]\n"
          "[depth 1] Elemwise{exp} [id C]\n");
}
