#include "convgraph/optimizer/builtin_passes.hpp"

#include <algorithm>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/tensor/assert.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/optimizer/basic_passes.hpp"
#include "convgraph/optimizer/conv_epilogue_pass.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"
#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/fusion_pass.hpp"
#include "convgraph/optimizer/gpu_placement.hpp"
#include "convgraph/optimizer/inplace_pass.hpp"
#include "convgraph/optimizer/layout_pass.hpp"

namespace convgraph {
namespace {

// Whether V is a constant whose every element equals VALUE.
bool constant_equal_to(const Variable& v, double value) {
  if (!v.is_constant()) return false;
  const Tensor& t = v.constant_value();
  if (t.numel() == 0 || t.numel() > 64) return false;
  for (double x : t.to_vector<double>()) {
    if (x != value) return false;
  }
  return true;
}

}  // namespace

std::vector<Variable> rewrite_flip_into_conv(Node& node, const PassContext& /*ctx*/) {
  // conv(x, flip(w over its spatial axes)) == conv with filter_flip toggled on w: the flip copy
  // disappears and the lowering sees the plain kernel.
  const auto* conv = dynamic_cast<const AbstractConv*>(node.op.get());
  if (conv == nullptr || conv->direction() == ConvDirection::grad_weights) return {};
  const int kernel_input = conv->direction() == ConvDirection::forward ? 1 : 0;
  const Variable& kernel = node.inputs[static_cast<std::size_t>(kernel_input)];
  Node* producer = kernel.owner();
  if (producer == nullptr) return {};
  const auto* flip_op = dynamic_cast<const Flip*>(producer->op.get());
  if (flip_op == nullptr) return {};
  const ConvParams& p = conv->params();
  std::vector<int> spatial;
  for (int a = 0; a < p.convdim; ++a) spatial.push_back(p.kernel_rank() - p.convdim + a);
  if (flip_op->axes() != spatial) return {};
  ConvParams toggled = p;
  toggled.filter_flip = !p.filter_flip;
  std::vector<Variable> inputs = node.inputs;
  inputs[static_cast<std::size_t>(kernel_input)] = producer->inputs[0];
  return {convgraph::apply(std::make_shared<AbstractConv>(conv->direction(), toggled), inputs)};
}

std::vector<Variable> rewrite_dimshuffle_of_dimshuffle(Node& node, const PassContext& /*ctx*/) {
  const auto* outer = dynamic_cast<const DimShuffle*>(node.op.get());
  if (outer == nullptr) return {};
  const Variable& in = node.inputs[0];
  // An identity pattern is no op at all.
  bool identity = static_cast<int>(outer->pattern().size()) == in.ndim();
  for (std::size_t i = 0; identity && i < outer->pattern().size(); ++i) {
    identity = outer->pattern()[i] == static_cast<int>(i);
  }
  if (identity) return {in};
  Node* producer = in.owner();
  if (producer == nullptr) return {};
  const auto* inner = dynamic_cast<const DimShuffle*>(producer->op.get());
  if (inner == nullptr) return {};
  // Output axis i of the pair is input axis inner[outer[i]] of the original (-1 stays new).
  std::vector<int> composed;
  for (int axis : outer->pattern()) {
    composed.push_back(axis < 0 ? -1 : inner->pattern()[static_cast<std::size_t>(axis)]);
  }
  return {dimshuffle(producer->inputs[0], composed)};
}

std::vector<Variable> rewrite_elemwise_identity(Node& node, const PassContext& /*ctx*/) {
  const auto* op = dynamic_cast<const Elemwise*>(node.op.get());
  if (op == nullptr) return {};
  const Variable out = node.shared_from_this()->output(0);
  auto keep_if_same_type = [&](const Variable& v) -> std::vector<Variable> {
    if (v.type() == out.type()) return {v};
    return {};
  };
  switch (op->scalar_op()) {
    case ScalarOp::add:
      if (constant_equal_to(node.inputs[1], 0.0)) return keep_if_same_type(node.inputs[0]);
      if (constant_equal_to(node.inputs[0], 0.0)) return keep_if_same_type(node.inputs[1]);
      return {};
    case ScalarOp::sub:
      if (constant_equal_to(node.inputs[1], 0.0)) return keep_if_same_type(node.inputs[0]);
      return {};
    case ScalarOp::mul:
      if (constant_equal_to(node.inputs[1], 1.0)) return keep_if_same_type(node.inputs[0]);
      if (constant_equal_to(node.inputs[0], 1.0)) return keep_if_same_type(node.inputs[1]);
      return {};
    case ScalarOp::true_div:
      if (constant_equal_to(node.inputs[1], 1.0)) return keep_if_same_type(node.inputs[0]);
      return {};
    case ScalarOp::neg: {
      Node* producer = node.inputs[0].owner();
      const auto* inner = producer ? dynamic_cast<const Elemwise*>(producer->op.get()) : nullptr;
      if (inner != nullptr && inner->scalar_op() == ScalarOp::neg) {
        return keep_if_same_type(producer->inputs[0]);
      }
      return {};
    }
    default:
      return {};
  }
}

std::vector<Variable> rewrite_remove_proven_assert(Node& node, const PassContext& /*ctx*/) {
  const auto* op = dynamic_cast<const Assert*>(node.op.get());
  if (op == nullptr) return {};
  std::vector<Variable> open;
  for (std::size_t i = 1; i < node.inputs.size(); ++i) {
    const Variable& c = node.inputs[i];
    if (constant_equal_to(c, 1.0)) continue;
    open.push_back(c);
  }
  if (open.size() + 1 == node.inputs.size()) return {};
  if (open.empty()) return {node.inputs[0]};
  return {assert_op(node.inputs[0], open, op->message(), op->kind())};
}

void register_builtin_passes(PassDatabase& db) {
  // Early clean-up: share equal subexpressions, bring the graph to canonical form, fold
  // constants, and drop the asserts that folding proved.
  db.add({"merge",
          0,
          {"fast_run", "fast_compile"},
          "merge equal constants and equal nodes",
          [](FunctionGraph& g, const PassContext&) { g.merge_equal_nodes(); }});
  db.add({"canonicalize",
          1,
          {"fast_run", "fast_compile"},
          "fold kernel flips into filter_flip, compose DimShuffles, drop x+0, x*1, -(-x)",
          equilibrium({{"flip_into_conv", rewrite_flip_into_conv},
                       {"dimshuffle_of_dimshuffle", rewrite_dimshuffle_of_dimshuffle},
                       {"elemwise_identity", rewrite_elemwise_identity}})});
  db.add({"constant_folding",
          2,
          {"fast_run"},
          "evaluate nodes whose inputs are all constants",
          [](FunctionGraph& g, const PassContext&) {
            if (fold_constants(g) > 0) g.merge_equal_nodes();
          }});
  db.add({"remove_proven_asserts",
          3,
          {"fast_run", "shape_assert"},
          "drop Assert conditions that are constant true",
          equilibrium({{"remove_proven_assert", rewrite_remove_proven_assert}})});
  // With device=cuda: move what can run on the GPU there, with transfers at the edges.
  db.add({"gpu_placement",
          5,
          {"fast_run", "fast_compile", "gpu"},
          "device=cuda: move convolutions to the GPU, transfers only where values cross",
          place_on_device});
  // Convolution lowering, in order conv_meta (10) -> conv_impl (15) -> conv_dnn_winograd (17) ->
  // conv_winograd (18) -> conv_dnn (20) -> conv_gemm (30), then the check that nothing abstract is
  // left. The implementations each lowering pass applies, and the pass's tags besides fast_run /
  // fast_compile, come from the rows of the registry (conv_registry.cpp) that name it.
  db.add({"conv_meta",
          10,
          {"conv_meta"},
          "time every applicable convolution implementation and keep the fastest (only when "
          "included: optimizer_including=conv_meta)",
          conv_meta_pass()});
  db.add({"conv_impl",
          15,
          {"fast_run", "fast_compile", "conv_impl"},
          "conv.impl=NAME[:NAME...]: lower each convolution with the first listed implementation "
          "that takes it (the later lowering passes then take nothing)",
          select_conv_implementations});
  db.add(conv_lowering_entry("conv_dnn_winograd", 17,
                             "lower 3x3 stride-1 float32 convolutions on AVX-512 CPUs to oneDNN's "
                             "Winograd F(4x4, 3x3) where it measured faster than convgraph's"));
  db.add(conv_lowering_entry("conv_winograd", 18,
                             "lower 3x3 stride-1 float32 convolutions on the CPU to Winograd "
                             "F(4x4, 3x3) where it measured faster than oneDNN"));
  db.add(conv_lowering_entry("conv_dnn", 20, "lower abstract convolutions on the CPU to oneDNN"));
  db.add(
      conv_lowering_entry("conv_dnn_gpu", 20, "lower abstract convolutions on the GPU to cuDNN"));
  db.add(conv_lowering_entry(
      "conv_gemm", 30, "lower abstract convolutions on the CPU to im2col + GEMM (CorrMM family)"));
  db.add(conv_lowering_entry(
      "conv_gemm_gpu", 30,
      "lower abstract convolutions on the GPU to im2col + GEMM (GpuCorrMM family)"));
  db.add({"conv_check",
          40,
          {"fast_run", "fast_compile"},
          "fail when an abstract convolution has no implementation",
          check_no_abstract_conv});
  // Late clean-up: lowering may create equal nodes.
  db.add({"merge_late",
          90,
          {"fast_run", "fast_compile"},
          "merge equal nodes after lowering",
          [](FunctionGraph& g, const PassContext&) { g.merge_equal_nodes(); }});
  // Convolution epilogues: bias, residual add and ReLU after a forward convolution folded into
  // the convolution node where its implementation applies them (the registry rows say which).
  // Before fusion, which would otherwise take the bias add into a generated kernel.
  db.add({"conv_epilogue",
          94,
          {"fast_run", "conv_epilogue"},
          "fold bias, residual add and ReLU after a forward convolution into the convolution "
          "node, where its implementation applies them (corrmm, onednn)",
          [](FunctionGraph& g, const PassContext& ctx) { fold_conv_epilogues(g, ctx.config); }});
  // Elementwise fusion, on the final graph: connected Elemwise/Cast subgraphs on the CPU (and a
  // sum or mean reading one) become one generated kernel each.
  db.add({"fusion",
          95,
          {"fast_run", "fusion"},
          "fuse connected elementwise subgraphs on the CPU (and a sum or mean ending one) into one "
          "generated kernel",
          [](FunctionGraph& g, const PassContext& ctx) { fuse_elementwise(g, ctx.config); }});
  // Layouts kept across layers: after the epilogues and fusion, which decide what sits between
  // two convolutions, and before in-place, which must see the final graph.
  db.add({"layout",
          96,
          {"fast_run", "layout"},
          "keep oneDNN's blocked layouts on the values passed between convolutions (directly or "
          "through elementwise nodes), with a LayoutReorder where a reader needs the logical "
          "order",
          [](FunctionGraph& g, const PassContext& ctx) { choose_layouts(g, ctx.config); }});
  // Last: nothing may rewrite the graph after it, since merging or replacing nodes could give a
  // destroyed value a reader after its destroyer.
  db.add({"inplace",
          99,
          {"fast_run", "inplace"},
          "let elementwise nodes write their output into an input nobody reads afterwards (not "
          "an input, constant, output or viewed value of the function)",
          [](FunctionGraph& g, const PassContext& ctx) { make_inplace(g, ctx); }});
}

}  // namespace convgraph
