// The composite convolution functions (conv2d_transpose, separable, causal, bilinear) against
// values derived independently of the library: the closed forms of the bilinear kernels and of
// bilinear upsampling, the defining sum of the causal convolution, explicit loops for the separable
// convolution, and the adjoint identity <conv2d(x, w), t> = <x, conv2d_transpose(t, w)> for the
// transposed convolution.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/ops/conv/composites.hpp"
#include "convgraph/ops/conv/conv.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;
using convgraph::testing::run_graph;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// REQUIRE that F throws E with a message containing every one of PARTS.
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

Tensor tensor_of(const std::vector<double>& values, const Shape& shape) {
  return Tensor::from_vector<double>(values, shape);
}

double dot(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<double>();
  const auto vb = b.to_vector<double>();
  REQUIRE(va.size() == vb.size());
  double s = 0.0;
  for (std::size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

// ---- closed forms of bilinear upsampling ----

// Weights (index, weight) of linear interpolation at coordinate U of a signal of length N, with
// the coordinate clamped to [0, N - 1].
std::vector<std::pair<std::int64_t, double>> lerp_weights(double u, std::int64_t n) {
  u = std::clamp(u, 0.0, static_cast<double>(n - 1));
  const auto i0 = static_cast<std::int64_t>(std::floor(u));
  const std::int64_t i1 = std::min(i0 + 1, n - 1);
  const double f = u - static_cast<double>(i0);
  return {{i0, 1.0 - f}, {i1, f}};
}

// Upsamples X (B, C, H, W) with per-axis coordinate maps ROW_COORD(h), COL_COORD(w).
Tensor interpolate(const Tensor& x, std::int64_t out_rows, std::int64_t out_cols,
                   const std::function<double(std::int64_t)>& row_coord,
                   const std::function<double(std::int64_t)>& col_coord) {
  const Shape& s = x.shape();
  const auto v = x.to_vector<double>();
  std::vector<double> out;
  for (std::int64_t b = 0; b < s[0]; ++b) {
    for (std::int64_t c = 0; c < s[1]; ++c) {
      for (std::int64_t h = 0; h < out_rows; ++h) {
        for (std::int64_t w = 0; w < out_cols; ++w) {
          double acc = 0.0;
          for (const auto& [i, wi] : lerp_weights(row_coord(h), s[2])) {
            for (const auto& [j, wj] : lerp_weights(col_coord(w), s[3])) {
              acc += wi * wj * v[static_cast<std::size_t>(((b * s[1] + c) * s[2] + i) * s[3] + j)];
            }
          }
          out.push_back(acc);
        }
      }
    }
  }
  return tensor_of(out, {s[0], s[1], out_rows, out_cols}).cast(x.dtype());
}

Tensor expected_upsampling(const Tensor& x, std::int64_t r) {
  const auto coord = [r](std::int64_t h) {
    return static_cast<double>(h - (r - 1) / 2) / static_cast<double>(r);
  };
  return interpolate(x, x.dim(2) * r, x.dim(3) * r, coord, coord);
}

Tensor expected_frac_upsampling(const Tensor& x, std::int64_t pr, std::int64_t qr, std::int64_t pc,
                                std::int64_t qc) {
  const std::int64_t gr = std::gcd(pr, qr), gc = std::gcd(pc, qc);
  pr /= gr;
  qr /= gr;
  pc /= gc;
  qc /= gc;
  const auto coord = [](std::int64_t p, std::int64_t q, std::int64_t n) {
    const std::int64_t pad0 = ((2 * n - 1) * p + 1) / 2;
    return [=](std::int64_t y) {
      return static_cast<double>(y * q + n * p - pad0 - p + 1) / static_cast<double>(p);
    };
  };
  const std::int64_t rows = (pr * x.dim(2) - 1) / qr + 1;
  const std::int64_t cols = (pc * x.dim(3) - 1) / qc + 1;
  return interpolate(x, rows, cols, coord(pr, qr, x.dim(2)), coord(pc, qc, x.dim(3)));
}

// ---- explicit loops for the separable convolution ----

// One spatial axis of a convolution: pads and output size.
struct AxisPlan {
  std::int64_t before = 0, out = 0;
};

AxisPlan plan_axis(const std::string& mode, std::pair<std::int64_t, std::int64_t> pads,
                   std::int64_t image, std::int64_t kernel, std::int64_t stride,
                   std::int64_t dilation) {
  const std::int64_t dk = (kernel - 1) * dilation + 1;
  std::int64_t before = pads.first, after = pads.second;
  if (mode == "valid") before = after = 0;
  if (mode == "full") before = after = dk - 1;
  if (mode == "half") before = after = dk / 2;
  return {before, (image + before + after - dk) / stride + 1};
}

struct SeparableCase {
  std::string mode;  // valid, full, half, or "pads" for PADS
  std::pair<std::int64_t, std::int64_t> pads{0, 0};
  std::int64_t stride = 1;
  std::int64_t dilation = 1;
  bool flip = true;
};

// Depthwise over every spatial axis (NDIM of them; the same border, stride and dilation on each),
// then pointwise. X (B, C, S...), DW (C * mult, 1, K...), PW (M, C * mult, 1...).
Tensor separable_reference(const Tensor& x, const Tensor& dw, const Tensor& pw,
                           const SeparableCase& c) {
  const int ndim = x.rank() - 2;
  const Shape& xs = x.shape();
  const Shape& ks = dw.shape();
  const std::int64_t channels = xs[1], depth_out = ks[0], mult = depth_out / channels;
  std::vector<AxisPlan> plan;
  Shape out_spatial;
  for (int a = 0; a < ndim; ++a) {
    plan.push_back(plan_axis(c.mode, c.pads, xs[2 + a], ks[2 + a], c.stride, c.dilation));
    out_spatial.push_back(plan.back().out);
  }
  const auto xv = x.to_vector<double>();
  const auto kv = dw.to_vector<double>();
  const auto pv = pw.to_vector<double>();
  const std::int64_t out_numel = shape_numel(out_spatial);
  const std::int64_t kernel_numel = shape_numel(Shape(ks.begin() + 2, ks.end()));
  const std::int64_t image_numel = shape_numel(Shape(xs.begin() + 2, xs.end()));
  // depthwise[b][k][position]
  std::vector<double> depthwise(static_cast<std::size_t>(xs[0] * depth_out * out_numel), 0.0);
  for (std::int64_t b = 0; b < xs[0]; ++b) {
    for (std::int64_t k = 0; k < depth_out; ++k) {
      const std::int64_t ch = k / mult;
      for (std::int64_t o = 0; o < out_numel; ++o) {
        double acc = 0.0;
        for (std::int64_t t = 0; t < kernel_numel; ++t) {
          // Decompose the output position O and the tap T per axis (row-major).
          std::int64_t orem = o, trem = t, image_index = 0, kernel_index = 0;
          bool inside = true;
          std::vector<std::int64_t> opos(static_cast<std::size_t>(ndim)),
              tpos(static_cast<std::size_t>(ndim));
          for (int a = ndim - 1; a >= 0; --a) {
            opos[static_cast<std::size_t>(a)] = orem % out_spatial[static_cast<std::size_t>(a)];
            orem /= out_spatial[static_cast<std::size_t>(a)];
            tpos[static_cast<std::size_t>(a)] = trem % ks[static_cast<std::size_t>(2 + a)];
            trem /= ks[static_cast<std::size_t>(2 + a)];
          }
          for (int a = 0; a < ndim; ++a) {
            const auto ua = static_cast<std::size_t>(a);
            const std::int64_t pos = opos[ua] * c.stride + tpos[ua] * c.dilation - plan[ua].before;
            const std::int64_t size = xs[2 + ua];
            inside = inside && pos >= 0 && pos < size;
            image_index = image_index * size + pos;
            const std::int64_t tap = c.flip ? ks[2 + ua] - 1 - tpos[ua] : tpos[ua];
            kernel_index = kernel_index * ks[2 + ua] + tap;
          }
          if (!inside) continue;
          acc += xv[static_cast<std::size_t>((b * channels + ch) * image_numel + image_index)] *
                 kv[static_cast<std::size_t>(k * kernel_numel + kernel_index)];
        }
        depthwise[static_cast<std::size_t>((b * depth_out + k) * out_numel + o)] = acc;
      }
    }
  }
  const std::int64_t m_count = pw.dim(0);
  std::vector<double> out;
  for (std::int64_t b = 0; b < xs[0]; ++b) {
    for (std::int64_t m = 0; m < m_count; ++m) {
      for (std::int64_t o = 0; o < out_numel; ++o) {
        double acc = 0.0;
        for (std::int64_t k = 0; k < depth_out; ++k) {
          acc += pv[static_cast<std::size_t>(m * depth_out + k)] *
                 depthwise[static_cast<std::size_t>((b * depth_out + k) * out_numel + o)];
        }
        out.push_back(acc);
      }
    }
  }
  Shape out_shape{xs[0], m_count};
  out_shape.insert(out_shape.end(), out_spatial.begin(), out_spatial.end());
  return tensor_of(out, out_shape);
}

BorderMode border_of(const SeparableCase& c, int ndim) {
  if (c.mode != "pads") return BorderMode(c.mode);
  std::vector<BorderMode::Entry> entries;
  for (int a = 0; a < ndim; ++a) {
    if (c.pads.first == c.pads.second) {
      entries.emplace_back(c.pads.first);
    } else {
      entries.emplace_back(c.pads);
    }
  }
  return BorderMode(entries);
}

// ---- the causal convolution by its definition ----

// X (B, C, L), W (M, C / G, k) or, unshared, (M, L_out, C / G, k).
Tensor causal_reference(const Tensor& x, const Tensor& w, std::int64_t s, std::int64_t d,
                        std::int64_t groups, bool flip, bool unshared) {
  const std::int64_t batch = x.dim(0), channels = x.dim(1), length = x.dim(2);
  const std::int64_t filters = w.dim(0), k = w.dim(-1), cg = channels / groups,
                     mg = filters / groups;
  const std::int64_t out_len = (length - 1) / s + 1;
  const auto xv = x.to_vector<double>();
  const auto wv = w.to_vector<double>();
  std::vector<double> out;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t m = 0; m < filters; ++m) {
      const std::int64_t g = m / mg;
      for (std::int64_t t = 0; t < out_len; ++t) {
        double acc = 0.0;
        for (std::int64_t c = 0; c < cg; ++c) {
          for (std::int64_t j = 0; j < k; ++j) {
            const std::int64_t time = t * s - j * d;
            if (time < 0) continue;
            const std::int64_t tap = flip ? j : k - 1 - j;
            const std::size_t wi =
                unshared ? static_cast<std::size_t>(((m * out_len + t) * cg + c) * k + tap)
                         : static_cast<std::size_t>((m * cg + c) * k + tap);
            acc +=
                wv[wi] * xv[static_cast<std::size_t>((b * channels + g * cg + c) * length + time)];
          }
        }
        out.push_back(acc);
      }
    }
  }
  return tensor_of(out, {batch, filters, out_len});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Bilinear kernels

TEST_CASE("bilinear_kernel_1D is the triangle 1..r..1, over r when normalised", "[composite]") {
  for (std::int64_t r = 1; r <= 4; ++r) {
    for (bool normalize : {true, false}) {
      const Variable k = bilinear_kernel_1D(r, normalize);
      REQUIRE(k.is_constant());
      REQUIRE(k.dtype() == DType::float32);  // floatX
      std::vector<double> expected;
      for (std::int64_t i = 0; i < 2 * r - 1; ++i) {
        const double v = static_cast<double>(r - std::abs(i - (r - 1)));
        expected.push_back(normalize ? v / static_cast<double>(r) : v);
      }
      REQUIRE(k.constant_value().shape() == Shape{2 * r - 1});
      const auto actual = k.constant_value().to_vector<double>();
      for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("r " << r << " normalize " << normalize << " i " << i);
        CHECK(actual[i] == Approx(expected[i]));
      }
    }
  }
  const ScopedFlags flags("floatX=float64");
  CHECK(bilinear_kernel_1D(3).dtype() == DType::float64);
}

