#include "convgraph/ops/cpu/winograd.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/winograd_kernels.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

std::atomic<std::uint64_t> recomputed{0};

std::string op_name(ConvDirection direction, int convdim) {
  const std::string base = convdim == 3 ? "WinogradConv3d" : "WinogradConv2d";
  switch (direction) {
    case ConvDirection::grad_inputs:
      return base + "_gradInputs";
    case ConvDirection::grad_weights:
      return base + "_gradWeights";
    case ConvDirection::forward:
      break;
  }
  return base;
}

ConcreteConvRequirements winograd_requirements() {
  ConcreteConvRequirements r;
  r.library = "Winograd";
  r.device = DeviceKind::cpu;
  r.dtypes = {DType::float32, DType::float64};
  r.unshared = false;
  r.advice = "use oneDNN (conv_dnn) or CorrMM (conv_gemm)";
  return r;
}

std::string kernel_size_reason(std::int64_t kh, std::int64_t kw) {
  return fmt::format("kernel size {}x{}: Winograd F(4x4, 3x3) takes 3x3 kernels", kh, kw);
}

// A dilated correlation (taps D apart) is D_h x D_w undilated ones: output rows p, p + D, ...
// read input rows p + off + D i, all of one residue R modulo D, so the output's phase p is the
// undilated correlation of the input's phase R (rows R, R + D, ...) with the offset Q =
// (p + off - R) / D. Each phase's sub-images are gathered into contiguous buffers.
struct Phase {
  WinogradGeometry geo;               // the undilated correlation of the sub-images
  std::int64_t in_h = 0, in_w = 0;    // the input phase's first row and column (R)
  std::int64_t out_h = 0, out_w = 0;  // the output phase's first row and column (p)
};

// The ceiling of A / B for B > 0, and the floor.
std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The phases of the correlation G with taps DH x DW apart that have outputs; an input phase may be
// empty (an image smaller than the dilation): its outputs are zeros.
std::vector<Phase> phases_of(const WinogradGeometry& g, std::int64_t dh, std::int64_t dw) {
  std::vector<Phase> out;
  for (std::int64_t ph = 0; ph < std::min(dh, g.out_h); ++ph) {
    for (std::int64_t pw = 0; pw < std::min(dw, g.out_w); ++pw) {
      Phase p;
      p.out_h = ph, p.out_w = pw;
      p.in_h = (ph + g.off_h) - floor_div(ph + g.off_h, dh) * dh;
      p.in_w = (pw + g.off_w) - floor_div(pw + g.off_w, dw) * dw;
      WinogradGeometry& s = p.geo;
      s.batch = g.batch;
      s.in_channels = g.in_channels, s.out_channels = g.out_channels;
      s.out_h = ceil_div(g.out_h - ph, dh), s.out_w = ceil_div(g.out_w - pw, dw);
      s.in_h = std::max<std::int64_t>(0, ceil_div(g.in_h - p.in_h, dh));
      s.in_w = std::max<std::int64_t>(0, ceil_div(g.in_w - p.in_w, dw));
      s.off_h = floor_div(ph + g.off_h, dh), s.off_w = floor_div(pw + g.off_w, dw);
      out.push_back(p);
    }
  }
  return out;
}

// An image split by residues: for each (a, b) in [0, DH) x [0, DW), in that order, the
// sub-images (PLANES, ceil((H - a) / DH), ceil((W - b) / DW)) of rows a, a + DH, ... and columns
// b, b + DW, ..., one after another. One pass over the image splits or merges them all (a pass per
// phase read or wrote every cache line of the image once per phase).
struct Residues {
  std::int64_t planes = 0, h = 0, w = 0, dh = 1, dw = 1;
  std::int64_t rows(std::int64_t a) const { return std::max<std::int64_t>(0, ceil_div(h - a, dh)); }
  std::int64_t cols(std::int64_t b) const { return std::max<std::int64_t>(0, ceil_div(w - b, dw)); }
  // Where sub-image (a, b) starts.
  std::int64_t offset(std::int64_t a, std::int64_t b) const {
    std::int64_t off = 0;
    for (std::int64_t i = 0; i < dh; ++i) {
      for (std::int64_t j = 0; j < dw; ++j) {
        if (i == a && j == b) return off;
        off += planes * rows(i) * cols(j);
      }
    }
    return off;
  }
};

