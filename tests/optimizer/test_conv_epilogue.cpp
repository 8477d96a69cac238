// Convolution epilogues: the conv_epilogue pass on graphs of conv + bias [+ residual] [+ relu],
// every implementation that claims epilogues against the same graph unfused
// (optimizer_excluding=conv_epilogue) and against DebugMode's reference, the pass's rules (other
// readers, implementations without epilogues), conv2d with a bias, and the reference op's
// gradient and R-operator.
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/conv_epilogue.hpp"
#include "convgraph/ops/cpu/im2col.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif
#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::allclose_report;
using convgraph::testing::random_tensor;

namespace {

const char* kUnfused = "optimizer_excluding=conv_epilogue";

struct Case {
  std::string name;
  Shape image, kernel;
  ConvOptions options;
};

// What to build after the convolution.
struct Steps {
  bool bias = false, residual = false, relu = false;
  std::string label() const {
    ConvEpilogue e{bias, residual, relu};
    return e.str();
  }
};

struct Graph {
  std::vector<Variable> inputs;
  Variable output;
  std::vector<Tensor> args;
};

StaticShape static_of(const Shape& s) {
  return StaticShape(s.begin(), s.end());
}

Graph build(const Case& c, const Steps& steps, DType dtype, std::uint64_t seed) {
  Graph g;
  const Variable x = tensor("x", dtype, static_of(c.image));
  const Variable w = tensor("w", dtype, static_of(c.kernel));
  Variable y = c.image.size() == 5 ? conv3d(x, w, c.options) : conv2d(x, w, c.options);
  const StaticShape out = y.type().dims;
  g.inputs = {x, w};
  g.args = {random_tensor(dtype, c.image, seed), random_tensor(dtype, c.kernel, seed + 1)};
  if (steps.bias) {
    const Variable b = tensor("b", dtype, {out[1]});
    std::vector<int> pattern(out.size(), -1);
    pattern[1] = 0;
    y = y + dimshuffle(b, pattern);
    g.inputs.push_back(b);
    g.args.push_back(random_tensor(dtype, {*out[1]}, seed + 2));
  }
  if (steps.residual) {
    const Variable r = tensor("r", dtype, out);
    y = r + y;  // the residual on the left: the pass takes either order
    g.inputs.push_back(r);
    Shape shape;
    for (const StaticDim& d : out) shape.push_back(*d);
    g.args.push_back(random_tensor(dtype, shape, seed + 3));
  }
  if (steps.relu) y = relu(y);
  g.output = y;
  return g;
}

Function compile_with(const Graph& g, const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(g.inputs, {g.output}, options);
}

// The concrete convolutions of F's graph and their epilogues.
std::vector<std::string> epilogues_of(const Function& f) {
  std::vector<std::string> found;
  for (Node* n : f.graph().toposort()) {
    if (const auto* c = dynamic_cast<const ConcreteConv*>(n->op.get())) {
      found.push_back(c->epilogue().str());
    }
  }
  return found;
}

std::vector<Case> grid() {
  return {
      {"plain 3x3", {2, 3, 9, 11}, {4, 3, 3, 3}, {}},
      {"stride and pad",
       {3, 5, 10, 13},
       {6, 5, 3, 2},
       {.border_mode = {1, 2}, .subsample = {2, 3}}},
      {"asymmetric pad",
       {2, 3, 7, 8},
       {5, 3, 3, 3},
       {.border_mode = BorderMode::pairs({{1, 0}, {0, 2}})}},
      {"groups", {2, 6, 8, 7}, {9, 2, 3, 3}, {.border_mode = "half", .num_groups = 3}},
      {"dilation", {2, 4, 12, 9}, {5, 4, 3, 3}, {.border_mode = 1, .filter_dilation = {2, 1}}},
      {"depthwise", {2, 8, 10, 10}, {8, 1, 3, 3}, {.border_mode = "half", .num_groups = 8}},
      {"pointwise, many images", {5, 16, 6, 6}, {8, 16, 1, 1}, {}},
      {"convolution (flipped)", {1, 7, 15, 17}, {3, 7, 5, 4}, {.filter_flip = true}},
      {"3-D", {2, 3, 5, 6, 7}, {4, 3, 2, 3, 3}, {.border_mode = 1}},
  };
}

std::vector<Steps> all_steps() {
  return {{true, false, false}, {true, false, true},  {true, true, true},
          {false, true, true},  {false, false, true}, {true, true, false}};
}

// Every case and epilogue on implementation IMPL in DTYPE: the fused node is made, carries the
// whole epilogue, and computes what the unfused graph computes.
void check_implementation(const std::string& impl, DType dtype, const std::vector<Case>& cases) {
  const std::string flags = fmt::format("conv.impl={},threads=2", impl);
  const double tol = dtype == DType::float64 ? 1e-12 : 2e-5;
  std::uint64_t seed = 11;
  for (const Case& c : cases) {
    for (const Steps& steps : all_steps()) {
      INFO(impl << " " << dtype_name(dtype) << " " << c.name << " " << steps.label());
      const Graph g = build(c, steps, dtype, seed += 10);
      const Function fused = compile_with(g, flags);
      const Function unfused = compile_with(g, flags + "," + kUnfused);
      REQUIRE(epilogues_of(fused) == std::vector<std::string>{steps.label()});
      REQUIRE(epilogues_of(unfused) == std::vector<std::string>{"none"});
      // Nothing but the convolution is left: the bias vector is read as it is.
      CHECK(fused.graph().num_nodes() == 1);
      const Tensor a = fused(g.args)[0];
      const Tensor b = unfused(g.args)[0];
      const std::string report = allclose_report(a, b, tol, tol);
      INFO(report);
      CHECK(report.empty());
    }
  }
}

}  // namespace

