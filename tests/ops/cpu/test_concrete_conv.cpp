// What the common base of concrete convolutions (ops/concrete_conv.hpp) owns for every family:
// the checks of each implementation's declared requirements, at build time and at run time, in one
// wording (the op, the input, what it got, what the implementation takes), and the per-direction
// wrapper of a call (input count, undefined and mismatched tensors). The CPU families run here;
// the GPU families' own tests (tests/ops/gpu) check their refusals on a GPU machine.
#include <fmt/format.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/ops/conv/reference_conv_op.hpp"
#include "convgraph/ops/cpu/corrmm.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"
#include "convgraph/ops/kernel_op.hpp"
#include "convgraph/ops/tensor/transfer.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;

namespace {

constexpr DType f32 = DType::float32;

// The CPU implementations of DIRECTION with parameters P: CorrMM, the reference, and oneDNN where
// it is built in.
std::vector<std::shared_ptr<const ConcreteConv>> cpu_ops(ConvDirection direction,
                                                         const ConvParams& p) {
  std::vector<std::shared_ptr<const ConcreteConv>> ops{
      std::make_shared<const CorrMM>(direction, p),
      std::make_shared<const ReferenceConv>(direction, p)};
#if CONVGRAPH_HAVE_ONEDNN
  ops.push_back(std::make_shared<const OneDnnConv>(direction, p));
#endif
  return ops;
}

}  // namespace

TEST_CASE("Concrete convolutions declare what they take", "[concrete_conv]") {
  const ConvParams p = make_conv_params(2, "valid");
  const ConcreteConvRequirements corr = CorrMM(ConvDirection::forward, p).requirements();
  CHECK(corr.device == DeviceKind::cpu);
  CHECK(corr.dtypes == std::vector<DType>{DType::float32, DType::float64});
  CHECK(corr.unshared);
  CHECK(corr.asymmetric_padding);
  const ConcreteConvRequirements ref = ReferenceConv(ConvDirection::forward, p).requirements();
  CHECK(ref.accepts(DType::float16));
  CHECK_FALSE(ref.accepts(DType::int32));
#if CONVGRAPH_HAVE_ONEDNN
  const ConcreteConvRequirements dnn = OneDnnConv(ConvDirection::forward, p).requirements();
  CHECK(dnn.dtypes == std::vector<DType>{DType::float32});
  CHECK_FALSE(dnn.unshared);
#endif
}

TEST_CASE("Concrete convolutions refuse inputs at build time in one wording", "[concrete_conv]") {
  const ConvParams p = make_conv_params(2, "valid");
  for (const auto& op : cpu_ops(ConvDirection::forward, p)) {
    INFO(op->str());
    const ConcreteConvRequirements r = op->requirements();
    // A device the implementation does not run on: the op, the input, where it is, where it runs.
    const Variable xc = transfer(tensor4("xc", f32), Device::cuda(0));
    const Variable wc = transfer(tensor4("wc", f32), Device::cuda(0));
    std::string m = message_of<UnsupportedError>([&] { apply(op, {xc, wc}); });
    CHECK(contains(m, op->str() + ": input "));
    CHECK(contains(m, "is on cuda0; " + r.library + " convolutions run on the cpu"));
    // A non-floating dtype is a TypeError, whatever the implementation.
    m = message_of<TypeError>([&] {
      apply(op, {tensor4("xi", DType::int32), tensor4("wi", DType::int32)});
    });
    INFO(m);
    CHECK(contains(
        m, op->str() + ": input 'xi' has dtype int32; " + r.library + " convolutions support "));
  }
  // A floating dtype the implementation does not take is an UnsupportedError with the advice.
  const auto corr = std::make_shared<const CorrMM>(ConvDirection::forward, p);
  const std::string m = message_of<UnsupportedError>([&] {
    apply(corr, {tensor4("xh", DType::float16), tensor4("wh", DType::float16)});
  });
  INFO(m);
  CHECK(contains(m, corr->str() + ": input 'xh' has dtype float16; CorrMM convolutions support "
                                  "float32 and float64 only; cast float16 data to float32"));
#if CONVGRAPH_HAVE_ONEDNN
  const ConvParams u = make_conv_params(2, "valid", {1, 1}, true, {1, 1}, 1, true);
  const auto dnn = std::make_shared<const OneDnnConv>(ConvDirection::forward, u);
  const std::string mu = message_of<UnsupportedError>([&] {
    apply(dnn, {tensor("x", f32, {2, 3, 5, 5}), tensor("w", f32, {4, 3, 3, 3, 3, 3})});
  });
  CHECK(contains(mu, dnn->str() + ": oneDNN convolutions do not support unshared (locally "
                                  "connected) kernels; use CorrMM (conv_gemm)"));
#endif
}