// PHASES (of the correlation G with taps DH x DW apart) with runs merged: consecutive phases of one
// geometry whose sub-images follow one another in the residue buffers of both the input and the
// output are one correlation over a batch that many times larger. One call then has enough tiles
// for each thread to run its own blocks, where a call per phase made the threads share each block
// and wait at every one (with dilation 2 and an even offset, the four phases of a 56x56 image are
// one correlation of 4N 28x28 images).
std::vector<Phase> merge_phases(const std::vector<Phase>& phases, const WinogradGeometry& g,
                                std::int64_t dh, std::int64_t dw) {
  const Residues in_res{g.batch * g.in_channels, g.in_h, g.in_w, dh, dw};
  const Residues out_res{g.batch * g.out_channels, g.out_h, g.out_w, dh, dw};
  const auto same_problem = [](const WinogradGeometry& a, const WinogradGeometry& b) {
    return a.in_channels == b.in_channels && a.out_channels == b.out_channels && a.in_h == b.in_h &&
           a.in_w == b.in_w && a.out_h == b.out_h && a.out_w == b.out_w && a.off_h == b.off_h &&
           a.off_w == b.off_w;
  };
  std::vector<Phase> out;
  std::int64_t count = 0;  // phases in the run at the back of OUT
  for (const Phase& p : phases) {
    if (!out.empty()) {
      Phase& run = out.back();
      const WinogradGeometry& r = run.geo;
      const std::int64_t in_size = g.batch * r.in_channels * r.in_h * r.in_w;
      const std::int64_t out_size = g.batch * r.out_channels * r.out_h * r.out_w;
      if (same_problem(r, p.geo) &&
          in_res.offset(p.in_h, p.in_w) == in_res.offset(run.in_h, run.in_w) + count * in_size &&
          out_res.offset(p.out_h, p.out_w) ==
              out_res.offset(run.out_h, run.out_w) + count * out_size) {
        ++count;
        run.geo.batch = count * g.batch;
        continue;
      }
    }
    out.push_back(p);
    count = 1;
  }
  return out;
}

// SPLIT: DENSE (the sub-images of R) from SPARSE (the image); otherwise the other way round.
template <typename T>
void move_residues(bool split, const Residues& r, T* dense, T* sparse) {
  std::vector<std::int64_t> offsets;
  for (std::int64_t a = 0; a < r.dh; ++a) {
    for (std::int64_t b = 0; b < r.dw; ++b) offsets.push_back(r.offset(a, b));
  }
  const int threads = r.planes * r.h * r.w < (std::int64_t{1} << 15) ? 1 : cpu_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t pl = 0; pl < r.planes; ++pl) {
    for (std::int64_t y = 0; y < r.h; ++y) {
      const std::int64_t a = y % r.dh, t = y / r.dh;
      T* row = sparse + (pl * r.h + y) * r.w;
      for (std::int64_t b = 0; b < std::min(r.dw, r.w); ++b) {
        const std::int64_t n = r.cols(b);
        T* d = dense + offsets[static_cast<std::size_t>(a * r.dw + b)] + (pl * r.rows(a) + t) * n;
        // Dilation 2 (the common one) with a constant stride, which the compiler vectorizes.
        if (split && r.dw == 2) {
          for (std::int64_t j = 0; j < n; ++j) d[j] = row[b + j * 2];
        } else if (split) {
          for (std::int64_t j = 0; j < n; ++j) d[j] = row[b + j * r.dw];
        } else if (r.dw == 2) {
          for (std::int64_t j = 0; j < n; ++j) row[b + j * 2] = d[j];
        } else {
          for (std::int64_t j = 0; j < n; ++j) row[b + j * r.dw] = d[j];
        }
      }
    }
  }
}

// What a call needs besides the data: the correlation it computes and the result's shape.
struct Prepared {
  WinogradGeometry geo;
  // The polyphase parts of a dilated correlation, runs of them merged (merge_phases); empty
  // otherwise.
  std::vector<Phase> phases;
  // A 3-D convolution (3x3 taps in the plane, GEO the plane's correlation with batch the images):
  // one 2-D correlation per depth tap over the (image, depth slice) pairs it reads, added up.
  // Output slice z reads input slice z + off + i * dilation at depth tap i. TAPS 0: a 2-D one.
  struct Depth {
    std::int64_t taps = 0, in = 0, out = 0, off = 0, dilation = 1;
  } depth;
  Shape result;
  bool empty = false;  // no batch, channels or filters: the result is zeros
};

// The phases of PREP that read some input (the others' outputs are zeros).
std::vector<const Phase*> live_phases(const Prepared& prep) {
  std::vector<const Phase*> out;
  for (const Phase& ph : prep.phases) {
    if (ph.geo.in_h > 0 && ph.geo.in_w > 0) out.push_back(&ph);
  }
  return out;
}

class WinogradKernel final : public ConcreteConvKernel<Prepared> {
 public:
  WinogradKernel(std::string name, ConvDirection direction, ConvParams params)
      : ConcreteConvKernel(std::move(name), direction, std::move(params), winograd_requirements()) {
  }

