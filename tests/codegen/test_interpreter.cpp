// The interpreter against the unfused kernels: bit for bit on random IR (reductions up to the
// order of additions), broadcasting, casts, strided inputs, odd and empty sizes.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "codegen/fused_reference.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using namespace convgraph::codegen;
using convgraph::testing::compare_tensors;
using convgraph::testing::contains;
using convgraph::testing::message_of;
using convgraph::testing::random_tensor;
using convgraph::testing::reference_outputs;

namespace {

std::shared_ptr<const FusedKernel> interpreter(const FusedIR& ir) {
  return compile_fused(ir, FusedBackend::interpreter);
}

}  // namespace

TEST_CASE("interpreter: interpreter equals the unfused kernels bit for bit on random IR",
          "[codegen]") {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    const auto c = convgraph::testing::random_fused_case(seed, false);
    INFO(c.ir.to_string() << "shape " << shape_str(c.shape));
    const auto expected = reference_outputs(c.ir, c.inputs, c.shape);
    std::vector<Tensor> outputs;
    for (std::size_t k = 0; k < expected.size(); ++k) {
      outputs.push_back(Tensor::empty(c.ir.output_dtype(k), c.shape));
    }
    interpreter(c.ir)->run(c.inputs, outputs, c.shape);
    for (std::size_t k = 0; k < expected.size(); ++k) {
      const std::string diff = compare_tensors(outputs[k], expected[k]);
      INFO("seed " << seed << " output " << k << ": " << diff);
      REQUIRE(diff.empty());
    }
  }
}

TEST_CASE("interpreter: interpreter reductions equal the Reduce op on random IR", "[codegen]") {
  for (std::uint64_t seed = 1000; seed < 1200; ++seed) {
    const auto c = convgraph::testing::random_fused_case(seed, true);
    INFO(c.ir.to_string() << "shape " << shape_str(c.shape));
    const auto expected = reference_outputs(c.ir, c.inputs, c.shape);
    std::vector<Tensor> outputs;
    for (std::size_t k = 0; k < expected.size(); ++k) {
      outputs.push_back(Tensor::empty(c.ir.output_dtype(k), expected[k].shape()));
    }
    interpreter(c.ir)->run(c.inputs, outputs, c.shape);
    for (std::size_t k = 0; k < expected.size(); ++k) {
      const std::string diff = compare_tensors(outputs[k], expected[k], 4, 1e-6);
      INFO("seed " << seed << " output " << k << ": " << diff);
      REQUIRE(diff.empty());
    }
  }
}

TEST_CASE("interpreter: bias + relu and the bias gradient over odd, large and empty shapes",
          "[codegen]") {
  for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{2, 7, 3, 5}, Shape{1, 33, 1, 1},
                             Shape{3, 4, 0, 5}, Shape{1, 3, 1000003, 1}}) {
    INFO("shape " << shape_str(shape));
    FusedIRBuilder b(4, "bias_relu");
    const int x = b.load(b.input(DType::float32));
    const int bias = b.load(b.input(DType::float32, {true, false, true, true}));
    b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::add, {x, bias})}));
    const FusedIR ir = b.build();
    const Tensor xt = random_tensor(DType::float32, shape, 3);
    const Tensor bt = random_tensor(DType::float32, {1, shape[1], 1, 1}, 4);
    const auto out = (*interpreter(ir))({xt, bt});
    REQUIRE(compare_tensors(out[0], reference_outputs(ir, {xt, bt}, shape)[0]).empty());

    FusedIRBuilder g(4, "bias_grad");
    g.output(g.load(g.input(DType::float32)));
    g.reduce(FusedReduceKind::sum, {0, 2, 3});
    const FusedIR grad = g.build();
    const auto db = (*interpreter(grad))({xt});
    REQUIRE(db[0].shape() == Shape{shape[1]});
    REQUIRE(compare_tensors(db[0], reference_outputs(grad, {xt}, shape)[0], 4, 1e-6).empty());
  }
}

