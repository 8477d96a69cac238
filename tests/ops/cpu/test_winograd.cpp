// The Winograd F(4x4, 3x3) implementation beyond the conformance suite (which runs its registry
// row over the grid): every 3x3 stride-1 case of the whole grid under both ways the driver uses
// threads, every border form on odd image sizes (partial edge tiles) and 1-pixel images, channel
// counts that are no multiple of the vector width, float32 accuracy on ResNet-sized layers,
// Inf and NaN, empty problems, what it declines and why, and the op in compiled graphs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "conformance/conv_conformance.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/winograd.hpp"
#include "convgraph/ops/cpu/winograd_kernels.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using namespace convgraph::testing;

namespace {

// Sets the driver's tuning (and the thread count) for a scope.
class ScopedWinograd {
 public:
  ScopedWinograd(const WinogradTuning& tuning, const std::string& flags)
      : previous_(winograd_tuning()), flags_(flags) {
    set_winograd_tuning(tuning);
  }
  ~ScopedWinograd() { set_winograd_tuning(previous_); }
  ScopedWinograd(const ScopedWinograd&) = delete;
  ScopedWinograd& operator=(const ScopedWinograd&) = delete;

 private:
  WinogradTuning previous_;
  ScopedFlags flags_;
};

struct Setting {
  const char* name;
  WinogradTuning tuning;
  const char* flags;
};

// The ways the driver cuts the work, reached with small shapes: blocks of one vector of tiles and
// of one output channel's transformed filters, each thread its own blocks or all threads on each
// block, with 1 to 3 threads; one block of everything; and the baseline version of the transforms.
std::vector<Setting> settings() {
  WinogradTuning defaults;
  WinogradTuning private_small;
  private_small.min_block_tiles = 1;
  private_small.block_bytes = 1;
  private_small.filter_bytes = 1;
  private_small.parallel_work = 0;
  private_small.mode = WinogradTuning::Mode::private_blocks;
  WinogradTuning shared_small = private_small;
  shared_small.mode = WinogradTuning::Mode::shared_blocks;
  WinogradTuning shared_whole = shared_small;
  shared_whole.min_block_tiles = std::int64_t{1} << 20;
  shared_whole.block_bytes = std::int64_t{1} << 40;
  shared_whole.filter_bytes = std::int64_t{1} << 40;
  WinogradTuning baseline = private_small;
  baseline.avx2 = false;
  return {{"defaults, 1 thread", defaults, "threads=1"},
          {"baseline (no AVX2) transforms, private blocks, 2 threads", baseline, "threads=2"},
          {"private one-vector blocks, 2 threads", private_small, "threads=2"},
          {"private one-vector blocks, 3 threads", private_small, "threads=3"},
          {"shared one-vector blocks, 2 threads", shared_small, "threads=2"},
          {"shared one-vector blocks, 3 threads", shared_small, "threads=3"},
          {"shared single block, 2 threads", shared_whole, "threads=2"}};
}

// The number of terms summed into each element of direction D (for the tolerance).
double terms_of(ConvDirection d, std::int64_t channels, std::int64_t filters) {
  return 9.0 * static_cast<double>(d == ConvDirection::forward ? channels : filters);
}

// Runs direction D (forward or grad_inputs) of PARAMS on IMAGE_SHAPE / KERNEL_SHAPE with random
// values of DTYPE through Winograd and the reference; "" when they agree within the suite's
// tolerance.
std::string compare_with_reference(const ConvParams& params, ConvDirection d,
                                   const Shape& image_shape, const Shape& kernel_shape, DType dtype,
                                   std::uint64_t seed) {
  const Shape image_spatial = spatial_of(image_shape, 2);
  const Shape out_spatial =
      ConvCase::output_spatial_of(params, image_spatial, spatial_of(kernel_shape, 2));
  const Shape top_shape{image_shape[0], kernel_shape[0], out_spatial[0], out_spatial[1]};
  const Tensor image = random_tensor(dtype, image_shape, seed);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1);
  const Tensor top = random_tensor(dtype, top_shape, seed + 2);
  Tensor result, expected;
  if (d == ConvDirection::forward) {
    result = winograd_conv_forward(params, image, kernel);
    expected =
        reference_conv_forward(params, image.cast(DType::float64), kernel.cast(DType::float64));
  } else if (d == ConvDirection::grad_inputs) {
    result = winograd_conv_grad_inputs(params, kernel, top, image_spatial);
    expected = reference_conv_grad_inputs(params, kernel.cast(DType::float64),
                                          top.cast(DType::float64), image_spatial);
  } else {
    // Each weight sums over every batch item and output position.
    result = winograd_conv_grad_weights(params, image, top, {3, 3});
    expected = reference_conv_grad_weights(params, image.cast(DType::float64),
                                           top.cast(DType::float64), {3, 3});
    return conv_mismatch(result, expected, dtype,
                         static_cast<double>(top_shape[0] * top_shape[2] * top_shape[3]));
  }
  return conv_mismatch(result, expected, dtype, terms_of(d, image_shape[1], kernel_shape[0]));
}

const ConvDirection kDirections[] = {ConvDirection::forward, ConvDirection::grad_inputs,
                                     ConvDirection::grad_weights};

// Every stride-1 case of the conformance grid that Winograd takes: 3x3 in 2-D, 3x3 in the plane
// (undilated there) in 3-D.
std::vector<ConvCase> winograd_grid_cases() {
  std::vector<ConvCase> out;
  for (const ConvCase& c : full_conformance_grid()) {
    if (c.params.unshared || c.params.num_groups != 1 || c.params.strided() ||
        c.dtype == DType::float16) {
      continue;
    }
    const Shape k = c.kernel_spatial();
    const bool plane = k.size() >= 2 && k[k.size() - 2] == 3 && k[k.size() - 1] == 3;
    const bool three_d =
        c.convdim() == 3 && plane && c.params.dilation[1] == 1 && c.params.dilation[2] == 1;
    if ((c.convdim() == 2 && plane) || three_d) out.push_back(c);
  }
  return out;
}

