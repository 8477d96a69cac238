// The nodes oneDNN's prefers hook (onednn_not_preferred) leaves to CorrMM in the default lowering:
// the weight gradients of small 1x1 layers; with AVX-512, those of wide narrowing 1x1 layers;
// without AVX-512, the input gradients of wide or small 1x1 layers and the weight gradients of
// stride-2 3x3 layers; stride-1 3x3 depthwise convolutions of wide images. What the lowering then
// builds, its results against the reference, and where oneDNN keeps the nodes.
#include "convgraph/build_config.hpp"
#include "support/catch.hpp"

#if CONVGRAPH_HAVE_ONEDNN

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/autodiff/gradient.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/planner/compile.hpp"
#include "support/conv_checks.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::count_ops;
using convgraph::testing::random_tensor;
using convgraph::testing::require_close_f32;

namespace {

const DType f32 = DType::float32;

Tensor twice(const Tensor& t) {
  std::vector<float> values = t.to_vector<float>();
  for (float& v : values) v *= 2.0f;
  return Tensor::from_vector(values, t.shape());
}

// The prefers hook on the node running OP in the graph of OUTPUT, under the global flags plus
// FLAGS, told whether oneDNN runs AVX512.
std::optional<std::string> hook_on(const std::vector<Variable>& inputs, const Variable& output,
                                   const std::string& op, const std::string& flags, bool avx512) {
  const FunctionGraph graph(inputs, {output});
  Node* node = nullptr;
  for (Node* n : graph.toposort()) {
    if (n->op->name() == op) node = n;
  }
  REQUIRE(node != nullptr);
  Config config = global_config();
  if (!flags.empty()) config.apply(flags);
  return onednn_not_preferred(ConvSignature::of(*node), config, avx512);
}

// The hook on the weight gradient (WEIGHTS) or the input gradient of a KSIZE x KSIZE convolution of
// CHANNELS -> FILTERS, unpadded, on 8 SIZE x SIZE images at STRIDE, under FLAGS, told AVX512.
std::optional<std::string> gradient_hook(bool weights, std::int64_t channels, std::int64_t filters,
                                         std::int64_t size, std::int64_t stride, std::int64_t ksize,
                                         bool avx512, const std::string& flags) {
  const Variable x = tensor("x", f32, {8, channels, size, size});
  const Variable w = tensor("w", f32, {filters, channels, ksize, ksize});
  const ConvParams p = make_conv_params(2, "valid", {stride, stride}, true, {1, 1}, 1);
  const Variable g = grad(sum(abstract_conv(p, x, w)), std::vector<Variable>{weights ? w : x})[0];
  return hook_on({x, w}, g, weights ? "AbstractConv2d_gradWeights" : "AbstractConv2d_gradInputs",
                 flags, avx512);
}

}  // namespace

