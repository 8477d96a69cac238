#include <algorithm>

#include "convgraph/build_config.hpp"
#include "support/catch.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* n : f.graph().toposort()) names.push_back(n->op->name());
  return names;
}

std::size_t count(const std::vector<std::string>& names, const std::string& what) {
  return static_cast<std::size_t>(std::count(names.begin(), names.end(), what));
}

std::string compile_error(const std::vector<Variable>& in, const std::vector<Variable>& out,
                          const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  try {
    compile(in, out, options);
  } catch (const UnsupportedError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("conv lowering: with conv_dnn excluded every direction becomes a CorrMM op",
          "[lowering]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable v = tensor("v", DType::float32, {2, 3, 5, 5, 5});
  Variable k = tensor("k", DType::float32, {4, 3, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half", .subsample = {2, 2}});
  Variable z = conv3d(v, k);
  Variable cost = sum(y * y) + sum(z * z);
  auto grads = grad(cost, {x, w, v, k});
  CompileOptions gemm_only;
  gemm_only.flags = "optimizer_excluding=conv_dnn";
  Function f = compile({x, w, v, k}, {cost, grads[0], grads[1], grads[2], grads[3]}, gemm_only);
  const auto names = op_names(f);
  for (const char* abstract :
       {"AbstractConv2d", "AbstractConv2d_gradInputs", "AbstractConv2d_gradWeights",
        "AbstractConv3d", "AbstractConv3d_gradInputs", "AbstractConv3d_gradWeights"}) {
    INFO(abstract);
    REQUIRE(count(names, abstract) == 0);
  }
  REQUIRE(count(names, "CorrMM") == 1);
  REQUIRE(count(names, "CorrMM_gradInputs") == 1);
  REQUIRE(count(names, "CorrMM_gradWeights") == 1);
  REQUIRE(count(names, "Corr3dMM") == 1);
  REQUIRE(count(names, "Corr3dMM_gradInputs") == 1);
  REQUIRE(count(names, "Corr3dMM_gradWeights") == 1);

  // The lowered function computes what the reference computes.
  CompileOptions reference;
  reference.flags = "optimizer_excluding=conv_gemm:conv_dnn:conv_check";
  Function slow = compile({x, w, v, k}, {cost, grads[0], grads[1], grads[2], grads[3]}, reference);
  REQUIRE(count(op_names(slow), "AbstractConv2d") == 1);
  const std::vector<Tensor> args = {testing::random_tensor(DType::float32, {2, 3, 9, 9}, 1),
                                    testing::random_tensor(DType::float32, {4, 3, 3, 3}, 2),
                                    testing::random_tensor(DType::float32, {2, 3, 5, 5, 5}, 3),
                                    testing::random_tensor(DType::float32, {4, 3, 3, 3, 3}, 4)};
  const auto fast_out = f(args);
  const auto slow_out = slow(args);
  for (std::size_t i = 0; i < fast_out.size(); ++i) {
    REQUIRE_ALLCLOSE(fast_out[i], slow_out[i], 1e-4, 1e-4);
  }
}

TEST_CASE("conv lowering: excluding every implementation is an error naming the node",
          "[lowering]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w);
  const std::string msg = compile_error({x, w}, {y}, "optimizer_excluding=conv_dnn:conv_gemm");
  INFO(msg);
  REQUIRE(msg.find("AbstractConv2d") != std::string::npos);
  REQUIRE(msg.find("no implementation") != std::string::npos);
  REQUIRE(msg.find("conv_dnn, conv_gemm") != std::string::npos);
  REQUIRE(msg.find("'x'") == std::string::npos);  // debugprint shows bare input names
  REQUIRE(msg.find("|x [id") != std::string::npos);
}

TEST_CASE("conv lowering: which implementation each flag combination produces", "[lowering]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  auto lowered = [&](const Variable& out, const std::vector<Variable>& in,
                     const std::string& flags) {
    CompileOptions options;
    options.flags = flags;
    return op_names(compile(in, {out}, options));
  };
#if CONVGRAPH_HAVE_ONEDNN
  // float32 on the CPU: oneDNN first (conv_dnn runs before conv_gemm); with AVX-512 its
  // Winograd takes this 9x9 3x3 layer (conv_dnn_winograd runs before both).
  const std::string onednn = onednn_runs_avx512() ? "OneDnnWinogradConv2d" : "OneDnnConv2d";
  REQUIRE(count(lowered(y, {x, w}, ""), onednn) == 1);
  REQUIRE(count(lowered(y, {x, w}, "optimizer_excluding=conv_gemm"), onednn) == 1);
  REQUIRE(count(lowered(y, {x, w}, "optimizer_excluding=winograd"), "OneDnnConv2d") == 1);
  // oneDNN declines float64 and unshared; CorrMM takes them.
  Variable xd = tensor("xd", DType::float64, {2, 3, 9, 9});
  Variable wd = tensor("wd", DType::float64, {4, 3, 3, 3});
  REQUIRE(count(lowered(conv2d(xd, wd), {xd, wd}, ""), "CorrMM") == 1);
  const std::string msg =
      compile_error({xd, wd}, {conv2d(xd, wd)}, "optimizer_excluding=conv_gemm");
  INFO(msg);
  REQUIRE(msg.find("onednn (conv_dnn)") != std::string::npos);
  REQUIRE(msg.find("float64") != std::string::npos);
#else
  REQUIRE(count(lowered(y, {x, w}, ""), "CorrMM") == 1);
  const std::string msg = compile_error({x, w}, {y}, "optimizer_excluding=conv_gemm");
  REQUIRE(msg.find("oneDNN is not built into this convgraph") != std::string::npos);
#endif
  REQUIRE(count(lowered(y, {x, w}, "optimizer_excluding=conv_dnn"), "CorrMM") == 1);
  REQUIRE_FALSE(compile_error({x, w}, {y}, "optimizer_excluding=conv_dnn:conv_gemm").empty());
}

TEST_CASE("conv lowering: float16 on the CPU is declined with the reason", "[lowering]") {
  Variable x = tensor("x", DType::float16, {1, 1, 5, 5});
  Variable w = tensor("w", DType::float16, {1, 1, 3, 3});
  const std::string msg = compile_error({x, w}, {conv2d(x, w)}, "");
  INFO(msg);
  REQUIRE(msg.find("corrmm (conv_gemm): dtype float16") != std::string::npos);
  REQUIRE(msg.find("Lowering tags excluded by optimizer_excluding: none") != std::string::npos);
}

TEST_CASE("conv lowering: the meta-optimizer respects the global exclusions", "[lowering]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable cost = sum(conv2d(x, w, {.border_mode = "half"}));
  auto grads = grad(cost, {x, w});
  CompileOptions options;
  options.flags = "optimizer_including=conv_meta,optimizer_excluding=conv_dnn,autotune.cache=off";
  const auto names = op_names(compile({x, w}, {cost, grads[0], grads[1]}, options));
  for (const auto& name : names) {
    INFO(name);
    REQUIRE(name.find("OneDnn") == std::string::npos);
    REQUIRE(name.find("AbstractConv") == std::string::npos);
  }
  // Each direction went to one of the implementations left: CorrMM or Winograd (3x3, stride 1),
  // whichever the timings chose.
  std::size_t lowered = 0;
  for (const char* name : {"CorrMM", "CorrMM_gradInputs", "CorrMM_gradWeights", "WinogradConv2d",
                           "WinogradConv2d_gradInputs", "WinogradConv2d_gradWeights"}) {
    lowered += count(names, name);
  }
  REQUIRE(lowered >= 3);
}
