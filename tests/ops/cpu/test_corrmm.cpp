// The CorrMM family beyond the conformance suite (tests/conformance, which runs it against the
// reference over the parameter grid in every direction, 2-D and 3-D, float32 and float64): the
// grid again under every way the drivers cut the work (threads sharing a GEMM or splitting the
// batch, blocks of output lines, several images per GEMM, the pointwise path that uses the image
// as the column matrix), larger problems for the default thresholds and the depthwise direct
// loops, empty problems, non-contiguous inputs, run-time errors and the op itself (names, types,
// kernels, gradients).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "conformance/conv_conformance.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/im2col.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"
#include "support/size_one_cases.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::conv_tolerance;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;
using convgraph::testing::require_close_scaled;
using convgraph::testing::spatial_of;

namespace {

// Sets the drivers' thresholds (and the thread count) for a scope.
class ScopedTuning {
 public:
  ScopedTuning(const CorrGemmTuning& tuning, const std::string& flags)
      : previous_(corr_gemm_tuning()), flags_(flags) {
    set_corr_gemm_tuning(tuning);
  }
  ~ScopedTuning() { set_corr_gemm_tuning(previous_); }
  ScopedTuning(const ScopedTuning&) = delete;
  ScopedTuning& operator=(const ScopedTuning&) = delete;

 private:
  CorrGemmTuning previous_;
  ScopedFlags flags_;
};

// The settings under which the grids run: what each one makes the drivers do is in its name. The
// first is the conformance suite's own.
struct Setting {
  const char* name;
  CorrGemmTuning tuning;
  const char* flags;
};

std::vector<Setting> settings() {
  CorrGemmTuning defaults;
  CorrGemmTuning one_line_blocks;  // every output line its own block, threads on tiny problems
  one_line_blocks.parallel_work = 0;
  one_line_blocks.target_columns = 1;
  one_line_blocks.block_bytes_per_thread = 1;
  one_line_blocks.block_bytes_shared = 1;
  CorrGemmTuning grouped;  // as many images per GEMM as a thread has
  grouped.parallel_work = 0;
  grouped.target_columns = std::int64_t{1} << 30;
  // (With the defaults, the grids' small images share GEMMs: every line block runs in the others.)
  return {{"defaults, 1 thread", defaults, "threads=1"},
          {"one-line blocks, 3 threads", one_line_blocks, "threads=3"},
          {"one-line blocks, 2 threads", one_line_blocks, "threads=2"},
          {"multi-image blocks, 2 threads", grouped, "threads=2"},
          {"multi-image blocks, 4 threads", grouped, "threads=4"}};
}

// Compares RESULT with EXPECTED; tolerances scale with the length of the sums behind each element.
void require_close(const Tensor& result, const Tensor& expected, DType dtype, double terms) {
  require_close_scaled(result, expected, conv_tolerance(dtype), terms);
}

// All three directions on one problem, against the reference. When the reference rejects the
// shapes, CorrMM must reject them with the same error type.
void check_problem(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                   DType dtype, std::uint64_t seed) {
  INFO("params: " << p.str() << ", image " << shape_str(image_shape) << ", kernel "
                  << shape_str(kernel_shape) << ", " << dtype_name(dtype));
  const Tensor image = random_tensor(dtype, image_shape, seed);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1);
  Tensor expected;
  try {
    expected = reference_conv_forward(p, image, kernel);
  } catch (const ShapeError&) {
    REQUIRE_THROWS_AS(corrmm_forward(p, image, kernel), ShapeError);
    return;
  }
  const int n = p.convdim;
  double taps = 1;
  for (std::int64_t k : spatial_of(kernel_shape, n)) taps *= static_cast<double>(k);
  const double terms = taps * static_cast<double>(image_shape[1] / p.num_groups);
  require_close(corrmm_forward(p, image, kernel), expected, dtype, terms);

