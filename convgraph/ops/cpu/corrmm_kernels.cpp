// The GEMM drivers of the CorrMM family. The work is cut into blocks of output columns: several
// whole images when an image has few output positions (one GEMM over all of them keeps the GEMM's
// N large), else runs of output lines of one image (a block's column matrix then stays in cache
// between im2col writing it and the GEMM reading it, where a whole image's would go to memory and
// back: 115 MB for a 224x224 layer with 64 channels).
//
// Threads: with at least as many images as threads, the blocks are split between threads, each
// with its own workspace, and BLAS runs single-threaded inside; with fewer images, blocks run one
// after the other with im2col / col2im split over rows and channels and a multi-threaded GEMM.
// Either way one level of parallelism is active at a time, so the two never oversubscribe.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/cpu/corrmm_nonfinite.hpp"
#include "convgraph/ops/cpu/depthwise_kernels.hpp"
#include "convgraph/ops/cpu/im2col.hpp"
#include "convgraph/runtime/blas.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/step_memory.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {
namespace {

// The thresholds (defaults in im2col.hpp). Measured on the 2-core Zen 5 with the suite layers at
// batch 8: grouping images with fewer than 256 output positions makes the 7x7 layers ~18% faster
// and is neutral at 14x14; column blocks of 2-4 MiB per thread make the 224x224 layers ~1.5x
// faster than whole-image column matrices (the 112x112 stem prefers 2, the 56x56 layers 4-8);
// a GEMM that all threads share (batch 1) runs a little better on larger blocks.
std::mutex tuning_mutex;
CorrGemmTuning tuning_value;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// [begin, end) of part PART when COUNT items are split into PARTS contiguous runs.
std::pair<std::int64_t, std::int64_t> split(std::int64_t count, int parts, int part) {
  return {count * part / parts, count * (part + 1) / parts};
}

int configured_threads() {
  return cpu_threads();
}

// Threads for a problem's parallel loops (one when the work is too small to share).
int loop_threads(const CorrGeometry& geo) {
  return geo.work() < corr_gemm_tuning().parallel_work ? 1 : configured_threads();
}

// Sets the BLAS thread count for a scope and restores it afterwards.
class BlasThreads {
 public:
  explicit BlasThreads(int threads) : previous_(blas_num_threads()) {
    if (previous_ != threads) set_blas_num_threads(threads);
  }
  ~BlasThreads() {
    if (previous_ >= 1 && blas_num_threads() != previous_) set_blas_num_threads(previous_);
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int previous_;
};

// Runs FN(begin, end) over [0, COUNT) split between THREADS threads (inline for one).
template <typename Fn>
void parallel_range(int threads, std::int64_t count, Fn&& fn) {
  if (threads <= 1 || count <= 1) {
    if (count > 0) fn(std::int64_t{0}, count);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const auto [begin, end] = split(count, omp_get_num_threads(), omp_get_thread_num());
    if (begin < end) fn(begin, end);
  }
}

// How the output columns are cut into blocks, and who runs them.
struct Blocking {
  int threads = 1;
  bool batch_parallel = true;  // blocks split between threads (else: threads inside each block)
  bool direct = false;         // pointwise kernel: the image is the column matrix, nothing copied
  std::int64_t images = 1;     // images per block (> 1 only with whole images)
  std::int64_t lines = 1;      // output lines per block (all of them when images > 1)
  std::int64_t image_blocks = 0, line_blocks = 0;
  std::int64_t max_columns = 0;  // columns of the largest block
};

// One block: images [image, image + images), output lines [line_begin, line_end) of each.
struct Block {
  std::int64_t image = 0, images = 1, line_begin = 0, line_end = 0;
};

Block block_at(const CorrGeometry& geo, const Blocking& bl, std::int64_t image_block,
               std::int64_t line_block) {
  Block b;
  b.image = image_block * bl.images;
  b.images = std::min(bl.images, geo.batch - b.image);
  b.line_begin = line_block * bl.lines;
  b.line_end = std::min(geo.lines(), b.line_begin + bl.lines);
  return b;
}

void check_blas_size(std::int64_t value, const char* what) {
  if (value > std::numeric_limits<std::int32_t>::max()) {
    throw UnsupportedError(
        fmt::format("CorrMM: {} is {}, beyond what a BLAS call takes (2^31 - 1); split the "
                    "convolution",
                    what, value));
  }
}

Blocking plan_blocks(const CorrGeometry& geo, std::int64_t element_size) {
  const CorrGemmTuning tuning = corr_gemm_tuning();
  Blocking bl;
  bl.threads = loop_threads(geo);
  bl.batch_parallel = bl.threads == 1 || geo.batch >= bl.threads;
  const std::int64_t positions = geo.positions();
  const std::int64_t ow = geo.output[2];
  const std::int64_t row_bytes = geo.rows() * element_size;
  const std::int64_t images_per_thread =
      bl.batch_parallel ? ceil_div(geo.batch, bl.threads) : geo.batch;
  // Unshared kernels run per position (GEMV), where grouping images buys nothing.
  if (!geo.unshared && positions < tuning.target_columns && images_per_thread > 1) {
    const std::int64_t fitting =
        std::max<std::int64_t>(1, tuning.max_block_bytes / (row_bytes * positions));
    const std::int64_t wanted =
        std::min({images_per_thread, ceil_div(tuning.target_columns, positions), fitting});
    // Equal blocks: 4 images as 3 + 1 would leave the thread with the 1 idle half the time.
    bl.images = ceil_div(images_per_thread, ceil_div(images_per_thread, wanted));
  }
  bl.direct = bl.images == 1 && geo.pointwise();
  if (bl.images > 1 || bl.direct) {
    bl.lines = geo.lines();
  } else {
    const std::int64_t budget =
        bl.batch_parallel ? tuning.block_bytes_per_thread : tuning.block_bytes_shared;
    const std::int64_t by_budget = budget / (row_bytes * ow);
    bl.lines = std::clamp(std::max(by_budget, ceil_div(tuning.target_columns, ow)), std::int64_t{1},
                          geo.lines());
  }
  bl.image_blocks = ceil_div(geo.batch, bl.images);
  bl.line_blocks = ceil_div(geo.lines(), bl.lines);
  bl.max_columns = bl.images * bl.lines * ow;
  // Everything a BLAS call is given as a size or a stride, checked before anything is written.
  check_blas_size(bl.max_columns, "the column count of a GEMM");
  check_blas_size(positions, "the output positions per image");
  check_blas_size(geo.group_rows() * geo.regions(), "the kernel row stride");
  check_blas_size(geo.filters_per_group, "the filters per group");
  return bl;
}

// Workspace: one slot per thread that works on its own blocks (one in all when the threads share
// each block), each with a column matrix and a staging matrix for multi-image blocks, then EXTRA
// elements for each slot but the first (the weight gradient's partial sums: the first thread's go
// to the result itself); pieces start on cache-line boundaries. With FROM_STEP, the memory comes
// through the step's Workspace (runtime/step_memory.hpp): the memory plan's block when the kernel
// announced elements_for() of it.
template <typename T>
class ColumnWorkspace {
 public:
  ColumnWorkspace(const CorrGeometry& geo, const Blocking& bl, std::int64_t extra,
                  bool from_step = false)
      : col_(columns(geo, bl)),
        staging_(staged(geo, bl)),
        stride_(aligned(col_ + staging_)),
        extra_stride_(aligned(extra)),
        slots_(slots(bl)) {
    const std::int64_t elements = elements_for(geo, bl, extra);
    if (elements <= 0) return;
    if (from_step) {
      Workspace step(workspace_piece_bytes(elements * static_cast<std::int64_t>(sizeof(T))));
      buffer_ = step.take(dtype_of<T>(), {elements});
    } else {
      buffer_ = Tensor::empty(dtype_of<T>(), {elements});
    }
  }
  T* col(int slot) const { return at(slot * stride_); }
  T* staging(int slot) const { return at(slot * stride_ + col_); }
  // Slot 1 and up.
  T* extra(int slot) const { return at(slots_ * stride_ + (slot - 1) * extra_stride_); }

