// The oneDNN convolution family. Compiled only when oneDNN was found (see CMakeLists.txt).
//
// How a call runs:
//   1. the checks of the common base (ops/concrete_conv.hpp), before anything is written;
//   2. the kernel's cache gives the primitives for these shapes (created on the first call with
//      them, or at compile time when the node's shapes were static);
//   3. weights flipped when filter_flip asks for a convolution (oneDNN correlates), inputs
//      reordered into the layouts the primitive chose, the primitive, the output reordered back
//      to plain NCHW; the weight gradient is flipped afterwards.
// Every temporary buffer comes from Tensor::empty: the caching CPU allocator makes that cheap, so
// buffers are not kept between calls (they would pin memory per node for nothing).
#include "convgraph/ops/cpu/onednn_conv.hpp"

#include "convgraph/ops/conv/conv_problem.hpp"

#include <fmt/format.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/runtime/cpu_threads.hpp"
#include "convgraph/runtime/step_memory.hpp"

namespace convgraph {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

std::atomic<OneDnnLayout> g_layout{OneDnnLayout::automatic};
std::atomic<std::uint64_t> g_primitives_created{0};

std::string op_name(ConvDirection direction, int convdim,
                    OneDnnAlgorithm algorithm = OneDnnAlgorithm::direct) {
  std::string name = algorithm == OneDnnAlgorithm::winograd ? "OneDnnWinogradConv" : "OneDnnConv";
  name += convdim == 3 ? "3d" : "2d";
  if (direction == ConvDirection::grad_inputs) name += "_gradInputs";
  if (direction == ConvDirection::grad_weights) name += "_gradWeights";
  return name;
}

// ---- the process-wide engine and stream ----

// oneDNN's CPU stream is synchronous and keeps no per-execution state, so one stream serves
// every thread; primitives are made thread-safe by giving each execution its own scratchpad
// (scratchpad_mode::user below).
struct Runtime {
  dnnl::engine engine;
  dnnl::stream stream;
};

Runtime& runtime() {
  static Runtime instance = [] {
    try {
      dnnl::engine engine(dnnl::engine::kind::cpu, 0);
      dnnl::stream stream(engine);
      return Runtime{engine, stream};
    } catch (const dnnl::error& e) {
      throw DeviceError(fmt::format("oneDNN: could not create the CPU engine and stream: {} ({})",
                                    e.what(), dnnl_status2str(e.status)));
    }
  }();
  return instance;
}

// Debian's oneDNN runs on OpenMP and sizes its work for omp_get_max_threads() both when a
// primitive is created and when it runs. The "threads" flag (when nonzero) is applied to the
// calling thread for the duration of a call and restored afterwards; the thread count is part of
// the cache key, since a primitive made for one count is tuned for it.
class ScopedOmpThreads {
 public:
  ScopedOmpThreads() : previous_(omp_get_max_threads()) {
    const std::int64_t configured = cpu_threads_flag();
    if (configured > 0 && configured != previous_) {
      omp_set_num_threads(static_cast<int>(configured));
      changed_ = true;
    }
  }
  ~ScopedOmpThreads() {
    if (changed_) omp_set_num_threads(previous_);
  }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int previous_;
  bool changed_ = false;
};

// float32 on the CPU, shared kernels: oneDNN has float64 and float16 convolutions on no CPU we
// target (its f16 needs AVX512-FP16 / AMX), and no locally connected ones. The lowering declines
// the rest, so they are reached only by direct use.
ConcreteConvRequirements onednn_requirements() {
  ConcreteConvRequirements r;
  r.library = "oneDNN";
  r.device = DeviceKind::cpu;
  r.dtypes = {DType::float32};
  r.unshared = false;
  r.advice = "use CorrMM (conv_gemm)";
  return r;
}

// One problem in oneDNN's terms, from the shapes of a call.
struct Problem {
  Shape image;   // (B, C, spatial...)
  Shape kernel;  // (M, C / G, k...)
  Shape output;  // (B, M, o...)
  Shape result;  // the shape of what the call returns (one of the three)
  std::int64_t groups = 1;
  memory::dims strides, dilates, pad_before, pad_after;  // dilates: oneDNN counts d - 1
};

// A checked problem (ops/conv/conv_problem.hpp) in oneDNN's terms.
Problem to_problem(const ConvProblem& cp) {
  Problem pr;
  pr.image = cp.image;
  pr.kernel = cp.kernel;
  pr.output = cp.output;
  pr.result = cp.result;
  pr.groups = cp.groups;
  for (std::size_t i = 0; i < cp.stride.size(); ++i) {
    pr.strides.push_back(cp.stride[i]);
    pr.dilates.push_back(cp.dilation[i] - 1);  // oneDNN counts the gaps
    pr.pad_before.push_back(cp.pad_before[i]);
    pr.pad_after.push_back(cp.pad_after[i]);
  }
  return pr;
}

// ---- primitives ----

// Whether the activations stay plain for this problem under LAYOUT. The automatic rule is what
// the suite's layers measured (docs/convolution.md has the table):
//   - unpadded 1x1 layers are GEMMs on plain data already: blocking them costs two reorders of
//     the activations and gains nothing (10-40% slower), except the strided forward, where
//     oneDNN's blocked 1x1 kernel reads the strided input directly and the GEMM path copies it;
//   - backward-data with fewer than 16 image channels: the blocked diff_src is padded to 16
//     channels, so the stem layers (C = 3) do 5x the work (3-4x slower than the GEMM path);
//   - but with AVX-512, the forward and backward-data of 1x1 layers whose output has at most
//     kOneDnnSmall1x1Positions positions per image run blocked: there the GEMM path gets too few
//     columns per image. On a 2-core AVX-512 Zen 4 with ResNet-50's 7x7 layers at N = 8, oneDNN's
//     blocked 1x1 kernel took 3.6-3.8 ms where its GEMM path took 5.3-6.2 (7.6 against 12.6 for
//     the strided 1024 -> 2048 input gradient), and the reorders of the activations in and out
//     0.03-0.55 ms; at 14x14 the two were within the reorders' cost of each other;
//   - and with AVX-512, the weight gradient of unstrided 1x1 layers over more than
//     kOneDnnSmall1x1Positions and at most kBlockedWeights1x1Positions output positions per image
//     runs blocked too, reorders of the image and output gradient included. On the Zen 4 (N = 8,
//     two runs each) ResNet-50's 14x14 layers took 4.9 against 5.3 ms (1024 -> 256), 4.5 against
//     4.8 (256 -> 1024) and 9.1 against 9.8 (1024 -> 512); the blocked kernel alone, without the
//     reorders, 3.8-3.9 against 4.8-5.4. At 28x28 and 56x56 the reorders ate the gain (0.86-0.98
//     of the plain path's speed, 1.17 for 512 -> 128, which CorrMM takes), and strided layers
//     were 0.82-0.87.
constexpr std::int64_t kBlockedWeights1x1Positions = 14 * 14;

bool use_plain(ConvDirection direction, const Problem& pr, OneDnnLayout layout) {
  if (layout != OneDnnLayout::automatic) return layout == OneDnnLayout::plain;
  bool unpadded_1x1 = true;
  bool unit_stride = true;
  std::int64_t positions = 1;
  for (std::size_t a = 0; a < pr.strides.size(); ++a) {
    unpadded_1x1 =
        unpadded_1x1 && pr.kernel[2 + a] == 1 && pr.pad_before[a] == 0 && pr.pad_after[a] == 0;
    unit_stride = unit_stride && pr.strides[a] == 1;
    positions *= pr.output[2 + a];
  }
  if (unpadded_1x1 && onednn_runs_avx512()) {
    const bool small = positions <= kOneDnnSmall1x1Positions;
    const bool blocked = direction == ConvDirection::grad_weights
                             ? unit_stride && !small && positions <= kBlockedWeights1x1Positions
                             : small && pr.image[1] >= 16;
    if (blocked) return false;
  }
  if (unpadded_1x1 && (unit_stride || direction != ConvDirection::forward)) return true;
  return direction == ConvDirection::grad_inputs && pr.image[1] < 16;
}

// One argument of the primitive: the user's plain layout, the primitive's, and the reorder
// between them when they differ.
struct Argument {
  int role = 0;  // DNNL_ARG_*
  memory::desc user, inner;
  std::optional<dnnl::reorder> reorder;
};

// What a kernel keeps per combination of input shapes, thread count, layout policy and epilogue.
struct Compiled {
  Shape a, b, spatial;
  OneDnnLayouts layouts;
  int threads = 0;
  OneDnnLayout layout = OneDnnLayout::automatic;
  ConvEpilogue epilogue;
  Problem problem;
  dnnl::primitive conv;
  Argument in_a, in_b, out;
  // With a residual: its layout, and the reorder into the primitive's output layout (where the
  // sum post-op adds it) when the two differ; when they agree it is copied.
  memory::desc residual_user;
  std::optional<dnnl::reorder> residual_in;
  memory::desc bias;              // the bias vector's, with a bias
  std::size_t scratch_bytes = 0;  // the largest scratchpad of the conv and the reorders
  std::string implementation;     // oneDNN's impl_info_str, and the layouts
};

memory::dims to_dims(const Shape& shape) {
  return memory::dims(shape.begin(), shape.end());
}

// Weights as oneDNN wants them: (G, M / G, C / G, k...) when grouped, which is the same memory
// as our (M, C / G, k...).
memory::desc plain_weights(const Problem& pr) {
  const bool grouped = pr.groups > 1;
  const bool three_d = pr.strides.size() == 3;
  memory::dims dims;
  if (grouped) {
    dims = {pr.groups, pr.kernel[0] / pr.groups};
    dims.insert(dims.end(), pr.kernel.begin() + 1, pr.kernel.end());
  } else {
    dims = to_dims(pr.kernel);
  }
  const Tag tag =
      three_d ? (grouped ? Tag::goidhw : Tag::oidhw) : (grouped ? Tag::goihw : Tag::oihw);
  return memory::desc(dims, memory::data_type::f32, tag);
}

memory::desc with_tag(const memory::desc& plain, Tag tag) {
  return memory::desc(plain.dims(), memory::data_type::f32, tag);
}

// oneDNN's tag for a blocked LAYOUT of an activation (2-D or 3-D convolution).
Tag blocked_tag(Layout layout, bool three_d) {
  if (layout == Layout::blocked_c16) return three_d ? Tag::nCdhw16c : Tag::nChw16c;
  return three_d ? Tag::nCdhw8c : Tag::nChw8c;
}

// The activation descriptor of USER_PLAIN's dims in LAYOUT: the plain one, or the blocked tag.
memory::desc in_layout(const memory::desc& user_plain, Layout layout, bool three_d) {
  return layout == Layout::logical ? user_plain
                                   : with_tag(user_plain, blocked_tag(layout, three_d));
}

// Our Layout for an activation descriptor MD of logical shape SHAPE: logical for the plain
// order, the blocked layout for oneDNN's nChw8c / nChw16c when the shape fits it unpadded,
// std::nullopt for anything else.
std::optional<Layout> layout_of(const memory::desc& md, const Shape& shape, bool three_d) {
  const memory::desc plain(to_dims(shape), memory::data_type::f32,
                           three_d ? Tag::ncdhw : Tag::nchw);
  if (md == plain) return Layout::logical;
  for (const Layout l : {Layout::blocked_c8, Layout::blocked_c16}) {
    if (layout_fits(l, shape) && md == with_tag(plain, blocked_tag(l, three_d))) return l;
  }
  return std::nullopt;
}

std::string layout_name(const memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  if (d.format_kind != dnnl_blocked) return "?";
  const auto& blocking = d.format_desc.blocking;
  if (blocking.inner_nblks == 0) return "plain";
  std::string s = "blocked";
  for (int k = 0; k < blocking.inner_nblks; ++k) {
    s += fmt::format("{}{}", k == 0 ? ":" : "x", blocking.inner_blks[k]);
  }
  return s;
}

// The forward's epilogue as oneDNN attributes: the bias is the primitive's own argument; the
// residual a sum post-op (the output buffer holds the residual when the primitive runs: it adds
// conv + bias to it), then ReLU as an eltwise post-op, in that order as the graph had them.
dnnl::primitive_attr epilogue_attr(const ConvEpilogue& epilogue) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops ops;
  if (epilogue.residual) ops.append_sum(1.0f);
  if (epilogue.relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  if (ops.len() > 0) attr.set_post_ops(ops);
  return attr;
}

// Creates the primitives for PR (EPILOGUE: the forward's). dnnl::error propagates to the caller,
// which names the problem.
std::shared_ptr<Compiled> compile_problem(ConvDirection direction, const Problem& pr,
                                          OneDnnLayout layout, const ConvEpilogue& epilogue,
                                          const OneDnnLayouts& layouts, OneDnnAlgorithm algorithm) {
  Runtime& rt = runtime();
  const bool three_d = pr.strides.size() == 3;
  const Tag act = three_d ? Tag::ncdhw : Tag::nchw;
  // The layouts the node was given for the primitive's source and destination (in a gradient,
  // their gradients): those are the user's, bound to the primitive as they are.
  const Layout src_layout = direction == ConvDirection::grad_inputs ? layouts.out : layouts.a;
  const Layout dst_layout = direction == ConvDirection::forward ? layouts.out : layouts.b;
  const memory::desc src_plain(to_dims(pr.image), memory::data_type::f32, act);
  const memory::desc dst_plain(to_dims(pr.output), memory::data_type::f32, act);
  const memory::desc src_user = in_layout(src_plain, src_layout, three_d);
  const memory::desc dst_user = in_layout(dst_plain, dst_layout, three_d);
  const memory::desc wei_user = plain_weights(pr);
  // A node given blocked layouts runs blocked whatever the policy says.
  // oneDNN's Winograd kernels work in blocked layouts only.
  const bool winograd = algorithm == OneDnnAlgorithm::winograd;
  const bool plain = !winograd && !layouts.any_blocked() && use_plain(direction, pr, layout);
  const dnnl::algorithm alg =
      winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  const memory::desc src_md =
      plain || src_layout != Layout::logical ? src_user : with_tag(src_user, Tag::any);
  const memory::desc dst_md =
      plain || dst_layout != Layout::logical ? dst_user : with_tag(dst_user, Tag::any);
  // The weights are small: letting oneDNN choose their layout costs little in either mode.
  const memory::desc wei_md = with_tag(wei_user, Tag::any);

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const bool with_epilogue = direction == ConvDirection::forward && !epilogue.empty();
  const memory::desc bias_md({pr.output[1]}, memory::data_type::f32, Tag::a);
  const dnnl::convolution_forward::desc fwd_desc =
      with_epilogue && epilogue.bias
          ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src_md, wei_md,
                                            bias_md, dst_md, pr.strides, pr.dilates, pr.pad_before,
                                            pr.pad_after)
          : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src_md, wei_md,
                                            dst_md, pr.strides, pr.dilates, pr.pad_before,
                                            pr.pad_after);
  const dnnl::convolution_forward::primitive_desc fwd_pd(
      fwd_desc, with_epilogue ? epilogue_attr(epilogue) : attr, rt.engine);

  auto result = std::make_shared<Compiled>();
  Compiled& c = *result;
  c.problem = pr;
  c.layout = layout;
  c.layouts = layouts;
  c.epilogue = with_epilogue ? epilogue : ConvEpilogue{};
  if (c.epilogue.bias) c.bias = bias_md;
  memory::desc scratch;
  std::string impl;  // copied: the string belongs to the primitive descriptor
  switch (direction) {
    case ConvDirection::forward:
      c.conv = dnnl::convolution_forward(fwd_pd);
      c.in_a = {DNNL_ARG_SRC, src_user, fwd_pd.src_desc(), std::nullopt};
      c.in_b = {DNNL_ARG_WEIGHTS, wei_user, fwd_pd.weights_desc(), std::nullopt};
      c.out = {DNNL_ARG_DST, dst_user, fwd_pd.dst_desc(), std::nullopt};
      scratch = fwd_pd.scratchpad_desc();
      impl = fwd_pd.impl_info_str();
      break;
    case ConvDirection::grad_inputs: {
      const dnnl::convolution_backward_data::desc desc(alg, src_md, wei_md, dst_md, pr.strides,
                                                       pr.dilates, pr.pad_before, pr.pad_after);
      const dnnl::convolution_backward_data::primitive_desc pd(desc, attr, rt.engine, fwd_pd);
      c.conv = dnnl::convolution_backward_data(pd);
      c.in_a = {DNNL_ARG_WEIGHTS, wei_user, pd.weights_desc(), std::nullopt};
      c.in_b = {DNNL_ARG_DIFF_DST, dst_user, pd.diff_dst_desc(), std::nullopt};
      c.out = {DNNL_ARG_DIFF_SRC, src_user, pd.diff_src_desc(), std::nullopt};
      scratch = pd.scratchpad_desc();
      impl = pd.impl_info_str();
      break;
    }
    case ConvDirection::grad_weights: {
      const dnnl::convolution_backward_weights::desc desc(alg, src_md, wei_md, dst_md, pr.strides,
                                                          pr.dilates, pr.pad_before, pr.pad_after);
      const dnnl::convolution_backward_weights::primitive_desc pd(desc, attr, rt.engine, fwd_pd);
      c.conv = dnnl::convolution_backward_weights(pd);
      c.in_a = {DNNL_ARG_SRC, src_user, pd.src_desc(), std::nullopt};
      c.in_b = {DNNL_ARG_DIFF_DST, dst_user, pd.diff_dst_desc(), std::nullopt};
      c.out = {DNNL_ARG_DIFF_WEIGHTS, wei_user, pd.diff_weights_desc(), std::nullopt};
      scratch = pd.scratchpad_desc();
      impl = pd.impl_info_str();
      break;
    }
  }
  c.scratch_bytes = scratch.get_size();
  auto add_reorder = [&](Argument& arg, bool into_primitive) {
    if (arg.inner == arg.user) return;
    const memory::desc& from = into_primitive ? arg.user : arg.inner;
    const memory::desc& to = into_primitive ? arg.inner : arg.user;
    const dnnl::reorder::primitive_desc pd(rt.engine, from, rt.engine, to, attr);
    c.scratch_bytes = std::max(c.scratch_bytes, pd.scratchpad_desc().get_size());
    arg.reorder = dnnl::reorder(pd);
  };
  add_reorder(c.in_a, true);
  add_reorder(c.in_b, true);
  add_reorder(c.out, false);
  if (c.epilogue.residual) {
    c.residual_user = in_layout(dst_plain, layouts.residual, three_d);
    if (c.residual_user != c.out.inner) {
      const dnnl::reorder::primitive_desc pd(rt.engine, c.residual_user, rt.engine, c.out.inner,
                                             attr);
      c.scratch_bytes = std::max(c.scratch_bytes, pd.scratchpad_desc().get_size());
      c.residual_in = dnnl::reorder(pd);
    }
  }
  // The activation whose layout says blocked or plain (the output, or for backward-weights the
  // image), and the weights.
  const Argument& activation = direction == ConvDirection::grad_weights ? c.in_a : c.out;
  const Argument& weights = direction == ConvDirection::forward       ? c.in_b
                            : direction == ConvDirection::grad_inputs ? c.in_a
                                                                      : c.out;
  c.implementation = fmt::format("{}, {} (weights {}){}", impl, layout_name(activation.inner),
                                 layout_name(weights.inner),
                                 c.epilogue.empty() ? "" : ", epilogue " + c.epilogue.str());
  g_primitives_created.fetch_add(1, std::memory_order_relaxed);
  return result;
}

