#include "convgraph/optimizer/fusion_pass.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/fused_elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"

namespace convgraph {
namespace {

using codegen::FusedBackend;

// Whether N may join a group: a single-output Elemwise (with recorded broadcast patterns, so that
// the kernel broadcasts exactly where the op does) or Cast, on the CPU.
bool is_fusible(const Node& n) {
  if (n.num_outputs() != 1) return false;
  const TensorType& out = n.output_data[0].type;
  if (!out.device.is_cpu() || out.rank() > codegen::kMaxFusedRank) return false;
  for (const Variable& in : n.inputs) {
    if (!in.type().device.is_cpu()) return false;
  }
  if (const auto* e = dynamic_cast<const Elemwise*>(n.op.get())) {
    return !e->input_broadcastable().empty();
  }
  return dynamic_cast<const Cast*>(n.op.get()) != nullptr;
}

bool is_cast(const Node& n) {
  return dynamic_cast<const Cast*>(n.op.get()) != nullptr;
}

// The axes along which N reads input I as broadcast (extent 1): what Elemwise recorded, or for a
// Cast (which keeps its input's shape) the input's static dims of 1.
std::vector<bool> read_flags(const Node& n, std::size_t i) {
  if (const auto* e = dynamic_cast<const Elemwise*>(n.op.get())) {
    return e->input_broadcastable()[i];
  }
  std::vector<bool> flags;
  for (const StaticDim& d : n.inputs[i].type().dims) flags.push_back(d == StaticDim{1});
  return flags;
}

// A rank-0 constant whose value a double holds exactly: it becomes a constant of the kernel.
bool kernel_constant(const Variable& v) {
  if (!v.is_constant() || v.ndim() != 0) return false;
  const Tensor& t = v.constant_value();
  if (t.dtype() == DType::int64) {
    const std::int64_t x = t.item<std::int64_t>();
    return x >= -(std::int64_t{1} << 53) && x <= (std::int64_t{1} << 53);
  }
  return true;
}

// The Reduce ops the kernel's final reduction can take over exactly.
std::optional<codegen::FusedReduceKind> fusible_reduction(const Node& n) {
  const auto* r = dynamic_cast<const Reduce*>(n.op.get());
  if (r == nullptr || r->axes().empty() || !n.output_data[0].type.device.is_cpu()) {
    return std::nullopt;
  }
  if (r->op() == ReduceOp::sum) return codegen::FusedReduceKind::sum;
  if (r->op() == ReduceOp::mean && is_float(n.inputs[0].dtype())) {
    return codegen::FusedReduceKind::mean;
  }
  return std::nullopt;
}

FusedBackend backend_from(const Config& config) {
  return codegen::fused_backend_for(config.get("codegen.backend"));
}

// What a valid group looks like: its iteration rank and the members (topological positions)
// whose values leave it.
struct GroupShape {
  int rank = 0;
  std::vector<int> outputs;
};

// The Reduce nodes that become reduced outputs of a group: per output of the group (in
// GroupShape::outputs order), the sum/mean nodes reading it, and whether something else reads it
// too (then the value stays an output next to its reductions).
struct GroupReductions {
  std::vector<std::vector<Node*>> readers;
  std::vector<bool> kept;
  std::size_t count = 0;
};

// Grows and replaces groups one at a time on the current graph: a group is checked against the
// graph as it is, earlier fused nodes included, so that replacing it can never make a cycle (two
// groups each convex on their own could depend on each other once both are contracted).
class Fuser {
 public:
  Fuser(FunctionGraph& graph, FusedBackend backend) : graph_(graph), backend_(backend) {}

  int run() {
    int made = 0;
    refresh();
    int cursor = static_cast<int>(order_.size()) - 1;
    while (cursor >= 0) {
      const int seed = cursor--;
      Node* node = order_[static_cast<std::size_t>(seed)];
      if (done_.count(node) || !is_fusible(*node)) continue;
      const std::vector<int> members = grow(seed);
      for (int p : members) done_.insert(order_[static_cast<std::size_t>(p)]);
      const std::optional<GroupShape> shape = analyze(members);
      if (!shape) continue;
      const GroupReductions reductions = reductions_of(members, *shape);
      if (members.size() + reductions.count < 2) continue;
      // The fused node takes the last member's position: its inputs come before it, and every
      // reader of its values (of a member, or of a Reduce reading one) comes after it.
      const int last = members.back();
      std::vector<const Node*> gone;
      for (int p : members) gone.push_back(order_[static_cast<std::size_t>(p)]);
      for (const auto& readers : reductions.readers) {
        gone.insert(gone.end(), readers.begin(), readers.end());
      }
      Node* fused = replace(members, *shape, reductions);
      if (fused == nullptr) continue;
      ++made;
      if (!place(fused, last, gone)) {
        // Positions changed; the nodes not done yet are all still ahead of the cursor's scan.
        refresh();
        cursor = static_cast<int>(order_.size()) - 1;
      }
    }
    return made;
  }