  const Tensor top = random_tensor(dtype, expected.shape(), seed + 2);
  const Shape image_spatial = spatial_of(image_shape, n);
  const Shape kernel_spatial = spatial_of(kernel_shape, n);
  require_close(corrmm_grad_inputs(p, kernel, top, image_spatial),
                reference_conv_grad_inputs(p, kernel, top, image_spatial), dtype,
                taps * static_cast<double>(kernel_shape[0]));
  const double positions = static_cast<double>(top.numel()) / static_cast<double>(top.dim(1));
  require_close(corrmm_grad_weights(p, image, top, kernel_spatial),
                reference_conv_grad_weights(p, image, top, kernel_spatial), dtype, positions);
}

}  // namespace

TEST_CASE("CorrMM conforms under every setting of its drivers' thresholds and threads",
          "[corrmm]") {
  // The conformance suite (tests/conformance) runs every grid with the default thresholds on one
  // thread; here a sample of each grid, a different one per setting, under the settings that cut
  // the work otherwise: every output line its own block, several images per GEMM, 2 to 4 threads.
  // The grid of kernel sizes of 1 reaches the pointwise path, where the image is its own column
  // matrix, and the strided or padded 1x1 kernels beside it.
  const ConvImplementation& row = *conv_registry().find("corrmm");
  const std::vector<Setting> all = settings();
  for (std::size_t i = 1; i < all.size(); ++i) {
    INFO("setting: " << all[i].name);
    const ScopedTuning tuning(all[i].tuning, all[i].flags);
    std::vector<testing::ConvCase> cases;
    for (const testing::GridSpec& spec : testing::conformance_grid_specs()) {
      const std::vector<testing::ConvCase> grid = testing::make_grid(spec);
      const std::vector<testing::ConvCase> some =
          testing::sample(grid, grid.size() > 2000 ? 67 : 29, i);
      cases.insert(cases.end(), some.begin(), some.end());
    }
    testing::check_conformance(testing::run_conformance(row, cases));
  }
}

TEST_CASE("CorrMM unshared 1x1 kernels at stride 1 without padding: gradInputs", "[corrmm]") {
  // The pointwise path (the image is the column matrix) once computed the image gradient with
  // the first region's weights for every position; each position has its own weights.
  for (std::int64_t groups : {1, 2}) {
    const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, groups, true);
    for (DType dtype : {DType::float32, DType::float64}) {
      for (std::int64_t batch : {1, 3}) {
        check_problem(p, {batch, 4, 5, 6}, {6, 5, 6, 4 / groups, 1, 1}, dtype, 650);
      }
    }
  }
}

TEST_CASE("CorrMM: kernels of size 1 on any axis, every direction, shared and unshared",
          "[corrmm]") {
  // The shared table of size-1 kernels (support/size_one_cases.hpp), in float64 under every
  // setting (a third of it under the threaded ones), and in float32 under the first.
  const std::vector<convgraph::testing::SizeOneCase> cases = convgraph::testing::size_one_cases();
  const std::vector<Setting> all = settings();
  for (std::size_t i = 0; i < all.size(); ++i) {
    INFO("setting: " << all[i].name);
    const ScopedTuning tuning(all[i].tuning, all[i].flags);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      if (i > 0 && (c + i) % 3 != 0) continue;
      INFO("case: " << cases[c].label);
      check_problem(cases[c].params, cases[c].image, cases[c].kernel, DType::float64, 1500 + c);
      if (i == 0) {
        check_problem(cases[c].params, cases[c].image, cases[c].kernel, DType::float32, 2500 + c);
      }
    }
  }
}

