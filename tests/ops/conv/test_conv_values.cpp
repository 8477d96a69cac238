// Values of the reference convolutions (forward, gradInputs, gradWeights in 2-D and 3-D) against
// an implementation written here from scratch in the style of the original's scipy-based
// perform: explicit zero padding into a new buffer, kernels dilated by inserting
// zeros, true convolutions, zero-inserted (upsampled) topgrads and strided subsampling. It shares
// no computation and no loop structure with the library, so a wrong index in either shows up. The
// adjoint identities <conv(x, w), t> = <x, gradI(w, t)> = <w, gradW(x, t)> tie the three
// directions together independently of both.
#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

// ---- spatial volumes: 3 axes; 2-D problems get a depth of 1 ----

using Dims = std::array<std::int64_t, 3>;

std::int64_t volume_size(const Dims& d) {
  return d[0] * d[1] * d[2];
}

Dims operator+(const Dims& a, const Dims& b) {
  return {a[0] + b[0], a[1] + b[1], a[2] + b[2]};
}
Dims operator-(const Dims& a, const Dims& b) {
  return {a[0] - b[0], a[1] - b[1], a[2] - b[2]};
}
Dims operator*(const Dims& a, const Dims& b) {
  return {a[0] * b[0], a[1] * b[1], a[2] * b[2]};
}
Dims plus_one(const Dims& a) {
  return {a[0] + 1, a[1] + 1, a[2] + 1};
}

// A template rather than std::function: the naive code calls it in its innermost loops.
template <typename Body>
void for_each_position(const Dims& d, Body&& body) {
  for (std::int64_t z = 0; z < d[0]; ++z) {
    for (std::int64_t y = 0; y < d[1]; ++y) {
      for (std::int64_t x = 0; x < d[2]; ++x) body({z, y, x});
    }
  }
}

struct Volume {
  Dims dims{1, 1, 1};
  std::vector<double> values;

  Volume() = default;
  explicit Volume(const Dims& d) : dims(d), values(static_cast<std::size_t>(volume_size(d)), 0.0) {}
  std::size_t flat(const Dims& p) const {
    return static_cast<std::size_t>((p[0] * dims[1] + p[1]) * dims[2] + p[2]);
  }
  double& operator[](const Dims& p) { return values[flat(p)]; }
  double operator[](const Dims& p) const { return values[flat(p)]; }
};

Volume read_volume(const std::vector<double>& data, std::int64_t offset, const Dims& dims) {
  Volume v(dims);
  for (std::size_t i = 0; i < v.values.size(); ++i) {
    v.values[i] = data[static_cast<std::size_t>(offset) + i];
  }
  return v;
}

void write_volume(std::vector<double>& data, std::int64_t offset, const Volume& v) {
  for (std::size_t i = 0; i < v.values.size(); ++i) {
    data[static_cast<std::size_t>(offset) + i] = v.values[i];
  }
}

void add_into(Volume& acc, const Volume& v, double scale = 1.0) {
  for (std::size_t i = 0; i < acc.values.size(); ++i) acc.values[i] += scale * v.values[i];
}

Volume zero_pad(const Volume& v, const Dims& before, const Dims& after) {
  Volume out(v.dims + before + after);
  for_each_position(v.dims, [&](const Dims& p) { out[p + before] = v[p]; });
  return out;
}

Volume crop(const Volume& v, const Dims& start, const Dims& size) {
  Volume out(size);
  for_each_position(size, [&](const Dims& p) { out[p] = v[p + start]; });
  return out;
}

// Reverses every spatial axis.
Volume reverse(const Volume& v) {
  Volume out(v.dims);
  const Dims last = v.dims - Dims{1, 1, 1};
  for_each_position(v.dims, [&](const Dims& p) { out[last - p] = v[p]; });
  return out;
}

// Inserts D - 1 zeros between neighbouring taps.
Volume dilate(const Volume& v, const Dims& d) {
  Volume out(plus_one((v.dims - Dims{1, 1, 1}) * d));
  for_each_position(v.dims, [&](const Dims& p) { out[p * d] = v[p]; });
  return out;
}

// v[y] placed at y * S in a zero volume of SIZE (the inverse of subsample).
Volume upsample(const Volume& v, const Dims& s, const Dims& size) {
  Volume out(size);
  for_each_position(v.dims, [&](const Dims& p) { out[p * s] = v[p]; });
  return out;
}

// Every S-th element, COUNT of them per axis.
Volume subsample(const Volume& v, const Dims& s, const Dims& count) {
  Volume out(count);
  for_each_position(count, [&](const Dims& p) { out[p] = v[p * s]; });
  return out;
}

// One element of the 'valid' true convolution of A with K (signal-processing convention: the
// kernel is reversed as it slides): sum over j of A[n + (K - 1) - j] * K[j].
double true_convolve_at(const Volume& a, const Volume& k, const Dims& n) {
  const Dims last = k.dims - Dims{1, 1, 1};
  double acc = 0.0;
  for_each_position(k.dims, [&](const Dims& j) { acc += a[n + last - j] * k[j]; });
  return acc;
}

Volume true_convolve_valid(const Volume& a, const Volume& k) {
  Volume out(plus_one(a.dims - k.dims));
  for_each_position(out.dims, [&](const Dims& n) { out[n] = true_convolve_at(a, k, n); });
  return out;
}

