// Gradients and R-operators of the abstract convolution family: numerical checks of grad (L-op)
// and R_op for the six ops (forward, gradInputs, gradWeights in 2-D and 3-D), the closure of the
// family under differentiation, and a compiled run of each direction.
#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "convgraph/autodiff/gradient.hpp"
#include "convgraph/autodiff/verify_grad.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::random_tensor;

namespace {

struct GradCase {
  std::string label;
  int convdim = 2;
  BorderMode border = "valid";
  std::vector<std::int64_t> subsample, dilation;
  bool flip = true;
  std::int64_t groups = 1;
  bool unshared = false;
  Shape image;               // (B, C, spatial...)
  std::int64_t filters = 1;  // M
  Shape kernel_spatial;

  ConvParams params() const {
    return make_conv_params(convdim, border, subsample, flip, dilation, groups, unshared);
  }
  ConvOptions options() const {
    ConvOptions o;
    o.border_mode = border;
    o.subsample = subsample;
    o.filter_flip = flip;
    o.filter_dilation = dilation;
    o.num_groups = groups;
    o.unshared = unshared;
    return o;
  }
  Shape image_spatial() const { return Shape(image.begin() + 2, image.end()); }
  // The forward output shape, from the library's shape helper.
  Shape output_shape() const {
    ShapeDims img, ker{Dim(filters), Dim(image[1] / groups)};
    for (auto d : image) img.emplace_back(d);
    for (auto k : kernel_spatial) ker.emplace_back(k);
    const ConvParams p = params();
    Shape out;
    for (const Dim& d : get_conv_output_shape(img, ker, p.border, p.subsample, p.dilation)) {
      out.push_back(d.value());
    }
    return out;
  }
  Shape kernel_shape() const {
    Shape s{filters};
    if (unshared) {
      const Shape out = output_shape();
      s.insert(s.end(), out.begin() + 2, out.end());
    }
    s.push_back(image[1] / groups);
    s.insert(s.end(), kernel_spatial.begin(), kernel_spatial.end());
    return s;
  }
};

ShapeDims dims_of_shape(const Shape& s) {
  ShapeDims d;
  for (auto v : s) d.emplace_back(v);
  return d;
}

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> cases;
  {
    GradCase c;
    c.label = "2-D valid";
    c.image = {2, 3, 5, 6};
    c.filters = 4;
    c.kernel_spatial = {3, 2};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "2-D groups=2, half, stride (2, 1), dilation (1, 2)";
    c.border = "half";
    c.subsample = {2, 1};
    c.dilation = {1, 2};
    c.groups = 2;
    c.image = {2, 4, 6, 7};
    c.filters = 4;
    c.kernel_spatial = {3, 3};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "2-D unshared, asymmetric pads, stride 2, cross-correlation";
    c.border = BorderMode::pairs({{1, 0}, {0, 2}});
    c.subsample = {2, 2};
    c.flip = false;
    c.unshared = true;
    c.image = {2, 2, 5, 6};
    c.filters = 2;
    c.kernel_spatial = {2, 3};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "2-D unshared with groups=2, dilation 2";
    c.border = 1;
    c.dilation = {2, 2};
    c.groups = 2;
    c.unshared = true;
    c.image = {1, 4, 5, 5};
    c.filters = 2;
    c.kernel_spatial = {2, 2};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "2-D depthwise (G = C), full, dilation (2, 1)";
    c.border = "full";
    c.dilation = {2, 1};
    c.groups = 3;
    c.image = {1, 3, 4, 5};
    c.filters = 6;
    c.kernel_spatial = {2, 2};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "3-D valid";
    c.convdim = 3;
    c.image = {2, 2, 4, 5, 4};
    c.filters = 3;
    c.kernel_spatial = {2, 3, 2};
    cases.push_back(c);
  }
  {
    GradCase c;
    c.label = "3-D groups=2, per-axis pads, stride (1, 2, 1), dilation (2, 1, 1), cross";
    c.convdim = 3;
    c.border = BorderMode(
        std::vector<BorderMode::Entry>{std::int64_t{1}, std::int64_t{0}, std::int64_t{2}});
    c.subsample = {1, 2, 1};
    c.dilation = {2, 1, 1};
    c.flip = false;
    c.groups = 2;
    c.image = {1, 4, 5, 4, 3};
    c.filters = 4;
    c.kernel_spatial = {2, 2, 3};
    cases.push_back(c);
  }
  return cases;
}

