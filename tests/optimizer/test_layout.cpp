// Layouts kept across layers: the blocked orders of runtime/layout.hpp, the layout of a type and
// debugprint, the LayoutReorder op, and the layout pass on chains of oneDNN convolutions and
// elementwise nodes against the same graphs without it (optimizer_excluding=layout), in
// DebugMode, and in the memory plan.
#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/tensor/layout_reorder.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/runtime/layout.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::allclose_report;
using convgraph::testing::random_tensor;

TEST_CASE("layout: blocked orders place each element where oneDNN's nChw8c does", "[layout]") {
  const Shape shape{2, 16, 3, 5};
  std::vector<float> values(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const Tensor x = Tensor::from_vector(values, shape);
  for (const Layout layout : {Layout::blocked_c8, Layout::blocked_c16}) {
    const std::int64_t block = layout_block(layout);
    const Tensor b = reorder_layout(x, Layout::logical, layout);
    CHECK(b.shape() == shape);
    const auto got = b.to_vector<float>();
    const std::int64_t positions = 15;
    for (std::int64_t n = 0; n < 2; ++n) {
      for (std::int64_t c = 0; c < 16; ++c) {
        for (std::int64_t s = 0; s < positions; ++s) {
          const std::int64_t logical = (n * 16 + c) * positions + s;
          const std::int64_t blocked =
              ((n * (16 / block) + c / block) * positions + s) * block + c % block;
          REQUIRE(got[static_cast<std::size_t>(blocked)] == values[logical]);
        }
      }
    }
    // And back, for every dtype size, and from one block size to the other.
    CHECK(reorder_layout(b, layout, Layout::logical).to_vector<float>() == values);
    const Tensor d = x.cast(DType::float64);
    CHECK(reorder_layout(reorder_layout(d, Layout::logical, layout), layout, Layout::logical)
              .to_vector<double>() == d.to_vector<double>());
  }
  const Tensor c8 = reorder_layout(x, Layout::logical, Layout::blocked_c8);
  const Tensor c16 = reorder_layout(c8, Layout::blocked_c8, Layout::blocked_c16);
  CHECK(c16.to_vector<float>() ==
        reorder_layout(x, Layout::logical, Layout::blocked_c16).to_vector<float>());
  // Ranks 3 and 5, positions past one tile of 16 and not a multiple of it, and elements of 1, 2, 4
  // and 8 bytes: each element lands where the index formula above puts it, and comes back.
  for (const Shape& other : {Shape{3, 32, 37}, Shape{1, 16, 2, 3, 5}}) {
    std::int64_t spots = 1;
    for (std::size_t a = 2; a < other.size(); ++a) spots *= other[a];
    std::vector<float> ramp(static_cast<std::size_t>(shape_numel(other)));
    for (std::size_t i = 0; i < ramp.size(); ++i)
      ramp[i] = static_cast<float>(i % 101);  // exact in every dtype below
    const Tensor base = Tensor::from_vector(ramp, other);
    for (const DType dtype : {DType::float16, DType::float32, DType::float64, DType::int8}) {
      const Tensor t = base.cast(dtype);
      const Tensor b = reorder_layout(t, Layout::logical, Layout::blocked_c16);
      const auto got = b.cast(DType::float64).to_vector<double>();
      const std::int64_t channels = other[1];
      for (std::int64_t n = 0; n < other[0]; ++n) {
        for (std::int64_t c = 0; c < channels; ++c) {
          for (std::int64_t s = 0; s < spots; ++s) {
            const std::int64_t logical = (n * channels + c) * spots + s;
            const std::int64_t blocked = ((n * (channels / 16) + c / 16) * spots + s) * 16 + c % 16;
            REQUIRE(got[static_cast<std::size_t>(blocked)] ==
                    ramp[static_cast<std::size_t>(logical)]);
          }
        }
      }
      CHECK(reorder_layout(b, Layout::blocked_c16, Layout::logical)
                .cast(DType::float64)
                .to_vector<double>() == t.cast(DType::float64).to_vector<double>());
    }
  }
  // Given a buffer of the right kind, the reorder writes into it.
  Tensor given = Tensor::empty(DType::float32, shape);
  const Tensor into = reorder_layout(x, Layout::logical, Layout::blocked_c8, given);
  CHECK(into.raw_data() == given.raw_data());
}

TEST_CASE("layout: shapes a blocked layout cannot hold are refused", "[layout]") {
  CHECK(layout_fits(Layout::blocked_c8, {2, 16, 4, 4}));
  CHECK_FALSE(layout_fits(Layout::blocked_c8, {2, 12, 4, 4}));
  CHECK_FALSE(layout_fits(Layout::blocked_c16, {2, 8, 4, 4}));
  CHECK_FALSE(layout_fits(Layout::blocked_c8, {16, 8}));
  CHECK(layout_fits(Layout::logical, {3}));
  const Tensor x = Tensor::zeros(DType::float32, {2, 12, 4, 4});
  CHECK_THROWS_AS(reorder_layout(x, Layout::logical, Layout::blocked_c8), ValueError);
  try {
    reorder_layout(x, Layout::logical, Layout::blocked_c8);
  } catch (const ValueError& e) {
    const std::string message = e.what();
    CHECK(message.find("nChw8c") != std::string::npos);
    CHECK(message.find("[2, 12, 4, 4]") != std::string::npos);
  }
  CHECK(layout_name(Layout::blocked_c16, 5) == "nCdhw16c");
  CHECK(layout_name(Layout::logical, 4) == "logical");
}

TEST_CASE("layout: types and debugprint show a layout that is not the logical one", "[layout]") {
  const Variable x = tensor("x", DType::float32, {2, 16, 5, 5});
  CHECK(x.type().str() == "float32[2, 16, 5, 5]");
  CHECK(x.type().str(true) == "float32[2, 16, 5, 5]{logical}");
  const Variable b = reorder_to(x, Layout::blocked_c8);
  CHECK(b.type().layout == Layout::blocked_c8);
  CHECK(b.type().str() == "float32[2, 16, 5, 5]{nChw8c}");
  const Variable back = reorder_to(b, Layout::logical);
  const std::string text = debugprint(back);
  INFO(text);
  CHECK(text.find("LayoutReorder{nChw8c->logical}") != std::string::npos);
  CHECK(text.find("LayoutReorder{logical->nChw8c} [id B] float32[2, 16, 5, 5]{nChw8c}") !=
        std::string::npos);
  CHECK(text.find("{logical}") == std::string::npos);
  DebugPrintOptions always;
  always.print_layouts = true;
  CHECK(debugprint(back, always).find("x [id C] float32[2, 16, 5, 5]{logical}") !=
        std::string::npos);
  // A type in another layout is not accepted where the logical one stands.
  CHECK_FALSE(x.type().accepts(b.type()));
}

TEST_CASE("layout: LayoutReorder checks its input and has the reorder back as gradient",
          "[layout]") {
  const Variable x = tensor("x", DType::float32, {2, 16, 3, 3});
  const Variable b = reorder_to(x, Layout::blocked_c8);
  CHECK(reorder_to(x, Layout::logical) == x);
  // The input must be in the op's source layout.
  CHECK_THROWS_AS(apply(std::make_shared<LayoutReorder>(Layout::blocked_c8, Layout::logical), {x}),
                  TypeError);
  // Channels that are not a multiple of the block, or no channel axis.
  CHECK_THROWS_AS(reorder_to(tensor("y", DType::float32, {2, 12, 3, 3}), Layout::blocked_c8),
                  ValueError);
  CHECK_THROWS_AS(reorder_to(tensor("m", DType::float32, {16, 16}), Layout::blocked_c8),
                  ValueError);
  // Elementwise ops keep a layout their inputs share; a mix, a broadcast or an op that reads the
  // logical order is refused.
  CHECK(exp(b).type().layout == Layout::blocked_c8);
  CHECK((b * 2.0).type().layout == Layout::blocked_c8);
  CHECK_THROWS_AS(b + x, TypeError);
  CHECK_THROWS_AS(b + tensor("s", DType::float32, {1, 16, 1, 1}), TypeError);
  CHECK_THROWS_AS(sum(b), TypeError);
  CHECK_THROWS_AS(apply(std::make_shared<LayoutReorder>(Layout::logical, Layout::blocked_c8), {b}),
                  TypeError);
  // Round trip through a compiled function; the gradient of a sum through both reorders is ones.
  const Variable y = reorder_to(b * b, Layout::logical);
  const Variable g = grad(sum(y), x);
  const Function f = compile({x}, {y, g});
  const Tensor xv = random_tensor(DType::float32, {2, 16, 3, 3}, 3);
  const std::vector<Tensor> out = f({xv});
  const auto xs = xv.to_vector<float>();
  const auto ys = out[0].to_vector<float>();
  const auto gs = out[1].to_vector<float>();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    REQUIRE(ys[i] == xs[i] * xs[i]);
    REQUIRE(std::abs(gs[i] - 2 * xs[i]) <= 1e-6f);
  }
}

