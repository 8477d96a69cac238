// The GpuCorrMM family beyond the conformance suite (tests/conformance, which runs it against the
// reference over the parameter grid in every direction, 2-D and 3-D, float64 / float32 / float16):
// the grid again with one image per chunk and a few images per chunk; depthwise and few channels
// per group on the direct kernels (against the reference and the GEMM path); pointwise problems,
// long outputs and ranges of positions; strict FP32 and TF32; then empty problems,
// non-contiguous inputs, run-time errors, the op itself and compiled graphs (device=cuda,
// conv.impl=gpu_corrmm) with their gradients.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/build_config.hpp"

// GpuCorrMM and the CUDA device exist only in builds with CUDA.
#if CONVGRAPH_HAVE_CUDA

#include "conformance/conv_conformance.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/gpu/gpu_corrmm.hpp"
#include "convgraph/ops/gpu/gpu_im2col.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"
#include "support/catch.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"
#include "support/size_one_cases.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::allclose_report;
using convgraph::testing::contains;
using convgraph::testing::conv_tolerance;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;
using convgraph::testing::spatial_of;

namespace {

const Device kGpu = Device::cuda(0);

// Sets the chunking bound for a scope.
class ScopedTuning {
 public:
  explicit ScopedTuning(
      std::int64_t workspace_bytes,
      std::int64_t column_target_bytes = gpu::GpuCorrMMTuning{}.column_target_bytes)
      : previous_(gpu::gpu_corrmm_tuning()) {
    gpu::GpuCorrMMTuning tuning = previous_;
    tuning.workspace_bytes = workspace_bytes;
    tuning.column_target_bytes = column_target_bytes;
    gpu::set_gpu_corrmm_tuning(tuning);
  }
  ~ScopedTuning() { gpu::set_gpu_corrmm_tuning(previous_); }
  ScopedTuning(const ScopedTuning&) = delete;
  ScopedTuning& operator=(const ScopedTuning&) = delete;

 private:
  gpu::GpuCorrMMTuning previous_;
};

// The chunkings the grids run under: the whole (small) batch in one chunk with the default
// bound, one image per chunk (a bound below any image), and a few images per chunk (a bound of a
// few column matrices of the grids' problems, so chunks of 1 to 3 images and a shorter last one).
struct Chunking {
  const char* name;
  std::int64_t workspace_bytes;
};

std::vector<Chunking> chunkings() {
  return {{"whole batch per chunk", gpu::GpuCorrMMTuning{}.workspace_bytes},
          {"one image per chunk", 1},
          {"a few images per chunk", 6 << 10}};
}

// Compares the device RESULT with the float64 reference EXPECTED. Tolerances scale with the length
// of the sums behind each element; float16 is held to 2% of the result's magnitude.
void require_close(const Tensor& result, const Tensor& expected, DType dtype, double terms) {
  REQUIRE(result.device() == kGpu);
  REQUIRE(result.dtype() == dtype);
  const Tensor actual = result.to(Device::cpu()).cast(DType::float64);
  double rtol = 0, atol = 0;
  if (dtype == DType::float16) {
    double magnitude = 1;
    for (double v : expected.to_vector<double>()) magnitude = std::max(magnitude, std::abs(v));
    rtol = 2e-2;
    atol = 2e-2 * magnitude;
  } else {
    rtol = atol = conv_tolerance(dtype) * std::max(1.0, std::sqrt(terms));
  }
  const std::string report = allclose_report(actual, expected, rtol, atol);
  INFO(report);
  REQUIRE(report.empty());
}

// All three directions on one problem, on the device, against the reference on the host (in
// float64, from the same values). When the reference rejects the shapes, GpuCorrMM must reject
// them with the same error type.
void check_problem(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                   DType dtype, std::uint64_t seed) {
  INFO("params: " << p.str() << ", image " << shape_str(image_shape) << ", kernel "
                  << shape_str(kernel_shape) << ", " << dtype_name(dtype));
  // Values representable in every dtype, so that the reference sees exactly the device's inputs.
  const Tensor image = random_tensor(dtype, image_shape, seed).cast(DType::float64);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1).cast(DType::float64);
  const Tensor d_image = image.cast(dtype).to(kGpu);
  const Tensor d_kernel = kernel.cast(dtype).to(kGpu);
  Tensor expected;
  try {
    expected = reference_conv_forward(p, image, kernel);
  } catch (const ShapeError&) {
    REQUIRE_THROWS_AS(gpu_corrmm_forward(p, d_image, d_kernel), ShapeError);
    return;
  }
  const int n = p.convdim;
  double taps = 1;
  for (std::int64_t k : spatial_of(kernel_shape, n)) taps *= static_cast<double>(k);
  const double terms = taps * static_cast<double>(image_shape[1] / p.num_groups);
  require_close(gpu_corrmm_forward(p, d_image, d_kernel), expected, dtype, terms);

  const Tensor top = random_tensor(dtype, expected.shape(), seed + 2).cast(DType::float64);
  const Tensor d_top = top.cast(dtype).to(kGpu);
  const Shape image_spatial = spatial_of(image_shape, n);
  const Shape kernel_spatial = spatial_of(kernel_shape, n);
  require_close(gpu_corrmm_grad_inputs(p, d_kernel, d_top, image_spatial),
                reference_conv_grad_inputs(p, kernel, top, image_spatial), dtype,
                taps * static_cast<double>(kernel_shape[0]));
  const double positions = static_cast<double>(top.numel()) / static_cast<double>(top.dim(1));
  require_close(gpu_corrmm_grad_weights(p, d_image, d_top, kernel_spatial),
                reference_conv_grad_weights(p, image, top, kernel_spatial), dtype, positions);
}

// Switches the direct grouped kernels on or off for a scope.
class ScopedDirectGrouped {
 public:
  explicit ScopedDirectGrouped(bool on) : previous_(gpu::gpu_corrmm_tuning()) {
    gpu::GpuCorrMMTuning tuning = previous_;
    tuning.direct_grouped = on;
    gpu::set_gpu_corrmm_tuning(tuning);
  }
  ~ScopedDirectGrouped() { gpu::set_gpu_corrmm_tuning(previous_); }
  ScopedDirectGrouped(const ScopedDirectGrouped&) = delete;
  ScopedDirectGrouped& operator=(const ScopedDirectGrouped&) = delete;

 private:
  gpu::GpuCorrMMTuning previous_;
};

struct DirectionResults {
  Tensor forward, grad_inputs, grad_weights;
};

// The three directions of one problem on the device, from the same values as check_problem's.
DirectionResults run_directions(const ConvParams& p, const Tensor& image, const Tensor& kernel,
                                const Tensor& top, DType dtype) {
  const int n = p.convdim;
  DirectionResults r;
  r.forward = gpu_corrmm_forward(p, image.cast(dtype).to(kGpu), kernel.cast(dtype).to(kGpu));
  r.grad_inputs = gpu_corrmm_grad_inputs(p, kernel.cast(dtype).to(kGpu), top.cast(dtype).to(kGpu),
                                         spatial_of(image.shape(), n));
  r.grad_weights = gpu_corrmm_grad_weights(p, image.cast(dtype).to(kGpu), top.cast(dtype).to(kGpu),
                                           spatial_of(kernel.shape(), n));
  return r;
}

// A problem for the direct grouped kernels (depthwise, or a few channels per group): every
// direction on the direct kernels against the reference (check_problem), the call counter showing
// that the direct kernels ran, then the same problem on im2col + GEMMs (direct kernels switched
// off) giving the same results.
void check_direct(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                  DType dtype, std::uint64_t seed) {
  INFO("direct grouped params: " << p.str() << ", image " << shape_str(image_shape) << ", kernel "
                                 << shape_str(kernel_shape) << ", " << dtype_name(dtype));
  const Tensor image = random_tensor(dtype, image_shape, seed).cast(DType::float64);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1).cast(DType::float64);
  Shape out_shape;
  try {
    out_shape = reference_conv_forward(p, image, kernel).shape();
  } catch (const ShapeError&) {
    check_problem(p, image_shape, kernel_shape, dtype, seed);  // the same ShapeError on the device
    return;
  }
  REQUIRE(gpu_corrmm_direct_grouped_applicable(p, image_shape, kernel_shape));
  const std::int64_t calls = gpu_corrmm_direct_grouped_calls();
  check_problem(p, image_shape, kernel_shape, dtype, seed);
  REQUIRE(gpu_corrmm_direct_grouped_calls() == calls + 3);

  const Tensor top = random_tensor(dtype, out_shape, seed + 2).cast(DType::float64);
  const DirectionResults direct = run_directions(p, image, kernel, top, dtype);
  const std::int64_t after_direct = gpu_corrmm_direct_grouped_calls();
  DirectionResults gemm;
  {
    const ScopedDirectGrouped off(false);
    REQUIRE_FALSE(gpu_corrmm_direct_grouped_applicable(p, image_shape, kernel_shape));
    gemm = run_directions(p, image, kernel, top, dtype);
  }
  REQUIRE(gpu_corrmm_direct_grouped_calls() == after_direct);
  const int n = p.convdim;
  double taps = 1;
  for (std::int64_t k : spatial_of(kernel_shape, n)) taps *= static_cast<double>(k);
  const double channels_per_group = static_cast<double>(kernel_shape[1]);
  const double filters_per_group = static_cast<double>(kernel_shape[0] / p.num_groups);
  const double positions = static_cast<double>(top.numel()) / static_cast<double>(top.dim(1));
  const auto host = [](const Tensor& t) { return t.to(Device::cpu()).cast(DType::float64); };
  require_close(gemm.forward, host(direct.forward), dtype, taps * channels_per_group);
  require_close(gemm.grad_inputs, host(direct.grad_inputs), dtype, taps * filters_per_group * 2);
  require_close(gemm.grad_weights, host(direct.grad_weights), dtype, positions);
}

