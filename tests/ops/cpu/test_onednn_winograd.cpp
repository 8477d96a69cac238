// oneDNN's Winograd F(4x4, 3x3) (registry row onednn_winograd, OneDnnAlgorithm::winograd): the
// grid's 3x3 stride-1 cases in float32 against the reference in every direction, ResNet-sized
// layers, what it declines and why, where the default lowering prefers it, and a blocked value
// handed to it by the layout pass.
#include "convgraph/build_config.hpp"
#include "support/catch.hpp"

#if CONVGRAPH_HAVE_ONEDNN

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "conformance/conv_conformance.hpp"
#include "convgraph/autodiff/gradient.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/planner/compile.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using namespace convgraph::testing;

namespace {

const DType f32 = DType::float32;

const ConvImplementation& row() {
  const ConvImplementation* r = conv_registry().find("onednn_winograd");
  REQUIRE(r != nullptr);
  return *r;
}

// The grid's 2-D 3x3 stride-1 cases it can take by their parameters (one group, shared, no
// dilation, pads of at most 1, static shapes), in float32.
std::vector<ConvCase> grid_cases() {
  std::vector<ConvCase> out;
  for (ConvCase c : full_conformance_grid()) {
    const Shape k = c.kernel_spatial();
    if (c.convdim() != 2 || c.params.unshared || c.params.num_groups != 1 || c.params.strided() ||
        c.params.dilated() || !c.static_shapes || k[0] != 3 || k[1] != 3) {
      continue;
    }
    bool small_pads = true;
    for (const AxisBorder& b : c.params.border) {
      const auto [before, after] = b.resolve(std::int64_t{3});
      small_pads = small_pads && before <= 1 && after <= 1;
    }
    if (!small_pads || c.dtype == DType::float16) continue;
    c.dtype = f32;
    out.push_back(c);
  }
  return out;
}

// The abstract node OP in the graph of OUTPUT from INPUTS, as a signature.
ConvSignature signature_of(const std::vector<Variable>& inputs, const Variable& output,
                           const std::string& op) {
  const FunctionGraph graph(inputs, {output});
  for (Node* n : graph.toposort()) {
    if (n->op->name() == op) return ConvSignature::of(*n);
  }
  FAIL("no " << op << " node");
  return {};
}

// Signatures of the three directions of a 3x3 convolution, CHANNELS -> FILTERS on N SIZE x SIZE
// images with PARAMS.
struct Directions {
  ConvSignature forward, grad_inputs, grad_weights;
};
Directions directions(const ConvParams& p, std::int64_t channels, std::int64_t filters,
                      std::int64_t size, std::int64_t ksize = 3, DType dtype = f32) {
  const Variable x = tensor("x", dtype, {2, channels, size, size});
  const Variable w = tensor("w", dtype, {filters, channels / p.num_groups, ksize, ksize});
  const Variable y = abstract_conv(p, x, w);
  const std::vector<Variable> g = grad(sum(y * y), {x, w});
  return {signature_of({x, w}, y, "AbstractConv2d"),
          signature_of({x, w}, g[0], "AbstractConv2d_gradInputs"),
          signature_of({x, w}, g[1], "AbstractConv2d_gradWeights")};
}

}  // namespace

TEST_CASE("oneDNN's Winograd conforms on the grid's 3x3 stride-1 cases in float32",
          "[onednn][winograd]") {
  if (!onednn_runs_avx512()) {
    WARN("oneDNN's Winograd needs AVX-512: skipped on this CPU");
    return;
  }
  const std::vector<ConvCase> cases = grid_cases();
  REQUIRE(cases.size() >= 8);
  const ConformanceReport report = run_conformance(row(), cases);
  check_conformance(report);
  // It takes every one of them, in every direction.
  CHECK(report.checked == 3 * cases.size());
}

