#include "convgraph/graph/variable.hpp"

#include <fmt/format.h>

#include <atomic>
#include <optional>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"

namespace convgraph {
namespace {
std::uint64_t next_id() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}
}  // namespace

VariableData* Variable::checked() const {
  if (!data_) throw ValueError("use of an undefined (empty) Variable handle");
  return data_.get();
}

Variable& Variable::named(std::string name) {
  checked()->name = std::move(name);
  return *this;
}

const Tensor& Variable::constant_value() const {
  if (!is_constant()) throw ValueError(fmt::format("{} is not a constant", label()));
  return *data_->constant;
}

std::string Variable::label() const {
  if (!data_) return "<undefined>";
  if (!data_->name.empty()) return fmt::format("'{}'", data_->name);
  if (data_->owner != nullptr) {
    return fmt::format("output {} of {} (node #{})", data_->index, data_->owner->op->str(),
                       data_->owner->id);
  }
  if (data_->constant) return fmt::format("constant {}", data_->constant->to_string(8));
  return fmt::format("input #{}", data_->id);
}

Node::~Node() {
  // The first node destroyed on this thread drains a work list; nodes that die while it runs
  // (because it dropped the last handle to them) only move their inputs onto that list. The
  // stack depth stays constant whatever the length of the chain being released.
  thread_local std::vector<Variable>* pending = nullptr;
  if (pending != nullptr) {
    for (Variable& in : inputs) pending->push_back(std::move(in));
    return;
  }
  std::vector<Variable> work = std::move(inputs);
  pending = &work;
  while (!work.empty()) {
    Variable last = std::move(work.back());
    work.pop_back();
    // LAST is released here; if it held the last reference to its node, that node's
    // destructor appends the node's inputs to WORK.
  }
  pending = nullptr;
}

Variable Node::output(int i) {
  return Variable(
      std::shared_ptr<VariableData>(shared_from_this(), &output_data[static_cast<std::size_t>(i)]));
}

std::vector<Variable> Node::outputs() {
  std::vector<Variable> out;
  out.reserve(output_data.size());
  for (int i = 0; i < num_outputs(); ++i) out.push_back(output(i));
  return out;
}

Variable make_input(TensorType type, std::string name) {
  auto data = std::make_shared<VariableData>();
  data->type = std::move(type);
  data->name = std::move(name);
  data->id = next_id();
  return Variable(std::move(data));
}

Variable make_constant(Tensor value, std::string name) {
  if (!value.defined()) throw ValueError("make_constant: the tensor is undefined");
  auto data = std::make_shared<VariableData>();
  data->type = TensorType::of(value);
  data->name = std::move(name);
  data->constant = std::move(value);
  data->id = next_id();
  return Variable(std::move(data));
}

std::shared_ptr<Node> make_node(std::shared_ptr<const Op> op, std::vector<Variable> inputs) {
  if (!op) throw ValueError("make_node: no op given");
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      throw ValueError(fmt::format("{}: input {} is an undefined Variable", op->str(), i));
    }
    if (inputs[i].is_undefined_grad()) {
      throw ValueError(fmt::format("{}: input {} is an undefined gradient ({})", op->str(), i,
                                   inputs[i].undefined_reason()));
    }
    if (inputs[i].type().layout != Layout::logical && !op->understands_layouts()) {
      throw TypeError(fmt::format(
          "{}: input {} ({}) is in layout {}; this op reads the logical order: reorder it first",
          op->str(), i, inputs[i].label(), inputs[i].type().str(),
          layout_name(inputs[i].type().layout, inputs[i].ndim())));
    }
  }
  std::vector<TensorType> types = op->make_outputs(inputs);
  auto node = std::make_shared<Node>();
  node->op = std::move(op);
  node->inputs = std::move(inputs);
  node->id = next_id();
  node->output_data.resize(types.size());
  for (std::size_t i = 0; i < types.size(); ++i) {
    auto& out = node->output_data[i];
    out.type = std::move(types[i]);
    out.owner = node.get();
    out.index = static_cast<int>(i);
    out.id = next_id();
  }
  return node;
}

Variable apply(std::shared_ptr<const Op> op, std::vector<Variable> inputs) {
  auto node = make_node(std::move(op), std::move(inputs));
  if (node->num_outputs() == 0) throw ValueError(node->op->str() + " has no outputs");
  return node->output(0);
}

std::vector<Variable> apply_multi(std::shared_ptr<const Op> op, std::vector<Variable> inputs) {
  return make_node(std::move(op), std::move(inputs))->outputs();
}

Variable grad_undefined(const Op& op, int input_index, const Variable& input,
                        const std::string& reason) {
  auto data = std::make_shared<VariableData>();
  data->type = input.type();
  data->id = next_id();
  data->undefined_reason =
      reason.empty() ? fmt::format("{} has no gradient with respect to its input {} ({})", op.str(),
                                   input_index, input.label())
                     : fmt::format("{} has no gradient with respect to its input {} ({}): {}",
                                   op.str(), input_index, input.label(), reason);
  return Variable(std::move(data));
}

Variable scalar(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 0), name);
}
Variable vector(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 1), name);
}
Variable matrix(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 2), name);
}
Variable tensor3(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 3), name);
}
Variable tensor4(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 4), name);
}
Variable tensor5(const std::string& name, DType dtype) {
  return make_input(TensorType::of_rank(dtype, 5), name);
}
Variable tensor(const std::string& name, DType dtype, StaticShape dims) {
  check_static_shape(dims, fmt::format("tensor '{}'", name));
  return make_input(TensorType(dtype, std::move(dims)), name);
}

Layout elementwise_layout(const std::vector<Variable>& inputs, const StaticShape& out,
                          const std::string& op) {
  auto single = [](const TensorType& t) {
    for (const StaticDim& d : t.dims) {
      if (d != StaticDim{1}) return false;
    }
    return true;
  };
  std::optional<std::size_t> blocked;  // the first input in a blocked layout
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = inputs[i].type();
    if (t.layout != Layout::logical && !blocked) blocked = i;
  }
  if (!blocked) return Layout::logical;
  const Variable& first = inputs[*blocked];
  const Layout layout = first.type().layout;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = inputs[i].type();
    if (single(t)) continue;
    if (t.layout != layout) {
      throw TypeError(
          fmt::format("{}: input {} ({}) is in layout {} but input {} ({}) in {}; "
                      "reorder one of them first",
                      op, i, inputs[i].label(), layout_name(t.layout, t.rank()), *blocked,
                      first.label(), layout_name(layout, t.rank())));
    }
    if (t.dims != out || !t.fully_known()) {
      throw TypeError(fmt::format(
          "{}: input {} ({}) in layout {} must have the result's static "
          "shape {}: a broadcast in a blocked order is not the logical one",
          op, i, inputs[i].label(), layout_name(layout, t.rank()), static_shape_str(out)));
    }
  }
  return layout;
}

}  // namespace convgraph
