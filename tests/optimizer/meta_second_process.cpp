// The second process of conv_meta's cache tests (test_conv_meta.cpp, and test_gpu_meta.cpp with
// device=cuda): compiles the test's graph with conv_meta included, the autotune cache file and
// the device given by CONVGRAPH_FLAGS (autotune.cache_path=..., device=...), checks the values
// against the reference on the host, and reports how many candidates it timed.
//
// Exit code: 0 when it timed nothing (every choice came from the cache), 1 when it timed
// candidates, 2 on an error, 3 when the values are wrong.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "convgraph/convgraph.hpp"
#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"

using namespace convgraph;

namespace {

Tensor random_tensor(const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<double> values(static_cast<std::size_t>(shape_numel(shape)));
  for (double& v : values) v = uniform(rng);
  return Tensor::from_vector<double>(values, shape).cast(DType::float32);
}

// As compile_with_meta in test_conv_meta.cpp: conv_meta through the database once it is
// registered there, else run at its position by hand.
Function compile_with_meta(const std::vector<Variable>& inputs,
                           const std::vector<Variable>& outputs) {
  CompileOptions options;
  if (pass_database().find("conv_meta") != nullptr) {
    options.flags = "optimizer_including=conv_meta";
    return compile(inputs, outputs, options);
  }
  const Config& config = global_config();
  FunctionGraph graph(inputs, outputs);
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext ctx{config, &declines};
  bool meta_done = false;
  for (const PassEntry* pass : pass_database().select(config)) {
    if (!meta_done && pass->position > 10) {
      run_conv_meta(graph, ctx);
      meta_done = true;
    }
    pass->run(graph, ctx);
  }
  return compile(graph.inputs(), graph.outputs());
}

}  // namespace

int main() {
  try {
    // The graph of make_cache_graph() in test_conv_meta.cpp: keep the two identical.
    Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
    Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
    Variable y = conv2d(x, w);
    auto grads = grad(sum(y * y), {x, w});
    const std::vector<Variable> inputs{x, w};
    const std::vector<Variable> outputs{y, grads[0], grads[1]};

    Function f = compile_with_meta(inputs, outputs);
    const ConvMetaStats stats = conv_meta_stats();

    CompileOptions reference;
    // The reference runs on the host whatever device CONVGRAPH_FLAGS asks for.
    reference.flags = "device=cpu," + select_conv_impl_flags("reference");
    const std::vector<Tensor> args{random_tensor({2, 3, 10, 10}, 11),
                                   random_tensor({4, 3, 3, 3}, 12)};
    const auto actual = f(args);
    const auto expected = compile(inputs, outputs, reference)(args);
    for (std::size_t i = 0; i < actual.size(); ++i) {
      const auto a = actual[i].to_vector<double>();
      const auto e = expected[i].to_vector<double>();
      for (std::size_t j = 0; j < a.size(); ++j) {
        if (!(std::abs(a[j] - e[j]) <= 1e-4 + 1e-4 * std::abs(e[j]))) {
          fmt::print("output {} element {}: {} instead of {}\n", i, j, a[j], e[j]);
          return 3;
        }
      }
    }
    fmt::print("timed {} candidates for {} convolutions; {} taken from the autotune cache\n",
               stats.candidates_timed, stats.nodes_timed, stats.cache_hits);
    return stats.candidates_timed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meta_second_process: %s\n", e.what());
    return 2;
  }
}
