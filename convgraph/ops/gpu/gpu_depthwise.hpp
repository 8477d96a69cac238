// Direct CUDA kernels for depthwise convolutions (groups == image channels, one channel per
// group, M filters per channel: the channel multiplier), behind the same plain C++ interface as
// gpu_im2col.hpp: raw device pointers, a geometry struct, a stream, CUDA's status back. No GEMMs,
// no column matrix, no atomics: every result element is written once by one thread or one block,
// so results are deterministic. gpu_corrmm.cpp picks them inside execute() (see
// GpuCorrMMTuning::direct_depthwise).
//
// Layouts (contiguous): image (B, C, d, h, w); kernel (C * M, 1, kd, kh, kw); output / topgrad
// (B, C * M, od, oh, ow). Filter f = c * M + j reads image channel c. Stored tap t = (a * kh + i) *
// kw + j reads the image at o * s - pad + tap' * d on each axis, tap' the stored tap mirrored when
// GEO.flip is set (convolution), as im2col does. GEO.channels is C; 2-D problems have depth 1.
#pragma once

#include <cuda_runtime_api.h>

#include "convgraph/ops/gpu/gpu_im2col.hpp"

namespace convgraph::gpu {

// OUTPUT <- the depthwise convolution of BATCH images with the kernel. One thread per output
// element (consecutive threads along W); float16 sums in float.
cudaError_t launch_depthwise_forward(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                     int multiplier, const void* image, const void* kernel,
                                     void* output, cudaStream_t stream);

// IMAGE_GRAD <- the gradient with respect to the image: one thread per image element gathers the
// (filter, tap, output position) triples that read it (no atomics).
cudaError_t launch_depthwise_grad_inputs(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                         int multiplier, const void* kernel, const void* topgrad,
                                         void* image_grad, cudaStream_t stream);

// PARTIALS[s * (F * taps) + f * taps + t] <- the weight gradient of filter f, tap t, summed over
// slice s of SLICES equal slices of the (image, output position) pairs: one block per (slice,
// filter, tap), a tree reduction in shared memory. PARTIALS holds float for float16 and float32
// data, double for float64; launch_sum_slices (or nothing, for one slice) finishes the sum.
cudaError_t launch_depthwise_grad_weights(GpuElement type, const GpuCorrGeometry& geo, int batch,
                                          int multiplier, const void* image, const void* topgrad,
                                          int slices, void* partials, cudaStream_t stream);

}  // namespace convgraph::gpu