// Runs direction D of the 3-D PARAMS on IMAGE_SHAPE / KERNEL_SHAPE (3x3 in the plane) with random
// values of DTYPE through Winograd and the reference; "" when they agree.
std::string compare_3d(const ConvParams& params, ConvDirection d, const Shape& image_shape,
                       const Shape& kernel_shape, DType dtype, std::uint64_t seed) {
  const Shape image_spatial = spatial_of(image_shape, 3);
  const Shape kernel_spatial = spatial_of(kernel_shape, 3);
  const Shape out = ConvCase::output_spatial_of(params, image_spatial, kernel_spatial);
  const Shape top_shape{image_shape[0], kernel_shape[0], out[0], out[1], out[2]};
  const Tensor image = random_tensor(dtype, image_shape, seed);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1);
  const Tensor top = random_tensor(dtype, top_shape, seed + 2);
  const double taps = static_cast<double>(shape_numel(kernel_spatial));
  if (d == ConvDirection::forward) {
    return conv_mismatch(
        winograd_conv_forward(params, image, kernel),
        reference_conv_forward(params, image.cast(DType::float64), kernel.cast(DType::float64)),
        dtype, taps * static_cast<double>(image_shape[1]));
  }
  if (d == ConvDirection::grad_inputs) {
    return conv_mismatch(winograd_conv_grad_inputs(params, kernel, top, image_spatial),
                         reference_conv_grad_inputs(params, kernel.cast(DType::float64),
                                                    top.cast(DType::float64), image_spatial),
                         dtype, taps * static_cast<double>(kernel_shape[0]));
  }
  return conv_mismatch(winograd_conv_grad_weights(params, image, top, kernel_spatial),
                       reference_conv_grad_weights(params, image.cast(DType::float64),
                                                   top.cast(DType::float64), kernel_spatial),
                       dtype, static_cast<double>(top_shape[0] * shape_numel(out)));
}

// The concrete convolutions (op names) of a compiled training step of PARAMS on X and W: the
// forward and the gradients with respect to both, default flags.
std::vector<std::string> training_convolutions(const ConvParams& params, const Variable& x,
                                               const Variable& w) {
  const Variable y = abstract_conv(params, x, w);
  const std::vector<Variable> g = grad(sum(y * y), std::vector<Variable>{x, w});
  const Function f = compile({x, w}, {y, g[0], g[1]}, CompileOptions{});
  std::vector<std::string> names;
  for (Node* node : f.graph().toposort()) {
    if (dynamic_cast<const ConcreteConv*>(node->op.get()) != nullptr) {
      names.push_back(node->op->name());
    }
  }
  return names;
}

std::vector<BorderMode> borders() {
  std::vector<BorderMode> b = conformance_borders_2d();
  b.emplace_back(3);  // wider than the kernel: the input gradient crops the output gradient
  b.push_back(BorderMode::pairs({{4, 0}, {0, 5}}));
  return b;
}

}  // namespace

TEST_CASE("Winograd conforms on every 3x3 stride-1 case of the grid under every setting",
          "[winograd]") {
  const ConvImplementation* row = conv_registry().find("winograd");
  REQUIRE(row != nullptr);
  const std::vector<ConvCase> cases = winograd_grid_cases();
  REQUIRE(cases.size() >= 20);
  for (const Setting& s : settings()) {
    DYNAMIC_SECTION(s.name) {
      const ScopedWinograd scoped(s.tuning, s.flags);
      const ConformanceReport report = run_conformance(*row, cases);
      check_conformance(report);
      CHECK(report.checked >= cases.size());
    }
  }
}

TEST_CASE("Winograd: every border form, odd sizes, partial tiles, 1-pixel images, both flips",
          "[winograd]") {
  const std::vector<Shape> images{{1, 1}, {2, 3}, {4, 4}, {5, 7}, {9, 6}, {13, 11}, {8, 17}};
  for (const Setting& s : settings()) {
    const ScopedWinograd scoped(s.tuning, s.flags);
    std::uint64_t seed = 11;
    for (const BorderMode& border : borders()) {
      for (const Shape& spatial : images) {
        for (bool flip : {true, false}) {
          for (DType dtype : {DType::float64, DType::float32}) {
            const ConvParams p = make_conv_params(2, border, {1, 1}, flip);
            const Shape out = ConvCase::output_spatial_of(p, spatial, {3, 3});
            if (out[0] < 1 || out[1] < 1) continue;
            const std::int64_t batch = 1 + static_cast<std::int64_t>(seed % 3);
            const Shape image{batch, 3, spatial[0], spatial[1]};
            const Shape kernel{5, 3, 3, 3};
            for (ConvDirection d : kDirections) {
              INFO(s.name << ", " << p.str() << ", image " << shape_str(image) << ", "
                          << dtype_name(dtype) << ", " << direction_label(d));
              CHECK(compare_with_reference(p, d, image, kernel, dtype, ++seed) == "");
            }
          }
        }
      }
    }
  }
}