  bool writes_given_outputs() const override { return true; }

 protected:
  Prepared prepare(const ConvProblem& q) const override {
    if (auto why = winograd_declines(direction(), params())) {
      throw UnsupportedError(fmt::format("{}: {}", name(), *why));
    }
    // The plane's axes: the last two (3-D: after the depth).
    const std::size_t y = q.kernel_spatial.size() == 3 ? 1 : 0, x = y + 1;
    const std::int64_t kh = q.kernel_spatial[y], kw = q.kernel_spatial[x];
    if (kh != 3 || kw != 3) {
      throw UnsupportedError(fmt::format("{}: {}; use oneDNN (conv_dnn) or CorrMM (conv_gemm)",
                                         name(), kernel_size_reason(kh, kw)));
    }
    Prepared out;
    out.result = q.result;
    out.empty = q.batch == 0 || q.channels == 0 || q.filters == 0;
    WinogradGeometry& g = out.geo;
    g.batch = q.batch;
    if (direction() != ConvDirection::grad_inputs) {
      // The forward correlation; the weight gradient is its gradient with respect to the filters.
      g.in_channels = q.channels;
      g.out_channels = q.filters;
      g.in_h = q.image_spatial[y], g.in_w = q.image_spatial[x];
      g.out_h = q.output_spatial[y], g.out_w = q.output_spatial[x];
      g.off_h = -q.pad_before[y], g.off_w = -q.pad_before[x];
    } else {
      // The input gradient reads the output gradient through the taps turned around: image row y
      // takes output rows y + pad - 2 .. y + pad.
      g.in_channels = q.filters;
      g.out_channels = q.channels;
      g.in_h = q.output_spatial[y], g.in_w = q.output_spatial[x];
      g.out_h = q.image_spatial[y], g.out_w = q.image_spatial[x];
      g.off_h = q.pad_before[y] - 2 * q.dilation[y], g.off_w = q.pad_before[x] - 2 * q.dilation[x];
    }
    if (y == 1) {
      // Depth: the input gradient reads the output gradient through the taps turned around.
      Prepared::Depth& d = out.depth;
      d.taps = q.kernel_spatial[0];
      d.dilation = q.dilation[0];
      const bool gradient = direction() == ConvDirection::grad_inputs;
      d.in = gradient ? q.output_spatial[0] : q.image_spatial[0];
      d.out = gradient ? q.image_spatial[0] : q.output_spatial[0];
      d.off = gradient ? q.pad_before[0] - (d.taps - 1) * d.dilation : -q.pad_before[0];
      out.empty = out.empty || d.taps == 0;
      return out;
    }
    if (!out.empty && (q.dilation[0] != 1 || q.dilation[1] != 1)) {
      out.phases =
          merge_phases(phases_of(g, q.dilation[0], q.dilation[1]), g, q.dilation[0], q.dilation[1]);
    }
    return out;
  }

  std::optional<std::int64_t> workspace_for(const Prepared& prep, DType dtype, const Shape& a,
                                            const Shape& b, const Shape& spatial) const override {
    (void)a, (void)b, (void)spatial;
    if (prep.empty || shape_numel(prep.result) == 0) return 0;
    return dtype == DType::float64 ? workspace_of<double>(prep) : workspace_of<float>(prep);
  }