TEST_CASE("Unshared convolutions compile to CorrMM in every direction (oneDNN declines them)",
          "[corrmm]") {
  // With the default flags oneDNN is tried first for float32 on the CPU: unshared kernels must
  // still reach CorrMM, 1x1 ones included, and the gradients must be the reference's.
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  const Variable x = tensor("x", DType::float32, {2, 3, 4, 5});
  const Variable w = tensor("w", DType::float32, {4, 4, 5, 3, 1, 1});
  const Variable y = abstract_conv(p, x, w);
  const Variable cost = sum(y * y);
  const std::vector<Variable> grads = grad(cost, {x, w});
  const Function f = compile({x, w}, {y, grads[0], grads[1]});
  std::vector<std::string> ops;
  for (Node* node : f.graph().toposort()) ops.push_back(node->op->name());
  for (const char* name : {"CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights"}) {
    INFO(name);
    CHECK(std::find(ops.begin(), ops.end(), name) != ops.end());
  }
  for (const std::string& name : ops) CHECK(name.find("OneDnn") == std::string::npos);
  const Tensor xv = random_tensor(DType::float32, {2, 3, 4, 5}, 1600);
  const Tensor wv = random_tensor(DType::float32, {4, 4, 5, 3, 1, 1}, 1601);
  const std::vector<Tensor> out = f({xv, wv});
  const Tensor yv = reference_conv_forward(p, xv, wv);
  require_close(out[0], yv, DType::float32, 3);
  std::vector<float> doubled = yv.to_vector<float>();
  for (float& value : doubled) value *= 2;
  const Tensor twice = Tensor::from_vector(doubled, yv.shape());
  require_close(out[1], reference_conv_grad_inputs(p, wv, twice, {4, 5}), DType::float32, 4);
  require_close(out[2], reference_conv_grad_weights(p, xv, twice, {1, 1}), DType::float32, 2);
}

TEST_CASE("CorrMM with the default thresholds: line blocks and multi-image GEMMs", "[corrmm]") {
  // Shapes big enough that the default settings cut each image into several blocks of output
  // lines (first problem) and group small images into one GEMM (second), on 1 and 2 threads.
  for (const char* flags : {"threads=1", "threads=2"}) {
    INFO(flags);
    const ScopedTuning tuning(CorrGemmTuning{}, flags);
    const ConvParams half = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
    check_problem(half, {3, 24, 40, 40}, {8, 24, 3, 3}, DType::float64, 900);
    check_problem(half, {1, 24, 40, 40}, {8, 24, 3, 3}, DType::float64, 901);
    const ConvParams strided = make_conv_params(2, 1, {2, 2}, false, {1, 1}, 2);
    check_problem(strided, {5, 16, 13, 13}, {12, 8, 3, 3}, DType::float32, 902);
    check_problem(strided, {1, 16, 13, 13}, {12, 8, 3, 3}, DType::float32, 903);
    // Strides 2 and 4 have loops of their own in im2col / col2im.
    for (bool flip : {true, false}) {
      const ConvParams s4 = make_conv_params(2, 2, {4, 4}, flip, {1, 1}, 1);
      check_problem(s4, {3, 3, 27, 29}, {5, 3, 5, 5}, DType::float32, 910);
      const ConvParams s42 = make_conv_params(2, "valid", {4, 2}, flip, {1, 2}, 1);
      check_problem(s42, {2, 3, 23, 26}, {4, 3, 3, 4}, DType::float64, 911);
    }
    // One channel per group: direct loops for few filters per channel, GEMMs for many.
    const ConvParams depthwise = make_conv_params(2, "half", {1, 2}, true, {2, 1}, 8);
    check_problem(depthwise, {3, 8, 30, 31}, {8, 1, 3, 3}, DType::float32, 904);
    check_problem(depthwise, {3, 8, 30, 31}, {64, 1, 3, 3}, DType::float32, 905);
    check_problem(half, {2, 1, 30, 31}, {16, 1, 5, 5}, DType::float64, 906);
  }
}