// 'full' true convolution: out[n + j] += a[n] * k[j], of size a + k - 1.
Volume true_convolve_full(const Volume& a, const Volume& k) {
  Volume out(a.dims + k.dims - Dims{1, 1, 1});
  for_each_position(a.dims, [&](const Dims& n) {
    if (a[n] == 0.0) return;  // upsampled topgrads are mostly zeros
    for_each_position(k.dims, [&](const Dims& j) { out[n + j] += a[n] * k[j]; });
  });
  return out;
}

// r[l] = sum over n of a[n + l] * u[n], for lags l < LAGS.
Volume correlate_lags(const Volume& a, const Volume& u, const Dims& lags) {
  Volume out(lags);
  for_each_position(lags, [&](const Dims& l) {
    double acc = 0.0;
    for_each_position(u.dims, [&](const Dims& n) {
      if (u[n] != 0.0) acc += a[n + l] * u[n];  // upsampled topgrads are mostly zeros
    });
    out[l] = acc;
  });
  return out;
}

// ---- the problems ----

// A border mode as the test understands it, next to the BorderMode handed to the library.
struct TestBorder {
  std::string label;
  BorderMode mode;
  std::string kind;                                         // valid, full, half or pads
  std::vector<std::pair<std::int64_t, std::int64_t>> pads;  // kind pads: per spatial axis
};

TestBorder named_border(const std::string& kind) {
  return {kind, BorderMode(kind), kind, {}};
}

TestBorder int_border(std::int64_t pad, int convdim) {
  return {fmt::format("{}", pad), BorderMode(pad), "pads",
          std::vector<std::pair<std::int64_t, std::int64_t>>(static_cast<std::size_t>(convdim),
                                                             {pad, pad})};
}

TestBorder per_axis_border(const std::vector<std::int64_t>& pads) {
  std::vector<BorderMode::Entry> entries;
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  for (std::int64_t p : pads) {
    entries.emplace_back(p);
    pairs.emplace_back(p, p);
  }
  return {fmt::format("({})", fmt::join(pads, ", ")), BorderMode(entries), "pads", pairs};
}

// 2-D only: asymmetric (before, after) pairs; an axis whose pair is symmetric is given as an int
// so that the mixed form {int, pair} is exercised too.
TestBorder pair_border(const std::vector<std::pair<std::int64_t, std::int64_t>>& pads) {
  std::vector<BorderMode::Entry> entries;
  std::string label = "(";
  for (const auto& [before, after] : pads) {
    if (before == after) {
      entries.emplace_back(before);
      label += fmt::format("{}, ", before);
    } else {
      entries.emplace_back(std::make_pair(before, after));
      label += fmt::format("({}, {}), ", before, after);
    }
  }
  label.resize(label.size() - 2);
  label += ")";
  return {label, BorderMode(entries), "pads", pads};
}

std::vector<TestBorder> borders_2d() {
  return {named_border("valid"),         named_border("full"),
          named_border("half"),          int_border(1, 2),
          per_axis_border({2, 0}),       per_axis_border({1, 3}),
          pair_border({{2, 0}, {1, 3}}), pair_border({{1, 1}, {0, 2}})};
}

std::vector<TestBorder> borders_3d() {
  return {named_border("valid"), named_border("full"), named_border("half"), int_border(2, 3),
          per_axis_border({1, 0, 2})};
}

struct Problem {
  int convdim = 2;
  TestBorder border;
  std::vector<std::int64_t> subsample, dilation;
  bool flip = true;
  std::int64_t groups = 1;
  bool unshared = false;
  std::int64_t batch = 2, channels = 4, filters = 8;
  std::vector<std::int64_t> image, kernel;  // spatial sizes

  ConvParams params() const {
    return make_conv_params(convdim, border.mode, subsample, flip, dilation, groups, unshared);
  }
  // V on the last axes of a 3-axis array, FILL in front.
  Dims embed(const std::vector<std::int64_t>& v, std::int64_t fill) const {
    Dims d{fill, fill, fill};
    for (int a = 0; a < convdim; ++a) {
      d[static_cast<std::size_t>(3 - convdim + a)] = v[static_cast<std::size_t>(a)];
    }
    return d;
  }
  Dims image3() const { return embed(image, 1); }
  Dims kernel3() const { return embed(kernel, 1); }
  Dims stride3() const { return embed(subsample, 1); }
  Dims dilation3() const { return embed(dilation, 1); }
  Dims dilated3() const { return plus_one((kernel3() - Dims{1, 1, 1}) * dilation3()); }
  std::pair<Dims, Dims> pads3() const {
    Dims before{0, 0, 0}, after{0, 0, 0};
    const Dims dk = dilated3();
    for (int a = 0; a < convdim; ++a) {
      const auto j = static_cast<std::size_t>(3 - convdim + a);
      if (border.kind == "full") {
        before[j] = after[j] = dk[j] - 1;
      } else if (border.kind == "half") {
        before[j] = after[j] = dk[j] / 2;
      } else if (border.kind == "pads") {
        before[j] = border.pads[static_cast<std::size_t>(a)].first;
        after[j] = border.pads[static_cast<std::size_t>(a)].second;
      }
    }
    return {before, after};
  }
  Dims padded3() const {
    const auto [before, after] = pads3();
    return image3() + before + after;
  }
  // Size of the stride-1 result of sliding the dilated kernel over the padded image.
  Dims dense3() const { return plus_one(padded3() - dilated3()); }
  Dims output3() const {
    const Dims dense = dense3(), s = stride3();
    Dims out{};
    for (std::size_t j = 0; j < 3; ++j) {
      // Ceiling division of a positive count; a non-positive dense size means no output.
      out[j] = dense[j] <= 0 ? dense[j] - 1 : (dense[j] + s[j] - 1) / s[j];
    }
    return out;
  }
  bool possible() const {
    const Dims o = output3();
    return o[0] >= 1 && o[1] >= 1 && o[2] >= 1;
  }
  std::int64_t channels_per_group() const { return channels / groups; }
  std::int64_t filters_per_group() const { return filters / groups; }
  std::int64_t regions() const { return unshared ? volume_size(output3()) : 1; }

