// GpuCorrMM's directions as im2col / col2im and cuBLAS GEMMs (gpu_corrmm_detail.hpp describes
// the scheme): the GEMM wrapper, the Runner of each direction, and execute(), which sets up a call
// and hands it to the direct grouped kernels or to the Runner.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/gpu/gpu_corrmm_detail.hpp"
#include "convgraph/ops/gpu/gpu_im2col.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"

namespace convgraph::gpu_corrmm_detail {

namespace {

// ---- the GEMMs: row-major operands, handed to column-major cuBLAS as the transposed product ----

struct Operand {
  const void* data;
  std::int64_t ld;      // row stride as stored
  std::int64_t stride;  // between batch entries
  bool transposed = false;
};

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return CUDA_R_16F;
    case DType::float64:
      return CUDA_R_64F;
    default:
      return CUDA_R_32F;
  }
}

// C (m x n, row-major, ld C_LD; BATCH of them, C_STRIDE apart) = op(A) (m x k) . op(B) (k x n)
// + BETA * C. C_DTYPE: the dtype of C (float32 for the float16 weight-gradient accumulator).
void gemm(const Context& ctx, std::int64_t m, std::int64_t n, std::int64_t k, const Operand& a,
          const Operand& b, double beta, void* c, std::int64_t c_ld, std::int64_t c_stride,
          std::int64_t batch, DType c_dtype) {
  // Row-major C = A . B is column-major C^T = B^T . A^T: B goes first.
  const cublasOperation_t op_b = b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t data_type = cuda_type(ctx.dtype);
  const cudaDataType_t c_type = cuda_type(c_dtype);
  const bool f64 = ctx.dtype == DType::float64;
  // float32 data: strict FP32 (CUBLAS_COMPUTE_32F under the default math mode, which execute()
  // sets, never rounds the operands to TF32) unless dnn.conv.allow_tf32 is on. float16 data: FP16
  // tensor cores accumulating in FP32.
  const cublasComputeType_t compute =
      f64 ? CUBLAS_COMPUTE_64F
          : (ctx.dtype == DType::float32 && ctx.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                           : CUBLAS_COMPUTE_32F);
  const double alpha64 = 1.0, beta64 = beta;
  const float alpha32 = 1.0f, beta32 = static_cast<float>(beta);
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta_ptr = f64 ? static_cast<const void*>(&beta64) : &beta32;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  cublasStatus_t status;
  if (batch == 1) {
    status = cublasGemmEx(ctx.blas, op_b, op_a, i(n), i(m), i(k), alpha, b.data, data_type, i(b.ld),
                          a.data, data_type, i(a.ld), beta_ptr, c, c_type, i(c_ld), compute,
                          CUBLAS_GEMM_DEFAULT);
  } else {
    status = cublasGemmStridedBatchedEx(ctx.blas, op_b, op_a, i(n), i(m), i(k), alpha, b.data,
                                        data_type, i(b.ld), b.stride, a.data, data_type, i(a.ld),
                                        a.stride, beta_ptr, c, c_type, i(c_ld), c_stride, i(batch),
                                        compute, CUBLAS_GEMM_DEFAULT);
  }
  if (status != CUBLAS_STATUS_SUCCESS) {
    cuda::check_cublas(
        status, fmt::format("{}: a cuBLAS GEMM of {} x {} x {} ({} batched, {}{})", ctx.fn, m, n, k,
                            batch, dtype_name(ctx.dtype), ctx.allow_tf32 ? ", tf32" : ""));
  }
}

}  // namespace

void check_kernel(const Context& ctx, cudaError_t status, const char* kernel) {
  if (status != cudaSuccess) {
    cuda::check(status, fmt::format("{}: launching {} on cuda{}", ctx.fn, kernel, ctx.device));
  }
}

// Device memory of the workspace, from the caching allocator; MemoryError names the op.
Tensor workspace(const Context& ctx, DType dtype, std::int64_t elements, const char* what) {
  try {
    return Tensor::empty(dtype, {std::max<std::int64_t>(elements, 1)}, Device::cuda(ctx.device));
  } catch (ConvGraphError& e) {
    e.prepend(fmt::format("{}: allocating the {} ({} x {} bytes) on cuda{}: ", ctx.fn, what,
                          elements, dtype_size(dtype), ctx.device));
    throw;
  }
}

