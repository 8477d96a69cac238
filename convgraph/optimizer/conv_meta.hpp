// conv_meta: the convolution meta-optimizer (spec 7.6; convgraph decisions 2 and 3). For every
// abstract convolution whose input shapes are fully known, it builds each applicable candidate
// implementation on fresh random inputs of those shapes, times it, and replaces the node with the
// fastest. Winners are remembered in the autotune cache (runtime/autotune_cache.hpp), so a second
// compile of the same problem -- in this process or another -- times nothing.
//
// Candidates, in order, with their meta-tags:
//   corrmm      default, conv_gemm                  the node's op lowered to the CorrMM family
//   onednn      default, conv_dnn, onednn           the node's op lowered to oneDNN
//   corrmm_alt  default, alternative, conv_gemm     the same result through another direction
//   onednn_alt  default, alternative, conv_dnn, onednn   (see "alternatives" below), lowered
//   conv3d2d    alternative, conv3d2d               3-D forward as 2-D convolutions (flip only)
// A candidate is timed when its count is positive: +1 when tagged default, +1 for each tag of
// metaopt.optimizer_including it carries, -1 for each tag of metaopt.optimizer_excluding.
//
// Alternatives (all ungrouped and shared; "^T" swaps axes 0 and 1):
//   forward 'full', stride 1        = gradInputs of a 'valid' correlation: kernel^T as the kernel,
//                                     the image as topgrad, filter_flip toggled
//   forward 'valid', stride 1, no dilation
//                                   = (gradWeights('valid', cross)(image^T, kernel'^T))^T where
//                                     kernel' is the kernel flipped iff filter_flip
//   gradWeights 'valid', stride 1, no dilation
//                                   = flip iff filter_flip of (forward('valid', cross)(image^T,
//                                     topgrad^T))^T
//   gradInputs 'valid', stride 1    = forward('full', same dilation)(topgrad, kernel^T) with
//                                     filter_flip toggled
//
// Nodes whose shapes are not fully known (static dims merged with the imshp / kshp hints; the
// shape input of the gradients must be constant) are left to the conv_dnn / conv_gemm passes.
// metaopt.verbose (read at compile time): 0 silent, 1 one line per convolution and the nodes
// left alone, 2 also every candidate's time or why it does not apply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// The pass. Register it with the tag conv_meta only, so that it runs only when included.
void run_conv_meta(FunctionGraph& graph, const PassContext& ctx);
GraphPass conv_meta_pass();

struct ConvMetaCandidateInfo {
  std::string name;
  std::vector<std::string> tags;
};
// Every candidate, in the order they are tried.
const std::vector<ConvMetaCandidateInfo>& conv_meta_candidates();
// The names of the candidates the metaopt flags of CONFIG select, in order (the counting rule
// above).
std::vector<std::string> select_conv_meta_candidates(const Config& config);

// The replacement candidate NAME builds for NODE's output (NODE: an AbstractConv whose shapes are
// fully known), lowered to concrete ops and reading NODE's inputs. An empty Variable when it does
// not apply; *WHY_NOT then says why. For tests and tools: the pass calls it for the winner.
Variable build_conv_meta_candidate(const std::string& name, Node& node, const PassContext& ctx,
                                   std::string* why_not = nullptr);

// Counters since the process started (or the last reset), for tests and tools.
struct ConvMetaStats {
  std::int64_t nodes_replaced = 0;    // by a timed or a cached winner
  std::int64_t cache_hits = 0;        // nodes whose winner came from the autotune cache
  std::int64_t nodes_timed = 0;       // nodes whose candidates were timed
  std::int64_t candidates_timed = 0;  // candidate timings run
  std::int64_t nodes_left = 0;        // unknown shapes, or no candidate could run
};
ConvMetaStats conv_meta_stats();
void reset_conv_meta_stats();

}  // namespace convgraph