TEST_CASE("interpreter: casts follow cast(): truncation, saturation, NaN to 0, bool is != 0",
          "[codegen]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor x = Tensor::from_vector<float>(
      {-2.7f, 2.7f, nan, inf, -inf, 3e9f, -3e9f, 0.0f, -0.0f, 200.0f, -129.5f, 0.5f}, {12});
  for (DType to :
       {DType::int8, DType::int32, DType::int64, DType::boolean, DType::float16, DType::float64}) {
    FusedIRBuilder b(1, "cast");
    b.output(b.cast(b.load(b.input(DType::float32)), to));
    const FusedIR ir = b.build();
    const auto out = (*interpreter(ir))({x});
    INFO(dtype_name(to));
    REQUIRE(compare_tensors(out[0], reference_outputs(ir, {x}, {12})[0]).empty());
  }
}

TEST_CASE("interpreter: integer division by zero and negative exponents are errors", "[codegen]") {
  for (ScalarOp op : {ScalarOp::int_div, ScalarOp::mod, ScalarOp::pow}) {
    FusedIRBuilder b(1, "checked");
    const int a = b.load(b.input(DType::int32));
    const int d = b.load(b.input(DType::int32));
    b.output(b.op(op, {a, d}));
    const FusedIR ir = b.build();
    const Tensor at = Tensor::from_vector<std::int32_t>({7, -7, 5, -9, 6}, {5});
    const Tensor good = op == ScalarOp::pow
                            ? Tensor::from_vector<std::int32_t>({2, 3, 0, 1, 5}, {5})
                            : Tensor::from_vector<std::int32_t>({2, 3, -2, -1, 1}, {5});
    const auto out = (*interpreter(ir))({at, good});
    REQUIRE(compare_tensors(out[0], reference_outputs(ir, {at, good}, {5})[0]).empty());
    const Tensor bad = op == ScalarOp::pow
                           ? Tensor::from_vector<std::int32_t>({2, 0, -2, 1, 1}, {5})
                           : Tensor::from_vector<std::int32_t>({2, 0, -2, -1, 1}, {5});
    const std::string msg = message_of<ValueError>([&] { (*interpreter(ir))({at, bad}); });
    CHECK(contains(msg, "fused kernel 'checked'"));
    CHECK(contains(msg, op == ScalarOp::pow ? "negative exponent" : "division or modulo by zero"));
  }
}

TEST_CASE("interpreter: tensors that do not fit the IR are rejected", "[codegen]") {
  FusedIRBuilder b(2, "fit");
  const int x = b.load(b.input(DType::float32));
  const int y = b.load(b.input(DType::float32, {true, false}));
  b.output(b.op(ScalarOp::add, {x, y}));
  const auto k = interpreter(b.build());
  const Tensor x23 = Tensor::zeros(DType::float32, {2, 3});
  auto msg = message_of<ShapeError>([&] { (*k)({x23, Tensor::zeros(DType::float32, {2, 3})}); });
  CHECK(contains(msg, "input 1 has shape [2, 3]: its axis 0 is 2, expected 1 (a broadcast axis"));
  msg = message_of<TypeError>([&] { (*k)({x23, Tensor::zeros(DType::float64, {1, 3})}); });
  CHECK(contains(msg, "input 1 has dtype float64, expected float32"));
  msg = message_of<ValueError>([&] { (*k)({x23}); });
  CHECK(contains(msg, "1 inputs given, 2 expected"));
  Tensor wrong_out = Tensor::zeros(DType::float32, {3, 2});
  msg = message_of<ShapeError>([&] {
    k->run({x23, Tensor::zeros(DType::float32, {1, 3})}, {wrong_out});
  });
  CHECK(contains(msg, "output 0 has shape [3, 2], expected [2, 3]"));
}

