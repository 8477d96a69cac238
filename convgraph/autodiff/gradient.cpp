#include "convgraph/autodiff/gradient.hpp"

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/assert.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"

namespace convgraph {
namespace {

// Nodes computing ROOTS, inputs before readers.
std::vector<Node*> ancestors_in_order(const std::vector<Variable>& roots) {
  std::vector<Node*> order;
  std::unordered_set<const Node*> done;
  std::unordered_set<const Node*> on_stack;
  struct Frame {
    Node* node;
    std::size_t next;
  };
  std::vector<Frame> stack;
  for (const Variable& root : roots) {
    Node* start = root.owner();
    if (start == nullptr || done.count(start)) continue;
    stack.push_back({start, 0});
    on_stack.insert(start);
    while (!stack.empty()) {
      Frame& f = stack.back();
      if (f.next < f.node->inputs.size()) {
        Node* p = f.node->inputs[f.next++].owner();
        if (p == nullptr || done.count(p)) continue;
        if (on_stack.count(p)) throw ConvGraphError("the graph has a cycle");
        on_stack.insert(p);
        stack.push_back({p, 0});
      } else {
        on_stack.erase(f.node);
        done.insert(f.node);
        order.push_back(f.node);
        stack.pop_back();
      }
    }
  }
  return order;
}

// Sums gradient terms; an undefined-gradient marker among them makes the sum that marker.
Variable sum_terms(const std::vector<Variable>& terms) {
  for (const Variable& t : terms) {
    if (t.is_undefined_grad()) return t;
  }
  Variable total = terms.front();
  for (std::size_t i = 1; i < terms.size(); ++i) total = add(total, terms[i]);
  return total;
}

void check_gradient_type(const Node& node, std::size_t i, const Variable& input,
                         const Variable& g) {
  if (g.is_undefined_grad()) return;
  const TensorType& want = input.type();
  const TensorType& got = g.type();
  bool ok = got.rank() == want.rank() && got.dtype == want.dtype;
  for (int a = 0; ok && a < want.rank(); ++a) {
    const auto& w = want.dims[static_cast<std::size_t>(a)];
    const auto& h = got.dims[static_cast<std::size_t>(a)];
    ok = !(w && h && *w != *h);
  }
  if (!ok) {
    throw ConvGraphError(
        fmt::format("internal error: {}.grad returned type {} for input {} of type {}",
                    node.op->str(), got.str(), i, want.str()));
  }
}

std::vector<Variable> backprop(const std::vector<Variable>& outputs,
                               const std::vector<Variable>& output_grads,
                               const std::vector<Variable>& wrt, const GradOptions& options,
                               const char* who) {
  std::unordered_set<const VariableData*> wrt_set;
  for (std::size_t j = 0; j < wrt.size(); ++j) {
    const Variable& w = wrt[j];
    if (!w.defined()) throw ValueError(fmt::format("{}: wrt[{}] is undefined", who, j));
    if (!is_float(w.dtype())) {
      throw TypeError(fmt::format(
          "{}: wrt[{}] ({}) has dtype {}; gradients exist only with respect to floating-point "
          "variables",
          who, j, w.label(), dtype_name(w.dtype())));
    }
    wrt_set.insert(w.get());
  }

  const std::vector<Node*> order = ancestors_in_order(outputs);
  // Which variables depend on some wrt: only those carry gradients.
  std::unordered_set<const VariableData*> depends(wrt_set);
  for (Node* node : order) {
    bool any = false;
    for (const Variable& in : node->inputs) any = any || depends.count(in.get());
    if (any) {
      for (const auto& out : node->output_data) depends.insert(&out);
    }
  }

  std::unordered_map<const VariableData*, std::vector<Variable>> terms;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (output_grads[i].defined()) terms[outputs[i].get()].push_back(output_grads[i]);
  }

  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    std::shared_ptr<Node> keep = node->shared_from_this();
    bool has_grad = false;
    for (const auto& out : node->output_data) has_grad = has_grad || terms.count(&out);
    bool needs = false;
    for (const Variable& in : node->inputs) needs = needs || depends.count(in.get());
    if (!has_grad || !needs) continue;

    std::vector<Variable> outs = keep->outputs();
    std::vector<Variable> gouts;
    Variable undefined;
    for (const Variable& out : outs) {
      auto t = terms.find(out.get());
      if (t == terms.end()) {
        gouts.push_back(zeros_like(out));
        continue;
      }
      Variable g = sum_terms(t->second);
      if (g.is_undefined_grad()) undefined = g;
      gouts.push_back(g);
    }
    std::vector<Variable> gins;
    if (undefined.defined()) {
      gins.assign(node->inputs.size(), undefined);
    } else {
      gins = node->op->grad(node->inputs, outs, gouts);
      if (gins.size() != node->inputs.size()) {
        throw ConvGraphError(
            fmt::format("internal error: {}.grad returned {} gradients for {} "
                        "inputs",
                        node->op->str(), gins.size(), node->inputs.size()));
      }
    }
    for (std::size_t i = 0; i < node->inputs.size(); ++i) {
      const Variable& in = node->inputs[i];
      if (!depends.count(in.get()) || !gins[i].defined()) continue;
      check_gradient_type(*node, i, in, gins[i]);
      terms[in.get()].push_back(gins[i]);
    }
  }