  Shape spatial(const Dims& d) const { return Shape(d.end() - convdim, d.end()); }
  Shape image_shape() const {
    Shape s{batch, channels};
    for (auto v : image) s.push_back(v);
    return s;
  }
  Shape kernel_shape() const {
    Shape s{filters};
    if (unshared) {
      for (auto v : spatial(output3())) s.push_back(v);
    }
    s.push_back(channels_per_group());
    for (auto v : kernel) s.push_back(v);
    return s;
  }
  Shape output_shape() const {
    Shape s{batch, filters};
    for (auto v : spatial(output3())) s.push_back(v);
    return s;
  }
  std::string str() const {
    return fmt::format(
        "{}-D border={} subsample=({}) dilation=({}) flip={} groups={} unshared={} image={} "
        "kernel={}",
        convdim, border.label, fmt::join(subsample, ", "), fmt::join(dilation, ", "), flip, groups,
        unshared, shape_str(image_shape()), shape_str(kernel_shape()));
  }
};

// Flat offset of the kernel block of filter M, region R (unshared) and channel C.
std::int64_t kernel_offset(const Problem& p, std::int64_t m, std::int64_t r, std::int64_t c) {
  return ((m * p.regions() + r) * p.channels_per_group() + c) * volume_size(p.kernel3());
}

// The kernel as a true convolution wants it so that it computes the defining sum over
// P[y*s + i*d] * W[flip(i)]: reversed iff filter_flip is false (a true convolution reverses once
// more), then dilated.
Volume forward_kernel(const Problem& p, const Volume& w) {
  return dilate(p.flip ? w : reverse(w), p.dilation3());
}

// The kernel whose 'full' true convolution with the upsampled topgrad scatters T[y] * W[flip(i)]
// to y*s + i*d: the tap read at offset i*d is W[flip(i)].
Volume scatter_kernel(const Problem& p, const Volume& w) {
  return dilate(p.flip ? reverse(w) : w, p.dilation3());
}

std::vector<double> naive_forward(const Problem& p, const std::vector<double>& x,
                                  const std::vector<double>& w) {
  const Dims in = p.image3(), k = p.kernel3(), out = p.output3(), s = p.stride3();
  const auto [before, after] = p.pads3();
  const std::int64_t cg = p.channels_per_group(), mg = p.filters_per_group();
  std::vector<double> result(static_cast<std::size_t>(p.batch * p.filters * volume_size(out)));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t m = 0; m < p.filters; ++m) {
      const std::int64_t g = m / mg;
      Volume dense(p.dense3());
      Volume sampled(out);
      for (std::int64_t c = 0; c < cg; ++c) {
        const Volume padded = zero_pad(
            read_volume(x, (b * p.channels + g * cg + c) * volume_size(in), in), before, after);
        if (!p.unshared) {
          const Volume kern = forward_kernel(p, read_volume(w, kernel_offset(p, m, 0, c), k));
          add_into(dense, true_convolve_valid(padded, kern));
          continue;
        }
        std::int64_t r = 0;
        for_each_position(out, [&](const Dims& y) {
          const Volume kern = forward_kernel(p, read_volume(w, kernel_offset(p, m, r++, c), k));
          sampled[y] += true_convolve_at(padded, kern, y * s);
        });
      }
      if (!p.unshared) sampled = subsample(dense, s, out);
      write_volume(result, (b * p.filters + m) * volume_size(out), sampled);
    }
  }
  return result;
}

