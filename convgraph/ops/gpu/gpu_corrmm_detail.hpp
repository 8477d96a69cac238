// The GpuCorrMM family's internals, shared by its files: gpu_corrmm.cpp (the op, its checks and
// kernel), gpu_corrmm_plan.cpp (chunks of images and ranges of positions), gpu_corrmm_runner.cpp
// (the directions as im2col / col2im and cuBLAS GEMMs) and gpu_corrmm_direct.cpp (the direct
// grouped kernels).
//
// How it works: im2col / col2im (gpu_im2col.cu) and cuBLAS GEMMs, batch folded into the
// GEMMs.
//
// A call cuts the batch into chunks of consecutive images, as many as the workspace bound allows
// (gpu_corrmm_tuning), and runs each chunk as one column matrix and one GEMM call:
//
// - Shared kernels: the chunk's column matrix has nb * P columns, image-major (row r, column
//   b * P + p), so each group's GEMM has N = nb * P however small one image's output is (a 7x7
//   layer at batch 64 is one GEMM with N = 3136, not 64 GEMMs with N = 49), and the groups run as
//   one strided-batched GEMM. Topgrad and output are (b, m, p) in memory but the GEMMs want
//   (m, b, p): a transpose through a staging buffer bridges them (skipped when nb == 1). It costs
//   M * P per image, against the column matrix's C * taps * P.
//     forward:      Y_g (Mg x N)  = W_g (Mg x K) . col_g (K x N)
//     grad_inputs:  col_g (K x N) = W_g^T . T_g (Mg x N), then col2im (a gather, no atomics)
//     grad_weights: dW_g (Mg x K) += T_g . col_g^T: one GEMM (per slice) sums the whole chunk,
//                   and chunks add up with beta = 1.
// - Unshared kernels (2-D only) have one weight matrix per output position: the column matrix and
//   the staging buffer are position-major ((p, b, r) and (p, b, m)) so that each position's
//   matrices are plain strided ones, and each group is one GEMM batched over the P positions.
//
// - Where one image's column matrix is above the workspace bound (or the optional column target
//   of GpuCorrMMTuning, which can size chunks for the L2 cache), forward and grad_weights cut
//   the image into ranges of output positions (multiples of 64, at least 1024), each its own
//   im2col and GEMM; the output (forward) and the topgrad (grad_weights) are read and written in
//   place with rows of P. grad_inputs needs every position for its col2im and stays whole-image.
// - grad_weights' reductions are cut into slices that start at multiples of 64 columns (aligned
//   operands for cuBLAS); every chunk's slices add into the same partial sums, added once.
// - Long outputs (P of a few GEMM tiles), or outputs whose last partial GEMM tile costs less than
//   the transpose (short reductions: a 1x1 stride-2 layer): forward and grad_inputs run one GEMM
//   per image (strided-batched) on the batch-major topgrad / output instead, skipping the
//   transposes (Runner::per_image).
// - Pointwise (1x1, stride 1, no padding): the image is its own column matrix; forward and
//   grad_inputs are per-image GEMMs straight between the tensors, grad_weights per-image GEMMs
//   into partials summed by a kernel (or one GEMM for one image).
//
// - Grouped with few channels per group (shared kernels, groups > 1, at most 8 channels per
//   group, any number of filters per group; depthwise included): no GEMMs at all; the direct
//   kernels of gpu_direct_grouped.cu run each direction on the whole batch (run_direct_grouped),
//   unless GpuCorrMMTuning::direct_grouped is off or their shared-memory tiles do not fit.
//
// float16 data multiply in float (cublas*Ex with a 32-bit compute type); the weight gradient of
// float16 data accumulates across chunks in a float32 buffer and is rounded once. float32 data
// multiply in strict FP32, or on TF32 tensor cores when the op's allow_tf32 is set.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/gpu/gpu_im2col.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::gpu_corrmm_detail {