TEST_CASE("bilinear_kernel_1D with a symbolic ratio builds the same values", "[composite]") {
  const Variable r = scalar("r", DType::int64);
  for (bool normalize : {true, false}) {
    const Variable k = bilinear_kernel_1D(Dim(r), normalize);
    REQUIRE_FALSE(k.is_constant());
    for (std::int64_t value : {1, 2, 5}) {
      const Tensor got = eval(k, {r}, {Tensor::scalar(DType::int64, static_cast<double>(value))});
      const Tensor want = bilinear_kernel_1D(value, normalize).constant_value();
      INFO("r " << value << " normalize " << normalize);
      REQUIRE_ALLCLOSE(got, want, 1e-6, 1e-7);
    }
  }
}

TEST_CASE("bilinear_kernel_2D is the outer product of the 1-D kernels", "[composite]") {
  for (const auto& [rows, cols] :
       std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {2, 2}, {2, 3}, {4, 1}}) {
    for (bool normalize : {true, false}) {
      const Variable k = bilinear_kernel_2D(std::pair<Dim, Dim>{rows, cols}, normalize);
      REQUIRE(k.is_constant());
      const Tensor t = k.constant_value();
      REQUIRE(t.shape() == Shape{2 * rows - 1, 2 * cols - 1});
      const auto v = t.to_vector<double>();
      for (std::int64_t i = 0; i < 2 * rows - 1; ++i) {
        for (std::int64_t j = 0; j < 2 * cols - 1; ++j) {
          double e = static_cast<double>((rows - std::abs(i - (rows - 1))) *
                                         (cols - std::abs(j - (cols - 1))));
          if (normalize) e /= static_cast<double>(rows * cols);
          INFO("ratio (" << rows << ", " << cols << ") at " << i << ", " << j);
          CHECK(v[static_cast<std::size_t>(i * (2 * cols - 1) + j)] == Approx(e));
        }
      }
    }
  }
  // One ratio for both axes.
  REQUIRE(tensor_equal(bilinear_kernel_2D(3).constant_value(),
                       bilinear_kernel_2D(std::pair<Dim, Dim>{3, 3}).constant_value()));
}

