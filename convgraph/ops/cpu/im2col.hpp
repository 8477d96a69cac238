// The geometry of a CorrMM problem, the im2col / col2im transforms between an image and its
// "column" (Toeplitz) matrix, and the GEMM drivers built on them (Caffe's scheme). 2-D problems
// are 3-D ones with a depth of 1, so a single code path serves both without changing any index.
//
// Column matrix layout: row (c * kd + a) * kh * kw + i * kw + j for channel c and stored kernel tap
// (a, i, j); column (z * oh + y) * ow + x for output position (z, y, x). Row r reads the image at
// (z * s + tap * d - pad) on each axis, where tap is the stored tap mirrored when filter_flip is
// set: the weights can then be used as stored, and flipping costs nothing.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "convgraph/ops/conv/conv_epilogue.hpp"

namespace convgraph {

using CorrAxes = std::array<std::int64_t, 3>;

struct CorrGeometry {
  std::int64_t batch = 0;
  std::int64_t channels = 0;            // C
  std::int64_t filters = 0;             // M
  std::int64_t groups = 1;              // G
  std::int64_t channels_per_group = 0;  // Cg
  std::int64_t filters_per_group = 0;   // Mg
  CorrAxes image{1, 1, 1}, kernel{1, 1, 1}, output{1, 1, 1};
  CorrAxes stride{1, 1, 1}, dilation{1, 1, 1}, pad_before{0, 0, 0}, pad_after{0, 0, 0};
  bool flip = true;
  bool unshared = false;

  // Per axis and stored tap t: the image offset of output 0 (tap' * d - pad, tap' the tap read)
  // and the output range [lo, hi) whose reads fall inside the image. Filled by set_tap_tables.
  std::array<std::vector<std::int64_t>, 3> tap_offset, valid_lo, valid_hi;

  std::int64_t taps() const { return kernel[0] * kernel[1] * kernel[2]; }
  std::int64_t image_size() const { return image[0] * image[1] * image[2]; }
  // Output positions per image (the N of the GEMMs); also the number of unshared regions.
  std::int64_t positions() const { return output[0] * output[1] * output[2]; }
  // Output "lines" (one (z, y) pair each, ow positions long): the unit column blocks are cut in.
  std::int64_t lines() const { return output[0] * output[1]; }
  std::int64_t regions() const { return unshared ? positions() : 1; }
  // Rows of one group's column matrix (the K of the GEMMs), and of the whole matrix.
  std::int64_t group_rows() const { return channels_per_group * taps(); }
  std::int64_t rows() const { return channels * taps(); }
  // Multiply-adds of any of the three directions.
  std::int64_t work() const { return batch * filters * positions() * group_rows(); }
  // A 1x1 kernel read at stride 1 without padding: the image itself is the column matrix.
  bool pointwise() const;
};

// Fills GEO's tap tables from its sizes, strides, dilations, pads and flip.
void set_tap_tables(CorrGeometry& geo);

// Writes rows [ROW_BEGIN, ROW_END) and output lines [LINE_BEGIN, LINE_END) of IMAGE's column
// matrix (IMAGE: one batch item, all channels, contiguous). Row r goes to COL + r * LD, line
// LINE_BEGIN to its first column.
template <typename T>
void im2col(const CorrGeometry& geo, const T* image, std::int64_t row_begin, std::int64_t row_end,
            std::int64_t line_begin, std::int64_t line_end, T* col, std::int64_t ld);

// The adjoint of im2col: adds every entry of the column block (laid out as im2col writes it) of
// channels [CHANNEL_BEGIN, CHANNEL_END) and lines [LINE_BEGIN, LINE_END) to the image element it
// was read from; entries read from the padding are dropped. Distinct channels touch distinct
// image planes, so channel ranges may run in parallel.
template <typename T>
void col2im(const CorrGeometry& geo, const T* col, std::int64_t ld, std::int64_t channel_begin,
            std::int64_t channel_end, std::int64_t line_begin, std::int64_t line_end, T* image);

extern template void im2col<float>(const CorrGeometry&, const float*, std::int64_t, std::int64_t,
                                   std::int64_t, std::int64_t, float*, std::int64_t);
extern template void im2col<double>(const CorrGeometry&, const double*, std::int64_t, std::int64_t,
                                    std::int64_t, std::int64_t, double*, std::int64_t);
extern template void col2im<float>(const CorrGeometry&, const float*, std::int64_t, std::int64_t,
                                   std::int64_t, std::int64_t, std::int64_t, float*);
extern template void col2im<double>(const CorrGeometry&, const double*, std::int64_t, std::int64_t,
                                    std::int64_t, std::int64_t, std::int64_t, double*);

// ---- the three CorrMM directions on contiguous data (corrmm_kernels.cpp) ----

// The thresholds that decide how the drivers cut the work (see corrmm_kernels.cpp). Process-wide;
// tests change them to reach every path with small shapes, benchmarks to compare settings. Not
// meant to change while convolutions run.
struct CorrGemmTuning {
  // Below this many multiply-adds a call runs on one thread.
  std::int64_t parallel_work = std::int64_t{1} << 18;
  // Images with fewer output positions than this share GEMMs, up to this many columns.
  std::int64_t target_columns = 256;
  // Column-matrix bytes per block when each thread runs its own blocks / when threads share one.
  std::int64_t block_bytes_per_thread = std::int64_t{4} << 20;
  std::int64_t block_bytes_shared = std::int64_t{8} << 20;
  // Bound on the column matrix of a multi-image block.
  std::int64_t max_block_bytes = std::int64_t{64} << 20;
  // Convolutions with at most this many channels and filters per group run as direct loops
  // (depthwise_kernels.hpp) instead of GEMMs: depthwise ones (one channel per group) whatever
  // direct_max_channels says, grouped ones only with several groups. 0 filters: GEMMs always.
  std::int64_t direct_max_channels = 8;
  std::int64_t direct_max_filters = 8;
};
CorrGemmTuning corr_gemm_tuning();
void set_corr_gemm_tuning(const CorrGemmTuning& tuning);

// Each needs GEO complete (tap tables set) and non-empty: batch, channels and filters > 0 and
// every output size >= 1. They run on the configured number of threads ("threads" flag) and
// leave the BLAS thread count as they found it.

// A forward's epilogue (ops/conv/conv_epilogue.hpp): BIAS (M values) and RESIDUAL (laid out as
// the output, contiguous) as its steps need them.
template <typename T>
struct CorrEpilogue {
  ConvEpilogue steps;
  const T* bias = nullptr;
  const T* residual = nullptr;
};

// OUT (B, M, o...) = the correlation of IMAGE (B, C, i...) with KERNEL (M, Cg, k...) or, when
// unshared, (M, o..., Cg, k...), followed by EPILOGUE. The GEMM path applies the epilogue to each
// block of output columns right after its GEMM, while the block is in cache; the direct loops,
// and weights with non-finite values (whose products with the padding are recomputed after the
// GEMMs), take one pass over the result at the end.
template <typename T>
void corr_gemm_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out,
                       const CorrEpilogue<T>& epilogue = {});
