// The legacy ConvOp and the deprecated old-interface conv2d, and ConvOp's flop count.
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "convgraph/ops/conv/conv.hpp"
#include "convgraph/ops/conv/legacy_conv.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::legacy::ConvOp;
using convgraph::legacy::ConvOpOptions;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

template <typename E>
void require_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  REQUIRE_THROWS_AS(f(), E);
  const std::string message = message_of(f);
  INFO(message);
  for (const auto& p : parts) CHECK(message.find(p) != std::string::npos);
}

Variable input_like(const Tensor& t, const std::string& name) {
  return make_input(TensorType::of(t), name);
}

Variable conv_op(const ConvOpOptions& options, const Variable& image, const Variable& filters) {
  return apply(std::make_shared<ConvOp>(options), {image, filters});
}

// Runs OP's perform on INPUTS.
Tensor perform(const ConvOp& op, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out(1);
  op.perform(inputs, out);
  return out[0];
}

// Silences std::cerr for a scope and keeps what was written.
class CaptureCerr {
 public:
  CaptureCerr() : previous_(std::cerr.rdbuf(buffer_.rdbuf())) {}
  ~CaptureCerr() { std::cerr.rdbuf(previous_); }
  std::string text() const { return buffer_.str(); }

 private:
  std::ostringstream buffer_;
  std::streambuf* previous_;
};

Variable legacy_conv2d(const Variable& x, const Variable& w,
                       const legacy::LegacyConvOptions& options = {}) {
  const CaptureCerr quiet;
  return legacy::conv2d(x, w, options);
}

}  // namespace

TEST_CASE("ConvOp computes a true convolution (hand-computed)", "[legacy]") {
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = Tensor::from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  const ConvOp valid({.output_mode = "valid"});
  // out[y, x] = sum_ij x[y + i, x + j] * w[1 - i, 1 - j]
  REQUIRE(perform(valid, {x, w}).to_vector<double>() == std::vector<double>{23, 33, 53, 63});
  const ConvOp full({.output_mode = "full"});
  const Tensor f = perform(full, {x, w});
  REQUIRE(f.shape() == Shape{1, 1, 4, 4});
  // Corners: x[0,0]*w[0,0], x[0,2]*w[0,1], x[2,0]*w[1,0], x[2,2]*w[1,1].
  const auto v = f.to_vector<double>();
  CHECK(v[0] == 1);
  CHECK(v[3] == 6);
  CHECK(v[12] == 21);
  CHECK(v[15] == 36);
  // Strided: rows 0 and 2 of the full result, columns 0 and 3.
  const ConvOp strided({.dx = 2, .dy = 3, .output_mode = "full"});
  REQUIRE(perform(strided, {x, w}).to_vector<double>() ==
          std::vector<double>{v[0], v[3], v[8], v[11]});
}

TEST_CASE("ConvOp equals conv2d for valid and full, with strides", "[legacy]") {
  const Tensor x = random_tensor(DType::float64, {2, 3, 7, 8}, 61);
  const Tensor w = random_tensor(DType::float64, {4, 3, 3, 2}, 62);
  const Variable xv = input_like(x, "x");
  const Variable wv = input_like(w, "w");
  for (const std::string mode : {"valid", "full"}) {
    for (const auto& stride :
         std::vector<std::vector<std::int64_t>>{{1, 1}, {2, 2}, {2, 3}, {3, 1}}) {
      INFO("mode " << mode << " stride " << stride[0] << ", " << stride[1]);
      const Tensor expected =
          eval(conv2d(xv, wv, {.border_mode = mode, .subsample = stride}), {xv, wv}, {x, w});
      const Variable y = conv_op({.dx = stride[0], .dy = stride[1], .output_mode = mode}, xv, wv);
      REQUIRE(y.type().dims == TensorType::of(expected).dims);
      REQUIRE_ALLCLOSE(eval(y, {xv, wv}, {x, w}), expected, 1e-12, 1e-12);
      // Through the old interface, with every shape given.
      const Variable z = legacy_conv2d(xv, wv,
                                       {.image_shape = {2, 3, 7, 8},
                                        .filter_shape = {4, 3, 3, 2},
                                        .border_mode = mode,
                                        .subsample = stride});
      REQUIRE_ALLCLOSE(eval(z, {xv, wv}, {x, w}), expected, 1e-12, 1e-12);
    }
  }
  // float32 too.
  const Tensor x32 = x.cast(DType::float32), w32 = w.cast(DType::float32);
  const Variable x32v = input_like(x32, "x"), w32v = input_like(w32, "w");
  REQUIRE_ALLCLOSE(eval(legacy_conv2d(x32v, w32v), {x32v, w32v}, {x32, w32}),
                   eval(conv2d(x32v, w32v), {x32v, w32v}, {x32, w32}), 1e-5, 1e-5);
}

