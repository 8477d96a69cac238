#include "convgraph/optimizer/conv_meta_candidates.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "convgraph/graph/op.hpp"
#include "convgraph/ops/conv/conv3d2d.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"

namespace convgraph {
namespace {

// ---- the shapes of a problem ----

StaticShape merged(const StaticShape& dims, const StaticShape& hint) {
  StaticShape out = dims;
  for (std::size_t i = 0; i < out.size() && i < hint.size(); ++i) {
    if (!out[i]) out[i] = hint[i];
  }
  return out;
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

std::optional<ProblemShapes> resolve_shapes_impl(const Node& node, const AbstractConv& op,
                                                 std::string* why_not) {
  const ConvParams& p = op.params();
  const auto n = static_cast<std::size_t>(p.convdim);
  const StaticShape in0 = node.inputs[0].type().dims;
  const StaticShape in1 = node.inputs[1].type().dims;
  ProblemShapes s;
  int unknown = 0, total = 2;
  std::vector<std::string> missing;
  auto need = [&](const char* what, const StaticShape& dims, Shape& into) {
    if (auto k = known_shape(dims)) {
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
  auto output = known_shape(out);
  if (!output) {
    *why_not = fmt::format("the output shape {} cannot be inferred", static_shape_str(out));
    return std::nullopt;
  }
  s.output = *output;
  return s;
}

// ---- candidate builders: the abstract subgraph computing the node's output ----

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

// conv3d2d computes a true convolution: it is a candidate only where the node flips its filters
// (the original also offered it for cross-correlations, where it computes something else).
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

// Replaces every abstract convolution between INPUTS and OUT by IMPLEMENTATION's node, rebuilding
// the nodes downstream of a replaced one (iteratively: a candidate's subgraph is small, but the
// walk must not recurse through whatever lies above the inputs). An empty Variable and *WHY_NOT
// when the implementation declines one of them.
Variable lower_subgraph(const Variable& out, const std::vector<Variable>& inputs,
                        const ConvImplementation& implementation, const PassContext& ctx,
                        std::string* why_not) {
  std::unordered_set<const VariableData*> stop;
  for (const Variable& v : inputs) stop.insert(v.get());
  std::unordered_map<const Node*, std::vector<Variable>> lowered;
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext local{ctx.config, &declines};
  auto is_leaf = [&](const Variable& v) { return v.owner() == nullptr || stop.count(v.get()); };
  auto value_of = [&](const Variable& v) -> Variable {
    if (is_leaf(v)) return v;
    return lowered.at(v.owner())[static_cast<std::size_t>(v.index())];
  };
  if (is_leaf(out)) return out;
  // Post-order over the nodes between INPUTS and OUT: a node is lowered once all its inputs are.
  std::vector<std::pair<Node*, bool>> stack{{out.owner(), false}};
  while (!stack.empty()) {
    auto [node, expanded] = stack.back();
    stack.pop_back();
    if (lowered.count(node) != 0) continue;
    if (!expanded) {
      stack.emplace_back(node, true);
      for (const Variable& in : node->inputs) {
        if (!is_leaf(in) && lowered.count(in.owner()) == 0) stack.emplace_back(in.owner(), false);
      }
      continue;
    }
    std::vector<Variable> new_inputs;
    bool changed = false;
    for (const Variable& in : node->inputs) {
      Variable l = value_of(in);
      changed = changed || l != in;
      new_inputs.push_back(std::move(l));
    }
    std::shared_ptr<Node> target =
        changed ? make_node(node->op, std::move(new_inputs)) : node->shared_from_this();
    std::vector<Variable> outs;
    if (dynamic_cast<const AbstractConv*>(node->op.get()) != nullptr) {
      outs = lower_with(implementation, *target, local);
      if (outs.empty()) {
        auto reasons = declines.find(target.get());
        *why_not = reasons == declines.end() ? std::string("the lowering declined")
                                             : fmt::format("{}", fmt::join(reasons->second, "; "));
        return {};
      }
    } else {
      outs = target->outputs();
    }
    lowered.emplace(node, std::move(outs));
  }
  return value_of(out);
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

std::optional<ProblemShapes> resolve_problem_shapes(const Node& node, const AbstractConv& op,
                                                    std::string* why_not) {
  return resolve_shapes_impl(node, op, why_not);
}

// ---- the candidates ----

bool MetaCandidate::carries(const std::string& tag) const {
  return contains(tags, tag);
}

bool MetaCandidate::offered_for(const AbstractConv& op, Device device) const {
  const ConvImplementation* row = conv_registry().find(implementation);
  if (row == nullptr || !row->runs_on(device)) return false;
  if (form == CandidateForm::conv3d2d) {
    return op.direction() == ConvDirection::forward && op.params().convdim == 3;
  }
  return true;
}

std::vector<MetaCandidate> all_meta_candidates() {
  const auto& rows = conv_registry().all();
  std::vector<DeviceKind> devices;
  for (const ConvImplementation& row : rows) {
    if (std::find(devices.begin(), devices.end(), row.device) == devices.end()) {
      devices.push_back(row.device);
    }
  }
  std::vector<MetaCandidate> out;
  for (DeviceKind device : devices) {
    for (CandidateForm form :
         {CandidateForm::same, CandidateForm::alternative, CandidateForm::conv3d2d}) {
      for (const ConvImplementation& row : rows) {
        if (row.device != device || !row.meta_candidate) continue;
        MetaCandidate c;
        c.implementation = row.name;
        c.form = form;
        switch (form) {
          case CandidateForm::same:
            c.name = row.name;
            c.tags = {"default"};
            break;
          case CandidateForm::alternative:
            c.name = row.name + "_alt";
            c.tags = {"default", "alternative"};
            break;
          case CandidateForm::conv3d2d:
            if (row.meta_conv3d2d.empty()) continue;
            c.name = row.meta_conv3d2d;
            c.tags = {"alternative", "conv3d2d"};
            break;
        }
        if (form != CandidateForm::conv3d2d) {
          c.tags.insert(c.tags.end(), row.tags.begin(), row.tags.end());
        }
        out.push_back(std::move(c));
      }
    }
  }
  return out;
}

std::vector<MetaCandidate> selected_meta_candidates(const Config& config) {
  const auto including = config.get_list("metaopt.optimizer_including");
  const auto excluding = config.get_list("metaopt.optimizer_excluding");
  // An implementation the whole optimizer excludes (optimizer_excluding=conv_gemm, say, or a
  // conv.impl that does not list it) is never a candidate either: the user asked not to get it.
  const auto globally_excluded = config.get_list("optimizer_excluding");
  conv_impl_selection(config);  // an unknown name in conv.impl is an error here too
  std::vector<MetaCandidate> selected;
  for (MetaCandidate& c : all_meta_candidates()) {
    const ConvImplementation* row = conv_registry().find(c.implementation);
    if (row == nullptr || excluded_by_flags(*row, config)) continue;
    bool excluded = false;
    for (const auto& tag : globally_excluded) excluded = excluded || c.carries(tag);
    if (excluded) continue;
    int count = c.carries("default") ? 1 : 0;
    for (const auto& tag : including) count += c.carries(tag) ? 1 : 0;
    for (const auto& tag : excluding) count -= c.carries(tag) ? 1 : 0;
    if (count > 0) selected.push_back(std::move(c));
  }
  return selected;
}

Variable build_meta_candidate(const MetaCandidate& c, const AbstractConv& op,
                              const std::vector<Variable>& inputs, const ProblemShapes& shapes,
                              const PassContext& ctx, std::string* why_not) {
  const ConvImplementation* row = conv_registry().find(c.implementation);
  if (row == nullptr) {
    *why_not = fmt::format("implementation {} is not registered", c.implementation);
    return {};
  }
  Variable abstract;
  switch (c.form) {
    case CandidateForm::same:
      abstract = build_same(op, inputs, shapes, why_not);
      break;
    case CandidateForm::alternative:
      abstract = build_alternative(op, inputs, shapes, why_not);
      break;
    case CandidateForm::conv3d2d:
      abstract = build_conv3d2d(op, inputs, shapes, why_not);
      break;
  }
  if (!abstract.defined()) return {};
  return lower_subgraph(abstract, {inputs[0], inputs[1]}, *row, ctx, why_not);
}

}  // namespace convgraph
