// The GPU concrete convolutions (GpuCorrMM, GpuDnnConv) through the common base of concrete
// convolutions (ops/concrete_conv.hpp): their declared requirements, and the refusals the base
// words from them when a node is built and when a call gets host tensors. None of this reaches a
// device, so it runs in every CUDA build, with or without a GPU; the computations are the [cuda]
// cases of test_gpu_corrmm.cpp and test_cudnn_conv.cpp.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

#if CONVGRAPH_HAVE_CUDA

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/gpu/gpu_corrmm.hpp"
#include "convgraph/ops/tensor/transfer.hpp"
#include "support/messages.hpp"
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#endif

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;

namespace {

constexpr DType f32 = DType::float32;

Variable on_gpu(const std::string& name, DType dtype) {
  return transfer(tensor4(name, dtype), Device::cuda(0));
}

#if CONVGRAPH_HAVE_CUDNN
CudnnConvOptions cudnn_options(ConvDirection direction) {
  CudnnConvOptions o;
  o.algo = direction == ConvDirection::forward ? "small" : "none";
  o.autotune_cache = "off";
  return o;
}
#endif

// The refusals every GPU family shares: host inputs at build time and at run time, non-floating
// dtypes, and the input count of the direction.
void check_shared_refusals(const std::shared_ptr<const ConcreteConv>& op) {
  INFO(op->str());
  const ConcreteConvRequirements r = op->requirements();
  CHECK(r.device == DeviceKind::cuda);
  std::string m = message_of<UnsupportedError>([&] {
    apply(op, {tensor4("xh", f32), tensor4("wh", f32)});
  });
  CHECK(contains(m, op->str() + ": input 'xh' is on cpu; " + r.library +
                        " convolutions run on a CUDA device"));
  m = message_of<TypeError>([&] {
    apply(op, {on_gpu("xi", DType::int32), on_gpu("wi", DType::int32)});
  });
  // (The inputs are the transfers' outputs, labelled by their node.)
  CHECK(m.starts_with(op->str() + ": input output 0 of GpuFromHost"));
  CHECK(contains(m, " has dtype int32; " + r.library +
                        " convolutions support float16, float32 and float64 only"));
  const Tensor image = random_tensor(f32, {2, 3, 5, 5}, 1);
  const Tensor kernel = random_tensor(f32, {4, 3, 3, 3}, 2);
  std::vector<Tensor> out(1);
  m = message_of<UnsupportedError>([&] { op->perform({image, kernel}, out); });
  CHECK(contains(
      m, op->str() + ": the image is on cpu; " + r.library + " convolutions run on a CUDA device"));
  m = message_of<ValueError>([&] { op->perform({image}, out); });
  CHECK(contains(m, op->str() + ": 1 inputs given, expected 2"));
}

}  // namespace

TEST_CASE("GPU concrete convolutions refuse host inputs and non-floating dtypes in one wording",
          "[concrete_conv]") {
  const ConvParams p = make_conv_params(2, "valid");
  check_shared_refusals(std::make_shared<const GpuCorrMM>(ConvDirection::forward, p));
  // GpuCorrMM takes every floating dtype and every parameter.
  const ConcreteConvRequirements corr = GpuCorrMM(ConvDirection::forward, p).requirements();
  CHECK(corr.unshared);
  CHECK(corr.asymmetric_padding);
  CHECK(corr.accepts(DType::float16));
#if CONVGRAPH_HAVE_CUDNN
  check_shared_refusals(std::make_shared<const GpuDnnConv>(ConvDirection::forward, p,
                                                           cudnn_options(ConvDirection::forward)));
#endif
}

#if CONVGRAPH_HAVE_CUDNN
TEST_CASE("cuDNN's requirements: shared kernels, symmetric padding, no float16 backward math",
          "[concrete_conv]") {
  const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  std::string m = message_of<UnsupportedError>(
      [&] { GpuDnnConv(ConvDirection::forward, u, cudnn_options(ConvDirection::forward)); });
  CHECK(contains(m,
                 "cuDNN convolutions do not support unshared (locally connected) kernels; use "
                 "GpuCorrMM (conv_gemm)"));
  const ConvParams asym = make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 2}}));
  m = message_of<UnsupportedError>(
      [&] { GpuDnnConv(ConvDirection::forward, asym, cudnn_options(ConvDirection::forward)); });
  CHECK(contains(m, "cuDNN convolutions pad both sides of an axis equally"));
  // The implementation's own rule, at build time: float16 data computed as_input in a backward
  // direction.
  CudnnConvOptions o = cudnn_options(ConvDirection::grad_weights);
  o.precision = "as_input";
  const auto op = std::make_shared<const GpuDnnConv>(ConvDirection::grad_weights,
                                                     make_conv_params(2, "valid"), o);
  const Variable shape = make_constant(Tensor::from_vector<std::int64_t>({3, 3}, {2}));
  m = message_of<TypeError>([&] {
    apply(op, {on_gpu("x", DType::float16), on_gpu("t", DType::float16), shape});
  });
  CHECK(contains(m, op->str() + ": float16 precision (dnn.conv.precision) is disabled for cuDNN "
                                "backward convolutions"));
  CHECK(contains(m, "(precision as_input on float16 data)"));
  // float32 data under the same options are taken.
  CHECK_NOTHROW(apply(op, {on_gpu("x", f32), on_gpu("t", f32), shape}));
}
#endif

#else  // !CONVGRAPH_HAVE_CUDA

TEST_CASE("GPU concrete convolutions refuse host inputs and non-floating dtypes in one wording",
          "[concrete_conv]") {
  convgraph::testing::skip_test("CUDA is not built into this convgraph");
}

#endif
