// The fusion pass and the FusedElemwise node: fused graphs against the same graphs compiled with
// optimizer_excluding=fusion, node counts, DebugMode, reductions, gradients of a small conv net.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>

#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/ops/tensor/fused_elemwise.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/planner/debug_mode.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

const char* kUnfused = "optimizer_excluding=fusion";
const char* kInterpreter = "codegen.backend=interpreter";

std::vector<const FusedElemwise*> fused_ops(const Function& f) {
  std::vector<const FusedElemwise*> ops;
  for (Node* n : f.graph().toposort()) {
    if (const auto* op = dynamic_cast<const FusedElemwise*>(n->op.get())) ops.push_back(op);
  }
  return ops;
}

int count_ops(const Function& f, const std::string& name) {
  int count = 0;
  for (Node* n : f.graph().toposort()) count += n->op->name() == name ? 1 : 0;
  return count;
}

Function compile_with(const std::vector<Variable>& in, const std::vector<Variable>& out,
                      const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(in, out, options);
}

// Empty when A and B hold the same values bit for bit (NaN equal to NaN), else the first
// difference.
std::string bitwise_report(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) {
    return fmt::format("{}{} vs {}{}", dtype_name(a.dtype()), shape_str(a.shape()),
                       dtype_name(b.dtype()), shape_str(b.shape()));
  }
  const auto x = a.to_vector<double>();
  const auto y = b.to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    if (std::memcmp(&x[i], &y[i], sizeof(double)) != 0) {
      return fmt::format("element {}: {} vs {}", i, x[i], y[i]);
    }
  }
  return "";
}

// Empty when |a - b| <= atol + rtol |b| everywhere (equal values, infinities and NaNs agree).
std::string close_report(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return bitwise_report(a, b);
  const auto x = a.to_vector<double>();
  const auto y = b.to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i]))) continue;
    if (!(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i]))) {
      return fmt::format("element {}: {} vs {}", i, x[i], y[i]);
    }
  }
  return "";
}

#define REQUIRE_CLOSE(a, b, rtol, atol)                             \
  do {                                                              \
    const std::string report_ = close_report((a), (b), rtol, atol); \
    INFO(report_);                                                  \
    REQUIRE(report_.empty());                                       \
  } while (false)

#define REQUIRE_BITWISE(a, b)                             \
  do {                                                    \
    const std::string report_ = bitwise_report((a), (b)); \
    INFO(report_);                                        \
    REQUIRE(report_.empty());                             \
  } while (false)

// A random elementwise graph over a few inputs with random broadcast patterns and dtypes, with
// casts, shared subexpressions and several outputs.
struct RandomGraph {
  std::vector<Variable> inputs;
  std::vector<Variable> outputs;
  std::vector<Tensor> args;
};