TEST_CASE("oneDNN's Winograd on ResNet-sized layers, both flips, every direction",
          "[onednn][winograd]") {
  if (!onednn_runs_avx512()) {
    WARN("oneDNN's Winograd needs AVX-512: skipped on this CPU");
    return;
  }
  std::vector<ConvCase> cases;
  std::size_t index = 0;
  for (const auto& [channels, filters, size] :
       {std::tuple<std::int64_t, std::int64_t, std::int64_t>{64, 64, 14},
        {32, 48, 28},
        {24, 40, 9},
        {128, 128, 7}}) {
    for (bool flip : {true, false}) {
      ConvCase c;
      c.grid = "resnet-sized";
      c.index = index++;
      c.params = make_conv_params(2, "half", {1, 1}, flip);
      c.image = {3, channels, size, size + 2};
      c.kernel = {filters, channels, 3, 3};
      c.dtype = f32;
      cases.push_back(c);
    }
  }
  const ConformanceReport report = run_conformance(row(), cases);
  check_conformance(report);
  CHECK(report.checked == 3 * cases.size());
}

TEST_CASE("oneDNN's Winograd declines what it cannot run and says why", "[onednn][winograd]") {
  const Config config = global_config();
  auto declines = [&](const ConvSignature& s) { return row().declines(s, config).value_or(""); };
  const ConvParams half = make_conv_params(2, "half");
  CHECK(contains(declines(directions(make_conv_params(2, 1, {2, 2}), 16, 16, 14).forward),
                 "stride 1 only"));
  CHECK(contains(
      declines(directions(make_conv_params(2, 2, {1, 1}, true, {2, 2}), 16, 16, 14).grad_inputs),
      "no dilation"));
  CHECK(contains(
      declines(directions(make_conv_params(2, "half", {}, true, {}, 2), 16, 16, 14).grad_weights),
      "2 groups"));
  CHECK(contains(declines(directions(half, 16, 16, 14, 5).forward), "3x3 kernels only"));
  CHECK(contains(declines(directions(make_conv_params(2, "full"), 16, 16, 14).grad_inputs),
                 "pads at most 1 on each side"));
  CHECK(
      contains(declines(directions(half, 16, 16, 14, 3, DType::float64).forward), "dtype float64"));
  Config off = global_config();
  off.apply("dnn.enabled=False");
  CHECK(row().declines(directions(half, 16, 16, 14).forward, off).value_or("") ==
        "dnn.enabled=False");
  const std::optional<std::string> why =
      row().declines(directions(half, 16, 16, 14).forward, config);
  if (onednn_runs_avx512()) {
    CHECK_FALSE(why.has_value());
  } else {
    CHECK(contains(why.value_or(""), "need AVX-512"));
  }
}

