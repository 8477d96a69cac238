// conv_meta: the convolution meta-optimizer, as a pass. For every abstract convolution whose input
// shapes are fully known, it builds each applicable candidate (conv_meta_candidates.hpp: every
// registry implementation of the node's device, directly and through another direction) on fresh
// random inputs of those shapes, times it with the shared profiler (runtime/timing.hpp), checks
// the fastest against the reference (conv_meta_check.hpp: a wrong-but-fast candidate never wins),
// and replaces the node with it. Winners are remembered in the autotune cache
// (runtime/autotune_cache.hpp), so a second compile of the same problem -- in this process or
// another -- times nothing.
//
// Nodes whose shapes are not fully known (static dims merged with the imshp / kshp hints; the
// shape input of the gradients must be constant) are left to the later lowering passes.
// metaopt.verbose (read at compile time): 0 silent, 1 one line per convolution and the nodes
// left alone, 2 also every candidate's time or why it does not apply. A candidate rejected for a
// wrong result is always reported.
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
// Every candidate the registry yields, in the order they are tried.
std::vector<ConvMetaCandidateInfo> conv_meta_candidates();
// The names of the candidates the flags of CONFIG select, in order (the counting rule of
// conv_meta_candidates.hpp).
std::vector<std::string> select_conv_meta_candidates(const Config& config);

// The replacement candidate NAME builds for NODE's output (NODE: an AbstractConv whose shapes are
// fully known), lowered to concrete ops and reading NODE's inputs. An empty Variable when it does
// not apply; *WHY_NOT then says why. For tests and tools: the pass calls it for the winner.
Variable build_conv_meta_candidate(const std::string& name, Node& node, const PassContext& ctx,
                                   std::string* why_not = nullptr);

// Counters since the process started (or the last reset), for tests and tools.
struct ConvMetaStats {
  std::int64_t nodes_replaced = 0;       // by a timed or a cached winner
  std::int64_t cache_hits = 0;           // nodes whose winner came from the autotune cache
  std::int64_t nodes_timed = 0;          // nodes whose candidates were timed
  std::int64_t candidates_timed = 0;     // candidate timings run
  std::int64_t nodes_left = 0;           // unknown shapes, or no candidate could run
  std::int64_t candidates_rejected = 0;  // fastest candidates whose result was wrong
  // Host candidates timed once only: their first call was a clear loser's (over 1.5x the
  // fastest first call of the node's candidates).
  std::int64_t candidates_cut = 0;
  // Of those, the ones cut after their warm-up call alone: it took over twice the clear-loser
  // margin of the fastest first call so far (3x at the default 150%).
  std::int64_t candidates_cut_at_warm_up = 0;
  // Host candidates whose warm-up call was over that margin and were called once more before the
  // cut judged them (one-time costs, such as oneDNN generating its kernels' code, can be far
  // larger than a call): the cuts above are those whose second call was over it too.
  std::int64_t candidates_warmed_up_twice = 0;
  // Host nodes whose first calls left one contender (every other candidate a clear loser): it is
  // not timed again.
  std::int64_t nodes_decided_by_first_calls = 0;
  // Candidates not built at all: on the last metaopt.skip_after_warm_up_cuts problems of the same
  // kind (direction, parameters, kernel size, dtype, device) in this run of the pass, they were
  // cut at their warm-up call by twice the cut's margin.
  std::int64_t candidates_skipped = 0;
  // Contenders that left the race after some of their metaopt.refine_runs rounds: over the
  // shrinking margin of the leader (refine_contenders in conv_meta.cpp, docs/autotune.md).
  std::int64_t candidates_dropped_in_refine = 0;
  // Where the time of the timed nodes went (wall seconds): all of it, then its parts: making the
  // random inputs, building the candidates' graphs, compiling their Functions, warm-up calls,
  // first timed calls, the contenders' repeated calls, and checking the winner (reference or
  // agreement) and building it on the node.
  double seconds_total = 0, seconds_inputs = 0, seconds_build = 0, seconds_compile = 0,
         seconds_warm_up = 0, seconds_timed = 0, seconds_refine = 0, seconds_check = 0;
};
ConvMetaStats conv_meta_stats();
void reset_conv_meta_stats();

}  // namespace convgraph
