#include "convgraph/ops/tensor/fused_elemwise.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "convgraph/base/error.hpp"
#include "convgraph/codegen/loop_plan.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

// The name a step shows in descriptions: "add", "cast{float32}", "sum{0, 2, 3}".
std::string step_label(const Op& op) {
  if (const auto* e = dynamic_cast<const Elemwise*>(&op)) {
    return std::string(scalar_op_name(e->scalar_op()));
  }
  if (const auto* c = dynamic_cast<const Cast*>(&op)) {
    return fmt::format("cast{{{}}}", dtype_name(c->target()));
  }
  if (const auto* r = dynamic_cast<const Reduce*>(&op)) {
    return fmt::format("{}{{{}{}}}", reduce_op_name(r->op()), fmt::join(r->axes(), ", "),
                       r->keepdims() ? ", keepdims" : "");
  }
  return op.str();
}

std::string constant_label(const Tensor& t, int index) {
  if (t.rank() == 0) return fmt::format("{}", t.item<double>());
  return fmt::format("c{}", index);
}

bool same_constant(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         a.to_vector<double>() == b.to_vector<double>();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FusedSubgraph

std::vector<Tensor> FusedSubgraph::evaluate(const std::vector<Tensor>& inputs) const {
  std::vector<Tensor> values(steps.size());
  for (std::size_t s = 0; s < steps.size(); ++s) {
    std::vector<Tensor> args;
    for (const Ref& ref : steps[s].args) {
      switch (ref.kind) {
        case Ref::Kind::input:
          args.push_back(inputs.at(static_cast<std::size_t>(ref.index)));
          break;
        case Ref::Kind::constant:
          args.push_back(constants.at(static_cast<std::size_t>(ref.index)));
          break;
        case Ref::Kind::step:
          args.push_back(values.at(static_cast<std::size_t>(ref.index)));
          break;
      }
    }
    std::vector<Tensor> outs(1);
    steps[s].op->perform(args, outs);
    values[s] = outs.at(0);
  }
  std::vector<Tensor> result;
  for (int s : outputs) result.push_back(values.at(static_cast<std::size_t>(s)));
  return result;
}

std::string FusedSubgraph::describe(std::size_t max_chars) const {
  std::function<std::string(const Ref&)> text = [&](const Ref& ref) -> std::string {
    switch (ref.kind) {
      case Ref::Kind::input:
        return fmt::format("i{}", ref.index);
      case Ref::Kind::constant:
        return constant_label(constants.at(static_cast<std::size_t>(ref.index)), ref.index);
      case Ref::Kind::step:
        break;
    }
    const Step& step = steps.at(static_cast<std::size_t>(ref.index));
    std::vector<std::string> args;
    for (const Ref& a : step.args) args.push_back(text(a));
    return fmt::format("{}({})", step_label(*step.op), fmt::join(args, ", "));
  };
  std::vector<std::string> exprs;
  std::size_t length = 0;
  for (int s : outputs) {
    exprs.push_back(text(Ref{Ref::Kind::step, s}));
    length += exprs.back().size() + 2;
    if (length > max_chars) break;
  }
  if (length <= max_chars + 2) return fmt::format("{}", fmt::join(exprs, ", "));
  std::vector<std::string> names;
  for (const Step& step : steps) {
    std::string label = step_label(*step.op);
    if (std::find(names.begin(), names.end(), label) == names.end()) names.push_back(label);
  }
  std::string result = fmt::format("{} ops: ", steps.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (result.size() + names[i].size() > max_chars) {
      result += "...";
      break;
    }
    result += (i ? ", " : "") + names[i];
  }
  if (outputs.size() > 1) result += fmt::format("; {} outputs", outputs.size());
  return result;
}

// ---------------------------------------------------------------------------------------------
// FusedSubgraphOp

std::string FusedSubgraphOp::str() const {
  return fmt::format("FusedSubgraph{{{}}}", subgraph_.describe());
}

bool FusedSubgraphOp::equals(const Op& other) const {
  const auto* o = dynamic_cast<const FusedSubgraphOp*>(&other);
  if (o == nullptr) return false;
  const FusedSubgraph& a = subgraph_;
  const FusedSubgraph& b = o->subgraph_;
  if (a.outputs != b.outputs || a.steps.size() != b.steps.size() ||
      a.constants.size() != b.constants.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.constants.size(); ++i) {
    if (!same_constant(a.constants[i], b.constants[i])) return false;
  }
  for (std::size_t s = 0; s < a.steps.size(); ++s) {
    const auto& x = a.steps[s];
    const auto& y = b.steps[s];
    if (!x.op->equals(*y.op) || x.args.size() != y.args.size()) return false;
    for (std::size_t k = 0; k < x.args.size(); ++k) {
      if (x.args[k].kind != y.args[k].kind || x.args[k].index != y.args[k].index) return false;
    }
  }
  return true;
}

std::size_t FusedSubgraphOp::hash() const {
  std::size_t seed = hash_values(std::string("FusedSubgraph"), subgraph_.steps.size());
  for (const auto& step : subgraph_.steps) seed = hash_combine(seed, step.op->hash());
  return hash_combine(seed, hash_range(subgraph_.outputs));
}

std::vector<TensorType> FusedSubgraphOp::make_outputs(const std::vector<Variable>& inputs) const {
  std::vector<Variable> values;
  for (const auto& step : subgraph_.steps) {
    std::vector<Variable> args;
    for (const auto& ref : step.args) {
      switch (ref.kind) {
        case FusedSubgraph::Ref::Kind::input:
          if (ref.index >= static_cast<int>(inputs.size())) {
            throw ValueError(fmt::format("{}: reads input {} but {} inputs were given", str(),
                                         ref.index, inputs.size()));
          }
          args.push_back(inputs[static_cast<std::size_t>(ref.index)]);
          break;
        case FusedSubgraph::Ref::Kind::constant:
          args.push_back(
              make_constant(subgraph_.constants.at(static_cast<std::size_t>(ref.index))));
          break;
        case FusedSubgraph::Ref::Kind::step:
          args.push_back(values.at(static_cast<std::size_t>(ref.index)));
          break;
      }
    }
    values.push_back(apply(step.op, args));
  }
  std::vector<TensorType> types;
  for (int s : subgraph_.outputs) types.push_back(values.at(static_cast<std::size_t>(s)).type());
  return types;
}

void FusedSubgraphOp::perform(const std::vector<Tensor>& inputs,
                              std::vector<Tensor>& outputs) const {
  outputs = subgraph_.evaluate(inputs);
}

// ---------------------------------------------------------------------------------------------
// FusedElemwise

namespace {

// Runs a compiled fused kernel: allocates the outputs for the inputs' iteration shape (or writes
// the ones the memory plan gave).
class FusedElemwiseKernel final : public Kernel {
 public:
  FusedElemwiseKernel(std::shared_ptr<const codegen::FusedKernel> kernel, std::string label)
      : kernel_(std::move(kernel)), label_(std::move(label)) {}

  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    const codegen::FusedIR& ir = kernel_->ir();
    const Shape shape = codegen::infer_iteration_shape(ir, inputs);
    outputs.resize(ir.outputs().size());
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      // An output handed in (the memory plan's buffer, or an input's for an in-place step) is
      // written into when it is what the kernel would allocate: the generated loop writes element
      // i of each output only after reading element i of every input.
      const Shape out_shape = codegen::fused_output_shape(ir, k, shape);
      outputs[k] = output_buffer(outputs[k], ir.output_dtype(k), out_shape);
    }
    kernel_->run(inputs, outputs, shape);
  }
  bool writes_given_outputs() const override { return true; }

  std::string name() const override {
    return fmt::format("{} [{}]", label_, codegen::fused_backend_name(kernel_->backend()));
  }

 private:
  std::shared_ptr<const codegen::FusedKernel> kernel_;
  std::string label_;
};

}  // namespace

