// Which op each flag combination produces on the GPU, and that the lowered functions compute what
// the host computes. Tagged [cuda]: skipped (visibly) without a GPU.
#include <fmt/format.h>

#include <algorithm>

#include "convgraph/optimizer/conv_registry.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

struct Problem {
  Variable x = tensor("x", DType::float32, {2, 4, 9, 9});
  Variable w;
  Variable y, gx, gw;
  explicit Problem(const ConvOptions& options, const Shape& filter_shape = {6, 4, 3, 3}) {
    w = tensor("w", DType::float32, StaticShape(filter_shape.begin(), filter_shape.end()));
    y = conv2d(x, w, options);
    const auto grads = grad(sum(y * y), {x, w});
    gx = grads[0];
    gw = grads[1];
  }
  std::vector<Variable> inputs() const { return {x, w}; }
  std::vector<Variable> outputs() const { return {y, gx, gw}; }
};

Function compile_with(const Problem& p, const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(p.inputs(), p.outputs(), options);
}

// The concrete convolution ops of F's graph, sorted.
std::vector<std::string> conv_ops(const Function& f) {
  std::vector<std::string> names;
  for (Node* node : f.graph().toposort()) {
    const std::string name = node->op->name();
    if (name.find("Conv") != std::string::npos || name.find("Corr") != std::string::npos) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool all_start_with(const std::vector<std::string>& names, const std::string& prefix) {
  return !names.empty() && std::all_of(names.begin(), names.end(), [&](const std::string& n) {
    return n.rfind(prefix, 0) == 0;
  });
}

void check_against_host(const Problem& p, const Function& f, const Shape& filter_shape) {
  const std::vector<Tensor> args{random_tensor(DType::float32, {2, 4, 9, 9}, 5),
                                 random_tensor(DType::float32, filter_shape, 6)};
  const auto actual = f(args);
  const auto expected = compile_with(p, "device=cpu," + select_conv_impl_flags("corrmm"))(args);
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("output " << i);
    REQUIRE_ALLCLOSE(actual[i], expected[i], 1e-4, 1e-4);
  }
}

}  // namespace

TEST_CASE("gpu lowering: the default is cuDNN, in all three directions", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  const Function f = compile_with(p, "device=cuda");
  const auto names = conv_ops(f);
  INFO(fmt::format("{}", fmt::join(names, ", ")));
  CHECK(all_start_with(names, "GpuDnnConv"));
  CHECK(names.size() == 3);
  check_against_host(p, f, {6, 4, 3, 3});
}

TEST_CASE("gpu lowering: excluding conv_dnn gives GpuCorrMM", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  const Function f = compile_with(p, "device=cuda,optimizer_excluding=conv_dnn");
  const auto names = conv_ops(f);
  INFO(fmt::format("{}", fmt::join(names, ", ")));
  CHECK(all_start_with(names, "GpuCorrMM"));
  check_against_host(p, f, {6, 4, 3, 3});
}

TEST_CASE("gpu lowering: excluding conv_gemm still gives cuDNN; excluding both is an error",
          "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  CHECK(all_start_with(conv_ops(compile_with(p, "device=cuda,optimizer_excluding=conv_gemm")),
                       "GpuDnnConv"));
  try {
    compile_with(p, "device=cuda,optimizer_excluding=conv_gemm:conv_dnn");
    FAIL("excluding both conv_dnn and conv_gemm must fail");
  } catch (const UnsupportedError& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find("conv_dnn") != std::string::npos);
    CHECK(message.find("conv_gemm") != std::string::npos);
  }
}

TEST_CASE("gpu lowering: asymmetric padding and unshared kernels go to GpuCorrMM", "[cuda]") {
  testing::require_gpu_or_skip();
  ConvOptions asymmetric;
  asymmetric.border_mode = BorderMode::pairs({{1, 2}, {0, 1}});
  const Problem pa(asymmetric);
  const Function fa = compile_with(pa, "device=cuda");
  CHECK(all_start_with(conv_ops(fa), "GpuCorrMM"));
  check_against_host(pa, fa, {6, 4, 3, 3});

  ConvOptions unshared;
  unshared.unshared = true;
  const Problem pu(unshared, {6, 7, 7, 4, 3, 3});
  const Function fu = compile_with(pu, "device=cuda");
  CHECK(all_start_with(conv_ops(fu), "GpuCorrMM"));
  check_against_host(pu, fu, {6, 7, 7, 4, 3, 3});
}

TEST_CASE("gpu lowering: the meta-optimizer picks a GPU implementation", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  const Function f = compile_with(
      p, "device=cuda,optimizer_including=conv_meta,metaopt.verbose=0,autotune.cache=off");
  CHECK(all_start_with(conv_ops(f), "Gpu"));
  check_against_host(p, f, {6, 4, 3, 3});
}

TEST_CASE("gpu lowering: outputs and inputs on the device on request", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  CompileOptions options;
  options.flags = "device=cuda";
  options.inputs_on_device = true;
  options.outputs_on_device = true;
  const Function f = compile(p.inputs(), p.outputs(), options);
  const Tensor x = random_tensor(DType::float32, {2, 4, 9, 9}, 5);
  const Tensor w = random_tensor(DType::float32, {6, 4, 3, 3}, 6);
  // Host tensors are refused: the function was compiled for device inputs.
  REQUIRE_THROWS_AS(f({x, w}), ValueError);
  const auto on_device = f({x.to(Device::cuda()), w.to(Device::cuda())});
  const auto expected = compile_with(p, "device=cpu," + select_conv_impl_flags("corrmm"))({x, w});
  for (std::size_t i = 0; i < on_device.size(); ++i) {
    CHECK(on_device[i].device() == Device::cuda());
    REQUIRE_ALLCLOSE(on_device[i].to(Device::cpu()), expected[i], 1e-4, 1e-4);
  }
}

TEST_CASE("gpu lowering: DebugMode checks GPU nodes against the host reference", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  const Function f = compile_with(p, "device=cuda,mode=DebugMode");
  check_against_host(p, f, {6, 4, 3, 3});
}

TEST_CASE("gpu lowering: the profile names the GPU implementations", "[cuda]") {
  testing::require_gpu_or_skip();
  const Problem p(ConvOptions{});
  Function f = compile_with(p, "device=cuda,profile=True");
  check_against_host(p, f, {6, 4, 3, 3});
  const std::string table = f.profile().table();
  INFO(table);
  CHECK(table.find("GpuDnnConv") != std::string::npos);
  CHECK(table.find("GpuFromHost") != std::string::npos);
}