TEST_CASE("bilinear_kernel_2D with symbolic ratios", "[composite]") {
  const Variable r = scalar("r", DType::int64);
  const Variable k = bilinear_kernel_2D(std::pair<Dim, Dim>{Dim(r), Dim(2)});
  const Tensor got = eval(k, {r}, {Tensor::scalar(DType::int64, 3)});
  REQUIRE_ALLCLOSE(got, bilinear_kernel_2D(std::pair<Dim, Dim>{3, 2}).constant_value(), 1e-6, 1e-7);
}

TEST_CASE("bilinear kernels: a ratio below 1 is a ValueError", "[composite]") {
  require_error<ValueError>([] { bilinear_kernel_1D(0); }, {"bilinear_kernel_1D", "ratio", "0"});
  require_error<ValueError>(
      [] {
        bilinear_kernel_2D(std::pair<Dim, Dim>{2, -1});
      },
      {"bilinear_kernel_2D", "column ratio", "-1"});
}

TEST_CASE("bilinear kernels: an unknown ratio is a ValueError", "[composite]") {
  require_error<ValueError>([] { bilinear_kernel_1D(Dim::unknown()); },
                            {"bilinear_kernel_1D", "unknown"});
}

// ---------------------------------------------------------------------------------------------
// Bilinear upsampling