FusedElemwise::FusedElemwise(codegen::FusedIR ir, FusedSubgraph reference,
                             codegen::FusedBackend backend)
    : ir_(std::move(ir)), backend_(backend) {
  if (reference.outputs.size() != ir_.outputs().size()) {
    throw ValueError(fmt::format("FusedElemwise: {} has {} outputs but its reference subgraph {}",
                                 ir_.label(), ir_.outputs().size(), reference.outputs.size()));
  }
  description_ = reference.describe();
  reference_ = std::make_shared<const FusedSubgraphOp>(std::move(reference));
}

std::string FusedElemwise::implementation_name() const {
  return fmt::format("{} [{}]", name(), codegen::fused_backend_name(backend_));
}

std::string FusedElemwise::str() const {
  if (inplace_input_ < 0) return fmt::format("Fused{{{}}}", description_);
  if (inplace_output_ == 0 && inplace_input_ == 0) {
    return fmt::format("Fused{{{},inplace}}", description_);
  }
  if (inplace_output_ == 0)
    return fmt::format("Fused{{{},inplace={}}}", description_, inplace_input_);
  return fmt::format("Fused{{{},inplace={}:{}}}", description_, inplace_output_, inplace_input_);
}

bool FusedElemwise::equals(const Op& other) const {
  const auto* o = dynamic_cast<const FusedElemwise*>(&other);
  return o != nullptr && o->ir_ == ir_ && o->backend_ == backend_ &&
         o->inplace_output_ == inplace_output_ && o->inplace_input_ == inplace_input_;
}