// kernel size x stride x dilation x border x flip for 2-D depthwise problems, the batch (1-3),
// channels (1, 3, 8), channel multiplier (1, 2) and image size (odd widths) rotating with the
// problem. Every EVERY-th problem only.
void run_grid_depthwise_2d(DType dtype, int every, std::uint64_t seed) {
  const std::vector<Shape> kernels = {{1, 1}, {3, 3}, {5, 5}, {3, 1}};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1}, {2, 2}, {1, 2}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1}, {2, 2}, {2, 1}};
  const std::vector<BorderMode> borders = {BorderMode("valid"),
                                           BorderMode("half"),
                                           BorderMode("full"),
                                           BorderMode(1),
                                           BorderMode::pairs({{1, 0}, {0, 2}}),
                                           BorderMode::pairs({{0, 3}, {2, 1}})};
  const std::vector<std::int64_t> channels = {1, 3, 8};
  const std::vector<Shape> images = {{9, 7}, {6, 11}, {12, 13}};
  std::uint64_t count = 0;
  for (const Shape& k : kernels) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (const BorderMode& border : borders) {
          for (bool flip : {true, false}) {
            if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
            ++count;
            const std::int64_t batch = 1 + static_cast<std::int64_t>(count % 3);
            const std::int64_t c = channels[count % channels.size()];
            const std::int64_t multiplier = 1 + static_cast<std::int64_t>((count / 3) % 2);
            const Shape& im = images[(count / 2) % images.size()];
            const ConvParams p = make_conv_params(2, border, stride, flip, dilation, c);
            check_direct(p, {batch, c, im[0], im[1]}, {c * multiplier, 1, k[0], k[1]}, dtype, seed);
          }
        }
      }
    }
  }
}

void run_grid_depthwise_3d(DType dtype, int every, std::uint64_t seed) {
  const std::vector<Shape> kernels = {{1, 1, 1}, {3, 3, 3}, {2, 3, 1}};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1, 1}, {2, 1, 2}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1, 1}, {1, 2, 2}};
  const std::vector<BorderMode> borders = {
      BorderMode("valid"), BorderMode("half"), BorderMode("full"),
      BorderMode({std::int64_t{1}, std::int64_t{0}, std::int64_t{2}})};
  std::uint64_t count = 0;
  for (const Shape& k : kernels) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (const BorderMode& border : borders) {
          for (bool flip : {true, false}) {
            if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
            ++count;
            const std::int64_t batch = 1 + static_cast<std::int64_t>(count % 2);
            const std::int64_t c = count % 2 == 0 ? 3 : 1;
            const ConvParams p = make_conv_params(3, border, stride, flip, dilation, c);
            check_direct(p, {batch, c, 5, 6, 7}, {c, 1, k[0], k[1], k[2]}, dtype, seed);
          }
        }
      }
    }
  }
}

// kernel size x stride x dilation x border x flip for 2-D grouped problems with several channels
// per group (2, 3, 4, 8) and filters per group (1, 2, 3), the groups (2, 3), batch (1-3) and image
// size (a single pixel, odd widths, tall and narrow, wide and short) rotating with the problem.
// Pads up to 5, beyond the kernel. Every EVERY-th problem only.
void run_grid_grouped_2d(DType dtype, int every, std::uint64_t seed) {
  const std::vector<Shape> kernels = {{1, 1}, {3, 3}, {5, 5}, {7, 1}};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1}, {2, 2}, {3, 1}, {1, 3}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1}, {2, 2}, {1, 2}};
  const std::vector<BorderMode> borders = {BorderMode("valid"),
                                           BorderMode("half"),
                                           BorderMode("full"),
                                           BorderMode(1),
                                           BorderMode::pairs({{4, 0}, {0, 5}}),
                                           BorderMode::pairs({{0, 3}, {2, 1}})};
  const std::vector<std::int64_t> channels_per_group = {2, 3, 4, 8};
  const std::vector<std::int64_t> filters_per_group = {1, 2, 3};
  const std::vector<Shape> images = {{9, 7}, {1, 1}, {6, 37}, {23, 5}, {12, 13}};
  std::uint64_t count = 0;
  for (const Shape& k : kernels) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (const BorderMode& border : borders) {
          for (bool flip : {true, false}) {
            if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
            ++count;
            const std::int64_t batch = 1 + static_cast<std::int64_t>(count % 3);
            const std::int64_t cg = channels_per_group[count % channels_per_group.size()];
            const std::int64_t mg = filters_per_group[(count / 4) % filters_per_group.size()];
            const std::int64_t groups = 2 + static_cast<std::int64_t>((count / 3) % 2);
            const Shape& im = images[(count / 2) % images.size()];
            const ConvParams p = make_conv_params(2, border, stride, flip, dilation, groups);
            check_direct(p, {batch, groups * cg, im[0], im[1]}, {groups * mg, cg, k[0], k[1]},
                         dtype, seed);
          }
        }
      }
    }
  }
}

