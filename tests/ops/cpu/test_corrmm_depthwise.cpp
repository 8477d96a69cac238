// The direct loops of the CorrMM family (depthwise_kernels.hpp) against the reference convolutions:
// depthwise with channel multipliers 1 and 2, small groups, every border mode, strides 1 and 2,
// dilations 1 and 2, both filter orientations, widths with vector tails and rows shorter than a
// vector, batch 1 and 3, float32 and float64, in 2-D and 3-D; on every instruction set the CPU
// has and on 1 to 3 threads. Then the same problems with the direct loops switched off (the GEMMs
// must agree too), and non-finite values next to the vector tails.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/depthwise_kernels.hpp"
#include "convgraph/ops/cpu/im2col.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::conv_tolerance;
using convgraph::testing::random_tensor;
using convgraph::testing::require_close_scaled;
using convgraph::testing::spatial_of;

namespace {

// Sets the instruction set of the direct loops, the drivers' thresholds and the thread count for
// a scope.
class Scoped {
 public:
  Scoped(DirectIsa isa, const CorrGemmTuning& tuning, const std::string& flags)
      : isa_(direct_conv_isa()), tuning_(corr_gemm_tuning()), flags_(flags) {
    used_ = set_direct_conv_isa(isa);
    set_corr_gemm_tuning(tuning);
  }
  ~Scoped() {
    set_corr_gemm_tuning(tuning_);
    set_direct_conv_isa(isa_);
  }
  Scoped(const Scoped&) = delete;
  Scoped& operator=(const Scoped&) = delete;
  DirectIsa used() const { return used_; }

 private:
  DirectIsa isa_, used_{};
  CorrGemmTuning tuning_;
  ScopedFlags flags_;
};

const char* isa_name(DirectIsa isa) {
  switch (isa) {
    case DirectIsa::avx512:
      return "avx512";
    case DirectIsa::avx2:
      return "avx2";
    case DirectIsa::baseline:
      break;
  }
  return "baseline";
}

// Every instruction set this CPU runs, best first.
std::vector<DirectIsa> isas() {
  std::vector<DirectIsa> out;
  const Scoped probe(DirectIsa::avx512, CorrGemmTuning{}, "");
  for (DirectIsa isa : {DirectIsa::avx512, DirectIsa::avx2, DirectIsa::baseline}) {
    if (static_cast<unsigned char>(isa) <= static_cast<unsigned char>(probe.used())) {
      out.push_back(isa);
    }
  }
  return out;
}

// Thresholds under which every problem of the grids runs on threads (the defaults keep small ones
// on one).
CorrGemmTuning threaded() {
  CorrGemmTuning t;
  t.parallel_work = 0;
  return t;
}

CorrGemmTuning gemm_only() {
  CorrGemmTuning t;
  t.parallel_work = 0;
  t.direct_max_filters = 0;
  return t;
}

void require_close(const Tensor& result, const Tensor& expected, DType dtype, double terms) {
  require_close_scaled(result, expected, conv_tolerance(dtype), terms);
}

// All three directions of one problem against the reference; problems the reference rejects
// (outputs of size < 1) are skipped. Returns whether it ran.
bool check_problem(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                   DType dtype, std::uint64_t seed) {
  INFO("params: " << p.str() << ", image " << shape_str(image_shape) << ", kernel "
                  << shape_str(kernel_shape) << ", " << dtype_name(dtype));
  const Tensor image = random_tensor(dtype, image_shape, seed);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1);
  Tensor expected;
  try {
    expected = reference_conv_forward(p, image, kernel);
  } catch (const ShapeError&) {
    return false;
  }
  const int n = p.convdim;
  double taps = 1;
  for (std::int64_t k : spatial_of(kernel_shape, n)) taps *= static_cast<double>(k);
  require_close(corrmm_forward(p, image, kernel), expected, dtype, taps * kernel_shape[1]);
  const Tensor top = random_tensor(dtype, expected.shape(), seed + 2);
  const Shape image_spatial = spatial_of(image_shape, n);
  const Shape kernel_spatial = spatial_of(kernel_shape, n);
  require_close(corrmm_grad_inputs(p, kernel, top, image_spatial),
                reference_conv_grad_inputs(p, kernel, top, image_spatial), dtype,
                taps * static_cast<double>(kernel_shape[0]));
  const double positions = static_cast<double>(top.numel()) / static_cast<double>(top.dim(1));
  require_close(corrmm_grad_weights(p, image, top, kernel_spatial),
                reference_conv_grad_weights(p, image, top, kernel_spatial), dtype, positions);
  return true;
}

