// The oneDNN convolution family (conv_dnn on the CPU) beyond the conformance suite
// (tests/conformance, which runs it against the reference over the parameter grid in every
// direction, 2-D and 3-D): the grid again under both forced layout policies and on 16 channels
// for the blocked JIT kernels; layers big enough for those kernels; empty problems; non-contiguous
// inputs; the primitive cache; errors; the op; the lowering and compile().
// Without oneDNN in the build, one test says so (a visible warning) and passes.
#include "convgraph/build_config.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"

#if CONVGRAPH_HAVE_ONEDNN

#include "conformance/conv_conformance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/planner/debug_mode.hpp"
#include "support/size_one_cases.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {
const ConvImplementation& onednn_row() {
  return *conv_registry().find("onednn");
}
}  // namespace
using convgraph::testing::allclose_report;
using convgraph::testing::contains;
using convgraph::testing::count_ops;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;
using convgraph::testing::require_close_f32;
using convgraph::testing::spatial_of;

namespace {

const DType f32 = DType::float32;

// Sets the layout policy for a scope.
class ScopedLayout {
 public:
  explicit ScopedLayout(OneDnnLayout layout) : previous_(onednn_layout()) {
    set_onednn_layout(layout);
  }
  ~ScopedLayout() { set_onednn_layout(previous_); }
  ScopedLayout(const ScopedLayout&) = delete;
  ScopedLayout& operator=(const ScopedLayout&) = delete;

 private:
  OneDnnLayout previous_;
};

const char* layout_name(OneDnnLayout layout) {
  switch (layout) {
    case OneDnnLayout::automatic:
      return "automatic";
    case OneDnnLayout::blocked:
      return "blocked";
    case OneDnnLayout::plain:
      return "plain";
  }
  return "?";
}

// All three directions on one problem, against the reference. When the reference rejects the
// shapes, oneDNN must reject them with the same error type.
void check_problem(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                   std::uint64_t seed) {
  INFO("params: " << p.str() << ", image " << shape_str(image_shape) << ", kernel "
                  << shape_str(kernel_shape) << ", layout " << layout_name(onednn_layout()));
  const Tensor image = random_tensor(f32, image_shape, seed);
  const Tensor kernel = random_tensor(f32, kernel_shape, seed + 1);
  Tensor expected;
  try {
    expected = reference_conv_forward(p, image, kernel);
  } catch (const ShapeError&) {
    REQUIRE_THROWS_AS(onednn_conv_forward(p, image, kernel), ShapeError);
    return;
  }
  const int n = p.convdim;
  double taps = 1;
  for (std::int64_t k : spatial_of(kernel_shape, n)) taps *= static_cast<double>(k);
  {
    INFO("forward");
    require_close_f32(onednn_conv_forward(p, image, kernel), expected,
                      taps * static_cast<double>(kernel_shape[1]));
  }
  const Tensor top = random_tensor(f32, expected.shape(), seed + 2);
  const Shape image_spatial = spatial_of(image_shape, n);
  const Shape kernel_spatial = spatial_of(kernel_shape, n);
  {
    INFO("grad_inputs");
    require_close_f32(onednn_conv_grad_inputs(p, kernel, top, image_spatial),
                      reference_conv_grad_inputs(p, kernel, top, image_spatial),
                      taps * static_cast<double>(kernel_shape[0]));
  }
  {
    INFO("grad_weights");
    const double positions = static_cast<double>(top.numel()) / static_cast<double>(top.dim(1));
    require_close_f32(onednn_conv_grad_weights(p, image, top, kernel_spatial),
                      reference_conv_grad_weights(p, image, top, kernel_spatial), positions);
  }
}

}  // namespace

TEST_CASE("oneDNN conforms under both forced layouts", "[onednn]") {
  // The conformance suite (tests/conformance) runs oneDNN over the parameter grid under the
  // automatic layout policy; here the 2-D and 3-D grids (float32, what oneDNN takes) under each
  // forced layout: blocked data with its reorders, and plain data throughout. The small
  // channel counts mostly get oneDNN's GEMM and reference code; the next test reaches its JIT
  // kernels. One thread: on problems this small a parallel region only adds barriers, and on a
  // loaded machine OpenMP's spinning at those barriers made this test 10x slower.
  const ScopedFlags one_thread("threads=1");
  const ConvImplementation& row = onednn_row();
  std::size_t offset = 0;
  for (OneDnnLayout layout : {OneDnnLayout::blocked, OneDnnLayout::plain}) {
    INFO("layout " << layout_name(layout));
    const ScopedLayout scoped(layout);
    std::vector<testing::ConvCase> cases;
    // Every 13th 2-D problem, a different sample per layout; every 3-D problem.
    for (testing::GridSpec spec : {testing::grid_2d_spec(), testing::grid_3d_spec()}) {
      spec.dtypes = {f32};
      const std::vector<testing::ConvCase> grid = testing::make_grid(spec);
      const std::vector<testing::ConvCase> some =
          spec.convdim == 2 ? testing::sample(grid, 13, offset++) : grid;
      cases.insert(cases.end(), some.begin(), some.end());
    }
    testing::check_conformance(testing::run_conformance(row, cases));
  }
}

