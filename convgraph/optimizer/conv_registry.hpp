// The registry of concrete convolution implementations: one row each, with its name (what the
// flag conv.impl selects), the device it runs on, the lowering pass that applies it by default
// and that pass's tags, the directions and dimensionalities it covers, and its hooks (whether it
// takes a problem, and how to build its node). The lowering passes, the conv_impl selection, the
// meta-optimizer's candidates, the "no abstract convolution left" check, the benchmarks, the
// tests and docs/extending.md all read this table; none keeps a list of its own.
//
// The rows are written out, in order, in register_conv_implementations (conv_registry.cpp): one
// commented line each, no static initialisers. A row whose component is not built into this
// convgraph (oneDNN, CUDA, cuDNN) is still there, with `unavailable` saying why, so that its name
// stays valid in flags and the errors can say what is missing.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/runtime/device.hpp"

namespace convgraph {

struct ConvImplementation {
  std::string name;  // "corrmm", "onednn", "cudnn", "gpu_corrmm", ...
  DeviceKind device = DeviceKind::cpu;
  // The lowering pass that applies it when the flags select that pass (conv_dnn, conv_gemm,
  // ...); empty: only conv.impl or the meta-optimizer can choose it.
  std::string pass;
  // Tags besides fast_run / fast_compile, carried by its pass and by its meta-optimizer
  // candidates: optimizer_excluding with any of them (or the name) excludes the implementation.
  std::vector<std::string> tags;
  std::string summary;  // one line, for tables and errors
  // The epilogues it applies after a forward (hooks.supports_epilogue decides per node), as
  // tables show them: "bias, add, relu"; empty when it applies none.
  std::string epilogues;
  std::vector<ConvDirection> directions{ConvDirection::forward, ConvDirection::grad_inputs,
                                        ConvDirection::grad_weights};
  std::vector<int> convdims{2, 3};
  // Whether the meta-optimizer times it (the reference, for one, is too slow to be worth it).
  bool meta_candidate = true;
  // The meta-optimizer's 3-D-as-2-D candidate lowered by this implementation ("conv3d2d"), or
  // empty when it offers none.
  std::string meta_conv3d2d;
  ConvImplementationHooks hooks;  // unset when unavailable
  std::string unavailable;        // why this build lacks it; empty when it is built in

  // Whether TAG is the name, the pass's name or one of the tags.
  bool carries(std::string_view tag) const;
  bool runs_on(Device where) const { return where.kind == device; }
  // Why it does not take SIGNATURE (built in, device, direction, dimensionality, then its own
  // supports hook); std::nullopt when it does.
  std::optional<std::string> declines(const ConvSignature& signature, const Config& config) const;
  // Its node for SIGNATURE on INPUTS (call after declines() said nothing).
  Variable build(const ConvSignature& signature, const std::vector<Variable>& inputs,
                 const Config& config) const;
};

class ConvRegistry {
 public:
  // Adds a row; a duplicate or empty name is a ValueError.
  void add(ConvImplementation implementation);
  // Removes the row NAME (for tests that add a row of their own); false when there is none.
  bool remove(std::string_view name);
  const std::vector<ConvImplementation>& all() const { return rows_; }
  const ConvImplementation* find(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<ConvImplementation> rows_;
};

// The process-wide registry, filled by register_conv_implementations on first use.
const ConvRegistry& conv_registry();
// The same, for tests and programs that add an implementation of their own before compiling.
// Not thread-safe against concurrent compiles.
ConvRegistry& mutable_conv_registry();
void register_conv_implementations(ConvRegistry& registry);

// ---- what the flags select ----

// The implementations conv.impl lists, in its order (empty when the flag is empty: no selection).
// An unknown name is a FlagError naming the flag, the value and the registered names.
std::vector<const ConvImplementation*> conv_impl_selection(const Config& config);
// Why the flags rule IMPLEMENTATION out ("excluded by optimizer_excluding=conv_gemm", "not in
// conv.impl=onednn"); std::nullopt when they allow it.
std::optional<std::string> excluded_by_flags(const ConvImplementation& implementation,
                                             const Config& config);

// A table of every implementation: name, device, lowering pass, tags, whether this build has it
// and whether CONFIG's flags allow it, and its summary with the epilogues it applies (what
// `convgraph impls` prints).
std::string describe_conv_implementations(const Config& config);

// The flags that make a compile use implementation NAME for every convolution it takes
// ("conv.impl=NAME"); a ValueError for an unknown name. Tests and tools use this instead of
// excluding every other implementation, so that a new implementation cannot take their nodes.
std::string select_conv_impl_flags(std::string_view name);

}  // namespace convgraph