RandomGraph random_graph(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  const int rank = 1 + pick(4);
  static const std::int64_t kSizes[] = {1, 3, 5, 7, 13, 0};
  Shape base;
  for (int a = 0; a < rank; ++a) base.push_back(kSizes[pick(seed % 7 == 3 ? 6 : 5)]);
  RandomGraph g;
  std::vector<Variable> pool;
  const int n_inputs = 2 + pick(3);
  for (int i = 0; i < n_inputs; ++i) {
    const DType dtype = pick(3) == 0 ? DType::float64 : DType::float32;
    const int r = i == 0 ? rank : 1 + pick(rank);
    StaticShape dims;
    Shape shape;
    for (int a = rank - r; a < rank; ++a) {
      const bool broadcast = i > 0 && pick(3) == 0;
      const std::int64_t d = broadcast ? 1 : base[static_cast<std::size_t>(a)];
      // Broadcast axes are declared 1; the others known or unknown at random.
      dims.push_back(broadcast || pick(2) == 0 ? StaticDim{d} : std::nullopt);
      if (!broadcast && d == 1) dims.back() = 1;
      shape.push_back(d);
    }
    Variable v = tensor(fmt::format("x{}", i), dtype, dims);
    g.inputs.push_back(v);
    g.args.push_back(random_tensor(dtype, shape, seed * 31 + static_cast<std::uint64_t>(i), -2, 2));
    pool.push_back(v);
  }
  const int n_ops = 3 + pick(8);
  for (int k = 0; k < n_ops; ++k) {
    const Variable a = pool[static_cast<std::size_t>(pick(static_cast<int>(pool.size())))];
    const Variable b = pool[static_cast<std::size_t>(pick(static_cast<int>(pool.size())))];
    Variable r;
    switch (pick(14)) {
      case 0:
        r = a + b;
        break;
      case 1:
        r = a - b;
        break;
      case 2:
        r = a * b;
        break;
      case 3:
        r = maximum(a, b);
        break;
      case 4:
        r = where(gt(a, b), a, b * 0.5);
        break;
      case 5:
        r = relu(a);
        break;
      case 6:
        r = tanh(a);
        break;
      case 7:
        r = sigmoid(a) * 2.0;
        break;
      case 8:
        r = a / (abs(b) + 1.0);
        break;
      case 9:
        r = cast(cast(a, a.dtype() == DType::float32 ? DType::float64 : DType::float32),
                 a.dtype()) +
            1.0;
        break;
      case 10:
        r = cast(ge(a, b), a.dtype()) * a;
        break;
      case 11:
        r = exp(minimum(a, constant(3.0, a.dtype())));
        break;
      case 12:
        r = sqrt(abs(a)) - square(b);
        break;
      default:
        r = log1p(abs(a)) * -1.0;
        break;
    }
    pool.push_back(r);
  }
  g.outputs.push_back(pool.back());
  // Shared subexpressions read by the last value and returned too.
  for (int extra = pick(3); extra > 0; --extra) {
    const Variable v = pool[static_cast<std::size_t>(n_inputs + pick(n_ops))];
    if (v.owner() != nullptr) g.outputs.push_back(v);
  }
  return g;
}

}  // namespace

TEST_CASE("fusion: relu(x + b) * 2 is one fused node, equal to the unfused graph", "[fusion]") {
  Variable x = tensor("x", DType::float32, {std::nullopt, 3, std::nullopt, std::nullopt});
  Variable b = tensor("b", DType::float32, {1, 3, 1, 1});
  Variable y = relu(x + b) * 2.0;
  const Tensor xv = random_tensor(DType::float32, {2, 3, 5, 7}, 1);
  const Tensor bv = random_tensor(DType::float32, {1, 3, 1, 1}, 2);
  Function unfused = compile_with({x, b}, {y}, kUnfused);
  REQUIRE(count_ops(unfused, "Elemwise") == 3);
  REQUIRE(fused_ops(unfused).empty());
  for (const char* flags : {kInterpreter, "codegen.backend=auto"}) {
    Function fused = compile_with({x, b}, {y}, flags);
    REQUIRE(fused.graph().num_nodes() == 1);
    const auto ops = fused_ops(fused);
    REQUIRE(ops.size() == 1);
    CHECK(ops[0]->str() == "Fused{mul(relu(add(i0, i1)), 2)}");
    CHECK(debugprint(fused.graph()).find("Fused{mul(relu(add(i0, i1)), 2)}") != std::string::npos);
    REQUIRE_BITWISE(fused({xv, bv})[0], unfused({xv, bv})[0]);
  }
  // The interpreter unless asked otherwise; LLVM where built in under auto.
  CHECK(fused_ops(compile_with({x, b}, {y}, kInterpreter))[0]->backend() ==
        codegen::FusedBackend::interpreter);
  CHECK(fused_ops(compile_with({x, b}, {y}, ""))[0]->backend() ==
        (codegen::llvm_backend_built_in() ? codegen::FusedBackend::llvm
                                          : codegen::FusedBackend::interpreter));
}

