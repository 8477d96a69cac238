#include "convgraph/graph/function_graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "convgraph/graph/op.hpp"

namespace convgraph {
namespace {

// Nodes computing ROOTS, inputs before readers, visiting inputs in order. Nodes for which STOP
// returns true are neither listed nor entered. EXPECTED: how many nodes the walk will likely
// meet (a hint for the tables).
template <typename Stop>
std::vector<Node*> nodes_in_order(const std::vector<Variable>& roots, Stop&& stop,
                                  std::size_t expected = 0) {
  std::vector<Node*> order;
  order.reserve(expected);
  std::unordered_map<const Node*, int> state;  // 1 = on the stack, 2 = done
  state.reserve(expected);
  struct Frame {
    Node* node;
    std::size_t next_input;
  };
  std::vector<Frame> stack;
  for (const Variable& root : roots) {
    Node* start = root.owner();
    if (start == nullptr || stop(start) || state[start] == 2) continue;
    stack.push_back({start, 0});
    state[start] = 1;
    while (!stack.empty()) {
      Frame& frame = stack.back();
      if (frame.next_input < frame.node->inputs.size()) {
        Node* producer = frame.node->inputs[frame.next_input++].owner();
        if (producer == nullptr || stop(producer)) continue;
        int& s = state[producer];
        if (s == 2) continue;
        if (s == 1) {
          throw ConvGraphError(fmt::format("the graph has a cycle through node #{} ({})",
                                           producer->id, producer->op->str()));
        }
        s = 1;
        stack.push_back({producer, 0});
      } else {
        state[frame.node] = 2;
        order.push_back(frame.node);
        stack.pop_back();
      }
    }
  }
  return order;
}

}  // namespace

FunctionGraph::FunctionGraph(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs) {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Variable& in = inputs[i];
    if (!in.defined()) throw ValueError(fmt::format("function input {} is undefined", i));
    if (in.is_constant()) {
      throw ValueError(fmt::format(
          "function input {} ({}) is a constant; inputs must be free variables", i, in.label()));
    }
    if (in.owner() != nullptr) {
      throw ValueError(fmt::format(
          "function input {} ({}) is computed by {}; inputs must be free variables (made with "
          "tensor(), matrix(), ...)",
          i, in.label(), in.owner()->op->str()));
    }
    if (copies_.count(in.get())) {
      throw ValueError(fmt::format("function input {} ({}) is given twice", i, in.label()));
    }
    Variable copy = make_input(in.type(), in.name());
    // A shared variable's copy holds the same value container.
    copy.mutable_data()->shared = in.get()->shared;
    copies_[in.get()] = copy;
    input_set_.insert(copy.get());
    inputs_.push_back(copy);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) throw ValueError(fmt::format("function output {} is undefined", i));
  }

  auto map_var = [&](const Variable& v) -> Variable {
    if (v.is_constant()) return v;
    auto it = copies_.find(v.get());
    if (it != copies_.end()) return it->second;
    throw ValueError(fmt::format(
        "the outputs depend on {} of type {}, which is not among the function's inputs; add it "
        "to the inputs",
        v.label(), v.type().str()));
  };
  const std::vector<Node*> order = nodes_in_order(outputs, [](const Node*) { return false; });
  nodes_.reserve(order.size());
  copies_.reserve(copies_.size() + order.size());
  clients_.reserve(inputs.size() + order.size());
  for (Node* node : order) {
    std::vector<Variable> new_inputs;
    new_inputs.reserve(node->inputs.size());
    for (const Variable& in : node->inputs) new_inputs.push_back(map_var(in));
    auto copy = std::make_shared<Node>();
    copy->op = node->op;
    copy->inputs = std::move(new_inputs);
    copy->id = node->id;
    copy->output_data = node->output_data;
    for (auto& data : copy->output_data) data.owner = copy.get();
    for (int k = 0; k < node->num_outputs(); ++k) {
      copies_[&node->output_data[static_cast<std::size_t>(k)]] = copy->output(k);
    }
    import_node(copy);
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    outputs_.push_back(map_var(outputs[i]));
    add_client(outputs_.back(), {nullptr, static_cast<int>(i)});
  }
}

Variable FunctionGraph::copy_of(const Variable& original) const {
  if (original.is_constant()) return original;
  auto it = copies_.find(original.get());
  if (it == copies_.end()) {
    throw ValueError(
        fmt::format("{} is not part of the graph this function was built from", original.label()));
  }
  return it->second;
}

bool FunctionGraph::contains(const Node* node) const {
  return nodes_.count(node) != 0;
}

const std::vector<FunctionGraph::Client>& FunctionGraph::clients(const Variable& var) const {
  static const std::vector<Client> none;
  auto it = clients_.find(var.get());
  return it == clients_.end() ? none : it->second.list;
}

namespace {
// Readers lists longer than this keep an index of positions (shorter ones are searched).
constexpr std::size_t kIndexedReaders = 16;
}  // namespace