  // The elements a workspace of these arguments takes, without making it.
  static std::int64_t elements_for(const CorrGeometry& geo, const Blocking& bl,
                                   std::int64_t extra) {
    const std::int64_t n = slots(bl);
    return n * aligned(columns(geo, bl) + staged(geo, bl)) + (n - 1) * aligned(extra);
  }

 private:
  static std::int64_t columns(const CorrGeometry& geo, const Blocking& bl) {
    return bl.direct ? 0 : geo.rows() * bl.max_columns;
  }
  static std::int64_t staged(const CorrGeometry& geo, const Blocking& bl) {
    return bl.images > 1 ? geo.filters * bl.max_columns : 0;
  }
  static std::int64_t aligned(std::int64_t elements) {
    constexpr std::int64_t line = 64 / static_cast<std::int64_t>(sizeof(T));
    return ceil_div(elements, line) * line;
  }
  static std::int64_t slots(const Blocking& bl) { return bl.batch_parallel ? bl.threads : 1; }
  T* at(std::int64_t offset) const {
    return buffer_.defined() ? buffer_.data<T>() + offset : nullptr;
  }

  std::int64_t col_ = 0, staging_ = 0, stride_ = 0, extra_stride_ = 0, slots_ = 1;
  Tensor buffer_;
};

// How run_blocks hands blocks to threads.
enum class Schedule {
  // Threads take the next block as they finish one: a thread slowed down (by another process on
  // its core, or a larger block) does not hold the others up. For results that do not depend on
  // which thread computed what.
  dynamic,
  // Each thread takes a fixed run of blocks, so sums over blocks (the weight gradient) come out
  // the same from run to run.
  fixed,
};

// Runs BODY(slot, block, threads_inside) over every block. Batch-parallel: blocks are split between
// threads (WHOLE_IMAGES: every line block of an image block goes to the same thread, as col2im of
// neighbouring line blocks writes overlapping image rows) and BLAS is single-threaded. Otherwise
// blocks run in order, each using every thread. BEFORE(slot) runs once per working thread before
// its first block. Returns the number of slots used.
template <typename Body, typename Before>
int run_blocks(const CorrGeometry& geo, const Blocking& bl, bool whole_images, Schedule schedule,
               Body&& body, Before&& before) {
  if (!bl.batch_parallel) {
    const BlasThreads blas(bl.threads);
    before(0);
    for (std::int64_t ib = 0; ib < bl.image_blocks; ++ib) {
      for (std::int64_t lb = 0; lb < bl.line_blocks; ++lb) {
        body(0, block_at(geo, bl, ib, lb), bl.threads);
      }
    }
    return 1;
  }
  const std::int64_t units = whole_images ? bl.image_blocks : bl.image_blocks * bl.line_blocks;
  const std::int64_t per_unit = whole_images ? bl.line_blocks : 1;
  const int threads = static_cast<int>(std::min<std::int64_t>(bl.threads, units));
  auto run_unit = [&](int slot, std::int64_t u) {
    for (std::int64_t k = 0; k < per_unit; ++k) {
      const std::int64_t item = u * per_unit + k;
      body(slot, block_at(geo, bl, item / bl.line_blocks, item % bl.line_blocks), 1);
    }
  };
  std::atomic<std::int64_t> next{0};
  auto run_units = [&](int slot, std::int64_t begin, std::int64_t end) {
    before(slot);
    if (schedule == Schedule::fixed) {
      for (std::int64_t u = begin; u < end; ++u) run_unit(slot, u);
    } else {
      for (std::int64_t u = next++; u < units; u = next++) run_unit(slot, u);
    }
  };
  if (threads <= 1) {
    const BlasThreads blas(bl.threads);
    run_units(0, 0, units);
    return 1;
  }
  const BlasThreads blas(1);
  std::exception_ptr error;
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    const int slot = omp_get_thread_num();
    const int size = omp_get_num_threads();
    if (slot == 0) team = size;
    const auto [begin, end] = split(units, size, slot);
    // Exceptions must not cross the parallel region; the first is rethrown after it. Every size
    // is checked before the region, so this only guards against allocation failures in BLAS.
    try {
      run_units(slot, begin, end);
    } catch (...) {
#pragma omp critical(convgraph_corrmm_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return team;
}

// im2col of every image of BLOCK into COL (row stride = the block's columns).
template <typename T>
void fill_columns(const CorrGeometry& geo, const Block& block, const T* image, T* col,
                  std::int64_t ld, int threads) {
  const std::int64_t per_image = (block.line_end - block.line_begin) * geo.output[2];
  const std::int64_t rows = geo.rows();
  const std::int64_t image_stride = geo.channels * geo.image_size();
  parallel_range(threads, rows * block.images, [&](std::int64_t begin, std::int64_t end) {
    // Runs of rows within one image.
    for (std::int64_t i = begin; i < end;) {
      const std::int64_t b = i / rows;
      const std::int64_t row = i - b * rows;
      const std::int64_t stop = std::min(end - b * rows, rows);
      im2col(geo, image + (block.image + b) * image_stride, row, stop, block.line_begin,
             block.line_end, col + b * per_image, ld);
      i = b * rows + stop;
    }
  });
}

// STAGING (M, images * positions) <- TOPGRAD[block images] (the layout a multi-image GEMM needs).
template <typename T>
void gather_top(const CorrGeometry& geo, const Block& block, const T* topgrad, T* staging,
                std::int64_t ld) {
  const std::int64_t positions = geo.positions();
  for (std::int64_t b = 0; b < block.images; ++b) {
    const T* src = topgrad + (block.image + b) * geo.filters * positions;
    for (std::int64_t m = 0; m < geo.filters; ++m) {
      std::memcpy(staging + m * ld + b * positions, src + m * positions,
                  static_cast<std::size_t>(positions) * sizeof(T));
    }
  }
}

template <typename T>
void scatter_out(const CorrGeometry& geo, const Block& block, const T* staging, std::int64_t ld,
                 T* out) {
  const std::int64_t positions = geo.positions();
  for (std::int64_t b = 0; b < block.images; ++b) {
    T* dst = out + (block.image + b) * geo.filters * positions;
    for (std::int64_t m = 0; m < geo.filters; ++m) {
      std::memcpy(dst + m * positions, staging + m * ld + b * positions,
                  static_cast<std::size_t>(positions) * sizeof(T));
    }
  }
}

// Where a block's column matrix is, and its row stride.
template <typename T>
struct Columns {
  const T* data;
  std::int64_t ld;
};

template <typename T>
Columns<T> block_columns(const CorrGeometry& geo, const Blocking& bl, const Block& block,
                         const T* image, T* col, int threads) {
  if (bl.direct) {
    return {image + block.image * geo.channels * geo.image_size(), geo.positions()};
  }
  const std::int64_t ld = block.images * (block.line_end - block.line_begin) * geo.output[2];
  fill_columns(geo, block, image, col, ld, threads);
  return {col, ld};
}

}  // namespace

CorrGemmTuning corr_gemm_tuning() {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  return tuning_value;
}

void set_corr_gemm_tuning(const CorrGemmTuning& tuning) {
  if (tuning.parallel_work < 0 || tuning.target_columns < 0 || tuning.block_bytes_per_thread < 0 ||
      tuning.block_bytes_shared < 0 || tuning.max_block_bytes < 0 ||
      tuning.direct_max_channels < 0 || tuning.direct_max_filters < 0) {
    throw ValueError(fmt::format(
        "set_corr_gemm_tuning: parallel_work={}, target_columns={}, block_bytes_per_thread={}, "
        "block_bytes_shared={}, max_block_bytes={}, direct_max_channels={}, "
        "direct_max_filters={}; expected no negative value",
        tuning.parallel_work, tuning.target_columns, tuning.block_bytes_per_thread,
        tuning.block_bytes_shared, tuning.max_block_bytes, tuning.direct_max_channels,
        tuning.direct_max_filters));
  }
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  tuning_value = tuning;
}

namespace {

// The epilogue on filters [0, M) of output columns [FIRST, FIRST + N) of image IMAGE (contiguous
// output OUT), rows split between THREADS threads.
template <typename T>
void epilogue_columns(const CorrGeometry& geo, const CorrEpilogue<T>& ep, T* out,
                      std::int64_t image, std::int64_t first, std::int64_t n, int threads) {
  const std::int64_t positions = geo.positions();
  const std::int64_t offset = image * geo.filters * positions + first;
  parallel_range(threads, geo.filters, [&](std::int64_t begin, std::int64_t end) {
    apply_conv_epilogue_block<T>(
        ep.steps, out + offset + begin * positions, positions, end - begin, n,
        ep.bias != nullptr ? ep.bias + begin : nullptr,
        ep.residual != nullptr ? ep.residual + offset + begin * positions : nullptr);
  });
}

template <typename T>
void gemm_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out,
                  const CorrEpilogue<T>& ep) {
  const Blocking bl = plan_blocks(geo, sizeof(T));
  const ColumnWorkspace<T> ws(geo, bl, 0);
  const std::int64_t positions = geo.positions();
  const std::int64_t mg = geo.filters_per_group, k = geo.group_rows();
  auto body = [&](int slot, const Block& block, int threads) {
    const Columns<T> cols = block_columns(geo, bl, block, image, ws.col(slot), threads);
    const std::int64_t n = block.images * (block.line_end - block.line_begin) * geo.output[2];
    const std::int64_t first = block.line_begin * geo.output[2];
    T* top = out + block.image * geo.filters * positions;
    for (std::int64_t g = 0; g < geo.groups; ++g) {
      const T* col_g = cols.data + g * k * cols.ld;
      if (geo.unshared) {
        // out[m, r] = W[m, r, :] . col[:, r] for each position r: one GEMV per position.
        for (std::int64_t r = first; r < first + n; ++r) {
          gemv(false, mg, k, T(1), kernel + (g * mg * positions + r) * k, positions * k,
               col_g + (r - first), cols.ld, T(0), top + g * mg * positions + r, positions);
        }
      } else if (block.images == 1) {
        gemm(false, false, mg, n, k, T(1), kernel + g * mg * k, k, col_g, cols.ld, T(0),
             top + g * mg * positions + first, positions);
      } else {
        gemm(false, false, mg, n, k, T(1), kernel + g * mg * k, k, col_g, cols.ld, T(0),
             ws.staging(slot) + g * mg * n, n);
      }
    }
    if (block.images > 1) scatter_out(geo, block, ws.staging(slot), n, out);
    // The block's output was just written: apply the epilogue before it leaves the cache.
    if (ep.steps.empty()) return;
    if (block.images > 1) {
      for (std::int64_t b = 0; b < block.images; ++b) {
        epilogue_columns(geo, ep, out, block.image + b, 0, positions, threads);
      }
    } else {
      epilogue_columns(geo, ep, out, block.image, first, n, threads);
    }
  };
  run_blocks(geo, bl, false, Schedule::dynamic, body, [](int) {});
}

template <typename T>
bool all_finite(const T* values, std::int64_t count) {
  bool finite = true;
  for (std::int64_t i = 0; i < count; ++i) finite &= std::isfinite(values[i]);
  return finite;
}

// The elements of the weight gradient's workspace beyond the column matrices: a copy of the
// weights for each thread but the first, which accumulate into their own copy, summed into the
// result at the end.
std::int64_t grad_weights_private_sums(const CorrGeometry& geo, const Blocking& bl) {
  const bool private_sums = bl.batch_parallel && bl.threads > 1;
  return private_sums ? geo.filters * geo.regions() * geo.group_rows() : 0;
}

template <typename T>
void gemm_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out) {
  const Blocking bl = plan_blocks(geo, sizeof(T));
  const std::int64_t weights = geo.filters * geo.regions() * geo.group_rows();
  const ColumnWorkspace<T> ws(geo, bl, grad_weights_private_sums(geo, bl), /*from_step=*/true);
  const std::int64_t positions = geo.positions();
  const std::int64_t mg = geo.filters_per_group, k = geo.group_rows();
  auto sums = [&](int slot) { return slot == 0 ? out : ws.extra(slot); };
  auto body = [&](int slot, const Block& block, int threads) {
    const Columns<T> cols = block_columns(geo, bl, block, image, ws.col(slot), threads);
    const std::int64_t n = block.images * (block.line_end - block.line_begin) * geo.output[2];
    const std::int64_t first = block.line_begin * geo.output[2];
    const T* top = topgrad + block.image * geo.filters * positions;
    std::int64_t ld_top = positions;
    if (block.images > 1) {
      gather_top(geo, block, topgrad, ws.staging(slot), n);
      top = ws.staging(slot);
      ld_top = n;
    }
    T* dw = sums(slot);
    for (std::int64_t g = 0; g < geo.groups; ++g) {
      const T* col_g = cols.data + g * k * cols.ld;
      const T* top_g = top + g * mg * ld_top + first;
      if (geo.unshared) {
        // dW[:, r, :] += top[:, r] (x) col[:, r]: a rank-1 update per position.
        for (std::int64_t r = first; r < first + n; ++r) {
          gemm(false, true, mg, k, 1, T(1), top_g + (r - first), ld_top, col_g + (r - first),
               cols.ld, T(1), dw + (g * mg * positions + r) * k, positions * k);
        }
      } else {
        gemm(false, true, mg, k, n, T(1), top_g, ld_top, col_g, cols.ld, T(1), dw + g * mg * k, k);
      }
    }
  };
  auto zero_sums = [&](int slot) {
    std::memset(static_cast<void*>(sums(slot)), 0, static_cast<std::size_t>(weights) * sizeof(T));
  };
  const int used = run_blocks(geo, bl, false, Schedule::fixed, body, zero_sums);
  if (used > 1) {
    parallel_range(used, weights, [&](std::int64_t begin, std::int64_t end) {
      for (int slot = 1; slot < used; ++slot) {
        const T* src = ws.extra(slot);
        for (std::int64_t i = begin; i < end; ++i) out[i] += src[i];
      }
    });
  }
}

// A 1x1 kernel without padding at a stride above 1 (the pointwise path takes stride 1): output
// (z, y, x) reads image element (z sz, y sy, x sx) and nothing else.
bool strided_1x1(const CorrGeometry& geo) {
  for (std::size_t a = 0; a < 3; ++a) {
    if (geo.kernel[a] != 1 || geo.pad_before[a] != 0 || geo.pad_after[a] != 0) return false;
  }
  return !geo.pointwise();
}

// PLANE (one channel of one image's gradient) <- SRC (that channel's output positions, in
// order) at the image positions the outputs read, zeros everywhere else; each row written once.
template <typename T>
void scatter_1x1(const CorrGeometry& geo, const T* src, T* plane) {
  const std::int64_t rows = geo.image[0] * geo.image[1], w = geo.image[2];
  const std::int64_t sz = geo.stride[0], sy = geo.stride[1], sx = geo.stride[2];
  const std::int64_t oh = geo.output[1], ow = geo.output[2];
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = plane + r * w;
    std::memset(static_cast<void*>(row), 0, static_cast<std::size_t>(w) * sizeof(T));
    const std::int64_t z = r / geo.image[1], y = r - z * geo.image[1];
    if (z % sz != 0 || y % sy != 0 || z / sz >= geo.output[0] || y / sy >= oh) continue;
    const T* line = src + ((z / sz) * oh + y / sy) * ow;
    for (std::int64_t x = 0; x < ow; ++x) row[x * sx] = line[x];
  }
}