TEST_CASE("oneDNN's blocked JIT kernels conform on the 2-D grid with 16 channels", "[onednn]") {
  // The 2-D grid on 16 channels and 16 filters under the blocked layout, where oneDNN picks its
  // blocked JIT kernels (direct, and depthwise for 16 groups) instead of its GEMM code: blocked
  // layouts, reorders and the JIT kernels' own handling of pads, strides and dilations. Two
  // kernel sizes, odd and even; every fifth problem.
  const ScopedFlags one_thread("threads=1");
  const ScopedLayout layout(OneDnnLayout::blocked);
  testing::GridSpec spec = testing::grid_2d_spec();
  spec.name = "2-D, 16 channels";
  spec.channels = 16;
  spec.filters = 16;
  spec.groups = {1, 2, 16};
  spec.kernels = {{3, 3}, {2, 2}};
  spec.dtypes = {f32};
  spec.batches = {2};
  spec.images = {{9, 8}};
  testing::check_conformance(
      testing::run_conformance(onednn_row(), testing::sample(testing::make_grid(spec), 5)));
}

TEST_CASE("oneDNN: kernels of size 1 on any axis, every direction", "[onednn]") {
  // The shared table of size-1 kernels (support/size_one_cases.hpp) without its unshared rows,
  // which oneDNN does not take, under both forced layouts.
  const ScopedFlags one_thread("threads=1");
  convgraph::testing::SizeOneFilter filter;
  filter.unshared = false;
  const std::vector<convgraph::testing::SizeOneCase> cases =
      convgraph::testing::size_one_cases(filter);
  for (OneDnnLayout forced : {OneDnnLayout::blocked, OneDnnLayout::plain}) {
    const ScopedLayout layout(forced);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      INFO("case: " << cases[c].label);
      check_problem(cases[c].params, cases[c].image, cases[c].kernel, 1500 + c);
    }
  }
}

TEST_CASE("oneDNN on layers large enough for its blocked JIT kernels", "[onednn]") {
  // 16+ channels per group bring in oneDNN's AVX-512 / AVX2 direct, 1x1 and depthwise kernels
  // (on CPUs that have them), which the small grid does not reach.
  struct Case {
    const char* what;
    ConvParams params;
    Shape image, kernel;
  };
  const std::vector<Case> cases = {
      {"3x3 half",
       make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1),
       {2, 32, 9, 10},
       {48, 32, 3, 3}},
      {"3x3 stride 2, asymmetric pads, correlation",
       make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 2}, false, {1, 1}, 1),
       {2, 32, 11, 9},
       {32, 32, 3, 3}},
      {"dilated 2, grouped 2",
       make_conv_params(2, 2, {1, 1}, true, {2, 2}, 2),
       {2, 64, 9, 9},
       {32, 32, 3, 3}},
      {"depthwise",
       make_conv_params(2, 1, {1, 1}, true, {1, 1}, 32),
       {2, 32, 10, 9},
       {32, 1, 3, 3}},
      {"pointwise",
       make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1),
       {2, 64, 7, 8},
       {32, 64, 1, 1}},
      {"pointwise stride 2",
       make_conv_params(2, "valid", {2, 2}, true, {1, 1}, 1),
       {2, 32, 9, 8},
       {64, 32, 1, 1}},
      {"stem: 3 channels, 7x7 stride 2",
       make_conv_params(2, 3, {2, 2}, true, {1, 1}, 1),
       {2, 3, 20, 18},
       {16, 3, 7, 7}},
      {"3-D 3x3x3",
       make_conv_params(3, 1, {1, 1, 1}, true, {1, 1, 1}, 1),
       {2, 16, 5, 6, 7},
       {32, 16, 3, 3, 3}},
  };
  std::uint64_t seed = 500;
  for (OneDnnLayout layout :
       {OneDnnLayout::automatic, OneDnnLayout::blocked, OneDnnLayout::plain}) {
    const ScopedLayout scoped(layout);
    for (const Case& c : cases) {
      INFO(c.what << ": "
                  << onednn_conv_describe(ConvDirection::forward, c.params, c.image, c.kernel));
      check_problem(c.params, c.image, c.kernel, seed += 3);
    }
  }
}