TEST_CASE("oneDNN leaves the weight gradients of small 1x1 layers to CorrMM", "[onednn]") {
  // A 1x1 convolution of CHANNELS -> FILTERS channels at STRIDE on a SIZE x SIZE image, its
  // gradients, and the ops the default lowering (plus FLAGS) gives it.
  struct Lowered {
    Function f;
    std::vector<Variable> outputs;
  };
  auto lower = [](std::int64_t size, std::int64_t stride, const std::string& flags) {
    const Variable x = tensor("x", f32, {2, 16, size, size});
    const Variable w = tensor("w", f32, {24, 16, 1, 1});
    const ConvParams p = make_conv_params(2, "valid", {stride, stride}, true, {1, 1}, 1);
    const Variable y = abstract_conv(p, x, w);
    const std::vector<Variable> g = grad(sum(y * y), {x, w});
    CompileOptions options;
    options.flags = flags;
    return Lowered{compile({x, w}, {y, g[0], g[1]}, options), {y, g[0], g[1]}};
  };
  // 7x7 output positions: the weight gradient goes to CorrMM (stride 1, and stride 2 from
  // 14x14); the forward stays with oneDNN, the input gradient too where oneDNN runs AVX-512
  // (without it, over so few positions, the input gradient goes to CorrMM as well).
  const bool avx512 = onednn_runs_avx512();
  for (const auto& [size, stride] : {std::pair<std::int64_t, std::int64_t>{7, 1}, {14, 2}}) {
    const Lowered l = lower(size, stride, "");
    INFO("size " << size << ", stride " << stride << ", AVX-512 " << avx512 << "\n" << l.f.str());
    CHECK(count_ops(l.f, "CorrMM_gradWeights") == 1);
    CHECK(count_ops(l.f, "OneDnnConv2d_gradWeights") == 0);
    CHECK(count_ops(l.f, "OneDnnConv2d") == 1);
    CHECK(count_ops(l.f, "OneDnnConv2d_gradInputs") == (avx512 ? 1 : 0));
    CHECK(count_ops(l.f, "CorrMM_gradInputs") == (avx512 ? 0 : 1));
    // Its results are the reference's.
    const Tensor image = random_tensor(f32, {2, 16, size, size}, 31);
    const Tensor kernel = random_tensor(f32, {24, 16, 1, 1}, 32);
    const std::vector<Tensor> out = l.f({image, kernel});
    const ConvParams p = make_conv_params(2, "valid", {stride, stride}, true, {1, 1}, 1);
    const Tensor top = twice(reference_conv_forward(p, image, kernel));
    require_close_f32(out[2], reference_conv_grad_weights(p, image, top, {1, 1}), 100);
  }
  // More positions, or a larger kernel: oneDNN keeps it (the input gradient too: 16 channels).
  CHECK(count_ops(lower(8, 1, "").f, "OneDnnConv2d_gradWeights") == 1);
  CHECK(count_ops(lower(8, 1, "").f, "OneDnnConv2d_gradInputs") == 1);
  // CorrMM excluded: oneDNN takes it rather than nobody.
  CHECK(count_ops(lower(7, 1, "optimizer_excluding=conv_gemm").f, "OneDnnConv2d_gradWeights") == 1);
  CHECK(count_ops(lower(7, 1, "optimizer_excluding=corrmm").f, "OneDnnConv2d_gradWeights") == 1);
  CHECK(count_ops(lower(7, 1, "optimizer_excluding=corrmm").f, "OneDnnConv2d_gradInputs") == 1);
  // The hook says why.
  const Variable x = tensor("x", f32, {2, 16, 7, 7});
  const Variable w = tensor("w", f32, {24, 16, 1, 1});
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const Variable gw = grad(sum(abstract_conv(p, x, w)), std::vector<Variable>{w})[0];
  const FunctionGraph graph({x, w}, {gw});
  Node* node = nullptr;
  for (Node* n : graph.toposort()) {
    if (n->op->name() == "AbstractConv2d_gradWeights") node = n;
  }
  REQUIRE(node != nullptr);
  const ConvSignature s = ConvSignature::of(*node);
  CHECK(contains(onednn_not_preferred(s, global_config()).value_or(""),
                 "1x1 weight gradient over 49 output positions"));
  Config no_corrmm = global_config();
  no_corrmm.apply("optimizer_excluding=conv_gemm");
  CHECK_FALSE(onednn_not_preferred(s, no_corrmm).has_value());
}