  Tensor execute(const Prepared& prep, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    const DType dtype = a.dtype();
    if (prep.empty) return Tensor::zeros(dtype, prep.result);
    Tensor out = result_buffer(dtype, prep.result);
    if (out.numel() == 0) return out;
    if (direction() == ConvDirection::grad_weights)
      return weight_gradient(prep, a, b, spatial, out);
    const bool forward = direction() == ConvDirection::forward;
    const Tensor weights = (forward ? b : a).contiguous();
    const Tensor data = (forward ? a : b).contiguous();
    const WinogradGeometry& g = prep.geo;
    // The correlation's taps: the stored ones for a forward cross-correlation, turned around for
    // a convolution (filter_flip); the input gradient turns them around once more.
    const bool reverse = forward == params().filter_flip;
    bool finite = false;
    auto compute_as = [&]<typename T>() {
      // The blocks of transformed filters and the blocks' data: the memory plan's workspace when
      // the call runs with one.
      const Sizes sizes = sizes_of<T>(prep);
      Workspace workspace(workspace_of<T>(prep));
      Tensor work = workspace.take(dtype, {sizes.work});
      const T* w = weights.data<T>();
      if (prep.depth.taps > 0) {
        Tensor tap = workspace.take(dtype, {sizes.filters});
        finite = correlate_depth<T>(prep, data.data<T>(), w, out.data<T>(), tap.data<T>(),
                                    work.data<T>());
        return;
      }
      if (prep.phases.empty()) {
        finite = winograd_correlate<T>(g, data.data<T>(), w, !forward, reverse, out.data<T>(),
                                       work.data<T>());
        return;
      }
      Tensor in_phase = workspace.take(dtype, {sizes.in_phase});
      Tensor out_phase = workspace.take(dtype, {sizes.out_phase});
      const std::int64_t dh = params().dilation[0], dw = params().dilation[1];
      const Residues in_res{g.batch * g.in_channels, g.in_h, g.in_w, dh, dw};
      const Residues out_res{g.batch * g.out_channels, g.out_h, g.out_w, dh, dw};
      move_residues<T>(true, in_res, in_phase.data<T>(), const_cast<T*>(data.data<T>()));
      finite = true;
      for (const Phase& ph : prep.phases) {
        const WinogradGeometry& s = ph.geo;
        T* dense_out = out_phase.data<T>() + out_res.offset(ph.out_h, ph.out_w);
        if (s.in_h == 0 || s.in_w == 0) {
          std::fill(dense_out, dense_out + s.batch * s.out_channels * s.out_h * s.out_w, T(0));
          continue;
        }
        const T* dense_in = in_phase.data<T>() + in_res.offset(ph.in_h, ph.in_w);
        // (Each phase transforms the filters again: dilated layers' forward and input gradient are
        // not in the default rule.)
        finite =
            winograd_correlate<T>(s, dense_in, w, !forward, reverse, dense_out, work.data<T>()) &&
            finite;
      }
      move_residues<T>(false, out_res, out_phase.data<T>(), out.data<T>());
    };
    if (dtype == DType::float32) {
      compute_as.operator()<float>();
    } else {
      compute_as.operator()<double>();
    }
    if (finite) return out;
    // An Inf or NaN spread over whole tiles (or the transforms overflowed): CorrMM's path gives
    // what the reference gives.
    ++recomputed;
    return forward ? corrmm_forward(params(), a, b) : corrmm_grad_inputs(params(), a, b, spatial);
  }

 private:
  // The elements of the pieces of execute()'s Workspace for PREP in T: the correlations' own
  // (the largest over the phases), and for a dilated one the gathered phases' input, output (or
  // output gradient) and, for the weight gradient, one phase's filter gradient.
  struct Sizes {
    std::int64_t work = 0, in_phase = 0, out_phase = 0, filters = 0;
  };
  template <typename T>
  Sizes sizes_of(const Prepared& prep) const {
    const bool weights = direction() == ConvDirection::grad_weights;
    const auto work_of = [&](const WinogradGeometry& g) {
      return weights ? winograd_weights_workspace<T>(g) : winograd_correlate_workspace<T>(g);
    };
    Sizes s;
    if (prep.depth.taps > 0) {
      // The largest over the taps (a narrower call may take more: with one block of tiles the
      // weight gradient gives each thread its own sums), and one tap's filters (or gradient).
      for (std::int64_t i = 0; i < prep.depth.taps; ++i) {
        const auto [z0, z1, shift] = depth_range(prep, i);
        if (z1 > z0) s.work = std::max(s.work, work_of(depth_geometry(prep, z0, z1, shift)));
      }
      s.filters = prep.geo.in_channels * prep.geo.out_channels * 9;
      return s;
    }
    if (prep.phases.empty()) {
      s.work = work_of(prep.geo);
      return s;
    }
    for (const Phase& ph : prep.phases) {
      const WinogradGeometry& g = ph.geo;
      if (g.in_h > 0 && g.in_w > 0) s.work = std::max(s.work, work_of(g));
    }
    // The residue sub-images of the input and of the output (or output gradient), all at once.
    const WinogradGeometry& g = prep.geo;
    s.in_phase = g.batch * g.in_channels * g.in_h * g.in_w;
    s.out_phase = g.batch * g.out_channels * g.out_h * g.out_w;
    if (weights && live_phases(prep).size() > 1) {
      s.filters = prep.geo.in_channels * prep.geo.out_channels * 9;
    }
    return s;
  }

  // The 2-D correlation of PREP's depth tap reading input slices Z + SHIFT for the output slices Z
  // in [Z0, Z1) of every image: its batch the (image, slice) pairs, its planes where they lie in
  // the 3-D tensors.
  static WinogradGeometry depth_geometry(const Prepared& prep, std::int64_t z0, std::int64_t z1,
                                         std::int64_t shift) {
    const Prepared::Depth& d = prep.depth;
    WinogradGeometry s = prep.geo;
    const std::int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
    s.batch = prep.geo.batch * (z1 - z0);
    s.batch_inner = z1 - z0;
    s.in_planes = {(z0 + shift) * in_plane, s.in_channels * d.in * in_plane, in_plane,
                   d.in * in_plane};
    s.out_planes = {z0 * out_plane, s.out_channels * d.out * out_plane, out_plane,
                    d.out * out_plane};
    return s;
  }

