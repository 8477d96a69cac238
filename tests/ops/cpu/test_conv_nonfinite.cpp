// Inf and NaN in the inputs of the CPU convolutions, at the zero padding above all: the reference
// leaves taps that fall in the padding out of its sums (padding contributes nothing, so an
// infinite weight next to it does not become 0 * inf = NaN). CorrMM, in all its paths (GEMMs,
// the pointwise path, the direct loops), must compute exactly that: each element of its result
// is NaN where the reference's is, the same infinity where the reference's is infinite, and close
// to it elsewhere. oneDNN is the vendor's: docs/convolution.md says what it does.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/im2col.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// "" when RESULT matches EXPECTED element by element: NaN where it is NaN, the same infinity
// where it is infinite, within TOL (relative and absolute) elsewhere; else the first difference.
std::string nonfinite_mismatch(const Tensor& result, const Tensor& expected, double tol) {
  if (result.shape() != expected.shape()) return "shapes differ";
  const std::vector<double> a = result.to_vector<double>();
  const std::vector<double> e = expected.to_vector<double>();
  for (std::size_t i = 0; i < a.size(); ++i) {
    const bool same = std::isnan(e[i])   ? std::isnan(a[i])
                      : std::isinf(e[i]) ? a[i] == e[i]
                                         : std::abs(a[i] - e[i]) <= tol * (1 + std::abs(e[i]));
    if (!same) {
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + ", reference " +
             std::to_string(e[i]);
    }
  }
  return "";
}

// Sets element INDEX (flat) of T (contiguous, float32 or float64) to VALUE.
void put(Tensor& t, std::int64_t index, double value) {
  if (t.dtype() == DType::float32) {
    t.data<float>()[index] = static_cast<float>(value);
  } else {
    t.data<double>()[index] = value;
  }
}

// Counts the non-finite elements of T.
std::int64_t nonfinite_count(const Tensor& t) {
  std::int64_t n = 0;
  for (double v : t.to_vector<double>()) n += std::isfinite(v) ? 0 : 1;
  return n;
}

struct Problem {
  const char* label;
  ConvParams params;
  Shape image, kernel;
};

// Padded problems reaching each CorrMM path: GEMMs (one group), grouped GEMMs, the direct loops
// (depthwise with few filters per channel), unshared, strided and dilated, 3-D.
std::vector<Problem> problems() {
  return {
      {"half, 1 group (GEMMs)", make_conv_params(2, "half"), {2, 3, 6, 7}, {4, 3, 3, 3}},
      {"pad (2, 1), stride 2, cross",
       make_conv_params(2, BorderMode::pairs({{2, 0}, {1, 1}}), {2, 2}, false),
       {2, 3, 7, 6},
       {4, 3, 3, 2}},
      {"full, dilation 2, 2 groups",
       make_conv_params(2, "full", {1, 1}, true, {2, 1}, 2),
       {1, 4, 6, 5},
       {4, 2, 2, 3}},
      {"half, depthwise (direct loops)",
       make_conv_params(2, "half", {1, 1}, true, {1, 1}, 4),
       {2, 4, 9, 10},
       {8, 1, 3, 3}},
      {"pad 1, stride 2, depthwise (direct loops)",
       make_conv_params(2, 1, {2, 2}, false, {1, 1}, 3),
       {1, 3, 9, 8},
       {3, 1, 3, 3}},
      {"half, unshared",
       make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1, true),
       {2, 2, 4, 5},
       {3, 4, 5, 2, 3, 3}},
      {"3-D half", make_conv_params(3, "half"), {1, 2, 4, 5, 3}, {3, 2, 3, 3, 3}},
  };
}

// The three directions of P with the given inputs against the reference, element by element.
void check_directions(const Problem& p, const Tensor& image, const Tensor& kernel,
                      const Tensor& top, double tol) {
  const int n = p.params.convdim;
  const Shape image_spatial(p.image.end() - n, p.image.end());
  const Shape kernel_spatial(p.kernel.end() - n, p.kernel.end());
  std::string m = nonfinite_mismatch(corrmm_forward(p.params, image, kernel),
                                     reference_conv_forward(p.params, image, kernel), tol);
  INFO("forward: " << m);
  CHECK(m.empty());
  m = nonfinite_mismatch(corrmm_grad_inputs(p.params, kernel, top, image_spatial),
                         reference_conv_grad_inputs(p.params, kernel, top, image_spatial), tol);
  INFO("gradInputs: " << m);
  CHECK(m.empty());
  m = nonfinite_mismatch(corrmm_grad_weights(p.params, image, top, kernel_spatial),
                         reference_conv_grad_weights(p.params, image, top, kernel_spatial), tol);
  INFO("gradWeights: " << m);
  CHECK(m.empty());
}

}  // namespace

