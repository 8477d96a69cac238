// conv3d2d: the diagonal view and its two ops against explicit indexing, and
// conv3d2d::conv3d against the abstract 3-D convolution with the axes reordered.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/ops/conv/conv.hpp"
#include "convgraph/ops/conv/conv3d2d.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
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

// X (n0, n1, n2) of float64 -> the diagonal over axes (0, 1) by explicit indexing.
Tensor diagonal_reference(const Tensor& x) {
  const Shape& s = x.shape();
  const auto v = x.to_vector<double>();
  const std::int64_t rows = s[0] - s[1] + 1;
  std::vector<double> out;
  for (std::int64_t a = 0; a < rows; ++a) {
    for (std::int64_t b = 0; b < s[1]; ++b) {
      for (std::int64_t c = 0; c < s[2]; ++c) {
        out.push_back(v[static_cast<std::size_t>(((a + s[1] - 1 - b) * s[1] + b) * s[2] + c)]);
      }
    }
  }
  return Tensor::from_vector<double>(out, {rows, s[1], s[2]});
}

Tensor inc_diagonal_reference(const Tensor& x, const Tensor& amt) {
  const Shape& s = x.shape();
  auto v = x.to_vector<double>();
  const auto a = amt.to_vector<double>();
  const std::int64_t rows = s[0] - s[1] + 1;
  std::size_t k = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t b = 0; b < s[1]; ++b) {
      for (std::int64_t c = 0; c < s[2]; ++c) {
        v[static_cast<std::size_t>(((i + s[1] - 1 - b) * s[1] + b) * s[2] + c)] += a[k++];
      }
    }
  }
  return Tensor::from_vector<double>(v, s);
}