using Axes = std::array<std::int64_t, 3>;

// The problem in 3-D (2-D problems have a depth of 1).
struct Problem {
  std::int64_t batch = 0, channels = 0, filters = 0, groups = 1;
  std::int64_t channels_per_group = 0, filters_per_group = 0;
  Axes image{1, 1, 1}, kernel{1, 1, 1}, output{1, 1, 1};
  Axes stride{1, 1, 1}, dilation{1, 1, 1}, pad_before{0, 0, 0}, pad_after{0, 0, 0};
  bool flip = true;
  bool unshared = false;

  std::int64_t taps() const { return kernel[0] * kernel[1] * kernel[2]; }
  std::int64_t image_size() const { return image[0] * image[1] * image[2]; }
  std::int64_t positions() const { return output[0] * output[1] * output[2]; }
  std::int64_t group_rows() const { return channels_per_group * taps(); }  // K
  std::int64_t rows() const { return channels * taps(); }                  // R
};

struct Prepared {
  Problem problem;
  Shape result;
};

// ---- planning (gpu_corrmm_plan.cpp) ----

gpu::GpuElement element_of(DType dtype);

struct Plan {
  std::int64_t images = 1;  // per chunk (nb)
  std::int64_t chunks = 0;
  // Output positions per column matrix where one image's is above the column target (then
  // images == 1): forward and grad_weights run each image as ranges of this many positions (a
  // multiple of kRangeAlign, at least kMinRange); P otherwise.
  std::int64_t range = 0;
};

// Ranges of positions, and the slices of a weight-gradient reduction, start at multiples of this
// many elements, so that the GEMM operands they begin stay 16-byte aligned (cuBLAS falls back to
// much slower kernels for misaligned operands).
constexpr std::int64_t kRangeAlign = 64;
// Ranges shorter than this would make the GEMMs too narrow to run efficiently.
constexpr std::int64_t kMinRange = 1024;

inline std::int64_t round_up(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b * b;
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// Chunks of images whose column matrix and staging buffer stay under the workspace bound and the
// column target of the tuning (-1 resolved as half of L2_BYTES, the device's L2 cache), or ranges
// of positions of one image where even one image's are above them.
Plan plan_chunks(const std::string& fn, const Problem& pr, std::size_t element_size,
                 std::int64_t l2_bytes);
gpu::GpuCorrGeometry kernel_geometry(const Problem& pr);

// ---- what a call shares (gpu_corrmm_runner.cpp) ----

// Everything a call shares: the op, the device, its stream and cuBLAS handle, the element type.
struct Context {
  std::string fn;
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  DType dtype = DType::float32;
  std::size_t element_size = 4;
  gpu::GpuElement element = gpu::GpuElement::f32;
  int sm_count = 1;
  // dnn.conv.allow_tf32: float32 GEMMs on TF32 tensor cores.
  bool allow_tf32 = false;
};

void check_kernel(const Context& ctx, cudaError_t status, const char* kernel);
// Device memory of the workspace, from the caching allocator; MemoryError names the op.
Tensor workspace(const Context& ctx, DType dtype, std::int64_t elements, const char* what);

// Runs a prepared problem on the current stream of the inputs' device. Empty problems (no batch,
// channels or filters) give zeros, like the reference.
Tensor execute(const std::string& fn, ConvDirection direction, const Prepared& prep,
               const Tensor& a, const Tensor& b, bool allow_tf32);

// ---- the direct grouped kernels (gpu_corrmm_direct.cpp) ----

// Whether PR runs on the direct kernels rather than im2col + GEMMs.
bool use_direct_grouped(const Problem& pr);
// Runs DIRECTION of the problem PR (use_direct_grouped) on the contiguous inputs A, B into OUT.
void run_direct_grouped(const Context& ctx, ConvDirection direction, const Problem& pr,
                        const void* a, const void* b, Tensor& out);

}  // namespace convgraph::gpu_corrmm_detail
