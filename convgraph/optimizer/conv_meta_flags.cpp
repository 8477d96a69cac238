#include "convgraph/optimizer/conv_meta_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_conv_meta_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(list_flag("metaopt.optimizer_including",
                            "Meta-optimizer tags whose candidates are also timed, e.g. "
                            "alternative:conv3d2d (':'-separated)"));
  flags.push_back(list_flag("metaopt.optimizer_excluding",
                            "Meta-optimizer tags whose candidates are not timed, e.g. "
                            "conv_dnn:default (':'-separated)"));
  flags.push_back(integer_flag(
      "metaopt.verbose", 1, 0, 2,
      "Meta-optimizer output on stderr: 0 = silent, 1 (default) = one line per convolution "
      "(candidates, winner, time) and nodes it cannot time, 2 = also every candidate's time or "
      "reason"));
  flags.push_back(integer_flag(
      "metaopt.clear_loser_percent", 150, 0, 100000,
      "On the CPU each candidate is timed once first; one whose call took more than this percent "
      "of the fastest is a clear loser and is not timed again, and one whose warm-up call alone "
      "took more than twice that is cut before its timed call (0: time every candidate in full)"));
  flags.push_back(integer_flag(
      "metaopt.warm_up_cut_ms", 5, 0, 1000000,
      "A candidate is cut after its warm-up call only when that call took at least this many "
      "milliseconds: below, a warm-up's one-time costs can outweigh the call itself"));
  flags.push_back(integer_flag(
      "metaopt.refine_runs", 3, 0, 100,
      "On the CPU, how many rounds of one more call each the contenders left after the first calls "
      "get (within about 0.2 s each); each keeps its fastest call, and after each round those over "
      "a margin of the leader halved each round (125%, 112.5%, ... at the default "
      "clear_loser_percent) leave the race (0: the first call only)"));
  flags.push_back(integer_flag(
      "metaopt.skip_after_warm_up_cuts", 2, 0, 1000,
      "On the CPU, a candidate cut at its warm-up call by twice the cut's margin (6x the fastest "
      "first call at the default clear_loser_percent) on this many problems in a row of the same "
      "kind (direction, parameters, kernel size, dtype) is not tried on further problems of that "
      "kind in the same compile (0: always try every candidate)"));
}

}  // namespace convgraph