std::size_t FusedElemwise::hash() const {
  return hash_values(std::string("FusedElemwise"), ir_.hash(), static_cast<int>(backend_),
                     inplace_output_, inplace_input_);
}

std::vector<std::pair<int, int>> FusedElemwise::inplace_candidates(const Node& node) const {
  std::vector<std::pair<int, int>> pairs;
  // A reduction's output is smaller than its inputs and is accumulated over them.
  if (ir_.has_reduction()) return pairs;
  const auto& specs = ir_.inputs();
  for (int k = 0; k < node.num_outputs(); ++k) {
    const TensorType& out = node.output_data.at(static_cast<std::size_t>(k)).type;
    if (!out.device.is_cpu()) continue;
    for (std::size_t i = 0; i < node.inputs.size() && i < specs.size(); ++i) {
      const TensorType& in = node.inputs[i].type();
      if (in.dtype != out.dtype || in.device != out.device || in.rank() != out.rank() ||
          in.rank() != ir_.rank()) {
        continue;
      }
      // The kernel broadcasts no axis of it, and no static dim says the shapes differ (an
      // unknown dim equals the iteration's at run time, which the kernel checks). An axis the IR
      // marks broadcast (a static dim 1) where the output's dim is 1 too is no broadcast: the
      // 1x1 filters of a convolution have two.
      bool broadcast = false;
      for (int d = 0; d < in.rank() && !broadcast; ++d) {
        const auto a = in.dims[static_cast<std::size_t>(d)];
        const auto b = out.dims[static_cast<std::size_t>(d)];
        const bool flagged = specs[i].broadcast[static_cast<std::size_t>(d)];
        broadcast = (flagged && !(b && *b == 1)) || (a && b && *a != *b);
      }
      if (!broadcast) pairs.emplace_back(k, static_cast<int>(i));
    }
  }
  return pairs;
}

std::shared_ptr<const Op> FusedElemwise::with_inplace(int output, int input) const {
  if (ir_.has_reduction() || output < 0 || output >= static_cast<int>(ir_.outputs().size()) ||
      input < 0 || input >= static_cast<int>(ir_.inputs().size())) {
    throw ValueError(
        fmt::format("{}: no in-place form writing output {} into input {}", str(), output, input));
  }
  auto op = std::make_shared<FusedElemwise>(*this);
  op->inplace_output_ = output;
  op->inplace_input_ = input;
  return op;
}

std::vector<std::pair<int, int>> FusedElemwise::destroy_map() const {
  if (inplace_input_ < 0) return {};
  return {{inplace_output_, inplace_input_}};
}