  // The output slices [Z0, Z1) that depth tap I of PREP reads input for, and the shift from an
  // output slice to the input slice it reads; Z1 <= Z0 when none.
  static std::tuple<std::int64_t, std::int64_t, std::int64_t> depth_range(const Prepared& prep,
                                                                          std::int64_t i) {
    const Prepared::Depth& d = prep.depth;
    const std::int64_t shift = d.off + i * d.dilation;
    return {std::max<std::int64_t>(0, -shift), std::min(d.out, d.in - shift), shift};
  }

  // Which of W's depth taps the correlation's tap I applies: the stored order for a forward
  // cross-correlation, turned around for a convolution (filter_flip); the input gradient turns
  // it around once more (and the weight gradient's taps are the forward's).
  std::int64_t stored_tap(const Prepared& prep, std::int64_t i) const {
    const bool turned = (direction() == ConvDirection::grad_inputs) != params().filter_flip;
    return turned ? prep.depth.taps - 1 - i : i;
  }

  // OUT = the 3-D correlation of PREP (forward or input gradient) of DATA with W (filters,
  // channels, taps, 3, 3): the depth taps' 2-D correlations added up, each tap's filters copied
  // into TAP first. Returns false when some value is not finite.
  template <typename T>
  bool correlate_depth(const Prepared& prep, const T* data, const T* w, T* out, T* tap,
                       T* work) const {
    const WinogradGeometry& g = prep.geo;
    const Prepared::Depth& d = prep.depth;
    const bool forward = direction() == ConvDirection::forward;
    const bool reverse = forward == params().filter_flip;
    // W's filters and channels: the correlation's output and input channels, or (the input
    // gradient) the other way round.
    const std::int64_t pairs = g.in_channels * g.out_channels;
    const std::int64_t total = g.batch * g.out_channels * d.out * g.out_h * g.out_w;
    bool finite = true, written = false;
    for (std::int64_t i = 0; i < d.taps; ++i) {
      const auto [z0, z1, shift] = depth_range(prep, i);
      if (z1 <= z0) continue;
      const std::int64_t t = stored_tap(prep, i);
      for (std::int64_t f = 0; f < pairs; ++f)
        std::copy_n(w + (f * d.taps + t) * 9, 9, tap + f * 9);
      WinogradGeometry s = depth_geometry(prep, z0, z1, shift);
      // The first tap writes the output where it reads every slice; else it starts from zeros.
      const bool every_slice = z0 == 0 && z1 == d.out;
      if (!written && !every_slice) std::fill(out, out + total, T(0));
      s.accumulate = written || !every_slice;
      written = true;
      finite = winograd_correlate<T>(s, data, tap, !forward, reverse, out, work) && finite;
    }
    if (!written) std::fill(out, out + total, T(0));  // every tap reads only padding
    return finite;
  }

  // OUT (filters, channels, taps, 3, 3) = the gradient of PREP's forward 3-D correlation with
  // respect to its filters, from the image IN and the output gradient DY: per depth tap, the 2-D
  // weight gradient over the (image, slice) pairs it reads, computed into TAP and stored into
  // OUT's taps. Returns false when some value is not finite.
  template <typename T>
  bool depth_weight_gradient(const Prepared& prep, const T* in, const T* dy, T* out, T* tap,
                             T* work) const {
    const WinogradGeometry& g = prep.geo;
    const Prepared::Depth& d = prep.depth;
    const std::int64_t pairs = g.in_channels * g.out_channels;
    bool finite = true;
    for (std::int64_t i = 0; i < d.taps; ++i) {
      const auto [z0, z1, shift] = depth_range(prep, i);
      const std::int64_t t = stored_tap(prep, i);
      if (z1 <= z0) {
        for (std::int64_t f = 0; f < pairs; ++f) std::fill_n(out + (f * d.taps + t) * 9, 9, T(0));
        continue;
      }
      const WinogradGeometry s = depth_geometry(prep, z0, z1, shift);
      finite = winograd_correlate_weights<T>(s, in, dy, params().filter_flip, tap, work) && finite;
      for (std::int64_t f = 0; f < pairs; ++f)
        std::copy_n(tap + f * 9, 9, out + (f * d.taps + t) * 9);
    }
    return finite;
  }

  // The bytes execute() takes through its Workspace for PREP in T.
  template <typename T>
  std::int64_t workspace_of(const Prepared& prep) const {
    const auto bytes = [](std::int64_t elements) {
      return elements == 0 ? std::int64_t{0}
                           : workspace_piece_bytes(elements * static_cast<std::int64_t>(sizeof(T)));
    };
    const Sizes s = sizes_of<T>(prep);
    return bytes(s.work) + bytes(s.in_phase) + bytes(s.out_phase) + bytes(s.filters);
  }