void run_grid_grouped_3d(DType dtype, int every, std::uint64_t seed) {
  const std::vector<Shape> kernels = {{1, 1, 1}, {3, 3, 3}, {2, 3, 1}};
  const std::vector<std::vector<std::int64_t>> strides = {{1, 1, 1}, {2, 1, 3}, {3, 2, 1}};
  const std::vector<std::vector<std::int64_t>> dilations = {{1, 1, 1}, {2, 1, 2}};
  const std::vector<BorderMode> borders = {
      BorderMode("valid"), BorderMode("half"), BorderMode("full"),
      BorderMode({std::int64_t{1}, std::int64_t{0}, std::int64_t{4}})};
  const std::vector<std::int64_t> channels_per_group = {2, 3, 4, 8};
  const std::vector<Shape> images = {{5, 6, 7}, {3, 9, 4}, {1, 1, 1}};
  std::uint64_t count = 0;
  for (const Shape& k : kernels) {
    for (const auto& stride : strides) {
      for (const auto& dilation : dilations) {
        for (const BorderMode& border : borders) {
          for (bool flip : {true, false}) {
            if (seed++ % static_cast<std::uint64_t>(every) != 0) continue;
            ++count;
            const std::int64_t batch = 1 + static_cast<std::int64_t>(count % 2);
            const std::int64_t cg = channels_per_group[count % channels_per_group.size()];
            const std::int64_t mg = 1 + static_cast<std::int64_t>((count / 4) % 3);
            const Shape& im = images[(count / 3) % images.size()];
            const ConvParams p = make_conv_params(3, border, stride, flip, dilation, 2);
            check_direct(p, {batch, 2 * cg, im[0], im[1], im[2]}, {2 * mg, cg, k[0], k[1], k[2]},
                         dtype, seed);
          }
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("GpuCorrMM conforms under every chunking of the batch", "[cuda]") {
  testing::require_gpu_or_skip();
  // The conformance suite (tests/conformance) runs GpuCorrMM over the parameter grid with the
  // default bound (the whole small batch in one chunk) and the direct grouped kernels on; here a
  // sample of each grid, a different one per chunking, with one image per chunk and a few images
  // per chunk, and grouped problems on the grouped GEMMs (the direct kernels off).
  const ConvImplementation& row = *conv_registry().find("gpu_corrmm");
  const std::vector<Chunking> all = chunkings();
  for (std::size_t i = 1; i < all.size(); ++i) {
    INFO("chunking: " << all[i].name);
    const ScopedTuning tuning(all[i].workspace_bytes);
    const ScopedDirectGrouped gemm_only(false);
    std::vector<testing::ConvCase> cases;
    for (const testing::GridSpec& spec : testing::conformance_grid_specs()) {
      const std::vector<testing::ConvCase> grid = testing::make_grid(spec);
      const std::vector<testing::ConvCase> some =
          testing::sample(grid, grid.size() > 2000 ? 13 : 7, i);
      cases.insert(cases.end(), some.begin(), some.end());
    }
    testing::check_conformance(testing::run_conformance(row, cases));
  }
}

TEST_CASE("GpuCorrMM unshared 1x1 kernels at stride 1 without padding, every direction", "[cuda]") {
  // CorrMM once took its pointwise shortcut (the image as the column matrix) for unshared 1x1
  // kernels and computed their image gradient with shared weights. GpuCorrMM's shortcut is for
  // shared kernels only; this keeps it so, on one image (where the shortcut would apply at any
  // size) and on several.
  testing::require_gpu_or_skip();
  for (std::int64_t groups : {1, 2}) {
    const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, groups, true);
    for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
      for (std::int64_t batch : {1, 3}) {
        check_problem(p, {batch, 4, 8, 6}, {6, 8, 6, 4 / groups, 1, 1}, dtype, 650);
      }
    }
  }
}

TEST_CASE("GpuCorrMM: kernels of size 1 on any axis, every direction, shared and unshared",
          "[cuda]") {
  // The shared table of size-1 kernels (support/size_one_cases.hpp): one image (GpuCorrMM's
  // pointwise shortcut takes every 1x1 stride-1 unpadded shared problem) and two (batch-folded
  // GEMMs), with and without the direct grouped kernels, in float64 and float32, and in float16
  // on a sample.
  testing::require_gpu_or_skip();
  const std::vector<convgraph::testing::SizeOneCase> cases = convgraph::testing::size_one_cases();
  for (bool direct : {true, false}) {
    INFO("direct grouped kernels: " << direct);
    const ScopedDirectGrouped scoped(direct);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      INFO("case: " << cases[c].label);
      for (std::int64_t batch : {1, 2}) {
        Shape image = cases[c].image;
        image[0] = batch;
        check_problem(cases[c].params, image, cases[c].kernel, DType::float64, 1500 + c);
        if (direct)
          check_problem(cases[c].params, image, cases[c].kernel, DType::float32, 2500 + c);
        if (direct && c % 4 == 0) {
          check_problem(cases[c].params, image, cases[c].kernel, DType::float16, 3500 + c);
        }
      }
    }
  }
}

TEST_CASE("GpuCorrMM pointwise, depthwise and larger problems, in several chunks", "[cuda]") {
  testing::require_gpu_or_skip();
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    // 1x1 kernels, plain and strided, grouped.
    for (std::int64_t groups : {1, 2, 6}) {
      const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, groups);
      check_problem(p, {4, 6, 5, 4}, {6, 6 / groups, 1, 1}, dtype, 600);
      const ConvParams s = make_conv_params(2, "half", {2, 1}, false, {1, 1}, groups);
      check_problem(s, {3, 6, 5, 4}, {12, 6 / groups, 1, 1}, dtype, 601);
    }
    // Depthwise with a channel multiplier, and a mixed-stride, dilated grouped layer.
    const ConvParams depthwise = make_conv_params(2, "half", {1, 2}, true, {2, 1}, 8);
    check_problem(depthwise, {3, 8, 14, 13}, {16, 1, 3, 3}, dtype, 602);
    const ConvParams grouped = make_conv_params(2, 1, {2, 1}, false, {1, 2}, 4);
    check_problem(grouped, {2, 16, 12, 11}, {8, 4, 3, 3}, dtype, 603);
  }
  // A batch of 20 cut into chunks of a few images by a 1 MiB bound (each image's column matrix
  // and staging take 160 KiB in float32), with the default bound (one chunk) for comparison.
  const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  for (std::int64_t bound : {std::int64_t{1} << 20, gpu::GpuCorrMMTuning{}.workspace_bytes}) {
    INFO("workspace bound " << bound);
    const ScopedTuning tuning(bound);
    check_problem(same, {20, 16, 16, 16}, {16, 16, 3, 3}, DType::float32, 610);
    check_problem(same, {20, 16, 16, 16}, {16, 16, 3, 3}, DType::float16, 611);
  }
  // Weight gradients with a reduction of nb * P >= 4096 columns are cut into slices summed by a
  // kernel: 9 images of 23x23 give two slices of unequal length, looped over per group (1 group)
  // or per slice (4 groups).
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    check_problem(same, {9, 8, 23, 23}, {8, 8, 3, 3}, dtype, 612);
    const ConvParams grouped = make_conv_params(2, "half", {1, 1}, false, {1, 1}, 4);
    const ScopedDirectGrouped gemm_only(false);  // the sliced grouped GEMMs, not the direct kernels
    check_problem(grouped, {9, 8, 23, 23}, {8, 2, 3, 3}, dtype, 613);
  }
  const ConvParams c3d = make_conv_params(3, 1, {1, 2, 1}, true, {1, 1, 1}, 1);
  const ScopedTuning tuning(64 << 10);
  check_problem(c3d, {5, 4, 6, 8, 8}, {8, 4, 3, 3, 3}, DType::float32, 620);
}

TEST_CASE(
    "GpuCorrMM depthwise problems run on the direct kernels, matching the reference and "
    "the GEMM path",
    "[cuda]") {
  testing::require_gpu_or_skip();
  run_grid_depthwise_2d(DType::float64, 1, 700);
  run_grid_depthwise_2d(DType::float32, 2, 701);
  run_grid_depthwise_2d(DType::float16, 3, 702);
  run_grid_depthwise_3d(DType::float64, 1, 710);
  run_grid_depthwise_3d(DType::float32, 3, 711);
  run_grid_depthwise_3d(DType::float16, 3, 712);
  // A longer weight-gradient reduction (several slices summed by launch_sum_slices) and the
  // layer shape of the depthwise_mobilenet suite entry, scaled down.
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 8);
    check_direct(p, {4, 8, 40, 37}, {8, 1, 3, 3}, dtype, 720);
    const ConvParams q = make_conv_params(2, 1, {2, 2}, false, {1, 1}, 4);
    check_direct(q, {3, 4, 33, 35}, {8, 1, 3, 3}, dtype, 721);
  }
}

TEST_CASE(
    "GpuCorrMM grouped problems with few channels per group run on the direct kernels, matching "
    "the reference and the GEMM path",
    "[cuda]") {
  testing::require_gpu_or_skip();
  run_grid_grouped_2d(DType::float64, 4, 740);
  run_grid_grouped_2d(DType::float32, 8, 741);
  run_grid_grouped_2d(DType::float16, 12, 742);
  run_grid_grouped_3d(DType::float64, 3, 750);
  run_grid_grouped_3d(DType::float32, 6, 751);
  run_grid_grouped_3d(DType::float16, 8, 752);
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    // Larger layers: several row tiles in every direction, several slices of the weight
    // gradient's work items, chunks of 4 filters (forward) and channels (gradInputs) and several
    // (channel, tap) chunks (gradWeights): 4 and 8 channels per group, 2 and 5 filters per group.
    const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 16);
    check_direct(same, {2, 64, 40, 70}, {32, 4, 3, 3}, dtype, 760);
    const ConvParams strided = make_conv_params(2, 1, {2, 2}, false, {1, 1}, 8);
    check_direct(strided, {2, 64, 40, 70}, {40, 8, 3, 3}, dtype, 761);
    // Depthwise on a wide image (several column tiles) and a 7x7 kernel (49 taps: two tap chunks
    // in the weight gradient).
    const ConvParams wide = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 8);
    check_direct(wide, {1, 8, 5, 300}, {8, 1, 3, 3}, dtype, 762);
    check_direct(wide, {2, 8, 19, 21}, {16, 1, 7, 7}, dtype, 763);
  }
  // A widely dilated kernel: the tiles shrink to fit shared memory.
  for (DType dtype : {DType::float64, DType::float32}) {
    const ConvParams dilated = make_conv_params(2, "valid", {1, 1}, true, {35, 35}, 2);
    check_direct(dilated, {2, 4, 90, 90}, {4, 2, 3, 3}, dtype, 770);
  }
}

TEST_CASE(
    "GpuCorrMM direct grouped kernels stage rows at any width, pad and alignment (float16 pairs "
    "and element by element)",
    "[cuda]") {
  testing::require_gpu_or_skip();
  // float16 rows of even width are staged as __half2 pairs, others element by element; odd pads
  // put the first staged column on an odd element (a pair half inside the tile), strides and
  // dilations change which pairs a tile reads. Widths around the pair and warp sizes.
  const std::vector<std::int64_t> widths = {1, 2, 3, 4, 7, 8, 9, 33, 34, 112, 113};
  std::uint64_t seed = 900;
  for (DType dtype : {DType::float16, DType::float32}) {
    for (std::int64_t w : widths) {
      // Depthwise 3x3, pad 1 (the mobilenet layer's shape, scaled down).
      const ConvParams same = make_conv_params(2, 1, {1, 1}, true, {1, 1}, 4);
      check_direct(same, {2, 4, 5, w}, {4, 1, 3, 3}, dtype, seed++);
      // Asymmetric odd pads, no flip.
      const ConvParams odd =
          make_conv_params(2, BorderMode::pairs({{0, 3}, {3, 2}}), {1, 1}, false, {1, 1}, 4);
      check_direct(odd, {1, 4, 4, w}, {8, 1, 3, 2}, dtype, seed++);
      // Stride 2, pad 1.
      const ConvParams strided = make_conv_params(2, 1, {2, 2}, true, {1, 1}, 2);
      check_direct(strided, {2, 8, 6, w}, {8, 4, 3, 3}, dtype, seed++);
      // Dilation 2, pad 2, 4 channels and 4 filters per group (the ResNeXt layer's grouping).
      const ConvParams dilated = make_conv_params(2, 2, {1, 1}, true, {2, 2}, 2);
      check_direct(dilated, {1, 8, 7, w}, {8, 4, 3, 3}, dtype, seed++);
    }
    // 3-D: even and odd widths, pad 1, stride (1, 2, 1).
    for (std::int64_t w : {std::int64_t{2}, std::int64_t{9}, std::int64_t{34}}) {
      const ConvParams p3 = make_conv_params(3, 1, {1, 2, 1}, true, {1, 1, 1}, 2);
      check_direct(p3, {1, 4, 3, 5, w}, {4, 2, 3, 3, 3}, dtype, seed++);
    }
  }
  // A tall layer of even width: several row tiles, several gradWeights items per slice.
  const ConvParams tall = make_conv_params(2, 1, {1, 1}, true, {1, 1}, 8);
  check_direct(tall, {3, 8, 150, 56}, {8, 1, 3, 3}, DType::float16, 990);
  check_direct(tall, {2, 32, 57, 58}, {32, 4, 3, 3}, DType::float16, 991);
}