#if CONVGRAPH_HAVE_ONEDNN
namespace {

StaticShape static_of(const Shape& s) {
  return StaticShape(s.begin(), s.end());
}

struct Chain {
  std::vector<Variable> inputs;
  std::vector<Variable> outputs;
  std::vector<Tensor> args;
};

// x -> conv (bias, relu) -> conv -> relu(.) * 2 + conv' -> conv (residual) -> outputs, with the
// gradients of a cost with respect to x and every weight: forward, backward-data and
// backward-weights chains. FIRST: the border of the first convolution (its output keeps the
// other shapes: "valid" borders shrink the image, the rest keep sizes that the others follow).
Chain build_chain(const ConvOptions& first, const Shape& image, std::int64_t width,
                  std::uint64_t seed) {
  Chain c;
  const DType f32 = DType::float32;
  const std::int64_t channels = image[1];
  const Variable x = tensor("x", f32, static_of(image));
  const Variable w1 = tensor("w1", f32, {width, channels / first.num_groups, 3, 3});
  const Variable b1 = tensor("b1", f32, {width});
  const Variable w2 = tensor("w2", f32, {width, width, 3, 3});
  const Variable w3 = tensor("w3", f32, {width, width, 3, 3});
  const Variable w4 = tensor("w4", f32, {width, width, 3, 3});
  const ConvOptions half{.border_mode = "half"};
  const Variable h1 = relu(conv2d(x, w1, b1, first));
  const Variable h2 = conv2d(h1, w2, half);
  const Variable h3 = relu(h2) * 2.0 + conv2d(h1, w3, half);
  const Variable h4 = relu(conv2d(h3, w4, half) + h3);
  const Variable cost = sum(h4 * h4);
  const std::vector<Variable> wrt{x, w1, b1, w2, w3, w4};
  c.inputs = wrt;
  c.outputs = {h4};
  for (const Variable& g : grad(cost, wrt)) c.outputs.push_back(g);
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    Shape shape;
    for (const StaticDim& d : wrt[i].type().dims) shape.push_back(*d);
    c.args.push_back(random_tensor(f32, shape, seed + i, -0.5, 0.5));
  }
  return c;
}