 private:
  // The largest group grown here; beyond it, a group stops growing (bounds the pass's time).
  static constexpr std::size_t kMaxMembers = 32;

  void refresh() {
    order_ = graph_.toposort();
    pos_.clear();
    for (std::size_t p = 0; p < order_.size(); ++p) pos_[order_[p]] = static_cast<int>(p);
    mark_.assign(order_.size(), 0);
    visited_.assign(order_.size(), 0);
  }

  // Puts FUSED, which replaced the nodes GONE, at position LAST (the last of them) when that keeps
  // the order topological: every reader of its outputs comes later. The other positions stay
  // valid, so the scan goes on without sorting the graph again (which would make the pass
  // quadratic in the number of groups). False when a reader comes earlier: the caller re-sorts.
  bool place(Node* fused, int last, const std::vector<const Node*>& gone) {
    for (int k = 0; k < fused->num_outputs(); ++k) {
      for (const auto& client : graph_.clients(fused->output(k))) {
        if (client.node != nullptr && position(client.node) <= last) return false;
      }
    }
    for (const Node* n : gone) pos_.erase(n);
    order_[static_cast<std::size_t>(last)] = fused;
    pos_[fused] = last;
    done_.insert(fused);
    return true;
  }

  bool candidate(const Node* n) const {
    return n != nullptr && pos_.count(n) && !done_.count(n) && is_fusible(*n);
  }

  // A group around SEED: the fusible producers and readers of its members, added one at a time
  // while the group stays valid (analyze) and convex, until none can be added.
  std::vector<int> grow(int seed) {
    std::vector<int> members = {seed};
    for (bool changed = true; changed && members.size() < kMaxMembers;) {
      changed = false;
      std::vector<int> around;
      for (int p : members) {
        Node* n = order_[static_cast<std::size_t>(p)];
        for (const Variable& in : n->inputs) {
          if (candidate(in.owner())) around.push_back(position(in.owner()));
        }
        for (const auto& client : graph_.clients(n->output(0))) {
          if (candidate(client.node)) around.push_back(position(client.node));
        }
      }
      std::sort(around.begin(), around.end());
      around.erase(std::unique(around.begin(), around.end()), around.end());
      for (auto it = around.rbegin(); it != around.rend() && members.size() < kMaxMembers; ++it) {
        if (std::binary_search(members.begin(), members.end(), *it)) continue;
        std::vector<int> bigger = members;
        bigger.insert(std::lower_bound(bigger.begin(), bigger.end(), *it), *it);
        if (!analyze(bigger) || !convex(bigger)) continue;
        members = std::move(bigger);
        changed = true;
      }
    }
    return members;
  }

  int position(const Node* n) const {
    if (n == nullptr) return -1;
    const auto it = pos_.find(n);
    return it == pos_.end() ? -1 : it->second;
  }
  void mark(const std::vector<int>& members) {
    ++stamp_;
    for (int p : members) mark_[static_cast<std::size_t>(p)] = stamp_;
  }
  bool marked(int p) const { return p >= 0 && mark_[static_cast<std::size_t>(p)] == stamp_; }
  Variable value_of(int p) const { return order_[static_cast<std::size_t>(p)]->output(0); }

  // Whether MEMBERS (sorted positions) can be one kernel, and its shape (see the header's rules).
  std::optional<GroupShape> analyze(const std::vector<int>& members) {
    mark(members);
    GroupShape shape;
    for (int p : members) shape.rank = std::max(shape.rank, value_of(p).ndim());
    const int rank = shape.rank;
    // Per member, the axes along which its value is the same everywhere (every input it depends
    // on broadcasts there); for the whole group, the iteration axes where every input broadcasts.
    std::unordered_map<int, std::vector<bool>> pattern;
    std::vector<bool> iteration(static_cast<std::size_t>(rank), true);
    bool has_input = false;
    for (int p : members) {
      const Node& n = *order_[static_cast<std::size_t>(p)];
      const int r = n.output_data[0].type.rank();
      std::vector<bool> mine(static_cast<std::size_t>(r), true);
      for (std::size_t i = 0; i < n.inputs.size(); ++i) {
        const Variable& v = n.inputs[i];
        const int q = position(v.owner());
        std::vector<bool> flags;
        if (marked(q)) {
          flags = pattern.at(q);
          // The op's own broadcasting of an inner value must be the kernel's (which repeats a
          // value exactly along the axes it does not vary on).
          if (!is_cast(n) && flags != read_flags(n, i)) return std::nullopt;
        } else if (kernel_constant(v)) {
          continue;
        } else {
          flags = read_flags(n, i);
          has_input = true;
          for (std::size_t a = 0; a < flags.size(); ++a) {
            const std::size_t axis = static_cast<std::size_t>(rank) - flags.size() + a;
            iteration[axis] = iteration[axis] && flags[a];
          }
        }
        for (std::size_t a = 0; a < flags.size(); ++a) {
          const std::size_t axis = static_cast<std::size_t>(r) - flags.size() + a;
          mine[axis] = mine[axis] && flags[a];
        }
      }
      pattern[p] = std::move(mine);
    }
    if (!has_input) return std::nullopt;
    for (int p : members) {
      const Variable v = value_of(p);
      bool leaves = false;
      for (const auto& client : graph_.clients(v)) {
        leaves = leaves || client.node == nullptr || !marked(position(client.node));
      }
      if (!leaves) continue;
      // A value read outside is an output: it must have the iteration's whole shape.
      if (v.ndim() != rank || pattern.at(p) != iteration) return std::nullopt;
      shape.outputs.push_back(p);
    }
    return shape;
  }