  // The gradient of the forward correlation with respect to its filters, from IMAGE and TOPGRAD
  // into OUT; the taps turned around for a convolution (filter_flip).
  Tensor weight_gradient(const Prepared& prep, const Tensor& image, const Tensor& topgrad,
                         const Shape& spatial, Tensor& out) const {
    const Tensor data = image.contiguous();
    const Tensor grad = topgrad.contiguous();
    bool finite = false;
    auto compute_as = [&]<typename T>() {
      const Sizes sizes = sizes_of<T>(prep);
      const DType dtype = out.dtype();
      Workspace workspace(workspace_of<T>(prep));
      Tensor work = workspace.take(dtype, {sizes.work});
      if (prep.depth.taps > 0) {
        Tensor tap = workspace.take(dtype, {sizes.filters});
        finite = depth_weight_gradient<T>(prep, data.data<T>(), grad.data<T>(), out.data<T>(),
                                          tap.data<T>(), work.data<T>());
        return;
      }
      if (prep.phases.empty()) {
        finite = winograd_correlate_weights<T>(prep.geo, data.data<T>(), grad.data<T>(),
                                               params().filter_flip, out.data<T>(), work.data<T>());
        return;
      }
      // The sum over the (merged) phases of each one's filter gradient; a single one writes the
      // result itself.
      Tensor in_phase = workspace.take(dtype, {sizes.in_phase});
      Tensor dy_phase = workspace.take(dtype, {sizes.out_phase});
      Tensor part = workspace.take(dtype, {sizes.filters});
      const WinogradGeometry& g = prep.geo;
      const std::int64_t dh = params().dilation[0], dw = params().dilation[1];
      const Residues in_res{g.batch * g.in_channels, g.in_h, g.in_w, dh, dw};
      const Residues dy_res{g.batch * g.out_channels, g.out_h, g.out_w, dh, dw};
      move_residues<T>(true, in_res, in_phase.data<T>(), const_cast<T*>(data.data<T>()));
      move_residues<T>(true, dy_res, dy_phase.data<T>(), const_cast<T*>(grad.data<T>()));
      T* const total = out.data<T>();
      const std::int64_t filters = g.in_channels * g.out_channels * 9;
      const std::vector<const Phase*> live = live_phases(prep);
      if (live.size() != 1) std::fill(total, total + filters, T(0));
      finite = true;
      for (const Phase* ph : live) {
        T* const dest = live.size() == 1 ? total : part.data<T>();
        finite = winograd_correlate_weights<T>(
                     ph->geo, in_phase.data<T>() + in_res.offset(ph->in_h, ph->in_w),
                     dy_phase.data<T>() + dy_res.offset(ph->out_h, ph->out_w), params().filter_flip,
                     dest, work.data<T>()) &&
                 finite;
        if (dest == total) continue;
        for (std::int64_t i = 0; i < filters; ++i) total[i] += dest[i];
      }
    };
    if (out.dtype() == DType::float32) {
      compute_as.operator()<float>();
    } else {
      compute_as.operator()<double>();
    }
    if (finite) return out;
    ++recomputed;
    return corrmm_grad_weights(params(), image, topgrad, spatial);
  }
};

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial) {
  if (auto why = winograd_declines(direction, params)) {
    throw UnsupportedError(fmt::format("{}: {}", op_name(direction, params.convdim), *why));
  }
  return WinogradKernel(op_name(direction, params.convdim), direction, params)
      .compute(a, b, spatial, /*check_hints=*/false);
}