TEST_CASE("CorrMM 1x1 kernels: several images per GEMM at strides 1 and 2, odd sizes, batch 1",
          "[corrmm]") {
  // With the default thresholds, images of fewer than 256 output positions share a GEMM: at
  // stride 1 the input gradient then copies each image's columns out whole, at stride 2 it
  // scatters them into the even positions of a zeroed image. Batches of 1 and 5 (uneven shares),
  // odd sizes, float32 and float64, 1 to 3 threads (the 64-channel problems of 5 images are
  // large enough to be shared between threads).
  for (const char* flags : {"threads=1", "threads=2", "threads=3"}) {
    INFO(flags);
    const ScopedTuning tuning(CorrGemmTuning{}, flags);
    const ConvParams s1 = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
    const ConvParams s2 = make_conv_params(2, "valid", {2, 2}, true, {1, 1}, 1);
    std::uint64_t seed = 1200;
    for (DType dtype : {DType::float32, DType::float64}) {
      for (std::int64_t batch : {1, 5}) {
        check_problem(s1, {batch, 64, 7, 7}, {48, 64, 1, 1}, dtype, seed++);
        check_problem(s1, {batch, 19, 5, 9}, {33, 19, 1, 1}, dtype, seed++);
        check_problem(s2, {batch, 64, 14, 14}, {48, 64, 1, 1}, dtype, seed++);
        check_problem(s2, {batch, 19, 13, 11}, {33, 19, 1, 1}, dtype, seed++);
        // Two groups: each group's rows of the column matrix are copied out as they are.
        const ConvParams grouped = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
        check_problem(grouped, {batch, 12, 6, 5}, {10, 6, 1, 1}, dtype, seed++);
      }
    }
  }
}

TEST_CASE("CorrMM empty problems give zeros, like the reference", "[corrmm]") {
  const ConvParams p = make_conv_params(2, "full", {1, 2}, true, {1, 1}, 1);
  const ConvParams g = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  for (DType dtype : {DType::float32, DType::float64}) {
    check_problem(p, {0, 3, 5, 5}, {4, 3, 2, 2}, dtype, 1000);  // no batch
    check_problem(p, {2, 0, 5, 5}, {4, 0, 2, 2}, dtype, 1001);  // no channels
    check_problem(p, {2, 3, 5, 5}, {0, 3, 2, 2}, dtype, 1002);  // no filters
    check_problem(g, {2, 0, 4, 4}, {2, 0, 3, 3}, dtype, 1003);  // no channels, 2 groups
    check_problem(p, {2, 3, 0, 4}, {4, 3, 2, 2}, dtype, 1004);  // an empty image axis
  }
  // Nonzero results of empty sums: the gradient wrt the weights with no batch is all zeros.
  const Tensor image = Tensor::zeros(DType::float32, {0, 3, 5, 5});
  const Tensor top = Tensor::zeros(DType::float32, {0, 4, 6, 3});
  const Tensor dw = corrmm_grad_weights(p, image, top, {2, 2});
  REQUIRE(dw.shape() == Shape{4, 3, 2, 2});
  for (float v : dw.to_vector<float>()) REQUIRE(v == 0.0f);
}

TEST_CASE("CorrMM reads non-contiguous inputs", "[corrmm]") {
  const ConvParams p =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, true, {1, 2}, 2);
  for (DType dtype : {DType::float32, DType::float64}) {
    INFO(dtype_name(dtype));
    // (B, H, C, W) permuted to (B, C, H, W); every other filter of a twice-as-large kernel;
    // a topgrad cut out of a wider one.
    const Tensor image = random_tensor(dtype, {3, 7, 4, 8}, 1100).permute({0, 2, 1, 3});
    const Tensor kernel = random_tensor(dtype, {12, 2, 3, 2}, 1101).slice(0, 0, 12, 2);
    REQUIRE_FALSE(image.is_contiguous());
    REQUIRE_FALSE(kernel.is_contiguous());
    const Tensor expected = reference_conv_forward(p, image, kernel);
    require_close(corrmm_forward(p, image, kernel), expected, dtype, 12);
    Shape wide = expected.shape();
    wide.back() *= 2;
    const Tensor top = random_tensor(dtype, wide, 1102).slice(3, 0, wide.back(), 2);
    REQUIRE_FALSE(top.is_contiguous());
    REQUIRE(top.shape() == expected.shape());
    require_close(corrmm_grad_inputs(p, kernel, top, {7, 8}),
                  reference_conv_grad_inputs(p, kernel, top, {7, 8}), dtype, 36);
    require_close(corrmm_grad_weights(p, image, top, {3, 2}),
                  reference_conv_grad_weights(p, image, top, {3, 2}), dtype,
                  static_cast<double>(top.numel()));
  }
}