  std::vector<Variable> result;
  for (std::size_t j = 0; j < wrt.size(); ++j) {
    const Variable& w = wrt[j];
    auto t = terms.find(w.get());
    if (t == terms.end()) {
      if (options.disconnected == DisconnectedPolicy::zero) {
        result.push_back(zeros_like(w));
        continue;
      }
      throw ValueError(fmt::format(
          "{}: the cost does not depend on wrt[{}] ({}{}); pass GradOptions{{.disconnected = "
          "DisconnectedPolicy::zero}} to get zeros instead",
          who, j, w.label(), depends.count(w.get()) ? "" : ", which is not part of its graph"));
    }
    Variable g = sum_terms(t->second);
    if (g.is_undefined_grad()) {
      throw UnsupportedError(
          fmt::format("{}: the gradient with respect to wrt[{}] ({}) does not "
                      "exist: {}",
                      who, j, w.label(), g.undefined_reason()));
    }
    result.push_back(g);
  }
  return result;
}

}  // namespace

std::vector<Variable> grad(const Variable& cost, const std::vector<Variable>& wrt,
                           const GradOptions& options) {
  if (!cost.defined()) throw ValueError("grad: the cost is undefined");
  if (cost.ndim() != 0) {
    throw TypeError(fmt::format(
        "grad: the cost must be a scalar (rank 0), but {} has type {}; reduce it first, e.g. "
        "with sum() or mean()",
        cost.label(), cost.type().str()));
  }
  if (!is_float(cost.dtype())) {
    throw TypeError(fmt::format("grad: the cost must be floating-point, but {} has dtype {}",
                                cost.label(), dtype_name(cost.dtype())));
  }
  return backprop({cost}, {ones_like(cost)}, wrt, options, "grad");
}

Variable grad(const Variable& cost, const Variable& wrt, const GradOptions& options) {
  return grad(cost, std::vector<Variable>{wrt}, options).front();
}

std::vector<Variable> Lop(const std::vector<Variable>& outputs, const std::vector<Variable>& wrt,
                          const std::vector<Variable>& eval_points, const GradOptions& options) {
  if (outputs.size() != eval_points.size()) {
    throw ValueError(fmt::format("Lop: {} outputs but {} eval points; give one per output",
                                 outputs.size(), eval_points.size()));
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined() || !eval_points[i].defined()) {
      throw ValueError(fmt::format("Lop: output {} or its eval point is undefined", i));
    }
    if (!outputs[i].type().accepts(eval_points[i].type())) {
      throw TypeError(fmt::format("Lop: eval point {} has type {}, but output {} has type {}", i,
                                  eval_points[i].type().str(), i, outputs[i].type().str()));
    }
  }
  return backprop(outputs, eval_points, wrt, options, "Lop");
}

namespace {

// POINT, the eval point of WRT (wrt[J]), behind a check that it has WRT's shape: where both
// static dims are known now, else at run time (ShapeError naming both and their shapes). The
// derivative of a function that does not read WRT's value still reads its shape then, so a
// function computing it takes WRT as an input. Dtype, rank and device must match (TypeError).
Variable checked_eval_point(const Variable& wrt, const Variable& point, std::size_t j) {
  const TensorType& want = wrt.type();
  const TensorType& have = point.type();
  if (want.dtype != have.dtype || want.rank() != have.rank() || want.device != have.device ||
      want.layout != have.layout) {
    throw TypeError(fmt::format("Rop: eval point {} has type {}, but wrt[{}] has type {}", j,
                                have.str(), j, want.str()));
  }
  return assert_same_shape(point, wrt,
                           fmt::format("Rop: eval point {} ({}) must have the shape of wrt[{}] "
                                       "({})",
                                       j, point.label(), j, wrt.label()));
}

}  // namespace

std::vector<Variable> Rop(const std::vector<Variable>& outputs, const std::vector<Variable>& wrt,
                          const std::vector<Variable>& eval_points) {
  if (wrt.size() != eval_points.size()) {
    throw ValueError(fmt::format("Rop: {} wrt variables but {} eval points; give one per wrt",
                                 wrt.size(), eval_points.size()));
  }
  std::unordered_map<const VariableData*, Variable> tangent;
  for (std::size_t j = 0; j < wrt.size(); ++j) {
    if (!wrt[j].defined() || !eval_points[j].defined()) {
      throw ValueError(fmt::format("Rop: wrt[{}] or its eval point is undefined", j));
    }
    tangent[wrt[j].get()] = checked_eval_point(wrt[j], eval_points[j], j);
  }
  for (Node* node : ancestors_in_order(outputs)) {
    std::vector<Variable> points;
    bool any = false;
    for (const Variable& in : node->inputs) {
      auto t = tangent.find(in.get());
      points.push_back(t == tangent.end() ? Variable() : t->second);
      any = any || t != tangent.end();
    }
    if (!any) continue;
    std::shared_ptr<Node> keep = node->shared_from_this();
    std::vector<Variable> outs = keep->outputs();
    std::vector<Variable> r = node->op->r_op(node->inputs, outs, points);
    if (r.size() != outs.size()) {
      throw ConvGraphError(
          fmt::format("internal error: {}.r_op returned {} results for {} "
                      "outputs",
                      node->op->str(), r.size(), outs.size()));
    }
    for (std::size_t k = 0; k < outs.size(); ++k) {
      if (r[k].defined()) tangent[outs[k].get()] = r[k];
    }
  }
  std::vector<Variable> result;
  for (const Variable& out : outputs) {
    auto t = tangent.find(out.get());
    result.push_back(t == tangent.end() ? zeros_like(out) : t->second);
  }
  return result;
}

}  // namespace convgraph