namespace {

const void* advance(const void* base, std::int64_t elements, std::size_t element_size) {
  return static_cast<const char*>(base) + elements * static_cast<std::int64_t>(element_size);
}
void* advance(void* base, std::int64_t elements, std::size_t element_size) {
  return static_cast<char*>(base) + elements * static_cast<std::int64_t>(element_size);
}

// ---- the directions, on contiguous device tensors, one chunk of images at a time ----

// Whether the convolution is a plain pointwise one (every kernel axis 1, stride 1, no padding,
// shared kernels): its column matrix is the image itself, so no im2col / col2im is needed.
bool is_pointwise(const Problem& pr) {
  if (pr.unshared) return false;
  for (std::size_t a = 0; a < 3; ++a) {
    if (pr.kernel[a] != 1 || pr.stride[a] != 1 || pr.pad_before[a] != 0 || pr.pad_after[a] != 0 ||
        pr.output[a] != pr.image[a]) {
      return false;
    }
  }
  return true;
}

// At most this many entries in one strided-batched GEMM call (older cuBLAS versions put the batch
// on a grid axis of 65535).
constexpr std::int64_t kMaxGemmBatch = 65535;

// Blocks of rows x P elements, one per (image b, group g), at b * image + g * group, rows LD
// apart: the batch-major image / output / topgrad tensors (ld = P) and the batch-folded column
// matrix (ld = nb * P).
struct Blocks {
  std::int64_t ld = 0;
  std::int64_t image = 0;
  std::int64_t group = 0;
};

class Runner {
 public:
  Runner(const Context& ctx, const Problem& pr, const Plan& plan)
      : ctx_(ctx), pr_(pr), geo_(kernel_geometry(pr)) {
    p_ = pr.positions();
    r_ = pr.rows();
    k_ = pr.group_rows();
    m_ = pr.filters;
    mg_ = pr.filters_per_group;
    g_ = pr.groups;
    nb_max_ = plan.images;
    range_ = plan.range;
    pointwise_ = is_pointwise(pr);
  }

  void forward(const void* image, const void* kernel, void* out) {
    if (pointwise_ && (pr_.batch == 1 || p_ >= kPointwiseMinPositions)) {
      // 1x1: per image, Y_g (Mg x P) = W_g (Mg x Cg) . X_g (Cg x P), straight from the image to
      // the output: no column matrix, no transposes.
      for_each_range(pr_.batch, kMaxGemmBatch, [&](std::int64_t b0, std::int64_t nb) {
        forward_per_image(kernel, advance(image, b0 * pr_.channels * p_, ctx_.element_size),
                          {p_, pr_.channels * p_, k_ * p_},
                          advance(out, b0 * m_ * p_, ctx_.element_size), nb);
      });
      return;
    }
    if (!pr_.unshared && range_ < p_) {
      forward_ranges(image, kernel, out);
      return;
    }
    ensure_columns(p_);
    for_each_chunk([&](std::int64_t b0, std::int64_t nb) {
      const gpu::ColumnLayout layout = columns(nb);
      im2col(advance(image, b0 * pr_.channels * pr_.image_size(), ctx_.element_size), nb, layout);
      void* out_chunk = advance(out, b0 * m_ * p_, ctx_.element_size);
      if (!pr_.unshared) {
        const std::int64_t n = nb * p_;
        if (per_image(nb)) {
          // One GEMM per image (batched), written in place: no staging, no transpose.
          forward_per_image(kernel, col_.raw_data(), {n, p_, k_ * n}, out_chunk, nb);
          return;
        }
        ensure_staging();
        gemm(ctx_, mg_, n, k_, {kernel, k_, mg_ * k_}, {col_.raw_data(), n, k_ * n}, 0.0,
             staging_.raw_data(), n, mg_ * n, g_, ctx_.dtype);
        // (M, nb, P) -> (nb, M, P)
        permute(staging_.raw_data(), m_, nb, p_, out_chunk, p_, m_ * p_, 1);
        return;
      }
      ensure_staging();
      for (std::int64_t g = 0; g < g_; ++g) {
        // Position p: Y_p (nb x Mg) = col_p (nb x K) . W_p^T (K x Mg).
        gemm(ctx_, nb, mg_, k_, {elements(col_, g * k_), r_, nb * r_},
             {advance(kernel, g * mg_ * p_ * k_, ctx_.element_size), p_ * k_, k_, true}, 0.0,
             elements(staging_, g * mg_), m_, nb * m_, p_, ctx_.dtype);
      }
      // (P, nb, M) -> (nb, M, P)
      permute(staging_.raw_data(), p_, nb, m_, out_chunk, 1, m_ * p_, p_);
    });
  }