TEST_CASE("bilinear_upsampling matches clamped linear interpolation", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {2, 2, 3, 4}, 11);
  const Variable xv = input_like(x, "x");
  for (std::int64_t r = 1; r <= 4; ++r) {
    const Tensor expected = expected_upsampling(x, r);
    for (bool one_d : {true, false}) {
      INFO("ratio " << r << " use_1D_kernel " << one_d);
      const Variable up = bilinear_upsampling(xv, {.ratio = r, .use_1D_kernel = one_d});
      REQUIRE(up.dtype() == DType::float64);
      REQUIRE_ALLCLOSE(eval(up, {xv}, {x}), expected, 1e-10, 1e-10);
    }
  }
}

TEST_CASE("bilinear_upsampling with shape hints and with unknown input shapes", "[composite]") {
  const Tensor x = random_tensor(DType::float32, {2, 3, 4, 2}, 12);
  const Tensor expected = expected_upsampling(x, 2);
  SECTION("batch_size and num_input_channels given") {
    const Variable xv = input_like(x, "x");
    const Variable up =
        bilinear_upsampling(xv, {.ratio = 2, .batch_size = 2, .num_input_channels = 3});
    REQUIRE_ALLCLOSE(eval(up, {xv}, {x}), expected, 1e-5, 1e-6);
  }
  SECTION("every dim unknown") {
    const Variable xv = tensor4("x", DType::float32);
    for (bool one_d : {true, false}) {
      const Variable up = bilinear_upsampling(xv, {.ratio = 2, .use_1D_kernel = one_d});
      REQUIRE_ALLCLOSE(eval(up, {xv}, {x}), expected, 1e-5, 1e-6);
    }
  }
}

TEST_CASE("frac_bilinear_upsampling matches its closed form", "[composite]") {
  struct Case {
    std::int64_t pr, qr, pc, qc, rows, cols;
  };
  for (const Case& c : std::vector<Case>{{3, 2, 3, 2, 3, 4},
                                         {5, 3, 2, 1, 2, 3},
                                         {4, 2, 1, 1, 4, 2},  // 4/2 reduces to 2/1
                                         {2, 3, 5, 4, 4, 3},  // downsampling rows
                                         {1, 1, 3, 1, 1, 2}}) {
    INFO("rows " << c.pr << "/" << c.qr << " cols " << c.pc << "/" << c.qc << " image " << c.rows
                 << "x" << c.cols);
    const Tensor x = random_tensor(DType::float64, {2, 2, c.rows, c.cols}, 13);
    const Variable xv = input_like(x, "x");
    const Tensor expected = expected_frac_upsampling(x, c.pr, c.qr, c.pc, c.qc);
    const Variable up = frac_bilinear_upsampling(xv, FracRatio({c.pr, c.qr}, {c.pc, c.qc}));
    REQUIRE_ALLCLOSE(eval(up, {xv}, {x}), expected, 1e-10, 1e-10);
    // The same through bilinear_upsampling, and with unknown input dims.
    const Variable unknown = tensor4("x", DType::float64);
    const Variable up2 = bilinear_upsampling(
        unknown, {.frac_ratio = FracRatio({c.pr, c.qr}, {c.pc, c.qc}), .use_1D_kernel = false});
    REQUIRE_ALLCLOSE(eval(up2, {unknown}, {x}), expected, 1e-10, 1e-10);
  }
  // One (p, q) for both axes.
  const Tensor x = random_tensor(DType::float64, {1, 1, 3, 2}, 14);
  const Variable xv = input_like(x, "x");
  REQUIRE_ALLCLOSE(eval(frac_bilinear_upsampling(xv, FracRatio(3, 2)), {xv}, {x}),
                   expected_frac_upsampling(x, 3, 2, 3, 2), 1e-10, 1e-10);
}

TEST_CASE("bilinear_upsampling: ratio and frac_ratio together is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>(
      [&] { bilinear_upsampling(x, {.ratio = 2, .frac_ratio = FracRatio(3, 2)}); },
      {"bilinear_upsampling", "ratio", "frac_ratio"});
}

TEST_CASE("bilinear_upsampling: no ratio is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>([&] { bilinear_upsampling(x, {}); }, {"neither", "frac_ratio"});
}