// A byte buffer from the run's workspace.
Tensor byte_buffer(Workspace& workspace, std::size_t bytes) {
  return workspace.take(DType::int8, {static_cast<std::int64_t>(bytes)});
}

// Below this many elements a parallel region costs more than the copy.
constexpr std::int64_t kParallelFlip = std::int64_t{1} << 16;

// Reverses every spatial block (all spatial axes of a row-major kernel at once: flipping each
// axis of a C-order block is reversing the block). FROM == TO reverses in place. Parallel when
// large: the weights of a late layer (512x512x3x3, 9 MB) take a few percent of its convolution.
void flip_blocks(const float* from, float* to, std::int64_t blocks, std::int64_t block_size) {
  const int threads = blocks * block_size >= kParallelFlip ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t i = 0; i < blocks; ++i) {
    const float* src = from + i * block_size;
    float* dst = to + i * block_size;
    if (src == dst) {
      std::reverse(dst, dst + block_size);
    } else {
      std::reverse_copy(src, src + block_size, dst);
    }
  }
}

std::int64_t spatial_size(const Shape& kernel) {
  std::int64_t size = 1;
  for (std::size_t i = 2; i < kernel.size(); ++i) size *= kernel[i];
  return size;
}

// Copies N floats from SRC to DST, in parallel when large.
void copy_floats(const float* src, float* dst, std::int64_t n) {
  const int threads = n >= kParallelFlip ? omp_get_max_threads() : 1;
  const std::int64_t chunk = std::int64_t{1} << 14;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t i = 0; i < n; i += chunk) {
    std::copy(src + i, src + std::min(n, i + chunk), dst + i);
  }
}