template <typename T>
void gemm_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out) {
  const Blocking bl = plan_blocks(geo, sizeof(T));
  const ColumnWorkspace<T> ws(geo, bl, 0, /*from_step=*/true);
  const std::int64_t positions = geo.positions();
  const std::int64_t image_stride = geo.channels * geo.image_size();
  const std::int64_t mg = geo.filters_per_group, k = geo.group_rows();
  auto body = [&](int slot, const Block& block, int threads) {
    T* dimage = out + block.image * image_stride;
    const T* top = topgrad + block.image * geo.filters * positions;
    if (bl.direct) {
      // The image gradient is the column matrix (Cg = K rows per group, P columns), written in
      // place. Unshared kernels have their own (Mg, K) matrix per position, so each column is a
      // GEMV, exactly as in the column path below; shared ones are one GEMM per group.
      for (std::int64_t g = 0; g < geo.groups; ++g) {
        const T* top_g = top + g * mg * positions;
        T* dimage_g = dimage + g * k * positions;
        if (geo.unshared) {
          for (std::int64_t r = 0; r < positions; ++r) {
            gemv(true, mg, k, T(1), kernel + (g * mg * positions + r) * k, positions * k, top_g + r,
                 positions, T(0), dimage_g + r, positions);
          }
        } else {
          // dX_g (Cg, P) = W_g^T (Cg, Mg) . T_g (Mg, P).
          gemm(true, false, k, positions, mg, T(1), kernel + g * mg * k, k, top_g, positions, T(0),
               dimage_g, positions);
        }
      }
      return;
    }
    const std::int64_t per_image = (block.line_end - block.line_begin) * geo.output[2];
    const std::int64_t n = block.images * per_image;
    const std::int64_t first = block.line_begin * geo.output[2];
    std::int64_t ld_top = positions;
    if (block.images > 1) {
      gather_top(geo, block, topgrad, ws.staging(slot), n);
      top = ws.staging(slot);
      ld_top = n;
    }
    T* col = ws.col(slot);
    for (std::int64_t g = 0; g < geo.groups; ++g) {
      const T* top_g = top + g * mg * ld_top + first;
      T* col_g = col + g * k * n;
      if (geo.unshared) {
        // col[:, r] = W[:, r, :]^T . top[:, r] for each position r.
        for (std::int64_t r = first; r < first + n; ++r) {
          gemv(true, mg, k, T(1), kernel + (g * mg * positions + r) * k, positions * k,
               top_g + (r - first), ld_top, T(0), col_g + (r - first), n);
        }
      } else {
        gemm(true, false, k, n, mg, T(1), kernel + g * mg * k, k, top_g, ld_top, T(0), col_g, n);
      }
    }
    if (geo.pointwise()) {
      // Several whole images of a pointwise kernel: each image's gradient is its run of columns,
      // copied whole (col2im would zero the image, then add one short output line at a time).
      parallel_range(
          threads, geo.channels * block.images, [&](std::int64_t begin, std::int64_t end) {
            for (std::int64_t i = begin; i < end; ++i) {
              const std::int64_t b = i / geo.channels;
              const std::int64_t c = i - b * geo.channels;
              std::memcpy(dimage + b * image_stride + c * positions, col + c * n + b * positions,
                          static_cast<std::size_t>(positions) * sizeof(T));
            }
          });
      return;
    }
    if (strided_1x1(geo) && block.line_begin == 0 && block.line_end == geo.lines()) {
      // Whole images of a strided 1x1 kernel: each plane written once, zeros between the
      // outputs' positions (col2im would zero it, then add one short output line at a time).
      parallel_range(threads, geo.channels * block.images,
                     [&](std::int64_t begin, std::int64_t end) {
                       for (std::int64_t i = begin; i < end; ++i) {
                         const std::int64_t b = i / geo.channels;
                         const std::int64_t c = i - b * geo.channels;
                         scatter_1x1(geo, col + c * n + b * per_image,
                                     dimage + b * image_stride + c * geo.image_size());
                       }
                     });
      return;
    }
    // The first line block of an image zeroes it; the same thread adds the later ones.
    parallel_range(threads, geo.channels * block.images, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end;) {
        const std::int64_t b = i / geo.channels;
        const std::int64_t c = i - b * geo.channels;
        const std::int64_t stop = std::min(end - b * geo.channels, geo.channels);
        T* image = dimage + b * image_stride;
        if (block.line_begin == 0) {
          std::memset(static_cast<void*>(image + c * geo.image_size()), 0,
                      static_cast<std::size_t>((stop - c) * geo.image_size()) * sizeof(T));
        }
        col2im(geo, col + b * per_image, n, c, stop, block.line_begin, block.line_end, image);
        i = b * geo.channels + stop;
      }
    });
  };
  run_blocks(geo, bl, true, Schedule::dynamic, body, [](int) {});
}

}  // namespace