TEST_CASE("the default lowering gives oneDNN's Winograd the layers where it measured faster",
          "[onednn][winograd]") {
  const ConvParams half = make_conv_params(2, "half");
  // 7x7 output positions: convgraph's Winograd keeps every direction.
  const Directions small = directions(half, 64, 64, 7);
  for (const ConvSignature* s : {&small.forward, &small.grad_inputs, &small.grad_weights}) {
    CHECK(contains(onednn_winograd_not_preferred(*s).value_or(""), "7x7 output positions"));
  }
  // 14x14: the forward; the gradients stay (oneDNN's scratchpad).
  const Directions mid = directions(half, 64, 64, 14);
  CHECK_FALSE(onednn_winograd_not_preferred(mid.forward).has_value());
  for (const ConvSignature* s : {&mid.grad_inputs, &mid.grad_weights}) {
    CHECK(contains(onednn_winograd_not_preferred(*s).value_or(""), "gradient over 14x14"));
  }
  // 28x28: every direction.
  const Directions wide = directions(half, 64, 64, 28);
  for (const ConvSignature* s : {&wide.forward, &wide.grad_inputs, &wide.grad_weights}) {
    CHECK_FALSE(onednn_winograd_not_preferred(*s).has_value());
  }

  // What a compile without flags builds, and with oneDNN's Winograd excluded.
  auto lowered = [&](std::int64_t size, const std::string& flags) {
    const Variable x = tensor("x", f32, {2, 32, size, size});
    const Variable w = tensor("w", f32, {32, 32, 3, 3});
    const Variable y = abstract_conv(half, x, w);
    const std::vector<Variable> g = grad(sum(y * y), {x, w});
    CompileOptions options;
    options.flags = flags;
    return compile({x, w}, {y, g[0], g[1]}, options);
  };
  const Function f = lowered(14, "");
  INFO(f.str());
  if (onednn_runs_avx512()) {
    CHECK(count_ops(f, "OneDnnWinogradConv2d") == 1);
    CHECK(count_ops(f, "WinogradConv2d_gradInputs") == 1);
    CHECK(count_ops(f, "WinogradConv2d_gradWeights") == 1);
    const Function wide_f = lowered(28, "");
    CHECK(count_ops(wide_f, "OneDnnWinogradConv2d_gradInputs") == 1);
    CHECK(count_ops(wide_f, "OneDnnWinogradConv2d_gradWeights") == 1);
  }
  const Function excluded = lowered(14, "optimizer_excluding=onednn_winograd");
  CHECK(count_ops(excluded, "WinogradConv2d") == 1);
  CHECK(count_ops(excluded, "WinogradConv2d_gradInputs") == 1);
  CHECK(count_ops(excluded, "OneDnnWinogradConv2d") == 0);
  // Excluding Winograd by its common tag leaves oneDNN's direct kernels.
  const Function direct = lowered(14, "optimizer_excluding=winograd");
  CHECK(count_ops(direct, "OneDnnConv2d") == 1);
  CHECK(count_ops(direct, "OneDnnConv2d_gradInputs") == 1);
  CHECK(count_ops(direct, "OneDnnConv2d_gradWeights") == 1);
  // Each gives the reference's results.
  const std::vector<Tensor> args = {random_tensor(f32, {2, 32, 14, 14}, 5),
                                    random_tensor(f32, {32, 32, 3, 3}, 6)};
  const std::vector<Tensor> expected = lowered(14, "conv.impl=reference")(args);
  // The terms summed into each element: 288 products for the output; the input gradient reads
  // 2y, itself a sum of 288, through 288 more; the weight gradient sums 2 x 196 such values.
  const std::vector<double> terms = {288, 288.0 * 288, 2 * 196.0 * 288};
  for (const Function* g : {&f, &excluded, &direct}) {
    const std::vector<Tensor> out = (*g)(args);
    for (std::size_t i = 0; i < out.size(); ++i) require_close_f32(out[i], expected[i], terms[i]);
  }
}

TEST_CASE("oneDNN's Winograd reads a blocked value the layout pass hands it",
          "[onednn][winograd]") {
  if (!onednn_runs_avx512()) {
    WARN("oneDNN's Winograd needs AVX-512: skipped on this CPU");
    return;
  }
  // A stride-2 3x3 convolution (oneDNN's blocked direct kernel) into a stride-1 one at 14x14.
  const Variable x = tensor("x", f32, {2, 32, 28, 28});
  const Variable w1 = tensor("w1", f32, {32, 32, 3, 3});
  const Variable w2 = tensor("w2", f32, {48, 32, 3, 3});
  const Variable h = abstract_conv(make_conv_params(2, 1, {2, 2}), x, w1);
  const Variable y = abstract_conv(make_conv_params(2, "half"), h, w2);
  const Function f = compile({x, w1, w2}, {y});
  INFO(f.str());
  CHECK(contains(f.str(), "OneDnnWinogradConv2d{border=half, layouts(a=nChw16c)}"));
  const std::vector<Tensor> args = {random_tensor(f32, {2, 32, 28, 28}, 7),
                                    random_tensor(f32, {32, 32, 3, 3}, 8),
                                    random_tensor(f32, {48, 32, 3, 3}, 9)};
  const Tensor expected = compile({x, w1, w2}, {y}, {.flags = "conv.impl=reference"})(args)[0];
  require_close_f32(f(args)[0], expected, 288.0 * 288);
}

#else

TEST_CASE("oneDNN's Winograd (not built in: skipped)", "[onednn][winograd]") {
  WARN("oneDNN is not built into this convgraph");
}

#endif