TEST_CASE("fusion: the ReLU backward where(gt(y, 0), g, 0) is one node", "[fusion]") {
  Variable y = tensor4("y", DType::float32);
  Variable g = tensor4("g", DType::float32);
  Variable dx = where(gt(y, constant(0.0, DType::float32)), g, constant(0.0, DType::float32));
  Function fused = compile_with({y, g}, {dx}, "");
  REQUIRE(fused.graph().num_nodes() == 1);
  REQUIRE(fused_ops(fused).size() == 1);
  CHECK(fused_ops(fused)[0]->str() == "Fused{where(gt(i0, 0), i1, 0)}");
  const Tensor yv = random_tensor(DType::float32, {3, 4, 5, 6}, 3);
  const Tensor gv = random_tensor(DType::float32, {3, 4, 5, 6}, 4);
  REQUIRE_BITWISE(fused({yv, gv})[0], compile_with({y, g}, {dx}, kUnfused)({yv, gv})[0]);
}

TEST_CASE("fusion: values read outside the group become extra outputs", "[fusion]") {
  Variable x = matrix("x", DType::float64);
  Variable b = tensor("b", DType::float64, {1, std::nullopt});
  Variable pre = x * b;
  Variable out1 = relu(pre) + 1.0;
  Variable out2 = exp(pre) * pre;
  Function fused = compile_with({x, b}, {out1, out2, pre}, kInterpreter);
  const auto ops = fused_ops(fused);
  REQUIRE(ops.size() == 1);
  REQUIRE(fused.graph().num_nodes() == 1);
  CHECK(ops[0]->ir().outputs().size() == 3);
  const Tensor xv = random_tensor(DType::float64, {5, 9}, 5);
  const Tensor bv = random_tensor(DType::float64, {1, 9}, 6);
  const auto got = fused({xv, bv});
  const auto want = compile_with({x, b}, {out1, out2, pre}, kUnfused)({xv, bv});
  for (std::size_t k = 0; k < 3; ++k) REQUIRE_BITWISE(got[k], want[k]);
}

TEST_CASE("fusion: a value of a smaller shape read outside stops the group there", "[fusion]") {
  // exp(b) + 1 has b's shape [3], which the [4, 3] group cannot write as an output of its own.
  Variable x = matrix("x", DType::float32);
  Variable b = vector("b", DType::float32);
  Variable small = exp(b) + 1.0;
  Variable big = x * small;
  Function fused = compile_with({x, b}, {big, small}, kInterpreter);
  const auto ops = fused_ops(fused);
  REQUIRE(ops.size() == 1);
  CHECK(ops[0]->str() == "Fused{add(exp(i0), 1)}");
  const Tensor xv = random_tensor(DType::float32, {4, 3}, 7);
  const Tensor bv = random_tensor(DType::float32, {3}, 8);
  const auto got = fused({xv, bv});
  const auto want = compile_with({x, b}, {big, small}, kUnfused)({xv, bv});
  REQUIRE_BITWISE(got[0], want[0]);
  REQUIRE_BITWISE(got[1], want[1]);
}

TEST_CASE("fusion: random elementwise graphs equal the unfused ones", "[fusion]") {
  int fused_nodes = 0;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    INFO("seed " << seed);
    const RandomGraph g = random_graph(seed);
    INFO(debugprint(g.outputs));
    Function unfused = compile_with(g.inputs, g.outputs, kUnfused);
    Function interpreted = compile_with(g.inputs, g.outputs, kInterpreter);
    REQUIRE(interpreted.graph().num_nodes() <= unfused.graph().num_nodes());
    fused_nodes += static_cast<int>(fused_ops(interpreted).size());
    const auto want = unfused(g.args);
    const auto got = interpreted(g.args);
    for (std::size_t k = 0; k < want.size(); ++k) REQUIRE_BITWISE(got[k], want[k]);
    if (codegen::llvm_backend_built_in()) {
      const auto jit = compile_with(g.inputs, g.outputs, "codegen.backend=llvm")(g.args);
      for (std::size_t k = 0; k < want.size(); ++k) {
        REQUIRE_CLOSE(jit[k], want[k], 1e-5, 1e-6);
      }
    }
  }
  CHECK(fused_nodes >= 40);
}

TEST_CASE("fusion: optimizer_excluding=fusion keeps every Elemwise", "[fusion]") {
  Variable x = vector("x", DType::float32);
  Variable y = tanh(x * 3.0) - x;
  CHECK(count_ops(compile_with({x}, {y}, kUnfused), "Elemwise") == 3);
  CHECK(count_ops(compile_with({x}, {y}, ""), "FusedElemwise") == 1);
}