TEST_CASE("Winograd in 3-D: depth taps, depth pads and dilation, odd sizes, both flips",
          "[winograd]") {
  // One 2-D correlation per depth tap over the (image, slice) pairs it reads, added up: taps that
  // read only padding for some slices (pads up to past the kernel), taps reading none, depths
  // smaller than the kernel, depth dilation, kernels of 1 to 4 taps in depth, every direction.
  struct Case {
    Shape image, kernel;
    std::vector<std::int64_t> pad, dilation;
  };
  const std::vector<Case> cases{
      {{2, 3, 5, 6, 7}, {4, 3, 3, 3, 3}, {1, 1, 1}, {1, 1, 1}},
      {{1, 2, 4, 5, 5}, {3, 2, 3, 3, 3}, {0, 0, 0}, {1, 1, 1}},
      {{2, 3, 3, 9, 4}, {2, 3, 1, 3, 3}, {0, 1, 2}, {1, 1, 1}},
      {{1, 4, 6, 5, 9}, {5, 4, 2, 3, 3}, {1, 2, 0}, {1, 1, 1}},
      {{2, 2, 7, 4, 4}, {3, 2, 3, 3, 3}, {2, 1, 1}, {2, 1, 1}},
      {{1, 3, 2, 6, 5}, {2, 3, 3, 3, 3}, {3, 1, 1}, {1, 1, 1}},
      {{1, 2, 9, 3, 6}, {4, 2, 4, 3, 3}, {5, 0, 1}, {2, 1, 1}},
      {{2, 3, 1, 4, 4}, {2, 3, 3, 3, 3}, {1, 1, 1}, {1, 1, 1}},
  };
  for (const Setting& s : {settings()[0], settings()[2], settings()[4], settings()[1]}) {
    const ScopedWinograd scoped(s.tuning, s.flags);
    std::uint64_t seed = 301;
    for (const Case& c : cases) {
      for (bool flip : {true, false}) {
        const ConvParams p = make_conv_params(
            3, BorderMode(std::vector<BorderMode::Entry>(c.pad.begin(), c.pad.end())), {1, 1, 1},
            flip, c.dilation);
        const Shape out =
            ConvCase::output_spatial_of(p, spatial_of(c.image, 3), spatial_of(c.kernel, 3));
        if (out[0] < 1 || out[1] < 1 || out[2] < 1) continue;
        const DType dtype = seed % 2 == 0 ? DType::float64 : DType::float32;
        for (ConvDirection d : kDirections) {
          INFO(s.name << ", " << p.str() << ", image " << shape_str(c.image) << ", kernel "
                      << shape_str(c.kernel) << ", " << dtype_name(dtype) << ", "
                      << direction_label(d));
          CHECK(compare_3d(p, d, c.image, c.kernel, dtype, ++seed) == "");
        }
      }
    }
  }
  // A C3D-shaped layer (32 channels, 8 frames of 14x14, pad 1) at batch 2 in float32.
  const ScopedFlags threads("threads=2");
  const ConvParams p = make_conv_params(3, BorderMode(1), {1, 1, 1}, false);
  for (ConvDirection d : kDirections) {
    INFO(direction_label(d));
    CHECK(compare_3d(p, d, {2, 32, 8, 14, 14}, {32, 32, 3, 3, 3}, DType::float32, 401) == "");
  }
  // In-plane dilation is declined in 3-D.
  const ConvParams dilated = make_conv_params(3, BorderMode(1), {1, 1, 1}, true, {1, 2, 2});
  CHECK(contains(winograd_declines(ConvDirection::forward, dilated).value_or(""), "depth only"));
}

TEST_CASE("Winograd: dilated correlations, phase by phase: pads, odd sizes, both flips",
          "[winograd]") {
  // Images smaller than the dilation (empty input phases), sizes that are no multiple of it
  // (phases of unequal sizes), every border form (offsets of every residue), each direction.
  const std::vector<Shape> images{{1, 1}, {2, 3}, {5, 4}, {9, 11}, {12, 7}};
  const std::vector<std::vector<std::int64_t>> dilations{{2, 2}, {1, 3}, {3, 2}};
  // Finite data: every call is Winograd's own, none computed again by CorrMM.
  const std::uint64_t recomputed = winograd_recomputed_calls();
  for (const Setting& s : {settings()[0], settings()[2], settings()[5]}) {
    const ScopedWinograd scoped(s.tuning, s.flags);
    std::uint64_t seed = 61;
    for (const std::vector<std::int64_t>& dilation : dilations) {
      for (const BorderMode& border : borders()) {
        for (const Shape& spatial : images) {
          for (bool flip : {true, false}) {
            const ConvParams p = make_conv_params(2, border, {1, 1}, flip, dilation);
            const Shape out = ConvCase::output_spatial_of(p, spatial, {3, 3});
            if (out[0] < 1 || out[1] < 1) continue;
            const DType dtype = seed % 2 == 0 ? DType::float64 : DType::float32;
            const Shape image{1 + static_cast<std::int64_t>(seed % 2), 3, spatial[0], spatial[1]};
            const Shape kernel{5, 3, 3, 3};
            for (ConvDirection d : kDirections) {
              INFO(s.name << ", " << p.str() << ", image " << shape_str(image) << ", "
                          << dtype_name(dtype) << ", " << direction_label(d));
              CHECK(compare_with_reference(p, d, image, kernel, dtype, ++seed) == "");
            }
          }
        }
      }
    }
  }
  // The suite's layer (64 channels, 56x56, dilation 2, pad 2) at batch 2, against CorrMM in
  // float64.
  const ScopedFlags threads("threads=2");
  const ConvParams p = make_conv_params(2, BorderMode(2), {1, 1}, true, {2, 2});
  const Tensor image = random_tensor(DType::float32, {2, 64, 56, 56}, 71);
  const Tensor kernel = random_tensor(DType::float32, {64, 64, 3, 3}, 72);
  const Tensor top = random_tensor(DType::float32, {2, 64, 56, 56}, 73);
  const Shape spatial{56, 56};
  CHECK(conv_mismatch(winograd_conv_forward(p, image, kernel),
                      corrmm_forward(p, image.cast(DType::float64), kernel.cast(DType::float64)),
                      DType::float32, terms_of(ConvDirection::forward, 64, 64)) == "");
  CHECK(conv_mismatch(
            winograd_conv_grad_inputs(p, kernel, top, spatial),
            corrmm_grad_inputs(p, kernel.cast(DType::float64), top.cast(DType::float64), spatial),
            DType::float32, terms_of(ConvDirection::grad_inputs, 64, 64)) == "");
  CHECK(conv_mismatch(
            winograd_conv_grad_weights(p, image, top, {3, 3}),
            corrmm_grad_weights(p, image.cast(DType::float64), top.cast(DType::float64), {3, 3}),
            DType::float32, 2.0 * 56 * 56) == "");
  CHECK(winograd_recomputed_calls() == recomputed);
}

