#include "convgraph/optimizer/conv_meta.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "convgraph/build_config.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv3d2d.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/optimizer/compile.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"
#include "convgraph/optimizer/conv_lowering_gpu.hpp"
#include "convgraph/optimizer/conv_lowering_onednn.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "convgraph/runtime/device_backend.hpp"
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#endif
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#endif

namespace convgraph {
namespace {

// ---- counters ----

struct Counters {
  std::atomic<std::int64_t> nodes_replaced{0}, cache_hits{0}, nodes_timed{0}, candidates_timed{0},
      nodes_left{0};
};

Counters& counters() {
  static Counters instance;
  return instance;
}

void say(const std::string& line) {
  std::fprintf(stderr, "convgraph: conv_meta: %s\n", line.c_str());
}

// ---- lowering backends ----

enum class Backend : unsigned char { corrmm, onednn, cudnn, gpu_corrmm };

// The oneDNN lowering may return its replacement as a vector (a LocalRewrite) or as one variable.
[[maybe_unused]] std::vector<Variable> as_vector(std::vector<Variable> v) {
  return v;
}
[[maybe_unused]] std::vector<Variable> as_vector(const Variable& v) {
  if (v.defined()) return {v};
  return {};
}

std::vector<Variable> lower_with(Backend backend, Node& node, const PassContext& ctx) {
  switch (backend) {
    case Backend::corrmm:
      return lower_conv_to_corrmm(node, ctx);
    case Backend::onednn:
      return as_vector(lower_conv_to_onednn(node, ctx));
    case Backend::cudnn:
      return lower_conv_to_cudnn(node, ctx);
    case Backend::gpu_corrmm:
      return lower_conv_to_gpu_corrmm(node, ctx);
  }
  return {};
}

// Replaces every abstract convolution between INPUTS and OUT by BACKEND's lowering, rebuilding
// the nodes downstream of a replaced one. An empty Variable (and *WHY_NOT) when the backend
// declines one of them.
Variable lower_subgraph(const Variable& out, const std::vector<Variable>& inputs, Backend backend,
                        const PassContext& ctx, std::string* why_not) {
  std::unordered_set<const VariableData*> stop;
  for (const Variable& v : inputs) stop.insert(v.get());
  std::unordered_map<const Node*, std::vector<Variable>> lowered;
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext local{ctx.config, &declines};
  std::function<Variable(const Variable&)> visit = [&](const Variable& v) -> Variable {
    Node* node = v.owner();
    if (node == nullptr || stop.count(v.get()) != 0) return v;
    auto it = lowered.find(node);
    if (it == lowered.end()) {
      std::vector<Variable> new_inputs;
      bool changed = false;
      for (const Variable& in : node->inputs) {
        Variable l = visit(in);
        if (!l.defined()) return {};
        changed = changed || l != in;
        new_inputs.push_back(std::move(l));
      }
      std::shared_ptr<Node> target =
          changed ? make_node(node->op, std::move(new_inputs)) : node->shared_from_this();
      std::vector<Variable> outs;
      if (dynamic_cast<const AbstractConv*>(node->op.get()) != nullptr) {
        outs = lower_with(backend, *target, local);
        if (outs.empty()) {
          auto reasons = declines.find(target.get());
          *why_not = reasons == declines.end()
                         ? std::string("the lowering declined")
                         : fmt::format("{}", fmt::join(reasons->second, "; "));
          return {};
        }
      } else {
        outs = target->outputs();
      }
      it = lowered.emplace(node, std::move(outs)).first;
    }
    return it->second[static_cast<std::size_t>(v.index())];
  };
  return visit(out);
}

// ---- the shapes of a problem ----

struct ProblemShapes {
  Shape first, second;  // the node's tensor inputs 0 and 1
  Shape spatial;        // gradients: the value of the shape input
  Shape output;
};

StaticShape merged(const StaticShape& dims, const StaticShape& hint) {
  StaticShape out = dims;
  for (std::size_t i = 0; i < out.size() && i < hint.size(); ++i) {
    if (!out[i]) out[i] = hint[i];
  }
  return out;
}

std::optional<Shape> known(const StaticShape& dims) {
  Shape shape;
  for (const StaticDim& d : dims) {
    if (!d) return std::nullopt;
    shape.push_back(*d);
  }
  return shape;
}

StaticShape as_static(const Shape& shape) {
  return StaticShape(shape.begin(), shape.end());
}

ShapeDims as_dims(const StaticShape& dims) {
  ShapeDims out;
  for (const StaticDim& d : dims) out.push_back(Dim::from_static(d));
  return out;
}

StaticShape output_shape(const ConvParams& p, const StaticShape& image, const StaticShape& kernel) {
  return to_static(
      get_conv_output_shape(as_dims(image), as_dims(kernel), p.border, p.subsample, p.dilation));
}

// The full shapes of NODE's inputs and output from its static types, the op's hints and the
// constant shape input; std::nullopt and *WHY_NOT when some stay unknown.
std::optional<ProblemShapes> resolve_shapes(const Node& node, const AbstractConv& op,
                                            std::string* why_not) {
  const ConvParams& p = op.params();
  const auto n = static_cast<std::size_t>(p.convdim);
  const StaticShape in0 = node.inputs[0].type().dims;
  const StaticShape in1 = node.inputs[1].type().dims;
  ProblemShapes s;
  int unknown = 0, total = 2;
  std::vector<std::string> missing;
  auto need = [&](const char* what, const StaticShape& dims, Shape& into) {
    if (auto k = known(dims)) {
      into = *k;
    } else {
      ++unknown;
      missing.push_back(fmt::format("{} {}", what, static_shape_str(dims)));
    }
  };
  // The gradients' shape input: a value only when it is a constant.
  StaticShape spatial(n);
  if (op.direction() != ConvDirection::forward) {
    total = 3;
    const Variable& shape_input = node.inputs[2];
    if (shape_input.is_constant()) {
      s.spatial = shape_input.constant_value().to_vector<std::int64_t>();
      spatial = as_static(s.spatial);
    } else {
      ++unknown;
      missing.emplace_back("the shape input (computed, not a constant)");
    }
  }
  StaticShape out;
  switch (op.direction()) {
    case ConvDirection::forward: {
      const StaticShape image = merged(in0, p.imshp), kernel = merged(in1, p.kshp);
      need("image", image, s.first);
      need("kernel", kernel, s.second);
      out = output_shape(p, image, kernel);
      break;
    }
    case ConvDirection::grad_inputs: {
      const StaticShape kernel = merged(in0, p.kshp);
      const StaticDim channels = kernel[kernel.size() - n - 1];
      StaticShape image{in1[0], channels ? StaticDim(*channels * p.num_groups) : std::nullopt};
      image.insert(image.end(), spatial.begin(), spatial.end());
      image = merged(image, p.imshp);
      need("kernel", kernel, s.first);
      need("topgrad", merged(in1, output_shape(p, image, kernel)), s.second);
      out = image;
      break;
    }
    case ConvDirection::grad_weights: {
      const StaticShape image = merged(in0, p.imshp);
      StaticShape kernel{in1[1]};
      if (p.unshared) {
        for (std::size_t a = 0; a < n; ++a) kernel.push_back(in1[2 + a]);
      }
      kernel.push_back(image[1] ? StaticDim(*image[1] / p.num_groups) : std::nullopt);
      kernel.insert(kernel.end(), spatial.begin(), spatial.end());
      kernel = merged(kernel, p.kshp);
      need("image", image, s.first);
      need("topgrad", merged(in1, output_shape(p, image, kernel)), s.second);
      out = kernel;
      break;
    }
  }
  if (unknown > 0) {
    *why_not =
        fmt::format("{} of {} input shapes unknown ({})", unknown, total, fmt::join(missing, ", "));
    return std::nullopt;
  }
  auto output = known(out);
  if (!output) {
    *why_not = fmt::format("the output shape {} cannot be inferred", static_shape_str(out));
    return std::nullopt;
  }
  s.output = *output;
  return s;
}

// ---- candidate builders: the abstract subgraph computing the node's output ----

using Builder = Variable (*)(const AbstractConv& op, const std::vector<Variable>& inputs,
                             const ProblemShapes& shapes, std::string* why_not);

Variable conv_node(ConvDirection direction, ConvParams params, std::vector<Variable> inputs) {
  return convgraph::apply(std::make_shared<AbstractConv>(direction, std::move(params)),
                          std::move(inputs));
}

Variable shape_constant(const Shape& spatial) {
  return make_constant(
      Tensor::from_vector<std::int64_t>(spatial, {static_cast<std::int64_t>(spatial.size())}));
}

Shape spatial_of(const Shape& shape, int convdim) {
  return Shape(shape.end() - convdim, shape.end());
}

std::vector<int> swap01(int rank) {
  std::vector<int> pattern(static_cast<std::size_t>(rank));
  std::iota(pattern.begin(), pattern.end(), 0);
  std::swap(pattern[0], pattern[1]);
  return pattern;
}

std::vector<int> spatial_axes(int rank, int convdim) {
  std::vector<int> axes;
  for (int a = rank - convdim; a < rank; ++a) axes.push_back(a);
  return axes;
}

bool all_ones(const std::vector<std::int64_t>& values) {
  return std::all_of(values.begin(), values.end(), [](std::int64_t v) { return v == 1; });
}

bool all_valid(const ConvParams& p) {
  return std::all_of(p.border.begin(), p.border.end(), [](const AxisBorder& b) {
    return b.kind == AxisBorder::Kind::valid ||
           (b.kind == AxisBorder::Kind::pads && b.before == 0 && b.after == 0);
  });
}

// 'full' on every axis, spelled as the mode or as pads of the dilated kernel extent minus one.
bool all_full(const ConvParams& p, const Shape& kernel) {
  for (std::size_t a = 0; a < p.border.size(); ++a) {
    const AxisBorder& b = p.border[a];
    const std::int64_t k = kernel[kernel.size() - p.border.size() + a];
    const std::int64_t full_pad = p.dilation[a] * (k - 1);
    const bool full =
        b.kind == AxisBorder::Kind::full ||
        (b.kind == AxisBorder::Kind::pads && b.before == full_pad && b.after == full_pad);
    if (!full) return false;
  }
  return true;
}

Variable build_same(const AbstractConv& op, const std::vector<Variable>& inputs,
                    const ProblemShapes& /*shapes*/, std::string* /*why_not*/) {
  return conv_node(op.direction(), op.params(), inputs);
}

// The direction alternatives (derivations in docs/autotune.md). W' below is the correlation
// kernel: the kernel flipped iff filter_flip.
Variable build_alternative(const AbstractConv& op, const std::vector<Variable>& in,
                           const ProblemShapes& shapes, std::string* why_not) {
  const ConvParams& p = op.params();
  const int n = p.convdim;
  if (p.num_groups != 1 || p.unshared) {
    *why_not = "the alternatives exist for ungrouped, shared convolutions only";
    return {};
  }
  if (!all_ones(p.subsample)) {
    *why_not = "the alternatives need stride 1";
    return {};
  }
  const std::vector<int> swap = swap01(n + 2);
  const std::vector<int> spatial = spatial_axes(n + 2, n);
  const std::vector<std::int64_t> ones(static_cast<std::size_t>(n), 1);
  switch (op.direction()) {
    case ConvDirection::forward: {
      const Shape out_spatial = spatial_of(shapes.output, n);
      if (all_full(p, shapes.second)) {
        // out[b, m, y] = sum_c,i X[b, c, y - i d] W'[m, c, k-1-i]: the input gradient of a
        // 'valid' correlation whose topgrad is X and whose correlation kernel is flip(W')^T, that
        // is W^T read with filter_flip toggled.
        ConvParams q = make_conv_params(n, "valid", ones, !p.filter_flip, p.dilation);
        return conv_node(ConvDirection::grad_inputs, q,
                         {dimshuffle(in[1], swap), in[0], shape_constant(out_spatial)});
      }
      if (all_valid(p) && all_ones(p.dilation)) {
        // out[b, m, y] = sum_c,i X[b, c, y + i] W'[m, c, i]: the kernel gradient, in correlation
        // form, of the image X^T (batch C) against the topgrad W'^T.
        const Variable correlation_kernel = p.filter_flip ? flip(in[1], spatial) : in[1];
        ConvParams q = make_conv_params(n, "valid", ones, false, ones);
        return dimshuffle(conv_node(ConvDirection::grad_weights, q,
                                    {dimshuffle(in[0], swap), dimshuffle(correlation_kernel, swap),
                                     shape_constant(out_spatial)}),
                          swap);
      }
      *why_not =
          "a forward alternative needs a 'full' border, or a 'valid' border without "
          "dilation";
      return {};
    }
    case ConvDirection::grad_weights: {
      if (!all_valid(p) || !all_ones(p.dilation)) {
        *why_not = "the gradWeights alternative needs a 'valid' border without dilation";
        return {};
      }
      // dW'[m, c, i] = sum_b,y X[b, c, y + i] T[b, m, y]: a 'valid' correlation of X^T (batch C)
      // with T^T as the kernel, transposed back; flipped into W's orientation iff filter_flip.
      ConvParams q = make_conv_params(n, "valid", ones, false, ones);
      const Variable correlation = dimshuffle(
          conv_node(ConvDirection::forward, q, {dimshuffle(in[0], swap), dimshuffle(in[1], swap)}),
          swap);
      return p.filter_flip ? flip(correlation, spatial) : correlation;
    }
    case ConvDirection::grad_inputs: {
      if (!all_valid(p)) {
        *why_not = "the gradInputs alternative needs a 'valid' border";
        return {};
      }
      // dX[b, c, z] = sum_m,i T[b, m, z - i d] W'[m, c, i]: a 'full' correlation of T with the
      // kernel flip(W')^T, that is W^T read with filter_flip toggled.
      for (int a = 0; a < n; ++a) {
        const auto ua = static_cast<std::size_t>(a);
        const std::int64_t k = shapes.first[shapes.first.size() - static_cast<std::size_t>(n) + ua];
        if (shapes.second[2 + ua] + p.dilation[ua] * (k - 1) != shapes.spatial[ua]) {
          *why_not = "the shape input does not match topgrad";
          return {};
        }
      }
      ConvParams q = make_conv_params(n, "full", ones, !p.filter_flip, p.dilation);
      return conv_node(ConvDirection::forward, q, {in[1], dimshuffle(in[0], swap)});
    }
  }
  return {};
}

// conv3d2d computes a true convolution (decision 3: it is a candidate only where the node flips
// its filters, unlike the original which offered it for cross-correlations too).
Variable build_conv3d2d(const AbstractConv& op, const std::vector<Variable>& in,
                        const ProblemShapes& shapes, std::string* why_not) {
  const ConvParams& p = op.params();
  if (op.direction() != ConvDirection::forward || p.convdim != 3) {
    *why_not = "conv3d2d computes 3-D forward convolutions only";
    return {};
  }
  if (!p.filter_flip) {
    *why_not = "conv3d2d always flips the filters; this node is a cross-correlation";
    return {};
  }
  if (p.num_groups != 1 || !all_ones(p.subsample) || !all_ones(p.dilation)) {
    *why_not = "conv3d2d needs stride 1, no dilation and no groups";
    return {};
  }
  std::vector<std::string> modes;
  for (const AxisBorder& b : p.border) {
    switch (b.kind) {
      case AxisBorder::Kind::valid:
        modes.emplace_back("valid");
        break;
      case AxisBorder::Kind::full:
        modes.emplace_back("full");
        break;
      case AxisBorder::Kind::half:
        modes.emplace_back("half");
        break;
      case AxisBorder::Kind::pads:
        if (b.before != 0 || b.after != 0) {
          *why_not = "conv3d2d takes 'valid', 'full' or 'half' borders, not explicit pads";
          return {};
        }
        modes.emplace_back("valid");
        break;
    }
  }
  if (modes[1] != modes[2]) {
    *why_not = "conv3d2d needs the same border on height and width";
    return {};
  }
  // conv3d2d orders the axes (batch, time, channels, height, width).
  const std::vector<int> order{0, 2, 1, 3, 4};
  auto reordered = [&](const Shape& s) {
    StaticShape r;
    for (int axis : order) r.push_back(s[static_cast<std::size_t>(axis)]);
    return r;
  };
  conv3d2d::Conv3d2dOptions options;
  options.signals_shape = reordered(shapes.first);
  options.filters_shape = reordered(shapes.second);
  options.border_mode = conv3d2d::BorderMode3d2d{modes[0], modes[1], modes[2]};
  return dimshuffle(conv3d2d::conv3d(dimshuffle(in[0], order), dimshuffle(in[1], order), options),
                    order);
}

// ---- the candidate table ----

// Which nodes a candidate is offered (counted as choices): the CPU candidates take the nodes on
// the host, the GPU ones the nodes the placement pass put on a CUDA device.
bool tracks_every_cpu_node(const AbstractConv& /*op*/, Device device) {
  return device.is_cpu();
}
bool tracks_cpu_3d_forward(const AbstractConv& op, Device device) {
  return device.is_cpu() && op.direction() == ConvDirection::forward && op.params().convdim == 3;
}
bool tracks_every_gpu_node(const AbstractConv& /*op*/, Device device) {
  return device.is_cuda();
}
bool tracks_gpu_3d_forward(const AbstractConv& op, Device device) {
  return device.is_cuda() && op.direction() == ConvDirection::forward && op.params().convdim == 3;
}

struct Candidate {
  ConvMetaCandidateInfo info;
  Backend backend;
  Builder build;
  bool (*tracks)(const AbstractConv& op, Device device);
};

const std::vector<Candidate>& candidate_table() {
  static const std::vector<Candidate> table = {
      // ---- on the CPU ----
      // The node's own op, lowered: what the conv_gemm / conv_dnn passes would produce.
      {{"corrmm", {"default", "conv_gemm"}}, Backend::corrmm, build_same, tracks_every_cpu_node},
      {{"onednn", {"default", "conv_dnn", "onednn"}},
       Backend::onednn,
       build_same,
       tracks_every_cpu_node},
      // The same result computed through another direction.
      {{"corrmm_alt", {"default", "alternative", "conv_gemm"}},
       Backend::corrmm,
       build_alternative,
       tracks_every_cpu_node},
      {{"onednn_alt", {"default", "alternative", "conv_dnn", "onednn"}},
       Backend::onednn,
       build_alternative,
       tracks_every_cpu_node},
      // Not default: as in the original, only when asked for (alternative or conv3d2d).
      {{"conv3d2d", {"alternative", "conv3d2d"}},
       Backend::corrmm,
       build_conv3d2d,
       tracks_cpu_3d_forward},
      // ---- on a CUDA device (spec 7.6) ----
      {{"cudnn", {"default", "conv_dnn", "cudnn"}},
       Backend::cudnn,
       build_same,
       tracks_every_gpu_node},
      {{"gpu_corrmm", {"default", "conv_gemm"}},
       Backend::gpu_corrmm,
       build_same,
       tracks_every_gpu_node},
      {{"gpu_corrmm_alt", {"default", "alternative", "conv_gemm"}},
       Backend::gpu_corrmm,
       build_alternative,
       tracks_every_gpu_node},
      // The GradI / GradW tricks of spec 9.4, as cuDNN ops of the other direction.
      {{"cudnn_alt", {"default", "alternative", "conv_dnn", "cudnn"}},
       Backend::cudnn,
       build_alternative,
       tracks_every_gpu_node},
      {{"gpu_conv3d2d", {"alternative", "conv3d2d"}},
       Backend::gpu_corrmm,
       build_conv3d2d,
       tracks_gpu_3d_forward},
  };
  return table;
}

bool carries(const Candidate& c, const std::string& tag) {
  return std::find(c.info.tags.begin(), c.info.tags.end(), tag) != c.info.tags.end();
}

std::vector<const Candidate*> selected_candidates(const Config& config) {
  const auto including = config.get_list("metaopt.optimizer_including");
  const auto excluding = config.get_list("metaopt.optimizer_excluding");
  // An implementation the whole optimizer excludes (optimizer_excluding=conv_gemm, say) is never
  // a candidate either: the user asked not to get it.
  const auto globally_excluded = config.get_list("optimizer_excluding");
  std::vector<const Candidate*> selected;
  for (const Candidate& c : candidate_table()) {
    bool excluded = false;
    for (const auto& tag : globally_excluded) excluded = excluded || carries(c, tag);
    if (excluded) continue;
    int count = carries(c, "default") ? 1 : 0;
    for (const auto& tag : including) count += carries(c, tag) ? 1 : 0;
    for (const auto& tag : excluding) count -= carries(c, tag) ? 1 : 0;
    if (count > 0) selected.push_back(&c);
  }
  return selected;
}

const Candidate* find_candidate(const std::string& name) {
  for (const Candidate& c : candidate_table()) {
    if (c.info.name == name) return &c;
  }
  return nullptr;
}

// ---- building on the node's own inputs ----

Variable build_on_node(const Candidate& c, Node& node, const AbstractConv& op,
                       const ProblemShapes& shapes, const PassContext& ctx, std::string* why_not) {
  std::vector<Variable> inputs = node.inputs;
  // The choice was made for these shapes, and alternatives drop the hints. Where the graph
  // knows a shape only from the hints, check it at run time, as the abstract op checks hints.
  const char* message =
      "conv_meta: the input shape differs from the one the convolution was "
      "tuned for (imshp / kshp hints)";
  inputs[0] = assert_shape(inputs[0], as_static(shapes.first), message, true);
  inputs[1] = assert_shape(inputs[1], as_static(shapes.second), message, true);
  try {
    const Variable abstract = c.build(op, inputs, shapes, why_not);
    if (!abstract.defined()) return {};
    Variable lowered = lower_subgraph(abstract, {inputs[0], inputs[1]}, c.backend, ctx, why_not);
    // An alternative reads the inputs in another order, so its dtype follows another input: a
    // node built without the builders' casts could get a replacement of another type.
    const TensorType& expected = node.output_data[0].type;
    if (lowered.defined() && !expected.accepts(lowered.type())) {
      *why_not =
          fmt::format("it computes a {}, the node a {}", lowered.type().str(), expected.str());
      return {};
    }
    return lowered;
  } catch (const std::exception& e) {
    // A candidate that cannot be built must never fail the compile: the later passes remain.
    *why_not = e.what();
    return {};
  }
}

// ---- timing ----

Tensor random_input(const TensorType& type, const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> values(static_cast<std::size_t>(shape_numel(shape)));
  for (double& v : values) v = uniform(rng);
  Tensor t = Tensor::from_vector<double>(values, shape).cast(type.dtype);
  return type.device.is_cpu() ? t : t.to(type.device);
}

// Device time of a call, from events around calls queued behind a delay kernel, so that the
// host's launch gaps between them are not counted: the minimum over up to 10 calls.
double time_on_device(const Function& f, const std::vector<Tensor>& args) {
  using Clock = std::chrono::steady_clock;
  const std::shared_ptr<DeviceStream> stream = f.stream(f.plan().devices.front());
  // One call alone: how long the host takes to queue it, and about how long it runs.
  const Clock::time_point t0 = Clock::now();
  f.call_async(args);
  const double host_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  f.synchronize();
  const double call_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const int runs = call_ms > 20 ? 3 : 10;
  stream->delay(std::min(200.0, 1.5 * runs * host_ms + 0.05));
  std::vector<std::pair<std::shared_ptr<DeviceEvent>, std::shared_ptr<DeviceEvent>>> events;
  for (int i = 0; i < runs; ++i) {
    auto start = stream->record();
    f.call_async(args);
    events.emplace_back(std::move(start), stream->record());
  }
  f.synchronize();
  double best = std::numeric_limits<double>::infinity();
  for (auto& [start, end] : events) best = std::min(best, start->elapsed_ms(*end));
  return best / 1e3;
}

// The minimum over repeated calls: the minimum is the least noisy estimate of what the code
// costs, and the budget keeps tuning a large network affordable. On a device: device time from
// events (time_on_device).
double time_function(const Function& f, const std::vector<Tensor>& args) {
  if (!f.plan().devices.empty() && f.stream(f.plan().devices.front())) {
    return time_on_device(f, args);
  }
  using Clock = std::chrono::steady_clock;
  constexpr int kMaxRuns = 10;
  constexpr double kBudgetSeconds = 0.2;
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const Clock::time_point start = Clock::now();
  double best = std::numeric_limits<double>::infinity();
  int runs = 0;
  do {
    const Clock::time_point t0 = Clock::now();
    const std::vector<Tensor> outputs = f(args);
    best = std::min(best, seconds_since(t0));
    ++runs;
  } while (runs < kMaxRuns && seconds_since(start) + best < kBudgetSeconds);
  return best;
}

struct Timing {
  bool ran = false;        // compiled and timed
  bool attempted = false;  // applicable: it was compiled (and may have thrown)
  double seconds = 0;
  std::string why_not;  // not applicable, or the exception
};

Timing time_candidate(const Candidate& c, const Node& node, const AbstractConv& op,
                      const ProblemShapes& shapes, const PassContext& ctx,
                      const Config& timing_config) {
  Timing timing;
  try {
    // Fresh inputs of the node's shapes: the candidate runs on its own, on random data.
    const TensorType& t0 = node.inputs[0].type();
    const TensorType& t1 = node.inputs[1].type();
    const TensorType first(t0.dtype, as_static(shapes.first), t0.device);
    const TensorType second(t1.dtype, as_static(shapes.second), t1.device);
    const Variable a = make_input(first, "meta_input0");
    const Variable b = make_input(second, "meta_input1");
    std::vector<Variable> inputs{a, b};
    if (node.inputs.size() > 2) inputs.push_back(node.inputs[2]);  // the constant shape input
    const Variable abstract = c.build(op, inputs, shapes, &timing.why_not);
    if (!abstract.defined()) return timing;
    const Variable lowered = lower_subgraph(abstract, {a, b}, c.backend, ctx, &timing.why_not);
    if (!lowered.defined()) return timing;
    timing.attempted = true;
    CompileOptions options;
    options.config = timing_config;
    // On a device, the result stays there: a copy to the host is not the candidate's cost.
    options.outputs_on_device = !first.device.is_cpu();
    const Function f = compile({a, b}, {lowered}, options);
    const std::vector<Tensor> args{random_input(first, shapes.first, 1),
                                   random_input(second, shapes.second, 2)};
    f(args);  // warm-up: first-touch allocation and one-time set-up are not what we compare
    timing.seconds = time_function(f, args);
    timing.ran = true;
  } catch (const std::exception& e) {
    timing.attempted = true;
    timing.why_not = e.what();
  }
  return timing;
}

// The flags a candidate's own small Function is compiled with: it is already concrete, so only
// the plain pipeline is needed, silently; DebugMode or profiling would time their own overhead.
Config make_timing_config(const Config& base) {
  Config c = base;
  for (const char* list : {"optimizer_including", "optimizer_excluding", "optimizer_requiring",
                           "optimizer.print_before", "optimizer.print_after"}) {
    c.set(list, "");
  }
  c.set("optimizer.list_passes", "False");
  c.set("mode", "FAST_RUN");
  c.set("profile", "False");
  return c;
}

// ---- one node ----

const char* direction_name(ConvDirection d) {
  switch (d) {
    case ConvDirection::forward:
      return "forward";
    case ConvDirection::grad_inputs:
      return "grad_inputs";
    case ConvDirection::grad_weights:
      return "grad_weights";
  }
  return "?";
}

std::string describe_shapes(const AbstractConv& op, const ProblemShapes& s, DType dtype) {
  const bool forward = op.direction() == ConvDirection::forward;
  const bool grad_inputs = op.direction() == ConvDirection::grad_inputs;
  return fmt::format("{} {}, {} {} -> {} ({})", grad_inputs ? "kernel" : "image",
                     shape_str(s.first), forward ? "kernel" : "topgrad", shape_str(s.second),
                     shape_str(s.output), dtype_name(dtype));
}

// The GPU's part of an autotune key: the device's name, compute capability and SM count, and the
// library versions a choice depends on.
std::string gpu_fingerprint(Device device) {
#if CONVGRAPH_HAVE_CUDA
  std::string print = cuda::fingerprint(device.index);
#if CONVGRAPH_HAVE_CUDNN
  print += "; cuDNN " + cudnn_version();
#endif
  return print;
#else
  return device.str();
#endif
}

AutotuneKey make_key(const Node& node, const AbstractConv& op, const ProblemShapes& s,
                     const std::vector<const Candidate*>& offered, const PassContext& ctx) {
  const ConvParams& p = op.params();
  AutotuneKey key;
  key.tuner = "conv_meta";
  // The kernels read the thread count from the process-wide flags when they run.
  const Device device = node.output_data[0].type.device;
  key.device = device.is_cpu() ? cpu_device_fingerprint(global_config().get_int("threads"))
                               : gpu_fingerprint(device);
  std::vector<std::string> names;
  for (const Candidate* c : offered) names.push_back(c->info.name);
  key.fields = {
      {"direction", direction_name(op.direction())},
      {"convdim", std::to_string(p.convdim)},
      {"params", p.str()},
      {"hints",
       fmt::format("imshp={} kshp={}", static_shape_str(p.imshp), static_shape_str(p.kshp))},
      {"shapes", fmt::format("{} {} spatial={} output={}", shape_str(s.first), shape_str(s.second),
                             shape_str(s.spatial), shape_str(s.output))},
      {"dtype", std::string(dtype_name(node.inputs[0].dtype()))},
      // A different set of candidates may have a different winner.
      {"candidates", fmt::format("{}", fmt::join(names, ","))},
  };
  if (device.is_cuda()) {
    // What the cuDNN candidates compute with, and how they pick their algorithms.
    for (const char* flag : {"dnn.conv.precision", "dnn.conv.allow_tf32", "dnn.conv.algo_fwd",
                             "dnn.conv.algo_bwd_data", "dnn.conv.algo_bwd_filter",
                             "dnn.conv.workspace_limit_mb", "dnn.enabled"}) {
      key.fields.emplace_back(flag, ctx.config.get(flag));
    }
  }
  return key;
}

Variable meta_optimize(Node& node, const AbstractConv& op,
                       const std::vector<const Candidate*>& selected, const PassContext& ctx,
                       const Config& timing_config, std::int64_t verbose) {
  const std::string who = fmt::format("{} (node #{})", op.str(), node.id);
  const char* left = "left to the conv_dnn / conv_gemm passes";
  std::string why;
  const std::optional<ProblemShapes> shapes = resolve_shapes(node, op, &why);
  if (!shapes) {
    if (verbose >= 1) say(fmt::format("cannot meta-optimize {}: {}; {}", who, why, left));
    ++counters().nodes_left;
    return {};
  }
  std::vector<const Candidate*> offered;
  const Device device = node.output_data[0].type.device;
  for (const Candidate* c : selected) {
    if (c->tracks(op, device)) offered.push_back(c);
  }
  const std::string problem =
      fmt::format("{}, {}", who, describe_shapes(op, *shapes, node.inputs[0].dtype()));
  if (offered.empty()) {
    if (verbose >= 1) {
      say(fmt::format("{}: metaopt.optimizer_including / excluding select no candidate; {}",
                      problem, left));
    }
    ++counters().nodes_left;
    return {};
  }

  const AutotuneCacheOptions cache_options = AutotuneCacheOptions::from_config(ctx.config);
  const AutotuneKey key = make_key(node, op, *shapes, offered, ctx);
  if (const auto cached = autotune_lookup(key, cache_options)) {
    for (const Candidate* c : offered) {
      if (c->info.name != cached->choice) continue;
      Variable v = build_on_node(*c, node, op, *shapes, ctx, &why);
      if (!v.defined()) break;  // no longer applicable here (another build): time again
      ++counters().cache_hits;
      ++counters().nodes_replaced;
      if (verbose >= 1) {
        say(fmt::format("{}: {} (from the autotune cache, {:.3g} s when timed)", problem,
                        c->info.name, cached->seconds));
      }
      return v;
    }
  }

  ++counters().nodes_timed;
  if (verbose >= 2) say(fmt::format("meta-optimizing {} ({} choices):", problem, offered.size()));
  std::vector<std::pair<double, const Candidate*>> ranked;
  AutotuneResult result;
  for (const Candidate* c : offered) {
    const Timing t = time_candidate(*c, node, op, *shapes, ctx, timing_config);
    if (t.attempted) ++counters().candidates_timed;
    if (t.ran) {
      ranked.emplace_back(t.seconds, c);
      result.timings.emplace_back(c->info.name, t.seconds);
      if (verbose >= 2) say(fmt::format("  * {}: {:.5g} s", c->info.name, t.seconds));
    } else if (t.attempted) {
      if (verbose >= 1) say(fmt::format("  * {}: exception: {}", c->info.name, t.why_not));
    } else if (verbose >= 2) {
      say(fmt::format("  * {}: not applicable ({})", c->info.name, t.why_not));
    }
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [seconds, c] : ranked) {
    Variable v = build_on_node(*c, node, op, *shapes, ctx, &why);
    if (!v.defined()) continue;
    result.choice = c->info.name;
    result.seconds = seconds;
    autotune_store(key, result, cache_options);
    ++counters().nodes_replaced;
    if (verbose >= 1) {
      say(fmt::format("{}: {} of {} candidates ran, winner {} ({:.3g} s)", problem, ranked.size(),
                      offered.size(), c->info.name, seconds));
    }
    return v;
  }
  if (verbose >= 1) say(fmt::format("{}: no candidate could run; {}", problem, left));
  ++counters().nodes_left;
  return {};
}

}  // namespace

void run_conv_meta(FunctionGraph& graph, const PassContext& ctx) {
  const std::vector<const Candidate*> selected = selected_candidates(ctx.config);
  // Read here, at compile time, so that changing the flag between compiles takes effect.
  const std::int64_t verbose = ctx.config.get_int("metaopt.verbose");
  const Config timing_config = make_timing_config(ctx.config);
  const std::vector<Node*> order = graph.toposort();  // a copy: replace() changes the order
  for (Node* node : order) {
    if (!graph.contains(node)) continue;
    const auto* op = dynamic_cast<const AbstractConv*>(node->op.get());
    if (op == nullptr) continue;
    const std::shared_ptr<Node> keep = node->shared_from_this();
    const Variable replacement = meta_optimize(*node, *op, selected, ctx, timing_config, verbose);
    if (replacement.defined()) graph.replace(keep->output(0), replacement, "conv_meta");
  }
}

GraphPass conv_meta_pass() {
  return run_conv_meta;
}

const std::vector<ConvMetaCandidateInfo>& conv_meta_candidates() {
  static const std::vector<ConvMetaCandidateInfo> infos = [] {
    std::vector<ConvMetaCandidateInfo> out;
    for (const Candidate& c : candidate_table()) out.push_back(c.info);
    return out;
  }();
  return infos;
}

std::vector<std::string> select_conv_meta_candidates(const Config& config) {
  std::vector<std::string> names;
  for (const Candidate* c : selected_candidates(config)) names.push_back(c->info.name);
  return names;
}

Variable build_conv_meta_candidate(const std::string& name, Node& node, const PassContext& ctx,
                                   std::string* why_not) {
  std::string ignored;
  std::string& why = why_not != nullptr ? *why_not : ignored;
  const Candidate* c = find_candidate(name);
  if (c == nullptr) {
    std::vector<std::string> names;
    for (const Candidate& k : candidate_table()) names.push_back(k.info.name);
    throw ValueError(fmt::format("conv_meta: no candidate named '{}'; the candidates are {}", name,
                                 fmt::join(names, ", ")));
  }
  const auto* op = dynamic_cast<const AbstractConv*>(node.op.get());
  if (op == nullptr) {
    throw ValueError(fmt::format("conv_meta: node #{} ({}) is not an abstract convolution", node.id,
                                 node.op->str()));
  }
  if (!c->tracks(*op, node.output_data[0].type.device)) {
    why = fmt::format("{} is not offered for {}", name, op->name());
    return {};
  }
  const auto shapes = resolve_shapes(node, *op, &why);
  if (!shapes) return {};
  return build_on_node(*c, node, *op, *shapes, ctx, &why);
}

ConvMetaStats conv_meta_stats() {
  const Counters& c = counters();
  return {c.nodes_replaced.load(), c.cache_hits.load(), c.nodes_timed.load(),
          c.candidates_timed.load(), c.nodes_left.load()};
}

void reset_conv_meta_stats() {
  Counters& c = counters();
  c.nodes_replaced = 0;
  c.cache_hits = 0;
  c.nodes_timed = 0;
  c.candidates_timed = 0;
  c.nodes_left = 0;
}

}  // namespace convgraph