TEST_CASE("ConvOp shapes: static types, hints and infer_shape", "[legacy]") {
  const Variable x = tensor4("x", DType::float32);
  const Variable w = tensor4("w", DType::float32);
  const Variable y = conv_op(
      {.imshp = {3, 9, 8}, .kshp = {3, 2}, .nkern = 5, .bsize = 2, .dx = 2, .output_mode = "full"},
      x, w);
  // The parameters give the static output shape even though the input types know nothing.
  REQUIRE(y.type().dims == StaticShape{2, 5, 6, 9});
  const ShapeDims s = symbolic_shape(y);
  REQUIRE(s[0].value() == 2);
  REQUIRE(s[1].value() == 5);
  REQUIRE(s[2].value() == 6);  // (9 + 3 - 2) // 2 + 1
  REQUIRE(s[3].value() == 9);
  const Variable z = conv_op({}, tensor("x", DType::float32, {2, 3, 9, 8}),
                             tensor("w", DType::float32, {5, 3, 3, 2}));
  REQUIRE(z.type().dims == StaticShape{2, 5, 7, 7});
  // A two-entry imshp means one channel.
  REQUIRE(ConvOp({.imshp = {9, 8}}).imshp() == StaticShape{1, 9, 8});
}

TEST_CASE("ConvOp identity", "[legacy]") {
  const ConvOp a({.kshp = {3, 3}, .dx = 2}), b({.kshp = {3, 3}, .dx = 2}), c({.kshp = {3, 3}});
  REQUIRE(a.equals(b));
  REQUIRE(a.hash() == b.hash());
  REQUIRE_FALSE(a.equals(c));
  REQUIRE(a.str() == "ConvOp{valid, dx=2, dy=1, imshp=[?, ?, ?], kshp=[3, 3], nkern=?, bsize=?}");
}

TEST_CASE("ConvOp gradient (float64)", "[legacy]") {
  const Tensor x = random_tensor(DType::float64, {2, 2, 5, 4}, 63);
  const Tensor w = random_tensor(DType::float64, {3, 2, 2, 3}, 64);
  SECTION("valid, stride 1") {
    verify_grad([](const std::vector<Variable>& in) { return conv_op({}, in[0], in[1]); }, {x, w});
  }
  SECTION("full, stride 1") {
    verify_grad(
        [](const std::vector<Variable>& in) {
          return conv_op({.output_mode = "full"}, in[0], in[1]);
        },
        {x, w});
  }
  SECTION("full, stride (2, 1) with every shape") {
    verify_grad(
        [](const std::vector<Variable>& in) {
          return conv_op({.imshp = {2, 5, 4},
                          .kshp = {2, 3},
                          .nkern = 3,
                          .bsize = 2,
                          .dx = 2,
                          .output_mode = "full"},
                         in[0], in[1]);
        },
        {x, w});
  }
}

