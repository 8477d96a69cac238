// The reference convolutions (forward, gradient with respect to the inputs, gradient with respect
// to the weights): direct loops over every output element and every kernel tap, accumulating in
// double. Speed is not the point: every other implementation (CorrMM, oneDNN, cuDNN) is judged
// against these, so each loop is the defining sum written out. 2-D problems run through the 3-D
// code with a leading spatial axis of size 1, which keeps a single code path without changing any
// index.
#include <fmt/format.h>

#include <omp.h>
#include "convgraph/ops/conv/conv_checks.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/runtime/cpu_threads.hpp"

namespace convgraph {
namespace {

using Axes = std::array<std::int64_t, 3>;

std::int64_t product(const Axes& a) {
  return a[0] * a[1] * a[2];
}

// Everything the loops need, with the spatial axes padded to three (depth 1 in 2-D).
struct Geometry {
  std::int64_t batch = 0;
  std::int64_t channels = 0;            // C
  std::int64_t filters = 0;             // M
  std::int64_t groups = 1;              // G
  std::int64_t channels_per_group = 0;  // Cg
  std::int64_t filters_per_group = 0;   // Mg
  Axes image{1, 1, 1}, kernel{1, 1, 1}, output{1, 1, 1};
  Axes stride{1, 1, 1}, dilation{1, 1, 1}, pad_before{0, 0, 0};
  bool flip = true;
  bool unshared = false;