// The values of F's graph kept in a layout other than the logical one, and its reorders.
struct LayoutCount {
  int blocked = 0, reorders = 0, blocked_convs = 0;
};
LayoutCount count_layouts(const Function& f) {
  LayoutCount n;
  for (Node* node : f.graph().toposort()) {
    if (dynamic_cast<const LayoutReorder*>(node->op.get()) != nullptr) ++n.reorders;
    if (const auto* conv = dynamic_cast<const OneDnnConv*>(node->op.get())) {
      n.blocked_convs += conv->layouts().any_blocked() ? 1 : 0;
    }
    for (const auto& out : node->output_data) n.blocked += out.type.layout != Layout::logical;
  }
  return n;
}

Function compile_chain(const Chain& c, const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(c.inputs, c.outputs, options);
}

}  // namespace

TEST_CASE("layout: chains of oneDNN convolutions compute what they compute without the pass",
          "[layout]") {
  struct Border {
    std::string name;
    ConvOptions options;
  };
  const std::vector<Border> borders = {
      {"valid", {.border_mode = "valid"}},
      {"half", {.border_mode = "half"}},
      {"full", {.border_mode = "full"}},
      {"explicit pads", {.border_mode = {2, 1}}},
      {"asymmetric pads", {.border_mode = BorderMode::pairs({{1, 0}, {0, 2}})}},
      {"stride", {.border_mode = 1, .subsample = {2, 2}}},
      {"dilation", {.border_mode = 2, .filter_dilation = {2, 2}}},
      {"groups", {.border_mode = "half", .num_groups = 2}},
      {"correlation", {.border_mode = "half", .filter_flip = false}},
  };
  const std::string base = "conv.impl=onednn,threads=2";
  std::uint64_t seed = 40;
  for (const Border& b : borders) {
    for (const std::int64_t width : {16, 32}) {
      INFO(b.name << ", width " << width);
      const Chain c = build_chain(b.options, {2, 16, 11, 10}, width, seed += 10);
      const Function with = compile_chain(c, base);
      const Function without = compile_chain(c, base + ",optimizer_excluding=layout");
      const LayoutCount on = count_layouts(with);
      const LayoutCount off = count_layouts(without);
      INFO(debugprint(with.graph()));
      CHECK(off.blocked == 0);
      CHECK(off.reorders == 0);
      CHECK(on.blocked > 0);
      CHECK(on.blocked_convs >= 4);
      // The outputs are logical whatever the pass did.
      for (const Variable& out : with.graph().outputs()) {
        CHECK(out.type().layout == Layout::logical);
      }
      const std::vector<Tensor> a = with(c.args);
      const std::vector<Tensor> e = without(c.args);
      REQUIRE(a.size() == e.size());
      for (std::size_t k = 0; k < a.size(); ++k) {
        const std::string report = allclose_report(a[k], e[k], 1e-4, 1e-4);
        INFO("output " << k << ": " << report);
        CHECK(report.empty());
      }
    }
  }
}

