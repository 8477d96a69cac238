// conv_meta's ways of timing less: a contender left alone is not timed again, the contenders'
// repeats (metaopt.refine_runs), candidates skipped after warm-up cuts on problems of the same kind
// (metaopt.skip_after_warm_up_cuts), the check of large weight gradients by agreement, and the
// time split the pass reports.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/conv_meta_check.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "support/catch.hpp"
#include "support/stderr_capture.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using testing::count_substr;
using testing::StderrCapture;

namespace {

Function compile_meta(const std::vector<Variable>& inputs, const std::vector<Variable>& outputs,
                      const std::string& flags) {
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  CompileOptions options;
  options.flags = "autotune.cache=off,optimizer_including=conv_meta," + flags;
  return compile(inputs, outputs, options);
}

// A forward convolution, its input gradient and its weight gradient: three problems of three kinds.
struct SmallGraph {
  std::vector<Variable> inputs, outputs;
  std::vector<Tensor> args;
};

SmallGraph small_graph() {
  Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w);
  auto grads = grad(sum(y * y), {x, w});
  return {{x, w},
          {y, grads[0], grads[1]},
          {testing::random_tensor(DType::float32, {2, 3, 10, 10}, 21),
           testing::random_tensor(DType::float32, {4, 3, 3, 3}, 22)}};
}

// The abstract ops' reference perform()s, for the expected values.
Function compile_reference(const std::vector<Variable>& inputs,
                           const std::vector<Variable>& outputs) {
  CompileOptions options;
  options.flags = select_conv_impl_flags("reference");
  return compile(inputs, outputs, options);
}

void require_matches_reference(const SmallGraph& g, const Function& f) {
  const auto actual = f(g.args);
  const auto expected = compile_reference(g.inputs, g.outputs)(g.args);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("output " << i);
    REQUIRE_ALLCLOSE(actual[i], expected[i], 1e-4, 1e-4);
  }
}

// Four 'valid' 3x3 forward convolutions in a chain: four distinct problems of one kind.
SmallGraph chain_of_one_kind() {
  Variable x = tensor("x", DType::float32, {2, 4, 12, 12});
  std::vector<Variable> inputs{x};
  std::vector<Tensor> args{testing::random_tensor(DType::float32, {2, 4, 12, 12}, 31)};
  Variable y = x;
  for (int i = 0; i < 4; ++i) {
    Variable w = tensor(fmt::format("w{}", i), DType::float32, {4, 4, 3, 3});
    inputs.push_back(w);
    args.push_back(testing::random_tensor(DType::float32, {4, 4, 3, 3}, 32 + i));
    y = conv2d(y, w);
  }
  return {inputs, {y}, args};
}

}  // namespace

TEST_CASE("conv_meta: a contender left alone by the first calls is not timed again", "[meta]") {
  const SmallGraph g = small_graph();
  // At 100% every candidate slower than the fastest first call is a clear loser: the fastest is
  // alone on every node with a single fastest candidate (every node here, exact ties aside).
  Function alone = compile_meta(g.inputs, g.outputs, "metaopt.clear_loser_percent=100");
  ConvMetaStats stats = conv_meta_stats();
  REQUIRE(stats.nodes_timed == 3);
  REQUIRE(stats.nodes_decided_by_first_calls >= 1);
  REQUIRE(stats.nodes_decided_by_first_calls <= stats.nodes_timed);
  require_matches_reference(g, alone);

  // With the cut off nobody is a clear loser, so no node is decided by its first calls, and the
  // contenders are timed again.
  Function all = compile_meta(g.inputs, g.outputs, "metaopt.clear_loser_percent=0");
  stats = conv_meta_stats();
  REQUIRE(stats.nodes_decided_by_first_calls == 0);
  REQUIRE(stats.seconds_refine > 0);
  require_matches_reference(g, all);

  // verbose=2 says so.
  clear_autotune_memory_cache();
  StderrCapture capture;
  compile_meta(g.inputs, g.outputs, "metaopt.clear_loser_percent=100,metaopt.verbose=2");
  const std::string err = capture.finish();
  INFO(err);
  REQUIRE(count_substr(err, "the only contender: not timed again") ==
          static_cast<std::size_t>(conv_meta_stats().nodes_decided_by_first_calls));
}