std::vector<TensorType> FusedElemwise::make_outputs(const std::vector<Variable>& inputs) const {
  const auto& specs = ir_.inputs();
  if (inputs.size() != specs.size()) {
    throw ValueError(
        fmt::format("{}: {} inputs given, {} expected", str(), inputs.size(), specs.size()));
  }
  const int rank = ir_.rank();
  StaticShape dims(static_cast<std::size_t>(rank));
  std::vector<bool> sized(static_cast<std::size_t>(rank), false);
  std::vector<int> sized_by(static_cast<std::size_t>(rank), -1);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& t = inputs[i].type();
    const auto& flags = specs[i].broadcast;
    if (t.dtype != specs[i].dtype) {
      throw TypeError(fmt::format("{}: input {} ({}) has dtype {}, expected {}", str(), i,
                                  inputs[i].label(), dtype_name(t.dtype),
                                  dtype_name(specs[i].dtype)));
    }
    if (t.rank() != static_cast<int>(flags.size())) {
      throw ShapeError(fmt::format("{}: input {} ({}) has rank {}, expected {}", str(), i,
                                   inputs[i].label(), t.rank(), flags.size()));
    }
    if (!t.device.is_cpu()) {
      throw TypeError(fmt::format("{}: input {} ({}) is on {}; fused kernels run on the CPU", str(),
                                  i, inputs[i].label(), t.device.str()));
    }
    for (int a = 0; a < t.rank(); ++a) {
      const StaticDim d = t.dims[static_cast<std::size_t>(a)];
      const auto axis = static_cast<std::size_t>(rank - t.rank() + a);
      if (flags[static_cast<std::size_t>(a)]) {
        if (d && *d != 1) {
          throw ShapeError(fmt::format(
              "{}: input {} ({}) has dim {} on axis {}, where the kernel broadcasts it (dim 1)",
              str(), i, inputs[i].label(), *d, a));
        }
        continue;
      }
      sized[axis] = true;
      if (!d) continue;
      if (dims[axis] && *dims[axis] != *d) {
        throw ShapeError(fmt::format(
            "{}: input {} ({}) and input {} ({}) do not broadcast: iteration axis {} has dim {} "
            "in one and {} in the other",
            str(), sized_by[axis], inputs[static_cast<std::size_t>(sized_by[axis])].type().str(), i,
            t.str(), axis, *dims[axis], *d));
      }
      dims[axis] = d;
      sized_by[axis] = static_cast<int>(i);
    }
  }
  for (std::size_t axis = 0; axis < dims.size(); ++axis) {
    if (!sized[axis]) dims[axis] = 1;
  }
  std::vector<TensorType> types;
  for (std::size_t k = 0; k < ir_.outputs().size(); ++k) {
    StaticShape out_dims;
    for (int axis = 0; axis < rank; ++axis) {
      if (!ir_.is_reduced_axis(k, axis)) {
        out_dims.push_back(dims[static_cast<std::size_t>(axis)]);
      } else if (ir_.output_reduction(k)->keepdims) {
        out_dims.push_back(1);
      }
    }
    types.emplace_back(ir_.output_dtype(k), out_dims);
  }
  // Blocked operands are taken as they are when no output is reduced (the loop then visits
  // every element once, in any order).
  if (!ir_.has_reduction()) {
    const Layout layout = elementwise_layout(inputs, dims, str());
    for (TensorType& t : types) t.layout = layout;
  } else {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].type().layout != Layout::logical) {
        throw TypeError(fmt::format(
            "{}: input {} ({}) is in layout {}; a reduction reads the "
            "logical order",
            str(), i, inputs[i].label(), layout_name(inputs[i].type().layout, inputs[i].ndim())));
      }
    }
  }
  return types;
}

