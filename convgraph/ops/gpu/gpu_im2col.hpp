// The CUDA kernels of the GpuCorrMM family (im2col, col2im, the transposes between the batch-major
// tensors and the GEMMs' layouts) behind a plain C++ interface: raw device pointers, sizes, a
// geometry struct and a stream. Nothing here formats errors or allocates: the launchers return
// CUDA's status and GpuCorrMM (gpu_corrmm_runner.cpp) turns it into an exception.
//
// Column matrix: row r = c * taps + t for image channel c and stored kernel tap t = (a * kh + i) *
// kw + j; column = (image b of the chunk, output position p). Where entry (r, b, p) lives is up to
// the caller (ColumnLayout), so the same kernels serve the batch-folded layout of shared kernels
// (rows of nb * P columns) and the position-major layout of unshared ones. Entry (r, b, p) holds
// the image at z * s + tap' * d - pad on each axis (tap' = the stored tap mirrored when the filter
// is flipped), or 0 in the padding.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace convgraph::gpu {

// How GpuCorrMM (gpu_corrmm_plan.cpp) cuts a call into chunks of images, and which path it takes.
// Process-wide; tests shrink the bound to reach the multi-chunk paths with small shapes. Not meant
// to change while convolutions run.
struct GpuCorrMMTuning {
  // Bound on a chunk's workspace (column matrix + staging buffer; for a pointwise weight
  // gradient, its per-image partial sums). A chunk holds at least one image, so a single image's
  // column matrix may exceed it.
  std::int64_t workspace_bytes = std::int64_t{512} << 20;
  // Target size of a chunk's column matrix (and staging buffer), on top of workspace_bytes: -1
  // for half the device's L2 cache (im2col then writes the chunk into L2 and the GEMM reads it
  // back from there), 0 (the default) for none, or a size in bytes. Forward and weight-gradient
  // calls whose single image is above the bound (workspace_bytes or the target) cut it into
  // ranges of output positions. Off by default: on an H100 in float16, L2-sized chunks were
  // slower on every dense layer of the benchmark suite than whole-batch chunks (res4 3x3 forward
  // 0.135 ms against 0.084, vgg16 conv1_2 4.7 ms against 3.6): the GEMMs lose more to their
  // smaller N and the extra launches than the column matrix's round trip through memory costs.
  std::int64_t column_target_bytes = 0;
  // Grouped problems with at most 8 channels per group (depthwise ones included; shared kernels)
  // run on the direct kernels of gpu_direct_grouped.hpp instead of tiny GEMMs per group. Tests
  // switch it off to compare against (or force) the im2col + GEMM path.
  bool direct_grouped = true;
};
GpuCorrMMTuning gpu_corrmm_tuning();
// Throws ValueError for a negative bound.
void set_gpu_corrmm_tuning(const GpuCorrMMTuning& tuning);

// Element types of the kernels: float16 (accumulated in float), float32, float64.
enum class GpuElement : unsigned char { f16, f32, f64 };

// 2-D problems are 3-D ones with a depth of 1. Sizes of one image; all counts fit in int32 (the
// planner in gpu_corrmm_plan.cpp makes sure of it before launching anything).
struct GpuCorrGeometry {
  int channels = 0;  // C: every channel of the image (all groups)
  int image[3] = {1, 1, 1};
  int kernel[3] = {1, 1, 1};
  int output[3] = {1, 1, 1};
  int stride[3] = {1, 1, 1};
  int dilation[3] = {1, 1, 1};
  int pad_before[3] = {0, 0, 0};
  bool flip = true;
};

// Entry (r, b, p) of a column matrix is at r * row + b * image + p * position (elements). Its
// columns may hold a range of the output positions: COUNT positions from FIRST (entry (r, b, p)
// then holds position FIRST + p); COUNT -1 means every position from FIRST on. Only im2col takes
// a range; col2im needs every position.
struct ColumnLayout {
  long long row = 0;
  long long image = 0;
  long long position = 0;
  long long first = 0;
  long long count = -1;
};

// COL <- the column matrix of IMAGES consecutive images starting at IMAGE (contiguous
// (images, C, d, h, w)), over the positions of LAYOUT's range.
cudaError_t launch_im2col(GpuElement type, const GpuCorrGeometry& geo, int images,
                          const void* image, void* col, ColumnLayout layout, cudaStream_t stream);

// IMAGE <- the adjoint of im2col: each image element is the sum of the column entries that were
// read from it (one thread per image element gathers them: no atomics, deterministic). LAYOUT
// must cover every position (cudaErrorInvalidValue otherwise).
cudaError_t launch_col2im(GpuElement type, const GpuCorrGeometry& geo, int images, const void* col,
                          ColumnLayout layout, void* image, cudaStream_t stream);

// DST[i0 * s0 + i1 * s1 + i2 * s2] <- SRC[(i0 * d1 + i1) * d2 + i2] for the contiguous (D0, D1, D2)
// tensor SRC: the transposes between (batch, filters, positions) tensors and GEMM layouts. Fast
// where S2 == 1 (a row copy in words of up to 16 bytes) or S0 or S1 == 1 (a tiled transpose);
// any other strides copy element by element.
cudaError_t launch_permute3(GpuElement type, const void* src, long long d0, long long d1,
                            long long d2, void* dst, long long s0, long long s1, long long s2,
                            cudaStream_t stream);

// SUMS[i] (+)= sum over s < SLICES of PARTIALS[s * N + i], for i < N (TYPE f32 or f64): the
// partial weight gradients of a GEMM whose reduction was cut into slices. ACCUMULATE: add to SUMS
// instead of overwriting it.
cudaError_t launch_sum_slices(GpuElement type, const void* partials, int slices, long long n,
                              void* sums, bool accumulate, cudaStream_t stream);

// DST (float16) <- SRC (float32), N elements: the float32 accumulator of a float16 weight
// gradient, rounded once at the end.
cudaError_t launch_float_to_half(const float* src, void* dst, long long n, cudaStream_t stream);

}  // namespace convgraph::gpu
