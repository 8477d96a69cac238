// Direct CUDA kernels for grouped convolutions with few channels per group (depthwise ones
// included: one channel per group, any channel multiplier), behind the same plain C++ interface
// as gpu_im2col.hpp: raw device pointers, a geometry struct, a stream, CUDA's status back. No
// GEMMs, no column matrix, no atomics: every result element is written once by one thread, so
// results are deterministic. GpuCorrMM picks them inside execute() (gpu_corrmm_direct.cpp; see
// GpuCorrMMTuning::direct_grouped).
//
// Layouts (contiguous): image (B, C, d, h, w) with C = G * Cg; kernel (G * Mg, Cg, kd, kh, kw);
// output / topgrad (B, G * Mg, od, oh, ow). Filter f = g * Mg + j reads image channels g * Cg ..
// g * Cg + Cg - 1. Stored tap t = (a * kh + i) * kw + j reads the image at o * s - pad + tap' * d
// on each axis, tap' the stored tap mirrored when GEO.flip is set (convolution), as im2col does.
// GEO.channels is C; 2-D problems have depth 1.
//
// Design (all three directions stage tiles in shared memory, converted to the accumulator type:
// float for float16 and float32 data, double for float64):
// - forward: a block per (image, chunk of up to 4 filters of one group, output depth, tile of
//   output rows x columns). For each of the group's Cg channels and each depth tap whose input
//   plane exists, the block stages the input rows and columns its tile reads (halo included,
//   zeros in the padding) and the chunk's weights of that plane, then each thread adds the plane
//   into 2 rows x 4 columns of outputs (columns interleaved, so a warp reads consecutive shared
//   memory words) for each filter of the chunk: one shared load feeds up to 4 filters.
// - gradInputs: the same with the roles swapped: a block per (image, chunk of up to 4 channels
//   of one group, image depth, tile of image rows x columns) stages, for each of the group's Mg
//   filters and each depth tap that reaches the tile's depth, the topgrad rows and columns that
//   read the tile (zeros outside the output), and each thread gathers 2 x 4 image elements per
//   channel. Stride 1 is a correlation with the mirrored kernel (no tests per tap); other strides
//   test per tap whether the element lies on the output grid.
// - gradWeights: a block per (filter, slice of the (image, output depth, tile) work items, chunk
//   of at most 32 (channel, tap) pairs of the filter). Per work item it stages the topgrad tile
//   and the input tiles of the chunk's (channel, depth tap) planes; each thread keeps one
//   register accumulator per pair of the chunk over the slice, then a fixed-order warp-shuffle and
//   shared-memory reduction writes the slice's partial sums; launch_sum_slices adds the slices.
// Staging (stage_plane, all three directions): each thread issues a batch of global loads (8, 4
// or 2 per thread, by the registers its accumulators leave) before storing any to shared memory,
// so the loads of a plane are in flight together rather than one after another (the kernels were
// bound by load latency, not bandwidth); float16 rows of even width at 4-byte alignment load
// __half2 pairs (converted to float on the way into shared memory), anything else element by
// element. The launch bounds let 4 forward / gradInputs blocks of 256 threads share an SM where a
// thread keeps one float per result (3 up to 16 bytes, else 2), and 4 / 3 / 2 gradWeights blocks
// for up to 9 / 18 / 32 float accumulators, so other blocks compute while one waits on its loads.
// gradWeights work items cover about 4096 output positions (fewer stage / sync rounds), and
// grouped_grad_weights_slices picks the slice count from the kernel's resident blocks per SM
// (cudaOccupancyMaxActiveBlocksPerMultiprocessor) so that the blocks fill whole waves with
// slices of equal length.
// Tile sizes follow the output shape and a shared-memory budget; launch_* return
// cudaErrorInvalidValue for a problem that direct_grouped_supported rejects.
#pragma once

#include <cuda_runtime_api.h>

#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph::gpu {

// The grouping of a problem: BATCH images, GROUPS groups of CHANNELS_PER_GROUP image channels
// (GEO.channels = groups * channels_per_group) and FILTERS_PER_GROUP filters.
struct GroupedShape {
  int batch = 0;
  int groups = 1;
  int channels_per_group = 1;
  int filters_per_group = 1;
};

// Whether the direct kernels take the problem: the shared-memory tiles of every direction fit
// (checked for 8-byte accumulators, so the answer does not depend on the element type) and every
// coordinate the kernels form fits in int32.
bool direct_grouped_supported(const GpuCorrGeometry& geo, const GroupedShape& shape);

// OUTPUT <- the grouped convolution of the images with the kernel.
cudaError_t launch_grouped_forward(GpuElement type, const GpuCorrGeometry& geo,
                                   const GroupedShape& shape, const void* image, const void* kernel,
                                   void* output, cudaStream_t stream);

// IMAGE_GRAD <- the gradient with respect to the image (a gather: no atomics).
cudaError_t launch_grouped_grad_inputs(GpuElement type, const GpuCorrGeometry& geo,
                                       const GroupedShape& shape, const void* kernel,
                                       const void* topgrad, void* image_grad, cudaStream_t stream);

// How many slices launch_grouped_grad_weights cuts the work items into on a device of SM_COUNT
// multiprocessors (>= 1), for data of TYPE. Asks the runtime how many blocks of the kernel an SM
// holds (on the current device); the same problem on the same device always gets the same count.
int grouped_grad_weights_slices(GpuElement type, const GpuCorrGeometry& geo,
                                const GroupedShape& shape, int sm_count);

// PARTIALS[s * W + w] <- the weight gradient of weight w (W = G * Mg * Cg * taps, in the kernel's
// layout) summed over slice s of SLICES equal slices of the (image, output depth, output tile)
// work items. PARTIALS holds float for float16 and float32 data, double for float64;
// launch_sum_slices (or nothing, for one slice) finishes the sum.
cudaError_t launch_grouped_grad_weights(GpuElement type, const GpuCorrGeometry& geo,
                                        const GroupedShape& shape, const void* image,
                                        const void* topgrad, int slices, void* partials,
                                        cudaStream_t stream);

}  // namespace convgraph::gpu