TEST_CASE("ConvOp R-operator", "[legacy]") {
  const Tensor x = random_tensor(DType::float64, {1, 2, 5, 4}, 65);
  const Tensor w = random_tensor(DType::float64, {2, 2, 2, 2}, 66);
  CHECK(check_rop(
            [](const std::vector<Variable>& in) {
              return conv_op({.dx = 2, .dy = 2, .output_mode = "valid"}, in[0], in[1]);
            },
            {x, w}) == "");
  CHECK(check_rop(
            [](const std::vector<Variable>& in) {
              return conv_op({.output_mode = "full"}, in[0], in[1]);
            },
            {x, w}) == "");
}

TEST_CASE("ConvOp flops", "[legacy]") {
  const ConvOp valid, full({.output_mode = "full"});
  // valid: kh*kw*2 * oh*ow * C*M*B
  CHECK(valid.flops({2, 3, 7, 8}, {4, 3, 3, 2}, {2, 4, 5, 7}) == 3.0 * 2 * 2 * 5 * 7 * 3 * 4 * 2);
  // full: B*M*C*kh*kw*H*W*2
  CHECK(full.flops({2, 3, 7, 8}, {4, 3, 3, 2}, {2, 4, 9, 9}) == 2.0 * 4 * 3 * 3 * 2 * 7 * 8 * 2);
  require_error<ShapeError>(
      [&] {
        valid.flops({2, 3, 7, 8}, {4, 2, 3, 2}, {2, 4, 5, 7});
      },
      {"3 channels", "read 2"});
}

// ---- construction errors ----

TEST_CASE("ConvOp: output_mode 'half' is an UnsupportedError", "[legacy]") {
  require_error<UnsupportedError>([] { ConvOp({.output_mode = "half"}); },
                                  {"'half'", "valid", "full"});
}

TEST_CASE("ConvOp: an unknown output_mode is a ValueError", "[legacy]") {
  require_error<ValueError>([] { ConvOp({.output_mode = "same"}); },
                            {"invalid output_mode 'same'"});
}

TEST_CASE("ConvOp: a stride below 1 is a ValueError", "[legacy]") {
  require_error<ValueError>([] { ConvOp({.dy = 0}); }, {"(1, 0)", "positive"});
}

TEST_CASE("ConvOp: an imshp of the wrong length is a ValueError", "[legacy]") {
  require_error<ValueError>([] { ConvOp({.imshp = {1, 2, 3, 4}}); }, {"imshp", "4 entries"});
}

TEST_CASE("ConvOp: a kshp of the wrong length is a ValueError", "[legacy]") {
  require_error<ValueError>([] { ConvOp({.kshp = {3}}); }, {"kshp", "1 entries"});
}

TEST_CASE("ConvOp: a negative size is a ValueError", "[legacy]") {
  require_error<ValueError>([] { ConvOp({.nkern = -1}); }, {"nkern", "negative"});
}

TEST_CASE("ConvOp: shapes that give no output are a ValueError", "[legacy]") {
  require_error<ValueError>(
      [] {
        ConvOp({.imshp = {1, 2, 5}, .kshp = {3, 3}});
      },
      {"no output", "'valid'"});
}

// ---- make_node errors ----

TEST_CASE("ConvOp: inputs that are not 4-D are a TypeError", "[legacy]") {
  require_error<TypeError>(
      [] { conv_op({}, tensor3("x", DType::float32), tensor4("w", DType::float32)); },
      {"the image", "4-D"});
  require_error<TypeError>(
      [] { conv_op({}, tensor4("x", DType::float32), tensor5("w", DType::float32)); },
      {"the filters", "4-D"});
}

TEST_CASE("ConvOp: integer inputs are a TypeError", "[legacy]") {
  require_error<TypeError>(
      [] { conv_op({}, tensor4("x", DType::int32), tensor4("w", DType::int32)); },
      {"int32", "floating-point"});
}