using GraphFn = std::function<Variable(const std::vector<Variable>&)>;

// The three directions of a case as functions of their two differentiable inputs, with the
// points to check them at.
struct Direction {
  std::string name;
  GraphFn fn;
  std::vector<Tensor> points;
};

std::vector<Direction> directions_of(const GradCase& c, std::uint64_t seed) {
  const ConvParams p = c.params();
  const Tensor x = random_tensor(DType::float64, c.image, seed);
  const Tensor w = random_tensor(DType::float64, c.kernel_shape(), seed + 1);
  const Tensor t = random_tensor(DType::float64, c.output_shape(), seed + 2);
  const ShapeDims image_spatial = dims_of_shape(c.image_spatial());
  const ShapeDims kernel_spatial = dims_of_shape(c.kernel_spatial);
  return {
      {"forward",
       [p](const std::vector<Variable>& in) { return abstract_conv(p, in[0], in[1]); },
       {x, w}},
      {"gradInputs",
       [p, image_spatial](const std::vector<Variable>& in) {
         return abstract_conv_grad_inputs(p, in[0], in[1], image_spatial);
       },
       {w, t}},
      {"gradWeights",
       [p, kernel_spatial](const std::vector<Variable>& in) {
         return abstract_conv_grad_weights(p, in[0], in[1], kernel_spatial);
       },
       {x, t}},
  };
}

Tensor perform_of(const Variable& out, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outputs(1);
  out.owner()->op->perform(inputs, outputs);
  return outputs[0];
}

// Names of the ops of every node VAR depends on.
void collect_op_names(const Variable& var, std::set<std::string>& names,
                      std::set<const Node*>& seen) {
  Node* node = var.owner();
  if (node == nullptr || !seen.insert(node).second) return;
  names.insert(node->op->name());
  for (const Variable& input : node->inputs) collect_op_names(input, names, seen);
}

std::set<std::string> conv_ops_in(const Variable& var) {
  std::set<std::string> names, convs;
  std::set<const Node*> seen;
  collect_op_names(var, names, seen);
  for (const auto& n : names) {
    if (n.rfind("AbstractConv", 0) == 0) convs.insert(n);
  }
  return convs;
}

}  // namespace

TEST_CASE("AbstractConv family: gradients match finite differences (float64)", "[conv][grad]") {
  std::uint64_t seed = 100;
  for (const GradCase& c : grad_cases()) {
    for (const Direction& d : directions_of(c, seed)) {
      INFO(c.label << ": " << d.name);
      // Each op is bilinear: finite differences with a unit step are exact up to rounding.
      REQUIRE_NOTHROW(verify_grad(d.fn, d.points, VerifyGradOptions{.eps = 1.0}));
    }
    seed += 10;
  }
}

TEST_CASE("AbstractConv family: R-operators match finite differences (float64)", "[conv][grad]") {
  std::uint64_t seed = 200;
  for (const GradCase& c : grad_cases()) {
    for (const Direction& d : directions_of(c, seed)) {
      INFO(c.label << ": " << d.name);
      const std::string report = check_rop(d.fn, d.points);
      INFO(report);
      REQUIRE(report.empty());
    }
    seed += 10;
  }
}

TEST_CASE("AbstractConv family: gradients are closed under differentiation", "[conv][grad]") {
  // d forward / d (image, kernel) = (gradInputs, gradWeights); d gradInputs / d (kernel, topgrad)
  // = (gradWeights, forward); d gradWeights / d (image, topgrad) = (gradInputs, forward).
  for (const GradCase& c : grad_cases()) {
    const std::string dim = fmt::format("AbstractConv{}d", c.convdim);
    const std::vector<std::vector<std::string>> expected = {
        {dim + "_gradInputs", dim + "_gradWeights"},
        {dim + "_gradWeights", dim},
        {dim + "_gradInputs", dim},
    };
    const auto directions = directions_of(c, 1);
    for (std::size_t k = 0; k < directions.size(); ++k) {
      const Direction& d = directions[k];
      INFO(c.label << ": " << d.name);
      std::vector<Variable> inputs;
      for (std::size_t i = 0; i < d.points.size(); ++i) {
        inputs.push_back(make_input(TensorType::of(d.points[i]), fmt::format("in{}", i)));
      }
      const Variable out = d.fn(inputs);
      const Variable g = make_input(out.type(), "g");
      const std::vector<Variable> grads = Lop({out}, inputs, {g});
      REQUIRE(grads.size() == 2);
      for (std::size_t i = 0; i < 2; ++i) {
        INFO("gradient with respect to input " << i);
        REQUIRE(conv_ops_in(grads[i]) == std::set<std::string>{expected[k][i]});
      }
    }
  }
}