TEST_CASE("bilinear_upsampling: frac_ratio with the 1-D kernel is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>([&] { bilinear_upsampling(x, {.frac_ratio = FracRatio(3, 2)}); },
                            {"use_1D_kernel", "false"});
}

TEST_CASE("bilinear_upsampling: a ratio below 1 is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>([&] { bilinear_upsampling(x, {.ratio = 0}); }, {"ratio is 0"});
}

TEST_CASE("frac_bilinear_upsampling: a non-positive ratio entry is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>(
      [&] {
        frac_bilinear_upsampling(x, FracRatio({3, 2}, {0, 1}));
      },
      {"column ratio", "0/1"});
}

TEST_CASE("bilinear_upsampling: a non-4-D input is a TypeError", "[composite]") {
  const Variable x = tensor3("x", DType::float32);
  require_error<TypeError>([&] { bilinear_upsampling(x, {.ratio = 2}); },
                           {"input", "rank 3", "4-D"});
  require_error<TypeError>([&] { frac_bilinear_upsampling(x, FracRatio(3, 2)); }, {"rank 3"});
}

TEST_CASE("bilinear_upsampling: an integer input is a TypeError", "[composite]") {
  const Variable x = tensor4("x", DType::int32);
  require_error<TypeError>([&] { bilinear_upsampling(x, {.ratio = 2}); },
                           {"int32", "floating-point"});
}

TEST_CASE("bilinear_upsampling: a negative size hint is a ValueError", "[composite]") {
  const Variable x = tensor4("x", DType::float32);
  require_error<ValueError>(
      [&] { bilinear_upsampling(x, {.ratio = 2, .batch_size = -1, .num_input_channels = 3}); },
      {"batch_size", "-1"});
}

TEST_CASE("bilinear_upsampling: a size hint contradicting the input is a ShapeError",
          "[composite]") {
  const Variable x = tensor("x", DType::float32, {2, 3, 4, 4});
  require_error<ShapeError>(
      [&] { bilinear_upsampling(x, {.ratio = 2, .batch_size = 2, .num_input_channels = 5}); },
      {"num_input_channels", "5", "float32[2, 3, 4, 4]"});
}

TEST_CASE("bilinear_upsampling gradient (float64)", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {1, 2, 3, 2}, 15);
  for (bool one_d : {true, false}) {
    verify_grad(
        [one_d](const std::vector<Variable>& in) {
          return bilinear_upsampling(in[0], {.ratio = 2, .use_1D_kernel = one_d});
        },
        {x});
  }
  verify_grad(
      [](const std::vector<Variable>& in) {
        return frac_bilinear_upsampling(in[0], FracRatio(3, 2));
      },
      {x});
}

// ---------------------------------------------------------------------------------------------
// causal_conv1d

TEST_CASE("causal_conv1d matches its defining sum", "[composite]") {
  struct Case {
    std::int64_t stride, dilation, kernel, groups;
    bool flip;
  };
  for (const Case& c : std::vector<Case>{{1, 1, 3, 1, true},
                                         {2, 1, 3, 1, true},
                                         {1, 2, 3, 1, true},
                                         {3, 2, 2, 1, true},
                                         {1, 1, 1, 1, true},
                                         {1, 1, 3, 2, true},
                                         {2, 2, 3, 2, false},
                                         {1, 1, 4, 1, false}}) {
    INFO("stride " << c.stride << " dilation " << c.dilation << " kernel " << c.kernel << " groups "
                   << c.groups << " flip " << c.flip);
    const Tensor x = random_tensor(DType::float64, {2, 4, 9}, 21);
    const Tensor w = random_tensor(DType::float64, {4, 4 / c.groups, c.kernel}, 22);
    const Variable xv = input_like(x, "x");
    const Variable wv = input_like(w, "w");
    const Variable y = causal_conv1d(xv, wv, {4, 4 / c.groups, c.kernel},
                                     {.subsample = c.stride,
                                      .filter_flip = c.flip,
                                      .filter_dilation = c.dilation,
                                      .num_groups = c.groups});
    const Tensor expected = causal_reference(x, w, c.stride, c.dilation, c.groups, c.flip, false);
    REQUIRE(y.ndim() == 3);
    REQUIRE_ALLCLOSE(eval(y, {xv, wv}, {x, w}), expected, 1e-10, 1e-10);
    // With an input_shape hint and unknown filter dims (the hint gives the kernel length).
    const Variable wu = tensor3("w", DType::float64);
    const Variable y2 = causal_conv1d(xv, wu, {4, 4 / c.groups, c.kernel},
                                      {.input_shape = {2, 4, 9},
                                       .subsample = c.stride,
                                       .filter_flip = c.flip,
                                       .filter_dilation = c.dilation,
                                       .num_groups = c.groups});
    REQUIRE_ALLCLOSE(eval(y2, {xv, wu}, {x, w}), expected, 1e-10, 1e-10);
  }
}