  // Multiply-adds of any of the three directions.
  std::int64_t work() const {
    return batch * filters * product(output) * channels_per_group * taps();
  }
  // Unshared kernels hold one (Cg, k...) block per output position ("region").
  std::int64_t regions() const { return unshared ? product(output) : 1; }
  std::int64_t taps() const { return product(kernel); }
  // Offset of the (kd, kh, kw) block of filter M, region R and channel C in the kernel tensor;
  // both layouts, (M, Cg, k...) and (M, oh, ow, Cg, k...), are this formula.
  std::int64_t kernel_block(std::int64_t m, std::int64_t region, std::int64_t c) const {
    return ((m * regions() + (unshared ? region : 0)) * channels_per_group + c) * taps();
  }
  // The stored tap read for logical tap (IZ, IY, IX): flip(i) = k - 1 - i when filter_flip.
  std::int64_t tap(std::int64_t iz, std::int64_t iy, std::int64_t ix) const {
    if (flip) {
      iz = kernel[0] - 1 - iz;
      iy = kernel[1] - 1 - iy;
      ix = kernel[2] - 1 - ix;
    }
    return (iz * kernel[1] + iy) * kernel[2] + ix;
  }
};

const char* const kForward = "reference_conv_forward";
const char* const kGradInputs = "reference_conv_grad_inputs";
const char* const kGradWeights = "reference_conv_grad_weights";

void check_tensor(const char* fn, const char* what, const Tensor& t, int rank) {
  if (!t.defined()) throw ValueError(fmt::format("{}: the {} is an undefined tensor", fn, what));
  if (!t.device().is_cpu()) {
    throw UnsupportedError(fmt::format("{}: the {} is on {}; the reference runs on the cpu only",
                                       fn, what, t.device().str()));
  }
  if (!is_float(t.dtype())) {
    throw TypeError(fmt::format("{}: the {} has dtype {}; expected float16, float32 or float64", fn,
                                what, dtype_name(t.dtype())));
  }
  if (t.rank() != rank) {
    throw TypeError(fmt::format("{}: the {} has shape {} (rank {}); expected rank {}", fn, what,
                                shape_str(t.shape()), t.rank(), rank));
  }
}

void check_same_dtype(const char* fn, const char* what_a, const Tensor& a, const char* what_b,
                      const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    throw TypeError(
        fmt::format("{}: the {} has dtype {} but the {} has dtype {}; expected the "
                    "same dtype",
                    fn, what_a, dtype_name(a.dtype()), what_b, dtype_name(b.dtype())));
  }
}

// The loops' geometry of a checked problem: the spatial axes padded to three at the front.
Geometry geometry_of(const ConvProblem& pr, const ConvParams& p) {
  Geometry geo;
  geo.flip = p.filter_flip;
  geo.unshared = p.unshared;
  geo.groups = pr.groups;
  geo.batch = pr.batch;
  geo.channels = pr.channels;
  geo.filters = pr.filters;
  geo.channels_per_group = pr.channels_per_group();
  geo.filters_per_group = pr.filters_per_group();
  const int n = p.convdim;
  for (int a = 0; a < n; ++a) {
    const auto i = static_cast<std::size_t>(a);
    const auto j = static_cast<std::size_t>(3 - n + a);
    geo.image[j] = pr.image_spatial[i];
    geo.kernel[j] = pr.kernel_spatial[i];
    geo.output[j] = pr.output_spatial[i];
    geo.stride[j] = pr.stride[i];
    geo.dilation[j] = pr.dilation[i];
    geo.pad_before[j] = pr.pad_before[i];
  }
  return geo;
}

// Below this many multiply-adds a parallel region costs more than it saves, and on a loaded
// machine its barrier can cost far more (a descheduled thread stalls the others).
constexpr std::int64_t kParallelWork = std::int64_t{1} << 16;

int thread_count(const Geometry& geo) {
  if (geo.work() < kParallelWork) return 1;
  return cpu_threads();
}

template <typename T>
double load(T value) {
  return static_cast<double>(convert<compute_t<T>>(value));
}

template <typename T>
T store(double value) {
  return convert<T>(static_cast<compute_t<T>>(value));
}

// out[b, m, y] = sum over c < Cg and taps i of P[b, g*Cg + c, y*s + i*d] * W[m, c, flip(i)].
template <typename T>
void forward_loops(const Geometry& geo, const T* image, const T* kernel, T* out) {
  const int threads = thread_count(geo);
  const std::int64_t image_size = product(geo.image);
  const std::int64_t out_size = product(geo.output);
  const std::int64_t pairs = geo.batch * geo.filters;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t bm = 0; bm < pairs; ++bm) {
    const std::int64_t b = bm / geo.filters;
    const std::int64_t m = bm % geo.filters;
    const std::int64_t g = m / geo.filters_per_group;
    T* dst = out + bm * out_size;
    for (std::int64_t oz = 0; oz < geo.output[0]; ++oz) {
      for (std::int64_t oy = 0; oy < geo.output[1]; ++oy) {
        for (std::int64_t ox = 0; ox < geo.output[2]; ++ox) {
          const std::int64_t region = (oz * geo.output[1] + oy) * geo.output[2] + ox;
          double acc = 0.0;
          for (std::int64_t c = 0; c < geo.channels_per_group; ++c) {
            const T* plane =
                image + (b * geo.channels + g * geo.channels_per_group + c) * image_size;
            const T* w = kernel + geo.kernel_block(m, region, c);
            for (std::int64_t iz = 0; iz < geo.kernel[0]; ++iz) {
              // Positions in P are shifted by the leading pad to index the unpadded image;
              // whatever falls outside it is padding and contributes zero.
              const std::int64_t z = oz * geo.stride[0] + iz * geo.dilation[0] - geo.pad_before[0];
              if (z < 0 || z >= geo.image[0]) continue;
              for (std::int64_t iy = 0; iy < geo.kernel[1]; ++iy) {
                const std::int64_t y =
                    oy * geo.stride[1] + iy * geo.dilation[1] - geo.pad_before[1];
                if (y < 0 || y >= geo.image[1]) continue;
                for (std::int64_t ix = 0; ix < geo.kernel[2]; ++ix) {
                  const std::int64_t x =
                      ox * geo.stride[2] + ix * geo.dilation[2] - geo.pad_before[2];
                  if (x < 0 || x >= geo.image[2]) continue;
                  acc += load(plane[(z * geo.image[1] + y) * geo.image[2] + x]) *
                         load(w[geo.tap(iz, iy, ix)]);
                }
              }
            }
          }
          dst[region] = store<T>(acc);
        }
      }
    }
  }
}