TEST_CASE(
    "Without AVX-512, oneDNN leaves the input gradients of wide or small 1x1 layers to CorrMM",
    "[onednn]") {
  // The hook on the input gradient, told whether oneDNN runs AVX-512 (gradient_hook).
  auto why = [](std::int64_t channels, std::int64_t filters, std::int64_t size, std::int64_t stride,
                std::int64_t ksize, bool avx512, const std::string& flags) {
    return gradient_hook(false, channels, filters, size, stride, ksize, avx512, flags);
  };
  // ResNet-50's layers that measured faster on CorrMM: 1024 channels at 14x14, the strided
  // 1024 -> 2048 one, 512 and 2048 channels at 7x7.
  CHECK(contains(why(1024, 256, 14, 1, 1, false, "").value_or(""),
                 "1x1 input gradient of 1024 channels over 196 output positions"));
  CHECK(why(1024, 2048, 14, 2, 1, false, "").has_value());
  CHECK(why(512, 2048, 7, 1, 1, false, "").has_value());
  CHECK(why(2048, 512, 7, 1, 1, false, "").has_value());
  // Fewer channels over more positions: oneDNN keeps them.
  CHECK_FALSE(why(256, 1024, 14, 1, 1, false, "").has_value());
  CHECK_FALSE(why(512, 1024, 28, 2, 1, false, "").has_value());
  CHECK_FALSE(why(1023, 256, 8, 1, 1, false, "").has_value());
  // AVX-512, a 3x3 kernel, or CorrMM excluded: oneDNN keeps every one.
  CHECK_FALSE(why(1024, 256, 14, 1, 1, true, "").has_value());
  CHECK_FALSE(why(2048, 512, 7, 1, 1, true, "").has_value());
  CHECK_FALSE(why(1024, 256, 14, 1, 3, false, "").has_value());
  CHECK_FALSE(why(1024, 256, 14, 1, 1, false, "optimizer_excluding=corrmm").has_value());
}

TEST_CASE("With AVX-512, oneDNN leaves the weight gradients of wide narrowing 1x1 layers to CorrMM",
          "[onednn]") {
  // The hook on the weight gradient, told whether oneDNN runs AVX-512 (gradient_hook).
  auto why = [](std::int64_t channels, std::int64_t filters, std::int64_t size, std::int64_t stride,
                std::int64_t ksize, bool avx512, const std::string& flags) {
    return gradient_hook(true, channels, filters, size, stride, ksize, avx512, flags);
  };
  // ResNet-50's layers that measured faster on CorrMM: as many or fewer filters than channels,
  // at least 28x28 output positions, stride 1.
  CHECK(contains(why(256, 64, 56, 1, 1, true, "").value_or(""),
                 "1x1 weight gradient of 256 -> 64 channels over 3136 output positions"));
  CHECK(why(64, 64, 56, 1, 1, true, "").has_value());
  CHECK(why(512, 128, 28, 1, 1, true, "").has_value());
  // Widening, fewer positions, strided, a 3x3 kernel, no AVX-512, or CorrMM excluded: oneDNN keeps
  // it.
  CHECK_FALSE(why(64, 256, 56, 1, 1, true, "").has_value());
  CHECK_FALSE(why(128, 512, 28, 1, 1, true, "").has_value());
  CHECK_FALSE(why(1024, 256, 14, 1, 1, true, "").has_value());
  CHECK_FALSE(why(512, 256, 27, 1, 1, true, "").has_value());
  CHECK_FALSE(why(512, 1024, 56, 2, 1, true, "").has_value());
  CHECK_FALSE(why(64, 64, 56, 1, 3, true, "").has_value());
  CHECK_FALSE(why(256, 64, 56, 1, 1, false, "").has_value());
  CHECK_FALSE(why(256, 64, 56, 1, 1, true, "optimizer_excluding=corrmm").has_value());

  // Through compile(): where oneDNN runs AVX-512 the weight gradient is CorrMM's, the forward and
  // input gradient stay with oneDNN; the results are the reference's.
  const Variable x = tensor("x", f32, {2, 24, 28, 28});
  const Variable w = tensor("w", f32, {16, 24, 1, 1});
  const ConvParams p = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1);
  const Variable y = abstract_conv(p, x, w);
  const std::vector<Variable> g = grad(sum(y * y), {x, w});
  const Function f = compile({x, w}, {y, g[0], g[1]}, CompileOptions{});
  const bool avx512 = onednn_runs_avx512();
  INFO("AVX-512 " << avx512 << "\n" << f.str());
  CHECK(count_ops(f, "CorrMM_gradWeights") == (avx512 ? 1 : 0));
  CHECK(count_ops(f, "OneDnnConv2d_gradWeights") == (avx512 ? 0 : 1));
  CHECK(count_ops(f, "OneDnnConv2d_gradInputs") == 1);
  CHECK(count_ops(f, "OneDnnConv2d") == 1);
  const Tensor image = random_tensor(f32, {2, 24, 28, 28}, 43);
  const Tensor kernel = random_tensor(f32, {16, 24, 1, 1}, 44);
  const std::vector<Tensor> out = f({image, kernel});
  const Tensor top = twice(reference_conv_forward(p, image, kernel));
  require_close_f32(out[2], reference_conv_grad_weights(p, image, top, {1, 1}), 2 * 28 * 28);
}

