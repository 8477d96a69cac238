// Kernels with elementwise and reduced outputs at once (a gradient next to its bias gradient), on
// both back ends: against the unfused ops, the interpreter against LLVM, parallel splits,
// determinism, float32 accuracy of long sums, empty and odd shapes.
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
using convgraph::testing::RandomOutputs;
using convgraph::testing::reference_outputs;

namespace {

std::vector<FusedBackend> backends() {
  std::vector<FusedBackend> result = {FusedBackend::interpreter};
  if (llvm_backend_built_in()) result.push_back(FusedBackend::llvm);
  return result;
}

// Outputs of IR for iteration shape SHAPE, allocated as the kernel's operator() would.
std::vector<Tensor> run_kernel(const FusedIR& ir, FusedBackend backend,
                               const std::vector<Tensor>& inputs, const Shape& shape) {
  std::vector<Tensor> outputs;
  for (std::size_t k = 0; k < ir.outputs().size(); ++k) {
    outputs.push_back(Tensor::empty(ir.output_dtype(k), fused_output_shape(ir, k, shape)));
  }
  compile_fused(ir, backend)->run(inputs, outputs, shape);
  return outputs;
}

// The tolerance of a reduced output against the Reduce op: the sums are added in another order.
double reduction_rtol(DType dtype) {
  return dtype == DType::float16 ? 2e-3 : 1e-6;
}

// Elementwise outputs equal bit for bit, reduced ones within the rounding of a reordered sum.
void check_outputs(const FusedIR& ir, const std::vector<Tensor>& got,
                   const std::vector<Tensor>& want, const std::string& what) {
  for (std::size_t k = 0; k < want.size(); ++k) {
    const bool reduced = ir.output_reduction(k).has_value();
    const std::string diff =
        reduced ? compare_tensors(got[k], want[k], 4, reduction_rtol(ir.output_value_dtype(k)))
                : compare_tensors(got[k], want[k]);
    INFO(what << " output " << k << (reduced ? " (reduced)" : "") << ": " << diff);
    REQUIRE(diff.empty());
  }
}

// The ReLU backward of a residual block and its bias gradient: g = where(y > 0, a + b, 0) and
// sum(g, {0, 2, 3}) with keepdims, as the fusion pass builds it.
FusedIR relu_backward_bias(DType dtype) {
  FusedIRBuilder b(4, "relu_backward_bias");
  const int y = b.load(b.input(dtype));
  const int a = b.load(b.input(dtype));
  const int c = b.load(b.input(dtype));
  const int zero = b.constant(0, dtype);
  const int g =
      b.op(ScalarOp::where, {b.op(ScalarOp::gt, {y, zero}), b.op(ScalarOp::add, {a, c}), zero});
  b.output(g);
  b.output(g, FusedReduceKind::sum, {0, 2, 3}, true);
  return b.build();
}

}  // namespace

TEST_CASE("mixed outputs: random IR with elementwise and reduced outputs equals the unfused ops",
          "[codegen]") {
  ScopedFlags flags("codegen.disk_cache=off");
  for (std::uint64_t seed = 2000; seed < 2250; ++seed) {
    const auto c = convgraph::testing::random_fused_case(seed, RandomOutputs::mixed);
    INFO(c.ir.to_string() << "shape " << shape_str(c.shape));
    REQUIRE(c.ir.has_reduction());
    const auto want = reference_outputs(c.ir, c.inputs, c.shape);
    const auto interpreted = run_kernel(c.ir, FusedBackend::interpreter, c.inputs, c.shape);
    check_outputs(c.ir, interpreted, want, fmt::format("seed {} interpreter", seed));
    if (!llvm_backend_built_in()) continue;
    const auto generated = run_kernel(c.ir, FusedBackend::llvm, c.inputs, c.shape);
    check_outputs(c.ir, generated, want, fmt::format("seed {} llvm", seed));
    // The elementwise outputs of the two back ends are the same bits.
    for (std::size_t k = 0; k < want.size(); ++k) {
      if (!c.ir.output_reduction(k)) {
        REQUIRE(compare_tensors(generated[k], interpreted[k]).empty());
      }
    }
  }
}