TEST_CASE("CorrMM run-time errors name the op and the problem", "[corrmm]") {
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const ConvParams g2 = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  const DType f32 = DType::float32;
  const Tensor image = random_tensor(f32, {2, 4, 6, 6}, 1);
  const Tensor kernel = random_tensor(f32, {3, 4, 3, 3}, 2);

  SECTION("kernel channels that do not match the image") {
    const Tensor bad = random_tensor(f32, {3, 5, 3, 3}, 3);
    const std::string m = message_of<ShapeError>([&] { corrmm_forward(p, image, bad); });
    CHECK(contains(m, "CorrMM"));
    CHECK(contains(m, "input channels"));
  }
  SECTION("filters not divisible by the groups") {
    const Tensor k = random_tensor(f32, {3, 2, 3, 3}, 3);
    const std::string m = message_of<ShapeError>([&] { corrmm_forward(g2, image, k); });
    CHECK(contains(m, "3 filters"));
  }
  SECTION("channels not divisible by the groups") {
    const Tensor img = random_tensor(f32, {2, 5, 6, 6}, 3);
    const Tensor top = random_tensor(f32, {2, 4, 4, 4}, 4);
    const std::string m = message_of<ShapeError>([&] {
      corrmm_grad_weights(g2, img, top, {3, 3});
    });
    CHECK(contains(m, "CorrMM_gradWeights"));
    CHECK(contains(m, "not divisible"));
  }
  SECTION("an impossible output") {
    const Tensor big = random_tensor(f32, {3, 4, 7, 3}, 3);
    const std::string m = message_of<ShapeError>([&] { corrmm_forward(p, image, big); });
    CHECK(contains(m, "impossible output"));
  }
  SECTION("a topgrad inconsistent with the shapes (both gradients)") {
    const Tensor top = random_tensor(f32, {2, 3, 5, 4}, 4);
    std::string m = message_of<ShapeError>([&] { corrmm_grad_inputs(p, kernel, top, {6, 6}); });
    CHECK(contains(m, "CorrMM_gradInputs"));
    CHECK(contains(m, "invalid input_shape"));
    m = message_of<ShapeError>([&] { corrmm_grad_weights(p, image, top, {3, 3}); });
    CHECK(contains(m, "invalid filter_shape"));
  }
  SECTION("a spatial argument of the wrong length or negative") {
    const Tensor top = random_tensor(f32, {2, 3, 4, 4}, 4);
    REQUIRE_THROWS_AS(corrmm_grad_inputs(p, kernel, top, {6}), ShapeError);
    REQUIRE_THROWS_AS(corrmm_grad_inputs(p, kernel, top, {6, -1}), ShapeError);
    REQUIRE_THROWS_AS(corrmm_grad_weights(p, image, top, {3, 0}), ShapeError);
  }
  SECTION("unshared regions that do not match the output") {
    const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
    const Tensor k = random_tensor(f32, {3, 4, 3, 4, 3, 3}, 3);
    const std::string m = message_of<ShapeError>([&] { corrmm_forward(u, image, k); });
    CHECK(contains(m, "region"));
  }
  SECTION("float16 is unsupported") {
    const Tensor h_image = image.cast(DType::float16);
    const Tensor h_kernel = kernel.cast(DType::float16);
    const std::string m =
        message_of<UnsupportedError>([&] { corrmm_forward(p, h_image, h_kernel); });
    CHECK(contains(m, "float16; CorrMM convolutions support float32 and float64 only"));
  }
  SECTION("integer dtypes, mixed dtypes and wrong ranks are TypeErrors") {
    REQUIRE_THROWS_AS(corrmm_forward(p, image.cast(DType::int32), kernel.cast(DType::int32)),
                      TypeError);
    REQUIRE_THROWS_AS(corrmm_forward(p, image, kernel.cast(DType::float64)), TypeError);
    REQUIRE_THROWS_AS(corrmm_forward(p, image.reshape({2, 4, 36}), kernel), TypeError);
    const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
    const std::string m = message_of<TypeError>([&] { corrmm_forward(p3, image, kernel); });
    CHECK(contains(m, "Corr3dMM"));
  }
  SECTION("undefined tensors") {
    REQUIRE_THROWS_AS(corrmm_forward(p, Tensor(), kernel), ValueError);
  }
}