// Whether the run flips a copy of the kernel before the primitive reads it.
bool flips_kernel_copy(ConvDirection direction, bool flip, const Problem& pr) {
  return flip && spatial_size(pr.kernel) > 1 && direction != ConvDirection::grad_weights;
}

// The bytes of the workspace run_compiled takes: the flipped kernel, the scratchpad and the
// staging buffers of the reorders, each a piece of its own.
std::int64_t workspace_total(ConvDirection direction, bool flip, const Compiled& c) {
  auto piece = [](std::size_t bytes) {
    return bytes > 0 ? workspace_piece_bytes(static_cast<std::int64_t>(bytes)) : 0;
  };
  std::int64_t total = 0;
  if (flips_kernel_copy(direction, flip, c.problem)) {
    total += piece(static_cast<std::size_t>(shape_numel(c.problem.kernel)) * sizeof(float));
  }
  total += piece(c.scratch_bytes);
  for (const Argument* arg : {&c.in_a, &c.in_b, &c.out}) {
    if (arg->reorder) total += piece(arg->inner.get_size());
  }
  return total;
}

// Runs C on contiguous float32 inputs A and B into OUT (of the problem's result shape), with the
// contiguous tensors EPILOGUE of C's epilogue when it has one.
void run_compiled(ConvDirection direction, bool flip, const Compiled& c, const Tensor& a,
                  const Tensor& b, Tensor& out, const ConvEpilogueArgs& epilogue) {
  Runtime& rt = runtime();
  const Problem& pr = c.problem;
  const std::int64_t taps = spatial_size(pr.kernel);
  const std::int64_t kernel_blocks = pr.kernel[0] * pr.kernel[1];
  Workspace workspace(workspace_total(direction, flip, c));
  // oneDNN correlates: a convolution is a correlation with the kernel flipped.
  Tensor flipped;
  const Tensor* user_a = &a;
  const Tensor* user_b = &b;
  if (flips_kernel_copy(direction, flip, pr)) {
    const Tensor& kernel = direction == ConvDirection::forward ? b : a;
    flipped = workspace.take(DType::float32, kernel.shape());
    flip_blocks(kernel.data<float>(), flipped.data<float>(), kernel_blocks, taps);
    (direction == ConvDirection::forward ? user_b : user_a) = &flipped;
  }
  std::unordered_map<int, memory> args;
  Tensor scratch;
  if (c.scratch_bytes > 0) {
    scratch = byte_buffer(workspace, c.scratch_bytes);
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 memory(memory::desc({static_cast<memory::dim>(c.scratch_bytes)},
                                     memory::data_type::u8, Tag::a),
                        rt.engine, scratch.raw_data()));
  }
  auto with_scratch = [&](const memory& from, const memory& to) {
    std::unordered_map<int, memory> r{{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    if (scratch.defined()) r.emplace(DNNL_ARG_SCRATCHPAD, args.at(DNNL_ARG_SCRATCHPAD));
    return r;
  };
  // Inputs: in place when the primitive reads the plain layout, else through a reorder.
  Tensor staged_a, staged_b, staged_out;
  auto bind_input = [&](const Argument& arg, const Tensor& user, Tensor& staged) {
    const memory user_memory(arg.user, rt.engine, user.raw_data());
    if (!arg.reorder) {
      args.emplace(arg.role, user_memory);
      return;
    }
    staged = byte_buffer(workspace, arg.inner.get_size());
    const memory inner(arg.inner, rt.engine, staged.raw_data());
    arg.reorder->execute(rt.stream, with_scratch(user_memory, inner));
    args.emplace(arg.role, inner);
  };
  bind_input(c.in_a, *user_a, staged_a);
  bind_input(c.in_b, *user_b, staged_b);
  const memory out_user(c.out.user, rt.engine, out.raw_data());
  std::optional<memory> out_inner;
  if (c.out.reorder) {
    staged_out = byte_buffer(workspace, c.out.inner.get_size());
    out_inner.emplace(c.out.inner, rt.engine, staged_out.raw_data());
    args.emplace(c.out.role, *out_inner);
  } else {
    args.emplace(c.out.role, out_user);
  }
  if (c.epilogue.bias) {
    args.emplace(DNNL_ARG_BIAS, memory(c.bias, rt.engine, epilogue.bias.raw_data()));
  }
  // The sum post-op adds to what the output holds: the residual, in the primitive's layout.
  if (c.epilogue.residual) {
    const memory target = out_inner ? *out_inner : out_user;
    if (c.residual_in) {
      const memory residual(c.residual_user, rt.engine, epilogue.residual.raw_data());
      c.residual_in->execute(rt.stream, with_scratch(residual, target));
    } else {
      copy_floats(epilogue.residual.data<float>(), static_cast<float*>(target.get_data_handle()),
                  epilogue.residual.numel());
    }
  }
  c.conv.execute(rt.stream, args);
  if (c.out.reorder) c.out.reorder->execute(rt.stream, with_scratch(*out_inner, out_user));
  rt.stream.wait();
  if (flip && taps > 1 && direction == ConvDirection::grad_weights) {
    flip_blocks(out.data<float>(), out.data<float>(), kernel_blocks, taps);
  }
}

std::string problem_text(const Problem& pr, const ConvParams& p) {
  return fmt::format("image {}, kernel {}, output {}, {}", shape_str(pr.image),
                     shape_str(pr.kernel), shape_str(pr.output), p.str());
}

[[noreturn]] void throw_device_error(const std::string& fn, const char* stage, const Problem& pr,
                                     const ConvParams& p, const dnnl::error& e) {
  throw DeviceError(fmt::format("{}: oneDNN could not {} the convolution ({}): {} (status {})", fn,
                                stage, problem_text(pr, p), e.what(), dnnl_status2str(e.status)));
}

// The kernel of a OneDnnConv node. Its primitives are cached per (input shapes, threads, layout
// policy): shapes need not be known at compile time, and a node run with a few batch sizes keeps
// one set of primitives for each. The cache is small and evicts the least recently used; a mutex
// guards it, while the primitives themselves run outside the lock (each execution has its own
// scratchpad, so concurrent runs of one node are safe).
class OneDnnConvKernel final : public ConcreteConvKernel<Problem> {
 public:
  OneDnnConvKernel(std::string name, ConvDirection direction, ConvParams params,
                   OneDnnLayouts layouts = {}, OneDnnAlgorithm algorithm = OneDnnAlgorithm::direct)
      : ConcreteConvKernel(std::move(name), direction, std::move(params), onednn_requirements()),
        layouts_(layouts),
        algorithm_(algorithm) {}

  // The activation layouts the primitive for these shapes picks (no layouts given).
  OneDnnActivationLayouts activation_layouts(const Shape& a, const Shape& b,
                                             const Shape& spatial) const {
    const Problem pr = prepare(resolve(a, b, spatial));
    const ScopedOmpThreads threads;
    std::shared_ptr<const Compiled> c;
    try {
      c = compiled_for(pr, a, b, spatial, primitive_epilogue(pr));
    } catch (const dnnl::error& e) {
      throw_device_error(name(), "create", pr, params(), e);
    }
    const bool three_d = pr.strides.size() == 3;
    OneDnnActivationLayouts out;
    switch (direction()) {
      case ConvDirection::forward:
        out.a = layout_of(c->in_a.inner, pr.image, three_d);
        out.out = layout_of(c->out.inner, pr.output, three_d);
        break;
      case ConvDirection::grad_inputs:
        out.b = layout_of(c->in_b.inner, pr.output, three_d);
        out.out = layout_of(c->out.inner, pr.image, three_d);
        break;
      case ConvDirection::grad_weights:
        out.a = layout_of(c->in_a.inner, pr.image, three_d);
        out.b = layout_of(c->in_b.inner, pr.output, three_d);
        break;
    }
    return out;
  }

  bool writes_given_outputs() const override { return true; }

  std::string describe(const Shape& a, const Shape& b, const Shape& spatial) const {
    const Problem pr = prepare(resolve(a, b, spatial));
    const ScopedOmpThreads threads;
    try {
      return compiled_for(pr, a, b, spatial, primitive_epilogue(pr))->implementation;
    } catch (const dnnl::error& e) {
      throw_device_error(name(), "create", pr, params(), e);
    }
  }

 protected:
  Problem prepare(const ConvProblem& problem) const override { return to_problem(problem); }

  // The primitives of the node's static shapes, created at compile time; a failure is the
  // call's to report.
  void warm(const Problem& pr, const Shape& a, const Shape& b,
            const Shape& spatial) const override {
    if (shape_numel(pr.result) == 0 || shape_numel(a) == 0 || shape_numel(b) == 0) return;
    try {
      const ScopedOmpThreads threads;
      compiled_for(pr, a, b, spatial, primitive_epilogue(pr));
    } catch (const dnnl::error&) {
    }
  }

  std::optional<std::int64_t> workspace_for(const Problem& pr, DType dtype, const Shape& a,
                                            const Shape& b, const Shape& spatial) const override {
    (void)dtype;  // float32 only
    if (shape_numel(pr.result) == 0 || shape_numel(a) == 0 || shape_numel(b) == 0) return 0;
    try {
      const ScopedOmpThreads threads;
      return workspace_total(direction(), params().filter_flip,
                             *compiled_for(pr, a, b, spatial, primitive_epilogue(pr)));
    } catch (const dnnl::error&) {
      return std::nullopt;  // the call reports it
    }
  }

  Tensor execute(const Problem& pr, const Tensor& a, const Tensor& b,
                 const Shape& spatial) const override {
    // Empty problems: nothing to compute, or sums over nothing (zeros), as in the reference.
    if (shape_numel(pr.result) == 0) return Tensor::empty(DType::float32, pr.result);
    if (a.numel() == 0 || b.numel() == 0) return Tensor::zeros(DType::float32, pr.result);
    return run(pr, a, b, spatial, {}, ConvEpilogue{});
  }

  // The epilogue in the primitive (the bias argument, the sum and ReLU post-ops) where the
  // primitive works in blocked layouts; after it, in one pass, where it works on plain data.
  Tensor execute_epilogue(const Problem& pr, const Tensor& a, const Tensor& b, const Shape& spatial,
                          const ConvEpilogueArgs& args) const override {
    if (shape_numel(pr.result) == 0 || a.numel() == 0 || b.numel() == 0 ||
        primitive_epilogue(pr).empty()) {
      Tensor out = execute(pr, a, b, spatial);
      apply_conv_epilogue(epilogue(), args, out);
      return out;
    }
    ConvEpilogueArgs contiguous;
    if (epilogue().bias) contiguous.bias = args.bias.contiguous();
    if (epilogue().residual) contiguous.residual = args.residual.contiguous();
    return run(pr, a, b, spatial, contiguous, epilogue());
  }

 private:
  // The epilogue the primitive of PR applies: the kernel's, except on plain layouts. There
  // oneDNN 2.6 runs its GEMM-based convolution, whose bias and post-ops cost more than the whole
  // convolution (a 1x1 layer of ResNet-50 at N=8 took 2-3x as long with them): the kernel then
  // applies the epilogue itself, in one parallel pass over the output.
  ConvEpilogue primitive_epilogue(const Problem& pr) const {
    const bool plain = algorithm_ == OneDnnAlgorithm::direct && !layouts_.any_blocked() &&
                       use_plain(direction(), pr, onednn_layout());
    return plain ? ConvEpilogue{} : epilogue();
  }

  // Enough for a node run with a handful of batch sizes under two thread counts.
  static constexpr std::size_t kCacheEntries = 8;

  // The call on non-empty inputs, with EPILOGUE (empty, or the kernel's) and its tensors ARGS.
  Tensor run(const Problem& pr, const Tensor& a, const Tensor& b, const Shape& spatial,
             const ConvEpilogueArgs& args, const ConvEpilogue& epilogue) const {
    const ScopedOmpThreads threads;
    std::shared_ptr<const Compiled> c;
    try {
      c = compiled_for(pr, a.shape(), b.shape(), spatial, epilogue);
    } catch (const dnnl::error& e) {
      throw_device_error(name(), "create", pr, params(), e);
    }
    Tensor out = result_buffer(DType::float32, pr.result);
    try {
      run_compiled(direction(), params().filter_flip, *c, a.contiguous(), b.contiguous(), out,
                   args);
    } catch (const dnnl::error& e) {
      throw_device_error(name(), "run", pr, params(), e);
    }
    return out;
  }

  // The primitives for these shapes, this thread count, the layout policy and EPILOGUE: each is
  // part of the key, since the primitive is made for it.
  std::shared_ptr<const Compiled> compiled_for(const Problem& pr, const Shape& a, const Shape& b,
                                               const Shape& spatial,
                                               const ConvEpilogue& epilogue) const {
    const int threads = omp_get_max_threads();
    const OneDnnLayout layout = onednn_layout();
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      const Compiled& entry = **it;
      if (entry.threads == threads && entry.layout == layout && entry.epilogue == epilogue &&
          entry.a == a && entry.b == b && entry.spatial == spatial) {
        std::rotate(it, it + 1, cache_.end());  // most recently used last
        return cache_.back();
      }
    }
    // Created under the lock: two threads meeting a new shape at once create it once.
    const std::shared_ptr<Compiled> created =
        compile_problem(direction(), pr, layout, epilogue, layouts_, algorithm_);
    created->a = a;
    created->b = b;
    created->spatial = spatial;
    created->threads = threads;
    if (cache_.size() >= kCacheEntries) cache_.erase(cache_.begin());  // least recently used
    cache_.push_back(created);
    return created;
  }

  OneDnnLayouts layouts_;
  OneDnnAlgorithm algorithm_;
  mutable std::mutex mutex_;
  mutable std::vector<std::shared_ptr<const Compiled>> cache_;
};