std::vector<double> naive_grad_inputs(const Problem& p, const std::vector<double>& w,
                                      const std::vector<double>& t) {
  const Dims in = p.image3(), k = p.kernel3(), out = p.output3(), s = p.stride3();
  const auto [before, after] = p.pads3();
  const std::int64_t cg = p.channels_per_group(), mg = p.filters_per_group();
  std::vector<double> result(static_cast<std::size_t>(p.batch * p.channels * volume_size(in)));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t channel = 0; channel < p.channels; ++channel) {
      const std::int64_t g = channel / cg, c = channel % cg;
      Volume padded_grad(p.padded3());
      for (std::int64_t m = g * mg; m < (g + 1) * mg; ++m) {
        const Volume top = read_volume(t, (b * p.filters + m) * volume_size(out), out);
        if (!p.unshared) {
          const Volume kern = scatter_kernel(p, read_volume(w, kernel_offset(p, m, 0, c), k));
          add_into(padded_grad, true_convolve_full(upsample(top, s, p.dense3()), kern));
          continue;
        }
        // One region at a time: its topgrad alone, upsampled, against its own kernel.
        std::int64_t r = 0;
        for_each_position(out, [&](const Dims& y) {
          const Volume kern = scatter_kernel(p, read_volume(w, kernel_offset(p, m, r++, c), k));
          Volume single(p.dense3());
          single[y * s] = top[y];
          add_into(padded_grad, true_convolve_full(single, kern));
        });
      }
      write_volume(result, (b * p.channels + channel) * volume_size(in),
                   crop(padded_grad, before, in));
    }
  }
  return result;
}

std::vector<double> naive_grad_weights(const Problem& p, const std::vector<double>& x,
                                       const std::vector<double>& t) {
  const Dims in = p.image3(), k = p.kernel3(), out = p.output3(), s = p.stride3();
  const Dims dk = p.dilated3();
  const auto [before, after] = p.pads3();
  const std::int64_t cg = p.channels_per_group(), mg = p.filters_per_group();
  std::vector<double> result(
      static_cast<std::size_t>(p.filters * p.regions() * cg * volume_size(k)));
  for (std::int64_t m = 0; m < p.filters; ++m) {
    const std::int64_t g = m / mg;
    for (std::int64_t c = 0; c < cg; ++c) {
      std::vector<Volume> lags(static_cast<std::size_t>(p.regions()), Volume(dk));
      for (std::int64_t b = 0; b < p.batch; ++b) {
        const Volume padded = zero_pad(
            read_volume(x, (b * p.channels + g * cg + c) * volume_size(in), in), before, after);
        const Volume top = read_volume(t, (b * p.filters + m) * volume_size(out), out);
        if (!p.unshared) {
          add_into(lags[0], correlate_lags(padded, upsample(top, s, p.dense3()), dk));
          continue;
        }
        // The window of the padded image under output position y, weighted by T[y].
        std::int64_t r = 0;
        for_each_position(out, [&](const Dims& y) {
          add_into(lags[static_cast<std::size_t>(r++)], crop(padded, y * s, dk), top[y]);
        });
      }
      for (std::int64_t r = 0; r < p.regions(); ++r) {
        // Lag i*d holds the sum for tap i, which the weight gradient stores at flip(i).
        const Volume taps = subsample(lags[static_cast<std::size_t>(r)], p.dilation3(), k);
        write_volume(result, kernel_offset(p, m, r, c), p.flip ? reverse(taps) : taps);
      }
    }
  }
  return result;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) acc += a[i] * b[i];
  return acc;
}

// A scale for comparing two evaluations of the same bilinear sum: sum of |products|.
double abs_dot(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) acc += std::abs(a[i] * b[i]);
  return acc;
}

Tensor as_tensor(const std::vector<double>& values, const Shape& shape, DType dtype) {
  return Tensor::from_vector<double>(values, shape).cast(dtype);
}

struct Tolerance {
  double rtol, atol;
};

Tolerance tolerance_for(DType dtype) {
  switch (dtype) {
    case DType::float64:
      return {1e-10, 1e-12};
    case DType::float32:
      return {1e-5, 1e-6};
    default:
      return {1e-2, 1e-3};
  }
}

// Compares the three reference directions with the naive ones on random data, and (float64)
// checks the adjoint identities.
void check_problem(const Problem& p, DType dtype, std::uint64_t seed) {
  INFO(p.str() << " dtype=" << dtype_name(dtype));
  const ConvParams params = p.params();
  const Tensor x = random_tensor(dtype, p.image_shape(), seed);
  const Tensor w = random_tensor(dtype, p.kernel_shape(), seed + 1);
  const Tensor t = random_tensor(dtype, p.output_shape(), seed + 2);
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), tv = t.to_vector<double>();
  const Tolerance tol = tolerance_for(dtype);

  const Tensor fwd = reference_conv_forward(params, x, w);
  const std::vector<double> fwd_naive = naive_forward(p, xv, wv);
  REQUIRE_ALLCLOSE(fwd, as_tensor(fwd_naive, p.output_shape(), dtype), tol.rtol, tol.atol);

  const Tensor gi = reference_conv_grad_inputs(params, w, t, p.image);
  REQUIRE_ALLCLOSE(gi, as_tensor(naive_grad_inputs(p, wv, tv), p.image_shape(), dtype), tol.rtol,
                   tol.atol);

  const Tensor gw = reference_conv_grad_weights(params, x, t, p.kernel);
  REQUIRE_ALLCLOSE(gw, as_tensor(naive_grad_weights(p, xv, tv), p.kernel_shape(), dtype), tol.rtol,
                   tol.atol);

  if (dtype == DType::float64) {
    const double lhs = dot(fwd_naive, tv);
    const double scale = abs_dot(fwd_naive, tv) + 1e-300;
    const auto giv = gi.to_vector<double>(), gwv = gw.to_vector<double>();
    INFO("<conv(x, w), t> = " << lhs << ", <x, gradI(w, t)> = " << dot(xv, giv)
                              << ", <w, gradW(x, t)> = " << dot(wv, gwv));
    REQUIRE(std::abs(lhs - dot(xv, giv)) <= 1e-12 * scale);
    REQUIRE(std::abs(lhs - dot(wv, gwv)) <= 1e-12 * scale);
  }
}