TEST_CASE("fusion: a bias gradient and a mean become the kernel's reduction", "[fusion]") {
  Variable y = tensor4("y", DType::float32);
  Variable g = tensor4("g", DType::float32);
  const Variable zero = constant(0.0, DType::float32);
  Variable db = sum(where(gt(y, zero), g, zero), {0, 2, 3});
  Variable m = mean(square(g - y), {1}, true);
  Variable s64 = sum(cast(y, DType::float64) * 0.5, {0, 1});
  const Tensor yv = random_tensor(DType::float32, {4, 5, 6, 7}, 9);
  const Tensor gv = random_tensor(DType::float32, {4, 5, 6, 7}, 10);
  const auto want = compile_with({y, g}, {db, m, s64}, kUnfused)({yv, gv});
  for (const char* flags : {kInterpreter, "codegen.backend=auto"}) {
    Function fused = compile_with({y, g}, {db, m, s64}, flags);
    INFO(debugprint(fused.graph()));
    REQUIRE(fused.graph().num_nodes() == 3);
    const auto ops = fused_ops(fused);
    REQUIRE(ops.size() == 3);
    int reductions = 0;
    for (const auto* op : ops) reductions += op->ir().output_reduction(0) ? 1 : 0;
    CHECK(reductions == 3);
    CHECK(debugprint(fused.graph()).find("sum{0, 2, 3}(where(gt(i0, 0), i1, 0))") !=
          std::string::npos);
    const auto got = fused({yv, gv});
    REQUIRE(got[1].shape() == Shape{4, 1, 6, 7});
    for (std::size_t k = 0; k < 3; ++k) {
      REQUIRE_CLOSE(got[k], want[k], k == 2 ? 1e-12 : 1e-6, 1e-6);
    }
  }
}

TEST_CASE("fusion: a reduction of a value read elsewhere joins the group as another output",
          "[fusion]") {
  Variable y = matrix("y", DType::float64);
  Variable r = relu(y - 1.0);
  Variable s = sum(r, {0});
  Variable m = mean(r, {1}, true);
  Function fused = compile_with({y}, {s, r, m}, kInterpreter);
  INFO(debugprint(fused.graph()));
  REQUIRE(fused_ops(fused).size() == 1);
  CHECK(fused.graph().num_nodes() == 1);
  CHECK(count_ops(fused, "Reduce") == 0);
  const codegen::FusedIR& ir = fused_ops(fused)[0]->ir();
  REQUIRE(ir.outputs().size() == 3);
  CHECK_FALSE(ir.output_reduction(0).has_value());
  CHECK(ir.output_reduction(1)->axes == std::vector<int>{0});
  CHECK(ir.output_reduction(2)->kind == codegen::FusedReduceKind::mean);
  CHECK(ir.output_reduction(2)->keepdims);
  const Tensor yv = random_tensor(DType::float64, {6, 5}, 11);
  const auto got = fused({yv});
  const auto want = compile_with({y}, {s, r, m}, kUnfused)({yv});
  REQUIRE(got[2].shape() == Shape{6, 1});
  REQUIRE_CLOSE(got[0], want[0], 1e-14, 0.0);
  REQUIRE_BITWISE(got[1], want[1]);
  REQUIRE_CLOSE(got[2], want[2], 1e-14, 0.0);
  // With fusion off the Reduce nodes stay.
  CHECK(count_ops(compile_with({y}, {s, r, m}, kUnfused), "Reduce") == 2);
}