TEST_CASE("oneDNN: the automatic layout policy keeps stems and most pointwise layers plain",
          "[onednn]") {
  const ScopedLayout scoped(OneDnnLayout::automatic);
  // Only the primitives are created here (no data is touched), so suite-sized shapes are cheap.
  const ConvParams stem = make_conv_params(2, 3, {2, 2}, true, {1, 1}, 1);
  const std::string stem_data = onednn_conv_describe(ConvDirection::grad_inputs, stem,
                                                     {64, 3, 7, 7}, {8, 64, 112, 112}, {224, 224});
  INFO(stem_data);
  CHECK(stem_data.find(", plain") != std::string::npos);
  const ConvParams pointwise = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const std::string pw =
      onednn_conv_describe(ConvDirection::forward, pointwise, {8, 256, 56, 56}, {64, 256, 1, 1});
  INFO(pw);
  CHECK(pw.find(", plain") != std::string::npos);
  const ConvParams same = make_conv_params(2, 1, {1, 1}, true, {1, 1}, 1);
  const std::string dense =
      onednn_conv_describe(ConvDirection::forward, same, {8, 64, 56, 56}, {64, 64, 3, 3});
  INFO(dense);
  CHECK(dense.find(", plain") == std::string::npos);
  // Strided 1x1: the blocked forward reads the strided input itself; the backward passes are
  // GEMMs on plain data.
  const ConvParams down = make_conv_params(2, "valid", {2, 2}, true, {1, 1}, 1);
  const std::string down_fwd =
      onednn_conv_describe(ConvDirection::forward, down, {8, 512, 28, 28}, {1024, 512, 1, 1});
  const std::string down_data = onednn_conv_describe(
      ConvDirection::grad_inputs, down, {1024, 512, 1, 1}, {8, 1024, 14, 14}, {28, 28});
  INFO(down_fwd << "\n" << down_data);
  CHECK(down_fwd.find(", plain") == std::string::npos);
  CHECK(down_data.find(", plain") != std::string::npos);
  CHECK(onednn_version().find("oneDNN") == 0);
  // Outputs of at most 7x7 positions: blocked for the forward and the input gradient where oneDNN
  // runs AVX-512 (its GEMM path has too few columns per image there), plain elsewhere; the weight
  // gradient there stays plain.
  const bool avx512 = onednn_runs_avx512();
  const std::string small_fwd =
      onednn_conv_describe(ConvDirection::forward, pointwise, {8, 2048, 7, 7}, {512, 2048, 1, 1});
  const std::string small_data = onednn_conv_describe(
      ConvDirection::grad_inputs, down, {2048, 1024, 1, 1}, {8, 2048, 7, 7}, {14, 14});
  const std::string small_weights = onednn_conv_describe(ConvDirection::grad_weights, pointwise,
                                                         {8, 2048, 7, 7}, {8, 512, 7, 7}, {1, 1});
  const std::string wide_fwd =
      onednn_conv_describe(ConvDirection::forward, pointwise, {8, 1024, 14, 14}, {256, 1024, 1, 1});
  INFO("avx512 " << avx512 << "\n"
                 << small_fwd << "\n"
                 << small_data << "\n"
                 << small_weights << "\n"
                 << wide_fwd);
  CHECK((small_fwd.find(", plain") == std::string::npos) == avx512);
  CHECK((small_data.find(", plain") == std::string::npos) == avx512);
  CHECK(small_weights.find(", plain") != std::string::npos);
  CHECK(wide_fwd.find(", plain") != std::string::npos);
  // Weight gradients over more than 7x7 and at most 14x14 positions, unstrided: blocked where
  // oneDNN runs AVX-512, plain elsewhere; over 28x28 positions, or strided, plain.
  const std::string mid_weights = onednn_conv_describe(ConvDirection::grad_weights, pointwise,
                                                       {8, 1024, 14, 14}, {8, 256, 14, 14}, {1, 1});
  const std::string odd_weights = onednn_conv_describe(ConvDirection::grad_weights, pointwise,
                                                       {8, 64, 8, 8}, {8, 32, 8, 8}, {1, 1});
  const std::string wide_weights = onednn_conv_describe(ConvDirection::grad_weights, pointwise,
                                                        {8, 512, 28, 28}, {8, 128, 28, 28}, {1, 1});
  const std::string down_weights = onednn_conv_describe(
      ConvDirection::grad_weights, down, {8, 512, 28, 28}, {8, 1024, 14, 14}, {1, 1});
  INFO(mid_weights << "\n" << odd_weights << "\n" << wide_weights << "\n" << down_weights);
  CHECK((mid_weights.find(", plain") == std::string::npos) == avx512);
  CHECK((odd_weights.find(", plain") == std::string::npos) == avx512);
  CHECK(wide_weights.find(", plain") != std::string::npos);
  CHECK(down_weights.find(", plain") != std::string::npos);
}

TEST_CASE("oneDNN empty problems give zeros, like the reference", "[onednn]") {
  const ConvParams p = make_conv_params(2, "full", {1, 2}, true, {1, 1}, 1);
  const ConvParams g = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  check_problem(p, {0, 3, 5, 5}, {4, 3, 2, 2}, 1000);  // batch 0
  check_problem(p, {2, 0, 5, 5}, {4, 0, 2, 2}, 1001);  // no channels
  check_problem(p, {2, 3, 5, 5}, {0, 3, 2, 2}, 1002);  // no filters
  check_problem(g, {2, 0, 4, 4}, {2, 0, 3, 3}, 1003);  // no channels, 2 groups
  check_problem(p, {2, 3, 0, 4}, {4, 3, 2, 2}, 1004);  // an empty image axis
  const ConvParams p3 = make_conv_params(3, 1, {1, 1, 1}, false, {1, 1, 1}, 1);
  check_problem(p3, {0, 2, 3, 4, 5}, {3, 2, 3, 3, 3}, 1005);
  // The weight gradient of an empty batch is all zeros (a sum over nothing), not garbage.
  const Tensor image = Tensor::zeros(f32, {0, 3, 5, 5});
  const Tensor top = Tensor::zeros(f32, {0, 4, 6, 3});
  const Tensor dw = onednn_conv_grad_weights(p, image, top, {2, 2});
  REQUIRE(dw.shape() == Shape{4, 3, 2, 2});
  for (float v : dw.to_vector<float>()) REQUIRE(v == 0.0f);
}

