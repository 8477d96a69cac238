// In-place computation: an op that can write an output into the buffer of one of its inputs
// (Theano's destroy_map). The in-place pass (optimizer/inplace_pass.hpp) decides where that is
// safe and replaces the op by its in-place form; the plan then hands the kernel the input's
// tensor as the output (runtime/plan.hpp, PlanStep::inplace).
//
// An op opts in by deriving from InplaceCapable besides Op. Its kernel (perform(), or the
// KernelOp's own kernel) must then accept an output that comes in allocated: when it has the
// dtype, shape and contiguous layout the kernel would have allocated, the kernel writes into it;
// otherwise it replaces it with a fresh tensor, as when it comes in empty. Writing into it must
// be correct when it IS the destroyed input (same buffer, same layout): an elementwise loop that
// reads element i of each input before writing element i of the output is.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "convgraph/graph/op.hpp"

namespace convgraph {

class InplaceCapable {
 public:
  virtual ~InplaceCapable() = default;
  // The (output, input) pairs of NODE (an application of this op) where the output could be
  // computed into the input's buffer: same dtype and device, and the input not broadcast to the
  // output's shape. Whether that is safe in the graph is the pass's business, not the op's.
  virtual std::vector<std::pair<int, int>> inplace_candidates(const Node& node) const = 0;
  // This op computing output OUTPUT into the buffer of input INPUT (a pair that
  // inplace_candidates returned). Its str() says so ("Elemwise{sub,inplace}").
  virtual std::shared_ptr<const Op> with_inplace(int output, int input) const = 0;
  // The (output, input) pairs this op writes in place; empty for the ordinary form.
  virtual std::vector<std::pair<int, int>> destroy_map() const = 0;
};

// OP's destroy_map(), or nothing for an op that is not InplaceCapable.
inline std::vector<std::pair<int, int>> destroy_map_of(const Op& op) {
  const auto* capable = dynamic_cast<const InplaceCapable*>(&op);
  return capable != nullptr ? capable->destroy_map() : std::vector<std::pair<int, int>>{};
}

}  // namespace convgraph