TEST_CASE("GpuCorrMM problems outside the direct kernels' rule run on the GEMMs", "[cuda]") {
  testing::require_gpu_or_skip();
  const std::int64_t calls = gpu_corrmm_direct_grouped_calls();
  // 16 channels per group, above the limit of 8.
  const ConvParams grouped = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 2);
  REQUIRE_FALSE(gpu_corrmm_direct_grouped_applicable(grouped, {2, 32, 7, 6}, {4, 16, 3, 3}));
  check_problem(grouped, {2, 32, 7, 6}, {4, 16, 3, 3}, DType::float32, 730);
  // One group of 4 channels.
  const ConvParams single = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  REQUIRE_FALSE(gpu_corrmm_direct_grouped_applicable(single, {2, 4, 7, 6}, {4, 4, 3, 3}));
  check_problem(single, {2, 4, 7, 6}, {4, 4, 3, 3}, DType::float32, 733);
  // Unshared depthwise kernels.
  const ConvParams unshared =
      make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 4, /*unshared=*/true);
  check_problem(unshared, {2, 4, 6, 5}, {4, 4, 3, 1, 3, 3}, DType::float32, 731);
  // A kernel dilated so widely that not even one thread's tile fits in shared memory.
  const ConvParams huge = make_conv_params(2, "valid", {1, 1}, true, {30, 30}, 2);
  REQUIRE_FALSE(gpu_corrmm_direct_grouped_applicable(huge, {1, 2, 190, 190}, {2, 1, 7, 7}));
  check_problem(huge, {1, 2, 190, 190}, {2, 1, 7, 7}, DType::float32, 734);
  // Depthwise with the direct kernels switched off.
  {
    const ScopedDirectGrouped off(false);
    const ConvParams depthwise = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 4);
    check_problem(depthwise, {2, 4, 7, 6}, {4, 1, 3, 3}, DType::float32, 732);
  }
  REQUIRE(gpu_corrmm_direct_grouped_calls() == calls);
}

TEST_CASE("GpuCorrMM 1x1 stride-1 convolutions run straight on the tensors", "[cuda]") {
  testing::require_gpu_or_skip();
  // Pointwise problems (1x1 kernel, stride 1, no padding) skip im2col / col2im: forward and
  // gradInputs are GEMMs per image on the batch-major tensors (from 32 positions, or for one
  // image), gradWeights sums per-image GEMMs (from 64 positions, when the M x Cg partials are
  // smaller than the copies) or, for one image, is one GEMM. 8x9 = 72 positions take the fast
  // paths, 5x4 = 20 the general ones; the batch in one chunk, one image per chunk (the partials
  // of gradWeights accumulating chunk by chunk), chunks of two images (partials summed, then a
  // last single image), and 3-D.
  const ConvParams plain = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const std::vector<std::int64_t> bounds = {gpu::GpuCorrMMTuning{}.workspace_bytes, 1, 512};
  for (std::int64_t bound : bounds) {
    INFO("workspace bound " << bound);
    const ScopedTuning tuning(bound);
    for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
      for (std::int64_t groups : {1, 2, 8}) {
        for (std::int64_t batch : {1, 5}) {
          // "half" and "full" pad nothing around a 1x1 kernel; the flip is a no-op.
          const ConvParams p = make_conv_params(2, groups == 2 ? "half" : "valid", {1, 1},
                                                groups != 8, {1, 1}, groups);
          check_problem(p, {batch, 8, 8, 9}, {8, 8 / groups, 1, 1}, dtype, 700 + batch);
          check_problem(p, {batch, 8, 5, 4}, {16, 8 / groups, 1, 1}, dtype, 710 + batch);
        }
      }
      // More filters than channels and the other way round; a dilation changes nothing.
      const ConvParams d = make_conv_params(2, "full", {1, 1}, true, {2, 3}, 1);
      check_problem(d, {3, 12, 10, 8}, {20, 12, 1, 1}, dtype, 720);
      check_problem(d, {3, 20, 10, 8}, {4, 20, 1, 1}, dtype, 721);
      // gradWeights with big M x Cg partials (256 x 256 per image against (256 + 256) x 64
      // copies) takes the general path.
      check_problem(plain, {3, 256, 8, 8}, {256, 256, 1, 1}, dtype, 722);
      const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 2);
      check_problem(p3, {3, 4, 3, 4, 6}, {6, 2, 1, 1, 1}, dtype, 723);
    }
  }
}

TEST_CASE("GpuCorrMM long outputs run one GEMM per image, without transposes", "[cuda]") {
  testing::require_gpu_or_skip();
  // Shared-kernel forward and gradInputs of chunks of several images skip the staging transposes
  // from 256 positions (float16, TF32) or 1024 (float32, float64): 34 x 32 = 1088 takes it in
  // every dtype, 16 x 16 = 256 in float16 and with TF32 only.
  const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const ConvParams grouped = make_conv_params(2, 1, {1, 1}, false, {1, 2}, 2);
  for (std::int64_t bound : {gpu::GpuCorrMMTuning{}.workspace_bytes, std::int64_t{200} << 10}) {
    INFO("workspace bound " << bound);
    const ScopedTuning tuning(bound);
    for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
      check_problem(same, {3, 4, 34, 32}, {6, 4, 3, 3}, dtype, 800);
      check_problem(grouped, {3, 4, 34, 32}, {6, 2, 3, 2}, dtype, 801);
      check_problem(same, {3, 4, 16, 16}, {5, 4, 3, 3}, dtype, 802);
    }
  }
}

TEST_CASE("GpuCorrMM forward and gradWeights cut long images into ranges of positions", "[cuda]") {
  testing::require_gpu_or_skip();
  // A column target below one image's column matrix: forward and gradWeights run each image as
  // ranges of at least 1024 positions (multiples of 64, the last one shorter), gradInputs stays
  // one image per chunk. P = 47 x 49 = 2303 (odd: the topgrad rows read in place start
  // misaligned) gives ranges of 768, 768 and 767 (1152 and 1151 in float16 under the 100 KiB
  // target); the grouped layer has 2254 positions, the 3-D one 2400, the strided, dilated,
  // asymmetrically padded one 1600. gradWeights' slices add into the same partial sums across
  // ranges and images.
  const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const ConvParams grouped = make_conv_params(2, "valid", {1, 1}, false, {1, 1}, 2);
  const ConvParams c3d = make_conv_params(3, 1, {1, 1, 1}, true, {1, 1, 1}, 1);
  const ConvParams strided =
      make_conv_params(2, BorderMode::pairs({{2, 1}, {0, 3}}), {2, 1}, false, {2, 3}, 1);
  for (std::int64_t target : {std::int64_t{1}, std::int64_t{100} << 10}) {
    INFO("column target " << target);
    const ScopedTuning tuning(gpu::GpuCorrMMTuning{}.workspace_bytes, target);
    for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
      check_problem(same, {3, 3, 47, 49}, {5, 3, 3, 3}, dtype, 830);
      check_problem(grouped, {2, 4, 48, 50}, {6, 2, 3, 2}, dtype, 831);
      check_problem(c3d, {2, 2, 6, 20, 20}, {3, 2, 3, 3, 3}, dtype, 832);
      check_problem(strided, {2, 3, 80, 40}, {4, 3, 3, 2}, dtype, 833);
    }
  }
  // Half the L2 cache as the target (two chunks of 3 images on an H100: 5.6 MiB of column
  // matrix and staging per image) and no target (the default: the whole batch in one chunk).
  for (std::int64_t target : {std::int64_t{-1}, std::int64_t{0}}) {
    INFO("column target " << target);
    const ScopedTuning tuning(gpu::GpuCorrMMTuning{}.workspace_bytes, target);
    check_problem(same, {6, 16, 96, 96}, {8, 16, 3, 3}, DType::float32, 834);
  }
}