TEST_CASE("oneDNN reads non-contiguous inputs", "[onednn]") {
  const ConvParams p =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, true, {1, 2}, 2);
  const Tensor image = random_tensor(f32, {3, 7, 4, 8}, 1100).permute({0, 2, 1, 3});
  const Tensor kernel = random_tensor(f32, {12, 2, 3, 2}, 1101).slice(0, 0, 12, 2);
  REQUIRE_FALSE(image.is_contiguous());
  REQUIRE_FALSE(kernel.is_contiguous());
  const Tensor expected = reference_conv_forward(p, image, kernel);
  require_close_f32(onednn_conv_forward(p, image, kernel), expected, 12);
  Shape wide = expected.shape();
  wide.back() *= 2;
  const Tensor top = random_tensor(f32, wide, 1102).slice(3, 0, wide.back(), 2);
  REQUIRE_FALSE(top.is_contiguous());
  require_close_f32(onednn_conv_grad_inputs(p, kernel, top, {7, 8}),
                    reference_conv_grad_inputs(p, kernel, top, {7, 8}), 36);
  require_close_f32(onednn_conv_grad_weights(p, image, top, {3, 2}),
                    reference_conv_grad_weights(p, image, top, {3, 2}),
                    static_cast<double>(top.numel()));
}

namespace {

StaticShape static_of(const Shape& shape) {
  return StaticShape(shape.begin(), shape.end());
}

std::shared_ptr<const OneDnnConv> dnn_op(ConvDirection direction, const ConvParams& p) {
  return std::make_shared<const OneDnnConv>(direction, p);
}

}  // namespace

TEST_CASE("oneDNN run-time errors name the op and the problem", "[onednn]") {
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const ConvParams g2 = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  const Tensor image = random_tensor(f32, {2, 4, 6, 6}, 1);
  const Tensor kernel = random_tensor(f32, {3, 4, 3, 3}, 2);

  SECTION("kernel channels that do not match the image") {
    const Tensor bad = random_tensor(f32, {3, 5, 3, 3}, 3);
    const std::string m = message_of<ShapeError>([&] { onednn_conv_forward(p, image, bad); });
    CHECK(contains(m, "OneDnnConv2d"));
    CHECK(contains(m, "input channels"));
  }
  SECTION("channels or filters not divisible by the groups") {
    const Tensor k = random_tensor(f32, {3, 2, 3, 3}, 3);
    CHECK(
        contains(message_of<ShapeError>([&] { onednn_conv_forward(g2, image, k); }), "3 filters"));
    const Tensor img = random_tensor(f32, {2, 5, 6, 6}, 3);
    const Tensor top = random_tensor(f32, {2, 4, 4, 4}, 4);
    const std::string m = message_of<ShapeError>([&] {
      onednn_conv_grad_weights(g2, img, top, {3, 3});
    });
    CHECK(contains(m, "OneDnnConv2d_gradWeights"));
    CHECK(contains(m, "not divisible"));
  }
  SECTION("an impossible output") {
    const Tensor big = random_tensor(f32, {3, 4, 7, 3}, 3);
    CHECK(contains(message_of<ShapeError>([&] { onednn_conv_forward(p, image, big); }),
                   "impossible output"));
  }
  SECTION("a topgrad inconsistent with the shapes (both gradients)") {
    const Tensor top = random_tensor(f32, {2, 3, 5, 4}, 4);
    std::string m = message_of<ShapeError>([&] {
      onednn_conv_grad_inputs(p, kernel, top, {6, 6});
    });
    CHECK(contains(m, "OneDnnConv2d_gradInputs"));
    CHECK(contains(m, "invalid input_shape"));
    m = message_of<ShapeError>([&] { onednn_conv_grad_weights(p, image, top, {3, 3}); });
    CHECK(contains(m, "invalid filter_shape"));
  }
  SECTION("a spatial argument of the wrong length or negative") {
    const Tensor top = random_tensor(f32, {2, 3, 4, 4}, 4);
    REQUIRE_THROWS_AS(onednn_conv_grad_inputs(p, kernel, top, {6}), ShapeError);
    REQUIRE_THROWS_AS(onednn_conv_grad_inputs(p, kernel, top, {6, -1}), ShapeError);
    REQUIRE_THROWS_AS(onednn_conv_grad_weights(p, image, top, {3, 0}), ShapeError);
  }
  SECTION("float64, float16 and unshared are unsupported; other dtypes and ranks are TypeErrors") {
    std::string m = message_of<UnsupportedError>(
        [&] { onednn_conv_forward(p, image.cast(DType::float64), kernel.cast(DType::float64)); });
    CHECK(contains(m, "float32 only"));
    m = message_of<UnsupportedError>(
        [&] { onednn_conv_forward(p, image.cast(DType::float16), kernel.cast(DType::float16)); });
    CHECK(contains(m, "float16"));
    const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
    CHECK(contains(message_of<UnsupportedError>([&] {
                     onednn_conv_forward(u, image, random_tensor(f32, {3, 4, 4, 4, 3, 3}, 5));
                   }),
                   "unshared"));
    REQUIRE_THROWS_AS(onednn_conv_forward(p, image.cast(DType::int32), kernel.cast(DType::int32)),
                      TypeError);
    REQUIRE_THROWS_AS(onednn_conv_forward(p, image, kernel.cast(DType::float64)), TypeError);
    REQUIRE_THROWS_AS(onednn_conv_forward(p, image.reshape({2, 4, 36}), kernel), TypeError);
    const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
    CHECK(contains(message_of<TypeError>([&] { onednn_conv_forward(p3, image, kernel); }),
                   "OneDnnConv3d"));
    REQUIRE_THROWS_AS(onednn_conv_forward(p, Tensor(), kernel), ValueError);
    REQUIRE_THROWS_AS(onednn_conv_describe(ConvDirection::forward, p, {2, 4}, {3, 4, 3, 3}),
                      TypeError);
  }
  SECTION("a failure inside oneDNN is a DeviceError naming the op, the shapes and the status") {
    // make_conv_params refuses negative pads; a hand-built ConvParams reaches oneDNN with them
    // (the reference crops), and oneDNN rejects its descriptor.
    ConvParams cropped = p;
    cropped.border = {AxisBorder::pads(-2, 0), AxisBorder::pads(0, 0)};
    const std::string m =
        message_of<DeviceError>([&] { onednn_conv_forward(cropped, image, kernel); });
    CHECK(contains(m, "OneDnnConv2d"));
    CHECK(contains(m, "image [2, 4, 6, 6]"));
    CHECK(contains(m, "kernel [3, 4, 3, 3]"));
    CHECK(contains(m, "status invalid_arguments"));
  }
  SECTION("the shape hints are checked at run time") {
    const ConvParams hinted =
        make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, false, {std::nullopt, 4, 7, 6});
    std::vector<Tensor> out(1);
    const std::string m = message_of<ShapeError>([&] {
      dnn_op(ConvDirection::forward, hinted)->perform({image, kernel}, out);
    });
    CHECK(contains(m, "imshp"));
    CHECK_FALSE(out[0].defined());
  }
}