void FunctionGraph::add_client(const Variable& var, Client client) {
  Readers& readers = clients_[var.get()];
  readers.list.push_back(client);
  if (readers.position) {
    readers.position->emplace(client, readers.list.size() - 1);
  } else if (readers.list.size() > kIndexedReaders) {
    readers.position = std::make_unique<std::unordered_map<Client, std::size_t, ClientHash>>();
    for (std::size_t i = 0; i < readers.list.size(); ++i) {
      readers.position->emplace(readers.list[i], i);
    }
  }
}

void FunctionGraph::remove_client(const Variable& var, Client client) {
  auto it = clients_.find(var.get());
  if (it == clients_.end()) return;
  Readers& readers = it->second;
  std::size_t pos = 0;
  if (readers.position) {
    auto where = readers.position->find(client);
    if (where == readers.position->end()) return;
    pos = where->second;
    readers.position->erase(where);
  } else {
    pos = static_cast<std::size_t>(std::find(readers.list.begin(), readers.list.end(), client) -
                                   readers.list.begin());
    if (pos == readers.list.size()) return;
  }
  // The last reader takes the place of the removed one.
  if (pos + 1 != readers.list.size()) {
    readers.list[pos] = readers.list.back();
    if (readers.position) (*readers.position)[readers.list[pos]] = pos;
  }
  readers.list.pop_back();
  if (readers.list.empty()) clients_.erase(it);
}

void FunctionGraph::import_node(const std::shared_ptr<Node>& node) {
  nodes_[node.get()] = node;
  for (std::size_t i = 0; i < node->inputs.size(); ++i) {
    add_client(node->inputs[i], {node.get(), static_cast<int>(i)});
  }
  invalidate();
}

std::vector<Node*> FunctionGraph::import_variable(const Variable& var) {
  auto known = [&](const Node* n) { return nodes_.count(n) != 0; };
  std::vector<Node*> fresh = nodes_in_order({var}, known);
  // Check the free variables first so that a failed import leaves the graph untouched.
  for (Node* node : fresh) {
    for (const Variable& in : node->inputs) {
      if (in.owner() == nullptr && !in.is_constant() && !input_set_.count(in.get())) {
        throw ValueError(fmt::format(
            "replacement depends on {}, which is not an input of this function graph", in.label()));
      }
    }
  }
  if (var.owner() == nullptr && !var.is_constant() && !input_set_.count(var.get())) {
    throw ValueError(
        fmt::format("replacement {} is a free variable that is not an input of this "
                    "function graph",
                    var.label()));
  }
  for (Node* node : fresh) import_node(node->shared_from_this());
  return fresh;
}

void FunctionGraph::prune_if_dead(Node* start) {
  std::vector<Node*> work{start};
  while (!work.empty()) {
    Node* node = work.back();
    work.pop_back();
    auto it = nodes_.find(node);
    if (it == nodes_.end()) continue;
    bool used = false;
    for (const auto& data : node->output_data) used = used || clients_.count(&data) != 0;
    if (used) continue;
    std::shared_ptr<Node> keep = it->second;  // alive until its inputs are unlinked
    nodes_.erase(it);
    for (std::size_t i = 0; i < node->inputs.size(); ++i) {
      remove_client(node->inputs[i], {node, static_cast<int>(i)});
      if (Node* producer = node->inputs[i].owner()) work.push_back(producer);
    }
    invalidate();
  }
}

void FunctionGraph::replace(const Variable& old_ref, const Variable& new_ref,
                            const std::string& reason) {
  // Copies: the arguments may refer to outputs_ or to node inputs, which this function rewrites.
  const Variable old_var = old_ref;
  const Variable new_var = new_ref;
  if (!old_var.defined() || !new_var.defined()) {
    throw ValueError("FunctionGraph::replace: undefined variable");
  }
  if (old_var == new_var) return;
  if (!old_var.type().accepts(new_var.type())) {
    throw TypeError(fmt::format(
        "cannot replace {} of type {} with {} of type {}: the replacement must have the same "
        "dtype, rank and device, and no contradicting static dim{}",
        old_var.label(), old_var.type().str(), new_var.label(), new_var.type().str(),
        reason.empty() ? "" : fmt::format(" (rewrite: {})", reason)));
  }
  // Readers of OLD inside the imported replacement keep reading OLD (e.g. x -> assert(x)).
  const std::vector<Node*> fresh = import_variable(new_var);
  const std::unordered_set<const Node*> imported(fresh.begin(), fresh.end());
  std::vector<Client> moving;
  for (const Client& c : clients(old_var)) {
    if (c.node != nullptr && imported.count(c.node)) continue;
    moving.push_back(c);
  }
  for (const Client& c : moving) {
    remove_client(old_var, c);
    if (c.node == nullptr) {
      outputs_[static_cast<std::size_t>(c.index)] = new_var;
    } else {
      c.node->inputs[static_cast<std::size_t>(c.index)] = new_var;
    }
    add_client(new_var, c);
  }
  invalidate();
  if (Node* owner = old_var.owner()) prune_if_dead(owner);
  if (change_log_.size() >= 1000) change_log_.pop_front();
  change_log_.push_back(reason);
}