// dP[b, g*Cg + c, y*s + i*d] += T[b, m, y] * W[m, c, flip(i)], then the pads are cropped: taps
// landing in the padding are simply not accumulated. Each batch item is one thread's.
template <typename T>
void grad_inputs_loops(const Geometry& geo, const T* kernel, const T* topgrad, T* out) {
  const std::int64_t image_size = product(geo.image);
  const std::int64_t out_size = product(geo.output);
  const std::int64_t item_size = geo.channels * image_size;
  const int threads = static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(thread_count(geo), geo.batch)));
  // One accumulator per thread, allocated out here: running out of memory inside a parallel
  // region would terminate the process instead of reaching the caller as an exception.
  std::vector<double> scratch(static_cast<std::size_t>(threads * item_size));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < geo.batch; ++b) {
    double* acc = scratch.data() + omp_get_thread_num() * item_size;
    std::fill(acc, acc + item_size, 0.0);
    for (std::int64_t m = 0; m < geo.filters; ++m) {
      const std::int64_t g = m / geo.filters_per_group;
      const T* top = topgrad + (b * geo.filters + m) * out_size;
      for (std::int64_t oz = 0; oz < geo.output[0]; ++oz) {
        for (std::int64_t oy = 0; oy < geo.output[1]; ++oy) {
          for (std::int64_t ox = 0; ox < geo.output[2]; ++ox) {
            const std::int64_t region = (oz * geo.output[1] + oy) * geo.output[2] + ox;
            const double t = load(top[region]);
            for (std::int64_t c = 0; c < geo.channels_per_group; ++c) {
              double* plane = acc + (g * geo.channels_per_group + c) * image_size;
              const T* w = kernel + geo.kernel_block(m, region, c);
              for (std::int64_t iz = 0; iz < geo.kernel[0]; ++iz) {
                const std::int64_t z =
                    oz * geo.stride[0] + iz * geo.dilation[0] - geo.pad_before[0];
                if (z < 0 || z >= geo.image[0]) continue;
                for (std::int64_t iy = 0; iy < geo.kernel[1]; ++iy) {
                  const std::int64_t y =
                      oy * geo.stride[1] + iy * geo.dilation[1] - geo.pad_before[1];
                  if (y < 0 || y >= geo.image[1]) continue;
                  for (std::int64_t ix = 0; ix < geo.kernel[2]; ++ix) {
                    const std::int64_t x =
                        ox * geo.stride[2] + ix * geo.dilation[2] - geo.pad_before[2];
                    if (x < 0 || x >= geo.image[2]) continue;
                    plane[(z * geo.image[1] + y) * geo.image[2] + x] +=
                        t * load(w[geo.tap(iz, iy, ix)]);
                  }
                }
              }
            }
          }
        }
      }
    }
    T* dst = out + b * geo.channels * image_size;
    for (std::int64_t i = 0; i < item_size; ++i) dst[i] = store<T>(acc[i]);
  }
}

// dW[m, (region,) c, flip(i)] = sum over b and y of P[b, g*Cg + c, y*s + i*d] * T[b, m, y], where
// y runs over every output position for a shared kernel and over the region's single position
// for an unshared one. Each filter is one thread's.
template <typename T>
void grad_weights_loops(const Geometry& geo, const T* image, const T* topgrad, T* out) {
  const int threads = thread_count(geo);
  const std::int64_t image_size = product(geo.image);
  const std::int64_t out_size = product(geo.output);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t m = 0; m < geo.filters; ++m) {
    const std::int64_t g = m / geo.filters_per_group;
    for (std::int64_t region = 0; region < geo.regions(); ++region) {
      const std::int64_t first = geo.unshared ? region : 0;
      const std::int64_t last = geo.unshared ? region + 1 : out_size;
      for (std::int64_t c = 0; c < geo.channels_per_group; ++c) {
        T* w = out + geo.kernel_block(m, region, c);
        for (std::int64_t iz = 0; iz < geo.kernel[0]; ++iz) {
          for (std::int64_t iy = 0; iy < geo.kernel[1]; ++iy) {
            for (std::int64_t ix = 0; ix < geo.kernel[2]; ++ix) {
              double acc = 0.0;
              for (std::int64_t b = 0; b < geo.batch; ++b) {
                const T* plane =
                    image + (b * geo.channels + g * geo.channels_per_group + c) * image_size;
                const T* top = topgrad + (b * geo.filters + m) * out_size;
                for (std::int64_t pos = first; pos < last; ++pos) {
                  const std::int64_t ox = pos % geo.output[2];
                  const std::int64_t oy = (pos / geo.output[2]) % geo.output[1];
                  const std::int64_t oz = pos / (geo.output[2] * geo.output[1]);
                  const std::int64_t z =
                      oz * geo.stride[0] + iz * geo.dilation[0] - geo.pad_before[0];
                  const std::int64_t y =
                      oy * geo.stride[1] + iy * geo.dilation[1] - geo.pad_before[1];
                  const std::int64_t x =
                      ox * geo.stride[2] + ix * geo.dilation[2] - geo.pad_before[2];
                  if (z < 0 || z >= geo.image[0] || y < 0 || y >= geo.image[1] || x < 0 ||
                      x >= geo.image[2]) {
                    continue;
                  }
                  acc += load(plane[(z * geo.image[1] + y) * geo.image[2] + x]) * load(top[pos]);
                }
              }
              w[geo.tap(iz, iy, ix)] = store<T>(acc);
            }
          }
        }
      }
    }
  }
}