TEST_CASE("conv_epilogue: CorrMM applies every epilogue as the unfused graph", "[conv_epilogue]") {
  std::vector<Case> cases = grid();
  cases.push_back(
      {"unshared", {2, 3, 6, 6}, {4, 4, 4, 3, 3, 3}, {.border_mode = "valid", .unshared = true}});
  check_implementation("corrmm", DType::float32, cases);
  check_implementation("corrmm", DType::float64, cases);
}

TEST_CASE("conv_epilogue: CorrMM's blocks of output lines and of several images",
          "[conv_epilogue]") {
  // Tiny blocks: every image is cut into runs of lines, or several small images share one GEMM.
  const CorrGemmTuning saved = corr_gemm_tuning();
  CorrGemmTuning tuning = saved;
  tuning.parallel_work = 0;
  tuning.block_bytes_per_thread = 256;
  tuning.block_bytes_shared = 256;
  tuning.target_columns = 40;
  set_corr_gemm_tuning(tuning);
  const std::vector<Case> cases = {
      {"lines of one image", {1, 3, 21, 19}, {5, 3, 3, 3}, {.border_mode = "half"}},
      {"lines, batch", {3, 2, 17, 9}, {4, 2, 3, 3}, {.subsample = {2, 1}}},
      {"several images per block", {7, 4, 5, 5}, {6, 4, 3, 3}, {.border_mode = 1}},
  };
  try {
    check_implementation("corrmm", DType::float32, cases);
    check_implementation("corrmm", DType::float64, cases);
  } catch (...) {
    set_corr_gemm_tuning(saved);
    throw;
  }
  set_corr_gemm_tuning(saved);
}

TEST_CASE("conv_epilogue: CorrMM with non-finite weights at the padding", "[conv_epilogue]") {
  // A non-finite weight meets the padding: those elements are recomputed after the GEMMs, so
  // the epilogue must come after that; the result must still match the unfused graph.
  const Case c{"inf weight", {2, 3, 6, 7}, {4, 3, 3, 3}, {.border_mode = "half"}};
  for (DType dtype : {DType::float32, DType::float64}) {
    Graph g = build(c, {true, true, true}, dtype, 5);
    Tensor w = g.args[1].cast(DType::float64);
    std::vector<double> values = w.to_vector<double>();
    values[0] = std::numeric_limits<double>::infinity();
    values[40] = -std::numeric_limits<double>::infinity();
    g.args[1] = Tensor::from_vector(values, c.kernel).cast(dtype);
    const Tensor a = compile_with(g, "conv.impl=corrmm")(g.args)[0];
    const Tensor b = compile_with(g, std::string("conv.impl=corrmm,") + kUnfused)(g.args)[0];
    const double tol = dtype == DType::float64 ? 1e-12 : 2e-5;
    const std::string report = allclose_report(a, b, tol, tol);
    INFO(report);
    CHECK(report.empty());
  }
}

#if CONVGRAPH_HAVE_ONEDNN
TEST_CASE("conv_epilogue: oneDNN applies every epilogue as the unfused graph", "[conv_epilogue]") {
  check_implementation("onednn", DType::float32, grid());
}