TEST_CASE("CorrMM agrees with the reference on Inf and NaN, at the padding too",
          "[corrmm][nonfinite]") {
  for (DType dtype : {DType::float64, DType::float32}) {
    const double tol = dtype == DType::float64 ? 1e-10 : 1e-4;
    for (const Problem& p : problems()) {
      INFO(p.label << ", " << dtype_name(dtype));
      const Tensor image0 = random_tensor(dtype, p.image, 1);
      const Tensor kernel0 = random_tensor(dtype, p.kernel, 2);
      const Tensor out = reference_conv_forward(p.params, image0, kernel0);
      const Tensor top0 = random_tensor(dtype, out.shape(), 3);
      const std::int64_t kn = kernel0.numel(), tn = top0.numel(), in = image0.numel();
      // Every placement: the first, middle and last elements (corners and borders of the kernel,
      // the topgrad and the image), each as +inf, -inf and NaN, one input at a time, then in all
      // three at once.
      for (double value : {kInf, -kInf, kNaN}) {
        for (std::int64_t where : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}}) {
          INFO("value " << value << " at " << (where < 0 ? "the last element" : "element ")
                        << (where < 0 ? std::string() : std::to_string(where)));
          const auto at = [&](std::int64_t size) { return where < 0 ? size - 1 : where; };
          Tensor kernel = kernel0.clone();
          put(kernel, at(kn), value);
          check_directions(p, image0, kernel, top0, tol);
          Tensor top = top0.clone();
          put(top, at(tn), value);
          check_directions(p, image0, kernel0, top, tol);
          Tensor image = image0.clone();
          put(image, at(in), value);
          check_directions(p, image, kernel0, top0, tol);
          check_directions(p, image, kernel, top, tol);
        }
      }
      // A whole kernel and a whole topgrad of infinities: every element is non-finite, and
      // padding still adds no NaN.
      Tensor kernel = kernel0.clone();
      for (std::int64_t i = 0; i < kn; ++i) put(kernel, i, i % 2 ? kInf : -kInf);
      Tensor top = top0.clone();
      for (std::int64_t i = 0; i < tn; ++i) put(top, i, kInf);
      Tensor image = Tensor::full(dtype, p.image, 1.0);
      check_directions(p, image, kernel, top0, tol);
      check_directions(p, image, kernel0, top, tol);
      CHECK(nonfinite_count(corrmm_forward(p.params, image, kernel)) > 0);
    }
  }
}

TEST_CASE("The reference leaves padding out of its sums: an infinite weight stays infinite",
          "[corrmm][nonfinite]") {
  // 1-D in effect: a (1, 1, 1, 3) image [1, 2, 3], a (1, 1, 1, 3) kernel [inf, 1, 1], 'half'
  // padding, cross-correlation. Output x reads image x - 1 .. x + 1, so the infinite tap reads
  // the padding at x = 0 (no term: 1 + 2) and the image elsewhere (infinite sums).
  const ConvParams p = make_conv_params(2, "half", {1, 1}, false);
  const Tensor image = Tensor::from_vector<double>({1, 2, 3}, {1, 1, 1, 3});
  const Tensor kernel = Tensor::from_vector<double>({kInf, 1, 1}, {1, 1, 1, 3});
  const std::vector<double> expected = {1 + 2, kInf, kInf};
  CHECK(reference_conv_forward(p, image, kernel).to_vector<double>() == expected);
  CHECK(corrmm_forward(p, image, kernel).to_vector<double>() == expected);
  // With a zero in the image under the infinite tap, 0 * inf is NaN: the image is data, not
  // padding.
  const Tensor zeros = Tensor::from_vector<double>({0, 2, 3}, {1, 1, 1, 3});
  const std::vector<double> got = corrmm_forward(p, zeros, kernel).to_vector<double>();
  CHECK(got[0] == 2);
  CHECK(std::isnan(got[1]));
  CHECK(got[2] == kInf);
}