TEST_CASE("layout: the rule's limits", "[layout]") {
  const std::string base = "conv.impl=onednn,threads=2";
  SECTION("channels that are not a multiple of the block stay logical") {
    const Chain c = build_chain({.border_mode = "half"}, {2, 16, 8, 8}, 12, 3);
    const LayoutCount n = count_layouts(compile_chain(c, base));
    CHECK(n.blocked == 0);
    CHECK(n.reorders == 0);
  }
  SECTION("a convolution alone: nothing to keep") {
    const Variable x = tensor("x", DType::float32, {2, 16, 8, 8});
    const Variable w = tensor("w", DType::float32, {16, 16, 3, 3});
    CompileOptions options;
    options.flags = base;
    const Function f = compile({x, w}, {relu(conv2d(x, w, {.border_mode = "half"}))}, options);
    CHECK(count_layouts(f).blocked == 0);
  }
  SECTION("an elementwise node that only a function output reads stays logical") {
    const Variable x = tensor("x", DType::float32, {2, 16, 8, 8});
    const Variable w = tensor("w", DType::float32, {16, 16, 3, 3});
    CompileOptions options;
    options.flags = base;
    const Function f = compile({x, w}, {exp(conv2d(x, w, {.border_mode = "half"}))}, options);
    CHECK(count_layouts(f).blocked == 0);
    CHECK(count_layouts(f).reorders == 0);
  }
  SECTION("a convolution that runs after a logical reader reads the logical order") {
    // h is read by exp (logical) and by a convolution that needs exp's result first (through its
    // kernel): keeping h blocked for it would hold h twice, blocked and logical, in between.
    const Variable x = tensor("x", DType::float32, {2, 16, 8, 8});
    const Variable w1 = tensor("w1", DType::float32, {16, 16, 3, 3});
    const Variable w2 = tensor("w2", DType::float32, {16, 16, 3, 3});
    const ConvOptions half{.border_mode = "half"};
    const Variable h = conv2d(x, w1, half);
    const Variable l = exp(h);
    const Variable y = conv2d(h, w2 * mean(l), half);
    CompileOptions options;
    options.flags = base;
    const Function f = compile({x, w1, w2}, {y, l}, options);
    INFO(debugprint(f.graph()));
    CHECK(count_layouts(f).blocked == 0);
    CHECK(count_layouts(f).reorders == 0);
    const std::vector<Tensor> args{random_tensor(DType::float32, {2, 16, 8, 8}, 1),
                                   random_tensor(DType::float32, {16, 16, 3, 3}, 2, -0.2, 0.2),
                                   random_tensor(DType::float32, {16, 16, 3, 3}, 3, -0.2, 0.2)};
    options.flags = base + ",optimizer_excluding=layout";
    const Function g = compile({x, w1, w2}, {y, l}, options);
    CHECK(allclose_report(f(args)[0], g(args)[0], 1e-5, 1e-5).empty());
  }
  SECTION("a per-channel broadcast keeps the elementwise node logical") {
    const Variable x = tensor("x", DType::float32, {2, 16, 8, 8});
    const Variable w1 = tensor("w1", DType::float32, {16, 16, 3, 3});
    const Variable w2 = tensor("w2", DType::float32, {16, 16, 3, 3});
    const Variable s = tensor("s", DType::float32, {1, 16, 1, 1});
    const ConvOptions half{.border_mode = "half"};
    // exp(.) * s: no epilogue takes it, and s broadcasts per channel.
    const Variable y = conv2d(exp(conv2d(x, w1, half)) * s, w2, half);
    CompileOptions options;
    options.flags = base;
    const Function f = compile({x, w1, w2, s}, {y}, options);
    for (Node* node : f.graph().toposort()) {
      if (dynamic_cast<const ConcreteConv*>(node->op.get()) == nullptr) {
        for (const auto& out : node->output_data) CHECK(out.type.layout == Layout::logical);
      }
    }
    CHECK(count_layouts(f).blocked == 0);
    const std::vector<Tensor> args{random_tensor(DType::float32, {2, 16, 8, 8}, 1),
                                   random_tensor(DType::float32, {16, 16, 3, 3}, 2, -0.2, 0.2),
                                   random_tensor(DType::float32, {16, 16, 3, 3}, 3, -0.2, 0.2),
                                   random_tensor(DType::float32, {1, 16, 1, 1}, 4)};
    options.flags = base + ",optimizer_excluding=layout";
    const Function g = compile({x, w1, w2, s}, {y}, options);
    CHECK(allclose_report(f(args)[0], g(args)[0], 1e-5, 1e-5).empty());
  }
}