TEST_CASE("conv_epilogue: oneDNN's Winograd applies every epilogue as the unfused graph",
          "[conv_epilogue]") {
  if (!onednn_runs_avx512()) {
    WARN("oneDNN's Winograd needs AVX-512: skipped on this CPU");
    return;
  }
  // Its problems: 3x3 at stride 1, pads of at most 1; channels in and out of whole blocks of 16
  // and not.
  check_implementation(
      "onednn_winograd", DType::float32,
      {{"plain 3x3", {2, 3, 9, 11}, {4, 3, 3, 3}, {}},
       {"half, 16 channels", {2, 16, 8, 10}, {32, 16, 3, 3}, {.border_mode = "half"}},
       {"asymmetric pads",
        {3, 17, 7, 9},
        {5, 17, 3, 3},
        {.border_mode = BorderMode::pairs({{1, 0}, {0, 1}})}},
       {"correlation", {1, 20, 12, 6}, {18, 20, 3, 3}, {.border_mode = 1, .filter_flip = false}}});
}

TEST_CASE("conv_epilogue: oneDNN's post-ops in both layouts", "[conv_epilogue]") {
  // Blocked layouts (the residual reordered into the output's layout) and plain ones (copied into
  // the output buffer); a channel count that is not a multiple of the block.
  const std::vector<Case> cases = {
      {"3x3, 20 filters", {2, 16, 9, 9}, {20, 16, 3, 3}, {.border_mode = 1}},
      {"1x1 (plain)", {2, 32, 7, 7}, {24, 32, 1, 1}, {}},
      {"1x1 strided", {2, 32, 8, 8}, {48, 32, 1, 1}, {.subsample = {2, 2}}},
  };
  for (OneDnnLayout layout : {OneDnnLayout::blocked, OneDnnLayout::plain}) {
    set_onednn_layout(layout);
    try {
      check_implementation("onednn", DType::float32, cases);
    } catch (...) {
      set_onednn_layout(OneDnnLayout::automatic);
      throw;
    }
  }
  set_onednn_layout(OneDnnLayout::automatic);
}
#endif

TEST_CASE("conv_epilogue: DebugMode checks the fused node against the reference",
          "[conv_epilogue]") {
  const Case c{
      "stride and pad", {2, 5, 10, 9}, {6, 5, 3, 3}, {.border_mode = 1, .subsample = {2, 1}}};
  std::vector<std::string> impls{"corrmm"};
  if (CONVGRAPH_HAVE_ONEDNN) impls.push_back("onednn");
  for (const std::string& impl : impls) {
    INFO(impl);
    const Graph g = build(c, {true, true, true}, DType::float32, 3);
    const Function f = compile_with(g, fmt::format("conv.impl={},mode=DebugMode", impl));
    REQUIRE(epilogues_of(f) == std::vector<std::string>{"bias+add+relu"});
    const Tensor expected =
        compile_with(g, std::string("conv.impl=reference,") + kUnfused)(g.args)[0];
    const std::string report = allclose_report(f(g.args)[0], expected, 2e-5, 2e-5);
    INFO(report);
    CHECK(report.empty());
  }
}

TEST_CASE("conv_epilogue: the node's label names the epilogue", "[conv_epilogue]") {
  const Case c{"plain", {2, 3, 6, 6}, {4, 3, 3, 3}, {}};
  const Graph g = build(c, {true, true, true}, DType::float32, 1);
  const Function f = compile_with(g, "conv.impl=corrmm");
  const std::string text = debugprint(f.graph());
  INFO(text);
  CHECK(text.find("CorrMM{") != std::string::npos);
  CHECK(text.find("epilogue=bias+add+relu}") != std::string::npos);
}