TEST_CASE("conv_meta: contenders leave the refine rounds as the margin shrinks", "[meta]") {
  const SmallGraph g = small_graph();
  // At 100000% hardly anybody is a clear loser after the first calls, but the margin halves its
  // excess each round: 1 + 999 / 2^20 after twenty rounds, 0.1%. By then every contender but the
  // leader (and exact ties) has left.
  Function rounds = compile_meta(g.inputs, g.outputs,
                                 "metaopt.clear_loser_percent=100000,metaopt.refine_runs=20");
  const ConvMetaStats stats = conv_meta_stats();
  REQUIRE(stats.nodes_timed == 3);
  REQUIRE(stats.candidates_dropped_in_refine >= 1);
  REQUIRE(stats.candidates_dropped_in_refine + stats.candidates_cut <=
          stats.candidates_timed - stats.nodes_timed);
  require_matches_reference(g, rounds);

  // With the cut off (0), the margin is infinite: nobody leaves.
  compile_meta(g.inputs, g.outputs, "metaopt.clear_loser_percent=0,metaopt.refine_runs=20");
  REQUIRE(conv_meta_stats().candidates_dropped_in_refine == 0);
}

TEST_CASE("conv_meta: metaopt.refine_runs=0 times each contender once", "[meta]") {
  const SmallGraph g = small_graph();
  Function once =
      compile_meta(g.inputs, g.outputs, "metaopt.clear_loser_percent=0,metaopt.refine_runs=0");
  REQUIRE(conv_meta_stats().nodes_timed == 3);
  REQUIRE(conv_meta_stats().seconds_refine == 0);
  REQUIRE(conv_meta_stats().nodes_replaced == 3);
  require_matches_reference(g, once);
}

TEST_CASE("conv_meta: a candidate cut at its warm-up on problems of one kind is skipped after",
          "[meta]") {
  const SmallGraph g = chain_of_one_kind();
  // At 1% with no floor, every candidate after the first that runs is cut at its warm-up call
  // (the rule the warm-up cut test relies on): on the first two problems they are cut, on the
  // last two they are not built at all.
  const std::string cut_everything = "metaopt.clear_loser_percent=1,metaopt.warm_up_cut_ms=0";
  Function never =
      compile_meta(g.inputs, g.outputs, cut_everything + ",metaopt.skip_after_warm_up_cuts=0");
  const ConvMetaStats full = conv_meta_stats();
  REQUIRE(full.nodes_timed == 4);
  REQUIRE(full.candidates_skipped == 0);
  // The chain offers at least two candidates per problem (CorrMM and its alternative).
  REQUIRE(full.candidates_cut_at_warm_up >= 4);
  // Each was called a second time before the cut (its warm-up over the margin), and cut after it.
  REQUIRE(full.candidates_warmed_up_twice == full.candidates_cut_at_warm_up);
  require_matches_reference(g, never);

  Function skipping =
      compile_meta(g.inputs, g.outputs, cut_everything + ",metaopt.skip_after_warm_up_cuts=2");
  const ConvMetaStats skipped = conv_meta_stats();
  REQUIRE(skipped.nodes_timed == 4);
  REQUIRE(skipped.nodes_replaced == 4);
  // What was cut on each of the four problems is skipped on the last two: half of the cuts.
  REQUIRE(skipped.candidates_skipped * 2 == full.candidates_cut_at_warm_up);
  REQUIRE(skipped.candidates_timed + skipped.candidates_skipped == full.candidates_timed);
  require_matches_reference(g, skipping);

  // The skips are said at verbose=2 and counted in the summary at verbose=1.
  for (const char* level : {"1", "2"}) {
    StderrCapture capture;
    compile_meta(g.inputs, g.outputs,
                 cut_everything + ",metaopt.skip_after_warm_up_cuts=2,metaopt.verbose=" + level);
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(count_substr(err, "skipped (cut at its warm-up on the last 2 problems of this kind") ==
            (level[0] == '2' ? static_cast<std::size_t>(skipped.candidates_skipped) : 0u));
    REQUIRE(count_substr(err, fmt::format("{} skipped", skipped.candidates_skipped)) == 1);
  }

  // Problems of another kind keep their own count: the small graph's three kinds, compiled with
  // the same flags, skip nothing.
  const SmallGraph three = small_graph();
  compile_meta(three.inputs, three.outputs, cut_everything + ",metaopt.skip_after_warm_up_cuts=1");
  REQUIRE(conv_meta_stats().candidates_skipped == 0);
}

