// The helper of the cuDNN algorithm-cache test (test_cudnn_conv.cpp): compiles a small network on
// the GPU with runtime algorithm selection in every direction, the autotune cache file given by
// CONVGRAPH_FLAGS (autotune.cache_path=...), checks the values against the reference, and reports
// how many selections it had to make itself.
//
// Exit code: 0 when every algorithm came from the cache, 1 when it selected some itself, 2 on an
// error, 3 when the values are wrong, 77 when there is no GPU or no cuDNN.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "convgraph/convgraph.hpp"
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#endif

using namespace convgraph;

#if CONVGRAPH_HAVE_CUDNN
namespace {

Tensor random_tensor(const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> values(static_cast<std::size_t>(shape_numel(shape)));
  for (double& v : values) v = uniform(rng);
  return Tensor::from_vector<double>(values, shape).cast(DType::float32);
}

}  // namespace
#endif

int main() {
#if !CONVGRAPH_HAVE_CUDNN
  std::puts("cuDNN is not built into this convgraph");
  return 77;
#else
  try {
    std::string why;
    if (!device_available(Device::cuda(0), &why)) {
      fmt::print("no GPU: {}\n", why);
      return 77;
    }
    Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
    Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
    Variable y = conv2d(x, w, {.border_mode = "half"});
    auto grads = grad(sum(y * y), {x, w});
    const std::vector<Variable> inputs{x, w};
    const std::vector<Variable> outputs{y, grads[0], grads[1]};

    // Every kind of runtime selection; the cache file comes from CONVGRAPH_FLAGS.
    CompileOptions options;
    options.flags =
        "device=cuda,dnn.enabled=True,dnn.conv.algo_fwd=time_once,"
        "dnn.conv.algo_bwd_data=time_on_shape_change,dnn.conv.algo_bwd_filter=guess_once";
    Function f = compile(inputs, outputs, options);
    const std::vector<Tensor> args{random_tensor({2, 3, 10, 10}, 11),
                                   random_tensor({4, 3, 3, 3}, 12)};
    const CudnnAlgoStats before = cudnn_algo_stats();
    const auto actual = f(args);
    const CudnnAlgoStats after = cudnn_algo_stats();

    CompileOptions reference;
    reference.flags = "device=cpu," + select_conv_impl_flags("reference");
    const auto expected = compile(inputs, outputs, reference)(args);
    for (std::size_t i = 0; i < actual.size(); ++i) {
      const auto a = actual[i].to_vector<double>();
      const auto e = expected[i].to_vector<double>();
      for (std::size_t j = 0; j < a.size(); ++j) {
        if (!(std::abs(a[j] - e[j]) <= 1e-3 + 1e-3 * std::abs(e[j]))) {
          fmt::print("output {} element {}: {} instead of {}\n", i, j, a[j], e[j]);
          return 3;
        }
      }
    }
    const std::int64_t timed = after.timed - before.timed;
    const std::int64_t guessed = after.guessed - before.guessed;
    const std::int64_t hits = after.cache_hits - before.cache_hits;
    fmt::print("timed {}, guessed {}, from the cache {}\n", timed, guessed, hits);
    return timed == 0 && guessed == 0 && hits == 3 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cudnn_second_process: %s\n", e.what());
    return 2;
  }
#endif
}