template <typename Fn>
void dispatch_float(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float16:
      fn.template operator()<Half>();
      return;
    case DType::float32:
      fn.template operator()<float>();
      return;
    case DType::float64:
      fn.template operator()<double>();
      return;
    default:
      break;
  }
  // Unreachable: check_tensor rejected every other dtype before anything was allocated.
  throw TypeError(
      fmt::format("reference convolution: dtype {} is not a float type", dtype_name(dtype)));
}

// Whether an input or the output is empty: the result is then zeros (or empty), and the loops'
// sizes are not computed at all (the other dims of an empty tensor may be huge).
bool nothing_to_sum(const ConvProblem& pr) {
  return shape_numel(pr.image) == 0 || shape_numel(pr.kernel) == 0 || shape_numel(pr.output) == 0;
}

}  // namespace

Tensor reference_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel) {
  const char* fn = kForward;
  check_conv_params(fn, params);
  check_tensor(fn, "image", image, params.image_rank());
  check_tensor(fn, "kernel", kernel, params.kernel_rank());
  check_same_dtype(fn, "image", image, "kernel", kernel);
  const ConvProblem pr =
      resolve_conv_problem(fn, ConvDirection::forward, params, image.shape(), kernel.shape(), {});
  const Geometry geo = geometry_of(pr, params);
  const Shape& out_shape = pr.result;
  if (nothing_to_sum(pr)) return Tensor::zeros(image.dtype(), out_shape);
  Tensor out = Tensor::empty(image.dtype(), out_shape);
  const Tensor img = image.contiguous();
  const Tensor ker = kernel.contiguous();
  dispatch_float(image.dtype(), [&]<typename T>() {
    forward_loops<T>(geo, img.data<T>(), ker.data<T>(), out.data<T>());
  });
  return out;
}

Tensor reference_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                                  const Tensor& topgrad, const Shape& image_spatial) {
  const char* fn = kGradInputs;
  check_conv_params(fn, params);
  check_tensor(fn, "kernel", kernel, params.kernel_rank());
  check_tensor(fn, "topgrad", topgrad, params.image_rank());
  check_same_dtype(fn, "kernel", kernel, "topgrad", topgrad);
  const ConvProblem pr = resolve_conv_problem(fn, ConvDirection::grad_inputs, params,
                                              kernel.shape(), topgrad.shape(), image_spatial);
  const Geometry geo = geometry_of(pr, params);
  const Shape& image_shape = pr.result;
  if (nothing_to_sum(pr)) return Tensor::zeros(kernel.dtype(), image_shape);
  Tensor out = Tensor::empty(kernel.dtype(), image_shape);
  const Tensor ker = kernel.contiguous();
  const Tensor top = topgrad.contiguous();
  dispatch_float(kernel.dtype(), [&]<typename T>() {
    grad_inputs_loops<T>(geo, ker.data<T>(), top.data<T>(), out.data<T>());
  });
  return out;
}

Tensor reference_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                   const Tensor& topgrad, const Shape& kernel_spatial) {
  const char* fn = kGradWeights;
  check_conv_params(fn, params);
  check_tensor(fn, "image", image, params.image_rank());
  check_tensor(fn, "topgrad", topgrad, params.image_rank());
  check_same_dtype(fn, "image", image, "topgrad", topgrad);
  const ConvProblem pr = resolve_conv_problem(fn, ConvDirection::grad_weights, params,
                                              image.shape(), topgrad.shape(), kernel_spatial);
  const Geometry geo = geometry_of(pr, params);
  const Shape& kernel_shape = pr.result;
  if (nothing_to_sum(pr)) return Tensor::zeros(image.dtype(), kernel_shape);
  Tensor out = Tensor::empty(image.dtype(), kernel_shape);
  const Tensor img = image.contiguous();
  const Tensor top = topgrad.contiguous();
  dispatch_float(image.dtype(), [&]<typename T>() {
    grad_weights_loops<T>(geo, img.data<T>(), top.data<T>(), out.data<T>());
  });
  return out;
}

}  // namespace convgraph