Tensor run_direction(ConvDirection direction, const ConvParams& params, const Tensor& a,
                     const Tensor& b, const Shape& spatial) {
  return OneDnnConvKernel(op_name(direction, params.convdim), direction, params)
      .compute(a, b, spatial);
}

}  // namespace

std::string OneDnnConv::name() const {
  return op_name(direction(), params().convdim, algorithm_);
}

ConcreteConvRequirements OneDnnConv::requirements() const {
  return onednn_requirements();
}

std::shared_ptr<ConcreteConvKernelBase> OneDnnConv::make_conv_kernel(std::string name) const {
  return std::make_shared<OneDnnConvKernel>(std::move(name), direction(), params(), layouts_,
                                            algorithm_);
}

Tensor onednn_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel) {
  return run_direction(ConvDirection::forward, params, image, kernel, {});
}

Tensor onednn_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                               const Tensor& topgrad, const Shape& image_spatial) {
  return run_direction(ConvDirection::grad_inputs, params, kernel, topgrad, image_spatial);
}

Tensor onednn_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                const Tensor& topgrad, const Shape& kernel_spatial) {
  return run_direction(ConvDirection::grad_weights, params, image, topgrad, kernel_spatial);
}

void set_onednn_layout(OneDnnLayout layout) {
  g_layout.store(layout);
}