TEST_CASE("Winograd: channel counts that are no multiple of the vector width, and large ones",
          "[winograd]") {
  const ScopedFlags threads("threads=2");
  struct Case {
    Shape image, kernel;
  };
  // CorrMM (checked against the reference by its own tests) is the oracle for the large ones.
  for (const Case& c :
       {Case{{2, 1, 6, 7}, {1, 1, 3, 3}}, Case{{3, 7, 10, 9}, {13, 7, 3, 3}},
        Case{{2, 300, 9, 10}, {260, 300, 3, 3}}, Case{{1, 64, 30, 29}, {72, 64, 3, 3}}}) {
    for (DType dtype : {DType::float32, DType::float64}) {
      for (bool flip : {true, false}) {
        const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, flip);
        INFO("image " << shape_str(c.image) << ", kernel " << shape_str(c.kernel) << ", "
                      << dtype_name(dtype) << ", flip " << flip);
        const Tensor image = random_tensor(dtype, c.image, 5);
        const Tensor kernel = random_tensor(dtype, c.kernel, 6);
        const Tensor top =
            random_tensor(dtype, {c.image[0], c.kernel[0], c.image[2], c.image[3]}, 7);
        const Shape spatial{c.image[2], c.image[3]};
        CHECK(conv_mismatch(
                  winograd_conv_forward(p, image, kernel),
                  corrmm_forward(p, image.cast(DType::float64), kernel.cast(DType::float64)), dtype,
                  terms_of(ConvDirection::forward, c.image[1], c.kernel[0])) == "");
        CHECK(conv_mismatch(winograd_conv_grad_inputs(p, kernel, top, spatial),
                            corrmm_grad_inputs(p, kernel.cast(DType::float64),
                                               top.cast(DType::float64), spatial),
                            dtype,
                            terms_of(ConvDirection::grad_inputs, c.image[1], c.kernel[0])) == "");
        CHECK(conv_mismatch(winograd_conv_grad_weights(p, image, top, {3, 3}),
                            corrmm_grad_weights(p, image.cast(DType::float64),
                                                top.cast(DType::float64), {3, 3}),
                            dtype,
                            static_cast<double>(c.image[0] * c.image[2] * c.image[3])) == "");
      }
    }
  }
}

TEST_CASE("Winograd on 7x7 images (res5's shape): partial 2x2 tiles, every direction, both flips",
          "[winograd]") {
  const ScopedFlags threads("threads=2");
  // Against the reference: the 7x7 image is covered by 2x2 tiles of 4x4, the last row and column
  // of tiles partial ('half', 'valid' and 'full' give 7x7, 5x5 and 9x9 outputs).
  for (const BorderMode& border : {BorderMode("half"), BorderMode("valid"), BorderMode("full")}) {
    for (bool flip : {true, false}) {
      const ConvParams p = make_conv_params(2, border, {1, 1}, flip);
      for (ConvDirection d : kDirections) {
        INFO(border.str() << ", flip " << flip << ", " << direction_label(d));
        CHECK(compare_with_reference(p, d, {3, 20, 7, 7}, {24, 20, 3, 3}, DType::float32, 51) ==
              "");
      }
    }
  }
  // Many channels: by default the transformed filters go in blocks of output channels; whole,
  // past 16 MiB they are written with non-temporal stores (512 x 512, and 400 x 300, whose rows
  // end in a partial group of columns). CorrMM in float64 (checked against the reference by its
  // own tests) is the oracle.
  struct Case {
    Shape image, kernel;
  };
  WinogradTuning whole_filters;
  whole_filters.filter_bytes = std::int64_t{1} << 40;
  for (const Case& c :
       {Case{{2, 512, 7, 7}, {512, 512, 3, 3}}, Case{{2, 300, 7, 7}, {400, 300, 3, 3}}}) {
    for (const auto& [tuning, flip] :
         {std::pair{WinogradTuning{}, true}, std::pair{whole_filters, true},
          std::pair{whole_filters, false}}) {
      const ScopedWinograd scoped(tuning, "threads=2");
      const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, flip);
      INFO("image " << shape_str(c.image) << ", kernel " << shape_str(c.kernel) << ", flip " << flip
                    << ", filter blocks of at most " << tuning.filter_bytes << " bytes");
      const Tensor image = random_tensor(DType::float32, c.image, 52);
      const Tensor kernel = random_tensor(DType::float32, c.kernel, 53);
      const Tensor top = random_tensor(DType::float32, {c.image[0], c.kernel[0], 7, 7}, 54);
      const Shape spatial{7, 7};
      CHECK(conv_mismatch(
                winograd_conv_forward(p, image, kernel),
                corrmm_forward(p, image.cast(DType::float64), kernel.cast(DType::float64)),
                DType::float32, terms_of(ConvDirection::forward, c.image[1], c.kernel[0])) == "");
      CHECK(
          conv_mismatch(
              winograd_conv_grad_inputs(p, kernel, top, spatial),
              corrmm_grad_inputs(p, kernel.cast(DType::float64), top.cast(DType::float64), spatial),
              DType::float32, terms_of(ConvDirection::grad_inputs, c.image[1], c.kernel[0])) == "");
      CHECK(conv_mismatch(winograd_conv_grad_weights(p, image, top, {3, 3}),
                          corrmm_grad_weights(p, image.cast(DType::float64),
                                              top.cast(DType::float64), {3, 3}),
                          DType::float32, static_cast<double>(c.image[0] * 49)) == "");
    }
  }
}