template <typename T>
void corr_gemm_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out,
                       const CorrEpilogue<T>& epilogue) {
  const bool direct = direct_conv_applies(geo);
  // reconcile_forward_padding rewrites elements that a non-finite weight spoilt at the padding;
  // the epilogue must come after it then, so it is applied per block only for finite weights.
  const bool per_block =
      !epilogue.steps.empty() && !direct &&
      all_finite(kernel, geo.filters * geo.regions() * geo.channels_per_group * geo.taps());
  if (direct) {
    direct_forward(geo, image, kernel, out, loop_threads(geo));
  } else {
    gemm_forward(geo, image, kernel, out, per_block ? epilogue : CorrEpilogue<T>{});
  }
  reconcile_forward_padding(geo, image, kernel, out);
  if (epilogue.steps.empty() || per_block) return;
  const int threads = loop_threads(geo);
  const std::int64_t positions = geo.positions();
  parallel_range(threads, geo.batch, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      epilogue_columns(geo, epilogue, out, b, 0, positions, 1);
    }
  });
}

template <typename T>
void corr_gemm_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out) {
  if (direct_grad_weights_applies(geo)) {
    direct_grad_weights(geo, image, topgrad, out, loop_threads(geo));
  } else {
    gemm_grad_weights(geo, image, topgrad, out);
  }
  reconcile_grad_weights_padding(geo, image, topgrad, out);
}