TEST_CASE(
    "oneDNN leaves the weight gradients of stride-2 3x3 layers to CorrMM (with AVX-512, small "
    "outputs only)",
    "[onednn]") {
  // The hook on the weight gradient of a KSIZE x KSIZE convolution at STRIDE (padding 1, DILATION,
  // GROUPS) on SIZE x SIZE images, told whether oneDNN runs AVX-512.
  auto why = [](std::int64_t ksize, std::int64_t stride, std::int64_t dilation, std::int64_t groups,
                bool avx512, const std::string& flags, std::int64_t size = 16) {
    const Variable x = tensor("x", f32, {2, 8, size, size});
    const Variable w = tensor("w", f32, {8, 8 / groups, ksize, ksize});
    const ConvParams p =
        make_conv_params(2, "half", {stride, stride}, true, {dilation, dilation}, groups);
    const Variable gw = grad(sum(abstract_conv(p, x, w)), std::vector<Variable>{w})[0];
    return hook_on({x, w}, gw, "AbstractConv2d_gradWeights", flags, avx512);
  };
  CHECK(contains(why(3, 2, 1, 1, false, "").value_or(""), "3x3 weight gradient at stride 2"));
  // With AVX-512: over at most 7x7 output positions only.
  CHECK(contains(why(3, 2, 1, 1, true, "", 14).value_or(""), "over 7x7 output positions"));
  CHECK(contains(why(3, 2, 1, 1, true, "", 13).value_or(""), "over 7x7 output positions"));
  // AVX-512 over 8x8, stride 1, another kernel size, a dilation, groups, or CorrMM excluded:
  // oneDNN keeps it.
  CHECK_FALSE(why(3, 2, 1, 1, true, "").has_value());
  CHECK_FALSE(why(3, 2, 1, 1, true, "optimizer_excluding=corrmm", 14).has_value());
  CHECK_FALSE(why(3, 1, 1, 1, false, "").has_value());
  CHECK_FALSE(why(5, 2, 1, 1, false, "").has_value());
  CHECK_FALSE(why(3, 2, 2, 1, false, "").has_value());
  CHECK_FALSE(why(3, 2, 1, 2, false, "").has_value());
  CHECK_FALSE(why(3, 2, 1, 1, false, "optimizer_excluding=conv_gemm").has_value());

  // Through compile(), on 8x8 outputs: where oneDNN has no AVX-512 the weight gradient is
  // CorrMM's, the forward and input gradient stay with oneDNN; the results are the reference's.
  const Variable x = tensor("x", f32, {2, 8, 15, 15});
  const Variable w = tensor("w", f32, {6, 8, 3, 3});
  const ConvParams p = make_conv_params(2, "half", {2, 2}, true, {1, 1}, 1);
  const Variable y = abstract_conv(p, x, w);
  const std::vector<Variable> g = grad(sum(y * y), {x, w});
  const Function f = compile({x, w}, {y, g[0], g[1]}, CompileOptions{});
  const bool avx512 = onednn_runs_avx512();
  INFO("AVX-512 " << avx512 << "\n" << f.str());
  CHECK(count_ops(f, "CorrMM_gradWeights") == (avx512 ? 0 : 1));
  CHECK(count_ops(f, "OneDnnConv2d_gradWeights") == (avx512 ? 1 : 0));
  CHECK(count_ops(f, "OneDnnConv2d_gradInputs") == 1);
  const Tensor image = random_tensor(f32, {2, 8, 15, 15}, 41);
  const Tensor kernel = random_tensor(f32, {6, 8, 3, 3}, 42);
  const std::vector<Tensor> out = f({image, kernel});
  const Tensor top = twice(reference_conv_forward(p, image, kernel));
  require_close_f32(out[2], reference_conv_grad_weights(p, image, top, {3, 3}), 2 * 8 * 8);
  // On 7x7 outputs CorrMM takes it everywhere.
  const Variable x7 = tensor("x7", f32, {2, 8, 13, 13});
  const Variable y7 = abstract_conv(p, x7, w);
  const Function f7 =
      compile({x7, w}, {grad(sum(y7 * y7), std::vector<Variable>{w})[0]}, CompileOptions{});
  CHECK(count_ops(f7, "CorrMM_gradWeights") == 1);
}