TEST_CASE("Winograd: blocks of output channels' filters that do not divide the channel counts",
          "[winograd]") {
  // 19 filters of 13 channels: the rows of the forward's and the weight gradient's transformed
  // filters are the 19 filters (36 x 13 elements each), the input gradient's the 13 channels (36 x
  // 19 each). Bounds of 5 and 3 rows of 13 give blocks of 5, 5, 5, 4 and 3 x 6, 1 rows (forward,
  // weight gradient), and of 3 x 4, 1 and 2 x 6, 1 rows (input gradient).
  const std::int64_t row_bytes = kWinogradElements * 13 * static_cast<std::int64_t>(sizeof(float));
  for (std::int64_t rows : {std::int64_t{5}, std::int64_t{3}}) {
    for (WinogradTuning::Mode mode :
         {WinogradTuning::Mode::private_blocks, WinogradTuning::Mode::shared_blocks}) {
      for (const char* flags : {"threads=1", "threads=2", "threads=3"}) {
        WinogradTuning tuning;
        tuning.filter_bytes = rows * row_bytes;
        tuning.mode = mode;
        tuning.parallel_work = 0;
        tuning.min_block_tiles = 8;  // several blocks of tiles on the 13x11 images
        tuning.block_bytes = 1;
        const ScopedWinograd scoped(tuning, flags);
        std::uint64_t seed = 90;
        for (const Shape& image : {Shape{3, 13, 7, 7}, Shape{2, 13, 13, 11}}) {
          for (bool flip : {true, false}) {
            const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, flip);
            for (ConvDirection d : kDirections) {
              for (DType dtype : {DType::float32, DType::float64}) {
                INFO(rows << " rows' bytes, " << flags << ", shared "
                          << (mode == WinogradTuning::Mode::shared_blocks) << ", image "
                          << shape_str(image) << ", flip " << flip << ", " << direction_label(d)
                          << ", " << dtype_name(dtype));
                CHECK(compare_with_reference(p, d, image, {19, 13, 3, 3}, dtype, ++seed) == "");
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("Winograd's workspace on res5: a block of transformed filters rather than all of them",
          "[winograd]") {
  const ScopedFlags threads("threads=2");
  // res5's 3x3 layers at N=8: 7x7 images, 512 channels on each side; the whole transformed filters
  // would take 36 x 512 x 512 floats (36 MiB).
  WinogradGeometry g;
  g.batch = 8;
  g.in_channels = g.out_channels = 512;
  g.in_h = g.in_w = g.out_h = g.out_w = 7;
  g.off_h = g.off_w = -1;
  const std::int64_t whole = kWinogradElements * 512 * 512;
  // A block of filters, and the blocks' transformed data (V and M of 32 tiles, or V and W).
  const std::int64_t bound = winograd_tuning().filter_bytes / 4 + whole / 4;
  CHECK(winograd_correlate_workspace<float>(g) <= bound);
  CHECK(winograd_weights_workspace<float>(g) <= bound);
  // One block of rows when the bound holds all of them: the whole filters.
  WinogradTuning tuning;
  tuning.filter_bytes = std::int64_t{1} << 40;
  const ScopedWinograd scoped(tuning, "threads=2");
  CHECK(winograd_correlate_workspace<float>(g) > whole);
  CHECK(winograd_weights_workspace<float>(g) > whole);
}

TEST_CASE("Winograd's float32 error on ResNet-sized layers stays near a direct sum's",
          "[winograd]") {
  // The largest error relative to the output's largest magnitude, measured against float64, for
  // Winograd and for CorrMM (a direct sum) on the same float32 data: F(4x4, 3x3) multiplies the
  // rounding errors by its transforms' constants (up to 8 in A, 5 in B): its largest error is
  // 15-40 times the direct sum's, its mean error 4-7 times; a wrong transform would be far off.
  const ScopedFlags threads("threads=2");
  for (std::int64_t channels : {64, 256}) {
    const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, false);
    const Tensor image = random_tensor(DType::float32, {2, channels, 14, 14}, 21);
    const Tensor kernel = random_tensor(DType::float32, {channels, channels, 3, 3}, 22);
    const Tensor exact = corrmm_forward(p, image.cast(DType::float64), kernel.cast(DType::float64));
    double scale = 0;
    for (double v : exact.to_vector<double>()) scale = std::max(scale, std::abs(v));
    const double winograd =
        max_abs_diff(winograd_conv_forward(p, image, kernel).cast(DType::float64), exact) / scale;
    const double direct =
        max_abs_diff(corrmm_forward(p, image, kernel).cast(DType::float64), exact) / scale;
    INFO(channels << " channels: Winograd " << winograd << ", direct " << direct);
    // Measured: 0.6-1.5e-5 for Winograd, 4-6e-7 for the direct sum (docs/convolution.md).
    CHECK(winograd < 5e-5);
    CHECK(winograd < 150 * direct + 1e-7);

    // The weight gradient sums over every tile of the batch (2 x 16 tiles here; 8 x 196 in
    // ResNet-50's first stage at N=8), in the transformed domain.
    const Tensor top = random_tensor(DType::float32, {2, channels, 14, 14}, 23);
    const Shape taps{3, 3};
    const Tensor exact_w =
        corrmm_grad_weights(p, image.cast(DType::float64), top.cast(DType::float64), taps);
    double scale_w = 0;
    for (double v : exact_w.to_vector<double>()) scale_w = std::max(scale_w, std::abs(v));
    const double winograd_w =
        max_abs_diff(winograd_conv_grad_weights(p, image, top, taps).cast(DType::float64),
                     exact_w) /
        scale_w;
    const double direct_w =
        max_abs_diff(corrmm_grad_weights(p, image, top, taps).cast(DType::float64), exact_w) /
        scale_w;
    INFO(channels << " channels, weight gradient: Winograd " << winograd_w << ", direct "
                  << direct_w);
    CHECK(winograd_w < 5e-5);
    CHECK(winograd_w < 150 * direct_w + 1e-7);
  }
}

TEST_CASE("Winograd's float32 weight gradient over a ResNet-50 stage-1 batch", "[winograd]") {
  // 8 x 56 x 56 positions summed into each weight: the transformed sums are 1568 tiles long.
  const ScopedFlags threads("threads=2");
  const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, true);
  const Tensor image = random_tensor(DType::float32, {8, 64, 56, 56}, 41);
  const Tensor top = random_tensor(DType::float32, {8, 64, 56, 56}, 42);
  const Shape taps{3, 3};
  const Tensor exact =
      corrmm_grad_weights(p, image.cast(DType::float64), top.cast(DType::float64), taps);
  double scale = 0;
  for (double v : exact.to_vector<double>()) scale = std::max(scale, std::abs(v));
  const double winograd =
      max_abs_diff(winograd_conv_grad_weights(p, image, top, taps).cast(DType::float64), exact) /
      scale;
  const double direct =
      max_abs_diff(corrmm_grad_weights(p, image, top, taps).cast(DType::float64), exact) / scale;
  INFO("Winograd " << winograd << ", direct " << direct);
  CHECK(winograd < 1e-4);
  CHECK(winograd < 150 * direct + 1e-7);
}

TEST_CASE("Winograd agrees with the reference on Inf and NaN (CorrMM's path computes them)",
          "[winograd]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {DType::float32, DType::float64}) {
    const ConvParams p = make_conv_params(2, BorderMode("half"), {1, 1}, true);
    Tensor image = random_tensor(dtype, {2, 3, 9, 10}, 31);
    Tensor kernel = random_tensor(dtype, {4, 3, 3, 3}, 32);
    Tensor top = random_tensor(dtype, {2, 4, 9, 10}, 33);
    auto put = [](Tensor& t, std::int64_t index, double value) {
      if (t.dtype() == DType::float32) {
        t.data<float>()[index] = static_cast<float>(value);
      } else {
        t.data<double>()[index] = value;
      }
    };
    // An infinite weight at a corner tap (it meets the padding), a NaN in the image, an infinite
    // output gradient.
    put(kernel, 0, inf);
    put(image, 95, nan);
    put(top, 7, -inf);
    const Shape spatial{9, 10};
    const std::uint64_t before = winograd_recomputed_calls();
    const Tensor fwd = winograd_conv_forward(p, image, kernel);
    const Tensor gin = winograd_conv_grad_inputs(p, kernel, top, spatial);
    CHECK(winograd_recomputed_calls() == before + 2);
    const Tensor fwd_ref = reference_conv_forward(p, image, kernel);
    const Tensor gin_ref = reference_conv_grad_inputs(p, kernel, top, spatial);
    const std::vector<double> a = fwd.to_vector<double>(), e = fwd_ref.to_vector<double>();
    const std::vector<double> ag = gin.to_vector<double>(), eg = gin_ref.to_vector<double>();
    auto same = [](double x, double y) {
      return std::isnan(y) ? std::isnan(x)
                           : (std::isinf(y) ? x == y : std::abs(x - y) <= 1e-4 * (1 + std::abs(y)));
    };
    std::int64_t finite_seen = 0;
    for (std::size_t i = 0; i < e.size(); ++i) {
      INFO("forward element " << i << ": " << a[i] << ", reference " << e[i]);
      REQUIRE(same(a[i], e[i]));
      finite_seen += std::isfinite(e[i]) ? 1 : 0;
    }
    for (std::size_t i = 0; i < eg.size(); ++i) {
      INFO("gradInputs element " << i << ": " << ag[i] << ", reference " << eg[i]);
      REQUIRE(same(ag[i], eg[i]));
    }
    CHECK(finite_seen > 0);  // the infinite weight next to the padding leaves numbers there
    // Finite data is not recomputed.
    const std::uint64_t again = winograd_recomputed_calls();
    (void)winograd_conv_forward(p, random_tensor(dtype, {2, 3, 9, 10}, 34), kernel);
    CHECK(winograd_recomputed_calls() == again + 1);  // the infinite weight again
    (void)winograd_conv_forward(p, random_tensor(dtype, {2, 3, 9, 10}, 34),
                                random_tensor(dtype, {4, 3, 3, 3}, 35));
    CHECK(winograd_recomputed_calls() == again + 1);
  }
}

TEST_CASE("Winograd: empty problems give zeros, impossible ones a ShapeError", "[winograd]") {
  const ConvParams p = make_conv_params(2, BorderMode("valid"), {1, 1}, true);
  const Tensor none = winograd_conv_forward(p, Tensor::zeros(DType::float32, {0, 3, 5, 5}),
                                            Tensor::zeros(DType::float32, {2, 3, 3, 3}));
  CHECK(none.shape() == Shape{0, 2, 3, 3});
  const Tensor no_channels = winograd_conv_forward(p, Tensor::zeros(DType::float64, {2, 0, 5, 5}),
                                                   Tensor::zeros(DType::float64, {2, 0, 3, 3}));
  CHECK(no_channels.shape() == Shape{2, 2, 3, 3});
  CHECK(no_channels.to_vector<double>() == std::vector<double>(36, 0.0));
  CHECK_THROWS_AS(winograd_conv_forward(p, Tensor::zeros(DType::float32, {1, 3, 2, 5}),
                                        Tensor::zeros(DType::float32, {2, 3, 3, 3})),
                  ShapeError);
}

TEST_CASE("Winograd declines what it does not compute, naming the parameter", "[winograd]") {
  const ConvParams ok = make_conv_params(2, BorderMode("half"), {1, 1}, true);
  CHECK_FALSE(winograd_declines(ConvDirection::forward, ok).has_value());
  CHECK_FALSE(winograd_declines(ConvDirection::grad_inputs, ok).has_value());
  auto reason = [](ConvDirection d, const ConvParams& p) {
    return winograd_declines(d, p).value_or("");
  };
  CHECK_FALSE(winograd_declines(ConvDirection::grad_weights, ok).has_value());
  CHECK(contains(reason(ConvDirection::grad_weights, make_conv_params(2, BorderMode(1), {2, 2})),
                 "stride (2, 2)"));
  CHECK(contains(reason(ConvDirection::forward, make_conv_params(2, BorderMode(1), {2, 1})),
                 "stride (2, 1)"));
  // Dilations are taken (one undilated correlation per phase).
  CHECK_FALSE(winograd_declines(ConvDirection::forward,
                                make_conv_params(2, BorderMode(1), {1, 1}, true, {1, 2}))
                  .has_value());
  CHECK(contains(
      reason(ConvDirection::forward, make_conv_params(2, BorderMode(1), {1, 1}, true, {1, 1}, 2)),
      "groups 2"));
  CHECK(contains(reason(ConvDirection::forward,
                        make_conv_params(2, BorderMode(1), {1, 1}, true, {1, 1}, 1, true)),
                 "unshared"));
  // 3-D is taken, with dilation along the depth only.
  CHECK_FALSE(
      winograd_declines(ConvDirection::forward, make_conv_params(3, BorderMode(1))).has_value());
  CHECK_FALSE(winograd_declines(ConvDirection::forward,
                                make_conv_params(3, BorderMode(1), {1, 1, 1}, true, {2, 1, 1}))
                  .has_value());
  CHECK(contains(reason(ConvDirection::forward,
                        make_conv_params(3, BorderMode(1), {1, 1, 1}, true, {1, 2, 1})),
                 "dilation (1, 2, 1)"));
  try {
    (void)winograd_conv_forward(make_conv_params(3, BorderMode(1)),
                                random_tensor(DType::float32, {1, 2, 4, 6, 6}, 1),
                                random_tensor(DType::float32, {2, 2, 3, 5, 5}, 2));
    FAIL("a 3x5x5 kernel ran");
  } catch (const UnsupportedError& e) {
    CHECK(contains(e.what(), "WinogradConv3d: kernel size 5x5"));
  }
  // The op refuses them too, and a kernel of another size is refused when it runs.
  CHECK_THROWS_AS(WinogradConv(ConvDirection::forward, make_conv_params(2, BorderMode(1), {2, 2})),
                  UnsupportedError);
  try {
    (void)winograd_conv_forward(ok, random_tensor(DType::float32, {1, 2, 6, 6}, 1),
                                random_tensor(DType::float32, {2, 2, 5, 5}, 2));
    FAIL("a 5x5 kernel ran");
  } catch (const UnsupportedError& e) {
    CHECK(contains(e.what(), "WinogradConv2d: kernel size 5x5"));
  }
  CHECK_THROWS_AS(winograd_conv_forward(ok, random_tensor(DType::float16, {1, 2, 6, 6}, 1),
                                        random_tensor(DType::float16, {2, 2, 3, 3}, 2)),
                  UnsupportedError);

  // The hooks: float16, the kernel's size from its static type or the kshp hint.
  const ConvImplementation* row = conv_registry().find("winograd");
  REQUIRE(row != nullptr);
  auto decline = [&](const Variable& out) {
    return row->declines(ConvSignature::of(*out.owner()), global_config()).value_or("");
  };
  const Variable x = tensor("x", DType::float32, {std::nullopt, 4, std::nullopt, std::nullopt});
  const Variable w3 = tensor("w", DType::float32, {8, 4, 3, 3});
  const Variable w5 = tensor("w5", DType::float32, {8, 4, 5, 5});
  const Variable wu = tensor("wu", DType::float32, {8, 4, std::nullopt, std::nullopt});
  CHECK(decline(abstract_conv(ok, x, w3)) == "");
  CHECK(contains(decline(abstract_conv(ok, x, w5)), "kernel size 5x5"));
  CHECK(contains(decline(abstract_conv(ok, x, wu)), "kernel size unknown at compile time"));
  const ConvParams hinted =
      make_conv_params(2, BorderMode("half"), {1, 1}, true, {1, 1}, 1, false, {}, {8, 4, 3, 3});
  CHECK(decline(abstract_conv(hinted, x, wu)) == "");
  const Variable h = tensor("h", DType::float16, {1, 4, 6, 6});
  const Variable wh = tensor("wh", DType::float16, {8, 4, 3, 3});
  CHECK(contains(decline(abstract_conv(ok, h, wh)), "dtype float16"));
}

TEST_CASE("Winograd in compiled graphs: conv.impl lists it before oneDNN or CorrMM", "[winograd]") {
  // A 3x3 convolution, a 1x1 one after it, and the gradient of a loss with respect to the input:
  // with conv.impl=winograd:corrmm the 3x3 forward and both its gradients go to Winograd, the
  // rest (the 1x1 layer's three directions) to CorrMM, and the values are the reference's.
  const Variable x = tensor("x", DType::float64, {2, 3, 7, 9});
  const Variable w = tensor("w", DType::float64, {4, 3, 3, 3});
  const Variable v = tensor("v", DType::float64, {2, 4, 1, 1});
  const ConvParams half = make_conv_params(2, BorderMode("half"), {1, 1}, true);
  const ConvParams valid = make_conv_params(2, BorderMode("valid"), {1, 1}, true);
  const Variable y = abstract_conv(valid, abstract_conv(half, x, w), v);
  const Variable loss = sum(y * y);
  const std::vector<Variable> grads = grad(loss, {x, w});
  const std::vector<Tensor> args{random_tensor(DType::float64, {2, 3, 7, 9}, 1),
                                 random_tensor(DType::float64, {4, 3, 3, 3}, 2),
                                 random_tensor(DType::float64, {2, 4, 1, 1}, 3)};
  CompileOptions options;
  options.flags = "conv.impl=winograd:corrmm";
  const Function f = compile({x, w, v}, {loss, grads[0], grads[1]}, options);
  int winograd_nodes = 0, corrmm_nodes = 0;
  for (Node* node : f.graph().toposort()) {
    if (dynamic_cast<const WinogradConv*>(node->op.get()) != nullptr) ++winograd_nodes;
    if (dynamic_cast<const CorrMM*>(node->op.get()) != nullptr) ++corrmm_nodes;
  }
  CHECK(winograd_nodes == 3);  // the 3x3 forward and its two gradients
  CHECK(corrmm_nodes >= 2);
  CompileOptions reference;
  reference.flags = "conv.impl=reference";
  const Function r = compile({x, w, v}, {loss, grads[0], grads[1]}, reference);
  const std::vector<Tensor> got = f(args), want = r(args);
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("output " << i);
    CHECK(allclose_report(got[i], want[i], 1e-9, 1e-9) == "");
  }
}

TEST_CASE(
    "The default lowering uses Winograd where it is preferred, and oneDNN or CorrMM elsewhere",
    "[winograd]") {
  // Which op the default flags give the forward and input-gradient nodes of a 3x3 'half'
  // convolution of CHANNELS channels on a BATCH x channels x SIZE x SIZE image.
  auto lowered = [](DType dtype, std::int64_t batch, std::int64_t channels, std::int64_t size,
                    const std::string& flags) {
    const Variable x = tensor("x", dtype, {batch, channels, size, size});
    const Variable w = tensor("w", dtype, {channels, channels, 3, 3});
    const ConvParams half = make_conv_params(2, BorderMode("half"), {1, 1}, true);
    const Variable y = abstract_conv(half, x, w);
    const Variable gx = grad(sum(y * y), std::vector<Variable>{x})[0];
    // With oneDNN's Winograd excluded (which, with AVX-512, takes most of these layers first:
    // test_onednn_winograd.cpp), this is convgraph's Winograd's own rule.
    CompileOptions options;
    options.flags =
        flags.empty() ? "optimizer_excluding=onednn_winograd" : flags + ":onednn_winograd";
    const Function f = compile({x, w}, {y, gx}, options);
    std::vector<std::string> names;
    for (Node* node : f.graph().toposort()) {
      if (dynamic_cast<const ConcreteConv*>(node->op.get()) != nullptr) {
        names.push_back(node->op->name());
      }
    }
    return names;
  };
  auto count = [](const std::vector<std::string>& names, const std::string& prefix) {
    return std::count_if(names.begin(), names.end(),
                         [&](const std::string& n) { return n.rfind(prefix, 0) == 0; });
  };
  // ResNet-50's res3 block at batch 2: 2 x 7 x 7 = 98 tiles for 64 x 64 channels.
  const std::vector<std::string> res = lowered(DType::float32, 2, 64, 28, "");
  CHECK(count(res, "WinogradConv2d") == 2);
  // Too few channels, too few tiles (a 7x7 image with 256 channels), float64, or excluded: the
  // passes after it take the nodes.
  CHECK(count(lowered(DType::float32, 2, 8, 28, ""), "WinogradConv2d") == 0);
  CHECK(count(lowered(DType::float32, 1, 256, 7, ""), "WinogradConv2d") == 0);
  // ResNet-50's res5 (7x7 images, 512 channels): from 32 tiles (batch 8) on, not at 16.
  CHECK(count(lowered(DType::float32, 8, 512, 7, ""), "WinogradConv2d") == 2);
  CHECK(count(lowered(DType::float32, 4, 512, 7, ""), "WinogradConv2d") == 0);
  CHECK(count(lowered(DType::float64, 2, 64, 28, ""), "WinogradConv2d") == 0);
  CHECK(count(lowered(DType::float32, 2, 64, 28, "optimizer_excluding=winograd"),
              "WinogradConv2d") == 0);
  CHECK(count(lowered(DType::float32, 2, 64, 28, "optimizer_excluding=conv_winograd"),
              "WinogradConv2d") == 0);
  // Dilated layers: every direction where the padding before is a multiple of the dilation (the
  // phases merge into one correlation), else the weight gradient only.
  for (const std::int64_t pad : {2, 4, 1, 3}) {
    const Variable x = tensor("x", DType::float32, {2, 64, 28, 28});
    const Variable w = tensor("w", DType::float32, {64, 64, 3, 3});
    const ConvParams dilated =
        make_conv_params(2, BorderMode(static_cast<int>(pad)), {1, 1}, true, {2, 2});
    const std::vector<std::string> names = training_convolutions(dilated, x, w);
    std::string listed;
    for (const std::string& n : names) listed += n + " ";
    INFO("pad " << pad << ": " << listed);
    CHECK(count(names, "WinogradConv2d_gradWeights") == 1);
    // The prefix counts the weight gradient too.
    CHECK(count(names, "WinogradConv2d") == (pad % 2 == 0 ? 3 : 1));
  }
  // 3-D layers with 3x3 in the plane: every direction of a C3D-shaped one; a kernel of 1 in the
  // plane, or too few tiles, stays elsewhere.
  for (const auto& [image, kernel, expected] :
       {std::tuple<StaticShape, StaticShape, int>{{2, 64, 8, 28, 28}, {64, 64, 3, 3, 3}, 3},
        {{1, 64, 2, 4, 4}, {64, 64, 3, 3, 3}, 0},
        {{2, 64, 8, 28, 28}, {64, 64, 3, 1, 1}, 0}}) {
    const Variable x = tensor("x", DType::float32, image);
    const Variable w = tensor("w", DType::float32, kernel);
    const std::vector<std::string> names =
        training_convolutions(make_conv_params(3, BorderMode("half"), {1, 1, 1}), x, w);
    std::string listed;
    for (const std::string& n : names) listed += n + " ";
    INFO(*image[0] << " images, " << *kernel[2] << "x" << *kernel[3] << "x" << *kernel[4] << ": "
                   << listed);
    CHECK(count(names, "WinogradConv3d") == expected);
  }
  // Excluding oneDNN leaves Winograd its layers.
  CHECK(count(lowered(DType::float32, 2, 64, 28, "optimizer_excluding=conv_dnn"),
              "WinogradConv2d") == 2);

  // The hook says why, and the "no implementation" error lists it.
  const ConvImplementation* row = conv_registry().find("winograd");
  REQUIRE(row != nullptr);
  const Variable x = tensor("x", DType::float32, {1, 256, 7, 7});
  const Variable w = tensor("w", DType::float32, {256, 256, 3, 3});
  const Variable y = abstract_conv(make_conv_params(2, BorderMode("half"), {1, 1}), x, w);
  const ConvSignature s = ConvSignature::of(*y.owner());
  CHECK_FALSE(row->declines(s, global_config()).has_value());
  CHECK(contains(row->hooks.prefers(s, global_config()).value_or(""), "4 output tiles"));
  try {
    CompileOptions options;
    options.flags = "optimizer_excluding=conv_dnn:conv_gemm";
    (void)compile({x, w}, {y}, options);
    FAIL("compiled without oneDNN and CorrMM");
  } catch (const UnsupportedError& e) {
    CHECK(contains(e.what(), "winograd (conv_winograd): not preferred here: 4 output tiles"));
  }
}
