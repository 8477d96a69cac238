#include "convgraph/graph/printing.hpp"

#include <fmt/format.h>

#include <unordered_map>

#include "convgraph/graph/op.hpp"

namespace convgraph {
namespace {

// A, B, ..., Z, BA, BB, ... (Theano's id style).
std::string letter_id(std::size_t n) {
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('A' + n % 26));
    n /= 26;
  } while (n > 0);
  return s;
}

std::string constant_text(const Tensor& value) {
  if (value.numel() == 1) {
    return fmt::format("TensorConstant{{{:g}}}", value.item_double());
  }
  if (value.numel() <= 8) {
    return fmt::format("TensorConstant{{[{:g}]}}", fmt::join(value.to_vector<double>(), ", "));
  }
  return fmt::format("TensorConstant{{{} elements}}", value.numel());
}

class DebugPrinter {
 public:
  explicit DebugPrinter(const DebugPrintOptions& options) : options_(options) {}

  // Prints VAR and, depth first, the inputs of every node not printed before. An explicit stack
  // replaces recursion so that a graph of any depth prints; it pops nodes in the order the
  // recursive walk would visit them (inputs pushed last to first).
  void print(const Variable& root) {
    std::vector<std::pair<Variable, int>> stack{{root, 0}};
    while (!stack.empty()) {
      auto [var, depth] = std::move(stack.back());
      stack.pop_back();
      Node* node = var.owner();
      if (!print_line(var, depth) || node == nullptr) continue;
      if (options_.max_depth >= 0 && depth >= options_.max_depth) continue;
      for (auto in = node->inputs.rbegin(); in != node->inputs.rend(); ++in) {
        stack.emplace_back(*in, depth + 1);
      }
    }
  }

  // A line of its own (a heading such as "Updates:").
  void text(const std::string& line) { out_ += line + '\n'; }

  std::string take() { return std::move(out_); }

 private:
  // Writes the line of VAR at DEPTH; false when its node was printed before (its inputs are not
  // shown again).
  bool print_line(const Variable& var, int depth) {
    const void* key = var.owner() != nullptr ? static_cast<const void*>(var.owner())
                                             : static_cast<const void*>(var.get());
    auto [it, fresh] = ids_.emplace(key, letter_id(ids_.size()));
    std::string head;
    if (Node* node = var.owner()) {
      head = node->op->str();
      if (node->num_outputs() > 1) head += fmt::format(".{}", var.index());
    } else if (var.is_constant()) {
      head = constant_text(var.constant_value());
    } else {
      head = var.name().empty() ? std::string("<unnamed input>") : var.name();
    }
    append_prefix(depth);
    out_ += fmt::format("{} [id {}]", head, it->second);
    if (var.owner() == nullptr && var.is_shared()) out_ += " [shared]";
    if (var.owner() != nullptr && !var.name().empty()) out_ += fmt::format(" '{}'", var.name());
    if (!fresh && var.owner() != nullptr) {
      out_ += " (see above)\n";
      return false;
    }
    if (options_.print_types) out_ += " " + var.type().str(options_.print_layouts);
    out_ += '\n';
    return true;
  }

  // One " |" per level, up to max_indent levels; deeper lines keep that indentation and show
  // their depth as a number, so that a line costs the same whatever the depth of the graph.
  void append_prefix(int depth) {
    const int cap = options_.max_indent;
    if (cap < 0 || depth <= cap) {
      for (int i = 0; i < depth; ++i) out_ += " |";
      return;
    }
    for (int i = 0; i < cap; ++i) out_ += " |";
    out_ += fmt::format("[depth {}] ", depth);
  }

  const DebugPrintOptions& options_;
  std::unordered_map<const void*, std::string> ids_;
  std::string out_;
};

}  // namespace

std::string debugprint(const std::vector<Variable>& outputs, const DebugPrintOptions& options) {
  DebugPrinter printer(options);
  for (const Variable& out : outputs) printer.print(out);
  return printer.take();
}

std::unordered_map<const Node*, std::string> debugprint_node_ids(
    const std::vector<Variable>& outputs) {
  // DebugPrinter's order without its recursion: a variable takes the next id when first seen
  // (keyed by its node, or by itself when it has none); a node's inputs are visited, in order,
  // right after the node is first seen. Inputs and constants take ids too, as they do there.
  std::unordered_map<const void*, std::size_t> seen;
  std::unordered_map<const Node*, std::string> ids;
  std::vector<const Variable*> stack;
  for (auto it = outputs.rbegin(); it != outputs.rend(); ++it) stack.push_back(&*it);
  while (!stack.empty()) {
    const Variable& var = *stack.back();
    stack.pop_back();
    const Node* node = var.owner();
    const void* key =
        node != nullptr ? static_cast<const void*>(node) : static_cast<const void*>(var.get());
    if (!seen.emplace(key, seen.size()).second) continue;
    if (node == nullptr) continue;
    ids.emplace(node, letter_id(seen.size() - 1));
    for (auto it = node->inputs.rbegin(); it != node->inputs.rend(); ++it) stack.push_back(&*it);
  }
  return ids;
}