TEST_CASE("oneDNN leaves stride-1 3x3 depthwise convolutions of wide images to CorrMM",
          "[onednn][depthwise]") {
  // A depthwise convolution of 8 channels (MULTIPLIER filters each) of WIDTH columns with a
  // SIZE x SIZE kernel at STRIDE, its gradients, and the ops the default lowering gives them.
  auto lower = [](std::int64_t size, std::int64_t stride, std::int64_t multiplier,
                  const std::string& flags, std::int64_t width) {
    const Variable x = tensor("x", f32, {2, 8, 13, width});
    const Variable w = tensor("w", f32, {8 * multiplier, 1, size, size});
    const ConvParams p = make_conv_params(2, "half", {stride, stride}, true, {1, 1}, 8);
    const Variable y = abstract_conv(p, x, w);
    const std::vector<Variable> g = grad(sum(y * y), {x, w});
    CompileOptions options;
    options.flags = flags;
    return compile({x, w}, {y, g[0], g[1]}, options);
  };
  {
    // 3 x 3: every direction goes to CorrMM, with the reference's results.
    const Function f = lower(3, 1, 1, "", 30);
    INFO(f.str());
    CHECK(count_ops(f, "CorrMM") == 1);
    CHECK(count_ops(f, "CorrMM_gradInputs") == 1);
    CHECK(count_ops(f, "CorrMM_gradWeights") == 1);
    CHECK(count_ops(f, "OneDnnConv2d") == 0);
    CHECK(count_ops(f, "OneDnnConv2d_gradInputs") == 0);
    CHECK(count_ops(f, "OneDnnConv2d_gradWeights") == 0);
    const Tensor image = random_tensor(f32, {2, 8, 13, 30}, 41);
    const Tensor kernel = random_tensor(f32, {8, 1, 3, 3}, 42);
    const std::vector<Tensor> out = f({image, kernel});
    const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 8);
    const Tensor y = reference_conv_forward(p, image, kernel);
    const Tensor top = twice(y);
    require_close_f32(out[0], y, 10);
    require_close_f32(out[1], reference_conv_grad_inputs(p, kernel, top, {13, 30}), 10);
    require_close_f32(out[2], reference_conv_grad_weights(p, image, top, {3, 3}), 600);
  }
  // 5 x 5, stride 2, a channel multiplier of 2, rows narrower than 28, or CorrMM excluded: oneDNN
  // keeps all three.
  struct Kept {
    std::int64_t size, stride, multiplier, width;
    const char* flags;
  };
  for (const Kept& k :
       {Kept{5, 1, 1, 30, ""}, Kept{3, 2, 1, 30, ""}, Kept{3, 1, 2, 30, ""}, Kept{3, 1, 1, 27, ""},
        Kept{3, 1, 1, 30, "optimizer_excluding=conv_gemm"}}) {
    const Function f = lower(k.size, k.stride, k.multiplier, k.flags, k.width);
    INFO(f.str());
    CHECK(count_ops(f, "OneDnnConv2d") == 1);
    CHECK(count_ops(f, "OneDnnConv2d_gradInputs") == 1);
    CHECK(count_ops(f, "OneDnnConv2d_gradWeights") == 1);
  }
}

#else  // !CONVGRAPH_HAVE_ONEDNN

TEST_CASE("oneDNN's preferences (not built in: skipped)", "[onednn]") {
  SUCCEED("oneDNN is not built into this convgraph");
}

#endif