TEST_CASE("ConvOp: inputs of different dtypes are an UnsupportedError", "[legacy]") {
  require_error<UnsupportedError>(
      [] { conv_op({}, tensor4("x", DType::float32), tensor4("w", DType::float64)); },
      {"float32", "float64", "one dtype"});
}

TEST_CASE("ConvOp: input types contradicting the parameters are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        conv_op({.bsize = 4}, tensor("x", DType::float32, {2, 3, 5, 5}),
                tensor4("w", DType::float32));
      },
      {"float32[2, 3, 5, 5]", "the batch size is 2", "built for 4"});
  require_error<ShapeError>(
      [] {
        conv_op({.kshp = {3, 3}}, tensor4("x", DType::float32),
                tensor("w", DType::float32, {2, 3, 2, 3}));
      },
      {"the kernel height is 2", "built for 3"});
}

TEST_CASE("ConvOp: static channel counts that differ are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        conv_op({}, tensor("x", DType::float32, {2, 3, 5, 5}),
                tensor("w", DType::float32, {2, 4, 3, 3}));
      },
      {"3 channels", "read 4"});
}

TEST_CASE("ConvOp: static types that give no output are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        conv_op({}, tensor("x", DType::float32, {2, 3, 2, 5}),
                tensor("w", DType::float32, {2, 3, 3, 3}));
      },
      {"no output", "'valid'"});
}

// ---- perform errors ----

TEST_CASE("ConvOp: run-time shapes contradicting the parameters are a ShapeError", "[legacy]") {
  const Tensor x = Tensor::zeros(DType::float32, {2, 3, 5, 5});
  const Tensor w = Tensor::zeros(DType::float32, {4, 3, 3, 3});
  require_error<ShapeError>(
      [&] {
        perform(ConvOp({.imshp = {3, 6, 5}}), {x, w});
      },
      {"image has shape [2, 3, 5, 5]", "image shape [3, 6, 5]"});
  require_error<ShapeError>(
      [&] {
        perform(ConvOp({.kshp = {2, 3}}), {x, w});
      },
      {"filters have shape [4, 3, 3, 3]", "filter shape [2, 3]"});
  require_error<ShapeError>(
      [&] {
        perform(ConvOp({.bsize = 3}), {x, w});
      },
      {"batch size 2", "the 3"});
  require_error<ShapeError>(
      [&] {
        perform(ConvOp({.nkern = 5}), {x, w});
      },
      {"their number 4", "the 5"});
  // Through a compiled graph with unknown types.
  const Variable xv = tensor4("x", DType::float32);
  const Variable wv = tensor4("w", DType::float32);
  require_error<ShapeError>(
      [&] {
        eval(conv_op({.bsize = 3}, xv, wv), {xv, wv}, {x, w});
      },
      {"batch size 2"});
}

TEST_CASE("ConvOp: run-time channel counts that differ are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        perform(ConvOp(), {Tensor::zeros(DType::float32, {1, 3, 5, 5}),
                           Tensor::zeros(DType::float32, {1, 2, 3, 3})});
      },
      {"(3 channels)", "(2 channels)"});
}

TEST_CASE("ConvOp: run-time shapes that give no output are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        perform(ConvOp(), {Tensor::zeros(DType::float32, {1, 1, 2, 5}),
                           Tensor::zeros(DType::float32, {1, 1, 3, 3})});
      },
      {"no output"});
}

// ---- gradient restrictions ----

TEST_CASE("ConvOp gradient: 'valid' with a stride is an UnsupportedError", "[legacy]") {
  const Variable x = tensor4("x", DType::float64);
  const Variable y = conv_op({.dx = 2}, x, tensor4("w", DType::float64));
  require_error<UnsupportedError>([&] { grad(sum(y), x); }, {"'valid'", "(2, 1)", "conv2d"});
}