OneDnnLayout onednn_layout() {
  return g_layout.load();
}

std::uint64_t onednn_primitives_created() {
  return g_primitives_created.load();
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  const char* runtime_name = v->cpu_runtime == DNNL_RUNTIME_OMP   ? "OpenMP"
                             : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential"
                                                                  : "other";
  return fmt::format("oneDNN {}.{}.{} (cpu runtime: {}, ISA: {})", v->major, v->minor, v->patch,
                     runtime_name, dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
}

std::string onednn_conv_describe(ConvDirection direction, const ConvParams& params, const Shape& a,
                                 const Shape& b, const Shape& spatial, OneDnnAlgorithm algorithm) {
  const OneDnnConvKernel kernel(op_name(direction, params.convdim, algorithm), direction, params,
                                {}, algorithm);
  return kernel.describe(a, b, spatial);
}

bool onednn_runs_avx512() {
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto avx512 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  return (isa & avx512) == avx512;
}

OneDnnActivationLayouts onednn_conv_activation_layouts(ConvDirection direction,
                                                       const ConvParams& params,
                                                       const ConvEpilogue& epilogue, const Shape& a,
                                                       const Shape& b, const Shape& spatial,
                                                       OneDnnAlgorithm algorithm) {
  OneDnnConvKernel kernel(op_name(direction, params.convdim, algorithm), direction, params, {},
                          algorithm);
  kernel.set_epilogue(epilogue);
  return kernel.activation_layouts(a, b, spatial);
}

ConvImplementationHooks onednn_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config& config) -> std::optional<std::string> {
    // dnn.enabled is the switch for the vendor DNN library; on the CPU that is oneDNN. Only
    // False matters here: oneDNN needs no availability probe.
    if (config.get("dnn.enabled") == "False") return std::string("dnn.enabled=False");
    if (s.dtype != DType::float32) {
      return fmt::format("dtype {}: oneDNN convolutions are lowered for float32 only",
                         dtype_name(s.dtype));
    }
    if (s.params.unshared) {
      return std::string("unshared (locally connected) kernels: oneDNN has none");
    }
    return std::nullopt;
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs, const Config&) {
    return convgraph::apply(std::make_shared<OneDnnConv>(s.direction, s.params), inputs);
  };
  // Every epilogue on the forwards it lowers: the bias argument, sum and eltwise_relu post-ops.
  hooks.supports_epilogue = [](const ConvSignature& s,
                               const ConvEpilogue&) -> std::optional<std::string> {
    if (s.direction != ConvDirection::forward) {
      return std::string("epilogues follow a forward convolution only");
    }
    if (s.dtype != DType::float32) {
      return fmt::format("dtype {}: oneDNN convolutions run in float32 only", dtype_name(s.dtype));
    }
    return std::nullopt;
  };
  hooks.build_epilogue = [](const ConvSignature& s, const std::vector<Variable>& inputs,
                            const ConvEpilogue& epilogue, const Config&) {
    return convgraph::apply(std::make_shared<OneDnnConv>(s.direction, s.params, epilogue), inputs);
  };
  hooks.prefers = [](const ConvSignature& s, const Config& config) {
    return onednn_not_preferred(s, config);
  };
  return hooks;
}

