// Run-time errors name the node as debugprint(function.graph()) shows it ("Elemwise{add} [id C]")
// and the op once; the plan's step labels are those names (no internal node number), and the
// ids come from debugprint_node_ids, which gives the same ids as debugprint.
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::message_of;

namespace {

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++n;
  }
  return n;
}

// The "head [id X]" pairs of a debugprint, and whether each id always shows the same head (a
// node's line and its "(see above)" repeats) and ids first appear in order A, B, C, ...
struct PrintedIds {
  std::map<std::string, std::string> head_of_id;
  bool consistent = true;
  bool in_order = true;
};

std::string letters(std::size_t n) {
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('A' + n % 26));
    n /= 26;
  } while (n > 0);
  return s;
}

PrintedIds parse_debugprint(const std::string& text) {
  PrintedIds ids;
  const std::regex line(R"((?:^|\n)[ |]*(.*?) \[id ([A-Z]+)\])");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator();
       ++it) {
    const std::string head = (*it)[1], id = (*it)[2];
    const std::size_t seen = ids.head_of_id.size();
    const auto [i, fresh] = ids.head_of_id.emplace(id, head);
    ids.consistent = ids.consistent && i->second == head;
    if (fresh) ids.in_order = ids.in_order && id == letters(seen);
  }
  return ids;
}

// The nodes computing OUTPUTS.
std::size_t count_nodes(const std::vector<Variable>& outputs) {
  std::set<const Node*> seen;
  std::vector<const Node*> stack;
  for (const Variable& v : outputs) {
    if (v.owner() != nullptr) stack.push_back(v.owner());
  }
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    for (const Variable& in : n->inputs) {
      if (in.owner() != nullptr) stack.push_back(in.owner());
    }
  }
  return seen.size();
}

}  // namespace

TEST_CASE("debugprint_node_ids gives the ids debugprint shows", "[printing]") {
  // Shared subexpressions, several outputs, an input read twice, a constant, a node reached again
  // through a later output.
  const Variable x = vector("x", DType::float64);
  const Variable y = vector("y", DType::float64);
  const Variable a = x * y;
  const Variable b = exp(a) + a;
  const Variable c = b * constant(2.0, DType::float64) - x;
  const Variable d = sum(c) + sum(a);
  const std::vector<Variable> outputs{d, b, tanh(b)};
  const std::string text = debugprint(outputs);
  INFO(text);
  const PrintedIds printed = parse_debugprint(text);
  REQUIRE(printed.consistent);
  REQUIRE(printed.in_order);
  const auto ids = debugprint_node_ids(outputs);
  // Every node has an id, no two share one, and debugprint shows each node's op with its id.
  CHECK(ids.size() == count_nodes(outputs));
  std::map<std::string, const Node*> node_of_id;
  for (const auto& [node, id] : ids) {
    INFO(node->op->str() << " [id " << id << "]");
    CHECK(node_of_id.emplace(id, node).second);
    REQUIRE(printed.head_of_id.count(id) == 1);
    CHECK(printed.head_of_id.at(id) == node->op->str());
  }
  for (const Variable& v : {a, b, c, d}) CHECK(ids.count(v.owner()) == 1);
}

TEST_CASE("Step labels are the nodes as debugprint of the compiled graph shows them",
          "[printing]") {
  const Variable x = vector("x", DType::float64);
  const Variable y = vector("y", DType::float64);
  const Function f = compile({x, y}, {exp(x) + y, x * y});
  const std::string text = debugprint(f.graph());
  INFO(text);
  const PrintedIds printed = parse_debugprint(text);
  REQUIRE(printed.consistent);
  REQUIRE(printed.in_order);
  for (const PlanStep& step : f.plan().steps) {
    INFO(step.label);
    CHECK_FALSE(contains(step.label, "#"));
    CHECK(step.label.starts_with(step.op_text + " [id "));
    const std::string id =
        step.label.substr(step.op_text.size() + 5, step.label.size() - step.op_text.size() - 6);
    REQUIRE(printed.head_of_id.count(id) == 1);
    CHECK(printed.head_of_id.at(id) == step.op_text);
  }
}

TEST_CASE("A run-time error names the node's op and id once, and no internal number",
          "[printing]") {
  const Variable x = vector("x", DType::float64);
  const Variable y = vector("y", DType::float64);
  const Function f = compile({x, y}, {x + y});
  const Tensor three = Tensor::zeros(DType::float64, {3});
  const Tensor four = Tensor::zeros(DType::float64, {4});
  const std::string m = message_of<ShapeError>([&] { f({three, four}); });
  INFO(m);
  const auto ids = debugprint_node_ids(f.graph());
  const Node* add = f.graph().outputs()[0].owner();
  REQUIRE(add != nullptr);
  const std::string label = add->op->str() + " [id " + ids.at(add) + "]";
  CHECK(m.starts_with(label + ": "));
  CHECK(contains(debugprint(f.graph()), label));
  CHECK(occurrences(m, add->op->str()) == 1);
  CHECK_FALSE(contains(m, "node #"));
  CHECK(contains(m, "do not broadcast"));
}

TEST_CASE("A tensor type with a negative dim is an error when declared", "[printing]") {
  std::string m = message_of<ValueError>([] { tensor("x", DType::float32, {2, -3}); });
  CHECK(contains(m, "tensor 'x'"));
  CHECK(contains(m, "dim 1"));
  CHECK(contains(m, "is -3"));
  m = message_of<ValueError>([] { TensorType(DType::float32, {std::nullopt, -1}); });
  CHECK(contains(m, "TensorType: dim 1 of [?, -1] is -1"));
  m = message_of<ValueError>([] { TensorType::of_rank(DType::float32, -2); });
  CHECK(contains(m, "rank -2"));
  CHECK_NOTHROW(tensor("z", DType::float32, {0, std::nullopt, 5}));
}