TEST_CASE("fusion: the ReLU backward writes its gradient and the bias gradient in one pass",
          "[fusion]") {
  // The pattern of a residual block's backward pass: g = where(y > 0, a + b, 0) feeds a
  // convolution's backward and the bias gradient sum(g, {0, 2, 3}, keepdims).
  Variable y = tensor("y", DType::float32, {4, 6, 7, 5});
  Variable a = tensor("a", DType::float32, {4, 6, 7, 5});
  Variable c = tensor("c", DType::float32, {4, 6, 7, 5});
  Variable w = tensor("w", DType::float32, {3, 6, 3, 3});
  const Variable zero = constant(0.0, DType::float32);
  Variable g = where(gt(y, zero), a + c, zero);
  Variable db = sum(g, {0, 2, 3}, true);
  Variable dx = conv2d(g, w);
  const std::vector<Variable> inputs = {y, a, c, w};
  const std::vector<Tensor> args = {random_tensor(DType::float32, {4, 6, 7, 5}, 30),
                                    random_tensor(DType::float32, {4, 6, 7, 5}, 31),
                                    random_tensor(DType::float32, {4, 6, 7, 5}, 32),
                                    random_tensor(DType::float32, {3, 6, 3, 3}, 33)};
  Function unfused = compile_with(inputs, {db, dx}, kUnfused);
  CHECK(count_ops(unfused, "Reduce") == 1);
  const auto want = unfused(args);
  for (const char* flags : {kInterpreter, "codegen.backend=auto", "mode=DebugMode"}) {
    INFO(flags);
    Function fused = compile_with(inputs, {db, dx}, flags);
    INFO(debugprint(fused.graph()));
    CHECK(count_ops(fused, "Reduce") == 0);
    REQUIRE(fused_ops(fused).size() == 1);
    const codegen::FusedIR& ir = fused_ops(fused)[0]->ir();
    REQUIRE(ir.outputs().size() == 2);
    CHECK_FALSE(ir.output_reduction(0).has_value());
    CHECK(ir.output_reduction(1)->axes == std::vector<int>{0, 2, 3});
    // gt, add, where and the Reduce became one node; the convolution's nodes are the same.
    CHECK(fused.graph().num_nodes() == unfused.graph().num_nodes() - 3);
    const auto got = fused(args);
    REQUIRE(got[0].shape() == Shape{1, 6, 1, 1});
    REQUIRE_CLOSE(got[0], want[0], 1e-6, 1e-6);
    REQUIRE_CLOSE(got[1], want[1], 1e-6, 1e-6);
  }
  // The gradient itself returned next to its bias gradient.
  Function both = compile_with({y, a, c}, {g, db}, "");
  CHECK(both.graph().num_nodes() == 1);
  const auto got = both({args[0], args[1], args[2]});
  const auto ref = compile_with({y, a, c}, {g, db}, kUnfused)({args[0], args[1], args[2]});
  REQUIRE_BITWISE(got[0], ref[0]);
  REQUIRE_CLOSE(got[1], ref[1], 1e-6, 1e-6);
}

TEST_CASE("fusion: DebugMode catches a two-output kernel whose reduction is wrong", "[fusion]") {
  Variable y = tensor4("y", DType::float32);
  Variable g = tensor4("g", DType::float32);
  const Variable zero = constant(0.0, DType::float32);
  // The kernel means where the reference sums; its elementwise output is right.
  codegen::FusedIRBuilder wrong(4, "wrong_bias_grad");
  const int i0 = wrong.load(wrong.input(DType::float32));
  const int i1 = wrong.load(wrong.input(DType::float32));
  const int c0 = wrong.constant(0, DType::float32);
  const int w = wrong.op(ScalarOp::where, {wrong.op(ScalarOp::gt, {i0, c0}), i1, c0});
  wrong.output(w);
  wrong.output(w, codegen::FusedReduceKind::mean, {0, 2, 3}, true);
  using Ref = FusedSubgraph::Ref;
  FusedSubgraph reference;
  reference.constants.push_back(Tensor::scalar(DType::float32, 0.0));
  reference.steps.push_back({Elemwise::for_inputs(ScalarOp::gt, {y, zero}),
                             {{Ref::Kind::input, 0}, {Ref::Kind::constant, 0}}});
  reference.steps.push_back(
      {Elemwise::for_inputs(ScalarOp::where, {y, g, zero}),
       {{Ref::Kind::step, 0}, {Ref::Kind::input, 1}, {Ref::Kind::constant, 0}}});
  reference.steps.push_back(
      {std::make_shared<const Reduce>(ReduceOp::sum, std::vector<int>{0, 2, 3}, true),
       {{Ref::Kind::step, 1}}});
  reference.outputs = {1, 2};
  auto op = std::make_shared<const FusedElemwise>(wrong.build(), reference,
                                                  codegen::FusedBackend::interpreter);
  const std::vector<Variable> outs = apply_multi(op, {y, g});
  REQUIRE(outs.size() == 2);
  CHECK(outs[1].type().dims == StaticShape{1, std::nullopt, 1, 1});
  const Tensor yv = random_tensor(DType::float32, {2, 3, 4, 5}, 40);
  const Tensor gv = random_tensor(DType::float32, {2, 3, 4, 5}, 41);
  REQUIRE_NOTHROW(compile_with({y, g}, outs, "")({yv, gv}));
  try {
    compile_with({y, g}, outs, "mode=DebugMode")({yv, gv});
    FAIL("DebugMode did not catch the wrong reduction");
  } catch (const DebugModeError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("sum{0, 2, 3, keepdims}") != std::string::npos);
  }
}