TEST_CASE("interpreter: codegen.backend chooses the back end", "[codegen]") {
  FusedIRBuilder b(1);
  b.output(b.load(b.input(DType::float32)));
  const FusedIR ir = b.build();
  {
    ScopedFlags flags("codegen.backend=interpreter");
    CHECK(compile_fused(ir)->backend() == FusedBackend::interpreter);
  }
  {
    ScopedFlags flags("codegen.backend=llvm");
    if (llvm_backend_built_in()) {
      CHECK(compile_fused(ir)->backend() == FusedBackend::llvm);
    } else {
      CHECK(contains(message_of<FlagError>([&] { compile_fused(ir); }), "no LLVM back end"));
    }
  }
  CHECK(compile_fused(ir)->backend() ==
        (llvm_backend_built_in() ? FusedBackend::llvm : FusedBackend::interpreter));
}

TEST_CASE("fused kernels: reductions over the outer axis split across threads", "[codegen]") {
  ScopedFlags flags("threads=3");
  for (FusedBackend backend : {FusedBackend::interpreter, FusedBackend::llvm}) {
    if (backend == FusedBackend::llvm && !llvm_backend_built_in()) continue;
    ScopedFlags no_disk("codegen.disk_cache=off");
    INFO(fused_backend_name(backend));
    // The sum over the batch axis of [N, C], an integer max over it, and a mean of everything.
    FusedIRBuilder s(2, "sum0");
    s.output(s.load(s.input(DType::float64)));
    s.reduce(FusedReduceKind::sum, {0});
    FusedIRBuilder m(2, "max0");
    m.output(m.load(m.input(DType::int32)));
    m.reduce(FusedReduceKind::max, {0});
    FusedIRBuilder a(2, "mean_all");
    a.output(a.op(ScalarOp::square, {a.load(a.input(DType::float32))}));
    a.reduce(FusedReduceKind::mean, {0, 1});
    const Tensor x64 = random_tensor(DType::float64, {5001, 33}, 1);
    const Tensor x32 = random_tensor(DType::int32, {5001, 33}, 2, -1000, 1000);
    const Tensor xf = random_tensor(DType::float32, {301, 300}, 3);
    for (const auto& [ir, x] :
         {std::pair{s.build(), x64}, std::pair{m.build(), x32}, std::pair{a.build(), xf}}) {
      INFO(ir.name());
      const Tensor out = (*compile_fused(ir, backend))({x})[0];
      const std::string diff =
          compare_tensors(out, reference_outputs(ir, {x}, x.shape())[0], 4, 1e-6);
      INFO(diff);
      REQUIRE(diff.empty());
    }
  }
}

TEST_CASE("fused kernels: rank 0, a sum over an empty axis and negative strides", "[codegen]") {
  ScopedFlags no_disk("codegen.disk_cache=off");
  for (FusedBackend backend : {FusedBackend::interpreter, FusedBackend::llvm}) {
    if (backend == FusedBackend::llvm && !llvm_backend_built_in()) continue;
    INFO(fused_backend_name(backend));
    FusedIRBuilder s(0, "scalar");
    s.output(s.op(ScalarOp::sigmoid, {s.load(s.input(DType::float64))}));
    const FusedIR scalar = s.build();
    const Tensor half = Tensor::scalar(DType::float64, 0.5);
    CHECK(compare_tensors((*compile_fused(scalar, backend))({half})[0],
                          reference_outputs(scalar, {half}, {})[0])
              .empty());

    FusedIRBuilder r(1, "sum_empty");
    r.output(r.load(r.input(DType::float32)));
    r.reduce(FusedReduceKind::sum, {0});
    const Tensor total =
        (*compile_fused(r.build(), backend))({Tensor::empty(DType::float32, {0})})[0];
    CHECK(total.shape() == Shape{});
    CHECK(total.item_double() == 0.0);

    FusedIRBuilder n(1, "neg_stride");
    n.output(n.op(ScalarOp::neg, {n.load(n.input(DType::int32))}));
    const Tensor v = Tensor::from_vector<std::int32_t>({1, 2, 3, 4, 5}, {5});
    const Tensor flipped = v.as_strided({5}, {-1}, 4);
    CHECK((*compile_fused(n.build(), backend))({flipped})[0].to_vector<std::int32_t>() ==
          std::vector<std::int32_t>{-5, -4, -3, -2, -1});
  }
}