namespace {

StaticShape static_of(const Shape& shape) {
  return StaticShape(shape.begin(), shape.end());
}

std::shared_ptr<const CorrMM> corr_op(ConvDirection direction, const ConvParams& p) {
  return std::make_shared<const CorrMM>(direction, p);
}

}  // namespace

TEST_CASE("CorrMM op: names, equality and the abstract op's types", "[corrmm]") {
  const ConvParams p2 = make_conv_params(2, "half", {2, 1}, false, {1, 1}, 1);
  const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
  CHECK(corr_op(ConvDirection::forward, p2)->name() == "CorrMM");
  CHECK(corr_op(ConvDirection::grad_inputs, p2)->name() == "CorrMM_gradInputs");
  CHECK(corr_op(ConvDirection::grad_weights, p2)->name() == "CorrMM_gradWeights");
  CHECK(corr_op(ConvDirection::forward, p3)->name() == "Corr3dMM");
  CHECK(corr_op(ConvDirection::grad_inputs, p3)->name() == "Corr3dMM_gradInputs");
  CHECK(corr_op(ConvDirection::grad_weights, p3)->name() == "Corr3dMM_gradWeights");
  CHECK(corr_op(ConvDirection::forward, p2)->str() == "CorrMM{" + p2.str() + "}");

  const auto a = corr_op(ConvDirection::forward, p2);
  const auto b = corr_op(ConvDirection::forward, p2);
  CHECK(a->equals(*b));
  CHECK(a->hash() == b->hash());
  CHECK_FALSE(a->equals(*corr_op(ConvDirection::grad_inputs, p2)));
  CHECK_FALSE(a->equals(*corr_op(ConvDirection::forward, p3)));
  const AbstractConv abstract(ConvDirection::forward, p2);
  CHECK_FALSE(a->equals(abstract));

  // The same output types as the abstract op, static shapes included.
  const Variable x = tensor("x", DType::float32, {2, 3, 9, 8});
  const Variable w = tensor("w", DType::float32, {5, 3, 3, 2});
  CHECK(a->make_outputs({x, w}) == abstract.make_outputs({x, w}));
  const Variable y = apply(a, {x, w});
  CHECK(y.type().str() == "float32[2, 5, 5, 9]");
  // Errors the abstract op finds at build time, CorrMM finds too; float16 it refuses itself.
  CHECK_THROWS_AS(apply(a, {x, tensor("w", DType::float32, {5, 4, 3, 2})}), ShapeError);
  const std::string m = message_of<UnsupportedError>([&] {
    apply(a, {tensor4("xh", DType::float16), tensor4("wh", DType::float16)});
  });
  CHECK(contains(m, "float16; CorrMM convolutions support float32 and float64 only"));
}