namespace {

// Why oneDNN's Winograd cannot take SIGNATURE (with EPILOGUE, on a forward), or std::nullopt. The
// parameters first, then, the shapes being static, whether oneDNN makes the primitives: its
// kernels have further conditions of their own (channels in whole blocks, small pads, ...).
std::optional<std::string> winograd_unsupported(const ConvSignature& s,
                                                const ConvEpilogue& epilogue) {
  if (s.dtype != DType::float32) {
    return fmt::format("dtype {}: oneDNN's Winograd convolutions are float32 only",
                       dtype_name(s.dtype));
  }
  const ConvParams& p = s.params;
  if (p.convdim != 2) return fmt::format("{}-D: oneDNN's Winograd is 2-D only", p.convdim);
  if (p.unshared) return std::string("unshared (locally connected) kernels");
  if (p.num_groups != 1) return fmt::format("{} groups: oneDNN's Winograd takes one", p.num_groups);
  if (p.strided()) return std::string("strided: oneDNN's Winograd runs at stride 1 only");
  if (p.dilated()) return std::string("dilated: oneDNN's Winograd takes no dilation");
  // The shapes of the kernel's inputs and its spatial argument, as the node will have them.
  const bool forward = s.direction == ConvDirection::forward;
  if (s.inputs.size() < 2) return std::string("too few inputs");
  const std::optional<Shape> a = known_shape(s.inputs[0].dims);
  const std::optional<Shape> b = known_shape(s.inputs[1].dims);
  const std::optional<Shape> out = known_shape(s.output.dims);
  if (!a || !b || !out || out->size() != 4) {
    return std::string("sizes unknown at compile time: the primitive is checked on them");
  }
  const Shape kernel = s.direction == ConvDirection::forward       ? *b
                       : s.direction == ConvDirection::grad_inputs ? *a
                                                                   : *out;
  if (kernel.size() != 4 || kernel[2] != 3 || kernel[3] != 3) {
    return fmt::format("kernel size {}: oneDNN's Winograd takes 3x3 kernels only",
                       shape_str(kernel));
  }
  for (std::size_t axis = 0; axis < p.border.size(); ++axis) {
    const auto [before, after] = p.border[axis].resolve(3);
    if (before > 1 || after > 1) {
      return fmt::format(
          "padding ({}, {}) on axis {}: oneDNN's Winograd pads at most 1 on each side", before,
          after, axis);
    }
  }
  if (!onednn_runs_avx512()) {
    return fmt::format("oneDNN's Winograd kernels need AVX-512 (avx512_core); {}",
                       onednn_version());
  }
  // oneDNN's own conditions beyond these (none known for its 2.6 on the grid's cases).
  const Shape spatial = forward ? Shape{} : Shape{(*out)[2], (*out)[3]};
  OneDnnConvKernel probe(op_name(s.direction, 2, OneDnnAlgorithm::winograd), s.direction, p, {},
                         OneDnnAlgorithm::winograd);
  if (forward) probe.set_epilogue(epilogue);
  try {
    probe.describe(*a, *b, spatial);
  } catch (const ConvGraphError& e) {
    return fmt::format("oneDNN has no Winograd kernel for it on this CPU ({})", e.what());
  }
  return std::nullopt;
}

}  // namespace