TEST_CASE("mixed outputs: float32 and float64 random IR over shapes that run in parallel",
          "[codegen]") {
  ScopedFlags flags("codegen.disk_cache=off,threads=3");
  const Shape shapes[] = {{7, 33, 9, 17}, {5001, 13}, {3, 4099, 11}, {65, 3, 2, 129}};
  for (std::uint64_t seed = 3000; seed < 3040; ++seed) {
    const Shape& shape = shapes[seed % std::size(shapes)];
    const auto c = convgraph::testing::random_fused_case(seed, RandomOutputs::mixed, shape, true);
    INFO(c.ir.to_string() << "shape " << shape_str(c.shape));
    const auto want = reference_outputs(c.ir, c.inputs, c.shape);
    for (FusedBackend backend : backends()) {
      const auto got = run_kernel(c.ir, backend, c.inputs, c.shape);
      check_outputs(c.ir, got, want, fmt::format("seed {} {}", seed, fused_backend_name(backend)));
      // Deterministic: a second run gives the same bits, reductions included.
      const auto again = run_kernel(c.ir, backend, c.inputs, c.shape);
      for (std::size_t k = 0; k < got.size(); ++k) {
        REQUIRE(compare_tensors(again[k], got[k]).empty());
      }
    }
  }
}

// With 2 threads a batch of 8 is split between them (private accumulators), with 3 it is not
// (the channels are split instead); batches of 5 and 9 take the other way round.
TEST_CASE("mixed outputs: the ReLU backward and its bias gradient over odd, large and empty shapes",
          "[codegen]") {
  ScopedFlags no_disk("codegen.disk_cache=off");
  for (const char* threads : {"threads=1", "threads=2", "threads=3"}) {
    ScopedFlags flags(threads);
    for (DType dtype : {DType::float32, DType::float64, DType::float16}) {
      const FusedIR ir = relu_backward_bias(dtype);
      for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{2, 7, 3, 5}, Shape{8, 64, 14, 14},
                                 Shape{3, 5, 0, 7}, Shape{0, 3, 4, 4}, Shape{1, 3, 1001, 1},
                                 Shape{9, 2, 33, 65}, Shape{5, 64, 9, 13}, Shape{3, 32, 7, 7}}) {
        INFO(threads << " " << dtype_name(dtype) << " shape " << shape_str(shape));
        const std::vector<Tensor> inputs = {random_tensor(dtype, shape, 1),
                                            random_tensor(dtype, shape, 2),
                                            random_tensor(dtype, shape, 3)};
        const auto want = reference_outputs(ir, inputs, shape);
        REQUIRE(want[1].shape() == Shape{1, shape[1], 1, 1});
        std::vector<std::vector<Tensor>> results;
        for (FusedBackend backend : backends()) {
          const auto got = (*compile_fused(ir, backend))(inputs);
          REQUIRE(got[0].shape() == shape);
          REQUIRE(got[1].shape() == Shape{1, shape[1], 1, 1});
          check_outputs(ir, got, want, std::string(fused_backend_name(backend)));
          results.push_back(got);
        }
        if (results.size() == 2) REQUIRE(compare_tensors(results[1][0], results[0][0]).empty());
      }
    }
  }
}

TEST_CASE("mixed outputs: reductions over different axis sets, the outer axis split across threads",
          "[codegen]") {
  ScopedFlags flags("codegen.disk_cache=off,threads=3");
  // [M, N]: x * 2 itself, its sum over the outer axis (private accumulators per thread), its sum
  // over the inner one (each thread its own rows), the max of everything and a mean of squares
  // over the outer axis kept as [1, N].
  FusedIRBuilder b(2, "axis_sets");
  const int x = b.load(b.input(DType::float32));
  const int y = b.op(ScalarOp::mul, {x, b.constant(2, DType::float32)});
  b.output(y, FusedReduceKind::sum, {0});
  b.output(y);
  b.output(y, FusedReduceKind::sum, {1});
  b.output(x, FusedReduceKind::max, {0, 1});
  b.output(b.op(ScalarOp::square, {x}), FusedReduceKind::mean, {0}, true);
  const FusedIR ir = b.build();
  for (const Shape& shape : {Shape{3001, 37}, Shape{37, 3001}, Shape{1, 70001}, Shape{70001, 1},
                             Shape{5, 3}, Shape{4, 0}}) {
    INFO("shape " << shape_str(shape));
    // A transposed view, so that the elementwise output is written with other strides than the
    // input is read with.
    const Tensor xt = random_tensor(DType::float32, {shape[1], shape[0]}, 7).permute({1, 0});
    if (shape_numel(shape) == 0) {
      // A max over an empty axis has no identity.
      for (FusedBackend backend : backends()) {
        const std::string msg =
            message_of<ShapeError>([&] { run_kernel(ir, backend, {xt}, shape); });
        CHECK(contains(msg, "output 3 is a max over an empty axis"));
      }
      continue;
    }
    const auto want = reference_outputs(ir, {xt}, shape);
    for (FusedBackend backend : backends()) {
      const auto got = run_kernel(ir, backend, {xt}, shape);
      check_outputs(ir, got, want, std::string(fused_backend_name(backend)));
    }
  }
}

