#include "convgraph/autodiff/verify_grad.hpp"

#include <fmt/format.h>

#include <cmath>
#include <random>

#include "convgraph/autodiff/gradient.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/planner/compile.hpp"

namespace convgraph {
namespace {

double default_eps(DType d) {
  return d == DType::float64 ? 1e-7 : d == DType::float32 ? 3e-4 : 1e-1;
}
double default_tol(DType d) {
  return d == DType::float64 ? 1e-4 : d == DType::float32 ? 1e-2 : 5e-2;
}

// Sets element INDEX (row-major) of the contiguous tensor T.
void set_element(Tensor& t, std::int64_t index, double value) {
  dispatch_dtype(t.dtype(), [&]<typename T>() {
    if constexpr (std::is_same_v<T, Half> || std::is_floating_point_v<T>) {
      t.data<T>()[index] = convert<T>(static_cast<compute_t<T>>(value));
    }
  });
}

double element(const Tensor& t, std::int64_t index) {
  return dispatch_dtype(t.dtype(), [&]<typename T>() {
    return convert<double>(convert<compute_t<T>>(t.data<T>()[index]));
  });
}

}  // namespace

void verify_grad(const std::function<Variable(const std::vector<Variable>&)>& fn,
                 const std::vector<Tensor>& points, const VerifyGradOptions& options) {
  if (points.empty()) throw ValueError("verify_grad: no points given");
  std::vector<Variable> inputs;
  DType widest = DType::float16;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (!points[i].defined())
      throw ValueError(fmt::format("verify_grad: point {} is undefined", i));
    if (!is_float(points[i].dtype())) {
      throw TypeError(
          fmt::format("verify_grad: point {} has dtype {}; only floating-point "
                      "inputs can be checked",
                      i, dtype_name(points[i].dtype())));
    }
    widest = promote(widest, points[i].dtype());
    inputs.push_back(make_input(TensorType::of(points[i]), fmt::format("point{}", i)));
  }
  const double eps = options.eps.value_or(default_eps(widest));
  const double abs_tol = options.abs_tol.value_or(default_tol(widest));
  const double rel_tol = options.rel_tol.value_or(default_tol(widest));
  CompileOptions copts;
  copts.flags = options.flags;

  const Variable output = fn(inputs);
  if (!output.defined()) throw ValueError("verify_grad: the function returned no variable");
  if (!is_float(output.dtype())) {
    throw TypeError(
        fmt::format("verify_grad: the function's output has dtype {}; it must be "
                    "floating-point",
                    dtype_name(output.dtype())));
  }
  // The output's shape is only known after running it once.
  const Tensor sample = compile(inputs, {output}, copts)(points).front();
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> uniform(0.5, 1.5);
  std::vector<double> weights(static_cast<std::size_t>(sample.numel()));
  for (double& w : weights) w = uniform(rng);
  const Tensor projection =
      Tensor::from_vector<double>(weights, sample.shape()).cast(output.dtype());
  const Variable cost = sum(mul(output, constant(projection)));

  const Function cost_fn = compile(inputs, {cost}, copts);
  const Function grad_fn =
      compile(inputs, grad(cost, inputs, GradOptions{DisconnectedPolicy::zero}), copts);
  const std::vector<Tensor> analytic = grad_fn(points);

  std::vector<Tensor> moved;
  for (const Tensor& p : points) moved.push_back(p.clone());
  const double base = cost_fn(moved).front().item_double();

  for (std::size_t i = 0; i < points.size(); ++i) {
    const Tensor a = analytic[i].contiguous();
    double worst_scaled = -1.0;
    std::int64_t worst_index = 0;
    double worst_abs = 0, worst_rel = 0, worst_a = 0, worst_n = 0;
    for (std::int64_t j = 0; j < moved[i].numel(); ++j) {
      const double original = element(moved[i], j);
      set_element(moved[i], j, original + eps);
      // The step actually taken, after rounding to the input's precision.
      const double step = element(moved[i], j) - original;
      const double shifted = cost_fn(moved).front().item_double();
      set_element(moved[i], j, original);
      const double numeric = step != 0.0 ? (shifted - base) / step : 0.0;
      const double analytic_value = element(a, j);
      const double abs_err = std::abs(analytic_value - numeric);
      const double denom = std::abs(analytic_value) + std::abs(numeric);
      const double rel_err = denom > 1e-8 ? abs_err / denom : abs_err / 1e-8;
      const double scaled = std::min(abs_err / abs_tol, rel_err / rel_tol);
      if (std::isnan(abs_err) || scaled > worst_scaled) {
        worst_scaled = std::isnan(abs_err) ? INFINITY : scaled;
        worst_index = j;
        worst_abs = abs_err;
        worst_rel = rel_err;
        worst_a = analytic_value;
        worst_n = numeric;
      }
    }
    if (worst_scaled > 1.0) {
      throw GradientError(fmt::format(
          "verify_grad: the gradient with respect to input {} (shape {}) disagrees with finite "
          "differences at element {}: symbolic {:.10g}, numeric {:.10g} (absolute error {:.3g} > "
          "{:.3g} and relative error {:.3g} > {:.3g}; eps {:.3g})",
          i, shape_str(points[i].shape()), worst_index, worst_a, worst_n, worst_abs, abs_tol,
          worst_rel, rel_tol, eps));
    }
  }
}

}  // namespace convgraph
