// GpuCorrMM's planning: chunks of images, every size the kernels and cuBLAS take checked to fit,
// and ranges of positions where one image's column matrix is above the workspace bound.
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <mutex>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/gpu/gpu_corrmm_detail.hpp"
#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph {

namespace gpu {
namespace {
std::mutex tuning_mutex;
GpuCorrMMTuning tuning_value;
}  // namespace

GpuCorrMMTuning gpu_corrmm_tuning() {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  return tuning_value;
}

void set_gpu_corrmm_tuning(const GpuCorrMMTuning& tuning) {
  if (tuning.workspace_bytes < 0) {
    throw ValueError(
        fmt::format("set_gpu_corrmm_tuning: workspace_bytes={}; expected a size in bytes (>= 0)",
                    tuning.workspace_bytes));
  }
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  tuning_value = tuning;
}
}  // namespace gpu

namespace gpu_corrmm_detail {

gpu::GpuElement element_of(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return gpu::GpuElement::f16;
    case DType::float64:
      return gpu::GpuElement::f64;
    default:
      return gpu::GpuElement::f32;
  }
}

// Whether the product of VALUES (each >= 0) is at most 2^31 - 1, computed without overflowing.
bool product_fits_int32(std::initializer_list<std::int64_t> values) {
  for (std::int64_t v : values) {
    if (v == 0) return true;
  }
  std::int64_t product = 1;
  for (std::int64_t v : values) {
    if (v > INT_MAX / product) return false;
    product *= v;
  }
  return true;
}

// Every count a kernel indexes with 32-bit ints and every size cuBLAS takes as an int, for
// chunks of NB images: the column matrix (nb * P * C * taps, which bounds nb * P and the rows),
// the staging buffer (nb * P * M), the chunk's images, and the row stride of unshared weights.
bool chunk_fits(const Problem& pr, std::int64_t nb) {
  const Axes& o = pr.output;
  const Axes& k = pr.kernel;
  const Axes& i = pr.image;
  return product_fits_int32({nb, o[0], o[1], o[2], pr.channels, k[0], k[1], k[2]}) &&
         product_fits_int32({nb, o[0], o[1], o[2], pr.filters}) &&
         product_fits_int32({nb, pr.channels, i[0], i[1], i[2]}) &&
         product_fits_int32({o[0], o[1], o[2], pr.channels_per_group, k[0], k[1], k[2]});
}

// Chunks of images whose column matrix and staging buffer stay under the workspace bound and the
// column target of the tuning (-1 resolved as half of L2_BYTES, the device's L2 cache), or ranges
// of positions of one image where even one image's are above them.
Plan plan_chunks(const std::string& fn, const Problem& pr, std::size_t element_size,
                 std::int64_t l2_bytes) {
  for (const Axes* axes : {&pr.image, &pr.kernel, &pr.output, &pr.stride, &pr.dilation,
                           &pr.pad_before, &pr.pad_after}) {
    for (std::int64_t v : *axes) {
      if (v > INT_MAX / 4) {
        throw UnsupportedError(fmt::format(
            "{}: a spatial size, stride, dilation or pad of {} is beyond what the CUDA kernels "
            "index (2^29)",
            fn, v));
      }
    }
  }
  if (!chunk_fits(pr, 1)) {
    throw UnsupportedError(fmt::format(
        "{}: one image's column matrix ({} channels x {} taps rows, output {} columns) is beyond "
        "what the CUDA kernels and cuBLAS index (2^31 - 1 elements); split the convolution",
        fn, pr.channels, pr.taps(), shape_str(Shape(pr.output.begin(), pr.output.end()))));
  }
  // Both terms are below 2^31 now.
  const std::int64_t per_image =
      (pr.rows() + pr.filters) * pr.positions() * static_cast<std::int64_t>(element_size);
  // One read of the tuning, so that a concurrent set_gpu_corrmm_tuning cannot mix two settings.
  const gpu::GpuCorrMMTuning tuning = gpu::gpu_corrmm_tuning();
  const std::int64_t target =
      tuning.column_target_bytes < 0 ? l2_bytes / 2 : tuning.column_target_bytes;
  std::int64_t budget = tuning.workspace_bytes;
  if (target > 0) budget = std::min(budget, target);
  Plan plan;
  plan.range = pr.positions();
  plan.images =
      std::clamp<std::int64_t>(budget / std::max<std::int64_t>(per_image, 1), 1, pr.batch);
  while (plan.images > 1 && !chunk_fits(pr, plan.images)) plan.images = (plan.images + 1) / 2;
  // Equal chunks: 65 images as 64 + 1 would run a nearly empty second chunk.
  plan.chunks = ceil_div(pr.batch, plan.images);
  plan.images = ceil_div(pr.batch, plan.chunks);
  // A batch-folded GEMM's rows are nb * P long: keep them a multiple of 8 elements (16 bytes of
  // float16) where P is not, for cuBLAS's aligned kernels.
  if (pr.positions() % 8 != 0 && plan.images > 8) {
    plan.images = plan.images / 8 * 8;
    plan.chunks = ceil_div(pr.batch, plan.images);
  }
  if (plan.images == 1 && per_image > budget) {
    const std::int64_t per_position =
        (pr.rows() + pr.filters) * static_cast<std::int64_t>(element_size);
    const std::int64_t longest = std::max(
        kMinRange, budget / std::max<std::int64_t>(per_position, 1) / kRangeAlign * kRangeAlign);
    const std::int64_t ranges = ceil_div(pr.positions(), longest);
    plan.range = std::min(pr.positions(), round_up(ceil_div(pr.positions(), ranges), kRangeAlign));
  }
  return plan;
}

gpu::GpuCorrGeometry kernel_geometry(const Problem& pr) {
  gpu::GpuCorrGeometry g;
  g.channels = static_cast<int>(pr.channels);
  for (std::size_t a = 0; a < 3; ++a) {
    g.image[a] = static_cast<int>(pr.image[a]);
    g.kernel[a] = static_cast<int>(pr.kernel[a]);
    g.output[a] = static_cast<int>(pr.output[a]);
    g.stride[a] = static_cast<int>(pr.stride[a]);
    g.dilation[a] = static_cast<int>(pr.dilation[a]);
    g.pad_before[a] = static_cast<int>(pr.pad_before[a]);
  }
  g.flip = pr.flip;
  return g;
}

}  // namespace gpu_corrmm_detail
}  // namespace convgraph
