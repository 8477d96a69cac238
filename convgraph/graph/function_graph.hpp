// FunctionGraph: a graph with designated inputs and outputs that passes may rewrite. It owns a
// private copy of the user's graph (constants are shared), tracks who reads each variable, and
// keeps itself consistent under replace(): new subgraphs are imported, dead nodes pruned.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "convgraph/graph/variable.hpp"

namespace convgraph {

class FunctionGraph {
 public:
  // Where a variable is read: input INDEX of NODE, or graph output INDEX when NODE is null.
  struct Client {
    Node* node = nullptr;
    int index = 0;
    bool operator==(const Client&) const = default;
  };

  // Copies the graph computing OUTPUTS from INPUTS. INPUTS must be distinct free variables (not
  // constants, not computed); every free variable OUTPUTS depend on must be among them, otherwise
  // a ValueError names it. The copy of a shared variable shares its value container.
  FunctionGraph(const std::vector<Variable>& inputs, const std::vector<Variable>& outputs);

  const std::vector<Variable>& inputs() const { return inputs_; }
  const std::vector<Variable>& outputs() const { return outputs_; }
  // Outputs whose values replace inputs' values after a call (a compiled function's updates of
  // shared variables): (output index, input index) pairs. The in-place pass may let such an
  // output be computed into its input's own buffer (optimizer/inplace_pass.hpp).
  void set_updates(std::vector<std::pair<int, int>> updates) { updates_ = std::move(updates); }
  const std::vector<std::pair<int, int>>& updates() const { return updates_; }
  // The copy of a variable of the graph this one was built from (inputs and computed variables;
  // constants map to themselves). Throws ValueError if ORIGINAL was not part of it.
  Variable copy_of(const Variable& original) const;

  // Nodes in an order where every node comes after the nodes computing its inputs. Stable: the
  // same graph gives the same order.
  const std::vector<Node*>& toposort() const;
  std::size_t num_nodes() const { return nodes_.size(); }
  bool contains(const Node* node) const;
  // Every reader of VAR (empty for a variable nobody reads), in no particular order.
  const std::vector<Client>& clients(const Variable& var) const;

  // Makes every reader of OLD read NEW instead (graph outputs included). NEW's type must be
  // acceptable where OLD's stood (TensorType::accepts): same dtype, rank, device, and no
  // contradicting static dim; otherwise a TypeError names both variables and types. Nodes that
  // are no longer needed are dropped. REASON is kept for the change log.
  void replace(const Variable& old_var, const Variable& new_var, const std::string& reason = "");
  // Replaces each pair in order.
  void replace_all(const std::vector<std::pair<Variable, Variable>>& pairs,
                   const std::string& reason = "");

  // Merges equal constants and nodes that apply equal ops to the same inputs (common
  // subexpression elimination). Returns the number of variables merged away.
  int merge_equal_nodes();

  // An independent copy (new nodes and inputs, shared constants).
  std::unique_ptr<FunctionGraph> clone() const;

  // Verifies the internal bookkeeping (clients, node set, order); throws ConvGraphError on a
  // discrepancy. For tests and debugging.
  void check_integrity() const;

  // The reasons of the replace() calls that changed the graph, oldest first (the last 1000).
  std::vector<std::string> change_log() const { return {change_log_.begin(), change_log_.end()}; }

 private:
  FunctionGraph() = default;
  // Adds the nodes computing VAR that the graph does not have yet; returns them.
  std::vector<Node*> import_variable(const Variable& var);
  void import_node(const std::shared_ptr<Node>& node);
  void add_client(const Variable& var, Client client);
  void remove_client(const Variable& var, Client client);
  void prune_if_dead(Node* node);
  void invalidate() { order_valid_ = false; }

  struct ClientHash {
    std::size_t operator()(const Client& c) const {
      return std::hash<const void*>{}(c.node) ^ (static_cast<std::size_t>(c.index) << 1);
    }
  };
  // The readers of one variable. A variable may have millions of readers (a constant shared by a
  // whole unrolled chain), so a long list also indexes where each reader sits: removing one is
  // then constant time (swap with the last), and pruning a chain stays linear.
  struct Readers {
    std::vector<Client> list;
    // Made for long lists only (most variables have one reader).
    std::unique_ptr<std::unordered_map<Client, std::size_t, ClientHash>> position;
  };

  std::vector<Variable> inputs_;
  std::vector<Variable> outputs_;
  std::vector<std::pair<int, int>> updates_;
  std::unordered_set<const VariableData*> input_set_;
  std::unordered_map<const Node*, std::shared_ptr<Node>> nodes_;
  std::unordered_map<const VariableData*, Readers> clients_;
  std::unordered_map<const VariableData*, Variable> copies_;
  std::deque<std::string> change_log_;
  mutable std::vector<Node*> order_;
  mutable bool order_valid_ = false;
};

}  // namespace convgraph