  void grad_inputs(const void* kernel, const void* topgrad, void* dimage) {
    if (pointwise_ && (pr_.batch == 1 || p_ >= kPointwiseMinPositions)) {
      // 1x1: per image, dX_g (Cg x P) = W_g^T . T_g (Mg x P), straight into the image gradient:
      // no column matrix, no col2im, no transposes.
      for_each_range(pr_.batch, kMaxGemmBatch, [&](std::int64_t b0, std::int64_t nb) {
        grad_inputs_per_image(kernel, advance(topgrad, b0 * m_ * p_, ctx_.element_size),
                              advance(dimage, b0 * pr_.channels * p_, ctx_.element_size),
                              {p_, pr_.channels * p_, k_ * p_}, nb);
      });
      return;
    }
    ensure_columns(p_);
    for_each_chunk([&](std::int64_t b0, std::int64_t nb) {
      const gpu::ColumnLayout layout = columns(nb);
      if (!pr_.unshared) {
        const std::int64_t n = nb * p_;
        if (per_image(nb)) {
          // The topgrad read in place, one GEMM per image (batched): no staging transpose.
          grad_inputs_per_image(kernel, advance(topgrad, b0 * m_ * p_, ctx_.element_size),
                                col_.raw_data(), {n, p_, k_ * n}, nb);
        } else {
          const void* top = stage_topgrad(topgrad, b0, nb);
          gemm(ctx_, k_, n, mg_, {kernel, k_, mg_ * k_, true}, {top, n, mg_ * n}, 0.0,
               col_.raw_data(), n, k_ * n, g_, ctx_.dtype);
        }
      } else {
        const void* top = stage_topgrad(topgrad, b0, nb);
        for (std::int64_t g = 0; g < g_; ++g) {
          // Position p: col_p (nb x K) = T_p (nb x Mg) . W_p (Mg x K).
          gemm(ctx_, nb, k_, mg_, {advance(top, g * mg_, ctx_.element_size), m_, nb * m_},
               {advance(kernel, g * mg_ * p_ * k_, ctx_.element_size), p_ * k_, k_}, 0.0,
               elements(col_, g * k_), r_, nb * r_, p_, ctx_.dtype);
        }
      }
      check_kernel(ctx_,
                   gpu::launch_col2im(
                       ctx_.element, geo_, static_cast<int>(nb), col_.raw_data(), layout,
                       advance(dimage, b0 * pr_.channels * pr_.image_size(), ctx_.element_size),
                       ctx_.stream),
                   "col2im");
    });
  }

  // SUMS: where the GEMMs accumulate, of dtype SUMS_DTYPE (the result itself, or float32 for
  // float16 data).
  void grad_weights(const void* image, const void* topgrad, void* sums, DType sums_dtype) {
    if (pointwise_weights(sums_dtype)) {
      pointwise_grad_weights(image, topgrad, sums, sums_dtype);
      return;
    }
    if (!pr_.unshared) {
      shared_grad_weights(image, topgrad, sums, sums_dtype);
      return;
    }
    ensure_columns(p_);
    bool first = true;
    const std::size_t sums_size = dtype_size(sums_dtype);
    for_each_chunk([&](std::int64_t b0, std::int64_t nb) {
      const gpu::ColumnLayout layout = columns(nb);
      im2col(advance(image, b0 * pr_.channels * pr_.image_size(), ctx_.element_size), nb, layout);
      const void* top = stage_topgrad(topgrad, b0, nb);
      const double beta = first ? 0.0 : 1.0;
      first = false;
      for (std::int64_t g = 0; g < g_; ++g) {
        // Position p: dW_p (Mg x K) += T_p^T (Mg x nb) . col_p (nb x K).
        gemm(ctx_, mg_, k_, nb, {advance(top, g * mg_, ctx_.element_size), m_, nb * m_, true},
             {elements(col_, g * k_), r_, nb * r_}, beta,
             advance(sums, g * mg_ * p_ * k_, sums_size), p_ * k_, k_, p_, sums_dtype);
      }
    });
  }