// The default lowering's rule (measured against oneDNN on the ResNet-50 layers, see
// docs/convolution.md): float32, at least 32 channels on each side of the correlation, and enough
// output tiles that the GEMMs are wide and reading the transformed filters (36 x in x out
// elements, once per block of tiles) costs no more than the tiles' own data; on small images
// (res5), at least 32 tiles.
std::optional<std::string> winograd_not_preferred(const ConvSignature& s) {
  if (s.dtype != DType::float32) {
    return fmt::format("dtype {}: the default lowering uses Winograd for float32 only",
                       dtype_name(s.dtype));
  }
  // Dilated layers in every direction, as one correlation per run of phases (merge_phases).
  // Measured on the suite's dilated_3x3_d2 (64 channels, 56x56, dilation 2, N=8, 2 threads) on
  // an AVX-512 Zen 4: about 5 / 5 / 5.6 ms forward / input gradient / weight gradient against
  // oneDNN's 8.4 / 8.3 / 9.2-10; with oneDNN held to AVX2 (DNNL_MAX_CPU_ISA) and OpenBLAS's
  // Haswell kernels, 5.6-6.3 / 5.3-6.3 / 5.6 against 8.8 / 8.8-9.1 / 14-20. (A call per phase
  // had the threads share each of its blocks and wait at every one: on two threads of an AVX2
  // Zen 3 the forward and input gradient were then slower than oneDNN.) The phases merge where the
  // padding before is a multiple of the dilation (valid, half, full or such pads); the forward and
  // input gradient of other pads, a correlation per phase, stay with oneDNN.
  // (In 3-D the depth's dilation spaces the depth taps' correlations and makes no phases.)
  if (s.params.convdim == 2 && s.params.dilated() && s.direction != ConvDirection::grad_weights) {
    for (std::size_t a = 0; a < s.params.border.size() && a < s.params.dilation.size(); ++a) {
      const std::int64_t d = s.params.dilation[a];
      const std::int64_t before = s.params.border[a].resolve(2 * d + 1).first;
      if (before % d != 0) {
        return fmt::format(
            "dilation {} with {} padding before on axis {}: the phases are separate "
            "correlations, too small to share between threads",
            d, before, a);
      }
    }
  }
  // The correlation's input (image or output gradient) and the kernel (or, for the weight
  // gradient, the image and the output gradient: their channel counts), with static sizes.
  const bool forward = s.direction == ConvDirection::forward;
  const bool weights = s.direction == ConvDirection::grad_weights;
  const std::size_t data_input = forward ? 0 : 1, kernel_input = forward ? 1 : 0;
  if (s.inputs.size() <= std::max(data_input, kernel_input)) return "no data input";
  const StaticShape& data = s.inputs[data_input].dims;
  const StaticShape& kernel = s.inputs[kernel_input].dims;
  const std::size_t rank = s.params.convdim == 3 ? 5 : 4;
  if (data.size() != rank || kernel.size() != rank || !data[0] || !data[rank - 2] ||
      !data[rank - 1] || !kernel[0] || !kernel[1] || (weights && !data[1]) ||
      (rank == 5 && !data[2])) {
    return std::string("sizes unknown at compile time: Winograd's gain depends on them");
  }
  // The weight gradient's GEMMs are [filters x tiles] x [tiles x channels]: the same sizes as the
  // forward's, with the tiles as the inner dimension.
  const std::int64_t filters = weights ? *data[1] : *kernel[0];
  const std::int64_t channels = *kernel[1];
  const std::int64_t in = forward || weights ? channels : filters;
  const std::int64_t out = forward || weights ? filters : channels;
  constexpr std::int64_t kMinChannels = 32;
  if (in < kMinChannels || out < kMinChannels) {
    return fmt::format(
        "{} input and {} output channels: below {}, the transforms cost more than Winograd saves",
        in, out, kMinChannels);
  }
  // The output tiles (the output gradient's spatial size stands for the image's), over the
  // phases of a dilated correlation.
  const auto axis_tiles = [](std::int64_t n, std::int64_t d) {
    std::int64_t t = 0;
    for (std::int64_t p = 0; p < std::min(d, n); ++p) t += ceil_div(ceil_div(n - p, d), 4);
    return t;
  };
  const std::int64_t dh = s.params.dilation.size() == 2 ? s.params.dilation[0] : 1;
  const std::int64_t dw = s.params.dilation.size() == 2 ? s.params.dilation[1] : 1;
  // In 3-D (dilated along the depth only: dilation in the plane is declined) each depth slice of
  // the data stands for an output slice: a depth tap's correlation runs over the (image, slice)
  // pairs.
  const std::int64_t slices = rank == 5 ? *data[2] : 1;
  const std::int64_t tiles =
      *data[0] * slices * axis_tiles(*data[rank - 2], dh) * axis_tiles(*data[rank - 1], dw);
  std::int64_t wanted = in * out / (in + out);
  // Images of at most 2x2 tiles (ResNet-50's res5, 7x7): oneDNN has too few positions to block
  // over, and from 32 tiles on Winograd is faster even though it reads its transformed filters
  // (36 MiB at 512 x 512 channels) for that few tiles. Measured on res5 (512 channels, 7x7, CPU
  // time per call, one thread, Zen 3): at N=8 (32 tiles) Winograd 21 / 27 / 35 ms forward /
  // input gradient / weight gradient against oneDNN's 36 / 35 / 49; at N=4 (16 tiles) 24 / 20 /
  // 24 against 18 / 16 / 23: the filters' transform then costs more than the multiplies saved.
  constexpr std::int64_t kSmallImageTiles = 32;
  if (*data[rank - 2] <= 2 * kWinogradTile && *data[rank - 1] <= 2 * kWinogradTile) {
    wanted = std::min(wanted, kSmallImageTiles);
  }
  if (tiles < wanted) {
    return fmt::format(
        "{} output tiles for {} x {} channels: too few to pay for the transformed filters "
        "(at least {})",
        tiles, in, out, wanted);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> winograd_declines(ConvDirection direction, const ConvParams& params) {
  (void)direction;  // every direction is implemented
  if (params.convdim != 2 && params.convdim != 3) {
    return fmt::format(
        "{}-D convolution: Winograd F(4x4, 3x3) is implemented in 2-D and 3-D (3x3 in the plane)",
        params.convdim);
  }
  if (params.convdim == 3 && (params.dilation[1] != 1 || params.dilation[2] != 1)) {
    return fmt::format(
        "3-D convolution with dilation ({}): Winograd takes dilated taps in 3-D along the depth "
        "only",
        fmt::join(params.dilation, ", "));
  }
  if (params.unshared) {
    return std::string(
        "unshared kernels: Winograd needs one kernel shared by every output position");
  }
  if (params.num_groups != 1) {
    return fmt::format("groups {}: Winograd is implemented for one group", params.num_groups);
  }
  if (params.strided()) {
    return fmt::format("stride ({}): Winograd F(4x4, 3x3) computes stride-1 convolutions",
                       fmt::join(params.subsample, ", "));
  }
  // Dilations are taken: a dilated correlation is one undilated correlation per phase.
  return std::nullopt;
}

WinogradConv::WinogradConv(ConvDirection direction, ConvParams params)
    : ConcreteConv(direction, std::move(params)) {
  if (auto why = winograd_declines(this->direction(), this->params())) {
    throw UnsupportedError(
        fmt::format("{}: {}", op_name(this->direction(), this->params().convdim), *why));
  }
}

std::string WinogradConv::name() const {
  return op_name(direction(), params().convdim);
}

ConcreteConvRequirements WinogradConv::requirements() const {
  return winograd_requirements();
}

std::shared_ptr<ConcreteConvKernelBase> WinogradConv::make_conv_kernel(std::string name) const {
  return std::make_shared<WinogradKernel>(std::move(name), direction(), params());
}

Tensor winograd_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel) {
  return run_direction(ConvDirection::forward, params, image, kernel, {});
}

Tensor winograd_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                                 const Tensor& topgrad, const Shape& image_spatial) {
  return run_direction(ConvDirection::grad_inputs, params, kernel, topgrad, image_spatial);
}