void FunctionGraph::replace_all(const std::vector<std::pair<Variable, Variable>>& pairs,
                                const std::string& reason) {
  for (const auto& [old_var, new_var] : pairs) replace(old_var, new_var, reason);
}

const std::vector<Node*>& FunctionGraph::toposort() const {
  if (!order_valid_) {
    order_ = nodes_in_order(
        outputs_, [](const Node*) { return false; }, nodes_.size());
    order_valid_ = true;
  }
  return order_;
}

int FunctionGraph::merge_equal_nodes() {
  int merged = 0;
  // Equal constants first, so that nodes reading them become equal too.
  std::vector<Variable> constants;
  std::unordered_set<const VariableData*> seen;
  for (Node* node : toposort()) {
    for (const Variable& in : node->inputs) {
      if (in.is_constant() && seen.insert(in.get()).second) constants.push_back(in);
    }
  }
  std::multimap<std::tuple<int, std::vector<std::int64_t>, double>, Variable> by_value;
  for (const Variable& c : constants) {
    const Tensor& value = c.constant_value();
    // The first element, as a cheap discriminator (most constants are scalars).
    const double first = value.numel() == 1 ? value.item_double()
                         : value.numel() > 0
                             ? value.reshape({value.numel()}).select(0, 0).item_double()
                             : 0.0;
    auto key = std::make_tuple(static_cast<int>(value.dtype()), value.shape(), first);
    bool replaced = false;
    auto [lo, hi] = by_value.equal_range(key);
    for (auto it = lo; it != hi; ++it) {
      if (tensor_equal(it->second.constant_value(), value)) {
        replace(c, it->second, "merge equal constants");
        ++merged;
        replaced = true;
        break;
      }
    }
    if (!replaced) by_value.emplace(key, c);
  }

  // Visiting in topological order, a node's twin is always visited first. Merging a node prunes
  // only that node (its inputs are read by the twin too), never one visited later, and never a
  // node kept as somebody's twin.
  const std::vector<Node*> order = toposort();
  std::unordered_multimap<std::size_t, Node*> seen_nodes;
  seen_nodes.reserve(order.size());
  for (Node* node : order) {
    std::size_t key = node->op->hash();
    for (const Variable& in : node->inputs) {
      key = hash_combine(key, std::hash<const void*>{}(in.get()));
    }
    Node* twin = nullptr;
    auto [lo, hi] = seen_nodes.equal_range(key);
    for (auto it = lo; it != hi; ++it) {
      Node* candidate = it->second;
      if (candidate->inputs == node->inputs && candidate->op->equals(*node->op)) {
        twin = candidate;
        break;
      }
    }
    if (twin == nullptr) {
      seen_nodes.emplace(key, node);
      continue;
    }
    std::shared_ptr<Node> keep = nodes_.at(node);
    for (int k = 0; k < node->num_outputs(); ++k) {
      replace(keep->output(k), twin->output(k), "merge equal nodes");
      ++merged;
    }
  }
  return merged;
}

std::unique_ptr<FunctionGraph> FunctionGraph::clone() const {
  auto copy = std::make_unique<FunctionGraph>(inputs_, outputs_);
  copy->updates_ = updates_;
  return copy;
}

void FunctionGraph::check_integrity() const {
  std::unordered_map<const VariableData*, std::vector<Client>> expected;
  for (const auto& [ptr, node] : nodes_) {
    for (std::size_t i = 0; i < node->inputs.size(); ++i) {
      const Variable& in = node->inputs[i];
      expected[in.get()].push_back({node.get(), static_cast<int>(i)});
      if (Node* producer = in.owner(); producer != nullptr && !nodes_.count(producer)) {
        throw ConvGraphError(
            fmt::format("node #{} reads a variable of node #{}, which is not in "
                        "the graph",
                        node->id, producer->id));
      }
      if (in.owner() == nullptr && !in.is_constant() && !input_set_.count(in.get())) {
        throw ConvGraphError(
            fmt::format("node #{} reads {}, which is not a graph input", node->id, in.label()));
      }
    }
  }
  for (std::size_t i = 0; i < outputs_.size(); ++i) {
    expected[outputs_[i].get()].push_back({nullptr, static_cast<int>(i)});
  }
  auto sorted = [](std::vector<Client> list) {
    std::sort(list.begin(), list.end(), [](const Client& a, const Client& b) {
      return std::tie(a.node, a.index) < std::tie(b.node, b.index);
    });
    return list;
  };
  if (expected.size() != clients_.size()) {
    throw ConvGraphError(
        fmt::format("client table has {} entries, expected {}", clients_.size(), expected.size()));
  }
  for (const auto& [var, list] : expected) {
    auto it = clients_.find(var);
    if (it == clients_.end() || sorted(it->second.list) != sorted(list)) {
      throw ConvGraphError("client table out of date");
    }
  }
  if (toposort().size() != nodes_.size()) {
    throw ConvGraphError(
        fmt::format("{} nodes are registered but {} are reachable from the "
                    "outputs",
                    nodes_.size(), toposort().size()));
  }
}

}  // namespace convgraph