TEST_CASE("launch_im2col takes ranges of positions; launch_col2im rejects them", "[cuda]") {
  testing::require_gpu_or_skip();
  gpu::GpuCorrGeometry geo;
  geo.channels = 2;
  geo.image[1] = geo.image[2] = 8;
  geo.output[1] = geo.output[2] = 8;
  geo.kernel[1] = geo.kernel[2] = 3;
  geo.pad_before[1] = geo.pad_before[2] = 1;
  const std::int64_t rows = 2 * 9;
  const Tensor image = random_tensor(DType::float32, {1, 2, 8, 8}, 840).to(kGpu);
  const Tensor whole = Tensor::empty(DType::float32, {rows * 64}, kGpu);
  const Tensor part = Tensor::empty(DType::float32, {rows * 20}, kGpu);
  const cudaStream_t stream = cuda::current_stream(0);
  REQUIRE(gpu::launch_im2col(gpu::GpuElement::f32, geo, 1, image.raw_data(), whole.raw_data(),
                             {64, 64, 1}, stream) == cudaSuccess);
  // Positions 37 .. 56 of every row.
  REQUIRE(gpu::launch_im2col(gpu::GpuElement::f32, geo, 1, image.raw_data(), part.raw_data(),
                             {20, 20, 1, 37, 20}, stream) == cudaSuccess);
  cuda::synchronize_current(0);
  const std::vector<float> all = whole.to(Device::cpu()).to_vector<float>();
  const std::vector<float> range = part.to(Device::cpu()).to_vector<float>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t p = 0; p < 20; ++p) {
      INFO("row " << r << ", position " << 37 + p);
      REQUIRE(range[static_cast<std::size_t>(r * 20 + p)] ==
              all[static_cast<std::size_t>(r * 64 + 37 + p)]);
    }
  }
  // Ranges past the output, and col2im over a range.
  for (const gpu::ColumnLayout bad :
       {gpu::ColumnLayout{20, 20, 1, 50, 20}, gpu::ColumnLayout{20, 20, 1, -1, 20},
        gpu::ColumnLayout{20, 20, 1, 65, -1}}) {
    REQUIRE(gpu::launch_im2col(gpu::GpuElement::f32, geo, 1, image.raw_data(), part.raw_data(), bad,
                               stream) == cudaErrorInvalidValue);
  }
  const Tensor back = Tensor::empty(DType::float32, {1, 2, 8, 8}, kGpu);
  REQUIRE(gpu::launch_col2im(gpu::GpuElement::f32, geo, 1, part.raw_data(), {20, 20, 1, 37, 20},
                             back.raw_data(), stream) == cudaErrorInvalidValue);
  REQUIRE(gpu::launch_col2im(gpu::GpuElement::f32, geo, 1, whole.raw_data(), {64, 64, 1, 0, 64},
                             back.raw_data(), stream) == cudaSuccess);
  cuda::synchronize_current(0);
}

namespace {

// max |RESULT - EXPECTED| / max |EXPECTED|.
double relative_error(const Tensor& result, const Tensor& expected) {
  const std::vector<double> got = result.to(Device::cpu()).cast(DType::float64).to_vector<double>();
  const std::vector<double> want = expected.to_vector<double>();
  REQUIRE(got.size() == want.size());
  double error = 0, magnitude = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    error = std::max(error, std::abs(got[i] - want[i]));
    magnitude = std::max(magnitude, std::abs(want[i]));
  }
  return error / std::max(magnitude, 1e-300);
}

}  // namespace

TEST_CASE("GpuCorrMM float32 is strict FP32 unless allow_tf32 is set", "[cuda]") {
  testing::require_gpu_or_skip();
  // 2304 products per output of values in (-1, 1): strict FP32 is some 1e-6 off in relative
  // terms, TF32 (10-bit mantissas) some 1e-3. A 3x3 layer (im2col) and a 1x1 one (the direct
  // path), every direction.
  const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  struct Case {
    Shape image, kernel;
  };
  for (const Case& c :
       {Case{{2, 256, 8, 8}, {256, 256, 3, 3}}, Case{{2, 1024, 8, 8}, {256, 1024, 1, 1}}}) {
    INFO("image " << shape_str(c.image) << ", kernel " << shape_str(c.kernel));
    const Tensor image = random_tensor(DType::float32, c.image, 1600).cast(DType::float64);
    const Tensor kernel = random_tensor(DType::float32, c.kernel, 1601).cast(DType::float64);
    const Tensor expected = reference_conv_forward(p, image, kernel);
    const Tensor top = random_tensor(DType::float32, expected.shape(), 1602).cast(DType::float64);
    const Shape image_spatial = spatial_of(c.image, 2);
    const Shape kernel_spatial = spatial_of(c.kernel, 2);
    const Tensor want_gi = reference_conv_grad_inputs(p, kernel, top, image_spatial);
    const Tensor want_gw = reference_conv_grad_weights(p, image, top, kernel_spatial);
    const Tensor d_image = image.cast(DType::float32).to(kGpu);
    const Tensor d_kernel = kernel.cast(DType::float32).to(kGpu);
    const Tensor d_top = top.cast(DType::float32).to(kGpu);
    std::vector<double> strict, tf32;
    for (bool allow : {false, true}) {
      std::vector<double>& errors = allow ? tf32 : strict;
      errors.push_back(relative_error(gpu_corrmm_forward(p, d_image, d_kernel, allow), expected));
      errors.push_back(relative_error(
          gpu_corrmm_grad_inputs(p, d_kernel, d_top, image_spatial, allow), want_gi));
      errors.push_back(relative_error(
          gpu_corrmm_grad_weights(p, d_image, d_top, kernel_spatial, allow), want_gw));
    }
    for (std::size_t i = 0; i < strict.size(); ++i) {
      INFO("direction " << i << ": strict " << strict[i] << ", tf32 " << tf32[i]);
      CHECK(strict[i] < 2e-5);
      CHECK(tf32[i] < 1e-2);
      // Tensor cores with TF32 (compute capability 8.0 and later) round the operands.
      if (cuda::properties(0).major >= 8) CHECK(tf32[i] > 4 * strict[i]);
    }
    // float64 and float16 ignore the flag.
    const Tensor small_image = image.slice(1, 0, 16, 1);
    const Tensor small_kernel = kernel.slice(0, 0, 8, 1).slice(1, 0, 16, 1);
    const Tensor want_small = reference_conv_forward(p, small_image, small_kernel);
    CHECK(relative_error(gpu_corrmm_forward(p, small_image.to(kGpu), small_kernel.to(kGpu), true),
                         want_small) < 1e-12);
  }
}

TEST_CASE("GpuCorrMM empty problems give zeros, like the reference", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "full", {1, 2}, true, {1, 1}, 1);
  const ConvParams g = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  for (DType dtype : {DType::float16, DType::float32, DType::float64}) {
    check_problem(p, {0, 3, 5, 5}, {4, 3, 2, 2}, dtype, 1000);  // no batch
    check_problem(p, {2, 0, 5, 5}, {4, 0, 2, 2}, dtype, 1001);  // no channels
    check_problem(p, {2, 3, 5, 5}, {0, 3, 2, 2}, dtype, 1002);  // no filters
    check_problem(g, {2, 0, 4, 4}, {2, 0, 3, 3}, dtype, 1003);  // no channels, 2 groups
    check_problem(p, {2, 3, 0, 4}, {4, 3, 2, 2}, dtype, 1004);  // an empty image axis
  }
  // The gradient wrt the weights with no batch is all zeros (not uninitialised memory).
  const Tensor image = Tensor::empty(DType::float32, {0, 3, 5, 5}, kGpu);
  const Tensor top = Tensor::empty(DType::float32, {0, 4, 6, 3}, kGpu);
  const Tensor dw = gpu_corrmm_grad_weights(p, image, top, {2, 2});
  REQUIRE(dw.shape() == Shape{4, 3, 2, 2});
  REQUIRE(dw.device() == kGpu);
  for (float v : dw.to(Device::cpu()).to_vector<float>()) REQUIRE(v == 0.0f);
}

TEST_CASE("GpuCorrMM reads non-contiguous device inputs", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, true, {1, 2}, 2);
  for (DType dtype : {DType::float32, DType::float64}) {
    INFO(dtype_name(dtype));
    const Tensor image = random_tensor(dtype, {3, 7, 4, 8}, 1100).permute({0, 2, 1, 3});
    const Tensor kernel = random_tensor(dtype, {12, 2, 3, 2}, 1101).slice(0, 0, 12, 2);
    const Tensor d_image = random_tensor(dtype, {3, 7, 4, 8}, 1100).to(kGpu).permute({0, 2, 1, 3});
    const Tensor d_kernel = random_tensor(dtype, {12, 2, 3, 2}, 1101).to(kGpu).slice(0, 0, 12, 2);
    REQUIRE_FALSE(d_image.is_contiguous());
    REQUIRE_FALSE(d_kernel.is_contiguous());
    const Tensor expected = reference_conv_forward(p, image, kernel);
    require_close(gpu_corrmm_forward(p, d_image, d_kernel), expected.cast(DType::float64), dtype,
                  12);
    Shape wide = expected.shape();
    wide.back() *= 2;
    const Tensor top = random_tensor(dtype, wide, 1102).slice(3, 0, wide.back(), 2);
    const Tensor d_top = random_tensor(dtype, wide, 1102).to(kGpu).slice(3, 0, wide.back(), 2);
    REQUIRE_FALSE(d_top.is_contiguous());
    require_close(gpu_corrmm_grad_inputs(p, d_kernel, d_top, {7, 8}),
                  reference_conv_grad_inputs(p, kernel, top, {7, 8}).cast(DType::float64), dtype,
                  36);
    require_close(gpu_corrmm_grad_weights(p, d_image, d_top, {3, 2}),
                  reference_conv_grad_weights(p, image, top, {3, 2}).cast(DType::float64), dtype,
                  static_cast<double>(top.numel()));
  }
}