TEST_CASE("mixed outputs: empty iteration shapes give empty values and identities", "[codegen]") {
  ScopedFlags flags("codegen.disk_cache=off");
  FusedIRBuilder b(3, "empty");
  const int x = b.load(b.input(DType::float64));
  const int y = b.op(ScalarOp::exp, {x});
  b.output(y);
  b.output(y, FusedReduceKind::sum, {0, 2});
  b.output(y, FusedReduceKind::mean, {1});
  b.output(b.op(ScalarOp::gt, {y, y}), FusedReduceKind::sum, {0});
  const FusedIR ir = b.build();
  const Tensor xt = Tensor::empty(DType::float64, {2, 3, 0});
  for (FusedBackend backend : backends()) {
    INFO(fused_backend_name(backend));
    const auto got = (*compile_fused(ir, backend))({xt});
    CHECK(got[0].shape() == Shape{2, 3, 0});
    CHECK(got[1].shape() == Shape{3});
    CHECK(got[1].to_vector<double>() == std::vector<double>{0, 0, 0});
    CHECK(got[2].shape() == Shape{2, 0});
    CHECK(got[3].shape() == Shape{3, 0});
    CHECK(got[3].dtype() == DType::int64);
    const auto want = reference_outputs(ir, {xt}, {2, 3, 0});
    check_outputs(ir, got, want, "empty");
  }
  // A mean over an empty axis is 0/0, as the Reduce op gives it.
  FusedIRBuilder m(2, "empty_mean");
  const int v = m.load(m.input(DType::float32));
  m.output(v);
  m.output(v, FusedReduceKind::mean, {0});
  for (FusedBackend backend : backends()) {
    const auto got = (*compile_fused(m.build(), backend))({Tensor::empty(DType::float32, {0, 4})});
    REQUIRE(got[1].shape() == Shape{4});
    for (float f : got[1].to_vector<float>()) CHECK(std::isnan(f));
  }
}

TEST_CASE("mixed outputs: a float32 bias gradient over 8x56x56 elements is accurate", "[codegen]") {
  // Values near 0.1 whose sum a float32 accumulator would get wrong by far more than an ulp: the
  // fused sum accumulates in float64 and rounds once, so it is within an ulp of the exact sum.
  ScopedFlags flags("codegen.disk_cache=off,threads=2");
  const Shape shape{8, 4, 56, 56};
  Tensor y = Tensor::full(DType::float32, shape, 1.0);
  Tensor a = random_tensor(DType::float32, shape, 11, 0.099, 0.101);
  Tensor c = Tensor::full(DType::float32, shape, 0.0);
  const FusedIR ir = relu_backward_bias(DType::float32);
  std::vector<double> exact(4, 0.0);
  const float* pa = a.data<float>();
  for (std::int64_t n = 0; n < 8; ++n) {
    for (std::int64_t ch = 0; ch < 4; ++ch) {
      for (std::int64_t i = 0; i < 56 * 56; ++i) {
        exact[static_cast<std::size_t>(ch)] += pa[(n * 4 + ch) * 56 * 56 + i];
      }
    }
  }
  for (FusedBackend backend : backends()) {
    INFO(fused_backend_name(backend));
    const auto got = (*compile_fused(ir, backend))({y, a, c});
    const auto db = got[1].to_vector<float>();
    for (std::size_t ch = 0; ch < 4; ++ch) {
      const auto want = static_cast<float>(exact[ch]);
      INFO("channel " << ch << ": " << db[ch] << " vs " << want);
      CHECK(std::abs(db[ch] - want) <= std::nextafter(want, 1e9f) - want);
    }
  }
}
