// The fused-kernel IR: construction, the errors that malformed IR gets, and the canonical text.
#include "convgraph/codegen/fused_ir.hpp"

#include "support/catch.hpp"
#include "support/messages.hpp"

using namespace convgraph;
using namespace convgraph::codegen;
using convgraph::testing::contains;
using convgraph::testing::message_of;

namespace {

// relu(x + bias) over [N, C, H, W] with bias [1, C, 1, 1].
FusedIR bias_relu() {
  FusedIRBuilder b(4, "bias_relu");
  const int x = b.load(b.input(DType::float32));
  const int bias = b.load(b.input(DType::float32, {true, false, true, true}));
  b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::add, {x, bias})}));
  return b.build();
}

}  // namespace

TEST_CASE("fused IR: the canonical text names every input, instruction, output and reduction",
          "[codegen]") {
  const FusedIR ir = bias_relu();
  CHECK(ir.to_string() ==
        "fused-ir 1 rank 4\n"
        "in0 float32 [....]\n"
        "in1 float32 [b.bb]\n"
        "%0 = load in0 : float32\n"
        "%1 = load in1 : float32\n"
        "%2 = add %0 %1 : float32\n"
        "%3 = relu %2 : float32\n"
        "out %3\n");
  CHECK(ir.hash() == bias_relu().hash());
  CHECK(ir.output_dtype(0) == DType::float32);

  FusedIRBuilder b(4, "bias_grad");
  const int g = b.load(b.input(DType::float16));
  b.output(b.op(ScalarOp::mul, {g, b.constant(0.1, DType::float16)}));
  b.reduce(FusedReduceKind::sum, {3, 0, 2});
  const FusedIR grad = b.build();
  CHECK(contains(grad.to_string(), "%1 = const 0x1.999999999999ap-4 : float16\n"));
  CHECK(contains(grad.to_string(), "reduce sum [0,2,3]\n"));
  CHECK(grad.reduction()->axes == std::vector<int>{0, 2, 3});
  CHECK(grad.output_dtype(0) == DType::float16);
  CHECK(grad.hash() != ir.hash());
  // The name is for messages only: the same computation under another name has the same key.
  CHECK(FusedIR("a", 4, bias_relu().inputs(), bias_relu().instrs(), bias_relu().outputs())
            .to_string() == ir.to_string());
}

TEST_CASE("fused IR: output dtypes of comparisons, casts and reductions", "[codegen]") {
  FusedIRBuilder b(2);
  const int x = b.load(b.input(DType::int32));
  const int gt = b.op(ScalarOp::gt, {x, b.constant(3, DType::int32)});
  CHECK(b.dtype(gt) == DType::boolean);
  const int f = b.cast(x, DType::float64);
  const int w = b.op(ScalarOp::where, {gt, f, b.constant(-1.5, DType::float64)});
  CHECK(b.dtype(w) == DType::float64);
  b.output(x);
  b.reduce(FusedReduceKind::sum, {1});
  CHECK(b.build().output_dtype(0) == DType::int64);  // integer sums accumulate in int64
  CHECK(fused_accumulator_dtype(FusedReduceKind::sum, DType::float32) == DType::float64);
  CHECK(fused_accumulator_dtype(FusedReduceKind::max, DType::float16) == DType::float32);
}

TEST_CASE("fused IR: malformed IR is rejected with a message naming the kernel and the fault",
          "[codegen]") {
  FusedIRBuilder b(2, "bad");
  const int f = b.load(b.input(DType::float32));
  const int i = b.load(b.input(DType::int32));

  auto msg = message_of<ValueError>([&] { b.op(ScalarOp::add, {f}); });
  CHECK(contains(msg, "fused kernel 'bad'"));
  CHECK(contains(msg, "add takes 2 operands, 1 given"));

  msg = message_of<TypeError>([&] { b.op(ScalarOp::add, {f, i}); });
  CHECK(contains(msg, "operand 1 has dtype int32 but operand 0 has float32"));

  msg = message_of<TypeError>([&] { b.op(ScalarOp::exp, {i}); });
  CHECK(contains(msg, "expected a float dtype"));

  msg = message_of<TypeError>([&] { b.op(ScalarOp::where, {f, f, f}); });
  CHECK(contains(msg, "the condition (operand 0) has dtype float32, expected bool"));

  msg = message_of<ValueError>([&] { b.load(5); });
  CHECK(contains(msg, "input index 5 is out of range (the kernel has 2 inputs)"));

  msg = message_of<ValueError>([&] { b.op(ScalarOp::neg, {17}); });
  CHECK(contains(msg, "refers to %17, which is not an earlier instruction"));

  msg = message_of<ValueError>([&] { b.constant(2.5, DType::int32); });
  CHECK(contains(msg, "not representable in int32"));

  msg = message_of<ValueError>([&] { b.reduce(FusedReduceKind::sum, {0, 0}); });
  CHECK(contains(msg, "name an axis twice"));
  msg = message_of<ValueError>([&] { b.reduce(FusedReduceKind::sum, {2}); });
  CHECK(contains(msg, "reduction axis 2 is out of range for iteration rank 2"));

  msg = message_of<ShapeError>([&] { b.input(DType::float32, {false, false, false}); });
  CHECK(contains(msg, "input 2 has rank 3, more than the iteration rank 2"));

  // The constructor checks IR built without the builder the same way.
  FusedInstr bad_load;
  bad_load.kind = FusedOpKind::load;
  bad_load.input = 0;
  bad_load.dtype = DType::float64;
  msg = message_of<TypeError>([&] {
    FusedIR("raw", 1, {FusedInput{DType::float32, {false}}}, {bad_load}, {0});
  });
  CHECK(contains(msg, "declared dtype float64 but input 0 has dtype float32"));
  bad_load.dtype = DType::float32;
  msg = message_of<ValueError>([&] {
    FusedIR("raw", 1, {FusedInput{DType::float32, {false}}}, {bad_load}, {});
  });
  CHECK(contains(msg, "no output"));
  msg = message_of<ValueError>([&] {
    FusedIR("raw", 1, {FusedInput{DType::float32, {false}}}, {bad_load}, {3});
  });
  CHECK(contains(msg, "output 0 refers to %3"));
  msg = message_of<TypeError>([&] {
    FusedIR("raw", 1, {FusedInput{DType::boolean, {false}}},
            {FusedInstr{FusedOpKind::load, DType::boolean, 0, 0.0, ScalarOp::add, {}}}, {0},
            FusedReduction{FusedReduceKind::mean, {0}});
  });
  CHECK(contains(msg, "mean reduction does not accept"));
  msg = message_of<ShapeError>([&] { FusedIRBuilder(kMaxFusedRank + 1); });
  CHECK(contains(msg, "iteration rank 17 is out of range"));
}
