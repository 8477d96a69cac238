#include "convgraph/optimizer/conv_epilogue_pass.hpp"

#include <memory>
#include <optional>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/optimizer/conv_registry.hpp"

namespace convgraph {
namespace {

bool is_one(const StaticDim& d) {
  return d && *d == 1;
}

// The only node reading V, reading it once; null when V has another reader, is a function
// output or is not read.
Node* sole_reader(const FunctionGraph& graph, const Variable& v) {
  const auto& clients = graph.clients(v);
  if (clients.size() != 1 || clients[0].node == nullptr) return nullptr;
  return clients[0].node;
}

bool is_elemwise(const Node& n, ScalarOp op) {
  const auto* e = dynamic_cast<const Elemwise*>(n.op.get());
  return e != nullptr && e->scalar_op() == op && n.num_outputs() == 1;
}

// The operand of the binary add N that is not V (V read once by it). The add must have recorded
// its broadcast patterns (as the builder functions do): one made without them broadcasts by numpy
// rules at run time, which the static checks below cannot vouch for.
std::optional<Variable> other_operand(const Node& n, const Variable& v) {
  if (!is_elemwise(n, ScalarOp::add) || n.inputs.size() != 2) return std::nullopt;
  if (static_cast<const Elemwise&>(*n.op).input_broadcastable().empty()) return std::nullopt;
  if (n.inputs[0] == v && n.inputs[1] != v) return n.inputs[1];
  if (n.inputs[1] == v && n.inputs[0] != v) return n.inputs[0];
  return std::nullopt;
}

// Whether B, added to a value of type OUT, is a per-channel bias: OUT's rank and dtype, static
// dim 1 on every axis but the channel axis, and broadcasting on the channel axis exactly where
// OUT does (so the add's result has OUT's shape whenever it runs).
bool is_bias(const Variable& b, const TensorType& out) {
  const TensorType& t = b.type();
  if (t.dtype != out.dtype || t.rank() != out.rank() || t.device != out.device) return false;
  for (int a = 0; a < t.rank(); ++a) {
    const auto i = static_cast<std::size_t>(a);
    if (a == 1) {
      if (is_one(t.dims[i]) != is_one(out.dims[i])) return false;
    } else if (!is_one(t.dims[i])) {
      return false;
    }
  }
  return true;
}

// Whether R, added to a value of type OUT, is a residual: OUT's rank and dtype, and neither
// broadcasting against the other on any axis.
bool is_residual(const Variable& r, const TensorType& out) {
  const TensorType& t = r.type();
  if (t.dtype != out.dtype || t.rank() != out.rank() || t.device != out.device) return false;
  for (std::size_t a = 0; a < t.dims.size(); ++a) {
    if (is_one(t.dims[a]) != is_one(out.dims[a])) return false;
  }
  return true;
}

// The (K,) vector of a bias tensor B (see is_bias): the vector a DimShuffle broadcast, or B with
// its static-1 axes dropped.
Variable bias_vector(const Variable& b) {
  if (Node* producer = b.owner()) {
    if (const auto* ds = dynamic_cast<const DimShuffle*>(producer->op.get())) {
      const Variable& source = producer->inputs[0];
      const std::vector<int>& pattern = ds->pattern();
      bool broadcast_vector = source.ndim() == 1 && pattern.size() == b.type().dims.size();
      for (std::size_t a = 0; broadcast_vector && a < pattern.size(); ++a) {
        broadcast_vector = pattern[a] == (a == 1 ? 0 : -1);
      }
      if (broadcast_vector) return source;
    }
  }
  return dimshuffle(b, {1});
}

ConvSignature signature_of(const Node& node, const ConcreteConv& conv) {
  ConvSignature s;
  s.direction = conv.direction();
  s.params = conv.params();
  s.dtype = node.output_data[0].type.dtype;
  s.device = node.output_data[0].type.device;
  s.output = node.output_data[0].type;
  for (const Variable& in : node.inputs) s.inputs.push_back(in.type());
  return s;
}

// Folds the epilogue that follows NODE when its row supports it; true when it did.
bool fold(FunctionGraph& graph, Node& node, const Config& config) {
  const auto* conv = dynamic_cast<const ConcreteConv*>(node.op.get());
  if (conv == nullptr || conv->direction() != ConvDirection::forward || !conv->epilogue().empty() ||
      node.num_outputs() != 1 || node.inputs.size() != 2) {
    return false;
  }
  const ConvImplementation* row = conv_registry().find(conv->implementation());
  if (row == nullptr || !row->hooks.supports_epilogue || !row->hooks.build_epilogue) return false;
  const ConvSignature signature = signature_of(node, *conv);
  const TensorType out = node.output_data[0].type;
  auto supported = [&](const ConvEpilogue& e) {
    return !row->hooks.supports_epilogue(signature, e).has_value();
  };

  ConvEpilogue epilogue;
  Variable end = node.output(0);  // the value the folded node replaces
  Variable bias, residual;
  Node* reader = sole_reader(graph, end);
  if (reader != nullptr) {
    if (const auto other = other_operand(*reader, end); other && is_bias(*other, out)) {
      ConvEpilogue next = epilogue;
      next.bias = true;
      if (supported(next)) {
        epilogue = next;
        bias = *other;
        end = reader->output(0);
        reader = sole_reader(graph, end);
      }
    }
  }
  if (reader != nullptr) {
    if (const auto other = other_operand(*reader, end); other && is_residual(*other, out)) {
      ConvEpilogue next = epilogue;
      next.residual = true;
      if (supported(next)) {
        epilogue = next;
        residual = *other;
        end = reader->output(0);
        reader = sole_reader(graph, end);
      }
    }
  }
  if (reader != nullptr && is_elemwise(*reader, ScalarOp::relu)) {
    ConvEpilogue next = epilogue;
    next.relu = true;
    if (supported(next)) {
      epilogue = next;
      end = reader->output(0);
    }
  }
  if (epilogue.empty()) return false;

  std::vector<Variable> inputs = node.inputs;
  if (epilogue.bias) inputs.push_back(bias_vector(bias));
  if (epilogue.residual) inputs.push_back(residual);
  const Variable folded = row->hooks.build_epilogue(signature, inputs, epilogue, config);
  graph.replace(end, folded, "conv_epilogue: " + epilogue.str());
  return true;
}

}  // namespace

int fold_conv_epilogues(FunctionGraph& graph, const Config& config) {
  // Held, so that nodes the replacements prune stay valid to look at (they are skipped).
  std::vector<std::shared_ptr<Node>> convs;
  for (Node* n : graph.toposort()) {
    if (dynamic_cast<const ConcreteConv*>(n->op.get()) != nullptr) {
      convs.push_back(n->shared_from_this());
    }
  }
  int folded = 0;
  for (const std::shared_ptr<Node>& n : convs) {
    if (graph.contains(n.get()) && fold(graph, *n, config)) ++folded;
  }
  return folded;
}

}  // namespace convgraph
