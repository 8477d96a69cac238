#include "convgraph/graph/printing.hpp"

#include <fmt/format.h>

#include <functional>
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

  void print(const Variable& var, const std::string& prefix, int depth) {
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
    std::string line = fmt::format("{}{} [id {}]", prefix, head, it->second);
    if (var.owner() != nullptr && !var.name().empty()) line += fmt::format(" '{}'", var.name());
    const bool repeat = !fresh && var.owner() != nullptr;
    if (repeat) {
      out_ += line + " (see above)\n";
      return;
    }
    if (options_.print_types) line += " " + var.type().str();
    out_ += line + "\n";
    Node* node = var.owner();
    if (node == nullptr || (options_.max_depth >= 0 && depth >= options_.max_depth)) return;
    for (const Variable& in : node->inputs) print(in, indent(prefix), depth + 1);
  }

  std::string take() { return std::move(out_); }

 private:
  static std::string indent(const std::string& prefix) {
    // Children are drawn one level deeper: " |" appended under the parent's bar.
    return prefix.empty() ? std::string(" |") : prefix + " |";
  }

  const DebugPrintOptions& options_;
  std::unordered_map<const void*, std::string> ids_;
  std::string out_;
};

}  // namespace

std::string debugprint(const std::vector<Variable>& outputs, const DebugPrintOptions& options) {
  DebugPrinter printer(options);
  for (const Variable& out : outputs) printer.print(out, "", 0);
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
  std::function<std::string(const Variable&)> visit = [&](const Variable& var) -> std::string {
    if (Node* node = var.owner()) {
      auto [name, fresh] = name_of(node);
      if (fresh) {
        out += fmt::format("  {} [shape=box, label=\"{}\"];\n", name, escape(node->op->str()));
        for (std::size_t i = 0; i < node->inputs.size(); ++i) {
          const std::string src = visit(node->inputs[i]);
          out += fmt::format("  {} -> {} [label=\"{}: {}\"];\n", src, name, i,
                             escape(node->inputs[i].type().str()));
        }
      }
      return name;
    }
    auto [name, fresh] = name_of(var.get());
    if (fresh) {
      const std::string label = var.is_constant() ? constant_text(var.constant_value())
                                                  : (var.name().empty() ? "input" : var.name());
      out += fmt::format("  {} [shape=ellipse, label=\"{}\"];\n", name, escape(label));
    }
    return name;
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