TEST_CASE("causal_conv1d: output t depends on inputs up to and including t", "[composite]") {
  // An impulse at time 4 reaches outputs 4, 5 and 6 of a length-3 kernel, nothing earlier.
  std::vector<double> impulse(8, 0.0);
  impulse[4] = 1.0;
  const Tensor x = tensor_of(impulse, {1, 1, 8});
  const Tensor w = tensor_of({1.0, 2.0, 3.0}, {1, 1, 3});
  const Variable xv = input_like(x, "x");
  const Variable wv = input_like(w, "w");
  const Tensor y = eval(causal_conv1d(xv, wv, {1, 1, 3}), {xv, wv}, {x, w});
  REQUIRE(y.to_vector<double>() == std::vector<double>{0, 0, 0, 0, 1, 2, 3, 0});
}

TEST_CASE("causal_conv1d with unshared filters", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {2, 2, 7}, 23);
  const std::int64_t out_len = (7 - 1) / 2 + 1;
  const Tensor w = random_tensor(DType::float64, {3, out_len, 2, 2}, 24);
  const Variable xv = input_like(x, "x");
  const Variable wv = input_like(w, "w");
  const Variable y = causal_conv1d(xv, wv, {3, out_len, 2, 2},
                                   {.subsample = 2, .filter_dilation = 2, .unshared = true});
  REQUIRE_ALLCLOSE(eval(y, {xv, wv}, {x, w}), causal_reference(x, w, 2, 2, 1, true, true), 1e-10,
                   1e-10);
}

TEST_CASE("causal_conv1d gradient (float64)", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {2, 2, 6}, 25);
  const Tensor w = random_tensor(DType::float64, {3, 2, 3}, 26);
  verify_grad(
      [](const std::vector<Variable>& in) {
        return causal_conv1d(in[0], in[1], {3, 2, 3}, {.subsample = 2, .filter_dilation = 2});
      },
      {x, w});
}

TEST_CASE("causal_conv1d: a non-3-D input is a TypeError", "[composite]") {
  require_error<TypeError>(
      [] {
        causal_conv1d(tensor4("x", DType::float32), tensor3("w", DType::float32), {1, 1, 3});
      },
      {"causal_conv1d", "input", "rank 4", "3-D"});
}

TEST_CASE("causal_conv1d: filters of the wrong rank are a TypeError", "[composite]") {
  require_error<TypeError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor4("w", DType::float32), {1, 1, 3});
      },
      {"filters", "rank 4", "3-D"});
  require_error<TypeError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32), {1, 1, 3},
                      {.unshared = true});
      },
      {"filters", "4-D", "unshared"});
}

TEST_CASE("causal_conv1d: a missing or malformed filter_shape is a ValueError", "[composite]") {
  const Variable x = tensor3("x", DType::float32);
  const Variable w = tensor3("w", DType::float32);
  require_error<ValueError>([&] { causal_conv1d(x, w, {}); }, {"filter_shape", "required"});
  require_error<ValueError>(
      [&] {
        causal_conv1d(x, w, {1, 1, 3, 1});
      },
      {"filter_shape", "4 entries"});
}

TEST_CASE("causal_conv1d: an input_shape of the wrong length is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32), {1, 1, 3},
                      {.input_shape = {1, 1}});
      },
      {"input_shape", "2 entries", "expected 3"});
}

TEST_CASE("causal_conv1d: a subsample below 1 is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32), {1, 1, 3},
                      {.subsample = 0});
      },
      {"subsample is 0"});
}

TEST_CASE("causal_conv1d: a filter_dilation below 1 is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32), {1, 1, 3},
                      {.filter_dilation = -2});
      },
      {"filter_dilation is -2"});
}

TEST_CASE("causal_conv1d: an unknown kernel length is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32),
                      {1, 1, std::nullopt});
      },
      {"kernel length", "unknown"});
}

TEST_CASE("causal_conv1d: a kernel length below 1 is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor3("w", DType::float32), {1, 1, 0});
      },
      {"kernel length is 0"});
}

TEST_CASE("causal_conv1d: a filter_shape contradicting the filters is a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        causal_conv1d(tensor3("x", DType::float32), tensor("w", DType::float32, {1, 1, 4}),
                      {1, 1, 3});
      },
      {"filter_shape", "3", "float32[1, 1, 4]"});
}

// ---------------------------------------------------------------------------------------------
// conv2d_transpose