template <typename T>
std::int64_t corr_gemm_grad_weights_workspace_bytes(const CorrGeometry& geo) {
  if (direct_grad_weights_applies(geo)) return 0;
  const Blocking bl = plan_blocks(geo, sizeof(T));
  const std::int64_t elements =
      ColumnWorkspace<T>::elements_for(geo, bl, grad_weights_private_sums(geo, bl));
  return elements > 0 ? workspace_piece_bytes(elements * static_cast<std::int64_t>(sizeof(T))) : 0;
}

template <typename T>
std::int64_t corr_gemm_grad_inputs_workspace_bytes(const CorrGeometry& geo) {
  if (direct_conv_applies(geo)) return 0;
  const Blocking bl = plan_blocks(geo, sizeof(T));
  const std::int64_t elements = ColumnWorkspace<T>::elements_for(geo, bl, 0);
  return elements > 0 ? workspace_piece_bytes(elements * static_cast<std::int64_t>(sizeof(T))) : 0;
}

template <typename T>
void corr_gemm_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out) {
  // Only the direct loops need the reconciliation: they read a zero-padded topgrad, where the
  // GEMMs only sum products of existing outputs (and it scans every weight, serially: 7% of a
  // 2048 -> 512 1x1 layer over 7x7 positions).
  if (direct_conv_applies(geo)) {
    direct_grad_inputs(geo, kernel, topgrad, out, loop_threads(geo));
    reconcile_grad_inputs_padding(geo, kernel, topgrad, out);
  } else {
    gemm_grad_inputs(geo, kernel, topgrad, out);
  }
}

template void corr_gemm_forward<float>(const CorrGeometry&, const float*, const float*, float*,
                                       const CorrEpilogue<float>&);
template void corr_gemm_forward<double>(const CorrGeometry&, const double*, const double*, double*,
                                        const CorrEpilogue<double>&);
template void corr_gemm_grad_inputs<float>(const CorrGeometry&, const float*, const float*, float*);
template void corr_gemm_grad_inputs<double>(const CorrGeometry&, const double*, const double*,
                                            double*);
template void corr_gemm_grad_weights<float>(const CorrGeometry&, const float*, const float*,
                                            float*);
template void corr_gemm_grad_weights<double>(const CorrGeometry&, const double*, const double*,
                                             double*);
template std::int64_t corr_gemm_grad_weights_workspace_bytes<float>(const CorrGeometry&);
template std::int64_t corr_gemm_grad_weights_workspace_bytes<double>(const CorrGeometry&);
template std::int64_t corr_gemm_grad_inputs_workspace_bytes<float>(const CorrGeometry&);
template std::int64_t corr_gemm_grad_inputs_workspace_bytes<double>(const CorrGeometry&);

}  // namespace convgraph