// The output of conv3d2d::conv3d computed by convgraph::conv3d on the reordered axes.
Tensor conv3d_reordered(const Tensor& signals, const Tensor& filters, const BorderMode& border) {
  const Variable s = input_like(signals, "s");
  const Variable f = input_like(filters, "f");
  const Variable y = dimshuffle(conv3d(dimshuffle(s, {0, 2, 1, 3, 4}),
                                       dimshuffle(f, {0, 2, 1, 3, 4}), {.border_mode = border}),
                                {0, 2, 1, 3, 4});
  return eval(y, {s, f}, {signals, filters});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// get_diagonal_subtensor_view

TEST_CASE("get_diagonal_subtensor_view is v[a, b] = x[a + n1 - 1 - b, b]", "[conv3d2d]") {
  const Tensor x = random_tensor(DType::float64, {5, 3, 2}, 1);
  const Tensor v = conv3d2d::get_diagonal_subtensor_view(x, 0, 1);
  REQUIRE(v.shape() == Shape{3, 3, 2});
  REQUIRE(v.shares_storage_with(x));
  REQUIRE(tensor_equal(v.contiguous(), diagonal_reference(x)));
  // Negative axes count from the end; the view of a view composes.
  REQUIRE(tensor_equal(conv3d2d::get_diagonal_subtensor_view(x, -3, -2).contiguous(),
                       diagonal_reference(x)));
  // Axes that are not adjacent, on a permuted (non-contiguous) input.
  const Tensor y = random_tensor(DType::float64, {2, 4, 3, 2}, 2);
  const Tensor yp = y.permute({1, 2, 0, 3});  // (4, 3, 2, 2)
  const Tensor vy = conv3d2d::get_diagonal_subtensor_view(yp, 0, 1);
  REQUIRE(vy.shape() == Shape{2, 3, 2, 2});
  const auto yv = y.to_vector<double>();
  const auto got = vy.contiguous().to_vector<double>();
  std::size_t k = 0;
  for (std::int64_t a = 0; a < 2; ++a) {
    for (std::int64_t b = 0; b < 3; ++b) {
      for (std::int64_t c = 0; c < 2; ++c) {
        for (std::int64_t d = 0; d < 2; ++d) {
          // yp[i, j, c, d] = y[c, i, j, d] with i = a + 2 - b, j = b.
          const std::int64_t i = a + 2 - b;
          CHECK(got[k++] == yv[static_cast<std::size_t>(((c * 4 + i) * 3 + b) * 2 + d)]);
        }
      }
    }
  }
}

TEST_CASE("get_diagonal_subtensor_view: a shorter first axis is an UnsupportedError",
          "[conv3d2d]") {
  const Tensor x = Tensor::zeros(DType::float32, {2, 3});
  require_error<UnsupportedError>([&] { conv3d2d::get_diagonal_subtensor_view(x, 0, 1); },
                                  {"[2, 3]", "axis 0 (2)", "axis 1 (3)"});
}

TEST_CASE("get_diagonal_subtensor_view: bad axes are a ValueError", "[conv3d2d]") {
  const Tensor x = Tensor::zeros(DType::float32, {4, 3});
  require_error<ValueError>([&] { conv3d2d::get_diagonal_subtensor_view(x, 1, 1); }, {"same axis"});
  require_error<ValueError>([&] { conv3d2d::get_diagonal_subtensor_view(x, 0, 2); },
                            {"axis 2", "rank 2"});
}

TEST_CASE("get_diagonal_subtensor_view: an empty second axis is a ShapeError", "[conv3d2d]") {
  const Tensor x = Tensor::zeros(DType::float32, {4, 0});
  require_error<ShapeError>([&] { conv3d2d::get_diagonal_subtensor_view(x, 0, 1); },
                            {"axis 1", "empty"});
}

// ---------------------------------------------------------------------------------------------
// DiagonalSubtensor / IncDiagonalSubtensor

TEST_CASE("DiagonalSubtensor computes the diagonal view", "[conv3d2d]") {
  const Tensor x = random_tensor(DType::float64, {6, 4, 2}, 3);
  SECTION("static shapes") {
    const Variable xv = input_like(x, "x");
    const Variable d = conv3d2d::diagonal_subtensor(xv, 0, 1);
    REQUIRE(d.type().dims == StaticShape{3, 4, 2});
    REQUIRE(tensor_equal(eval(d, {xv}, {x}), diagonal_reference(x)));
  }
  SECTION("unknown shapes: infer_shape gives n0 - n1 + 1") {
    const Variable xv = tensor3("x", DType::float64);
    const Variable d = conv3d2d::diagonal_subtensor(xv, 0, 1);
    REQUIRE(d.type().dims == StaticShape(3));
    const ShapeDims shape = symbolic_shape(d);
    const Variable rows = dim_variable(shape[0]);
    REQUIRE(eval(rows, {xv}, {x}).item<std::int64_t>() == 3);
    REQUIRE(tensor_equal(eval(d, {xv}, {x}), diagonal_reference(x)));
  }
  SECTION("inplace returns a view, otherwise a copy") {
    const conv3d2d::DiagonalSubtensor copy(0, 1), view(0, 1, true);
    std::vector<Tensor> out(1);
    copy.perform({x}, out);
    REQUIRE_FALSE(out[0].shares_storage_with(x));
    REQUIRE(copy.view_map().empty());
    view.perform({x}, out);
    REQUIRE(out[0].shares_storage_with(x));
    REQUIRE(view.view_map() == std::vector<std::pair<int, int>>{{0, 0}});
    REQUIRE(tensor_equal(out[0].contiguous(), diagonal_reference(x)));
  }
  SECTION("identity") {
    const conv3d2d::DiagonalSubtensor a(0, 1), b(0, 1), c(1, 2), d(0, 1, true);
    REQUIRE(a.equals(b));
    REQUIRE(a.hash() == b.hash());
    REQUIRE_FALSE(a.equals(c));
    REQUIRE_FALSE(a.equals(d));
    REQUIRE(a.str() == "DiagonalSubtensor{0, 1}");
    REQUIRE(d.str() == "DiagonalSubtensor{0, 1, inplace}");
  }
}

TEST_CASE("IncDiagonalSubtensor adds into the diagonal view of a copy", "[conv3d2d]") {
  const Tensor x = random_tensor(DType::float64, {5, 3, 2}, 4);
  const Tensor amt = random_tensor(DType::float64, {3, 3, 2}, 5);
  const Variable xv = input_like(x, "x");
  const Variable av = input_like(amt, "amt");
  const Variable y = conv3d2d::inc_diagonal_subtensor(xv, 0, 1, av);
  REQUIRE(y.type() == xv.type());
  const auto x_before = x.to_vector<double>();
  REQUIRE_ALLCLOSE(eval(y, {xv, av}, {x, amt}), inc_diagonal_reference(x, amt), 1e-14, 0);
  REQUIRE(x.to_vector<double>() == x_before);  // the input is untouched
  // The inplace flag is recorded only.
  const conv3d2d::IncDiagonalSubtensor inplace(0, 1, true);
  std::vector<Tensor> out(1);
  inplace.perform({x, amt}, out);
  REQUIRE_FALSE(out[0].shares_storage_with(x));
  REQUIRE(inplace.str() == "IncDiagonalSubtensor{0, 1, inplace}");
}

TEST_CASE("DiagonalSubtensor and IncDiagonalSubtensor gradients (float64)", "[conv3d2d]") {
  const Tensor x = random_tensor(DType::float64, {5, 3, 2}, 6);
  const Tensor amt = random_tensor(DType::float64, {3, 3, 2}, 7);
  verify_grad(
      [](const std::vector<Variable>& in) { return conv3d2d::diagonal_subtensor(in[0], 0, 1); },
      {x});
  verify_grad(
      [](const std::vector<Variable>& in) {
        return conv3d2d::inc_diagonal_subtensor(in[0], 0, 1, in[1]);
      },
      {x, amt});
  // Non-adjacent axes.
  const Tensor z = random_tensor(DType::float64, {4, 2, 3}, 8);
  verify_grad(
      [](const std::vector<Variable>& in) { return conv3d2d::diagonal_subtensor(in[0], 0, 2); },
      {z});
}

TEST_CASE("DiagonalSubtensor and IncDiagonalSubtensor R-operators", "[conv3d2d]") {
  const Tensor x = random_tensor(DType::float64, {5, 3, 2}, 9);
  const Tensor amt = random_tensor(DType::float64, {3, 3, 2}, 10);
  CHECK(
      check_rop(
          [](const std::vector<Variable>& in) { return conv3d2d::diagonal_subtensor(in[0], 0, 1); },
          {x}) == "");
  CHECK(check_rop(
            [](const std::vector<Variable>& in) {
              return conv3d2d::inc_diagonal_subtensor(in[0], 0, 1, in[1]);
            },
            {x, amt}) == "");
  // Only the increment moves.
  const Variable xv = input_like(x, "x");
  const Variable av = input_like(amt, "amt");
  const Variable ev = input_like(amt, "v");
  const Variable r = Rop({conv3d2d::inc_diagonal_subtensor(xv, 0, 1, av)}, {av}, {ev}).front();
  REQUIRE_ALLCLOSE(eval(r, {xv, av, ev}, {x, amt, amt}),
                   inc_diagonal_reference(Tensor::zeros(DType::float64, {5, 3, 2}), amt), 1e-14, 0);
}

TEST_CASE("DiagonalSubtensor: invalid axes are a ValueError", "[conv3d2d]") {
  require_error<ValueError>([] { conv3d2d::DiagonalSubtensor(1, 1); }, {"(1, 1)", "distinct"});
  require_error<ValueError>([] { conv3d2d::IncDiagonalSubtensor(-1, 0); }, {"(-1, 0)"});
  require_error<ValueError>(
      [] { conv3d2d::diagonal_subtensor(tensor3("x", DType::float32), 0, 5); },
      {"axis 5", "rank 3"});
}

TEST_CASE("DiagonalSubtensor: an input of too small a rank is a TypeError", "[conv3d2d]") {
  require_error<TypeError>(
      [] {
        apply(std::make_shared<conv3d2d::DiagonalSubtensor>(0, 3), {tensor3("x", DType::float32)});
      },
      {"rank 3", "at least 4"});
}

TEST_CASE(
    "DiagonalSubtensor: a static first axis shorter than the second is an "
    "UnsupportedError",
    "[conv3d2d]") {
  require_error<UnsupportedError>(
      [] {
        conv3d2d::diagonal_subtensor(tensor("x", DType::float32, {2, 3}), 0, 1);
      },
      {"axis 0 (2)", "axis 1 (3)"});
}

TEST_CASE("DiagonalSubtensor: a static empty second axis is a ShapeError", "[conv3d2d]") {
  require_error<ShapeError>(
      [] {
        conv3d2d::diagonal_subtensor(tensor("x", DType::float32, {2, 0}), 0, 1);
      },
      {"axis 1 is empty"});
}

TEST_CASE("IncDiagonalSubtensor: an increment of another rank is a TypeError", "[conv3d2d]") {
  require_error<TypeError>(
      [] {
        conv3d2d::inc_diagonal_subtensor(tensor3("x", DType::float32), 0, 1,
                                         matrix("a", DType::float32));
      },
      {"increment", "rank 2", "expected the rank"});
}

TEST_CASE("IncDiagonalSubtensor: an increment of another dtype is a TypeError", "[conv3d2d]") {
  require_error<TypeError>(
      [] {
        conv3d2d::inc_diagonal_subtensor(tensor3("x", DType::float32), 0, 1,
                                         tensor3("a", DType::float64));
      },
      {"increment", "float64", "float32"});
}

TEST_CASE("IncDiagonalSubtensor: an increment of the wrong static shape is a ShapeError",
          "[conv3d2d]") {
  require_error<ShapeError>(
      [] {
        conv3d2d::inc_diagonal_subtensor(tensor("x", DType::float32, {5, 3}), 0, 1,
                                         tensor("a", DType::float32, {4, 3}));
      },
      {"float32[4, 3]", "[3, 3]"});
}

TEST_CASE("IncDiagonalSubtensor: an increment of the wrong run-time shape is a ShapeError",
          "[conv3d2d]") {
  const Variable x = matrix("x", DType::float64);
  const Variable a = matrix("a", DType::float64);
  const Variable y = conv3d2d::inc_diagonal_subtensor(x, 0, 1, a);
  require_error<ShapeError>(
      [&] {
        eval(y, {x, a},
             {Tensor::zeros(DType::float64, {5, 3}), Tensor::zeros(DType::float64, {3, 2})});
      },
      {"[3, 2]", "[5, 3]", "[3, 3]"});
}

// ---------------------------------------------------------------------------------------------
// conv3d2d::conv3d

TEST_CASE("conv3d2d::conv3d equals conv3d with the axes reordered", "[conv3d2d]") {
  struct Case {
    Shape signals, filters;
  };
  const std::vector<Case> cases{
      {{2, 5, 3, 6, 5}, {4, 3, 3, 3, 2}},  // odd and even kernels
      {{1, 4, 2, 5, 5}, {3, 1, 2, 2, 3}},  // one filter frame
      {{1, 6, 1, 4, 4}, {2, 4, 1, 1, 1}},  // even time kernel, 1x1 spatial
  };
  for (const Case& c : cases) {
    const Tensor s = random_tensor(DType::float64, c.signals, 51);
    const Tensor f = random_tensor(DType::float64, c.filters, 52);
    for (const std::string mode : {"valid", "full", "half"}) {
      INFO("signals " << shape_str(c.signals) << " filters " << shape_str(c.filters) << " mode "
                      << mode);
      const Tensor expected = conv3d_reordered(s, f, mode);
      {  // static types
        const Variable sv = input_like(s, "s");
        const Variable fv = input_like(f, "f");
        const Variable y = conv3d2d::conv3d(sv, fv, {.border_mode = mode});
        REQUIRE_ALLCLOSE(eval(y, {sv, fv}, {s, f}), expected, 1e-10, 1e-10);
      }
      {  // unknown types with shape hints
        const Variable sv = tensor5("s", DType::float64);
        const Variable fv = tensor5("f", DType::float64);
        StaticShape sh(c.signals.begin(), c.signals.end()), fh(c.filters.begin(), c.filters.end());
        const Variable y = conv3d2d::conv3d(
            sv, fv, {.signals_shape = sh, .filters_shape = fh, .border_mode = mode});
        REQUIRE_ALLCLOSE(eval(y, {sv, fv}, {s, f}), expected, 1e-10, 1e-10);
      }
      {  // unknown types, no hints
        const Variable sv = tensor5("s", DType::float64);
        const Variable fv = tensor5("f", DType::float64);
        const Variable y = conv3d2d::conv3d(sv, fv, {.border_mode = mode});
        REQUIRE_ALLCLOSE(eval(y, {sv, fv}, {s, f}), expected, 1e-10, 1e-10);
      }
    }
  }
}

TEST_CASE("conv3d2d::conv3d with a time border other than the spatial one", "[conv3d2d]") {
  const Tensor s = random_tensor(DType::float64, {1, 4, 2, 5, 4}, 53);
  const Tensor f = random_tensor(DType::float64, {2, 3, 2, 2, 3}, 54);
  const Variable sv = input_like(s, "s");
  const Variable fv = input_like(f, "f");
  // Time 'full' pads 2 frames each side; height and width 'valid'.
  const Variable y = conv3d2d::conv3d(sv, fv, {.border_mode = {"full", "valid", "valid"}});
  REQUIRE_ALLCLOSE(eval(y, {sv, fv}, {s, f}), conv3d_reordered(s, f, BorderMode{2, 0, 0}), 1e-10,
                   1e-10);
  // Time 'half' (1 frame each side), spatial 'full'.
  const Variable z = conv3d2d::conv3d(sv, fv, {.border_mode = {"half", "full", "full"}});
  REQUIRE_ALLCLOSE(eval(z, {sv, fv}, {s, f}), conv3d_reordered(s, f, BorderMode{1, 1, 2}), 1e-10,
                   1e-10);
}

TEST_CASE("conv3d2d::conv3d gradient (float64)", "[conv3d2d]") {
  const Tensor s = random_tensor(DType::float64, {1, 4, 2, 3, 3}, 55);
  const Tensor f = random_tensor(DType::float64, {2, 2, 2, 2, 2}, 56);
  for (const std::string mode : {"valid", "full"}) {
    INFO(mode);
    verify_grad(
        [mode](const std::vector<Variable>& in) {
          return conv3d2d::conv3d(in[0], in[1], {.border_mode = mode});
        },
        {s, f});
  }
}

TEST_CASE("conv3d2d::conv3d: inputs that are not 5-D are a TypeError", "[conv3d2d]") {
  require_error<TypeError>(
      [] { conv3d2d::conv3d(tensor4("s", DType::float32), tensor5("f", DType::float32)); },
      {"signals", "rank 4", "5-D"});
  require_error<TypeError>(
      [] { conv3d2d::conv3d(tensor5("s", DType::float32), tensor4("f", DType::float32)); },
      {"filters", "rank 4", "5-D"});
}

TEST_CASE("conv3d2d::conv3d: shape hints of the wrong length are a ValueError", "[conv3d2d]") {
  require_error<ValueError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.signals_shape = {1, 2, 3, 4}});
      },
      {"signals_shape", "4 entries", "expected 5"});
  require_error<ValueError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.filters_shape = {1, 2, 3, 4, 5, 6}});
      },
      {"filters_shape", "6 entries"});
}