 private:
  // Pointwise forward / gradInputs go straight from tensor to tensor when each image's GEMM has
  // at least this many columns (or there is one image): below it the batch-folded GEMM's wider N
  // pays for im2col and the transposes.
  static constexpr std::int64_t kPointwiseMinPositions = 32;

  // Whether the shared-kernel forward / gradInputs of a chunk of NB images run one GEMM per image
  // (batched, written in place) rather than one batch-folded GEMM plus a transpose through the
  // staging buffer. One image needs no transpose either way. Otherwise per-image GEMMs have N = P
  // and lose a part of their last tile of columns: worth it where the GEMM is cheap next to the
  // transpose (tensor-core math: float16, TF32) and P is some tiles long, or where P is long
  // enough for the loss to be small.
  //
  // Or where the lost columns cost less than the transpose: per image, the transpose moves
  // 2 * M * P elements (staging read and output written, on top of the GEMM's own write), the
  // per-image GEMMs compute 2 * M * K * (P' - P) more flops (P' = P rounded up to a 128-column
  // tile). Per-image wins when K * (P' - P) / P < element size * flop rate / bandwidth: about
  // 2 * 600 TFLOP/s / 3 TB/s = 400 for float16 on an H100 (a conservative 300 here; TF32 is
  // similar), 80 for strict float32 and float64. A 1x1 stride-2 layer of 512 channels onto
  // 14 x 14 (P = 196, K = 512: 157) runs per image in float16, a 7 x 7 3x3 layer of 512
  // channels (P = 49, K = 4608) stays batch-folded.
  bool per_image(std::int64_t nb) const {
    if (nb == 1) return true;
    const bool tensor_cores =
        ctx_.dtype == DType::float16 || (ctx_.dtype == DType::float32 && ctx_.allow_tf32);
    if (p_ >= (tensor_cores ? 256 : 1024)) return true;
    const std::int64_t lost = ceil_div(p_, 128) * 128 - p_;
    return k_ * lost <= (tensor_cores ? 300 : 80) * p_;
  }

  // Whether a pointwise weight gradient reads the image and topgrad in place, with per-image
  // partial sums (M x Cg each, in SUMS_DTYPE) added by a kernel: worth it when these partials
  // are smaller than the im2col and staging copies they replace ((C + M) x P per image), and P
  // long enough for an efficient GEMM reduction. One image needs no partials.
  bool pointwise_weights(DType sums_dtype) const {
    if (!pointwise_) return false;
    if (pr_.batch == 1) return true;
    const auto sums_size = static_cast<std::int64_t>(dtype_size(sums_dtype));
    const auto size = static_cast<std::int64_t>(ctx_.element_size);
    return p_ >= 64 && m_ * k_ * sums_size <= (pr_.channels + m_) * p_ * size;
  }

  // Pointwise dW_g (Mg x Cg) = sum over images b of T[b, g] (Mg x P) . X[b, g]^T (P x Cg), in
  // chunks of images whose partials fit the workspace bound. A chunk of one image is one GEMM
  // (reduction sliced as usual); a chunk of NB images is one GEMM batched over (b, g) (T[b, g],
  // X[b, g] and the partial (b, g) are each evenly spaced in b * G + g) into NB partials summed
  // by a kernel.
  void pointwise_grad_weights(const void* image, const void* topgrad, void* sums,
                              DType sums_dtype) {
    const std::int64_t sums_size = static_cast<std::int64_t>(dtype_size(sums_dtype));
    const std::int64_t per_image = std::max<std::int64_t>(m_ * k_ * sums_size, 1);
    const std::int64_t budget = gpu::gpu_corrmm_tuning().workspace_bytes;
    const std::int64_t limit =
        std::clamp<std::int64_t>(std::min(budget / per_image, kMaxGemmBatch / g_), 1, pr_.batch);
    bool first = true;
    for_each_range(pr_.batch, limit, [&](std::int64_t b0, std::int64_t nb) {
      const void* x = advance(image, b0 * pr_.channels * p_, ctx_.element_size);
      const void* t = advance(topgrad, b0 * m_ * p_, ctx_.element_size);
      const bool accumulate = !first;
      first = false;
      if (nb == 1) {
        shared_weight_gemms({t, p_, mg_ * p_}, x, p_, accumulate, sums, sums_dtype);
        return;
      }
      ensure_partials(sums_dtype, nb * m_ * k_);
      gemm(ctx_, mg_, k_, p_, {t, p_, mg_ * p_}, {x, p_, k_ * p_, true}, 0.0, partials_.raw_data(),
           k_, mg_ * k_, nb * g_, sums_dtype);
      check_kernel(
          ctx_,
          gpu::launch_sum_slices(element_of(sums_dtype), partials_.raw_data(), static_cast<int>(nb),
                                 m_ * k_, sums, accumulate, ctx_.stream),
          "the sum of per-image weight gradients");
    });
  }

