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
        "fused-ir 2 rank 4\n"
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
  CHECK(contains(grad.to_string(), "out %2 sum [0,2,3]\n"));
  CHECK(grad.output_reduction(0)->axes == std::vector<int>{0, 2, 3});
  CHECK(grad.output_dtype(0) == DType::float16);
  CHECK(grad.hash() != ir.hash());
  // The name is for messages only: the same computation under another name has the same key.
  CHECK(FusedIR("a", 4, bias_relu().inputs(), bias_relu().instrs(), bias_relu().outputs())
            .to_string() == ir.to_string());
}

TEST_CASE("fused IR: an elementwise output next to reductions of it over their own axes",
          "[codegen]") {
  // The ReLU backward and its bias gradient: g = where(y > 0, a + b, 0) and sum(g, {0, 2, 3}).
  FusedIRBuilder b(4, "relu_backward_bias");
  const int y = b.load(b.input(DType::float32));
  const int a = b.load(b.input(DType::float32));
  const int c = b.load(b.input(DType::float32));
  const int g = b.op(ScalarOp::where, {b.op(ScalarOp::gt, {y, b.constant(0, DType::float32)}),
                                       b.op(ScalarOp::add, {a, c}), b.constant(0, DType::float32)});
  b.output(g);
  b.output(g, FusedReduceKind::sum, {3, 2, 0}, true);
  b.output(b.op(ScalarOp::gt, {g, y}), FusedReduceKind::sum, {1});
  const FusedIR ir = b.build();
  CHECK(contains(ir.to_string(),
                 "out %7\n"
                 "out %7 sum [0,2,3] keepdims\n"
                 "out %8 sum [1]\n"));
  CHECK(ir.has_reduction());
  CHECK_FALSE(ir.output_reduction(0).has_value());
  CHECK(ir.output_reduction(1)->axes == std::vector<int>{0, 2, 3});
  CHECK(ir.is_reduced_axis(1, 2));
  CHECK_FALSE(ir.is_reduced_axis(0, 2));
  CHECK_FALSE(ir.is_reduced_axis(2, 0));
  CHECK(ir.any_reduces_axis(1));
  CHECK(ir.output_dtype(0) == DType::float32);
  CHECK(ir.output_dtype(1) == DType::float32);
  CHECK(ir.output_dtype(2) == DType::int64);  // a sum of bools
  // keepdims is part of the key: the node's output shape depends on it.
  FusedIRBuilder d(4, "other");
  d.output(d.load(d.input(DType::float32)), FusedReduceKind::sum, {0, 2, 3}, false);
  FusedIRBuilder e(4, "other");
  e.output(e.load(e.input(DType::float32)), FusedReduceKind::sum, {0, 2, 3}, true);
  CHECK(d.build().to_string() != e.build().to_string());
  // reduce() applies to the outputs added with output(VALUE) only.
  FusedIRBuilder f(2, "mixed");
  const int x = f.load(f.input(DType::float64));
  f.output(x);
  f.output(x, FusedReduceKind::max, {1});
  f.reduce(FusedReduceKind::mean, {0});
  const FusedIR mixed = f.build();
  CHECK(mixed.output_reduction(0)->kind == FusedReduceKind::mean);
  CHECK(mixed.output_reduction(1)->kind == FusedReduceKind::max);

  auto msg = message_of<ValueError>([&] { f.output(x, FusedReduceKind::sum, {0, 2}); });
  CHECK(contains(msg, "reduction axis 2 is out of range for iteration rank 2"));
  const int flag = f.op(ScalarOp::gt, {x, x});
  msg = message_of<TypeError>([&] { f.output(flag, FusedReduceKind::mean, {0}); });
  CHECK(contains(msg, "output 2 has dtype bool, which a mean reduction does not accept"));
  msg = message_of<ValueError>([&] { f.output(99, FusedReduceKind::sum, {0}); });
  CHECK(contains(msg, "output refers to %99"));
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
            {FusedInstr{FusedOpKind::load, DType::boolean, 0, 0.0, ScalarOp::add, {}}},
            {FusedOutput{0, FusedReduction{FusedReduceKind::mean, {0}}}});
  });
  CHECK(contains(msg, "mean reduction does not accept"));
  msg = message_of<ShapeError>([&] { FusedIRBuilder(kMaxFusedRank + 1); });
  CHECK(contains(msg, "iteration rank 17 is out of range"));
}