std::vector<ShapeDims> FusedElemwise::infer_shape(
    const Node& node, const std::vector<ShapeDims>& input_shapes) const {
  const int rank = ir_.rank();
  const auto& specs = ir_.inputs();
  ShapeDims iteration;
  for (int axis = 0; axis < rank; ++axis) {
    // An input that does not broadcast on AXIS has the iteration's dim there at run time: a
    // constant one if there is one, else the first symbolic one.
    std::optional<Dim> constant_dim, symbolic_dim;
    bool sized = false;
    for (std::size_t i = 0; i < input_shapes.size(); ++i) {
      const int in_axis = axis - (rank - static_cast<int>(specs[i].broadcast.size()));
      if (in_axis < 0 || specs[i].broadcast[static_cast<std::size_t>(in_axis)]) continue;
      sized = true;
      const Dim& d = input_shapes[i][static_cast<std::size_t>(in_axis)];
      if (d.is_constant() && !constant_dim) constant_dim = d;
      if (d.is_symbolic() && !symbolic_dim) symbolic_dim = d;
    }
    iteration.push_back(!sized         ? Dim(std::int64_t{1})
                        : constant_dim ? *constant_dim
                        : symbolic_dim ? *symbolic_dim
                                       : Dim::unknown());
  }
  std::vector<ShapeDims> shapes;
  for (std::size_t k = 0; k < static_cast<std::size_t>(node.num_outputs()); ++k) {
    ShapeDims out;
    for (int axis = 0; axis < rank; ++axis) {
      if (!ir_.is_reduced_axis(k, axis)) {
        out.push_back(iteration[static_cast<std::size_t>(axis)]);
      } else if (ir_.output_reduction(k)->keepdims) {
        out.emplace_back(std::int64_t{1});
      }
    }
    shapes.push_back(std::move(out));
  }
  return shapes;
}

std::vector<Variable> FusedElemwise::grad(const std::vector<Variable>& /*inputs*/,
                                          const std::vector<Variable>& /*outputs*/,
                                          const std::vector<Variable>& /*output_grads*/) const {
  throw UnsupportedError(fmt::format(
      "{}: fused nodes exist only in compiled graphs (the fusion pass runs after gradients are "
      "built); take the gradient of the graph before compiling it",
      str()));
}

std::vector<Variable> FusedElemwise::r_op(const std::vector<Variable>& /*inputs*/,
                                          const std::vector<Variable>& /*outputs*/,
                                          const std::vector<Variable>& /*eval_points*/) const {
  throw UnsupportedError(fmt::format(
      "{}: fused nodes exist only in compiled graphs (the fusion pass runs after gradients are "
      "built); apply the R-op to the graph before compiling it",
      str()));
}

void FusedElemwise::perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const {
  reference_->perform(inputs, outputs);
}

std::shared_ptr<const Kernel> FusedElemwise::make_kernel(const Node& node) const {
  auto kernel = codegen::compile_fused(ir_, backend_);
  if (backend_ == codegen::FusedBackend::llvm) {
    // The generated code depends on the loop's shape class (which axes are size 1, merged,
    // broadcast or reduced, and the innermost strides), not on the extents: a run on contiguous
    // tensors with every extent above 2 cut to 2 generates the code the real shapes will use.
    // The outermost iteration axis keeps its extent up to four per thread: whether a reduced one
    // can be split evenly across the threads decides the loop order (see BoundCall).
    const int rank = ir_.rank();
    const std::int64_t outer_cap = std::max<std::int64_t>(2, 4 * codegen::codegen_threads());
    int outer = -1;
    for (const Variable& in : node.inputs) {
      const int r = in.type().rank();
      for (int a = 0; a < r && in.type().fully_known(); ++a) {
        const int axis = rank - r + a;
        if (*in.type().dims[static_cast<std::size_t>(a)] != 1 && (outer < 0 || axis < outer)) {
          outer = axis;
        }
      }
    }
    std::vector<Tensor> proxies;
    for (const Variable& in : node.inputs) {
      if (!in.type().fully_known()) {
        proxies.clear();
        break;
      }
      Shape shape;
      const int r = in.type().rank();
      for (int a = 0; a < r; ++a) {
        const std::int64_t d = *in.type().dims[static_cast<std::size_t>(a)];
        shape.push_back(std::min<std::int64_t>(d, rank - r + a == outer ? outer_cap : 2));
      }
      proxies.push_back(Tensor::full(in.dtype(), shape, 1.0));
    }
    if (!proxies.empty() && proxies.size() == node.inputs.size()) (*kernel)(proxies);
  }
  return std::make_shared<FusedElemwiseKernel>(std::move(kernel), str());
}

}  // namespace convgraph
