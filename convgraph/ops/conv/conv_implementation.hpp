// What a concrete convolution implementation tells the optimizer about one problem: whether it
// takes it (and why not, when it does not), and how to build its node. Each implementation's file
// defines these hooks; the registry of implementations (optimizer/conv_registry.hpp) holds one row
// per implementation with its name, device, tags and hooks, and every lowering, the
// meta-optimizer, the "no convolution left" check, the benchmarks and the tests read that row.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/graph/type.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_epilogue.hpp"

namespace convgraph {

// One abstract convolution node as an implementation sees it at compile time (its static types,
// not its run-time shapes: those are resolved by conv_problem.hpp).
struct ConvSignature {
  ConvDirection direction = ConvDirection::forward;
  ConvParams params;
  DType dtype = DType::float32;  // the output's
  Device device;                 // where the node runs: its output's device
  std::vector<TensorType> inputs;
  TensorType output;  // the node's output

  // The signature of NODE, an AbstractConv node (ValueError otherwise).
  static ConvSignature of(const Node& node);
  // "forward", "grad_inputs" or "grad_weights".
  std::string direction_name() const;
};

struct ConvImplementationHooks {
  // std::nullopt when the implementation takes SIGNATURE under CONFIG; otherwise why not, as a
  // sentence naming the parameter at fault ("dtype float16: ..."). May throw for a flag that
  // demands the implementation where it cannot run (dnn.enabled=True without cuDNN).
  std::function<std::optional<std::string>(const ConvSignature&, const Config&)> supports;
  // The concrete node's output computing SIGNATURE from INPUTS (the abstract node's inputs). Called
  // only where supports() agreed; a TypeError or ValueError it throws is taken as a decline.
  std::function<Variable(const ConvSignature&, const std::vector<Variable>&, const Config&)> build;
  // Epilogues (bias, residual add, ReLU after a forward; the conv_epilogue pass folds them into
  // the node this implementation built for SIGNATURE): std::nullopt when it applies EPILOGUE
  // itself, else why not. Unset: it applies none, and the pass leaves its nodes alone.
  std::function<std::optional<std::string>(const ConvSignature&, const ConvEpilogue&)>
      supports_epilogue;
  // The node computing SIGNATURE followed by EPILOGUE from INPUTS (image, kernel, then the bias
  // vector and the residual as EPILOGUE has them). Called only where supports_epilogue agreed.
  std::function<Variable(const ConvSignature&, const std::vector<Variable>&, const ConvEpilogue&,
                         const Config&)>
      build_epilogue;
  // Optional, for a row with a lowering pass: std::nullopt when that pass should use it for
  // SIGNATURE (a node it takes), else why it leaves the node to the passes after it (where it
  // measured slower than they are). Unset: the pass uses it wherever it takes the node.
  // conv.impl and conv_meta do not ask: a selection by name, or a timing, decides there.
  std::function<std::optional<std::string>(const ConvSignature&, const Config&)> prefers;
};

}  // namespace convgraph