TEST_CASE("CorrMM op: perform, kernels and gradients", "[corrmm]") {
  const ConvParams p =
      make_conv_params(2, BorderMode::pairs({{2, 1}, {0, 1}}), {1, 2}, true, {2, 1}, 1);
  const Tensor image = random_tensor(DType::float64, {2, 3, 9, 8}, 1200);
  const Tensor kernel = random_tensor(DType::float64, {4, 3, 3, 2}, 1201);
  const Tensor expected = reference_conv_forward(p, image, kernel);
  const auto fwd = corr_op(ConvDirection::forward, p);

  SECTION("perform") {
    std::vector<Tensor> out(1);
    fwd->perform({image, kernel}, out);
    require_close(out[0], expected, DType::float64, 18);
  }
  SECTION("a kernel made for static shapes, run on those and on others") {
    const Variable x = tensor("x", DType::float64, {2, 3, 9, 8});
    const Variable w = tensor("w", DType::float64, {4, 3, 3, 2});
    const Variable y = apply(fwd, {x, w});
    const std::shared_ptr<const Kernel> k = kernel_for(*y.owner());
    CHECK(k->name() == fwd->str());
    std::vector<Tensor> out(1);
    k->run({image, kernel}, out);
    require_close(out[0], expected, DType::float64, 18);
    const Tensor other = random_tensor(DType::float64, {1, 3, 11, 6}, 1202);
    k->run({other, kernel}, out);
    require_close(out[0], reference_conv_forward(p, other, kernel), DType::float64, 18);
    CHECK_THROWS_AS(k->run({image}, out), ValueError);
  }
  SECTION("gradient directions through their kernels, shape input a constant") {
    const Tensor top = random_tensor(DType::float64, expected.shape(), 1203);
    const Variable w = tensor("w", DType::float64, {4, 3, 3, 2});
    const Variable t = tensor("t", DType::float64, static_of(expected.shape()));
    const Variable shape = make_constant(Tensor::from_vector<std::int64_t>({9, 8}, {2}));
    const Variable gi = apply(corr_op(ConvDirection::grad_inputs, p), {w, t, shape});
    std::vector<Tensor> out(1);
    kernel_for(*gi.owner())->run({kernel, top, shape.constant_value()}, out);
    require_close(out[0], reference_conv_grad_inputs(p, kernel, top, {9, 8}), DType::float64, 24);

    const Variable x = tensor("x", DType::float64, {2, 3, 9, 8});
    const Variable kshape = make_constant(Tensor::from_vector<std::int64_t>({3, 2}, {2}));
    const Variable gw = apply(corr_op(ConvDirection::grad_weights, p), {x, t, kshape});
    kernel_for(*gw.owner())->run({image, top, kshape.constant_value()}, out);
    require_close(out[0], reference_conv_grad_weights(p, image, top, {3, 2}), DType::float64,
                  static_cast<double>(top.numel()));
  }
  SECTION("the shape hints are checked at run time") {
    const ConvParams hinted = make_conv_params(2, BorderMode::pairs({{2, 1}, {0, 1}}), {1, 2}, true,
                                               {2, 1}, 1, false, {std::nullopt, 3, 10, 8});
    std::vector<Tensor> out(1);
    const std::string m = message_of<ShapeError>([&] {
      corr_op(ConvDirection::forward, hinted)->perform({image, kernel}, out);
    });
    CHECK(contains(m, "imshp"));
  }
  SECTION("gradients are the abstract op's, which later passes lower again") {
    const Variable x = tensor4("x", DType::float64);
    const Variable w = tensor4("w", DType::float64);
    const Variable y = apply(fwd, {x, w});
    const std::vector<Variable> g = fwd->grad({x, w}, {y}, {y});
    REQUIRE(g.size() == 2);
    REQUIRE(g[0].owner() != nullptr);
    CHECK(g[0].owner()->op->name() == "AbstractConv2d_gradInputs");
    CHECK(g[1].owner()->op->name() == "AbstractConv2d_gradWeights");
  }
}