TEST_CASE("conv_meta: a large weight gradient is checked against the other candidates", "[meta]") {
  // 2 * 4 * 64 * 64 * 9 * 32 * 32 = 3e8 FLOPs, over the reference's limit; its kernel-sized output
  // alone would count 2.6e6.
  Variable x = tensor("x", DType::float32, {4, 64, 32, 32});
  Variable w = tensor("w", DType::float32, {64, 64, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  Variable gw = grad(sum(y * y), w);
  StderrCapture capture;
  compile_meta({x, w}, {gw}, "metaopt.verbose=1");
  const std::string err = capture.finish();
  INFO(err);
  std::string line;
  for (std::size_t pos = 0, end = 0; pos < err.size(); pos = end + 1) {
    end = err.find('\n', pos);
    if (end == std::string::npos) end = err.size();
    const std::string l = err.substr(pos, end - pos);
    if (l.find("gradWeights") != std::string::npos && l.find("winner") != std::string::npos) {
      line = l;
    }
  }
  REQUIRE(!line.empty());
  REQUIRE(line.find("against the reference") == std::string::npos);
  REQUIRE(line.find("agrees with") != std::string::npos);
}

TEST_CASE("conv_meta: the pass reports where its time went", "[meta]") {
  const SmallGraph g = small_graph();
  StderrCapture capture;
  compile_meta(g.inputs, g.outputs, "metaopt.verbose=1");
  const std::string err = capture.finish();
  INFO(err);
  REQUIRE(count_substr(err, "timed 3 convolutions (") == 1);
  const ConvMetaStats s = conv_meta_stats();
  REQUIRE(s.seconds_total > 0);
  REQUIRE(s.seconds_compile > 0);
  REQUIRE(s.seconds_warm_up > 0);
  REQUIRE(s.seconds_check > 0);
  const double parts = s.seconds_inputs + s.seconds_build + s.seconds_compile + s.seconds_warm_up +
                       s.seconds_timed + s.seconds_refine + s.seconds_check;
  REQUIRE(parts <= s.seconds_total * 1.001);
  REQUIRE(parts >= s.seconds_total * 0.5);
}

TEST_CASE("conv_meta: relative_max_error reads float32, float64 and views in place", "[meta]") {
  const Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6.5}, {2, 3});
  REQUIRE(relative_max_error(a, a) == 0);
  REQUIRE(relative_max_error(a, b) == Approx(0.5 / 6.5));
  REQUIRE(relative_max_error(b, a) == Approx(0.5 / 6.0));
  // A transposed view compares by its logical order.
  const Tensor at = Tensor::from_vector<float>({1, 4, 2, 5, 3, 6}, {3, 2}).permute({1, 0});
  REQUIRE(relative_max_error(at, a) == 0);
  // Other dtypes are read as float64; shapes must agree; a NaN where the expected is finite is
  // infinitely wrong.
  REQUIRE(relative_max_error(a.cast(DType::float16), b) == Approx(0.5 / 6.5));
  REQUIRE(std::isinf(relative_max_error(a, a.reshape({3, 2}))));
  const Tensor nan = Tensor::from_vector<float>({1, 2, 3, 4, 5, std::nanf("")}, {2, 3});
  REQUIRE(std::isinf(relative_max_error(nan, a)));
  REQUIRE(relative_max_error(nan, nan) == 0);
}