// The cases of a grid whose output is possible are checked; the others must be rejected by all
// three directions with a ShapeError before anything is computed.
struct GridCounts {
  int checked = 0, impossible = 0;
};

void check_or_expect_rejection(const Problem& p, const std::vector<DType>& dtypes,
                               std::uint64_t seed, GridCounts& counts) {
  if (p.possible()) {
    for (DType dtype : dtypes) check_problem(p, dtype, seed);
    ++counts.checked;
    return;
  }
  INFO(p.str());
  ++counts.impossible;
  const ConvParams params = p.params();
  const Tensor x = random_tensor(DType::float64, p.image_shape(), seed);
  // No region grid can match an impossible output; (1, 1) stands in for it.
  Shape kernel_shape{p.filters};
  if (p.unshared) kernel_shape.insert(kernel_shape.end(), {1, 1});
  kernel_shape.push_back(p.channels_per_group());
  for (auto v : p.kernel) kernel_shape.push_back(v);
  const Tensor w = random_tensor(DType::float64, kernel_shape, seed);
  REQUIRE_THROWS_AS(reference_conv_forward(params, x, w), ShapeError);
}

// Image sizes chosen so that the dilated kernel fits (plus EXTRA), which keeps every border mode
// meaningful while the remainders modulo the stride vary with EXTRA.
std::vector<std::int64_t> image_for(const std::vector<std::int64_t>& kernel,
                                    const std::vector<std::int64_t>& dilation,
                                    const std::vector<std::int64_t>& extra) {
  std::vector<std::int64_t> image;
  for (std::size_t a = 0; a < kernel.size(); ++a) {
    image.push_back((kernel[a] - 1) * dilation[a] + 1 + extra[a]);
  }
  return image;
}

struct GridSpec {
  int convdim;
  std::vector<TestBorder> borders;
  std::vector<std::vector<std::int64_t>> subsamples, dilations, kernels, extras;
  std::vector<std::int64_t> groups;
  std::vector<bool> unshared;
  std::int64_t batch, channels, filters;
  std::vector<DType> dtypes;
};

GridCounts run_grid(const GridSpec& spec) {
  GridCounts counts;
  std::uint64_t seed = 1000;
  for (const auto& border : spec.borders) {
    for (const auto& subsample : spec.subsamples) {
      for (const auto& dilation : spec.dilations) {
        for (const auto& kernel : spec.kernels) {
          for (const auto& extra : spec.extras) {
            for (std::int64_t groups : spec.groups) {
              for (bool unshared : spec.unshared) {
                for (bool flip : {true, false}) {
                  Problem p;
                  p.convdim = spec.convdim;
                  p.border = border;
                  p.subsample = subsample;
                  p.dilation = dilation;
                  p.flip = flip;
                  p.groups = groups;
                  p.unshared = unshared;
                  p.batch = spec.batch;
                  p.channels = spec.channels;
                  p.filters = spec.filters;
                  p.kernel = kernel;
                  p.image = image_for(kernel, dilation, extra);
                  check_or_expect_rejection(p, spec.dtypes, seed, counts);
                  seed += 3;
                }
              }
            }
          }
        }
      }
    }
  }
  return counts;
}

Problem small_problem(int convdim) {
  Problem p;
  p.convdim = convdim;
  p.border = named_border("valid");
  p.subsample.assign(static_cast<std::size_t>(convdim), 1);
  p.dilation.assign(static_cast<std::size_t>(convdim), 1);
  p.batch = 2;
  p.channels = 4;
  p.filters = 6;
  p.groups = 2;
  p.image.assign(static_cast<std::size_t>(convdim), 5);
  p.kernel.assign(static_cast<std::size_t>(convdim), 3);
  return p;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool all_zero(const Tensor& t) {
  for (double v : t.to_vector<double>()) {
    if (v != 0.0) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the naive helpers agree with hand-computed values", "[conv]") {
  // Guards the test's own machinery: a 1-D true convolution and its dilation/subsampling.
  Volume a({1, 1, 5});
  a.values = {1, 2, 3, 4, 5};
  Volume k({1, 1, 2});
  k.values = {1, 10};
  // Valid true convolution: out[n] = a[n + 1] * 1 + a[n] * 10.
  REQUIRE(true_convolve_valid(a, k).values == std::vector<double>{12, 23, 34, 45});
  REQUIRE(true_convolve_full(a, k).values == std::vector<double>{1, 12, 23, 34, 45, 50});
  REQUIRE(dilate(k, {1, 1, 3}).values == std::vector<double>{1, 0, 0, 10});
  REQUIRE(subsample(a, {1, 1, 2}, {1, 1, 3}).values == std::vector<double>{1, 3, 5});
  REQUIRE(correlate_lags(a, k, {1, 1, 2}).values == std::vector<double>{21, 32});

  // And a conv2d the library must reproduce: cross-correlation of a 3x3 ramp with a 2x2 kernel.
  const ConvParams params = make_conv_params(2, "valid", {}, false);
  const Tensor x = Tensor::from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 3, 3});
  const Tensor w = Tensor::from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  const Tensor expected = Tensor::from_vector<double>({27, 37, 57, 67}, {1, 1, 2, 2});
  REQUIRE_ALLCLOSE(reference_conv_forward(params, x, w), expected, 0.0, 0.0);
  // With filter_flip the kernel is reversed: a true convolution.
  const Tensor flipped = Tensor::from_vector<double>({13, 23, 43, 53}, {1, 1, 2, 2});
  REQUIRE_ALLCLOSE(reference_conv_forward(make_conv_params(2, "valid"), x, w), flipped, 0.0, 0.0);
}