TEST_CASE("oneDNN kernels cache their primitives per input shape", "[onednn]") {
  const ConvParams p =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {0, 2}}), {1, 2}, true, {2, 1}, 2);
  const Tensor kernel = random_tensor(f32, {6, 2, 3, 2}, 1300);

  SECTION("shapes unknown at compile time: one primitive per batch size, reused") {
    const Variable x = tensor("x", f32, {std::nullopt, 4, 9, 8});
    const Variable w = tensor("w", f32, {6, 2, 3, 2});
    const auto op = dnn_op(ConvDirection::forward, p);
    const Variable y = apply(op, {x, w});
    const std::uint64_t before = onednn_primitives_created();
    const std::shared_ptr<const Kernel> k = kernel_for(*y.owner());
    CHECK(k->name() == op->str());
    CHECK(onednn_primitives_created() == before);  // nothing to precompute
    std::vector<Tensor> out(1);
    const Tensor image2 = random_tensor(f32, {2, 4, 9, 8}, 1301);
    const Tensor image5 = random_tensor(f32, {5, 4, 9, 8}, 1302);
    for (int call = 0; call < 2; ++call) {
      k->run({image2, kernel}, out);
      require_close_f32(out[0], reference_conv_forward(p, image2, kernel), 12);
    }
    CHECK(onednn_primitives_created() == before + 1);
    k->run({image5, kernel}, out);
    require_close_f32(out[0], reference_conv_forward(p, image5, kernel), 12);
    CHECK(onednn_primitives_created() == before + 2);
    k->run({image2, kernel}, out);
    require_close_f32(out[0], reference_conv_forward(p, image2, kernel), 12);
    CHECK(onednn_primitives_created() == before + 2);
    {
      // Another thread count is another primitive (oneDNN tunes its work split for it).
      const ScopedFlags threads("threads=1");
      k->run({image2, kernel}, out);
      require_close_f32(out[0], reference_conv_forward(p, image2, kernel), 12);
    }
    CHECK(onednn_primitives_created() == before + 3);
    CHECK_THROWS_AS(k->run({image2}, out), ValueError);
  }
  SECTION("the cache keeps the 8 most recently used shapes") {
    const ScopedFlags one_thread("threads=1");
    const Variable x = tensor("x", f32, {std::nullopt, 4, 9, 8});
    const Variable y =
        apply(dnn_op(ConvDirection::forward, p), {x, tensor("w", f32, {6, 2, 3, 2})});
    const std::shared_ptr<const Kernel> k = kernel_for(*y.owner());
    std::vector<Tensor> out(1);
    auto run_batch = [&](std::int64_t batch) {
      k->run({Tensor::zeros(f32, {batch, 4, 9, 8}), kernel}, out);
      REQUIRE(out[0].dim(0) == batch);
    };
    const std::uint64_t before = onednn_primitives_created();
    for (std::int64_t batch = 1; batch <= 8; ++batch) run_batch(batch);
    CHECK(onednn_primitives_created() == before + 8);
    run_batch(1);  // a hit, which makes batch 2 the least recently used
    run_batch(9);  // evicts batch 2
    CHECK(onednn_primitives_created() == before + 9);
    run_batch(1);
    run_batch(3);
    CHECK(onednn_primitives_created() == before + 9);
    run_batch(2);
    CHECK(onednn_primitives_created() == before + 10);
  }
  SECTION("static shapes: the primitives are created with the kernel, at compile time") {
    const Tensor image = random_tensor(f32, {3, 4, 9, 8}, 1303);
    const Tensor expected = reference_conv_forward(p, image, kernel);
    const Tensor top = random_tensor(f32, expected.shape(), 1304);
    const Variable x = tensor("x", f32, {3, 4, 9, 8});
    const Variable w = tensor("w", f32, {6, 2, 3, 2});
    const Variable t = tensor("t", f32, static_of(expected.shape()));
    const Variable ishape = make_constant(Tensor::from_vector<std::int64_t>({9, 8}, {2}));
    const Variable kshape = make_constant(Tensor::from_vector<std::int64_t>({3, 2}, {2}));
    const Variable gi = apply(dnn_op(ConvDirection::grad_inputs, p), {w, t, ishape});
    const Variable gw = apply(dnn_op(ConvDirection::grad_weights, p), {x, t, kshape});
    const std::uint64_t before = onednn_primitives_created();
    const auto k_gi = kernel_for(*gi.owner());
    const auto k_gw = kernel_for(*gw.owner());
    CHECK(onednn_primitives_created() == before + 2);
    std::vector<Tensor> out(1);
    for (int call = 0; call < 2; ++call) {
      k_gi->run({kernel, top, ishape.constant_value()}, out);
      require_close_f32(out[0], reference_conv_grad_inputs(p, kernel, top, {9, 8}), 18);
      k_gw->run({image, top, kshape.constant_value()}, out);
      require_close_f32(out[0], reference_conv_grad_weights(p, image, top, {3, 2}),
                        static_cast<double>(top.numel()));
    }
    CHECK(onednn_primitives_created() == before + 2);
  }
}