TEST_CASE("conv_epilogue: what the pass leaves unfused", "[conv_epilogue]") {
  const Case c{"plain", {2, 3, 8, 8}, {4, 3, 3, 3}, {.border_mode = "half"}};
  const Graph g = build(c, {true, false, true}, DType::float32, 7);
  // g.output = relu(pre), pre = conv + bias.
  Node* relu_node = g.output.owner();
  const Variable pre = relu_node->inputs[0];
  const Variable conv_out = pre.owner()->inputs[0];

  SECTION("the pre-activation has another reader: the bias folds, the ReLU stays") {
    const Variable other = pre * 2.0;
    CompileOptions options;
    options.flags = "conv.impl=corrmm";
    const Function f = compile(g.inputs, {g.output, other}, options);
    CHECK(epilogues_of(f) == std::vector<std::string>{"bias"});
    options.flags = std::string("conv.impl=corrmm,") + kUnfused;
    const Function u = compile(g.inputs, {g.output, other}, options);
    const auto a = f(g.args);
    const auto b = u(g.args);
    CHECK(allclose_report(a[0], b[0], 1e-6, 1e-6).empty());
    CHECK(allclose_report(a[1], b[1], 1e-6, 1e-6).empty());
  }
  SECTION("the pre-activation is a function output: the ReLU stays") {
    CompileOptions options;
    options.flags = "conv.impl=corrmm";
    const Function f = compile(g.inputs, {g.output, pre}, options);
    CHECK(epilogues_of(f) == std::vector<std::string>{"bias"});
  }
  SECTION("the convolution's output has another reader: nothing folds") {
    CompileOptions options;
    options.flags = "conv.impl=corrmm";
    const Function f = compile(g.inputs, {g.output, sum(conv_out)}, options);
    CHECK(epilogues_of(f) == std::vector<std::string>{"none"});
  }
  SECTION("an implementation without epilogues (conv.impl=reference): nothing folds") {
    const ConvImplementation* reference = conv_registry().find("reference");
    REQUIRE(reference != nullptr);
    CHECK_FALSE(static_cast<bool>(reference->hooks.supports_epilogue));
    const Function f = compile_with(g, "conv.impl=reference");
    CHECK(epilogues_of(f) == std::vector<std::string>{"none"});
    const Tensor a = f(g.args)[0];
    const Tensor b = compile_with(g, "conv.impl=corrmm")(g.args)[0];
    CHECK(allclose_report(a, b, 2e-5, 2e-5).empty());
  }
  SECTION("optimizer_excluding=conv_epilogue: nothing folds") {
    CHECK(epilogues_of(compile_with(g, kUnfused)) == std::vector<std::string>{"none"});
  }
  SECTION("a bias of another dtype (a cast in between): nothing folds") {
    const Variable x = tensor("x", DType::float32, {2, 3, 8, 8});
    const Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
    const Variable b = tensor("b", DType::float64, {4});
    const Variable y = relu(conv2d(x, w) + dimshuffle(b, {-1, 0, -1, -1}));
    const Function f = compile({x, w, b}, {y}, {.flags = "conv.impl=corrmm"});
    CHECK(epilogues_of(f) == std::vector<std::string>{"none"});
  }
}

TEST_CASE("conv_epilogue: a residual that broadcasts is not folded", "[conv_epilogue]") {
  const Variable x = tensor("x", DType::float32, {2, 3, 8, 8});
  const Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  const Variable r = tensor("r", DType::float32, {1, 4, 6, 6});  // broadcast over the batch
  const Variable y = relu(conv2d(x, w) + r);
  const Function f = compile({x, w, r}, {y}, {.flags = "conv.impl=corrmm"});
  // The add is not a per-channel bias (H, W are not 1) nor a residual (it broadcasts): only the
  // ReLU could follow, and it reads the add, so nothing folds.
  CHECK(epilogues_of(f) == std::vector<std::string>{"none"});
}

TEST_CASE("conv_epilogue: conv2d with a bias", "[conv_epilogue]") {
  const Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  const Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  const Variable b = tensor("b", DType::float32, {4});
  const ConvOptions options{.border_mode = "half", .subsample = {2, 2}};
  const Variable y = relu(conv2d(x, w, b, options));
  const Variable manual = relu(conv2d(x, w, options) + dimshuffle(b, {-1, 0, -1, -1}));
  const std::vector<Tensor> args{random_tensor(DType::float32, {2, 3, 9, 9}, 1),
                                 random_tensor(DType::float32, {4, 3, 3, 3}, 2),
                                 random_tensor(DType::float32, {4}, 3)};
  std::vector<std::string> impls{"corrmm"};
  if (CONVGRAPH_HAVE_ONEDNN) impls.push_back("onednn");
  for (const std::string& impl : impls) {
    INFO(impl);
    const Function f = compile({x, w, b}, {y}, {.flags = "conv.impl=" + impl});
    CHECK(epilogues_of(f) == std::vector<std::string>{"bias+relu"});
    CHECK(f.graph().num_nodes() == 1);
    const Function m =
        compile({x, w, b}, {manual}, {.flags = "conv.impl=" + impl + "," + kUnfused});
    CHECK(allclose_report(f(args)[0], m(args)[0], 2e-5, 2e-5).empty());
  }
  // conv3d too, with a float64 bias cast to the input's dtype.
  const Variable x3 = tensor("x3", DType::float32, {1, 2, 4, 5, 6});
  const Variable w3 = tensor("w3", DType::float32, {3, 2, 2, 2, 2});
  const Variable b3 = tensor("b3", DType::float64, {3});
  const Variable y3 = conv3d(x3, w3, b3);
  CHECK(y3.dtype() == DType::float32);
  const Function f3 = compile({x3, w3, b3}, {y3}, {.flags = "conv.impl=corrmm"});
  CHECK(epilogues_of(f3) == std::vector<std::string>{"bias"});

  CHECK_THROWS_AS(conv2d(x, w, tensor("b2", DType::float32, {4, 1})), TypeError);
  CHECK_THROWS_AS(conv2d(x, w, tensor("b5", DType::float32, {5})), ShapeError);
}