TEST_CASE("fusion: empty tensors and a runtime shape mismatch", "[fusion]") {
  Variable x = matrix("x", DType::float32);
  Variable z = matrix("z", DType::float32);
  Variable y = sigmoid(x) * z + 1.0;
  Function fused = compile_with({x, z}, {y}, "");
  const Tensor e = Tensor::empty(DType::float32, {0, 4});
  const auto got = fused({e, e});
  REQUIRE(got[0].shape() == Shape{0, 4});
  const Tensor a = random_tensor(DType::float32, {2, 4}, 12);
  const Tensor b = random_tensor(DType::float32, {2, 3}, 13);
  REQUIRE_THROWS_AS(fused({a, b}), ShapeError);
  // A runtime 1 where the type left the dim unknown does not broadcast, fused or not.
  const Tensor one = random_tensor(DType::float32, {2, 1}, 14);
  REQUIRE_THROWS_AS(fused({a, one}), ShapeError);
  REQUIRE_THROWS_AS(compile_with({x, z}, {y}, kUnfused)({a, one}), ShapeError);
}

TEST_CASE("fusion: DebugMode checks fused kernels against the ops they replaced", "[fusion]") {
  Variable x = tensor4("x", DType::float32);
  Variable b = tensor("b", DType::float32, {1, std::nullopt, 1, 1});
  Variable y = relu(x + b);
  const Tensor xv = random_tensor(DType::float32, {2, 3, 4, 5}, 15);
  const Tensor bv = random_tensor(DType::float32, {1, 3, 1, 1}, 16);
  Function checked = compile_with({x, b}, {y, sum(exp(x), {0, 2, 3})}, "mode=DebugMode");
  REQUIRE(fused_ops(checked).size() == 2);
  REQUIRE(checked.graph().num_nodes() == 2);
  REQUIRE_NOTHROW(checked({xv, bv}));

  // A fused node whose kernel computes x - b while its reference is the add it claims to be.
  codegen::FusedIRBuilder wrong(4, "wrong");
  const int i0 = wrong.load(wrong.input(DType::float32));
  const int i1 = wrong.load(wrong.input(DType::float32, {true, false, true, true}));
  wrong.output(wrong.op(ScalarOp::relu, {wrong.op(ScalarOp::sub, {i0, i1})}));
  FusedSubgraph reference;
  using Ref = FusedSubgraph::Ref;
  reference.steps.push_back({Elemwise::for_inputs(ScalarOp::add, {x, b}),
                             {{Ref::Kind::input, 0}, {Ref::Kind::input, 1}}});
  reference.steps.push_back({Elemwise::for_inputs(ScalarOp::relu, {x}), {{Ref::Kind::step, 0}}});
  reference.outputs = {1};
  auto op = std::make_shared<const FusedElemwise>(wrong.build(), reference,
                                                  codegen::FusedBackend::interpreter);
  CHECK(op->str() == "Fused{relu(add(i0, i1))}");
  Variable bad = apply(op, {x, b});
  REQUIRE_NOTHROW(compile_with({x, b}, {bad}, "")({xv, bv}));  // unnoticed outside DebugMode
  try {
    compile_with({x, b}, {bad}, "mode=DebugMode")({xv, bv});
    FAIL("DebugMode did not catch the wrong fused kernel");
  } catch (const DebugModeError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("FusedSubgraph{relu(add(i0, i1))}") != std::string::npos);
  }
  // The node's perform is its reference: the right values.
  std::vector<Tensor> outs;
  op->perform({xv, bv}, outs);
  REQUIRE_BITWISE(outs[0], compile_with({x, b}, {y}, kUnfused)({xv, bv})[0]);
  // No gradient through a fused node.
  REQUIRE_THROWS_AS(grad(sum(bad), x), UnsupportedError);
}