std::vector<BorderMode> borders_2d() {
  return {BorderMode("valid"),
          BorderMode("full"),
          BorderMode("half"),
          BorderMode(1),
          BorderMode({std::int64_t{2}, std::int64_t{0}}),
          BorderMode::pairs({{1, 0}, {0, 2}})};
}

// The depthwise grid on (B, 3, 9, W) images: W = 37 has whole vectors and a tail in float32 and
// float64 (and two vectors at once), W = 6 is shorter than a vector. EVERY > 1 runs every EVERY-th
// problem only. Returns the number of problems run.
int run_depthwise_grid(DType dtype, std::int64_t batch, int every, std::uint64_t seed) {
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1}, {2, 2}, {1, 2}, {2, 1}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1}, {2, 2}};
  int ran = 0;
  for (const BorderMode& border : borders_2d()) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (bool flip : {true, false}) {
          for (std::int64_t multiplier : {1, 2}) {
            for (std::int64_t width : {37, 6}) {
              if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
              const ConvParams p = make_conv_params(2, border, stride, flip, dilation, 3);
              ran += check_problem(p, {batch, 3, 9, width}, {3 * multiplier, 1, 3, 3}, dtype, seed);
            }
          }
        }
      }
    }
  }
  return ran;
}

// Other kernel sizes (a tap count per row of 1, 2, 5 and 7, the last through the loops for any
// count), a stride of 3, and grouped problems with 2 to 4 channels and 1 to 7 filters per group
// (7 = output blocks of 4, 2 and 1).
int run_shapes_grid(DType dtype, std::int64_t batch, int every, std::uint64_t seed) {
  struct Case {
    std::vector<std::int64_t> stride, dilation;
    std::int64_t channels, groups, filters;
    Shape kernel;
    std::int64_t height, width;
  };
  const std::vector<Case> cases = {
      {{1, 1}, {1, 1}, 4, 4, 4, {1, 1}, 5, 35},  {{2, 2}, {1, 1}, 4, 4, 8, {2, 2}, 8, 40},
      {{1, 2}, {1, 2}, 2, 2, 2, {5, 5}, 9, 41},  {{2, 1}, {1, 1}, 2, 2, 4, {7, 7}, 11, 23},
      {{3, 3}, {2, 1}, 3, 3, 3, {3, 3}, 10, 50}, {{1, 1}, {1, 1}, 8, 4, 8, {3, 3}, 7, 19},
      {{2, 2}, {1, 1}, 8, 4, 16, {3, 3}, 9, 33}, {{1, 1}, {2, 2}, 8, 2, 14, {3, 2}, 8, 21},
      {{2, 1}, {1, 1}, 6, 2, 4, {1, 3}, 6, 18},  {{1, 2}, {1, 1}, 12, 3, 6, {2, 3}, 7, 29},
  };
  int ran = 0;
  for (const BorderMode& border : borders_2d()) {
    for (const Case& c : cases) {
      for (bool flip : {true, false}) {
        if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
        const ConvParams p = make_conv_params(2, border, c.stride, flip, c.dilation, c.groups);
        ran += check_problem(p, {batch, c.channels, c.height, c.width},
                             {c.filters, c.channels / c.groups, c.kernel[0], c.kernel[1]}, dtype,
                             seed);
      }
    }
  }
  return ran;
}

int run_3d_grid(DType dtype, std::int64_t batch, int every, std::uint64_t seed) {
  const std::vector<BorderMode> borders = {
      BorderMode("valid"), BorderMode("full"), BorderMode("half"),
      BorderMode({std::int64_t{1}, std::int64_t{0}, std::int64_t{2}})};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1, 1}, {2, 1, 2}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1, 1}, {2, 1, 2}};
  int ran = 0;
  for (const BorderMode& border : borders) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (bool flip : {true, false}) {
          for (std::int64_t multiplier : {1, 2}) {
            if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
            const ConvParams p = make_conv_params(3, border, stride, flip, dilation, 2);
            ran +=
                check_problem(p, {batch, 2, 5, 6, 19}, {2 * multiplier, 1, 3, 2, 3}, dtype, seed);
          }
        }
      }
    }
  }
  return ran;
}

}  // namespace

TEST_CASE("Depthwise direct loops match the reference over the parameter grid",
          "[corrmm][depthwise]") {
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    {
      const Scoped scoped(isa, CorrGemmTuning{}, "threads=1");
      REQUIRE(scoped.used() == isa);
      for (std::int64_t batch : {1, 3}) {
        CHECK(run_depthwise_grid(DType::float32, batch, 1, 10) > 300);
        CHECK(run_depthwise_grid(DType::float64, batch, 1, 20) > 300);
      }
    }
    for (const char* threads : {"threads=2", "threads=3"}) {
      INFO(threads);
      const Scoped scoped(isa, threaded(), threads);
      run_depthwise_grid(DType::float32, 3, 5, 30);
      run_depthwise_grid(DType::float64, 3, 7, 40);
    }
  }
}