TEST_CASE("conv_epilogue: a bias of the wrong length at run time", "[conv_epilogue]") {
  // Shapes unknown at build time: the fused node checks the bias against the output before it
  // writes anything, as the unfused add checks its operands.
  const Variable x = tensor4("x", DType::float32);
  const Variable w = tensor4("w", DType::float32);
  const Variable b = vector("b", DType::float32);
  const Variable y = relu(conv2d(x, w, b));
  const std::vector<Tensor> args{random_tensor(DType::float32, {1, 2, 5, 5}, 1),
                                 random_tensor(DType::float32, {3, 2, 3, 3}, 2),
                                 random_tensor(DType::float32, {4}, 3)};
  const Function f = compile({x, w, b}, {y}, {.flags = "conv.impl=corrmm"});
  CHECK(epilogues_of(f) == std::vector<std::string>{"bias+relu"});
  CHECK_THROWS_AS(f(args), ShapeError);
  const Function u =
      compile({x, w, b}, {y}, {.flags = std::string("conv.impl=corrmm,") + kUnfused});
  CHECK_THROWS_AS(u(args), ShapeError);
}

TEST_CASE("conv_epilogue: the reference op's gradient and R-operator", "[conv_epilogue]") {
  const ConvParams params = make_conv_params(2, 1, {2, 1});
  const ConvEpilogue epilogue{true, true, true};
  auto fn = [&](const std::vector<Variable>& in) {
    return conv_with_epilogue(params, epilogue, in);
  };
  // Away from the ReLU's kink: values of the output near zero would make finite differences
  // straddle it, so the residual is shifted to keep most outputs clear of it.
  const std::vector<Tensor> points{random_tensor(DType::float64, {2, 3, 6, 5}, 1),
                                   random_tensor(DType::float64, {4, 3, 3, 2}, 2),
                                   random_tensor(DType::float64, {4}, 3),
                                   random_tensor(DType::float64, {2, 4, 3, 6}, 4, 0.5, 1.5)};
  verify_grad(fn, points);
  const std::string rop = convgraph::testing::check_rop(fn, points);
  INFO(rop);
  CHECK(rop.empty());
  // Its perform is the unfused graph's value.
  std::vector<Variable> in;
  for (std::size_t i = 0; i < points.size(); ++i) {
    in.push_back(tensor(fmt::format("i{}", i), DType::float64, static_of(points[i].shape())));
  }
  const Variable fused = fn(in);
  const Variable unfused =
      relu(abstract_conv(params, in[0], in[1]) + dimshuffle(in[2], {-1, 0, -1, -1}) + in[3]);
  const Tensor a = convgraph::testing::eval(fused, in, points);
  const Tensor b = convgraph::testing::eval(unfused, in, points);
  CHECK(allclose_report(a, b, 1e-12, 1e-12).empty());
  // Type checks at build time.
  CHECK_THROWS_AS(conv_with_epilogue(params, epilogue, {in[0], in[1], in[2]}), ValueError);
  CHECK_THROWS_AS(conv_with_epilogue(params, epilogue,
                                     {in[0], in[1], tensor("k5", DType::float64, {5}), in[3]}),
                  ShapeError);
  CHECK_THROWS_AS(conv_with_epilogue(params, epilogue,
                                     {in[0], in[1], tensor("k32", DType::float32, {4}), in[3]}),
                  TypeError);
}