TEST_CASE("2-D reference convolutions match the naive implementation on the parameter grid",
          "[conv]") {
  GridSpec spec;
  spec.convdim = 2;
  spec.borders = borders_2d();
  spec.subsamples = {{1, 1}, {2, 2}, {3, 2}};
  spec.dilations = {{1, 1}, {2, 1}, {3, 3}};
  spec.kernels = {{3, 3}, {2, 4}};
  spec.extras = {{2, 3}, {0, 1}};
  spec.groups = {1, 2, 4};  // 4 = depthwise (G = C), with 2 filters per channel
  spec.unshared = {false, true};
  spec.batch = 2;
  spec.channels = 4;
  spec.filters = 8;
  spec.dtypes = {DType::float64, DType::float32};
  const GridCounts counts = run_grid(spec);
  REQUIRE(counts.checked == 8 * 3 * 3 * 2 * 2 * 3 * 2 * 2);
}

TEST_CASE("3-D reference convolutions match the naive implementation on the parameter grid",
          "[conv]") {
  GridSpec spec;
  spec.convdim = 3;
  spec.borders = borders_3d();
  spec.subsamples = {{1, 1, 1}, {2, 1, 3}};
  spec.dilations = {{1, 1, 1}, {1, 2, 3}};
  spec.kernels = {{3, 3, 3}, {2, 3, 2}};
  spec.extras = {{1, 2, 3}, {0, 0, 1}};
  spec.groups = {1, 2, 4};
  spec.unshared = {false};
  spec.batch = 2;
  spec.channels = 4;
  spec.filters = 4;
  spec.dtypes = {DType::float64, DType::float32};
  const GridCounts counts = run_grid(spec);
  REQUIRE(counts.checked == 5 * 2 * 2 * 2 * 2 * 3 * 2);
}

TEST_CASE("reference convolutions: exhaustive parameter grid", "[conv][slow]") {
  GridSpec spec2;
  spec2.convdim = 2;
  spec2.borders = borders_2d();
  spec2.borders.push_back(pair_border({{0, 3}, {2, 0}}));
  for (std::int64_t a = 1; a <= 3; ++a) {
    for (std::int64_t b = 1; b <= 3; ++b) {
      spec2.subsamples.push_back({a, b});
      spec2.dilations.push_back({a, b});
    }
  }
  spec2.kernels = {{1, 1}, {3, 3}, {2, 4}, {4, 1}};
  spec2.extras = {{0, 1}, {2, 3}, {5, 4}};
  spec2.groups = {1, 2, 3, 6};
  spec2.unshared = {false, true};
  spec2.batch = 3;
  spec2.channels = 6;
  spec2.filters = 6;
  spec2.dtypes = {DType::float64, DType::float32};
  const GridCounts counts2 = run_grid(spec2);
  CHECK(counts2.checked > 0);

  GridSpec spec3;
  spec3.convdim = 3;
  spec3.borders = borders_3d();
  spec3.borders.push_back(per_axis_border({0, 2, 1}));
  spec3.subsamples = {{1, 1, 1}, {2, 2, 2}, {3, 1, 2}};
  spec3.dilations = {{1, 1, 1}, {2, 2, 2}, {1, 3, 2}};
  spec3.kernels = {{1, 1, 1}, {3, 3, 3}, {2, 3, 2}};
  spec3.extras = {{0, 1, 2}, {3, 2, 1}};
  spec3.groups = {1, 2, 3, 6};
  spec3.unshared = {false};
  spec3.batch = 2;
  spec3.channels = 6;
  spec3.filters = 6;
  spec3.dtypes = {DType::float64, DType::float32};
  const GridCounts counts3 = run_grid(spec3);
  CHECK(counts3.checked > 0);
}

TEST_CASE("reference convolutions in float16 compute in float and round once", "[conv]") {
  for (int convdim : {2, 3}) {
    Problem p = small_problem(convdim);
    p.border = named_border("half");
    p.subsample.assign(static_cast<std::size_t>(convdim), 2);
    check_problem(p, DType::float16, 77);
    p.unshared = convdim == 2;
    check_problem(p, DType::float16, 78);
  }
}

