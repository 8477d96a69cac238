// The meta-optimizer on a CUDA device: the GPU candidates
// are timed, the winner replaces the node, choices persist in the autotune cache for a second
// process. Tagged [cuda]: skipped (visibly) where no GPU can be used.
#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

std::string temp_path(const std::string& what) {
  static std::mt19937_64 rng(std::random_device{}());
  return (std::filesystem::temp_directory_path() /
          fmt::format("convgraph_gpu_meta_{}_{:x}", what, rng()))
      .string();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct MetaGraph {
  Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  std::vector<Variable> inputs;
  std::vector<Variable> outputs;
  MetaGraph() {
    // Keep identical to tests/optimizer/meta_second_process.cpp.
    const Variable y = conv2d(x, w);
    const auto grads = grad(sum(y * y), {x, w});
    inputs = {x, w};
    outputs = {y, grads[0], grads[1]};
  }
};

Function compile_flags(const MetaGraph& g, const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(g.inputs, g.outputs, options);
}

std::vector<std::string> conv_ops(const Function& f) {
  std::vector<std::string> names;
  for (Node* node : f.graph().toposort()) {
    const std::string name = node->op->name();
    if (name.find("Conv") != std::string::npos || name.find("Corr") != std::string::npos) {
      names.push_back(name);
    }
  }
  return names;
}

void check_values(const MetaGraph& g, const Function& f) {
  const std::vector<Tensor> args{random_tensor(DType::float32, {2, 3, 10, 10}, 1),
                                 random_tensor(DType::float32, {4, 3, 3, 3}, 2)};
  const auto actual = f(args);
  const auto expected = compile_flags(g, "device=cpu," + select_conv_impl_flags("corrmm"))(args);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    REQUIRE(actual[i].device().is_cpu());
    REQUIRE_ALLCLOSE(actual[i], expected[i], 1e-4, 1e-4);
  }
}

}  // namespace

TEST_CASE("gpu meta: every convolution gets a GPU implementation chosen by timing", "[cuda]") {
  testing::require_gpu_or_skip();
  const MetaGraph g;
  const std::string cache = temp_path("cache");
  reset_conv_meta_stats();
  const Function f =
      compile_flags(g, fmt::format("device=cuda,optimizer_including=conv_meta,metaopt.verbose=0,"
                                   "autotune.cache_path={}",
                                   cache));
  const ConvMetaStats stats = conv_meta_stats();
  CHECK(stats.nodes_timed == 3);
  CHECK(stats.nodes_replaced == 3);
  CHECK(stats.candidates_timed >= 6);  // at least cuDNN and GpuCorrMM for each
  for (const std::string& name : conv_ops(f)) {
    INFO(name);
    CHECK(name.rfind("Gpu", 0) == 0);
  }
  check_values(g, f);
  std::filesystem::remove(cache);
}

TEST_CASE("gpu meta: metaopt.optimizer_excluding=conv_dnn leaves only GpuCorrMM candidates",
          "[cuda]") {
  testing::require_gpu_or_skip();
  const MetaGraph g;
  const Function f = compile_flags(
      g,
      "device=cuda,optimizer_including=conv_meta,metaopt.verbose=0,autotune.cache=off,"
      "metaopt.optimizer_excluding=conv_dnn");
  const auto names = conv_ops(f);
  REQUIRE(names.size() >= 3);
  for (const std::string& name : names) {
    INFO(name);
    CHECK(name.rfind("GpuCorr", 0) == 0);
  }
  check_values(g, f);
}

TEST_CASE("gpu meta: a second process on the same GPU times nothing again", "[cuda]") {
  testing::require_gpu_or_skip();
  const std::string cache = temp_path("shared");
  const std::string out = temp_path("out");
  auto run = [&]() {
    const std::string command =
        fmt::format("CONVGRAPH_FLAGS='device=cuda,autotune.cache_path={}' '{}' >'{}' 2>&1", cache,
                    CONVGRAPH_META_SECOND_PROCESS, out);
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  // The first process times (exit 1) and says so on stderr, one line per convolution.
  const int first = run();
  const std::string first_output = read_text(out);
  INFO(first_output);
  REQUIRE(first == 1);
  CHECK(first_output.find("winner") != std::string::npos);
  // The second finds every choice in the file (exit 0).
  const int second = run();
  const std::string second_output = read_text(out);
  INFO(second_output);
  REQUIRE(second == 0);
  CHECK(second_output.find("timed 0 candidates") != std::string::npos);
  std::filesystem::remove(cache);
  std::filesystem::remove(out);
}
