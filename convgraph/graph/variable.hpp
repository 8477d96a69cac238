// Variables and nodes: the symbolic graph. A Variable is a cheap handle with identity semantics.
// The graph is implied by who owns whom: a node owns its inputs (handles) and its outputs; an
// output handle keeps its node alive. There is no global graph object.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/graph/type.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

class Op;
struct Node;
struct SharedValue;  // graph/shared.hpp

struct VariableData {
  TensorType type;
  std::string name;
  Node* owner = nullptr;           // the node computing this value; null for inputs and constants
  int index = 0;                   // which output of OWNER
  std::optional<Tensor> constant;  // set for constants
  std::uint64_t id = 0;            // creation order, for stable printing
  // Set on the markers returned for gradients that do not exist (see grad_undefined).
  std::string undefined_reason;
  // Set for shared variables (graph/shared.hpp): free inputs that hold their own value. Copies of
  // the graph (FunctionGraph) share the container, so a compiled function reads and updates the
  // value the user's handle sees.
  std::shared_ptr<SharedValue> shared;
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(std::shared_ptr<VariableData> data) : data_(std::move(data)) {}

  bool defined() const { return data_ != nullptr; }
  explicit operator bool() const { return defined(); }

  const TensorType& type() const { return checked()->type; }
  DType dtype() const { return type().dtype; }
  int ndim() const { return type().rank(); }
  const std::string& name() const { return checked()->name; }
  // Sets the name shown by debugprint and error messages; returns *this for chaining.
  Variable& named(std::string name);
  Node* owner() const { return checked()->owner; }
  int index() const { return checked()->index; }
  bool is_constant() const { return checked()->constant.has_value(); }
  bool is_shared() const { return checked()->shared != nullptr; }
  const Tensor& constant_value() const;
  bool is_undefined_grad() const { return defined() && !data_->undefined_reason.empty(); }
  const std::string& undefined_reason() const { return checked()->undefined_reason; }
  std::uint64_t id() const { return checked()->id; }

  // A short label for messages: the name, else "<op> output" or "constant", with the id.
  std::string label() const;

  const VariableData* get() const { return data_.get(); }
  VariableData* mutable_data() const { return data_.get(); }
  bool operator==(const Variable& other) const { return data_ == other.data_; }
  bool operator!=(const Variable& other) const { return data_ != other.data_; }
  bool operator<(const Variable& other) const { return data_ < other.data_; }

 private:
  VariableData* checked() const;
  std::shared_ptr<VariableData> data_;
};

struct VariableHash {
  std::size_t operator()(const Variable& v) const { return std::hash<const void*>{}(v.get()); }
};

struct Node : std::enable_shared_from_this<Node> {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Releases the inputs without recursing: a chain of a million nodes, each owning the one
  // before it through its inputs, would otherwise be destroyed one stack frame per node.
  ~Node();

  std::shared_ptr<const Op> op;
  std::vector<Variable> inputs;
  std::vector<VariableData> output_data;  // sized once at construction; never resized
  std::uint64_t id = 0;

  int num_outputs() const { return static_cast<int>(output_data.size()); }
  Variable output(int i);
  std::vector<Variable> outputs();
};

// The layout (runtime/layout.hpp) of the result of an elementwise op on INPUTS whose result has
// static dims OUT: the layout every input holding more than one element shares (a scalar or a
// tensor of dims 1 reads the same in every order). Logical inputs give a logical result. A mix of
// layouts is a TypeError, and so is a blocked input beside another input that broadcasts against
// the result, or any input whose dims are not all known and equal to OUT's (a broadcast in a
// blocked order is not the logical one). OP names the op in messages.
Layout elementwise_layout(const std::vector<Variable>& inputs, const StaticShape& out,
                          const std::string& op);

// A free input of a graph.
Variable make_input(TensorType type, std::string name = "");
// A constant holding VALUE (the tensor is shared, never modified by convgraph).
Variable make_constant(Tensor value, std::string name = "");
// Validates INPUTS with OP, infers the output types and creates the node. All user errors about
// ranks, dtypes and static shapes surface here, at graph-build time.
std::shared_ptr<Node> make_node(std::shared_ptr<const Op> op, std::vector<Variable> inputs);
// make_node and return output 0 / all outputs.
Variable apply(std::shared_ptr<const Op> op, std::vector<Variable> inputs);
std::vector<Variable> apply_multi(std::shared_ptr<const Op> op, std::vector<Variable> inputs);

// A marker returned by Op::grad for an input whose gradient does not exist. Using it as a gradient
// of a requested variable raises an error carrying REASON.
Variable grad_undefined(const Op& op, int input_index, const Variable& input,
                        const std::string& reason = "");

// Convenience constructors for graph inputs (floatX is not assumed: the dtype is explicit).
Variable scalar(const std::string& name, DType dtype);
Variable vector(const std::string& name, DType dtype);
Variable matrix(const std::string& name, DType dtype);
Variable tensor3(const std::string& name, DType dtype);
Variable tensor4(const std::string& name, DType dtype);
Variable tensor5(const std::string& name, DType dtype);
// An input with the given static shape (std::nullopt entries are unknown).
Variable tensor(const std::string& name, DType dtype, StaticShape dims);

}  // namespace convgraph