TEST_CASE("conv3d2d::conv3d: border_mode 'same' is an UnsupportedError", "[conv3d2d]") {
  require_error<UnsupportedError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.border_mode = "same"});
      },
      {"'same'", "not implemented"});
}

TEST_CASE("conv3d2d::conv3d: an unknown border_mode is a ValueError", "[conv3d2d]") {
  require_error<ValueError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.border_mode = {"valid", "wide", "wide"}});
      },
      {"invalid border_mode 'wide'", "height"});
}

TEST_CASE("conv3d2d::conv3d: a border_mode with two entries is a ValueError", "[conv3d2d]") {
  require_error<ValueError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.border_mode = {"valid", "full"}});
      },
      {"2 entries", "three"});
}

TEST_CASE("conv3d2d::conv3d: different height and width modes are an UnsupportedError",
          "[conv3d2d]") {
  require_error<UnsupportedError>(
      [] {
        conv3d2d::conv3d(tensor5("s", DType::float32), tensor5("f", DType::float32),
                         {.border_mode = {"valid", "full", "valid"}});
      },
      {"height and width", "'full' and 'valid'"});
}

TEST_CASE("conv3d2d::conv3d: different channel counts are a ShapeError", "[conv3d2d]") {
  require_error<ShapeError>(
      [] {
        conv3d2d::conv3d(tensor("s", DType::float32, {1, 4, 3, 5, 5}),
                         tensor("f", DType::float32, {2, 2, 2, 3, 3}));
      },
      {"3 channels", "filters have 2"});
}

TEST_CASE("conv3d2d::conv3d: fewer signal frames than filter frames is a ShapeError",
          "[conv3d2d]") {
  require_error<ShapeError>(
      [] {
        conv3d2d::conv3d(tensor("s", DType::float32, {1, 2, 3, 5, 5}),
                         tensor("f", DType::float32, {2, 3, 3, 3, 3}));
      },
      {"2 signal frames", "3 filter frames"});
}