TEST_CASE("GpuCorrMM run-time errors name the op and the problem", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const ConvParams g2 = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 2);
  const DType f32 = DType::float32;
  const Tensor image = random_tensor(f32, {2, 4, 6, 6}, 1).to(kGpu);
  const Tensor kernel = random_tensor(f32, {3, 4, 3, 3}, 2).to(kGpu);

  SECTION("kernel channels that do not match the image") {
    const Tensor bad = random_tensor(f32, {3, 5, 3, 3}, 3).to(kGpu);
    const std::string m = message_of<ShapeError>([&] { gpu_corrmm_forward(p, image, bad); });
    CHECK(contains(m, "GpuCorrMM"));
    CHECK(contains(m, "input channels"));
  }
  SECTION("filters or channels not divisible by the groups") {
    const Tensor k = random_tensor(f32, {3, 2, 3, 3}, 3).to(kGpu);
    CHECK(contains(message_of<ShapeError>([&] { gpu_corrmm_forward(g2, image, k); }), "3 filters"));
    const Tensor img = random_tensor(f32, {2, 5, 6, 6}, 3).to(kGpu);
    const Tensor top = random_tensor(f32, {2, 4, 4, 4}, 4).to(kGpu);
    const std::string m = message_of<ShapeError>([&] {
      gpu_corrmm_grad_weights(g2, img, top, {3, 3});
    });
    CHECK(contains(m, "GpuCorrMM_gradWeights"));
    CHECK(contains(m, "not divisible"));
  }
  SECTION("an impossible output") {
    const Tensor big = random_tensor(f32, {3, 4, 7, 3}, 3).to(kGpu);
    CHECK(contains(message_of<ShapeError>([&] { gpu_corrmm_forward(p, image, big); }),
                   "impossible output"));
  }
  SECTION("a topgrad inconsistent with the shapes (both gradients)") {
    const Tensor top = random_tensor(f32, {2, 3, 5, 4}, 4).to(kGpu);
    std::string m = message_of<ShapeError>([&] { gpu_corrmm_grad_inputs(p, kernel, top, {6, 6}); });
    CHECK(contains(m, "GpuCorrMM_gradInputs"));
    CHECK(contains(m, "invalid input_shape"));
    m = message_of<ShapeError>([&] { gpu_corrmm_grad_weights(p, image, top, {3, 3}); });
    CHECK(contains(m, "invalid filter_shape"));
  }
  SECTION("a spatial argument of the wrong length or negative") {
    const Tensor top = random_tensor(f32, {2, 3, 4, 4}, 4).to(kGpu);
    REQUIRE_THROWS_AS(gpu_corrmm_grad_inputs(p, kernel, top, {6}), ShapeError);
    REQUIRE_THROWS_AS(gpu_corrmm_grad_inputs(p, kernel, top, {6, -1}), ShapeError);
    REQUIRE_THROWS_AS(gpu_corrmm_grad_weights(p, image, top, {3, 0}), ShapeError);
  }
  SECTION("unshared regions that do not match the output") {
    const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
    const Tensor k = random_tensor(f32, {3, 4, 3, 4, 3, 3}, 3).to(kGpu);
    CHECK(contains(message_of<ShapeError>([&] { gpu_corrmm_forward(u, image, k); }), "region"));
  }
  SECTION("host tensors are unsupported") {
    const std::string m = message_of<UnsupportedError>(
        [&] { gpu_corrmm_forward(p, image.to(Device::cpu()), kernel.to(Device::cpu())); });
    CHECK(contains(m, "GpuCorrMM"));
    CHECK(contains(m, "cpu"));
  }
  SECTION("integer dtypes, mixed dtypes and wrong ranks are TypeErrors") {
    REQUIRE_THROWS_AS(gpu_corrmm_forward(p, image.cast(DType::int32), kernel.cast(DType::int32)),
                      TypeError);
    REQUIRE_THROWS_AS(gpu_corrmm_forward(p, image, kernel.cast(DType::float64)), TypeError);
    REQUIRE_THROWS_AS(gpu_corrmm_forward(p, image.reshape({2, 4, 36}), kernel), TypeError);
    const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
    CHECK(contains(message_of<TypeError>([&] { gpu_corrmm_forward(p3, image, kernel); }),
                   "GpuCorr3dMM"));
  }
  SECTION("undefined tensors") {
    REQUIRE_THROWS_AS(gpu_corrmm_forward(p, Tensor(), kernel), ValueError);
  }
  SECTION("a column matrix beyond 32-bit indexing is refused before anything runs") {
    // 4096 channels of 7x7 taps over a 104x104 output: 2.17e9 column entries per image, past
    // the 2^31 - 1 the kernels and cuBLAS index.
    const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
    const Tensor wide = Tensor::empty(f32, {1, 4096, 104, 104}, kGpu);
    const Tensor k = Tensor::empty(f32, {1, 4096, 7, 7}, kGpu);
    const std::string m = message_of<UnsupportedError>([&] { gpu_corrmm_forward(same, wide, k); });
    CHECK(contains(m, "GpuCorrMM"));
    CHECK(contains(m, "column matrix"));
  }
  // The device still works after every error above.
  const Tensor out = gpu_corrmm_forward(p, image, kernel);
  require_close(out,
                reference_conv_forward(p, image.to(Device::cpu()), kernel.to(Device::cpu()))
                    .cast(DType::float64),
                f32, 36);
}

namespace {

StaticShape static_of(const Shape& shape) {
  return StaticShape(shape.begin(), shape.end());
}

Variable device_input(const std::string& name, DType dtype, const Shape& shape) {
  return make_input(TensorType(dtype, static_of(shape), kGpu), name);
}

std::shared_ptr<const GpuCorrMM> gpu_op(ConvDirection direction, const ConvParams& p) {
  return std::make_shared<const GpuCorrMM>(direction, p);
}

}  // namespace