  // T_g (Mg x N) of a weight-gradient GEMM: at DATA + g * GROUP, rows LD apart.
  struct TopOperand {
    const void* data;
    std::int64_t ld;
    std::int64_t group;
  };

  // How a weight-gradient reduction of N columns is cut: SLOTS partial sums (1: the GEMMs add
  // straight into the result), each over a slice of LENGTH columns (a multiple of kRangeAlign,
  // so that every slice's operands stay aligned; the last slice shorter).
  struct Slicing {
    std::int64_t length = 0;
    std::int64_t slots = 1;
  };

  // dW has few output tiles (64 x 576 for a 3x3 layer of 64 channels: a handful of 128 x 128
  // tiles) and a long reduction (nb * P, 200 000 columns for a 224 x 224 chunk of 4 images): as
  // one GEMM, most SMs would idle. Slices give the GEMMs some 4 tiles per SM, each slice long
  // enough (>= 1024) to keep its own tiles efficient; a kernel then sums the slices.
  Slicing slicing_for(std::int64_t n) const {
    constexpr std::int64_t kTile = 128, kMinSlice = 1024, kMaxSlices = 64;
    const std::int64_t tiles = g_ * ceil_div(mg_, kTile) * ceil_div(k_, kTile);
    const std::int64_t wanted = ceil_div(4 * std::max(ctx_.sm_count, 1), tiles);
    const std::int64_t slices =
        std::clamp<std::int64_t>(std::min(wanted, n / kMinSlice), 1, kMaxSlices);
    if (slices == 1) return {n, 1};
    const std::int64_t length = round_up(ceil_div(n, slices), kRangeAlign);
    return {length, ceil_div(n, length)};
  }

  // Adds one chunk (a reduction of N <= the slicing's columns: T (TOP) against the column matrix
  // COL, rows N long) to the weight gradient: into SUMS where the slicing has one slot, else into
  // the slots of partials_ (slice s of the chunk into slot s). ACCUMULATE: add to what the slots
  // (or SUMS) hold; otherwise overwrite them (the first chunk, which has every slot).
  void weight_gemms(const TopOperand& top, const void* col, std::int64_t n, const Slicing& sl,
                    bool accumulate, void* sums, DType sums_dtype) {
    const double beta = accumulate ? 1.0 : 0.0;
    if (sl.slots == 1) {
      gemm(ctx_, mg_, k_, n, {top.data, top.ld, top.group}, {col, n, k_ * n, true}, beta, sums, k_,
           mg_ * k_, g_, sums_dtype);
      return;
    }
    ensure_partials(sums_dtype, sl.slots * m_ * k_);
    const std::int64_t length = sl.length;
    const std::int64_t used = ceil_div(n, length);
    const std::int64_t full = n / length;
    const std::int64_t rest = n - full * length;
    const std::size_t sums_size = dtype_size(sums_dtype);
    const std::size_t size = ctx_.element_size;
    void* partials = partials_.raw_data();
    if (g_ < used) {
      // A loop over the groups, each one GEMM batched over the full slices (and one for the rest).
      for (std::int64_t g = 0; g < g_; ++g) {
        const void* top_g = advance(top.data, g * top.group, size);
        const void* col_g = advance(col, g * k_ * n, size);
        void* out_g = advance(partials, g * mg_ * k_, sums_size);
        if (full > 0) {
          gemm(ctx_, mg_, k_, length, {top_g, top.ld, length}, {col_g, n, length, true}, beta,
               out_g, k_, m_ * k_, full, sums_dtype);
        }
        if (rest > 0) {
          gemm(ctx_, mg_, k_, rest, {advance(top_g, full * length, size), top.ld, 0},
               {advance(col_g, full * length, size), n, 0, true}, beta,
               advance(out_g, full * m_ * k_, sums_size), k_, 0, 1, sums_dtype);
        }
      }
      return;
    }
    // A loop over the slices, each one GEMM batched over the groups.
    for (std::int64_t s = 0; s < used; ++s) {
      const std::int64_t len = std::min(length, n - s * length);
      gemm(ctx_, mg_, k_, len, {advance(top.data, s * length, size), top.ld, top.group},
           {advance(col, s * length, size), n, k_ * n, true}, beta,
           advance(partials, s * m_ * k_, sums_size), k_, mg_ * k_, g_, sums_dtype);
    }
  }