TEST_CASE("conv2d_transpose is the adjoint of conv2d", "[composite]") {
  struct Case {
    BorderMode border;
    std::vector<std::int64_t> stride, dilation;
    std::int64_t groups;
    bool flip;
    std::string label;
  };
  const std::vector<Case> cases{
      {"valid", {1, 1}, {1, 1}, 1, true, "valid"},
      {"full", {2, 2}, {1, 1}, 1, true, "full stride 2"},
      {"half", {2, 3}, {1, 1}, 1, false, "half stride (2, 3) cross"},
      {BorderMode::pairs({{1, 2}, {0, 1}}), {2, 1}, {2, 1}, 1, true, "pads, dilation"},
      {"valid", {1, 2}, {1, 1}, 2, true, "groups"},
  };
  for (const Case& c : cases) {
    INFO(c.label);
    const Shape x_shape{2, 4, 7, 8};
    const std::int64_t m = 6;
    const Tensor x = random_tensor(DType::float64, x_shape, 31);
    const Tensor w = random_tensor(DType::float64, {m, 4 / c.groups, 3, 2}, 32);
    const Variable xv = input_like(x, "x");
    const Variable wv = input_like(w, "w");
    const Variable y = conv2d(xv, wv,
                              {.border_mode = c.border,
                               .subsample = c.stride,
                               .filter_flip = c.flip,
                               .filter_dilation = c.dilation,
                               .num_groups = c.groups});
    const Tensor y_value = eval(y, {xv, wv}, {x, w});
    const Tensor t = random_tensor(DType::float64, y_value.shape(), 33);
    const Variable tv = input_like(t, "t");
    const Variable back = conv2d_transpose(tv, wv, ShapeDims{2, 4, 7, 8},
                                           {.filter_shape = {m, 4 / c.groups, 3, 2},
                                            .border_mode = c.border,
                                            .input_dilation = c.stride,
                                            .filter_flip = c.flip,
                                            .filter_dilation = c.dilation,
                                            .num_groups = c.groups});
    const Tensor back_value = eval(back, {tv, wv}, {t, w});
    REQUIRE(back_value.shape() == x_shape);
    const double lhs = dot(y_value, t);
    const double rhs = dot(x, back_value);
    REQUIRE(lhs == Approx(rhs).epsilon(1e-10));
    REQUIRE(std::abs(lhs) > 1e-3);  // a non-trivial pairing
  }
}

TEST_CASE("conv2d_transpose with a symbolic output size", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {1, 2, 6, 5}, 34);
  const Tensor w = random_tensor(DType::float64, {3, 2, 3, 3}, 35);
  const Variable xv = input_like(x, "x");
  const Variable wv = input_like(w, "w");
  const Tensor y = eval(conv2d(xv, wv, {.subsample = {2, 2}}), {xv, wv}, {x, w});
  const Variable tv = input_like(y, "t");
  const Variable size = tensor4("like", DType::float64);
  const Variable back =
      conv2d_transpose(tv, wv, ShapeDims{1, 2, Dim(shape_i(size, 2)), Dim(shape_i(size, 3))},
                       {.input_dilation = {2, 2}});
  const Tensor b = run_graph({tv, wv, size}, {back}, {y, w, x}).front();
  REQUIRE(b.shape() == Shape{1, 2, 6, 5});
  REQUIRE(dot(y, y) == Approx(dot(x, b)).epsilon(1e-10));
}

TEST_CASE("conv2d_transpose: input_dilation of the wrong length is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        conv2d_transpose(tensor4("t", DType::float32), tensor4("w", DType::float32),
                         ShapeDims{1, 1, 5, 5}, {.input_dilation = {2, 2, 2}});
      },
      {"conv2d_transpose", "input_dilation", "3 elements"});
}

TEST_CASE("conv2d_transpose: an input_dilation below 1 is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        conv2d_transpose(tensor4("t", DType::float32), tensor4("w", DType::float32),
                         ShapeDims{1, 1, 5, 5}, {.input_dilation = {0, 1}});
      },
      {"input_dilation", "(0, 1)"});
}

// ---------------------------------------------------------------------------------------------
// separable convolutions

TEST_CASE("separable_conv2d is depthwise then pointwise", "[composite]") {
  const std::vector<SeparableCase> cases{
      {"valid"},
      {"half", {0, 0}, 2},
      {"full", {0, 0}, 1, 2},
      {"pads", {1, 0}, 1, 1, false},
      {"pads", {2, 2}, 2, 2, true},
  };
  const Tensor x = random_tensor(DType::float64, {2, 3, 6, 7}, 41);
  const Tensor dw = random_tensor(DType::float64, {6, 1, 3, 2}, 42);  // multiplier 2
  const Tensor pw = random_tensor(DType::float64, {4, 6, 1, 1}, 43);
  const Variable xv = input_like(x, "x");
  const Variable dwv = input_like(dw, "dw");
  const Variable pwv = input_like(pw, "pw");
  for (const SeparableCase& c : cases) {
    INFO("mode " << c.mode << " stride " << c.stride << " dilation " << c.dilation << " flip "
                 << c.flip);
    const Tensor expected = separable_reference(x, dw, pw, c);
    for (bool hints : {false, true}) {
      INFO("hints " << hints);
      SeparableConvOptions options{.border_mode = border_of(c, 2),
                                   .subsample = {c.stride, c.stride},
                                   .filter_flip = c.flip,
                                   .filter_dilation = {c.dilation, c.dilation}};
      if (hints) {
        options.input_shape = {2, 3, 6, 7};
        options.depthwise_filter_shape = {6, 1, 3, 2};
        options.pointwise_filter_shape = {4, 6, 1, 1};
      }
      const Variable y = separable_conv2d(xv, dwv, pwv, 3, options);
      REQUIRE_ALLCLOSE(eval(y, {xv, dwv, pwv}, {x, dw, pw}), expected, 1e-10, 1e-10);
      // With both hints, the depthwise output shape becomes the pointwise step's image hint.
      const auto* pointwise = dynamic_cast<const AbstractConv*>(y.owner()->op.get());
      REQUIRE(pointwise != nullptr);
      const StaticShape hint =
          hints ? StaticShape{2, 6, expected.dim(2), expected.dim(3)} : StaticShape(4);
      REQUIRE(pointwise->params().imshp == hint);
    }
  }
}