TEST_CASE("GpuCorrMM op: names, equality, types, kernels and perform", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p2 =
      make_conv_params(2, BorderMode::pairs({{2, 1}, {0, 1}}), {1, 2}, true, {2, 1}, 1);
  const ConvParams p3 = make_conv_params(3, "valid", {1, 1, 1}, true, {1, 1, 1}, 1);
  CHECK(gpu_op(ConvDirection::forward, p2)->name() == "GpuCorrMM");
  CHECK(gpu_op(ConvDirection::grad_inputs, p2)->name() == "GpuCorrMM_gradInputs");
  CHECK(gpu_op(ConvDirection::grad_weights, p2)->name() == "GpuCorrMM_gradWeights");
  CHECK(gpu_op(ConvDirection::forward, p3)->name() == "GpuCorr3dMM");
  CHECK(gpu_op(ConvDirection::grad_inputs, p3)->name() == "GpuCorr3dMM_gradInputs");
  CHECK(gpu_op(ConvDirection::grad_weights, p3)->name() == "GpuCorr3dMM_gradWeights");
  CHECK(gpu_op(ConvDirection::forward, p2)->str() == "GpuCorrMM{" + p2.str() + "}");
  const auto tf32 = std::make_shared<const GpuCorrMM>(ConvDirection::forward, p2, true);
  CHECK(tf32->allow_tf32());
  CHECK_FALSE(gpu_op(ConvDirection::forward, p2)->allow_tf32());
  CHECK(tf32->str() == "GpuCorrMM{" + p2.str() + ", tf32}");
  CHECK_FALSE(tf32->equals(*gpu_op(ConvDirection::forward, p2)));
  CHECK(tf32->equals(GpuCorrMM(ConvDirection::forward, p2, true)));
  CHECK(tf32->hash() == GpuCorrMM(ConvDirection::forward, p2, true).hash());
  CHECK(tf32->hash() != gpu_op(ConvDirection::forward, p2)->hash());
  const auto fwd = gpu_op(ConvDirection::forward, p2);
  CHECK(fwd->equals(*gpu_op(ConvDirection::forward, p2)));
  CHECK(fwd->hash() == gpu_op(ConvDirection::forward, p2)->hash());
  CHECK_FALSE(fwd->equals(*gpu_op(ConvDirection::grad_inputs, p2)));
  CHECK_FALSE(fwd->equals(AbstractConv(ConvDirection::forward, p2)));
  REQUIRE(fwd->reference_op() != nullptr);
  CHECK(fwd->reference_op()->name() == "AbstractConv2d");

  const Variable x = device_input("x", DType::float32, {2, 3, 9, 8});
  const Variable w = device_input("w", DType::float32, {4, 3, 3, 2});
  const Variable y = apply(fwd, {x, w});
  CHECK(y.type() == AbstractConv(ConvDirection::forward, p2).make_outputs({x, w})[0]);
  CHECK(y.type().device == kGpu);
  // Host inputs and integer dtypes are refused when the graph is built.
  CHECK_THROWS_AS(apply(fwd, {tensor4("xh", DType::float32), tensor4("wh", DType::float32)}),
                  UnsupportedError);
  CHECK_THROWS_AS(apply(fwd, {device_input("xi", DType::int32, {2, 3, 9, 8}),
                              device_input("wi", DType::int32, {4, 3, 3, 2})}),
                  TypeError);

  for (DType dtype : {DType::float16, DType::float32, DType::float64}) {
    INFO(dtype_name(dtype));
    const Tensor image = random_tensor(dtype, {2, 3, 9, 8}, 1200).cast(DType::float64);
    const Tensor kernel = random_tensor(dtype, {4, 3, 3, 2}, 1201).cast(DType::float64);
    const Tensor d_image = image.cast(dtype).to(kGpu);
    const Tensor d_kernel = kernel.cast(dtype).to(kGpu);
    const Tensor expected = reference_conv_forward(p2, image, kernel);
    // perform (waits for the device itself).
    std::vector<Tensor> out(1);
    fwd->perform({d_image, d_kernel}, out);
    require_close(out[0], expected, dtype, 18);
    // A kernel made for static shapes, run on those and on others.
    const Variable xs = device_input("x", dtype, {2, 3, 9, 8});
    const Variable ws = device_input("w", dtype, {4, 3, 3, 2});
    const std::shared_ptr<const Kernel> k = kernel_for(*apply(fwd, {xs, ws}).owner());
    CHECK(k->name() == fwd->str());
    k->run({d_image, d_kernel}, out);
    require_close(out[0], expected, dtype, 18);
    const Tensor other = random_tensor(dtype, {1, 3, 11, 6}, 1202).cast(DType::float64);
    k->run({other.cast(dtype).to(kGpu), d_kernel}, out);
    require_close(out[0], reference_conv_forward(p2, other, kernel), dtype, 18);
    CHECK_THROWS_AS(k->run({d_image}, out), ValueError);
    // The gradient directions through their kernels, the shape input a host constant.
    const Tensor top = random_tensor(dtype, expected.shape(), 1203).cast(DType::float64);
    const Variable t = device_input("t", dtype, expected.shape());
    const Variable shape = make_constant(Tensor::from_vector<std::int64_t>({9, 8}, {2}));
    const Variable gi = apply(gpu_op(ConvDirection::grad_inputs, p2), {ws, t, shape});
    kernel_for(*gi.owner())->run({d_kernel, top.cast(dtype).to(kGpu), shape.constant_value()}, out);
    require_close(out[0], reference_conv_grad_inputs(p2, kernel, top, {9, 8}), dtype, 24);
    const Variable kshape = make_constant(Tensor::from_vector<std::int64_t>({3, 2}, {2}));
    const Variable gw = apply(gpu_op(ConvDirection::grad_weights, p2), {xs, t, kshape});
    kernel_for(*gw.owner())->run({d_image, top.cast(dtype).to(kGpu), kshape.constant_value()}, out);
    require_close(out[0], reference_conv_grad_weights(p2, image, top, {3, 2}), dtype,
                  static_cast<double>(top.numel()));
  }

  // Gradients are the abstract op's, which later passes lower again.
  const std::vector<Variable> g = fwd->grad({x, w}, {y}, {y});
  REQUIRE(g.size() == 2);
  CHECK(g[0].owner()->op->name() == "AbstractConv2d_gradInputs");
  CHECK(g[1].owner()->op->name() == "AbstractConv2d_gradWeights");
}

namespace {

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* node : f.graph().toposort()) names.push_back(node->op->name());
  return names;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

TEST_CASE("device=cuda with conv.impl=gpu_corrmm lowers every direction to GpuCorrMM", "[cuda]") {
  testing::require_gpu_or_skip();
  for (DType dtype : {DType::float32, DType::float64}) {
    INFO(dtype_name(dtype));
    const ConvParams p2 =
        make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {2, 1}, false, {1, 2}, 2);
    const ConvParams p3 = make_conv_params(3, "half", {1, 2, 1}, true, {2, 1, 1}, 1);
    const ConvParams pu = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
    const Variable x = tensor("x", dtype, {3, 4, 9, 8});
    const Variable w = tensor("w", dtype, {6, 2, 3, 2});
    const Variable v = tensor("v", dtype, {2, 2, 5, 6, 4});
    const Variable k = tensor("k", dtype, {3, 2, 2, 3, 3});
    const Variable u = tensor("u", dtype, {2, 7, 7, 4, 3, 2});
    const Variable y = abstract_conv(p2, x, w);
    const Variable z = abstract_conv(p3, v, k);
    const Variable s = abstract_conv(pu, x, u);
    const Variable cost = sum(y * y) + sum(z * z) + sum(s * s);
    const std::vector<Variable> grads = grad(cost, {x, w, v, k, u});
    std::vector<Variable> outputs = {y, z, s};
    outputs.insert(outputs.end(), grads.begin(), grads.end());

    CompileOptions on_gpu;
    on_gpu.flags = "device=cuda," + select_conv_impl_flags("gpu_corrmm");
    const Function f = compile({x, w, v, k, u}, outputs, on_gpu);
    const std::vector<std::string> names = op_names(f);
    for (const char* name : {"GpuCorrMM", "GpuCorrMM_gradInputs", "GpuCorrMM_gradWeights",
                             "GpuCorr3dMM", "GpuCorr3dMM_gradInputs", "GpuCorr3dMM_gradWeights"}) {
      INFO(name);
      CHECK(has(names, name));
    }
    for (const std::string& name : names) CHECK(name.rfind("Abstract", 0) == std::string::npos);

    CompileOptions on_host;
    on_host.flags = select_conv_impl_flags("corrmm");
    const Function reference = compile({x, w, v, k, u}, outputs, on_host);
    const std::vector<Tensor> args = {
        random_tensor(dtype, {3, 4, 9, 8}, 1400), random_tensor(dtype, {6, 2, 3, 2}, 1401),
        random_tensor(dtype, {2, 2, 5, 6, 4}, 1402), random_tensor(dtype, {3, 2, 2, 3, 3}, 1403),
        random_tensor(dtype, {2, 7, 7, 4, 3, 2}, 1404)};
    const std::vector<Tensor> got = f(args);
    const std::vector<Tensor> want = reference(args);
    REQUIRE(got.size() == want.size());
    const double tol = dtype == DType::float64 ? 1e-9 : 1e-4;
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("output " << i);
      REQUIRE(got[i].device().is_cpu());
      const std::string report = allclose_report(got[i], want[i], tol, tol);
      INFO(report);
      CHECK(report.empty());
    }
  }
}

TEST_CASE("device=cuda float16 convolutions run as GpuCorrMM", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const Variable x = tensor("x", DType::float16, {2, 3, 8, 8});
  const Variable w = tensor("w", DType::float16, {5, 3, 3, 3});
  const Variable y = abstract_conv(p, x, w);
  CompileOptions on_gpu;
  on_gpu.flags = "device=cuda," + select_conv_impl_flags("gpu_corrmm");
  const Function f = compile({x, w}, {y}, on_gpu);
  CHECK(has(op_names(f), "GpuCorrMM"));
  const Tensor xv = random_tensor(DType::float16, {2, 3, 8, 8}, 1500);
  const Tensor wv = random_tensor(DType::float16, {5, 3, 3, 3}, 1501);
  const Tensor got = f({xv, wv})[0];
  const Tensor want = reference_conv_forward(p, xv.cast(DType::float64), wv.cast(DType::float64));
  const std::string report = allclose_report(got.cast(DType::float64), want, 2e-2, 2e-2 * 5);
  INFO(report);
  CHECK(report.empty());
}