TEST_CASE("oneDNN: one kernel run from several threads at once", "[onednn]") {
  // The cache is shared under a mutex, the primitives run outside it with a scratchpad per call.
  const ConvParams p = make_conv_params(2, 1, {1, 1}, true, {1, 1}, 1);
  const Variable x = tensor("x", f32, {std::nullopt, 16, 8, 8});
  const Variable w = tensor("w", f32, {16, 16, 3, 3});
  const Variable y = apply(dnn_op(ConvDirection::forward, p), {x, w});
  const std::shared_ptr<const Kernel> k = kernel_for(*y.owner());
  const Tensor kernel = random_tensor(f32, {16, 16, 3, 3}, 1400);
  std::vector<Tensor> images, expected;
  for (std::int64_t batch = 1; batch <= 3; ++batch) {
    images.push_back(
        random_tensor(f32, {batch, 16, 8, 8}, 1400 + static_cast<std::uint64_t>(batch)));
    expected.push_back(reference_conv_forward(p, images.back(), kernel));
  }
  const ScopedFlags one_thread_each("threads=1");
  std::vector<std::string> failures(6);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int call = 0; call < 10; ++call) {
          const std::size_t which = (t + static_cast<std::size_t>(call)) % images.size();
          std::vector<Tensor> out(1);
          k->run({images[which], kernel}, out);
          const std::string report = allclose_report(out[0], expected[which], 1e-4, 1e-4);
          if (!report.empty()) failures[t] = report;
        }
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& failure : failures) {
    INFO(failure);
    CHECK(failure.empty());
  }
}