TEST_CASE("Direct loops: other kernel sizes, stride 3 and small groups", "[corrmm][depthwise]") {
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    const Scoped scoped(isa, CorrGemmTuning{}, "threads=1");
    for (std::int64_t batch : {1, 3}) {
      CHECK(run_shapes_grid(DType::float32, batch, 1, 100) > 100);
      CHECK(run_shapes_grid(DType::float64, batch, 1, 200) > 100);
    }
  }
  const Scoped scoped(DirectIsa::avx512, threaded(), "threads=2");
  run_shapes_grid(DType::float32, 3, 3, 300);
}

// Multiplier-1 problems whose rows are padded one at a time into a ring (3 x 3 and 5 x 5 taps, x
// stride 1): widths of exactly one vector, one more, several with and without a tail; heights of
// one and two rows; padding larger than the kernel; y strides 1 and 2 and dilations.
int run_ring_grid(DType dtype, std::uint64_t seed) {
  const std::int64_t lanes = dtype == DType::float64 ? 8 : 16;
  const std::vector<BorderMode> borders = {BorderMode("valid"), BorderMode("half"),
                                           BorderMode("full"), BorderMode::pairs({{4, 4}, {0, 3}}),
                                           BorderMode::pairs({{0, 1}, {2, 0}})};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1}, {2, 1}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1}, {2, 1}, {1, 2}};
  int ran = 0;
  for (std::int64_t k : {3, 5}) {
    for (const BorderMode& border : borders) {
      for (const auto& stride : strides) {
        for (const auto& dilation : dilations) {
          for (std::int64_t width : {lanes, lanes + 1, 3 * lanes, 2 * lanes + 3}) {
            for (std::int64_t height : {1, 2, 9}) {
              const ConvParams p = make_conv_params(2, border, stride, seed % 2 == 0, dilation, 3);
              ran += check_problem(p, {2, 3, height, width}, {3, 1, k, k}, dtype, seed++);
            }
          }
        }
      }
    }
  }
  return ran;
}

TEST_CASE("Direct loops: multiplier 1 with source rows padded one at a time",
          "[corrmm][depthwise]") {
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    const Scoped scoped(isa, threaded(), "threads=2");
    CHECK(run_ring_grid(DType::float32, 900) > 300);
    CHECK(run_ring_grid(DType::float64, 2000) > 300);
  }
}

// Multiplier-1 problems of the native-width loops (AVX2 and the baseline ISA; others reach the
// ring or the block loops): widths around their vector widths (2 and 4 doubles, 4 and 8 floats)
// and below them, one to a few rows, paddings of 0, 1 and 2 (and asymmetric), y strides 1 and 2
// and dilations; the weight gradient also with a channel multiplier of 2. EVERY > 1 runs every
// EVERY-th problem only.
int run_native_grid(DType dtype, int every, std::uint64_t seed) {
  const std::vector<BorderMode> borders = {BorderMode("valid"), BorderMode(1), BorderMode(2),
                                           BorderMode("full"), BorderMode::pairs({{0, 2}, {1, 0}})};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1}, {2, 1}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1}, {2, 2}, {1, 2}};
  int ran = 0;
  for (std::int64_t k : {3, 5}) {
    for (const BorderMode& border : borders) {
      for (const auto& stride : strides) {
        for (const auto& dilation : dilations) {
          for (std::int64_t width : {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 17, 23, 33}) {
            for (std::int64_t height : {1, 3, 6}) {
              for (std::int64_t multiplier : {1, 2}) {
                if (multiplier == 2 && (k != 3 || width % 4 != 1)) continue;
                if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
                const ConvParams p =
                    make_conv_params(2, border, stride, seed % 2 == 0, dilation, 2);
                ran +=
                    check_problem(p, {2, 2, height, width}, {2 * multiplier, 1, k, k}, dtype, seed);
              }
            }
          }
        }
      }
    }
  }
  return ran;
}

TEST_CASE("Direct loops: depthwise planes in the CPU's own vector width", "[corrmm][depthwise]") {
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    for (const char* threads : {"threads=1", "threads=2"}) {
      INFO(threads);
      const Scoped scoped(isa, threaded(), threads);
      CHECK(run_native_grid(DType::float32, 2, 5000) > 400);
      CHECK(run_native_grid(DType::float64, 3, 6000) > 250);
    }
  }
}