  // The slots' total into SUMS (added to it when ACCUMULATE), where the slicing has several.
  void sum_slots(const Slicing& sl, bool accumulate, void* sums, DType sums_dtype) {
    if (sl.slots == 1) return;
    check_kernel(
        ctx_,
        gpu::launch_sum_slices(element_of(sums_dtype), partials_.raw_data(),
                               static_cast<int>(sl.slots), m_ * k_, sums, accumulate, ctx_.stream),
        "the sum of partial weight gradients");
  }

  // One reduction of N columns, sliced and summed on its own: dW_g (Mg x K) (+)= T_g . COL_g^T.
  void shared_weight_gemms(const TopOperand& top, const void* col, std::int64_t n, bool accumulate,
                           void* sums, DType sums_dtype) {
    const Slicing sl = slicing_for(n);
    weight_gemms(top, col, n, sl, sl.slots == 1 && accumulate, sums, sums_dtype);
    sum_slots(sl, accumulate, sums, sums_dtype);
  }

  // Shared kernels (not pointwise): per chunk of images, im2col and the staged topgrad, or per
  // range of one image's positions, im2col of the range and the topgrad read in place (rows of P,
  // from the range's first position). Every chunk's slices add into the same slots, summed once
  // at the end.
  void shared_grad_weights(const void* image, const void* topgrad, void* sums, DType sums_dtype) {
    const std::size_t size = ctx_.element_size;
    if (range_ < p_) {
      const Slicing sl = slicing_for(range_);
      bool first = true;
      for_each_position_range(image, [&](std::int64_t b, std::int64_t p0, std::int64_t len) {
        weight_gemms({advance(topgrad, b * m_ * p_ + p0, size), p_, mg_ * p_}, col_.raw_data(), len,
                     sl, !first, sums, sums_dtype);
        first = false;
      });
      sum_slots(sl, false, sums, sums_dtype);
      return;
    }
    ensure_columns(p_);
    const Slicing sl = slicing_for(nb_max_ * p_);
    bool first = true;
    for_each_chunk([&](std::int64_t b0, std::int64_t nb) {
      im2col(advance(image, b0 * pr_.channels * pr_.image_size(), size), nb, columns(nb));
      const std::int64_t n = nb * p_;
      weight_gemms({stage_topgrad(topgrad, b0, nb), n, mg_ * n}, col_.raw_data(), n, sl, !first,
                   sums, sums_dtype);
      first = false;
    });
    sum_slots(sl, false, sums, sums_dtype);
  }

  // Forward where one image's column matrix is above the target: per image, per range of its
  // positions, im2col of the range and Y_g[:, range] (Mg x len, rows of P in the output) =
  // W_g . col_g, one GEMM batched over the groups.
  void forward_ranges(const void* image, const void* kernel, void* out) {
    for_each_position_range(image, [&](std::int64_t b, std::int64_t p0, std::int64_t len) {
      gemm(ctx_, mg_, len, k_, {kernel, k_, mg_ * k_}, {col_.raw_data(), len, k_ * len}, 0.0,
           advance(out, b * m_ * p_ + p0, ctx_.element_size), p_, mg_ * p_, g_, ctx_.dtype);
    });
  }

  // Per image b, per range [p0, p0 + len) of its positions (range_ each, the last one shorter):
  // the range's column matrix (R x len) into col_, then FN(b, p0, len).
  template <typename Fn>
  void for_each_position_range(const void* image, Fn&& fn) {
    ensure_columns(range_);
    for (std::int64_t b = 0; b < pr_.batch; ++b) {
      const void* image_b = advance(image, b * pr_.channels * pr_.image_size(), ctx_.element_size);
      for (std::int64_t p0 = 0; p0 < p_; p0 += range_) {
        const std::int64_t len = std::min(range_, p_ - p0);
        im2col(image_b, 1, {len, len, 1, p0, len});
        fn(b, p0, len);
      }
    }
  }