TEST_CASE("OneDnnConv op: names, equality, types, reference op and gradients", "[onednn]") {
  const ConvParams p2 = make_conv_params(2, "half", {2, 1}, false, {1, 1}, 1);
  const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
  CHECK(dnn_op(ConvDirection::forward, p2)->name() == "OneDnnConv2d");
  CHECK(dnn_op(ConvDirection::grad_inputs, p2)->name() == "OneDnnConv2d_gradInputs");
  CHECK(dnn_op(ConvDirection::grad_weights, p2)->name() == "OneDnnConv2d_gradWeights");
  CHECK(dnn_op(ConvDirection::forward, p3)->name() == "OneDnnConv3d");
  CHECK(dnn_op(ConvDirection::grad_inputs, p3)->name() == "OneDnnConv3d_gradInputs");
  CHECK(dnn_op(ConvDirection::grad_weights, p3)->name() == "OneDnnConv3d_gradWeights");
  CHECK(dnn_op(ConvDirection::forward, p2)->str() == "OneDnnConv2d{" + p2.str() + "}");

  const auto a = dnn_op(ConvDirection::forward, p2);
  CHECK(a->equals(*dnn_op(ConvDirection::forward, p2)));
  CHECK(a->hash() == dnn_op(ConvDirection::forward, p2)->hash());
  CHECK_FALSE(a->equals(*dnn_op(ConvDirection::grad_inputs, p2)));
  CHECK_FALSE(a->equals(*dnn_op(ConvDirection::forward, p3)));
  const AbstractConv abstract(ConvDirection::forward, p2);
  CHECK_FALSE(a->equals(abstract));
  const std::shared_ptr<const Op> reference = a->reference_op();
  REQUIRE(reference != nullptr);
  CHECK(reference->equals(abstract));

  const Variable x = tensor("x", f32, {2, 3, 9, 8});
  const Variable w = tensor("w", f32, {5, 3, 3, 2});
  CHECK(a->make_outputs({x, w}) == abstract.make_outputs({x, w}));
  CHECK(apply(a, {x, w}).type().str() == "float32[2, 5, 5, 9]");
  CHECK_THROWS_AS(apply(a, {x, tensor("w", f32, {5, 4, 3, 2})}), ShapeError);
  CHECK(contains(message_of<UnsupportedError>([&] {
                   apply(a, {tensor4("xd", DType::float64), tensor4("wd", DType::float64)});
                 }),
                 "float32 only"));
  const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  CHECK_THROWS_AS(
      apply(dnn_op(ConvDirection::forward, u), {x, tensor("wu", f32, {5, 7, 7, 3, 3, 2})}),
      UnsupportedError);

  // Gradients are the abstract op's, which the lowering passes lower again.
  const Variable xs = tensor4("xs", f32);
  const Variable ws = tensor4("ws", f32);
  const Variable y = apply(a, {xs, ws});
  const std::vector<Variable> g = a->grad({xs, ws}, {y}, {y});
  REQUIRE(g.size() == 2);
  REQUIRE(g[0].owner() != nullptr);
  CHECK(g[0].owner()->op->name() == "AbstractConv2d_gradInputs");
  CHECK(g[1].owner()->op->name() == "AbstractConv2d_gradWeights");
}

TEST_CASE("lower_conv_to_onednn lowers float32 CPU convolutions and says why it declines others",
          "[onednn]") {
  const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const Config config = Config::defaults();
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext ctx{config, &declines};

  const Variable x = tensor("x", f32, {2, 3, 8, 8});
  const Variable w = tensor("w", f32, {4, 3, 3, 3});
  const Variable y = abstract_conv(p, x, w);
  const std::vector<Variable> lowered = lower_with(onednn_row(), *y.owner(), ctx);
  REQUIRE(lowered.size() == 1);
  CHECK(lowered[0].owner()->op->name() == "OneDnnConv2d");
  CHECK(lowered[0].type() == y.type());
  CHECK(declines.empty());

  const Variable yd =
      abstract_conv(p, tensor4("xd", DType::float64), tensor4("wd", DType::float64));
  CHECK(lower_with(onednn_row(), *yd.owner(), ctx).empty());
  const Variable yh =
      abstract_conv(p, tensor4("xh", DType::float16), tensor4("wh", DType::float16));
  CHECK(lower_with(onednn_row(), *yh.owner(), ctx).empty());
  const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  const Variable yu = abstract_conv(u, x, tensor("wu", f32, {4, 6, 6, 3, 3, 3}));
  CHECK(lower_with(onednn_row(), *yu.owner(), ctx).empty());
  REQUIRE(declines.size() == 3);
  CHECK(contains(declines.at(yd.owner())[0], "onednn (conv_dnn): dtype float64"));
  CHECK(contains(declines.at(yh.owner())[0], "dtype float16"));
  CHECK(contains(declines.at(yu.owner())[0], "unshared"));

  Config disabled = Config::defaults();
  disabled.set("dnn.enabled", "False");
  const PassContext off{disabled, &declines};
  CHECK(lower_with(onednn_row(), *y.owner(), off).empty());
  CHECK(contains(declines.at(y.owner())[0], "dnn.enabled=False"));
}

namespace {

Tensor twice(const Tensor& t) {
  std::vector<float> values = t.to_vector<float>();
  for (float& v : values) v *= 2.0f;
  return Tensor::from_vector(values, t.shape());
}

}  // namespace