TEST_CASE("ConvOp gradient: a stride other than 1 or 2 is an UnsupportedError", "[legacy]") {
  const Variable x = tensor4("x", DType::float64);
  const Variable y = conv_op(
      {.imshp = {1, 9, 9}, .kshp = {3, 3}, .nkern = 1, .bsize = 1, .dy = 3, .output_mode = "full"},
      x, tensor4("w", DType::float64));
  require_error<UnsupportedError>([&] { grad(sum(y), x); }, {"strides 1 and 2", "(1, 3)"});
}

TEST_CASE("ConvOp gradient: a stride without every shape is a ValueError", "[legacy]") {
  const Variable x = tensor4("x", DType::float64);
  const Variable y = conv_op({.dx = 2, .output_mode = "full"}, x, tensor4("w", DType::float64));
  require_error<ValueError>([&] { grad(sum(y), x); }, {"strided", "every shape"});
}

// ---- the old interface ----

TEST_CASE("legacy conv2d warns once per process", "[legacy]") {
  const Variable x = tensor4("x", DType::float32);
  const Variable w = tensor4("w", DType::float32);
  const bool before = legacy::deprecation_warning_issued();
  std::string text;
  {
    const CaptureCerr capture;
    legacy::conv2d(x, w);
    legacy::conv2d(x, w);
    text = capture.text();
  }
  const std::string message = "convgraph: legacy_conv2d is deprecated; use conv2d\n";
  REQUIRE(legacy::deprecation_warning_issued());
  REQUIRE(text == (before ? std::string() : message));
}

TEST_CASE("legacy conv2d builds a ConvOp from the shapes", "[legacy]") {
  const Variable y = legacy_conv2d(tensor4("x", DType::float32), tensor4("w", DType::float32),
                                   {.image_shape = {2, 3, 9, 8},
                                    .filter_shape = {5, 3, 3, 2},
                                    .border_mode = "full",
                                    .subsample = {2, 1}});
  const auto* op = dynamic_cast<const ConvOp*>(y.owner()->op.get());
  REQUIRE(op != nullptr);
  REQUIRE(op->imshp() == StaticShape{3, 9, 8});
  REQUIRE(op->kshp() == StaticShape{3, 2});
  REQUIRE(op->nkern() == StaticDim{5});
  REQUIRE(op->bsize() == StaticDim{2});
  REQUIRE(op->dx() == 2);
  REQUIRE(op->dy() == 1);
  REQUIRE(op->output_mode() == "full");
  REQUIRE(op->all_shapes_known());
}

TEST_CASE("legacy conv2d: an image_shape of the wrong length is a ValueError", "[legacy]") {
  require_error<ValueError>(
      [] {
        legacy_conv2d(tensor4("x", DType::float32), tensor4("w", DType::float32),
                      {.image_shape = {3, 9, 8}});
      },
      {"image_shape", "3 entries", "expected 4"});
}

TEST_CASE("legacy conv2d: a filter_shape of the wrong length is a ValueError", "[legacy]") {
  require_error<ValueError>(
      [] {
        legacy_conv2d(tensor4("x", DType::float32), tensor4("w", DType::float32),
                      {.filter_shape = {3, 3}});
      },
      {"filter_shape", "2 entries"});
}

TEST_CASE("legacy conv2d: a subsample of the wrong length is a ValueError", "[legacy]") {
  require_error<ValueError>(
      [] {
        legacy_conv2d(tensor4("x", DType::float32), tensor4("w", DType::float32),
                      {.subsample = {2}});
      },
      {"subsample", "1 entries"});
}

TEST_CASE("legacy conv2d: image and filter channels that differ are a ShapeError", "[legacy]") {
  require_error<ShapeError>(
      [] {
        legacy_conv2d(tensor4("x", DType::float32), tensor4("w", DType::float32),
                      {.image_shape = {2, 3, 9, 8}, .filter_shape = {5, 4, 3, 2}});
      },
      {"3 channels", "reads 4"});
}