  // OUT[b, g] (Mg x P blocks of the batch-major output) = W_g (Mg x K) . SRC[b, g] (K x P) for
  // the NB images: batched over the images (a loop over the groups) or over the groups (a loop
  // over the images), whichever loop is shorter. W_g is not evenly spaced in b * G + g.
  void forward_per_image(const void* kernel, const void* src, const Blocks& s, void* out,
                         std::int64_t nb) {
    const std::size_t size = ctx_.element_size;
    if (g_ <= nb) {
      for (std::int64_t g = 0; g < g_; ++g) {
        gemm(ctx_, mg_, p_, k_, {advance(kernel, g * mg_ * k_, size), k_, 0},
             {advance(src, g * s.group, size), s.ld, s.image}, 0.0,
             advance(out, g * mg_ * p_, size), p_, m_ * p_, nb, ctx_.dtype);
      }
      return;
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      gemm(ctx_, mg_, p_, k_, {kernel, k_, mg_ * k_},
           {advance(src, b * s.image, size), s.ld, s.group}, 0.0, advance(out, b * m_ * p_, size),
           p_, mg_ * p_, g_, ctx_.dtype);
    }
  }

  // DST[b, g] (K x P) = W_g^T (K x Mg) . TOP[b, g] (Mg x P blocks of the batch-major topgrad),
  // batched like forward_per_image.
  void grad_inputs_per_image(const void* kernel, const void* top, void* dst, const Blocks& d,
                             std::int64_t nb) {
    const std::size_t size = ctx_.element_size;
    if (g_ <= nb) {
      for (std::int64_t g = 0; g < g_; ++g) {
        gemm(ctx_, k_, p_, mg_, {advance(kernel, g * mg_ * k_, size), k_, 0, true},
             {advance(top, g * mg_ * p_, size), p_, m_ * p_}, 0.0, advance(dst, g * d.group, size),
             d.ld, d.image, nb, ctx_.dtype);
      }
      return;
    }
    for (std::int64_t b = 0; b < nb; ++b) {
      gemm(ctx_, k_, p_, mg_, {kernel, k_, mg_ * k_, true},
           {advance(top, b * m_ * p_, size), p_, mg_ * p_}, 0.0, advance(dst, b * d.image, size),
           d.ld, d.group, g_, ctx_.dtype);
    }
  }

  template <typename Fn>
  void for_each_chunk(Fn&& fn) {
    for (std::int64_t b0 = 0; b0 < pr_.batch; b0 += nb_max_) {
      fn(b0, std::min(nb_max_, pr_.batch - b0));
    }
  }

  // TOTAL images in equal ranges of at most LIMIT.
  template <typename Fn>
  static void for_each_range(std::int64_t total, std::int64_t limit, Fn&& fn) {
    const std::int64_t per = ceil_div(total, ceil_div(total, std::max<std::int64_t>(limit, 1)));
    for (std::int64_t b0 = 0; b0 < total; b0 += per) fn(b0, std::min(per, total - b0));
  }

  // Room for the column matrix of nb_max_ images of POSITIONS columns each.
  void ensure_columns(std::int64_t positions) {
    if (!col_.defined()) {
      col_ = workspace(ctx_, ctx_.dtype, r_ * nb_max_ * positions, "column matrix");
    }
  }
  void ensure_staging() {
    if (!staging_.defined()) {
      staging_ = workspace(ctx_, ctx_.dtype, m_ * nb_max_ * p_, "topgrad / output staging buffer");
    }
  }
  void ensure_partials(DType dtype, std::int64_t elements) {
    if (!partials_.defined() || partials_.numel() < elements) {
      partials_ = workspace(ctx_, dtype, elements, "partial weight gradients");
    }
  }

  // Shared: (r, b, p) at r * nb * P + b * P + p. Unshared: position-major, (p, b, r).
  gpu::ColumnLayout columns(std::int64_t nb) const {
    if (!pr_.unshared) return {nb * p_, p_, 1};
    return {1, r_, nb * r_};
  }

  void im2col(const void* image, std::int64_t nb, const gpu::ColumnLayout& layout) {
    check_kernel(ctx_,
                 gpu::launch_im2col(ctx_.element, geo_, static_cast<int>(nb), image,
                                    col_.raw_data(), layout, ctx_.stream),
                 "im2col");
  }