std::unordered_map<const Node*, std::string> debugprint_node_ids(const FunctionGraph& graph) {
  return debugprint_node_ids(graph.outputs());
}

std::string debugprint(const Variable& output, const DebugPrintOptions& options) {
  return debugprint(std::vector<Variable>{output}, options);
}

std::string debugprint(const FunctionGraph& graph, const DebugPrintOptions& options) {
  return debugprint(graph.outputs(), options);
}

std::string debugprint_with_updates(const FunctionGraph& graph,
                                    const std::vector<Variable>& updated,
                                    const DebugPrintOptions& options) {
  const std::vector<Variable>& outputs = graph.outputs();
  if (updated.size() > outputs.size()) {
    throw ValueError(fmt::format("debugprint_with_updates: {} updates but only {} outputs",
                                 updated.size(), outputs.size()));
  }
  const std::size_t own = outputs.size() - updated.size();
  DebugPrinter printer(options);
  for (std::size_t i = 0; i < own; ++i) printer.print(outputs[i]);
  if (updated.empty()) return printer.take();
  printer.text("Updates:");
  for (std::size_t i = 0; i < updated.size(); ++i) {
    printer.text(fmt::format("{} <-", updated[i].label()));
    printer.print(outputs[own + i]);
  }
  return printer.take();
}

std::string to_dot(const std::vector<Variable>& outputs) {
  std::string out = "digraph convgraph {\n  rankdir=BT;\n";
  std::unordered_map<const void*, std::string> names;
  auto name_of = [&](const void* key) {
    auto [it, fresh] = names.emplace(key, fmt::format("n{}", names.size()));
    return std::pair<std::string, bool>(it->second, fresh);
  };
  std::vector<Variable> work(outputs.rbegin(), outputs.rend());
  auto escape = [](std::string s) {
    std::string r;
    for (char c : s) {
      if (c == '"' || c == '\\') r += '\\';
      r += c;
    }
    return r;
  };
  // The name of VAR's box or ellipse, declaring it on first sight.
  auto declare = [&](const Variable& var) -> std::pair<std::string, bool> {
    if (Node* node = var.owner()) {
      auto [name, fresh] = name_of(node);
      if (fresh) {
        out += fmt::format("  {} [shape=box, label=\"{}\"];\n", name, escape(node->op->str()));
      }
      return {name, fresh};
    }
    auto [name, fresh] = name_of(var.get());
    if (fresh) {
      std::string label = var.is_constant() ? constant_text(var.constant_value())
                                            : (var.name().empty() ? "input" : var.name());
      if (var.is_shared()) label += " [shared]";
      out += fmt::format("  {} [shape=ellipse, label=\"{}\"];\n", name, escape(label));
    }
    return {name, false};
  };
  // Depth first with an explicit stack (graphs may be far deeper than the call stack allows):
  // a node is declared when first reached, and its edges written once its inputs are declared,
  // giving the same text as the recursive walk.
  struct Frame {
    Node* node;
    std::string name;
    std::size_t next = 0;
  };
  auto visit = [&](const Variable& root) -> std::string {
    auto [root_name, root_fresh] = declare(root);
    if (!root_fresh) return root_name;
    std::vector<Frame> stack{{root.owner(), root_name}};
    while (!stack.empty()) {
      Frame& frame = stack.back();
      if (frame.next > 0) {
        // The input before NEXT is declared (and expanded): its edge comes now.
        const std::size_t i = frame.next - 1;
        const Variable& in = frame.node->inputs[i];
        const void* key = in.owner() != nullptr ? static_cast<const void*>(in.owner())
                                                : static_cast<const void*>(in.get());
        out += fmt::format("  {} -> {} [label=\"{}: {}\"];\n", names.at(key), frame.name, i,
                           escape(in.type().str()));
      }
      if (frame.next == frame.node->inputs.size()) {
        stack.pop_back();
        continue;
      }
      const Variable& in = frame.node->inputs[frame.next++];
      auto [name, fresh] = declare(in);
      if (fresh) stack.push_back({in.owner(), name});
    }
    return root_name;
  };
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::string src = visit(outputs[i]);
    out += fmt::format(
        "  out{} [shape=plaintext, label=\"output {}\"];\n  {} -> out{} "
        "[label=\"{}\"];\n",
        i, i, src, i, escape(outputs[i].type().str()));
  }
  return out + "}\n";
}

std::string to_dot(const FunctionGraph& graph) {
  return to_dot(graph.outputs());
}

}  // namespace convgraph