TEST_CASE("separable_conv3d is depthwise then pointwise", "[composite]") {
  const Tensor x = random_tensor(DType::float64, {1, 2, 4, 5, 3}, 44);
  const Tensor dw = random_tensor(DType::float64, {4, 1, 2, 3, 2}, 45);
  const Tensor pw = random_tensor(DType::float64, {3, 4, 1, 1, 1}, 46);
  const Variable xv = input_like(x, "x");
  const Variable dwv = input_like(dw, "dw");
  const Variable pwv = input_like(pw, "pw");
  for (const SeparableCase& c : std::vector<SeparableCase>{
           {"valid"}, {"half", {0, 0}, 2, 1, false}, {"full", {0, 0}, 1, 2}}) {
    INFO("mode " << c.mode);
    const Variable y = separable_conv3d(xv, dwv, pwv, 2,
                                        {.input_shape = {1, 2, 4, 5, 3},
                                         .depthwise_filter_shape = {4, 1, 2, 3, 2},
                                         .border_mode = c.mode,
                                         .subsample = {c.stride, c.stride, c.stride},
                                         .filter_flip = c.flip,
                                         .filter_dilation = {c.dilation, c.dilation, c.dilation}});
    REQUIRE_ALLCLOSE(eval(y, {xv, dwv, pwv}, {x, dw, pw}), separable_reference(x, dw, pw, c), 1e-10,
                     1e-10);
  }
}

TEST_CASE("separable_conv2d: num_channels below 1 is a ValueError", "[composite]") {
  require_error<ValueError>(
      [] {
        separable_conv2d(tensor4("x", DType::float32), tensor4("d", DType::float32),
                         tensor4("p", DType::float32), 0);
      },
      {"separable_conv2d", "num_channels is 0"});
}

TEST_CASE("separable_conv: inputs of the wrong rank are a TypeError", "[composite]") {
  require_error<TypeError>(
      [] {
        separable_conv2d(tensor5("x", DType::float32), tensor4("d", DType::float32),
                         tensor4("p", DType::float32), 3);
      },
      {"separable_conv2d", "input", "rank 5"});
  require_error<TypeError>(
      [] {
        separable_conv3d(tensor5("x", DType::float32), tensor4("d", DType::float32),
                         tensor5("p", DType::float32), 3);
      },
      {"separable_conv3d", "depthwise_filters", "rank 4"});
}

TEST_CASE("separable_conv2d: input channels other than num_channels are a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        separable_conv2d(tensor("x", DType::float32, {1, 4, 5, 5}), tensor4("d", DType::float32),
                         tensor4("p", DType::float32), 3);
      },
      {"4 channels", "num_channels is 3"});
}

TEST_CASE("separable_conv2d: depthwise filters reading several channels are a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        separable_conv2d(tensor4("x", DType::float32), tensor("d", DType::float32, {6, 2, 3, 3}),
                         tensor4("p", DType::float32), 3);
      },
      {"depthwise_filters", "axis 1 must be 1"});
}

TEST_CASE("separable_conv2d: depthwise filters not a multiple of the channels are a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        separable_conv2d(tensor4("x", DType::float32), tensor4("d", DType::float32),
                         tensor4("p", DType::float32), 3, {.depthwise_filter_shape = {5, 1, 3, 3}});
      },
      {"5 output channels", "multiple of num_channels (3)"});
}

TEST_CASE("separable_conv2d: pointwise filters reading the wrong channels are a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        separable_conv2d(tensor4("x", DType::float32), tensor("d", DType::float32, {6, 1, 3, 3}),
                         tensor("p", DType::float32, {4, 5, 1, 1}), 3);
      },
      {"pointwise_filters reads 5 channels", "makes 6"});
}

TEST_CASE("separable_conv2d: hints giving an empty depthwise output are a ShapeError",
          "[composite]") {
  require_error<ShapeError>(
      [] {
        separable_conv2d(tensor4("x", DType::float32), tensor4("d", DType::float32),
                         tensor4("p", DType::float32), 3,
                         {.input_shape = {1, 3, 2, 2}, .depthwise_filter_shape = {3, 1, 3, 3}});
      },
      {"[1, 3, 0, 0]"});
}
