// The meta-optimizer's candidates: for each implementation of the registry (conv_registry.hpp),
// the node's own op lowered by it ("corrmm"), the same result through another direction
// ("corrmm_alt"), and, where its row names one, 3-D forward convolutions as 2-D ones
// ("conv3d2d"). A candidate is offered the nodes on its implementation's device.
//
// Tags: the implementation's tags, plus "default" for the first two forms and "alternative" for
// the last two; conv3d2d carries "alternative" and "conv3d2d" only (never timed by default). A
// candidate is timed when its count is positive: +1 when tagged default, +1 for each tag of
// metaopt.optimizer_including it carries, -1 for each tag of metaopt.optimizer_excluding. An
// implementation the flags rule out (optimizer_excluding, conv.impl) offers no candidate.
//
// Alternatives (all ungrouped and shared; "^T" swaps axes 0 and 1; W' is the correlation kernel,
// the kernel flipped iff filter_flip; derivations in docs/autotune.md):
//   forward 'full', stride 1        = gradInputs of a 'valid' correlation: kernel^T as the kernel,
//                                     the image as topgrad, filter_flip toggled
//   forward 'valid', stride 1, no dilation
//                                   = (gradWeights('valid', cross)(image^T, W'^T))^T
//   gradWeights 'valid', stride 1, no dilation
//                                   = flip iff filter_flip of (forward('valid', cross)(image^T,
//                                     topgrad^T))^T
//   gradInputs 'valid', stride 1    = forward('full', same dilation)(topgrad, kernel^T) with
//                                     filter_flip toggled
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// The full shapes of an abstract convolution node.
struct ProblemShapes {
  Shape first, second;  // the node's tensor inputs 0 and 1
  Shape spatial;        // gradients: the value of the shape input
  Shape output;
};

// NODE's shapes from its static types, the op's imshp / kshp hints and the constant shape input;
// std::nullopt and *WHY_NOT when some stay unknown.
std::optional<ProblemShapes> resolve_problem_shapes(const Node& node, const AbstractConv& op,
                                                    std::string* why_not);

enum class CandidateForm : unsigned char { same, alternative, conv3d2d };

struct MetaCandidate {
  std::string name;
  std::vector<std::string> tags;
  std::string implementation;  // the registry row that lowers its convolutions
  CandidateForm form = CandidateForm::same;

  bool carries(const std::string& tag) const;
  // Whether the candidate is offered a node of OP on DEVICE.
  bool offered_for(const AbstractConv& op, Device device) const;
};

// Every candidate the registry yields, grouped by device, each group in the order: the same op,
// the alternatives, conv3d2d.
std::vector<MetaCandidate> all_meta_candidates();
// The candidates the flags select (the counting rule above), in the same order.
std::vector<MetaCandidate> selected_meta_candidates(const Config& config);

// Candidate C's replacement for the node of OP reading INPUTS (the node's inputs, or fresh ones
// of the same types): the abstract subgraph, with every convolution in it lowered by C's
// implementation. An empty Variable and *WHY_NOT when C does not apply.
Variable build_meta_candidate(const MetaCandidate& c, const AbstractConv& op,
                              const std::vector<Variable>& inputs, const ProblemShapes& shapes,
                              const PassContext& ctx, std::string* why_not);

}  // namespace convgraph