TEST_CASE("GpuCorrMM takes the direct grouped kernels exactly for few channels per group") {
  // Host-only: the path predicate, no device needed.
  const ConvParams depthwise = make_conv_params(2, "half", {2, 1}, false, {1, 2}, 8);
  CHECK(gpu_corrmm_direct_grouped_applicable(depthwise, {2, 8, 9, 9}, {8, 1, 3, 3}));
  // channel multiplier 2
  CHECK(gpu_corrmm_direct_grouped_applicable(depthwise, {2, 8, 9, 9}, {16, 1, 3, 3}));
  CHECK(gpu_corrmm_direct_grouped_applicable(make_conv_params(3, 1, {}, true, {}, 3),
                                             {1, 3, 4, 4, 4}, {3, 1, 3, 3, 3}));
  CHECK(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid", {}, true, {}, 1),
                                             {1, 1, 4, 4}, {1, 1, 3, 3}));  // one channel
  // 2, 4 and 8 channels per group, 1 to 4 filters per group.
  CHECK(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid", {}, true, {}, 2),
                                             {1, 4, 5, 5}, {4, 2, 3, 3}));
  CHECK(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, 1, {}, true, {}, 32),
                                             {1, 128, 8, 8}, {128, 4, 3, 3}));  // ResNeXt g32
  CHECK(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, 1, {}, true, {}, 2), {1, 16, 8, 8},
                                             {2, 8, 3, 3}));
  // 9 and 16 channels per group; one group of 4 channels; unshared; shapes the convolution
  // rejects.
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid", {}, true, {}, 2),
                                                   {1, 18, 5, 5}, {4, 9, 3, 3}));
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid", {}, true, {}, 2),
                                                   {1, 32, 5, 5}, {4, 16, 3, 3}));
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid"), {1, 4, 5, 5},
                                                   {4, 4, 3, 3}));
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(
      make_conv_params(2, "valid", {}, true, {}, 4, /*unshared=*/true), {1, 4, 5, 5},
      {4, 3, 3, 1, 3, 3}));
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(make_conv_params(2, "valid", {}, true, {}, 2),
                                                   {1, 4, 2, 2}, {4, 2, 3, 3}));
  gpu::GpuCorrMMTuning tuning = gpu::gpu_corrmm_tuning();
  const gpu::GpuCorrMMTuning previous = tuning;
  tuning.direct_grouped = false;
  gpu::set_gpu_corrmm_tuning(tuning);
  CHECK_FALSE(gpu_corrmm_direct_grouped_applicable(depthwise, {2, 8, 9, 9}, {8, 1, 3, 3}));
  gpu::set_gpu_corrmm_tuning(previous);
  CHECK(gpu_corrmm_direct_grouped_applicable(depthwise, {2, 8, 9, 9}, {8, 1, 3, 3}));
}

TEST_CASE("GpuCorrMM vectorised im2col / col2im: odd widths, misaligned blocks, edges", "[cuda]") {
  testing::require_gpu_or_skip();
  // im2col stores up to 16 bytes of consecutive positions per tap where the chunk's rows (nb * P)
  // keep the alignment, col2im up to 16 bytes of an image row; both fall back to scalar stores at
  // the ends of misaligned blocks. P = 5 x 10 = 50 and 5 x 9 = 45: chunks of 2, 4 or 8 images
  // keep rows aligned while per-image blocks start misaligned (and one image per chunk is odd).
  // Image rows of 35, 37 and 40 elements (col2im vectors of 8 float16), an output of width 1,
  // strides on the row, dilations, no flip, a 1x1 stride-2 layer, 3-D, unshared kernels, and
  // problems with a long reduction (K = 288) that keep the batch-folded GEMM and its staging
  // transpose.
  const ConvParams same = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  const ConvParams valid = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const ConvParams odd =
      make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 1}}), {1, 2}, false, {1, 2}, 1);
  const ConvParams full = make_conv_params(2, "full", {2, 3}, true, {1, 1}, 1);
  const ConvParams down = make_conv_params(2, "valid", {2, 2}, true, {1, 1}, 1);
  const ConvParams c3d = make_conv_params(3, 1, {1, 1, 1}, true, {1, 1, 1}, 1);
  const ConvParams unshared = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  const ConvParams grouped = make_conv_params(2, "half", {1, 1}, false, {1, 1}, 2);
  const std::vector<std::int64_t> bounds = {gpu::GpuCorrMMTuning{}.workspace_bytes, 1, 10 << 10};
  for (std::int64_t bound : bounds) {
    INFO("workspace bound " << bound);
    const ScopedTuning tuning(bound);
    for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
      check_problem(same, {4, 3, 5, 10}, {4, 3, 3, 3}, dtype, 1700);
      check_problem(same, {8, 2, 5, 9}, {3, 2, 3, 3}, dtype, 1701);
      check_problem(valid, {3, 2, 4, 37}, {3, 2, 2, 37}, dtype, 1702);  // output width 1
      check_problem(odd, {3, 3, 4, 37}, {2, 3, 2, 3}, dtype, 1703);
      check_problem(full, {2, 2, 5, 40}, {3, 2, 3, 3}, dtype, 1704);
      check_problem(down, {3, 8, 12, 34}, {16, 8, 1, 1}, dtype, 1705);
      check_problem(c3d, {3, 2, 3, 4, 37}, {3, 2, 2, 3, 3}, dtype, 1706);
      check_problem(unshared, {3, 2, 3, 35}, {3, 2, 33, 2, 2, 3}, dtype, 1707);
      check_problem(same, {3, 32, 7, 6}, {4, 32, 3, 3}, dtype, 1708);
      check_problem(grouped, {3, 64, 7, 6}, {4, 32, 3, 3}, dtype, 1709);
    }
  }
}

namespace {

gpu::GpuElement element_for(DType dtype) {
  if (dtype == DType::float16) return gpu::GpuElement::f16;
  return dtype == DType::float64 ? gpu::GpuElement::f64 : gpu::GpuElement::f32;
}

// launch_permute3 of a random (D0, D1, D2) tensor into DST strides (S0, S1, S2) against the same
// copy on the host, exactly; the elements of DST it does not write keep their value. The source
// and destination start SRC_SHIFT and DST_SHIFT elements into their buffers, so that rows of
// 16-byte words start misaligned.
void check_permute(DType dtype, std::int64_t d0, std::int64_t d1, std::int64_t d2, std::int64_t s0,
                   std::int64_t s1, std::int64_t s2, std::int64_t src_shift,
                   std::int64_t dst_shift) {
  INFO(dtype_name(dtype) << " (" << d0 << ", " << d1 << ", " << d2 << ") -> strides (" << s0 << ", "
                         << s1 << ", " << s2 << "), shifts " << src_shift << ", " << dst_shift);
  const std::int64_t n = d0 * d1 * d2;
  const std::int64_t extent = (d0 - 1) * s0 + (d1 - 1) * s1 + (d2 - 1) * s2 + 1;
  const Tensor src = random_tensor(dtype, {src_shift + n}, static_cast<std::uint64_t>(n + s1));
  Tensor dst_host = Tensor::empty(dtype, {dst_shift + extent});
  dst_host.fill(-7.0);
  const Tensor d_src = src.to(kGpu);
  const Tensor d_dst = dst_host.to(kGpu);
  const std::int64_t size = static_cast<std::int64_t>(dtype_size(dtype));
  const cudaError_t status = gpu::launch_permute3(
      element_for(dtype), static_cast<const char*>(d_src.raw_data()) + src_shift * size, d0, d1, d2,
      static_cast<char*>(d_dst.raw_data()) + dst_shift * size, s0, s1, s2, cuda::current_stream(0));
  REQUIRE(status == cudaSuccess);
  cuda::synchronize_current(0);
  const std::vector<double> from = src.cast(DType::float64).to_vector<double>();
  std::vector<double> want(static_cast<std::size_t>(dst_shift + extent), -7.0);
  for (std::int64_t i0 = 0; i0 < d0; ++i0) {
    for (std::int64_t i1 = 0; i1 < d1; ++i1) {
      for (std::int64_t i2 = 0; i2 < d2; ++i2) {
        want[static_cast<std::size_t>(dst_shift + i0 * s0 + i1 * s1 + i2 * s2)] =
            from[static_cast<std::size_t>(src_shift + (i0 * d1 + i1) * d2 + i2)];
      }
    }
  }
  REQUIRE(d_dst.to(Device::cpu()).cast(DType::float64).to_vector<double>() == want);
}

}  // namespace

TEST_CASE("launch_permute3 copies rows, transposes tiles and permutes any strides", "[cuda]") {
  testing::require_gpu_or_skip();
  struct Sizes {
    std::int64_t nb, m, p;
  };
  // Rows of 1, 13 (odd), 8 and 64 elements (16-byte words in every dtype, or not), tiles of the
  // transposes cut at 32 (37, 33, 70, 40).
  const std::vector<Sizes> sizes = {{3, 5, 8},  {2, 4, 13},  {4, 3, 1},
                                    {2, 3, 64}, {3, 33, 37}, {2, 40, 70}};
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    for (const Sizes& z : sizes) {
      for (std::int64_t shift : {0, 1, 3}) {
        const std::int64_t src_shift = shift == 1 ? 1 : 0;
        const std::int64_t dst_shift = shift == 3 ? 3 : 0;
        // The row copies of shared kernels: (nb, M, P) <-> (M, nb, P).
        check_permute(dtype, z.nb, z.m, z.p, z.p, z.nb * z.p, 1, src_shift, dst_shift);
        check_permute(dtype, z.m, z.nb, z.p, z.p, z.m * z.p, 1, src_shift, dst_shift);
        // The transposes of unshared kernels: (P, nb, M) -> (nb, M, P), (nb, M, P) -> (P, nb, M).
        check_permute(dtype, z.p, z.nb, z.m, 1, z.m * z.p, z.p, src_shift, dst_shift);
        check_permute(dtype, z.nb, z.m, z.p, z.m, 1, z.nb * z.m, src_shift, dst_shift);
        // No unit destination stride: element by element (into a (P, M, nb) layout of doubled
        // strides, every other element untouched).
        check_permute(dtype, z.nb, z.m, z.p, 2, 2 * z.nb, 2 * z.nb * z.m, src_shift, dst_shift);
      }
    }
  }
}

#endif  // CONVGRAPH_HAVE_CUDA
