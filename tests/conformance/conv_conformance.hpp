// The conformance suite's runner: every case of the grid (conformance/conv_grid.hpp) on one row of
// the registry of convolution implementations, through a graph compiled with conv.impl=NAME, in
// every direction, against the reference convolutions (reference_conv_* of abstract_conv.hpp).
//
// For each case and direction the row is first asked whether it takes the node (its supports hook,
// then its build, as the lowering does). A decline must be covered by an opt-out of
// conformance/conv_opt_outs.hpp, and the compile must then fail naming the reason (no silent
// fallback to another implementation). The directions it takes are compiled together; the
// compiled graph must hold that row's op for each of them and no other convolution, and each
// result must match the reference within the dtype's tolerance. A problem whose output would be
// empty must be rejected at run time with a ShapeError.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <typeinfo>
#include <vector>

#include "conformance/conv_grid.hpp"
#include "conformance/conv_opt_outs.hpp"
#include "convgraph/convgraph.hpp"
#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/test_util.hpp"

namespace convgraph::testing {

inline constexpr ConvDirection kConvDirections[] = {
    ConvDirection::forward, ConvDirection::grad_inputs, ConvDirection::grad_weights};

inline const char* direction_label(ConvDirection d) {
  switch (d) {
    case ConvDirection::forward:
      return "forward";
    case ConvDirection::grad_inputs:
      return "gradInputs";
    case ConvDirection::grad_weights:
      return "gradWeights";
  }
  return "?";
}

// What the suite tallies for one row, and the failures it found (the first few in full).
struct ConformanceReport {
  std::string implementation;
  std::size_t cases = 0;       // cases run
  std::size_t checked = 0;     // results compared with the reference
  std::size_t declined = 0;    // directions declined under an opt-out
  std::size_t impossible = 0;  // problems with an empty output, rejected at run time
  std::size_t failure_count = 0;
  std::vector<std::string> failures;
  std::map<std::string, std::size_t> opt_out_uses;  // by opt-out's `what`