Tensor winograd_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                  const Tensor& topgrad, const Shape& kernel_spatial) {
  return run_direction(ConvDirection::grad_weights, params, image, topgrad, kernel_spatial);
}

std::uint64_t winograd_recomputed_calls() {
  return recomputed.load();
}

ConvImplementationHooks winograd_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config&) -> std::optional<std::string> {
    if (s.dtype != DType::float32 && s.dtype != DType::float64) {
      return fmt::format(
          "dtype {}: Winograd computes in float32 and float64 (on the CPU, float16 convolutions "
          "are not supported; cast to float32)",
          dtype_name(s.dtype));
    }
    if (auto why = winograd_declines(s.direction, s.params)) return why;
    // The kernel's spatial size, from its static type (the output's, for the weight gradient)
    // or the kshp hint.
    const std::size_t kernel_input = s.direction == ConvDirection::forward ? 1 : 0;
    if (s.direction != ConvDirection::grad_weights && s.inputs.size() <= kernel_input) {
      return std::string("the node has no kernel input");
    }
    const StaticShape& dims =
        s.direction == ConvDirection::grad_weights ? s.output.dims : s.inputs[kernel_input].dims;
    std::int64_t size[2] = {-1, -1};
    for (int a = 0; a < 2; ++a) {
      const std::size_t axis = dims.size() - 2 + static_cast<std::size_t>(a);
      if (dims.size() >= 2 && dims[axis]) {
        size[a] = *dims[axis];
      } else if (s.params.kshp.size() == 4 && s.params.kshp[2 + a]) {
        size[a] = *s.params.kshp[2 + a];
      }
    }
    if (size[0] < 0 || size[1] < 0) {
      return std::string(
          "kernel size unknown at compile time: Winograd takes 3x3 kernels, and the lowering "
          "must know the size");
    }
    if (size[0] != 3 || size[1] != 3) return kernel_size_reason(size[0], size[1]);
    return std::nullopt;
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs, const Config&) {
    return convgraph::apply(std::make_shared<WinogradConv>(s.direction, s.params), inputs);
  };
  hooks.prefers = [](const ConvSignature& s, const Config&) { return winograd_not_preferred(s); };
  return hooks;
}

}  // namespace convgraph