ConvImplementationHooks onednn_winograd_conv_hooks() {
  ConvImplementationHooks hooks;
  hooks.supports = [](const ConvSignature& s, const Config& config) -> std::optional<std::string> {
    if (config.get("dnn.enabled") == "False") return std::string("dnn.enabled=False");
    return winograd_unsupported(s, ConvEpilogue{});
  };
  hooks.build = [](const ConvSignature& s, const std::vector<Variable>& inputs, const Config&) {
    return convgraph::apply(
        std::make_shared<OneDnnConv>(s.direction, s.params, ConvEpilogue{}, OneDnnLayouts{},
                                     OneDnnAlgorithm::winograd),
        inputs);
  };
  // The forward's epilogue in the primitive, where oneDNN's Winograd takes it (checked by making
  // the primitive with it).
  hooks.supports_epilogue = [](const ConvSignature& s,
                               const ConvEpilogue& epilogue) -> std::optional<std::string> {
    if (s.direction != ConvDirection::forward) {
      return std::string("epilogues follow a forward convolution only");
    }
    return winograd_unsupported(s, epilogue);
  };
  hooks.build_epilogue = [](const ConvSignature& s, const std::vector<Variable>& inputs,
                            const ConvEpilogue& epilogue, const Config&) {
    return convgraph::apply(
        std::make_shared<OneDnnConv>(s.direction, s.params, epilogue, OneDnnLayouts{},
                                     OneDnnAlgorithm::winograd),
        inputs);
  };
  hooks.prefers = [](const ConvSignature& s, const Config&) {
    return onednn_winograd_not_preferred(s);
  };
  return hooks;
}

}  // namespace convgraph