// OUT (B, C, i...) = the gradient of the forward with respect to the image.
template <typename T>
void corr_gemm_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out);
// OUT (the kernel's shape) = the gradient of the forward with respect to the kernel. Its column
// matrices and the other threads' partial sums come through the step's Workspace
// (runtime/step_memory.hpp): the bytes below, announced by the kernel, are the memory plan's.
template <typename T>
void corr_gemm_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out);
// The workspace bytes corr_gemm_grad_weights takes for GEO with the threads of the calling
// thread's configuration (runtime/cpu_threads.hpp).
template <typename T>
std::int64_t corr_gemm_grad_weights_workspace_bytes(const CorrGeometry& geo);
// The same for corr_gemm_grad_inputs (its column matrices and staging).
template <typename T>
std::int64_t corr_gemm_grad_inputs_workspace_bytes(const CorrGeometry& geo);

extern template void corr_gemm_forward<float>(const CorrGeometry&, const float*, const float*,
                                              float*, const CorrEpilogue<float>&);
extern template void corr_gemm_forward<double>(const CorrGeometry&, const double*, const double*,
                                               double*, const CorrEpilogue<double>&);
extern template void corr_gemm_grad_inputs<float>(const CorrGeometry&, const float*, const float*,
                                                  float*);
extern template void corr_gemm_grad_inputs<double>(const CorrGeometry&, const double*,
                                                   const double*, double*);
extern template void corr_gemm_grad_weights<float>(const CorrGeometry&, const float*, const float*,
                                                   float*);
extern template void corr_gemm_grad_weights<double>(const CorrGeometry&, const double*,
                                                    const double*, double*);
extern template std::int64_t corr_gemm_grad_weights_workspace_bytes<float>(const CorrGeometry&);
extern template std::int64_t corr_gemm_grad_weights_workspace_bytes<double>(const CorrGeometry&);
extern template std::int64_t corr_gemm_grad_inputs_workspace_bytes<float>(const CorrGeometry&);
extern template std::int64_t corr_gemm_grad_inputs_workspace_bytes<double>(const CorrGeometry&);

}  // namespace convgraph