  // Whether no path leaves MEMBERS and comes back (the fused node would depend on itself).
  bool convex(const std::vector<int>& members) {
    mark(members);
    ++visit_stamp_;
    const int last = members.back();
    std::vector<int> stack;
    auto push_readers = [&](Node& n) {
      for (int k = 0; k < n.num_outputs(); ++k) {
        for (const auto& client : graph_.clients(n.output(k))) {
          const int q = position(client.node);
          if (q < 0 || q > last || visited_[static_cast<std::size_t>(q)] == visit_stamp_) {
            continue;
          }
          visited_[static_cast<std::size_t>(q)] = visit_stamp_;
          stack.push_back(q);
        }
      }
    };
    for (int p : members) {
      for (const auto& client : graph_.clients(value_of(p))) {
        const int q = position(client.node);
        if (q < 0 || marked(q) || q > last) continue;
        if (visited_[static_cast<std::size_t>(q)] == visit_stamp_) continue;
        visited_[static_cast<std::size_t>(q)] = visit_stamp_;
        stack.push_back(q);
      }
    }
    while (!stack.empty()) {
      const int q = stack.back();
      stack.pop_back();
      if (marked(q)) return false;
      push_readers(*order_[static_cast<std::size_t>(q)]);
    }
    return true;
  }

  // The Reduce nodes that can become reduced outputs of the kernel: sums and means reading an
  // output of the group. The output itself stays when something else reads it (the convolution's
  // backward next to the bias gradient) or the function returns it.
  GroupReductions reductions_of(const std::vector<int>& members, const GroupShape& shape) {
    mark(members);
    GroupReductions result;
    for (int p : shape.outputs) {
      std::vector<Node*> readers;
      bool kept = false;
      for (const auto& client : graph_.clients(value_of(p))) {
        Node* reader = client.node;
        if (reader != nullptr && marked(position(reader))) continue;  // inside the group
        if (reader != nullptr && fusible_reduction(*reader)) {
          if (std::find(readers.begin(), readers.end(), reader) == readers.end()) {
            readers.push_back(reader);
          }
        } else {
          kept = true;
        }
      }
      result.count += readers.size();
      result.readers.push_back(std::move(readers));
      result.kept.push_back(kept);
    }
    return result;
  }

