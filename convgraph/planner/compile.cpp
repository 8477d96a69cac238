#include "convgraph/planner/compile.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "convgraph/codegen/object_cache.hpp"
#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/inplace.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/graph/shared.hpp"
#include "convgraph/ops/kernel_op.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/transfer.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/planner/debug_mode.hpp"
#include "convgraph/planner/schedule.hpp"
#include "convgraph/runtime/blas_config.hpp"
#include "convgraph/runtime/cpu_threads.hpp"

namespace convgraph {
namespace {

ValueSpec spec_of(const Variable& var) {
  return ValueSpec{var.name(), var.dtype(), var.type().dims, var.type().device};
}

// What a profile shows of NODE: the op it computes, the implementation that runs it, and how to
// count its FLOPs. A concrete op that does not count its own FLOPs is counted as the op it
// replaced, so a new implementation shows GFLOP/s without writing a count of its own.
void describe_for_profile(const Node& node, bool debug_mode, PlanStep& step) {
  step.op_name = node.op->name();
  step.implementation = "perform";
  if (const auto* concrete = dynamic_cast<const KernelOp*>(node.op.get())) {
    step.implementation = concrete->implementation_name();
    if (auto reference = concrete->reference_op()) {
      step.op_name = reference->name();
      // DebugMode runs the reference beside it (see build_plan): the time includes both.
      if (debug_mode) step.implementation += " (DebugMode)";
      step.flops = [op = node.op, reference](const std::vector<Shape>& in,
                                             const std::vector<Shape>& out) {
        auto count = op->flops(in, out);
        return count ? count : reference->flops(in, out);
      };
    }
  }
  if (!step.flops) {
    step.flops = [op = node.op](const std::vector<Shape>& in, const std::vector<Shape>& out) {
      return op->flops(in, out);
    };
  }
}

// Per output of NODE: whether its shape follows from the shapes of the node's inputs alone. A
// static shape does; otherwise the op's infer_shape, given each input's dims as Shape_i of that
// input, must give dims that are constants or expressions reaching the inputs only through
// Shape / Shape_i. Unknown dims, and expressions reading an input's values (an Alloc's dims, a
// Reshape's shape vector), do not: the memory plan then leaves those values to each call.
std::vector<bool> shapes_follow_inputs(const Node& node) {
  std::vector<bool> follows;
  bool all_static = true;
  for (const auto& out : node.output_data) {
    follows.push_back(out.type.fully_known());
    all_static = all_static && follows.back();
  }
  if (all_static) return follows;
  std::vector<ShapeDims> inferred;
  try {
    std::vector<ShapeDims> input_shapes;
    for (const Variable& in : node.inputs) input_shapes.push_back(shape_dims(in));
    inferred = node.op->infer_shape(node, input_shapes);
  } catch (const ConvGraphError&) {
    return follows;  // no inference: left to each call
  }
  std::unordered_set<const VariableData*> inputs;
  for (const Variable& in : node.inputs) inputs.insert(in.get());
  // Whether VAR is computed from constants and the inputs' shapes only (a bounded walk: a longer
  // expression counts as not).
  auto from_shapes = [&](const Variable& var) {
    std::vector<Variable> stack{var};
    int budget = 256;
    while (!stack.empty()) {
      if (--budget < 0) return false;
      const Variable v = stack.back();
      stack.pop_back();
      if (v.is_constant()) continue;
      if (inputs.count(v.get()) != 0) return false;  // an input's values
      const Node* owner = v.owner();
      if (owner == nullptr) return false;
      const Op& op = *owner->op;
      if ((dynamic_cast<const ShapeI*>(&op) != nullptr ||
           dynamic_cast<const ShapeOp*>(&op) != nullptr) &&
          inputs.count(owner->inputs.at(0).get()) != 0) {
        continue;
      }
      for (const Variable& in : owner->inputs) stack.push_back(in);
    }
    return true;
  };
  for (std::size_t k = 0; k < follows.size() && k < inferred.size(); ++k) {
    if (follows[k]) continue;
    bool ok = inferred[k].size() == node.output_data[k].type.dims.size();
    for (const Dim& d : inferred[k]) {
      if (!ok) break;
      ok = d.is_constant() || (d.is_symbolic() && from_shapes(d.variable()));
    }
    follows[k] = ok;
  }
  return follows;
}

// The variable a function output is read from: with outputs on the device, the device value a
// final HostFromGpu transfers, else the output itself.
Variable output_source(const Variable& out, bool outputs_on_device) {
  Variable source;
  if (outputs_on_device && is_transfer_output(out, &source) && source.type().device.is_cuda()) {
    return source;
  }
  return out;
}

// Whether every reader of input IN is a transfer onto a device (then, with inputs on the device,
// the argument is taken there and the transfer passes it through).
std::optional<Device> device_of_readers(const FunctionGraph& graph, const Variable& in) {
  std::optional<Device> device;
  const auto& readers = graph.clients(in);
  if (readers.empty()) return std::nullopt;
  for (const auto& [node, index] : readers) {
    if (node == nullptr) return std::nullopt;  // the input is also an output
    const auto* t = dynamic_cast<const Transfer*>(node->op.get());
    if (t == nullptr || t->target().is_cpu()) return std::nullopt;
    if (device && *device != t->target()) return std::nullopt;
    device = t->target();
  }
  return device;
}

// The shared variables a compiled function reads: those ROOTS depend on, in the order a
// depth-first walk over ROOTS meets them, then the UPDATES' targets not among them.
std::vector<SharedVariable> shared_inputs(const std::vector<Variable>& roots,
                                          const std::vector<Update>& updates) {
  std::vector<SharedVariable> found;
  std::unordered_set<const VariableData*> seen;
  std::unordered_set<const Node*> visited;
  std::vector<const Variable*> stack;
  auto note = [&](const Variable& v) {
    if (v.is_shared() && seen.insert(v.get()).second) found.emplace_back(v);
  };
  for (auto root = roots.rbegin(); root != roots.rend(); ++root) stack.push_back(&*root);
  while (!stack.empty()) {
    const Variable& var = *stack.back();
    stack.pop_back();
    const Node* node = var.owner();
    if (node == nullptr) {
      note(var);
      continue;
    }
    if (!visited.insert(node).second) continue;
    for (auto in = node->inputs.rbegin(); in != node->inputs.rend(); ++in) stack.push_back(&*in);
  }
  for (const Update& u : updates) note(u.variable);
  return found;
}

// The checks of CompileOptions::updates that need no graph: what each names and the types.
void check_updates(const std::vector<Update>& updates) {
  std::unordered_map<const VariableData*, std::size_t> first;
  for (std::size_t i = 0; i < updates.size(); ++i) {
    const Variable& var = updates[i].variable;
    const Variable& value = updates[i].value;
    if (!var.defined()) throw ValueError(fmt::format("update {}: the variable is undefined", i));
    if (!var.is_shared()) {
      throw ValueError(fmt::format(
          "update {}: {} is not a shared variable; only shared variables (made with shared()) "
          "can be updated",
          i, var.label()));
    }
    const std::string who =
        fmt::format("update {} of shared variable {} ({})", i, var.label(), var.type().str());
    if (auto [it, fresh] = first.emplace(var.get(), i); !fresh) {
      throw ValueError(fmt::format("shared variable {} is updated twice (updates {} and {})",
                                   var.label(), it->second, i));
    }
    if (!value.defined()) throw ValueError(fmt::format("{}: the new value is undefined", who));
    if (value.is_undefined_grad()) {
      throw ValueError(fmt::format("{}: the new value is an undefined gradient ({})", who,
                                   value.undefined_reason()));
    }
    const TensorType& want = var.type();
    const TensorType& got = value.type();
    if (got.dtype != want.dtype || got.device != want.device) {
      throw TypeError(fmt::format("{}: the new value ({}) is {}; it must have dtype {} on {}", who,
                                  value.label(), got.str(), dtype_name(want.dtype),
                                  want.device.str()));
    }
    if (got.rank() != want.rank()) {
      throw ShapeError(fmt::format("{}: the new value ({}) is {}, of rank {}; expected rank {}",
                                   who, value.label(), got.str(), got.rank(), want.rank()));
    }
    for (int d = 0; d < want.rank(); ++d) {
      const auto w = want.dims[static_cast<std::size_t>(d)];
      const auto g = got.dims[static_cast<std::size_t>(d)];
      if (w && g && *w != *g) {
        throw ShapeError(fmt::format("{}: the new value ({}) is {}; its dim {} is {}, expected {}",
                                     who, value.label(), got.str(), d, *g, *w));
      }
    }
  }
}

std::shared_ptr<Plan> build_plan(const FunctionGraph& graph, const Config& config,
                                 const CompileOptions& options,
                                 const std::vector<SharedVariable>& shared) {
  auto plan = std::make_shared<Plan>();
  plan->release_intermediates = config.get_bool("allow_gc");
  plan->threads = config.get_int("threads");
  plan->memory_plan = config.get_bool("memory_plan");
  const bool debug_mode = config.get("mode") == "DebugMode";
  const std::vector<Node*> order = schedule_nodes(graph, config.get("schedule") == "memory");
  std::unordered_map<const VariableData*, int> slot_of;
  slot_of.reserve(graph.inputs().size() + 2 * order.size());
  auto new_slot = [&](const Variable& v) {
    const int s = plan->num_slots++;
    slot_of[v.get()] = s;
    return s;
  };
  // The shared variables' inputs come last, and so do their updates' outputs; the placement of
  // arguments and results on a device concerns the caller's own only.
  const std::size_t num_args = graph.inputs().size() - shared.size();
  const std::size_t num_results = graph.outputs().size() - options.updates.size();
  for (const Variable& in : graph.inputs()) {
    const bool argument = plan->input_slots.size() < num_args;
    plan->input_slots.push_back(new_slot(in));
    plan->input_specs.push_back(spec_of(in));
    if (options.inputs_on_device && argument) {
      if (auto device = device_of_readers(graph, in)) plan->input_specs.back().device = *device;
    }
  }
  std::vector<Variable> outputs;
  bool sources_moved = false;
  for (const Variable& out : graph.outputs()) {
    const bool result = outputs.size() < num_results;
    outputs.push_back(result ? output_source(out, options.outputs_on_device) : out);
    sources_moved = sources_moved || outputs.back() != out;
  }
  // Nodes whose results nothing reads once outputs stay on the device (the final transfers).
  // Otherwise every node of the graph is needed: it keeps only nodes its outputs depend on.
  std::unordered_set<const Node*> needed;
  if (sources_moved) {
    std::vector<const Node*> stack;
    for (const Variable& out : outputs) {
      if (out.owner() != nullptr) stack.push_back(out.owner());
    }
    while (!stack.empty()) {
      const Node* n = stack.back();
      stack.pop_back();
      if (!needed.insert(n).second) continue;
      for (const Variable& in : n->inputs) {
        if (in.owner() != nullptr) stack.push_back(in.owner());
      }
    }
  }
  auto slot_for_read = [&](const Variable& v) {
    auto it = slot_of.find(v.get());
    if (it != slot_of.end()) return it->second;
    if (!v.is_constant()) {
      throw ConvGraphError(
          fmt::format("internal error: {} is read before it is computed", v.label()));
    }
    const int s = new_slot(v);
    plan->constants.emplace_back(s, v.constant_value());
    return s;
  };

  // Steps are named as debugprint(function.graph()) names their nodes.
  const std::unordered_map<const Node*, std::string> node_ids = debugprint_node_ids(graph);
  std::set<std::pair<int, int>> devices;
  auto note_device = [&](Device d) {
    if (!d.is_cpu() && devices.insert({static_cast<int>(d.kind), d.index}).second) {
      plan->devices.push_back(d);
    }
  };
  for (const auto& spec : plan->input_specs) note_device(spec.device);
  plan->steps.reserve(order.size());
  // The node of each step, and whether DebugMode wraps its kernel.
  std::vector<const Node*> step_nodes;
  std::vector<bool> step_checked;
  for (Node* node : order) {
    if (sources_moved && !needed.count(node)) continue;
    for (const Variable& in : node->inputs) note_device(in.type().device);
    for (const auto& out : node->output_data) note_device(out.type.device);
    PlanStep step;
    step.kernel = kernel_for(*node);
    bool checked = false;
    if (debug_mode) {
      if (const auto* concrete = dynamic_cast<const KernelOp*>(node->op.get())) {
        if (auto reference = concrete->reference_op()) {
          step.kernel = debug_checked_kernel(step.kernel, std::move(reference), *node, config);
          checked = true;
        }
      }
    }
    step_nodes.push_back(node);
    step_checked.push_back(checked);
    step.op_text = node->op->str();
    const auto id = node_ids.find(node);
    step.label =
        id != node_ids.end() ? fmt::format("{} [id {}]", step.op_text, id->second) : step.op_text;
    describe_for_profile(*node, debug_mode, step);
    for (const Variable& in : node->inputs) step.inputs.push_back(slot_for_read(in));
    for (int k = 0; k < node->num_outputs(); ++k) {
      Variable out = node->output(k);
      step.outputs.push_back(new_slot(out));
      step.output_specs.push_back(spec_of(out));
    }
    step.views = node->op->view_map();
    step.shape_follows_inputs = shapes_follow_inputs(*node);
    plan->steps.push_back(std::move(step));
  }
  for (const Variable& out : outputs) plan->output_slots.push_back(slot_for_read(out));
  plan->num_shared_inputs = static_cast<int>(shared.size());
  for (std::size_t k = 0; k < options.updates.size(); ++k) {
    const VariableData* var = options.updates[k].variable.get();
    const auto target = std::find_if(shared.begin(), shared.end(),
                                     [&](const SharedVariable& v) { return v.get() == var; });
    plan->updates.push_back({static_cast<int>(num_args + (target - shared.begin())),
                             static_cast<int>(num_results + k)});
  }

  // Release each computed slot after its last reader (or right after it is produced when
  // nothing reads it), unless the function returns it.
  std::vector<int> last(static_cast<std::size_t>(plan->num_slots), -1);
  std::vector<bool> keep(static_cast<std::size_t>(plan->num_slots), false);
  for (int s : plan->output_slots) keep[static_cast<std::size_t>(s)] = true;
  for (int s : plan->input_slots) keep[static_cast<std::size_t>(s)] = true;
  for (const auto& [s, value] : plan->constants) keep[static_cast<std::size_t>(s)] = true;
  for (std::size_t i = 0; i < plan->steps.size(); ++i) {
    for (int s : plan->steps[i].outputs) last[static_cast<std::size_t>(s)] = static_cast<int>(i);
    for (int s : plan->steps[i].inputs) last[static_cast<std::size_t>(s)] = static_cast<int>(i);
  }
  for (int s = 0; s < plan->num_slots; ++s) {
    if (keep[static_cast<std::size_t>(s)] || last[static_cast<std::size_t>(s)] < 0) continue;
    plan->steps[static_cast<std::size_t>(last[static_cast<std::size_t>(s)])]
        .release_after.push_back(s);
  }
  // In-place steps (the in-place pass chose them): the destroyed input must be read last by its
  // destroyer, once, and be none of the values the function keeps. The pass only picks values
  // whose every other reader precedes the destroyer in any order, so a failure here is a bug.
  std::unordered_map<int, int> input_of_slot;  // slot -> index among the inputs
  for (std::size_t i = 0; i < plan->input_slots.size(); ++i) {
    input_of_slot.emplace(plan->input_slots[i], static_cast<int>(i));
  }
  for (std::size_t i = 0; i < plan->steps.size(); ++i) {
    PlanStep& step = plan->steps[i];
    for (const auto& [k, j] : destroy_map_of(*step_nodes[i]->op)) {
      const int s = step.inputs.at(static_cast<std::size_t>(j));
      const bool once = std::count(step.inputs.begin(), step.inputs.end(), s) == 1;
      if (const auto input = input_of_slot.find(s); input != input_of_slot.end()) {
        // A shared variable computed into by its update (updates_inplace=early): the step
        // writes the function output that updates it, and reads the old value last.
        const int out_slot = step.outputs.at(static_cast<std::size_t>(k));
        bool updates_it = false;
        for (const PlanUpdate& u : plan->updates) {
          updates_it =
              updates_it || (u.input == input->second &&
                             plan->output_slots[static_cast<std::size_t>(u.output)] == out_slot);
        }
        const bool returned = std::count(plan->output_slots.begin(), plan->output_slots.end(), s);
        if (!updates_it || returned || !once ||
            last[static_cast<std::size_t>(s)] != static_cast<int>(i)) {
          throw ConvGraphError(fmt::format(
              "internal error: {} writes output {} into input {}, function input {}, which it "
              "does not update or which is read again later",
              step.label, k, j, input->second));
        }
        if (!step_checked[i]) {
          step.inplace.emplace_back(k, j);
          plan->overwritable_inputs.push_back(input->second);
        }
        continue;
      }
      if (keep[static_cast<std::size_t>(s)] ||
          last[static_cast<std::size_t>(s)] != static_cast<int>(i) || !once) {
        throw ConvGraphError(
            fmt::format("internal error: {} writes output {} into input {}, a value that is {}",
                        step.label, k, j,
                        keep[static_cast<std::size_t>(s)] ? "kept (an argument, constant or result)"
                                                          : "read again later"));
      }
      // DebugMode's reference runs after the kernel on the same inputs: leave them intact.
      if (!step_checked[i]) step.inplace.emplace_back(k, j);
    }
  }
  return plan;
}

}  // namespace

Function compile(const std::vector<Variable>& inputs, const std::vector<Variable>& outputs,
                 const CompileOptions& options) {
  Config config = options.config ? *options.config : global_config();
  if (!options.flags.empty()) config.apply(options.flags);
  // Before any kernel of this function can call BLAS.
  configure_blas_coretype(config.get("blas.coretype"));
  // Kernels run while optimizing (conv_meta's timings) use this function's thread count.
  const ScopedCpuThreads threads(config.get_int("threads"));
  // Kernels generated while compiling are cached where this function's flags say.
  const codegen::ScopedObjectCacheOptions cache_options(config);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].is_shared()) {
      throw ValueError(fmt::format(
          "function input {} ({}) is a shared variable: a function reads a shared variable's "
          "value itself, so it cannot be an argument (as in Theano); use a plain input "
          "(tensor(), matrix(), ...) for a value given at each call",
          i, inputs[i].label()));
    }
  }
  check_updates(options.updates);
  // Shared variables are the last inputs, and the updates' new values the last outputs.
  std::vector<Variable> roots = outputs;
  for (const Update& u : options.updates) roots.push_back(u.value);
  const std::vector<SharedVariable> shared = shared_inputs(roots, options.updates);
  std::vector<Variable> all_inputs = inputs;
  all_inputs.insert(all_inputs.end(), shared.begin(), shared.end());
  auto graph = std::make_shared<FunctionGraph>(all_inputs, roots);
  std::vector<std::pair<int, int>> update_pairs;
  for (std::size_t k = 0; k < options.updates.size(); ++k) {
    const VariableData* var = options.updates[k].variable.get();
    const auto target = std::find_if(shared.begin(), shared.end(),
                                     [&](const SharedVariable& v) { return v.get() == var; });
    update_pairs.emplace_back(static_cast<int>(outputs.size() + k),
                              static_cast<int>(inputs.size() + (target - shared.begin())));
  }
  graph->set_updates(std::move(update_pairs));
  optimize(*graph, config);
  auto plan = build_plan(*graph, config, options, shared);
  Function function(std::move(plan), std::move(graph), shared);
  // The trace file is kept even when profiling is off, for a later enable_profiling(); it is
  // checked when profiling starts, so here when the flag profile is on.
  function.set_profile_trace_file(config.get("profile.trace_file"));
  if (config.get_bool("profile")) function.enable_profiling(true);
  return function;
}

}  // namespace convgraph