TEST_CASE("fusion: gradients of a small conv net are the same with fusion on and off", "[fusion]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w1 = tensor("w1", DType::float32, {4, 3, 3, 3});
  Variable b1 = tensor("b1", DType::float32, {1, 4, 1, 1});
  Variable w2 = tensor("w2", DType::float32, {5, 4, 3, 3});
  Variable b2 = tensor("b2", DType::float32, {1, 5, 1, 1});
  Variable h = relu(conv2d(x, w1) + b1);
  Variable out = sigmoid(conv2d(h, w2) + b2);
  Variable loss = mean(square(out - 0.5));
  const auto grads = grad(loss, {w1, b1, w2, b2});
  std::vector<Variable> outputs = {loss};
  outputs.insert(outputs.end(), grads.begin(), grads.end());
  const std::vector<Tensor> args = {random_tensor(DType::float32, {2, 3, 9, 9}, 17),
                                    random_tensor(DType::float32, {4, 3, 3, 3}, 18),
                                    random_tensor(DType::float32, {1, 4, 1, 1}, 19),
                                    random_tensor(DType::float32, {5, 4, 3, 3}, 20),
                                    random_tensor(DType::float32, {1, 5, 1, 1}, 21)};
  const std::vector<Variable> inputs = {x, w1, b1, w2, b2};
  // Without conv_epilogue, which would fold the bias adds and the ReLU into the convolutions
  // before fusion sees them (test_conv_epilogue.cpp covers that).
  Function unfused = compile_with(inputs, outputs, "optimizer_excluding=fusion:conv_epilogue");
  Function fused = compile_with(inputs, outputs, "optimizer_excluding=conv_epilogue");
  INFO(debugprint(fused.graph()));
  CHECK(fused_ops(fused).size() >= 3);
  CHECK(count_ops(fused, "Elemwise") < count_ops(unfused, "Elemwise"));
  // The bias gradients are reduced in the kernels that compute the gradients they sum, and the
  // loss's mean in the kernel of its square.
  CHECK(count_ops(unfused, "Reduce") >= 3);
  CHECK(count_ops(fused, "Reduce") == 0);
  const auto want = unfused(args);
  const auto got = fused(args);
  for (std::size_t k = 0; k < want.size(); ++k) REQUIRE_CLOSE(got[k], want[k], 1e-5, 1e-6);
  REQUIRE_NOTHROW(compile_with(inputs, outputs, "mode=DebugMode")(args));
}