  // The chunk's topgrad in the GEMMs' layout: (M, nb, P) for shared kernels (the topgrad itself
  // for one image), (P, nb, M) for unshared ones.
  const void* stage_topgrad(const void* topgrad, std::int64_t b0, std::int64_t nb) {
    const void* top = advance(topgrad, b0 * m_ * p_, ctx_.element_size);
    if (!pr_.unshared && nb == 1) return top;
    ensure_staging();
    if (!pr_.unshared) {
      permute(top, nb, m_, p_, staging_.raw_data(), p_, nb * p_, 1);
    } else {
      permute(top, nb, m_, p_, staging_.raw_data(), m_, 1, nb * m_);
    }
    return staging_.raw_data();
  }

  void permute(const void* src, std::int64_t d0, std::int64_t d1, std::int64_t d2, void* dst,
               std::int64_t s0, std::int64_t s1, std::int64_t s2) {
    check_kernel(ctx_,
                 gpu::launch_permute3(ctx_.element, src, d0, d1, d2, dst, s0, s1, s2, ctx_.stream),
                 "a transpose");
  }

  void* elements(const Tensor& t, std::int64_t offset) const {
    return advance(t.raw_data(), offset, ctx_.element_size);
  }

  const Context& ctx_;
  const Problem& pr_;
  gpu::GpuCorrGeometry geo_;
  std::int64_t p_ = 0, r_ = 0, k_ = 0, m_ = 0, mg_ = 0, g_ = 1, nb_max_ = 1, range_ = 0;
  bool pointwise_ = false;
  Tensor col_, staging_, partials_;
};

}  // namespace

// Runs a prepared problem on the current stream of the inputs' device. Empty problems (no batch,
// channels or filters) give zeros, like the reference.
Tensor execute(const std::string& fn, ConvDirection direction, const Prepared& prep,
               const Tensor& a, const Tensor& b, bool allow_tf32) {
  const Problem& pr = prep.problem;
  const Device device = a.device();
  cuda::set_device(device.index);
  Tensor out = Tensor::empty(a.dtype(), prep.result, device);
  if (out.numel() == 0) return out;
  if (pr.batch == 0 || pr.channels == 0 || pr.filters == 0) {
    out.fill(0.0);
    return out;
  }
  Context ctx;
  ctx.fn = fn;
  ctx.device = device.index;
  ctx.dtype = a.dtype();
  ctx.element_size = dtype_size(ctx.dtype);
  ctx.element = element_of(ctx.dtype);
  const cuda::DeviceProperties& props = cuda::properties(device.index);
  const Plan plan =
      plan_chunks(fn, pr, ctx.element_size, static_cast<std::int64_t>(props.l2_cache_bytes));
  ctx.stream = cuda::current_stream(device.index);
  ctx.blas = cuda::cublas_handle(device.index);
  ctx.sm_count = props.sm_count;
  ctx.allow_tf32 = allow_tf32;
  // The handle is shared: make sure no math mode left on it lets CUBLAS_COMPUTE_32F round to
  // TF32 (the compute type alone chooses TF32 or not).
  cuda::check_cublas(cublasSetMathMode(ctx.blas, CUBLAS_DEFAULT_MATH),
                     fmt::format("{}: setting the cuBLAS math mode", fn));
  const Tensor ca = a.contiguous();
  const Tensor cb = b.contiguous();
  if (use_direct_grouped(pr)) {
    run_direct_grouped(ctx, direction, pr, ca.raw_data(), cb.raw_data(), out);
    return out;
  }
  Runner runner(ctx, pr, plan);
  switch (direction) {
    case ConvDirection::forward:
      runner.forward(ca.raw_data(), cb.raw_data(), out.raw_data());
      break;
    case ConvDirection::grad_inputs:
      runner.grad_inputs(ca.raw_data(), cb.raw_data(), out.raw_data());
      break;
    case ConvDirection::grad_weights:
      if (ctx.dtype == DType::float16) {
        const Tensor sums = workspace(ctx, DType::float32, out.numel(), "float32 accumulator");
        runner.grad_weights(ca.raw_data(), cb.raw_data(), sums.raw_data(), DType::float32);
        check_kernel(ctx,
                     gpu::launch_float_to_half(static_cast<const float*>(sums.raw_data()),
                                               out.raw_data(), out.numel(), ctx.stream),
                     "the float16 rounding");
      } else {
        runner.grad_weights(ca.raw_data(), cb.raw_data(), out.raw_data(), ctx.dtype);
      }
      break;
  }
  return out;
}

}  // namespace convgraph::gpu_corrmm_detail
