#include "support/test_util.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>

#include "support/catch.hpp"

namespace convgraph::testing {

Tensor random_tensor(DType dtype, const Shape& shape, std::uint64_t seed, double low, double high) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(low, high);
  const std::int64_t n = shape_numel(shape);
  std::vector<double> values(static_cast<std::size_t>(n));
  for (double& v : values) {
    v = uniform(rng);
    if (is_integer(dtype)) v = std::floor(v);
    if (is_bool(dtype)) v = (rng() & 1u) ? 1.0 : 0.0;
  }
  return Tensor::from_vector<double>(values, shape).cast(dtype);
}

std::size_t count_ops(const Function& f, const std::string& name) {
  std::size_t n = 0;
  for (Node* node : f.graph().toposort()) n += node->op->name() == name ? 1 : 0;
  return n;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    throw ShapeError(fmt::format("max_abs_diff: shapes {} and {} differ", shape_str(a.shape()),
                                 shape_str(b.shape())));
  }
  const auto va = a.to_vector<double>();
  const auto vb = b.to_vector<double>();
  double worst = 0.0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    const double d = std::abs(va[i] - vb[i]);
    if (std::isnan(d) && !(std::isnan(va[i]) && std::isnan(vb[i]))) return INFINITY;
    if (d > worst) worst = d;
  }
  return worst;
}

std::string allclose_report(const Tensor& actual, const Tensor& expected, double rtol,
                            double atol) {
  if (!actual.defined() || !expected.defined()) return "undefined tensor";
  if (actual.dtype() != expected.dtype()) {
    return fmt::format("dtype {} but expected {}", dtype_name(actual.dtype()),
                       dtype_name(expected.dtype()));
  }
  if (actual.shape() != expected.shape()) {
    return fmt::format("shape {} but expected {}", shape_str(actual.shape()),
                       shape_str(expected.shape()));
  }
  const auto va = actual.to_vector<double>();
  const auto vb = expected.to_vector<double>();
  std::size_t bad = 0;
  std::size_t worst_index = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    const bool both_nan = std::isnan(va[i]) && std::isnan(vb[i]);
    const bool same_inf = std::isinf(va[i]) && va[i] == vb[i];
    if (both_nan || same_inf) continue;
    const double diff = std::abs(va[i] - vb[i]);
    const double limit = atol + rtol * std::abs(vb[i]);
    if (!(diff <= limit)) {
      ++bad;
      const double excess = std::isnan(diff) ? INFINITY : diff - limit;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst_index = i;
      }
    }
  }
  if (bad == 0) return "";
  return fmt::format(
      "{} of {} elements differ (rtol {:g}, atol {:g}); worst at flat index {}: actual {:.10g}, "
      "expected {:.10g}",
      bad, va.size(), rtol, atol, worst_index, va[worst_index], vb[worst_index]);
}

double default_tolerance(DType dtype) {
  switch (dtype) {
    case DType::float64:
      return 1e-10;
    case DType::float32:
      return 1e-5;
    case DType::float16:
      return 1e-2;
    default:
      return 0.0;
  }
}

std::vector<Tensor> run_graph(const std::vector<Variable>& inputs,
                              const std::vector<Variable>& outputs, const std::vector<Tensor>& args,
                              const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(inputs, outputs, options)(args);
}

Tensor eval(const Variable& output, const std::vector<Variable>& inputs,
            const std::vector<Tensor>& args, const std::string& flags) {
  return run_graph(inputs, {output}, args, flags).front();
}

std::string check_rop(const std::function<Variable(const std::vector<Variable>&)>& fn,
                      const std::vector<Tensor>& points, double tolerance, std::uint64_t seed) {
  std::vector<Variable> inputs, directions;
  std::vector<Tensor> v;
  for (std::size_t i = 0; i < points.size(); ++i) {
    inputs.push_back(make_input(TensorType::of(points[i]), fmt::format("x{}", i)));
    directions.push_back(make_input(TensorType::of(points[i]), fmt::format("v{}", i)));
    v.push_back(random_tensor(points[i].dtype(), points[i].shape(), seed + i));
  }
  const Variable out = fn(inputs);
  const Variable r = Rop({out}, inputs, directions).front();
  std::vector<Variable> all_inputs = inputs;
  all_inputs.insert(all_inputs.end(), directions.begin(), directions.end());
  std::vector<Tensor> all_args = points;
  all_args.insert(all_args.end(), v.begin(), v.end());
  const Tensor symbolic = run_graph(all_inputs, {r}, all_args).front();

  const Function f = compile(inputs, {out});
  const double h = 1e-6;
  auto shifted = [&](double sign) {
    std::vector<Tensor> args;
    for (std::size_t i = 0; i < points.size(); ++i) {
      const auto p = points[i].to_vector<double>();
      const auto d = v[i].to_vector<double>();
      std::vector<double> moved(p.size());
      for (std::size_t k = 0; k < p.size(); ++k) moved[k] = p[k] + sign * h * d[k];
      args.push_back(Tensor::from_vector<double>(moved, points[i].shape()).cast(points[i].dtype()));
    }
    return f(args).front().to_vector<double>();
  };
  const auto plus = shifted(1.0);
  const auto minus = shifted(-1.0);
  const auto sym = symbolic.to_vector<double>();
  if (sym.size() != plus.size()) {
    return fmt::format("Rop has {} elements but the function output has {}", sym.size(),
                       plus.size());
  }
  for (std::size_t k = 0; k < sym.size(); ++k) {
    const double numeric = (plus[k] - minus[k]) / (2 * h);
    if (std::abs(numeric - sym[k]) > tolerance * (1.0 + std::abs(numeric))) {
      return fmt::format("Rop element {}: symbolic {:.10g}, finite differences {:.10g}", k, sym[k],
                         numeric);
    }
  }
  return "";
}

void skip_test(const std::string& why) {
  WARN(kSkipMarker << why);
}

void require_gpu_or_skip() {
  std::string why;
  if (device_available(Device::cuda(0), &why)) return;
  std::cout << "SKIPPED: this test needs a CUDA GPU: " << why << std::endl;
  std::_Exit(77);
}

}  // namespace convgraph::testing