TEST_CASE("oneDNN convolutions through compile(), in every direction, 2-D and 3-D", "[onednn]") {
  const Variable x = tensor("x", f32, {2, 4, 9, 8});
  const Variable w = tensor("w", f32, {6, 2, 3, 3});
  const Variable v = tensor("v", f32, {2, 3, 5, 6, 5});
  const Variable k = tensor("k", f32, {4, 3, 2, 3, 3});
  const ConvParams p2 =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, true, {1, 2}, 2);
  const ConvParams p3 = make_conv_params(3, 1, {1, 2, 1}, false, {1, 1, 2}, 1);
  const std::vector<Tensor> args = {
      random_tensor(f32, {2, 4, 9, 8}, 1), random_tensor(f32, {6, 2, 3, 3}, 2),
      random_tensor(f32, {2, 3, 5, 6, 5}, 3), random_tensor(f32, {4, 3, 2, 3, 3}, 4)};

  const bool registered = pass_database().find("conv_dnn") != nullptr;
  std::vector<Variable> outputs;
  CompileOptions options;
  if (registered) {
    // The real pipeline: conv_gemm excluded, so every convolution must go to oneDNN.
    const Variable y = abstract_conv(p2, x, w);
    const Variable z = abstract_conv(p3, v, k);
    const Variable cost = sum(y * y) + sum(z * z);
    const std::vector<Variable> grads = grad(cost, {x, w, v, k});
    outputs = {cost, grads[0], grads[1], grads[2], grads[3]};
    options.flags = select_conv_impl_flags("onednn");
  } else {
    WARN("the conv_dnn pass is not registered yet: building the OneDnnConv nodes directly");
    const Variable y = apply(dnn_op(ConvDirection::forward, p2), {x, w});
    const Variable z = apply(dnn_op(ConvDirection::forward, p3), {v, k});
    const Variable gy = y * 2.0;
    const Variable gz = z * 2.0;
    auto shape_of = [](const Shape& s) {
      return make_constant(
          Tensor::from_vector<std::int64_t>(s, {static_cast<std::int64_t>(s.size())}));
    };
    const Variable cost = sum(y * y) + sum(z * z);
    outputs = {cost, apply(dnn_op(ConvDirection::grad_inputs, p2), {w, gy, shape_of({9, 8})}),
               apply(dnn_op(ConvDirection::grad_weights, p2), {x, gy, shape_of({3, 3})}),
               apply(dnn_op(ConvDirection::grad_inputs, p3), {k, gz, shape_of({5, 6, 5})}),
               apply(dnn_op(ConvDirection::grad_weights, p3), {v, gz, shape_of({2, 3, 3})})};
  }
  const Function f = compile({x, w, v, k}, outputs, options);
  for (const char* name : {"OneDnnConv2d", "OneDnnConv2d_gradInputs", "OneDnnConv2d_gradWeights",
                           "OneDnnConv3d", "OneDnnConv3d_gradInputs", "OneDnnConv3d_gradWeights"}) {
    INFO(name << " in\n" << f.str());
    CHECK(count_ops(f, name) == 1);
  }
  CHECK(count_ops(f, "CorrMM") == 0);

  // Against the reference: cost = sum(y^2) + sum(z^2), whose gradient with respect to y is 2y.
  const std::vector<Tensor> out = f(args);
  const Tensor y_ref = reference_conv_forward(p2, args[0], args[1]);
  const Tensor z_ref = reference_conv_forward(p3, args[2], args[3]);
  double expected_cost = 0;
  for (double e : y_ref.to_vector<double>()) expected_cost += e * e;
  for (double e : z_ref.to_vector<double>()) expected_cost += e * e;
  CHECK(std::abs(out[0].item_double() - expected_cost) <= 1e-4 * std::abs(expected_cost));
  const Tensor top2 = twice(y_ref);
  const Tensor top3 = twice(z_ref);
  require_close_f32(out[1], reference_conv_grad_inputs(p2, args[1], top2, {9, 8}), 100);
  require_close_f32(out[2], reference_conv_grad_weights(p2, args[0], top2, {3, 3}), 100);
  require_close_f32(out[3], reference_conv_grad_inputs(p3, args[3], top3, {5, 6, 5}), 100);
  require_close_f32(out[4], reference_conv_grad_weights(p3, args[2], top3, {2, 3, 3}), 100);

  // DebugMode runs each OneDnnConv node next to its reference op and agrees.
  CompileOptions debug = options;
  debug.flags += std::string(debug.flags.empty() ? "" : ",") + "mode=DebugMode";
  REQUIRE_NOTHROW(compile({x, w, v, k}, outputs, debug)(args));
}

#else  // !CONVGRAPH_HAVE_ONEDNN

#include <map>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"

using namespace convgraph;

namespace {
const ConvImplementation& onednn_row() {
  return *conv_registry().find("onednn");
}
}  // namespace

TEST_CASE("oneDNN convolutions (not built in: skipped)", "[onednn]") {
  convgraph::testing::skip_test(
      "oneDNN is not built into this convgraph (libdnnl-dev was not found at configure time, or "
      "CONVGRAPH_WITH_ONEDNN=OFF); the [onednn] tests did not run");
}

TEST_CASE("without oneDNN, conv_dnn declines every convolution and says why", "[onednn]") {
  const Config config = Config::defaults();
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext ctx{config, &declines};
  const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const Variable y = abstract_conv(p, tensor("x", DType::float32, {2, 3, 8, 8}),
                                   tensor("w", DType::float32, {4, 3, 3, 3}));
  CHECK(lower_with(onednn_row(), *y.owner(), ctx).empty());
  REQUIRE(declines.count(y.owner()) == 1);
  CHECK(declines.at(y.owner()).at(0) ==
        "onednn (conv_dnn): oneDNN is not built into this convgraph (libdnnl-dev was not found "
        "at configure time)");
}

#endif