  void fail(std::string message) {
    ++failure_count;
    if (failures.size() < 12) failures.push_back(std::move(message));
  }
  std::string summary() const {
    return fmt::format(
        "{}: {} cases, {} results checked against the reference, {} directions declined under "
        "opt-outs, {} impossible problems rejected, {} failures",
        implementation, cases, checked, declined, impossible, failure_count);
  }
};

// The device a row's cases run on.
inline Device conformance_device(const ConvImplementation& row) {
  return row.device == DeviceKind::cuda ? Device::cuda(0) : Device::cpu();
}

// The flags that compile every convolution with ROW (and on its device), plus EXTRA.
inline std::string conformance_flags(const ConvImplementation& row, const std::string& extra) {
  std::string flags = select_conv_impl_flags(row.name);
  if (row.device == DeviceKind::cuda) flags += ",device=cuda";
  if (!extra.empty()) flags += "," + extra;
  return flags;
}

// The symbolic inputs of a case (image, kernel, topgrad) on DEVICE, with the case's shapes or,
// for a case without static shapes, every dimension unknown.
struct ConvCaseInputs {
  Variable image, kernel, top;
};

inline ConvCaseInputs conv_case_inputs(const ConvCase& c, Device device) {
  auto input = [&](const char* name, const Shape& shape) {
    StaticShape dims(shape.size());
    if (c.static_shapes) dims = StaticShape(shape.begin(), shape.end());
    return make_input(TensorType(c.dtype, dims, device), name);
  };
  Shape top{c.batch(), c.filters()};
  for (std::int64_t o : c.output_spatial()) top.push_back(o);
  return {input("image", c.image), input("kernel", c.kernel), input("top", top)};
}

inline ShapeDims constant_dims(const Shape& shape) {
  return ShapeDims(shape.begin(), shape.end());
}

// The abstract convolution of direction D of case C on INPUTS.
inline Variable conv_case_output(const ConvCase& c, ConvDirection d, const ConvCaseInputs& in) {
  switch (d) {
    case ConvDirection::forward:
      return abstract_conv(c.params, in.image, in.kernel);
    case ConvDirection::grad_inputs:
      return abstract_conv_grad_inputs(c.params, in.kernel, in.top,
                                       constant_dims(c.image_spatial()));
    case ConvDirection::grad_weights:
      return abstract_conv_grad_weights(c.params, in.image, in.top,
                                        constant_dims(c.kernel_spatial()));
  }
  return {};
}

// Whether ROW takes direction D of case C under CONFIG, as the lowering decides it: its
// declines() (device, direction, dimensionality, supports hook), then its build, whose TypeError
// or ValueError is a decline too. When it takes it, the op it builds.
struct ConvDecision {
  std::optional<std::string> declined;  // why it declines
  std::shared_ptr<const Op> op;         // what it builds when it takes the case
};

inline ConvDecision decide(const ConvImplementation& row, const ConvCase& c, ConvDirection d,
                           const Config& config) {
  const ConvCaseInputs in = conv_case_inputs(c, conformance_device(row));
  const Variable out = conv_case_output(c, d, in);
  const Node& node = *out.owner();
  const ConvSignature signature = ConvSignature::of(node);
  if (auto why = row.declines(signature, config)) return {why, nullptr};
  try {
    const Variable built = row.build(signature, node.inputs, config);
    if (!built.defined() || built.owner() == nullptr)
      return {"its build returned nothing", nullptr};
    return {std::nullopt, built.owner()->op};
  } catch (const TypeError& e) {
    return {std::string(e.what()), nullptr};
  } catch (const ValueError& e) {
    return {std::string(e.what()), nullptr};
  }
}

// The opt-outs of row NAME whose predicate covers case C in direction D.
inline std::vector<const ConvOptOut*> covering_opt_outs(const std::string& name, const ConvCase& c,
                                                        ConvDirection d) {
  std::vector<const ConvOptOut*> out;
  for (const ConvOptOut& o : conv_opt_outs()) {
    if (o.implementation == name && o.covers(c, d)) out.push_back(&o);
  }
  return out;
}

// Checks the row's decision on (C, D) against the opt-outs: a decline must be covered by an
// opt-out whose phrase it contains; a case the row takes must be covered by none. Returns whether
// the decision is consistent; records failures and the opt-outs used in REPORT.
inline bool check_decision_against_opt_outs(const ConvImplementation& row, const ConvCase& c,
                                            ConvDirection d, const ConvDecision& decision,
                                            ConformanceReport& report) {
  const std::vector<const ConvOptOut*> covering = covering_opt_outs(row.name, c, d);
  if (!decision.declined) {
    for (const ConvOptOut* o : covering) {
      report.fail(fmt::format(
          "{}, {}: the opt-out '{}' of {} covers this case, but {} takes it: narrow or remove the "
          "opt-out (conformance/conv_opt_outs.hpp)",
          c.str(), direction_label(d), o->what, row.name, row.name));
    }
    return covering.empty();
  }
  const std::string& why = *decision.declined;
  bool covered = false;
  for (const ConvOptOut* o : covering) {
    if (why.find(o->decline_says) != std::string::npos) {
      ++report.opt_out_uses[o->what];
      covered = true;
    }
  }
  if (!covered) {
    std::string near;
    for (const ConvOptOut* o : covering) {
      near += fmt::format(" (the opt-out '{}' covers the case, but the reason does not say '{}')",
                          o->what, o->decline_says);
    }
    report.fail(fmt::format(
        "{}, {}: {} declines it: \"{}\"; no opt-out covers this case{}. An implementation may not "
        "decline silently: make it take the case, or add an opt-out saying why "
        "(conformance/conv_opt_outs.hpp)",
        c.str(), direction_label(d), row.name, why, near));
  }
  return covered;
}

// The directions of case C the suite runs: all three, or the forward pass alone for a problem
// whose output would be empty (no topgrad exists for it).
inline std::vector<ConvDirection> case_directions(const ConvCase& c) {
  if (!c.possible()) return {ConvDirection::forward};
  return {std::begin(kConvDirections), std::end(kConvDirections)};
}

// The reference result of direction D from the float64 values, and the number of terms summed
// into each element (for the tolerance).
struct ConvReference {
  Tensor expected;
  double terms = 1;
};

inline ConvReference conv_reference(const ConvCase& c, ConvDirection d, const Tensor& image,
                                    const Tensor& kernel, const Tensor& top) {
  double taps = 1;
  for (std::int64_t k : c.kernel_spatial()) taps *= static_cast<double>(k);
  const double groups = static_cast<double>(c.params.num_groups);
  switch (d) {
    case ConvDirection::forward:
      return {reference_conv_forward(c.params, image, kernel),
              taps * static_cast<double>(c.image[1]) / groups};
    case ConvDirection::grad_inputs:
      return {reference_conv_grad_inputs(c.params, kernel, top, c.image_spatial()),
              taps * static_cast<double>(c.filters()) / groups};
    case ConvDirection::grad_weights: {
      double positions = static_cast<double>(c.batch());
      for (std::int64_t o : c.output_spatial()) positions *= static_cast<double>(o);
      return {reference_conv_grad_weights(c.params, image, top, c.kernel_spatial()), positions};
    }
  }
  return {};
}

// The names of the convolution ops in F's graph, for messages.
inline std::string conv_ops_of(const Function& f) {
  std::vector<std::string> names;
  for (Node* node : f.graph().toposort()) {
    const Op* op = node->op.get();
    if (dynamic_cast<const ConcreteConv*>(op) != nullptr ||
        dynamic_cast<const AbstractConv*>(op) != nullptr) {
      names.push_back(op->name());
    }
  }
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

// Checks that F computes each direction of DIRECTIONS with the op ROW built for it (EXPECTED, in
// the same order) and that no other convolution is left in the graph.
inline void check_compiled_ops(const ConvImplementation& row, const ConvCase& c, const Function& f,
                               const std::vector<ConvDirection>& directions,
                               const std::vector<std::shared_ptr<const Op>>& expected,
                               ConformanceReport& report) {
  std::vector<int> found(directions.size(), 0);
  for (Node* node : f.graph().toposort()) {
    const Op* op = node->op.get();
    if (dynamic_cast<const AbstractConv*>(op) != nullptr) {
      report.fail(fmt::format("{}: the compiled graph keeps {}", c.str(), op->name()));
      continue;
    }
    const auto* concrete = dynamic_cast<const ConcreteConv*>(op);
    if (concrete == nullptr) continue;
    bool matched = false;
    for (std::size_t i = 0; i < directions.size(); ++i) {
      if (concrete->direction() == directions[i] && typeid(*op) == typeid(*expected[i]) &&
          op->name() == expected[i]->name()) {
        ++found[i];
        matched = true;
      }
    }
    if (!matched) {
      report.fail(fmt::format("{}: with conv.impl={} the compiled graph holds {}, not {}'s op",
                              c.str(), row.name, op->name(), row.name));
    }
  }
  for (std::size_t i = 0; i < directions.size(); ++i) {
    if (found[i] != 1) {
      report.fail(fmt::format(
          "{}, {}: the compiled graph holds {} {} node(s), expected exactly one (convolution "
          "ops in the graph: {})",
          c.str(), direction_label(directions[i]), found[i], expected[i]->name(), conv_ops_of(f)));
    }
  }
}

// What a compile of GRAPH_OUTPUTS from GRAPH_INPUTS with FLAGS throws; empty when it compiles.
inline std::string compile_failure(const std::vector<Variable>& graph_inputs,
                                   const std::vector<Variable>& graph_outputs,
                                   const std::string& flags, bool* unsupported = nullptr) {
  CompileOptions options;
  options.flags = flags;
  try {
    compile(graph_inputs, graph_outputs, options);
  } catch (const UnsupportedError& e) {
    if (unsupported != nullptr) *unsupported = true;
    return e.what();
  } catch (const ConvGraphError& e) {
    if (unsupported != nullptr) *unsupported = false;
    return e.what();
  }
  return "";
}

// Runs case C on ROW (see the file's comment), adding to REPORT. EXTRA_FLAGS go on top of the
// selection (tuning flags of the implementation-specific tests).
inline void run_conformance_case(const ConvImplementation& row, const ConvCase& c,
                                 const std::string& extra_flags, ConformanceReport& report) {
  ++report.cases;
  const std::string flags = conformance_flags(row, extra_flags);
  Config config = global_config();
  config.apply(flags);

  // The row's decisions, checked against the opt-outs.
  std::vector<ConvDirection> taken;
  std::vector<std::shared_ptr<const Op>> expected;
  for (ConvDirection d : case_directions(c)) {
    ConvDecision decision;
    try {
      decision = decide(row, c, d, config);
    } catch (const std::exception& e) {
      report.fail(fmt::format("{}, {}: asking {} whether it takes the case threw: {}", c.str(),
                              direction_label(d), row.name, e.what()));
      continue;
    }
    if (!check_decision_against_opt_outs(row, c, d, decision, report)) continue;
    if (!decision.declined) {
      taken.push_back(d);
      expected.push_back(decision.op);
      continue;
    }
    // Declined under an opt-out: selecting the row by name must then fail, naming the reason,
    // rather than quietly compiling another implementation.
    ++report.declined;
    const ConvCaseInputs in = conv_case_inputs(c, Device::cpu());
    const Variable out = conv_case_output(c, d, in);
    std::vector<Variable> used =
        d == ConvDirection::forward       ? std::vector<Variable>{in.image, in.kernel}
        : d == ConvDirection::grad_inputs ? std::vector<Variable>{in.kernel, in.top}
                                          : std::vector<Variable>{in.image, in.top};
    bool unsupported = false;
    const std::string error = compile_failure(used, {out}, flags, &unsupported);
    if (error.empty()) {
      report.fail(fmt::format("{}, {}: {} declines it (\"{}\"), yet conv.impl={} compiled it",
                              c.str(), direction_label(d), row.name, *decision.declined, row.name));
    } else if (!unsupported || error.find(*decision.declined) == std::string::npos) {
      report.fail(fmt::format(
          "{}, {}: {} declines it (\"{}\"); the compile should fail with an UnsupportedError "
          "giving that reason, but said: {}",
          c.str(), direction_label(d), row.name, *decision.declined, error));
    }
  }
  if (taken.empty()) return;

  // The directions it takes, compiled together. The forward pass and the weight gradient read the
  // image, the forward pass and the input gradient the kernel, both gradients the topgrad.
  const ConvCaseInputs in = conv_case_inputs(c, Device::cpu());
  auto takes = [&](ConvDirection d) {
    return std::find(taken.begin(), taken.end(), d) != taken.end();
  };
  const bool wants_image = takes(ConvDirection::forward) || takes(ConvDirection::grad_weights);
  const bool wants_kernel = takes(ConvDirection::forward) || takes(ConvDirection::grad_inputs);
  const bool wants_top = takes(ConvDirection::grad_inputs) || takes(ConvDirection::grad_weights);
  std::vector<Variable> graph_inputs;
  if (wants_image) graph_inputs.push_back(in.image);
  if (wants_kernel) graph_inputs.push_back(in.kernel);
  if (wants_top) graph_inputs.push_back(in.top);
  std::vector<Variable> graph_outputs;
  for (ConvDirection d : taken) graph_outputs.push_back(conv_case_output(c, d, in));
  CompileOptions options;
  options.flags = flags;
  std::optional<Function> f;
  try {
    f.emplace(compile(graph_inputs, graph_outputs, options));
  } catch (const std::exception& e) {
    report.fail(fmt::format("{}: {} takes it, but the compile with {} failed: {}", c.str(),
                            row.name, flags, e.what()));
    return;
  }
  check_compiled_ops(row, c, *f, taken, expected, report);

  // Values representable in the dtype: the reference sees exactly what the implementation sees.
  const std::uint64_t seed = 1000 + 7 * c.index;
  const Tensor image = random_tensor(c.dtype, c.image, seed);
  const Tensor kernel = random_tensor(c.dtype, c.kernel, seed + 1);
  Shape top_shape{c.batch(), c.filters()};
  for (std::int64_t o : c.output_spatial()) top_shape.push_back(o);
  const Tensor top = random_tensor(c.dtype, top_shape, seed + 2);
  std::vector<Tensor> args;
  if (wants_image) args.push_back(image);
  if (wants_kernel) args.push_back(kernel);
  if (wants_top) args.push_back(top);
  std::vector<Tensor> results;
  try {
    results = (*f)(args);
  } catch (const ShapeError& e) {
    if (!c.possible()) {
      ++report.impossible;
      return;
    }
    report.fail(fmt::format("{}: the compiled {} function threw: {}", c.str(), row.name, e.what()));
    return;
  } catch (const std::exception& e) {
    report.fail(fmt::format("{}: the compiled {} function threw: {}", c.str(), row.name, e.what()));
    return;
  }
  if (!c.possible()) {
    report.fail(fmt::format("{}: the output would be empty, but {} ran it without a ShapeError",
                            c.str(), row.name));
    return;
  }
  const Tensor image64 = image.cast(DType::float64);
  const Tensor kernel64 = kernel.cast(DType::float64);
  const Tensor top64 = top.cast(DType::float64);
  for (std::size_t i = 0; i < taken.size(); ++i) {
    const ConvReference ref = conv_reference(c, taken[i], image64, kernel64, top64);
    const std::string mismatch = conv_mismatch(results[i], ref.expected, c.dtype, ref.terms);
    ++report.checked;
    if (!mismatch.empty()) {
      report.fail(fmt::format("{}, {}: {} differs from the reference: {}", c.str(),
                              direction_label(taken[i]), row.name, mismatch));
    }
  }
}

// Runs CASES on ROW; see run_conformance_case.
inline ConformanceReport run_conformance(const ConvImplementation& row,
                                         const std::vector<ConvCase>& cases,
                                         const std::string& extra_flags = "") {
  ConformanceReport report;
  report.implementation = row.name;
  for (const ConvCase& c : cases) run_conformance_case(row, c, extra_flags, report);
  return report;
}

// Checks the decisions of ROW on every direction of CASES against the opt-outs, without running
// anything (cheap enough for the whole grid): every decline covered, no opt-out covering a case
// the row takes, and every opt-out of the row used at least once.
inline ConformanceReport audit_opt_outs(const ConvImplementation& row,
                                        const std::vector<ConvCase>& cases) {
  ConformanceReport report;
  report.implementation = row.name;
  Config config = global_config();
  config.apply(conformance_flags(row, ""));
  for (const ConvCase& c : cases) {
    ++report.cases;
    for (ConvDirection d : case_directions(c)) {
      try {
        const ConvDecision decision = decide(row, c, d, config);
        if (check_decision_against_opt_outs(row, c, d, decision, report) && decision.declined) {
          ++report.declined;
        }
      } catch (const std::exception& e) {
        report.fail(fmt::format("{}, {}: asking {} whether it takes the case threw: {}", c.str(),
                                direction_label(d), row.name, e.what()));
      }
    }
  }
  for (const ConvOptOut& o : conv_opt_outs()) {
    if (o.implementation == row.name && report.opt_out_uses[o.what] == 0) {
      report.fail(fmt::format(
          "the opt-out '{}' of {} covers no case that {} declines on the whole grid: it is "
          "stale, remove it (conformance/conv_opt_outs.hpp)",
          o.what, row.name, row.name));
    }
  }
  return report;
}

// Every case of every grid.
inline std::vector<ConvCase> full_conformance_grid() {
  std::vector<ConvCase> all;
  for (const GridSpec& spec : conformance_grid_specs()) {
    std::vector<ConvCase> cases = make_grid(spec);
    all.insert(all.end(), cases.begin(), cases.end());
  }
  return all;
}

// CHECKs that REPORT has no failure, showing the first ones, and that it checked something.
inline void check_conformance(const ConformanceReport& report) {
  std::string shown;
  for (const std::string& f : report.failures) shown += "\n- " + f;
  INFO(report.summary() << shown);
  CHECK(report.failure_count == 0);
  CHECK(report.cases > 0);
}

// Where the suite runs the rows of device KIND. A switch without a default: a new device kind
// does not compile here until the suite has cases for its rows.
inline const char* conformance_cases_for(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cpu:
      return "the default suite";
    case DeviceKind::cuda:
      return "the [cuda] cases";
  }
  return "?";
}

// The rows of the registry that run on KIND and are built into this convgraph; a WARN for each
// row of KIND that is not.
inline std::vector<const ConvImplementation*> conformance_rows(DeviceKind kind) {
  std::vector<const ConvImplementation*> rows;
  for (const ConvImplementation& row : conv_registry().all()) {
    if (row.device != kind) continue;
    if (!row.hooks.build) {
      WARN("SKIPPED: " << row.name << " is not built into this convgraph (" << row.unavailable
                       << "): " << conformance_cases_for(kind) << " do not check it");
      continue;
    }
    rows.push_back(&row);
  }
  return rows;
}

}  // namespace convgraph::testing