TEST_CASE("empty batches, channels and filters give correctly shaped zeros", "[conv]") {
  for (int convdim : {2, 3}) {
    for (bool unshared : {false, true}) {
      if (unshared && convdim == 3) continue;
      for (int which = 0; which < 3; ++which) {
        Problem p = small_problem(convdim);
        p.border = named_border("full");
        p.unshared = unshared;
        if (which == 0) p.batch = 0;
        if (which == 1) p.channels = 0;
        if (which == 2) p.filters = 0;
        INFO(p.str());
        const ConvParams params = p.params();
        const Tensor x = random_tensor(DType::float32, p.image_shape(), 1);
        const Tensor w = random_tensor(DType::float32, p.kernel_shape(), 2);
        const Tensor t = random_tensor(DType::float32, p.output_shape(), 3);
        const Tensor fwd = reference_conv_forward(params, x, w);
        const Tensor gi = reference_conv_grad_inputs(params, w, t, p.image);
        const Tensor gw = reference_conv_grad_weights(params, x, t, p.kernel);
        REQUIRE(fwd.shape() == p.output_shape());
        REQUIRE(gi.shape() == p.image_shape());
        REQUIRE(gw.shape() == p.kernel_shape());
        REQUIRE(fwd.dtype() == DType::float32);
        // Whatever is not empty is a sum over nothing.
        REQUIRE(all_zero(fwd));
        REQUIRE(all_zero(gi));
        REQUIRE(all_zero(gw));
        if (which == 0) REQUIRE(gw.numel() > 0);  // batch 0: a real kernel of zeros
        if (which == 1) REQUIRE(fwd.numel() > 0);
        if (which == 2) REQUIRE(gi.numel() > 0);
      }
    }
  }
}

TEST_CASE("non-contiguous inputs give the same values as contiguous ones", "[conv]") {
  Problem p = small_problem(2);
  p.border = pair_border({{1, 0}, {0, 2}});
  p.subsample = {2, 1};
  p.dilation = {1, 2};
  const ConvParams params = p.params();
  // Views with every axis reversed-and-permuted strides: built by permuting a tensor of the
  // permuted shape, so the values are those of a fresh random tensor.
  auto strided_copy = [](const Tensor& t) {
    std::vector<int> perm(static_cast<std::size_t>(t.rank()));
    for (int i = 0; i < t.rank(); ++i) perm[static_cast<std::size_t>(i)] = t.rank() - 1 - i;
    const Tensor transposed = t.permute(perm).clone();  // reversed axes, contiguous
    const Tensor view = transposed.permute(perm);       // original axes, reversed strides
    REQUIRE_FALSE(view.is_contiguous());
    return view;
  };
  const Tensor x = random_tensor(DType::float64, p.image_shape(), 5);
  const Tensor w = random_tensor(DType::float64, p.kernel_shape(), 6);
  const Tensor t = random_tensor(DType::float64, p.output_shape(), 7);
  REQUIRE(tensor_equal(reference_conv_forward(params, strided_copy(x), strided_copy(w)),
                       reference_conv_forward(params, x, w)));
  REQUIRE(
      tensor_equal(reference_conv_grad_inputs(params, strided_copy(w), strided_copy(t), p.image),
                   reference_conv_grad_inputs(params, w, t, p.image)));
  REQUIRE(
      tensor_equal(reference_conv_grad_weights(params, strided_copy(x), strided_copy(t), p.kernel),
                   reference_conv_grad_weights(params, x, t, p.kernel)));
  // A sliced view with an offset (every other batch item of a larger tensor).
  Shape big = p.image_shape();
  big[0] *= 2;
  const Tensor xs = random_tensor(DType::float64, big, 8).slice(0, 1, big[0], 2);
  REQUIRE(tensor_equal(reference_conv_forward(params, xs, w),
                       reference_conv_forward(params, xs.clone(), w)));
}

TEST_CASE("gradInputs: the input shape disambiguates strided convolutions", "[conv]") {
  // With stride 3 and a 3-wide kernel, images of width 9, 10 and 11 all give 3 outputs; each
  // gradient has the requested width, and the columns past the last window (from 9 on) are zero.
  for (std::int64_t width : {9, 10, 11}) {
    Problem p = small_problem(2);
    p.subsample = {1, 3};
    p.image = {5, width};
    INFO(p.str());
    REQUIRE(p.output3()[2] == 3);
    check_problem(p, DType::float64, 11);
    const Tensor gi =
        reference_conv_grad_inputs(p.params(), random_tensor(DType::float64, p.kernel_shape(), 1),
                                   random_tensor(DType::float64, p.output_shape(), 2), p.image);
    REQUIRE(gi.shape() == p.image_shape());
    REQUIRE_FALSE(all_zero(gi.slice(3, 8, 9, 1)));
    REQUIRE(all_zero(gi.slice(3, 9, width, 1)));
  }
}