  // The fused node now computing the group's values, or null when the group was left alone.
  Node* replace(const std::vector<int>& members, const GroupShape& shape,
                const GroupReductions& reductions) {
    using Ref = FusedSubgraph::Ref;
    FusedSubgraph sub;
    std::vector<codegen::FusedInput> specs;
    std::vector<Variable> inputs;
    std::map<std::pair<const VariableData*, std::vector<bool>>, int> input_index;
    std::unordered_map<const VariableData*, int> constant_index;
    std::unordered_map<int, int> step_of;
    mark(members);
    for (int p : members) {
      const Node& n = *order_[static_cast<std::size_t>(p)];
      FusedSubgraph::Step step{n.op, {}};
      for (std::size_t i = 0; i < n.inputs.size(); ++i) {
        const Variable& v = n.inputs[i];
        const int q = position(v.owner());
        if (marked(q)) {
          step.args.push_back(Ref{Ref::Kind::step, step_of.at(q)});
        } else if (kernel_constant(v)) {
          auto [it, added] =
              constant_index.try_emplace(v.get(), static_cast<int>(sub.constants.size()));
          if (added) sub.constants.push_back(v.constant_value());
          step.args.push_back(Ref{Ref::Kind::constant, it->second});
        } else {
          std::vector<bool> flags = read_flags(n, i);
          auto [it, added] = input_index.try_emplace(std::make_pair(v.get(), flags),
                                                     static_cast<int>(specs.size()));
          if (added) {
            specs.push_back(codegen::FusedInput{v.dtype(), std::move(flags)});
            inputs.push_back(v);
          }
          step.args.push_back(Ref{Ref::Kind::input, it->second});
        }
      }
      step_of[p] = static_cast<int>(sub.steps.size());
      sub.steps.push_back(std::move(step));
    }
    // Per group output: the value itself unless only folded reductions read it, then each
    // reduction of it.
    std::vector<Variable> replaced;
    for (std::size_t o = 0; o < shape.outputs.size(); ++o) {
      const int p = shape.outputs[o];
      if (reductions.kept[o]) {
        sub.outputs.push_back(step_of.at(p));
        replaced.push_back(value_of(p));
      }
      for (Node* reduce : reductions.readers[o]) {
        sub.steps.push_back({reduce->op, {Ref{Ref::Kind::step, step_of.at(p)}}});
        sub.outputs.push_back(static_cast<int>(sub.steps.size()) - 1);
        replaced.push_back(reduce->output(0));
      }
    }

    const codegen::FusedIR ir = build_ir(sub, specs, shape.rank);
    auto op = std::make_shared<const FusedElemwise>(ir, std::move(sub), backend_);
    const std::vector<Variable> outputs = apply_multi(op, inputs);
    std::vector<std::pair<Variable, Variable>> pairs;
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      // The fused node's types follow from its inputs' as the ops' did; a disagreement means
      // the group's types are not what its ops recorded (a rewrite changed them): left alone.
      if (!replaced[k].type().accepts(outputs[k].type())) return nullptr;
      pairs.emplace_back(replaced[k], outputs[k]);
    }
    graph_.replace_all(pairs, "fusion: " + op->str());
    return outputs.front().owner();
  }

  static codegen::FusedIR build_ir(const FusedSubgraph& sub,
                                   const std::vector<codegen::FusedInput>& specs, int rank) {
    using Ref = FusedSubgraph::Ref;
    codegen::FusedIRBuilder b(rank, fmt::format("Fused{{{}}}", sub.describe()));
    for (const auto& spec : specs) b.input(spec.dtype, spec.broadcast);
    std::vector<int> loads(specs.size(), -1);
    std::vector<int> constants(sub.constants.size(), -1);
    std::vector<int> values;
    auto value = [&](const Ref& ref) {
      const auto k = static_cast<std::size_t>(ref.index);
      switch (ref.kind) {
        case Ref::Kind::input:
          if (loads[k] < 0) loads[k] = b.load(ref.index);
          return loads[k];
        case Ref::Kind::constant:
          if (constants[k] < 0) {
            const Tensor& t = sub.constants[k];
            const double x = t.dtype() == DType::int64 ? static_cast<double>(t.item<std::int64_t>())
                                                       : t.item<double>();
            constants[k] = b.constant(x, t.dtype());
          }
          return constants[k];
        case Ref::Kind::step:
          break;
      }
      return values.at(k);
    };
    // A Reduce step is no value of the kernel: it becomes a reduced output of its operand.
    std::unordered_map<std::size_t, std::pair<int, const Reduce*>> reduced;
    for (std::size_t s = 0; s < sub.steps.size(); ++s) {
      const auto& step = sub.steps[s];
      std::vector<int> args;
      for (const Ref& ref : step.args) args.push_back(value(ref));
      if (const auto* e = dynamic_cast<const Elemwise*>(step.op.get())) {
        values.push_back(b.op(e->scalar_op(), args));
      } else if (const auto* c = dynamic_cast<const Cast*>(step.op.get())) {
        values.push_back(b.cast(args.at(0), c->target()));
      } else if (const auto* r = dynamic_cast<const Reduce*>(step.op.get())) {
        reduced[s] = {args.at(0), r};
        values.push_back(-1);
      } else {
        throw ConvGraphError(
            fmt::format("internal error: the fusion pass cannot fuse {}", step.op->str()));
      }
    }
    for (int s : sub.outputs) {
      const auto it = reduced.find(static_cast<std::size_t>(s));
      if (it == reduced.end()) {
        b.output(values.at(static_cast<std::size_t>(s)));
        continue;
      }
      const Reduce& r = *it->second.second;
      b.output(
          it->second.first,
          r.op() == ReduceOp::mean ? codegen::FusedReduceKind::mean : codegen::FusedReduceKind::sum,
          r.axes(), r.keepdims());
    }
    return b.build();
  }

  FunctionGraph& graph_;
  FusedBackend backend_;
  std::vector<Node*> order_;
  std::unordered_map<const Node*, int> pos_;
  std::unordered_set<const Node*> done_;
  std::vector<int> mark_;
  int stamp_ = 0;
  std::vector<int> visited_;
  int visit_stamp_ = 0;
};

}  // namespace

int fuse_elementwise(FunctionGraph& graph, const Config& config) {
  return Fuser(graph, backend_from(config)).run();
}

}  // namespace convgraph
