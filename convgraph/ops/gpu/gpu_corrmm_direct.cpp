// GpuCorrMM's path through the direct grouped kernels (gpu_direct_grouped.cu): which problems take
// it, and the launches of each direction.
#include <atomic>
#include <climits>

#include "convgraph/ops/gpu/gpu_corrmm.hpp"
#include "convgraph/ops/gpu/gpu_corrmm_detail.hpp"
#include "convgraph/ops/gpu/gpu_direct_grouped.hpp"
#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph {

namespace gpu_corrmm_detail {

std::atomic<std::int64_t> direct_grouped_calls{0};

namespace {

// ---- the direct grouped kernels (gpu_direct_grouped.cu): no column matrix, no GEMMs ----

// The direct kernels take grouped problems with at most this many channels per group.
constexpr std::int64_t kMaxDirectChannelsPerGroup = 8;

// Shared kernels, more than one group (or a single image channel: depthwise with one channel) and
// at most kMaxDirectChannelsPerGroup channels per group; any number of filters per group (the
// channel multiplier, for depthwise problems). Kernel size, strides, dilations, pads and flip are
// free; 2-D problems are 3-D ones of depth 1.
bool is_direct_grouped(std::int64_t groups, std::int64_t channels, std::int64_t filters,
                       bool unshared) {
  return !unshared && groups >= 1 && channels > 0 && filters > 0 && channels % groups == 0 &&
         filters % groups == 0 && channels / groups <= kMaxDirectChannelsPerGroup &&
         (groups > 1 || channels == 1);
}

gpu::GroupedShape grouped_shape(const Problem& pr) {
  gpu::GroupedShape shape;
  shape.batch = static_cast<int>(pr.batch);
  shape.groups = static_cast<int>(pr.groups);
  shape.channels_per_group = static_cast<int>(pr.channels_per_group);
  shape.filters_per_group = static_cast<int>(pr.filters_per_group);
  return shape;
}

}  // namespace

// Whether PR runs on the direct kernels: the tuning switch, the shape rule above, every size
// within int32 (as plan_chunks requires of the spatial sizes), and tiles that fit the kernels'
// shared-memory plans (gpu::direct_grouped_supported); otherwise im2col + GEMMs.
bool use_direct_grouped(const Problem& pr) {
  if (!gpu::gpu_corrmm_tuning().direct_grouped ||
      !is_direct_grouped(pr.groups, pr.channels, pr.filters, pr.unshared)) {
    return false;
  }
  if (pr.batch > INT_MAX || pr.filters > INT_MAX || pr.channels > INT_MAX) return false;
  for (const Axes* axes : {&pr.image, &pr.kernel, &pr.output, &pr.stride, &pr.dilation,
                           &pr.pad_before, &pr.pad_after}) {
    for (std::int64_t v : *axes) {
      if (v > INT_MAX / 4) return false;
    }
  }
  return gpu::direct_grouped_supported(kernel_geometry(pr), grouped_shape(pr));
}

// Runs DIRECTION of the problem PR (use_direct_grouped) on the contiguous inputs A, B into OUT.
void run_direct_grouped(const Context& ctx, ConvDirection direction, const Problem& pr,
                        const void* a, const void* b, Tensor& out) {
  const gpu::GpuCorrGeometry geo = kernel_geometry(pr);
  const gpu::GroupedShape shape = grouped_shape(pr);
  switch (direction) {
    case ConvDirection::forward:
      check_kernel(
          ctx,
          gpu::launch_grouped_forward(ctx.element, geo, shape, a, b, out.raw_data(), ctx.stream),
          "the direct grouped forward kernel");
      break;
    case ConvDirection::grad_inputs:
      check_kernel(ctx,
                   gpu::launch_grouped_grad_inputs(ctx.element, geo, shape, a, b, out.raw_data(),
                                                   ctx.stream),
                   "the direct grouped gradInputs kernel");
      break;
    case ConvDirection::grad_weights: {
      // Partial sums over slices of the work items (enough slices to give every SM a few
      // blocks), added by launch_sum_slices in a fixed order.
      const std::int64_t n = pr.filters * pr.channels_per_group * pr.taps();
      const std::int64_t slices =
          gpu::grouped_grad_weights_slices(ctx.element, geo, shape, ctx.sm_count);
      const bool f16 = ctx.dtype == DType::float16;
      // Partial sums (and their total, for float16) in float32, or float64 for float64 data.
      const DType acc_dtype = ctx.dtype == DType::float64 ? DType::float64 : DType::float32;
      const gpu::GpuElement acc_element =
          acc_dtype == DType::float64 ? gpu::GpuElement::f64 : gpu::GpuElement::f32;
      Tensor sums;  // the float32 total of a float16 gradient
      if (f16) sums = workspace(ctx, DType::float32, n, "float32 accumulator");
      void* total = f16 ? sums.raw_data() : out.raw_data();
      Tensor partials;
      if (slices > 1) partials = workspace(ctx, acc_dtype, slices * n, "partial weight gradients");
      check_kernel(
          ctx,
          gpu::launch_grouped_grad_weights(ctx.element, geo, shape, a, b, static_cast<int>(slices),
                                           slices > 1 ? partials.raw_data() : total, ctx.stream),
          "the direct grouped gradWeights kernel");
      if (slices > 1) {
        check_kernel(ctx,
                     gpu::launch_sum_slices(acc_element, partials.raw_data(),
                                            static_cast<int>(slices), n, total, false, ctx.stream),
                     "the sum of partial weight gradients");
      }
      if (f16) {
        check_kernel(ctx,
                     gpu::launch_float_to_half(static_cast<const float*>(sums.raw_data()),
                                               out.raw_data(), n, ctx.stream),
                     "the float16 rounding");
      }
      break;
    }
  }
  direct_grouped_calls.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace gpu_corrmm_detail

std::int64_t gpu_corrmm_direct_grouped_calls() {
  return gpu_corrmm_detail::direct_grouped_calls.load(std::memory_order_relaxed);
}

}  // namespace convgraph