TEST_CASE("CorrMM in compiled graphs agrees with the abstract ops under DebugMode", "[corrmm]") {
  // The conv_gemm lowering puts CorrMM nodes with the abstract ops' parameters in place; DebugMode
  // runs each next to its reference_op() on the same inputs and throws on any difference.
  const ConvParams p2 =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, false, {1, 2}, 2);
  const ConvParams p3 = make_conv_params(3, "half", {1, 2, 1}, true, {2, 1, 1}, 1);
  const Variable x = tensor("x", DType::float64, {3, 4, 9, 8});
  const Variable w = tensor("w", DType::float64, {6, 2, 3, 2});
  const Variable v = tensor("v", DType::float64, {2, 2, 5, 6, 4});
  const Variable k = tensor("k", DType::float64, {3, 2, 2, 3, 3});
  const Variable y = abstract_conv(p2, x, w);
  const Variable z = abstract_conv(p3, v, k);
  const Variable cost = sum(y * y) + sum(z * z);
  const std::vector<Variable> grads = grad(cost, {x, w, v, k});
  CompileOptions options;
  options.flags = select_conv_impl_flags("corrmm") + ",mode=DebugMode";
  const Function f = compile({x, w, v, k}, {y, z, grads[0], grads[1], grads[2], grads[3]}, options);
  std::vector<std::string> ops;
  for (Node* node : f.graph().toposort()) ops.push_back(node->op->name());
  for (const char* name : {"CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights", "Corr3dMM",
                           "Corr3dMM_gradInputs", "Corr3dMM_gradWeights"}) {
    INFO(name);
    CHECK(std::find(ops.begin(), ops.end(), name) != ops.end());
  }
  const Tensor xv = random_tensor(DType::float64, {3, 4, 9, 8}, 1400);
  const Tensor wv = random_tensor(DType::float64, {6, 2, 3, 2}, 1401);
  const Tensor vv = random_tensor(DType::float64, {2, 2, 5, 6, 4}, 1402);
  const Tensor kv = random_tensor(DType::float64, {3, 2, 2, 3, 3}, 1403);
  const std::vector<Tensor> out = f({xv, wv, vv, kv});
  require_close(out[0], reference_conv_forward(p2, xv, wv), DType::float64, 12);
  require_close(out[1], reference_conv_forward(p3, vv, kv), DType::float64, 36);
  // d(sum y^2)/dw = gradWeights(x, 2y): the gradient is the reference's on the reference's y.
  const Tensor y2 = reference_conv_forward(p2, xv, wv);
  std::vector<double> doubled = y2.to_vector<double>();
  for (double& value : doubled) value *= 2;
  const Tensor twice = Tensor::from_vector(doubled, y2.shape());
  require_close(out[3], reference_conv_grad_weights(p2, xv, twice, {3, 2}), DType::float64,
                static_cast<double>(twice.numel()));
  require_close(out[2], reference_conv_grad_inputs(p2, wv, twice, {9, 8}), DType::float64, 18);
}

TEST_CASE("CorrMM on bigger layers matches the reference", "[corrmm][slow]") {
  const ScopedTuning tuning(CorrGemmTuning{}, "threads=2");
  // A ResNet stage-4 3x3 layer and a stride-2 7x7 stem, smaller batches.
  const ConvParams same = make_conv_params(2, 1, {1, 1}, true, {1, 1}, 1);
  check_problem(same, {4, 64, 14, 14}, {96, 64, 3, 3}, DType::float32, 1300);
  check_problem(same, {1, 64, 28, 28}, {32, 64, 3, 3}, DType::float32, 1301);
  const ConvParams stem = make_conv_params(2, 3, {2, 2}, true, {1, 1}, 1);
  check_problem(stem, {3, 3, 64, 64}, {16, 3, 7, 7}, DType::float32, 1302);
  const ConvParams grouped = make_conv_params(2, 1, {1, 1}, false, {1, 1}, 8);
  check_problem(grouped, {3, 32, 28, 28}, {32, 4, 3, 3}, DType::float64, 1303);
  const ConvParams c3d = make_conv_params(3, 1, {1, 1, 1}, true, {1, 1, 1}, 1);
  check_problem(c3d, {2, 8, 8, 14, 14}, {16, 8, 3, 3, 3}, DType::float32, 1304);
}