TEST_CASE("reference convolutions reject inconsistent inputs with clear messages", "[conv]") {
  const Problem p = small_problem(2);  // image (2, 4, 5, 5), kernel (6, 2, 3, 3), groups 2
  const ConvParams params = p.params();
  const Tensor x = random_tensor(DType::float32, p.image_shape(), 1);
  const Tensor w = random_tensor(DType::float32, p.kernel_shape(), 2);
  const Tensor t = random_tensor(DType::float32, p.output_shape(), 3);

  SECTION("dtype mismatch") {
    const Tensor w64 = w.cast(DType::float64);
    REQUIRE_THROWS_AS(reference_conv_forward(params, x, w64), TypeError);
    const std::string msg = message_of([&] { reference_conv_forward(params, x, w64); });
    CHECK(msg.find("reference_conv_forward") != std::string::npos);
    CHECK(msg.find("float32") != std::string::npos);
    CHECK(msg.find("float64") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w64, t, p.image), TypeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t.cast(DType::float64), p.kernel),
                      TypeError);
  }
  SECTION("integer dtypes") {
    const std::string msg = message_of(
        [&] { reference_conv_forward(params, x.cast(DType::int32), w.cast(DType::int32)); });
    CHECK(msg.find("int32") != std::string::npos);
    CHECK(msg.find("float16, float32 or float64") != std::string::npos);
  }
  SECTION("wrong ranks") {
    REQUIRE_THROWS_AS(reference_conv_forward(params, x.select(0, 0), w), TypeError);
    const ConvParams unshared = make_conv_params(2, "valid", {}, true, {}, 2, true);
    const std::string msg = message_of([&] { reference_conv_forward(unshared, x, w); });
    CHECK(msg.find("kernel") != std::string::npos);
    CHECK(msg.find("rank 6") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w, t.select(0, 0), p.image), TypeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t.select(0, 0), p.kernel), TypeError);
  }
  SECTION("channels not divisible by num_groups") {
    const Tensor x3 = random_tensor(DType::float32, {2, 3, 5, 5}, 4);
    const std::string msg = message_of([&] { reference_conv_forward(params, x3, w); });
    CHECK(msg.find("3 channels") != std::string::npos);
    CHECK(msg.find("num_groups=2") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_forward(params, x3, w), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x3, t, p.kernel), ShapeError);
  }
  SECTION("filters not divisible by num_groups") {
    const Tensor w5 = random_tensor(DType::float32, {5, 2, 3, 3}, 4);
    const std::string msg = message_of([&] { reference_conv_forward(params, x, w5); });
    CHECK(msg.find("5 filters") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_forward(params, x, w5), ShapeError);
    const Tensor t5 = random_tensor(DType::float32, {2, 5, 3, 3}, 4);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w5, t5, p.image), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t5, p.kernel), ShapeError);
  }
  SECTION("kernel channels do not match one group of the image") {
    const Tensor w3 = random_tensor(DType::float32, {6, 3, 3, 3}, 4);
    const std::string msg = message_of([&] { reference_conv_forward(params, x, w3); });
    CHECK(msg.find("3 input channels") != std::string::npos);
    CHECK(msg.find("needs 2") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_forward(params, x, w3), ShapeError);
  }
  SECTION("unshared region grid differs from the output grid") {
    const ConvParams unshared = make_conv_params(2, "valid", {}, true, {}, 2, true);
    const Tensor wu = random_tensor(DType::float32, {6, 3, 2, 2, 3, 3}, 4);
    const std::string msg = message_of([&] { reference_conv_forward(unshared, x, wu); });
    CHECK(msg.find("[3, 2]") != std::string::npos);
    CHECK(msg.find("[3, 3]") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_forward(unshared, x, wu), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(unshared, wu, t, p.image), ShapeError);
  }
  SECTION("topgrad inconsistent with the input shape (gradInputs)") {
    const std::string msg = message_of([&] {
      reference_conv_grad_inputs(params, w, t, Shape{6, 5});
    });
    CHECK(msg.find("invalid input_shape for gradInputs: the given input_shape would produce an "
                   "output of shape [2, 6, 4, 3], but the given topgrad has shape [2, 6, 3, 3]") !=
          std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w, t, Shape{6, 5}), ShapeError);
    // The batch and the number of filters are part of the shape that is compared.
    const Tensor t_more = random_tensor(DType::float32, {2, 8, 3, 3}, 4);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w, t_more, p.image), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w, t, Shape{5}), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, w, t, Shape{5, -1}), ShapeError);
  }
  SECTION("topgrad inconsistent with the kernel shape (gradWeights)") {
    const std::string msg = message_of([&] {
      reference_conv_grad_weights(params, x, t, Shape{2, 3});
    });
    CHECK(msg.find("invalid filter_shape for gradWeights") != std::string::npos);
    CHECK(msg.find("[2, 6, 4, 3]") != std::string::npos);
    CHECK(msg.find("[2, 6, 3, 3]") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t, Shape{2, 3}), ShapeError);
    const Tensor t_batch = random_tensor(DType::float32, {3, 6, 3, 3}, 4);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t_batch, p.kernel), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, t, Shape{3, 0}), ShapeError);
  }
  SECTION("impossible output shapes") {
    const Tensor big = random_tensor(DType::float32, {6, 2, 6, 6}, 4);
    const std::string msg = message_of([&] { reference_conv_forward(params, x, big); });
    CHECK(msg.find("[0, 0]") != std::string::npos);
    REQUIRE_THROWS_AS(reference_conv_forward(params, x, big), ShapeError);
    const Tensor empty_top = random_tensor(DType::float32, {2, 6, 0, 0}, 4);
    REQUIRE_THROWS_AS(reference_conv_grad_inputs(params, big, empty_top, p.image), ShapeError);
    REQUIRE_THROWS_AS(reference_conv_grad_weights(params, x, empty_top, Shape{6, 6}), ShapeError);
  }
}