TEST_CASE("Concrete convolutions wrap every call of every direction the same way",
          "[concrete_conv]") {
  const ConvParams p = make_conv_params(2, "valid");
  const Tensor image = random_tensor(f32, {2, 3, 5, 5}, 1);
  const Tensor kernel = random_tensor(f32, {4, 3, 3, 3}, 2);
  const Tensor top = random_tensor(f32, {2, 4, 3, 3}, 3);
  const Tensor shape = Tensor::from_vector<std::int64_t>({5, 5}, {2});
  std::vector<Tensor> out(1);
  for (ConvDirection d :
       {ConvDirection::forward, ConvDirection::grad_inputs, ConvDirection::grad_weights}) {
    for (const auto& op : cpu_ops(d, p)) {
      INFO(op->str());
      const ConcreteConvRequirements r = op->requirements();
      const bool forward = d == ConvDirection::forward;
      const Tensor& a = d == ConvDirection::grad_inputs ? kernel : image;
      const Tensor& b = forward ? kernel : top;
      const Tensor spatial =
          d == ConvDirection::grad_weights ? Tensor::from_vector<std::int64_t>({3, 3}, {2}) : shape;
      std::vector<Tensor> inputs{a, b};
      if (!forward) inputs.push_back(spatial);
      // The right inputs run, through perform and through a kernel made without static shapes.
      op->perform(inputs, out);
      CHECK(out[0].defined());
      // The input count of the direction.
      std::vector<Tensor> missing(inputs.begin(), inputs.end() - 1);
      std::string m = message_of<ValueError>([&] { op->perform(missing, out); });
      CHECK(contains(m, fmt::format("{}: {} inputs given, expected {}", op->str(), missing.size(),
                                    inputs.size())));
      // Undefined tensors, mixed and non-floating dtypes: the tensor named by its role.
      std::vector<Tensor> bad = inputs;
      bad[1] = Tensor();
      m = message_of<ValueError>([&] { op->perform(bad, out); });
      CHECK(contains(
          m, forward ? "the kernel is an undefined tensor" : "the topgrad is an undefined tensor"));
      bad = inputs;
      bad[1] = b.cast(DType::float64);
      CHECK_THROWS_AS(op->perform(bad, out), TypeError);
      bad = inputs;
      bad[0] = a.cast(DType::int32);
      bad[1] = b.cast(DType::int32);
      m = message_of<TypeError>([&] { op->perform(bad, out); });
      CHECK(contains(m, "has dtype int32; " + r.library + " convolutions support "));
    }
  }
#if CONVGRAPH_HAVE_ONEDNN
  // A floating dtype the implementation does not take, at run time.
  const OneDnnConv dnn(ConvDirection::forward, p);
  const std::string m = message_of<UnsupportedError>([&] {
    dnn.perform({image.cast(DType::float64), kernel.cast(DType::float64)}, out);
  });
  CHECK(contains(m, dnn.str() + ": the image has dtype float64; oneDNN convolutions support "
                                "float32 only; use CorrMM (conv_gemm)"));
#endif
}