TEST_CASE("AbstractConv family: compiled graphs compute the reference values", "[conv][grad]") {
  for (const GradCase& c : grad_cases()) {
    INFO(c.label);
    const ConvParams p = c.params();
    const Tensor x = random_tensor(DType::float64, c.image, 31);
    const Tensor w = random_tensor(DType::float64, c.kernel_shape(), 32);
    const Tensor t = random_tensor(DType::float64, c.output_shape(), 33);
    const Variable xv = make_input(TensorType::of_rank(DType::float64, x.rank()), "x");
    const Variable wv = make_input(TensorType::of_rank(DType::float64, w.rank()), "w");
    const Variable tv = make_input(TensorType::of_rank(DType::float64, t.rank()), "t");
    const ConvOptions o = c.options();
    Shape kernel_full = c.kernel_shape();
    Variable y, gi, gw;
    if (c.convdim == 2) {
      y = conv2d(xv, wv, o);
      gi = conv2d_grad_wrt_inputs(tv, wv, dims_of_shape(c.image), o);
      gw = conv2d_grad_wrt_weights(xv, tv, dims_of_shape(kernel_full), o);
    } else {
      y = conv3d(xv, wv, o);
      gi = conv3d_grad_wrt_inputs(tv, wv, dims_of_shape(c.image), o);
      gw = conv3d_grad_wrt_weights(xv, tv, dims_of_shape(kernel_full), o);
    }
    // perform() itself, called on the nodes: exactly the reference.
    const auto spatial_tensor = [](const Shape& s) {
      return Tensor::from_vector<std::int64_t>(s, {static_cast<std::int64_t>(s.size())});
    };
    REQUIRE(tensor_equal(perform_of(y, {x, w}), reference_conv_forward(p, x, w)));
    REQUIRE(tensor_equal(perform_of(gi, {w, t, spatial_tensor(c.image_spatial())}),
                         reference_conv_grad_inputs(p, w, t, c.image_spatial())));
    REQUIRE(tensor_equal(perform_of(gw, {x, t, spatial_tensor(c.kernel_spatial)}),
                         reference_conv_grad_weights(p, x, t, c.kernel_spatial)));
    // The compiled function (whatever implementation the passes choose): the same values.
    const auto results = convgraph::testing::run_graph({xv, wv, tv}, {y, gi, gw}, {x, w, t});
    REQUIRE(results.size() == 3);
    REQUIRE_ALLCLOSE(results[0], reference_conv_forward(p, x, w), 1e-10, 1e-12);
    REQUIRE_ALLCLOSE(results[1], reference_conv_grad_inputs(p, w, t, c.image_spatial()), 1e-10,
                     1e-12);
    REQUIRE_ALLCLOSE(results[2], reference_conv_grad_weights(p, x, t, c.kernel_spatial), 1e-10,
                     1e-12);
  }
}

TEST_CASE("AbstractConv perform rejects run-time shapes before writing", "[conv][grad]") {
  // The graph has unknown static shapes, so the mismatch surfaces when the function runs.
  const GradCase c = grad_cases()[1];  // groups = 2
  const Variable xv = make_input(TensorType::of_rank(DType::float64, 4), "x");
  const Variable wv = make_input(TensorType::of_rank(DType::float64, 4), "w");
  const Variable y = conv2d(xv, wv, c.options());
  const Tensor x3 = random_tensor(DType::float64, {2, 3, 6, 7}, 1);  // 3 channels, 2 groups
  const Tensor w = random_tensor(DType::float64, c.kernel_shape(), 2);
  REQUIRE_THROWS_AS(convgraph::testing::run_graph({xv, wv}, {y}, {x3, w}), ShapeError);
}