TEST_CASE("Direct loops: outputs large enough for non-temporal stores", "[corrmm][depthwise]") {
  // At least 8 MiB of output, in rows of whole vectors (non-temporal stores) and with a tail.
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    const Scoped scoped(isa, threaded(), "threads=2");
    const ConvParams p = make_conv_params(2, "half", {1, 1}, false, {1, 1}, 2);
    CHECK(check_problem(p, {1, 2, 1030, 1024}, {2, 1, 3, 3}, DType::float32, 3000));
    if (isa == isas().front()) {
      CHECK(check_problem(p, {1, 2, 520, 1016}, {2, 1, 3, 3}, DType::float64, 3001));
      CHECK(check_problem(p, {1, 2, 1040, 1009}, {2, 1, 3, 3}, DType::float32, 3002));
    }
  }
}

TEST_CASE("Direct loops in 3-D", "[corrmm][depthwise]") {
  for (DirectIsa isa : isas()) {
    INFO("isa: " << isa_name(isa));
    const Scoped scoped(isa, threaded(), "threads=2");
    CHECK(run_3d_grid(DType::float32, 3, 1, 400) > 30);
    run_3d_grid(DType::float64, 1, 3, 500);
  }
}

TEST_CASE("The same problems through the GEMMs when the direct loops are off",
          "[corrmm][depthwise]") {
  const Scoped scoped(DirectIsa::avx512, gemm_only(), "threads=2");
  run_depthwise_grid(DType::float32, 3, 3, 600);
  run_shapes_grid(DType::float64, 3, 3, 700);
  run_3d_grid(DType::float64, 1, 3, 800);
}

TEST_CASE("Which problems the direct loops take", "[corrmm][depthwise]") {
  CorrGeometry geo;
  geo.groups = 32;
  geo.channels = 32;
  geo.filters = 32;
  geo.channels_per_group = 1;
  geo.filters_per_group = 1;
  CHECK(direct_conv_applies(geo));
  CHECK(direct_grad_weights_applies(geo));
  geo.unshared = true;
  CHECK_FALSE(direct_conv_applies(geo));
  CHECK_FALSE(direct_grad_weights_applies(geo));
  geo.unshared = false;
  // ResNeXt's 4 x 4 groups: forward and input gradient only.
  geo.channels = geo.filters = 128;
  geo.channels_per_group = geo.filters_per_group = 4;
  CHECK(direct_conv_applies(geo));
  CHECK_FALSE(direct_grad_weights_applies(geo));
  // Many filters per channel, many channels per group, or one group of several channels: GEMMs.
  geo.channels_per_group = 1;
  geo.filters_per_group = 64;
  CHECK_FALSE(direct_conv_applies(geo));
  geo.channels_per_group = 32;
  geo.filters_per_group = 4;
  CHECK_FALSE(direct_conv_applies(geo));
  geo.groups = 1;
  geo.channels = geo.channels_per_group = 4;
  geo.filters = geo.filters_per_group = 4;
  CHECK_FALSE(direct_conv_applies(geo));
}

TEST_CASE("Direct loops: infinities next to the vector tails stay where they belong",
          "[corrmm][depthwise]") {
  // A vector tail overlaps the chunk before it; what it recounts must not turn an infinite product
  // into NaN (inf * 0) or count it twice.
  const ConvParams p = make_conv_params(2, "half", {1, 1}, false, {1, 1}, 2);
  for (std::int64_t width : {21, 5}) {
    INFO("width " << width);
    Tensor image = random_tensor(DType::float32, {1, 2, 4, width}, 1);
    image.data<float>()[width - 3] = std::numeric_limits<float>::infinity();
    const Tensor kernel = random_tensor(DType::float32, {2, 1, 3, 3}, 2, 0.5, 1.0);
    const Tensor top = random_tensor(DType::float32, {1, 2, 4, width}, 3, 0.5, 1.0);
    const Tensor dw = corrmm_grad_weights(p, image, top, {3, 3});
    const Tensor expected = reference_conv_grad_weights(p, image, top, {3, 3});
    for (std::int64_t i = 0; i < expected.numel(); ++i) {
      const float want = expected.data<float>()[i];
      const float got = dw.data<float>()[i];
      INFO("element " << i << ": " << got << " vs " << want);
      if (std::isinf(want)) {
        CHECK(got == want);
      } else {
        CHECK(std::abs(got - want) <= 1e-4f * std::max(1.0f, std::abs(want)));
      }
    }
    const Tensor out = corrmm_forward(p, image, kernel);
    const Tensor out_expected = reference_conv_forward(p, image, kernel);
    for (std::int64_t i = 0; i < out.numel(); ++i) {
      const float want = out_expected.data<float>()[i];
      const float got = out.data<float>()[i];
      if (std::isinf(want)) {
        CHECK(got == want);
      } else {
        CHECK(std::abs(got - want) <= 1e-4f * std::max(1.0f, std::abs(want)));
      }
    }
  }
}