TEST_CASE("fusion: on the interpreter, nothing is generated; without LLVM it is the default",
          "[fusion]") {
  Variable x = tensor("x", DType::float32, {3, 5, 7});
  Variable b = tensor("b", DType::float32, {1, 5, 1});
  Variable y = softplus(x * b + 0.6875) - 0.0625;
  auto& counters = codegen::codegen_counters();
  const auto generated = [&] {
    return counters.llvm_compilations.load() + counters.memory_hits.load() +
           counters.disk_hits.load();
  };
  const Tensor xv = random_tensor(DType::float32, {3, 5, 7}, 26);
  const Tensor bv = random_tensor(DType::float32, {1, 5, 1}, 27);
  const Tensor want = compile_with({x, b}, {y}, kUnfused)({xv, bv})[0];
  std::vector<const char*> interpreted = {kInterpreter};
  if (!codegen::llvm_backend_built_in()) {
    interpreted.push_back("");
    // Asking for LLVM in a build without it is an error at compile time, not a silent fallback.
    const std::string msg = convgraph::testing::message_of<FlagError>([&] {
      compile_with({x, b}, {y}, "codegen.backend=llvm");
    });
    CHECK(convgraph::testing::contains(msg, "no LLVM back end"));
  }
  for (const char* flags : interpreted) {
    INFO("flags '" << flags << "'");
    const auto before = generated();
    Function f = compile_with({x, b}, {y}, std::string(flags) + ",profile=True");
    const auto ops = fused_ops(f);
    REQUIRE(ops.size() == 1);
    CHECK(ops[0]->backend() == codegen::FusedBackend::interpreter);
    REQUIRE_BITWISE(f({xv, bv})[0], want);
    CHECK(generated() == before);
    // The profile says which back end ran the node.
    const ProfileReport report = f.profile();
    REQUIRE(report.rows.size() == 1);
    CHECK(report.rows[0].implementation == "FusedElemwise [interpreter]");
  }
}

TEST_CASE("fusion: with LLVM, the code is generated at compile time, not on the first call",
          "[fusion]") {
  if (!codegen::llvm_backend_built_in()) {
    convgraph::testing::skip_test("this build has no LLVM back end: nothing is generated");
    return;
  }
  ScopedFlags no_disk("codegen.disk_cache=off");
  Variable x = tensor("x", DType::float32, {3, 5, 7});
  Variable b = tensor("b", DType::float32, {1, 5, 1});
  // A constant no other test uses, so that the kernel is new to this process.
  Variable y = softplus(x * b + 0.8125) - 0.0625;
  auto& counters = codegen::codegen_counters();
  const auto generated = [&] {
    return counters.llvm_compilations.load() + counters.memory_hits.load() +
           counters.disk_hits.load();
  };
  const auto before_compile = counters.llvm_compilations.load();
  Function f = compile_with({x, b}, {y}, "codegen.backend=llvm,profile=True");
  CHECK(counters.llvm_compilations.load() > before_compile);
  const auto before_call = generated();
  const Tensor xv = random_tensor(DType::float32, {3, 5, 7}, 22);
  const Tensor bv = random_tensor(DType::float32, {1, 5, 1}, 23);
  const auto got = f({xv, bv});
  CHECK(generated() == before_call);
  REQUIRE(f.profile().rows.size() == 1);
  CHECK(f.profile().rows[0].implementation == "FusedElemwise [llvm]");
  REQUIRE_CLOSE(got[0], compile_with({x, b}, {y}, kUnfused)({xv, bv})[0], 1e-6, 1e-6);

  // A gradient and its bias gradient, whose loop order depends on whether the batch splits
  // evenly across the compile's threads: the code the call needs is the code compiled.
  for (const auto& [batch, threads] : {std::pair{8, 2}, std::pair{8, 3}, std::pair{16, 3}}) {
    INFO("batch " << batch << ", threads " << threads);
    Variable yy = tensor("y", DType::float32, {batch, 6, 23, 29});
    Variable gg = tensor("g", DType::float32, {batch, 6, 23, 29});
    const Variable zero = constant(0.0, DType::float32);
    // A constant of its own per case, so that each kernel is new to this process.
    Variable dz = where(gt(yy, zero), gg * (0.375 + batch + threads), zero);
    Function both = compile_with({yy, gg}, {dz, sum(dz, {0, 2, 3})},
                                 fmt::format("codegen.backend=llvm,threads={}", threads));
    const Tensor yv = random_tensor(DType::float32, {batch, 6, 23, 29}, 24);
    const Tensor gv = random_tensor(DType::float32, {batch, 6, 23, 29}, 25);
    const auto before = generated();
    const auto outs = both({yv, gv});
    CHECK(generated() == before);
    const auto want = compile_with({yy, gg}, {dz, sum(dz, {0, 2, 3})}, kUnfused)({yv, gv});
    REQUIRE_BITWISE(outs[0], want[0]);
    REQUIRE_CLOSE(outs[1], want[1], 1e-6, 1e-6);
  }
}