TEST_CASE("layout: DebugMode checks blocked nodes against the reference", "[layout]") {
  const Chain c = build_chain({.border_mode = 1, .subsample = {2, 1}}, {2, 16, 9, 8}, 16, 77);
  const Function f = compile_chain(c, "conv.impl=onednn,threads=2,mode=DebugMode");
  CHECK(count_layouts(f).blocked > 0);
  const Function g = compile_chain(c, "conv.impl=onednn,threads=2,optimizer_excluding=layout");
  const std::vector<Tensor> a = f(c.args);
  const std::vector<Tensor> e = g(c.args);
  for (std::size_t k = 0; k < a.size(); ++k) CHECK(allclose_report(a[k], e[k], 1e-4, 1e-4).empty());
}

TEST_CASE("layout: the memory plan sizes blocked values as the measured run", "[layout]") {
  // Blocked buffers hold the logical number of elements (channels a multiple of the block): the
  // planned peak stays within 5% of the measured one, and differs from the plan without the pass
  // by the reorders' buffers at most.
  const Chain c = build_chain({.border_mode = "half"}, {4, 32, 14, 14}, 32, 5);
  const Function with = compile_chain(c, "conv.impl=onednn,threads=2");
  const Function without =
      compile_chain(c, "conv.impl=onednn,threads=2,optimizer_excluding=layout");
  REQUIRE(count_layouts(with).blocked > 0);
  with(c.args);
  with(c.args);
  const auto planned = static_cast<double>(with.planned_peak_bytes());
  const auto measured = static_cast<double>(with.last_peak_bytes());
  INFO("planned " << planned << ", measured " << measured);
  CHECK(std::abs(planned - measured) <= 0.05 * measured);
  const std::int64_t value_bytes = 4 * 32 * 14 * 14 * 4;
  const LayoutCount n = count_layouts(with);
  CHECK(with.planned_peak_bytes() <= without.planned_peak_bytes() + n.reorders * value_bytes);
}

TEST_CASE("layout: a OneDnnConv node refuses blocked layouts on its weights", "[layout]") {
  const ConvParams p = make_conv_params(2, "valid");
  CHECK_THROWS_AS(OneDnnConv(ConvDirection::forward, p, {}, {.b = Layout::blocked_c8}), ValueError);
  CHECK_THROWS_AS(OneDnnConv(ConvDirection::grad_weights, p, {}, {.out = Layout::blocked_c8}),
                  ValueError);
  CHECK_THROWS_AS(OneDnnConv(ConvDirection::forward, p, {}, {.residual = Layout::blocked_c8}),
                  ValueError);
  const OneDnnConv ok(ConvDirection::forward, p, {}, {.a = Layout::blocked_c8});
  CHECK(ok.str().find("layouts(a=nChw8c)") != std::string::npos);
  // Its inputs must come in the layouts it was given.
  const Variable x = tensor("x", DType::float32, {2, 16, 5, 5});
  const Variable w = tensor("w", DType::float32, {16, 16, 3, 3});
  const auto op = std::make_shared<OneDnnConv>(ConvDirection::forward, p, ConvEpilogue{},
                                               OneDnnLayouts{.a = Layout::blocked_c8});
  CHECK_THROWS_AS(apply(op, {x, w}), TypeError);
  CHECK(apply(op, {reorder_to(x, Layout::blocked_c8), w}).type().layout == Layout::logical);
}
#endif
