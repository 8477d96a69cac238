#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "convgraph/ops/tensor/blas.hpp"
#include "convgraph/runtime/blas.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::check_rop;
using convgraph::testing::eval;
using convgraph::testing::random_tensor;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

Tensor perform_of(const Variable& out, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outputs(1);
  out.owner()->op->perform(inputs, outputs);
  return outputs[0];
}

// numpy.matmul by plain loops in double, for operands of any rank >= 1 (batch dims broadcast
// where one of them is 1).
Tensor reference_matmul(const Tensor& a, const Tensor& b, DType out_dtype) {
  Shape sa = a.shape(), sb = b.shape();
  const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
  if (a_vec) sa.insert(sa.begin(), 1);
  if (b_vec) sb.push_back(1);
  const std::size_t ra = sa.size(), rb = sb.size(), batch = std::max(ra, rb) - 2;
  Shape bshape(batch);
  for (std::size_t i = 0; i < batch; ++i) {
    const std::int64_t da = i + ra - 2 >= batch ? sa[i + ra - 2 - batch] : 1;
    const std::int64_t db = i + rb - 2 >= batch ? sb[i + rb - 2 - batch] : 1;
    bshape[i] = da == 1 ? db : da;
  }
  const std::int64_t m = sa[ra - 2], k = sa[ra - 1], n = sb[rb - 1];
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  const Strides ca = contiguous_strides(sa), cb = contiguous_strides(sb);
  std::vector<double> out;
  const std::int64_t count = shape_numel(bshape);
  for (std::int64_t flat = 0; flat < count; ++flat) {
    std::int64_t rest = flat, off_a = 0, off_b = 0;
    for (std::size_t i = batch; i-- > 0;) {
      const std::int64_t idx = rest % bshape[i];
      rest /= bshape[i];
      if (i + ra - 2 >= batch && sa[i + ra - 2 - batch] != 1) off_a += idx * ca[i + ra - 2 - batch];
      if (i + rb - 2 >= batch && sb[i + rb - 2 - batch] != 1) off_b += idx * cb[i + rb - 2 - batch];
    }
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::int64_t p = 0; p < k; ++p) {
          acc += va[static_cast<std::size_t>(off_a + i * ca[ra - 2] + p * ca[ra - 1])] *
                 vb[static_cast<std::size_t>(off_b + p * cb[rb - 2] + j * cb[rb - 1])];
        }
        out.push_back(acc);
      }
    }
  }
  Shape out_shape = bshape;
  if (!a_vec) out_shape.push_back(m);
  if (!b_vec) out_shape.push_back(n);
  return Tensor::from_vector<double>(out, out_shape).cast(out_dtype);
}

Variable input_like(const Tensor& t, const std::string& name) {
  return make_input(TensorType::of_rank(t.dtype(), t.rank()), name);
}

}  // namespace

TEST_CASE("blas: gemm, gemv and dot wrappers against loops", "[blas]") {
  const std::int64_t m = 5, n = 4, k = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Tensor a = random_tensor(DType::float64, ta ? Shape{k, m} : Shape{m, k}, 1);
      const Tensor b = random_tensor(DType::float64, tb ? Shape{n, k} : Shape{k, n}, 2);
      const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
      std::vector<double> c(static_cast<std::size_t>(m * n), 1.0);
      gemm(ta, tb, m, n, k, 2.0, va.data(), ta ? m : k, vb.data(), tb ? k : n, 0.5, c.data(), n);
      std::vector<float> af(va.begin(), va.end()), bf(vb.begin(), vb.end());
      std::vector<float> cf(static_cast<std::size_t>(m * n), 1.0f);
      gemm(ta, tb, m, n, k, 2.0f, af.data(), ta ? m : k, bf.data(), tb ? k : n, 0.5f, cf.data(), n);
      for (std::int64_t i = 0; i < m; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (std::int64_t p = 0; p < k; ++p) {
            const double x = ta ? va[static_cast<std::size_t>(p * m + i)]
                                : va[static_cast<std::size_t>(i * k + p)];
            const double y = tb ? vb[static_cast<std::size_t>(j * k + p)]
                                : vb[static_cast<std::size_t>(p * n + j)];
            acc += x * y;
          }
          const double expected = 2.0 * acc + 0.5;
          REQUIRE(c[static_cast<std::size_t>(i * n + j)] == Approx(expected).epsilon(1e-14));
          REQUIRE(cf[static_cast<std::size_t>(i * n + j)] == Approx(expected).epsilon(1e-5));
        }
      }
    }
  }
  // k == 0: C = beta * C, and beta == 0 overwrites NaN.
  std::vector<double> c{NAN, NAN};
  gemm(false, false, 1, 2, 0, 1.0, nullptr, 1, nullptr, 2, 0.0, c.data(), 2);
  REQUIRE(c == std::vector<double>{0.0, 0.0});

  const std::vector<double> mat{1, 2, 3, 4, 5, 6};  // [2, 3]
  const std::vector<double> x3{1, 0, -1}, x2{1, -1};
  std::vector<double> y2(2), y3(3);
  gemv(false, 2, 3, 1.0, mat.data(), 3, x3.data(), 1, 0.0, y2.data(), 1);
  REQUIRE(y2 == std::vector<double>{-2, -2});
  gemv(true, 2, 3, 1.0, mat.data(), 3, x2.data(), 1, 0.0, y3.data(), 1);
  REQUIRE(y3 == std::vector<double>{-3, -3, -3});
  REQUIRE(blas_dot(3, mat.data(), 2, x3.data(), 1) == -4.0);  // 1*1 + 3*0 + 5*(-1)
  const std::vector<float> f{1.5f, 2.0f};
  REQUIRE(blas_dot(2, f.data(), 1, f.data(), 1) == 6.25f);

  const int threads = blas_num_threads();
  REQUIRE(threads >= 1);
  set_blas_num_threads(1);
  REQUIRE(blas_num_threads() == 1);
  set_blas_num_threads(threads);
  REQUIRE_THROWS_AS(set_blas_num_threads(0), ValueError);
}

TEST_CASE("dot: every rank combination matches loops", "[blas]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5}, {5}},       {{3, 5}, {5}},    {{5}, {5, 4}},    {{3, 5}, {5, 4}}, {{1, 5}, {5, 1}},
      {{3, 1}, {1, 4}}, {{3, 0}, {0, 4}}, {{0, 5}, {5, 2}}, {{0}, {0}}};
  for (DType dtype : {DType::float64, DType::float32, DType::float16, DType::int32, DType::int8}) {
    for (const auto& [sa, sb] : cases) {
      const Tensor a = random_tensor(dtype, sa, 3, -4, 4);
      const Tensor b = random_tensor(dtype, sb, 4, -4, 4);
      Variable x = input_like(a, "a"), y = input_like(b, "b");
      Variable out = dot(x, y);
      REQUIRE(out.dtype() == dtype);
      const Tensor got = eval(out, {x, y}, {a, b});
      const Tensor expected = reference_matmul(a, b, dtype);
      INFO(dtype_name(dtype) << " " << shape_str(sa) << " . " << shape_str(sb));
      const double tol = dtype == DType::float16 ? 2e-2 : dtype == DType::float32 ? 1e-5 : 1e-12;
      REQUIRE_ALLCLOSE(got, expected, tol, tol);
    }
  }
}

TEST_CASE("dot and matmul: strided operands", "[blas]") {
  for (DType dtype : {DType::float64, DType::float32, DType::int32}) {
    const Tensor base_a = random_tensor(dtype, {6, 8}, 5, -3, 3);
    const Tensor base_b = random_tensor(dtype, {8, 6}, 6, -3, 3);
    // Transposed, step-2 slices, reversed rows and a broadcast (stride 0) operand.
    const std::vector<std::pair<Tensor, Tensor>> operands = {
        {base_b.permute({1, 0}), base_a.permute({1, 0})},
        {base_a.slice(1, 0, 8, 2), base_b.slice(0, 0, 8, 2)},
        {base_a.slice(0, 5, -1, -1), base_b.slice(1, 5, -1, -2)},
        {base_a.as_strided({6, 8}, {0, 1}, 0), base_b.as_strided({8, 6}, {1, 0}, 0)},
    };
    for (const auto& [a, b] : operands) {
      Variable x = matrix("a", dtype), y = matrix("b", dtype);
      const Tensor got = perform_of(dot(x, y), {a, b});
      const Tensor expected = reference_matmul(a.clone(), b.clone(), dtype);
      INFO(dtype_name(dtype) << " strides " << shape_str(a.strides()) << " "
                             << shape_str(b.strides()));
      REQUIRE_ALLCLOSE(got, expected, 1e-5, 1e-5);
      // The same as a batch of one through MatMul, and a matrix times a strided vector.
      const Tensor got_mv = perform_of(dot(x, vector("v", dtype)), {a, b.select(1, 1)});
      REQUIRE_ALLCLOSE(got_mv, reference_matmul(a.clone(), b.select(1, 1).clone(), dtype), 1e-5,
                       1e-5);
      Variable x3 = tensor3("a3", dtype), y3 = tensor3("b3", dtype);
      const Tensor got3 = perform_of(matmul(x3, y3), {a.unsqueeze(0), b.unsqueeze(0)});
      REQUIRE_ALLCLOSE(got3, reference_matmul(a.clone(), b.clone(), dtype).unsqueeze(0).clone(),
                       1e-5, 1e-5);
    }
  }
}

TEST_CASE("matmul: batch broadcasting and rank-1 operands", "[blas]") {
  struct Case {
    StaticShape ta, tb;
    Shape sa, sb;
  };
  const std::vector<Case> cases = {
      {{2, 1, 3, 4}, {5, 4, 2}, {2, 1, 3, 4}, {5, 4, 2}},
      {{3, std::nullopt, 4}, {3, 4, 2}, {3, 2, 4}, {3, 4, 2}},
      {{1, 2, 3}, {4, 3, 5}, {1, 2, 3}, {4, 3, 5}},
      {{4}, {2, 4, 3}, {4}, {2, 4, 3}},
      {{2, 3, 4}, {4}, {2, 3, 4}, {4}},
      {{6, 2, 3}, {3, 2}, {6, 2, 3}, {3, 2}},
      {{2, 3}, {2, 1, 3, 5}, {2, 3}, {2, 1, 3, 5}},
      {{4}, {4}, {4}, {4}},
      {{2, 4}, {4, 3}, {2, 4}, {4, 3}},
      {{0, 2, 3}, {3, 2}, {0, 2, 3}, {3, 2}},
  };
  for (DType dtype : {DType::float64, DType::float32, DType::float16, DType::int64}) {
    for (const Case& c : cases) {
      const Tensor a = random_tensor(dtype, c.sa, 7, -3, 3);
      const Tensor b = random_tensor(dtype, c.sb, 8, -3, 3);
      Variable x = tensor("a", dtype, c.ta), y = tensor("b", dtype, c.tb);
      Variable out = matmul(x, y);
      const Tensor expected = reference_matmul(a, b, dtype);
      INFO(dtype_name(dtype) << " " << shape_str(c.sa) << " @ " << shape_str(c.sb));
      REQUIRE(out.ndim() == expected.rank());
      const Tensor got = eval(out, {x, y}, {a, b});
      const double tol = dtype == DType::float16 ? 2e-2 : 1e-5;
      REQUIRE_ALLCLOSE(got, expected, tol, tol);
    }
  }
  // Static output dims.
  Variable x = tensor("x", DType::float32, {2, 1, 3, 4});
  Variable y = tensor("y", DType::float32, {5, 4, std::nullopt});
  REQUIRE(matmul(x, y).type().dims == StaticShape{2, 5, 3, std::nullopt});
  REQUIRE(matmul(vector("v", DType::float32), y).type().dims == StaticShape{5, std::nullopt});
  // Mixed dtypes are promoted.
  Variable i = tensor("i", DType::int32, {2, 2, 2});
  Variable f = tensor("f", DType::float64, {2, 2});
  REQUIRE(matmul(i, f).dtype() == DType::float64);
  REQUIRE(dot(matrix("m", DType::int32), vector("w", DType::float32)).dtype() == DType::float32);
}

TEST_CASE("dot and matmul: shape, rank and dtype errors", "[blas]") {
  Variable a = tensor("a", DType::float32, {2, 3});
  Variable b = tensor("b", DType::float32, {4, 5});
  std::string msg = message_of([&] { dot(a, b); });
  REQUIRE(msg.find("[2, 3]") != std::string::npos);
  REQUIRE(msg.find("[4, 5]") != std::string::npos);
  REQUIRE_THROWS_AS(dot(a, b), ShapeError);
  REQUIRE_THROWS_AS(matmul(a, b), ShapeError);
  // Unknown dims are checked at run time.
  REQUIRE_NOTHROW(matmul(tensor("c", DType::float32, {7, 2, 3}), tensor3("d", DType::float32)));
  msg = message_of([&] {
    matmul(tensor("c", DType::float32, {7, 2, 3}), tensor("e", DType::float32, {6, 3, 1}));
  });
  REQUIRE(msg.find("7") != std::string::npos);
  REQUIRE(msg.find("6") != std::string::npos);
  REQUIRE_THROWS_AS(
      matmul(tensor("c", DType::float32, {7, 2, 3}), tensor("e", DType::float32, {6, 3, 1})),
      ShapeError);

  // At run time when the dims are unknown.
  Variable x = matrix("x", DType::float64), y = matrix("y", DType::float64);
  msg = message_of([&] {
    eval(dot(x, y), {x, y},
         {Tensor::zeros(DType::float64, {2, 3}), Tensor::zeros(DType::float64, {4, 5})});
  });
  REQUIRE(msg.find("[2, 3]") != std::string::npos);
  REQUIRE(msg.find("[4, 5]") != std::string::npos);
  REQUIRE_THROWS_AS(
      eval(dot(x, y), {x, y},
           {Tensor::zeros(DType::float64, {2, 3}), Tensor::zeros(DType::float64, {4, 5})}),
      ShapeError);
  Variable p = tensor3("p", DType::float64), q = tensor3("q", DType::float64);
  REQUIRE_THROWS_AS(
      eval(matmul(p, q), {p, q},
           {Tensor::zeros(DType::float64, {2, 2, 3}), Tensor::zeros(DType::float64, {2, 4, 5})}),
      ShapeError);
  // A batch dim of 1 that the type did not declare does not broadcast.
  msg = message_of([&] {
    eval(matmul(p, q), {p, q},
         {Tensor::zeros(DType::float64, {1, 2, 3}), Tensor::zeros(DType::float64, {4, 3, 5})});
  });
  REQUIRE(msg.find("declare") != std::string::npos);
  REQUIRE_THROWS_AS(
      eval(matmul(p, q), {p, q},
           {Tensor::zeros(DType::float64, {1, 2, 3}), Tensor::zeros(DType::float64, {4, 3, 5})}),
      ShapeError);

  // bool operands and bad ranks.
  Variable flags = matrix("flags", DType::boolean);
  msg = message_of([&] { dot(flags, a); });
  REQUIRE(msg.find("bool") != std::string::npos);
  REQUIRE_THROWS_AS(dot(flags, a), TypeError);
  REQUIRE_THROWS_AS(matmul(a, flags), TypeError);
  REQUIRE_THROWS_AS(dot(tensor3("t", DType::float32), a), TypeError);
  REQUIRE_THROWS_AS(dot(scalar("s", DType::float32), a), TypeError);
  REQUIRE_THROWS_AS(matmul(scalar("s", DType::float32), a), TypeError);
  REQUIRE_THROWS_AS(apply(std::make_shared<Dot>(), {a, matrix("f64", DType::float64)}), TypeError);
}

TEST_CASE("dot: gradients in every rank combination", "[blas]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4}, {4}}, {{3, 4}, {4}}, {{4}, {4, 2}}, {{3, 4}, {4, 2}}, {{1, 4}, {4, 1}}};
  for (const auto& [sa, sb] : cases) {
    INFO(shape_str(sa) << " . " << shape_str(sb));
    const Tensor a = random_tensor(DType::float64, sa, 1);
    const Tensor b = random_tensor(DType::float64, sb, 2);
    const auto fn = [](const std::vector<Variable>& in) { return dot(in[0], in[1]); };
    REQUIRE_NOTHROW(verify_grad(fn, {a, b}));
    const std::string report = check_rop(fn, {a, b});
    INFO(report);
    REQUIRE(report.empty());
  }
}

TEST_CASE("matmul: gradients with batch broadcasting", "[blas]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 4}, {2, 4, 2}}, {{2, 1, 3, 4}, {5, 4, 2}}, {{3, 4}, {2, 4, 2}},   {{2, 3, 4}, {4, 2}},
      {{4}, {2, 4, 3}},       {{2, 3, 4}, {4}},          {{1, 3, 4}, {2, 4, 2}}};
  for (const auto& [sa, sb] : cases) {
    INFO(shape_str(sa) << " @ " << shape_str(sb));
    const Tensor a = random_tensor(DType::float64, sa, 3);
    const Tensor b = random_tensor(DType::float64, sb, 4);
    const auto fn = [](const std::vector<Variable>& in) { return matmul(in[0], in[1]); };
    REQUIRE_NOTHROW(verify_grad(fn, {a, b}));
    const std::string report = check_rop(fn, {a, b});
    INFO(report);
    REQUIRE(report.empty());
  }
}

TEST_CASE("matmul: op parameters and printing", "[blas]") {
  const auto op = MatMul::for_types(TensorType(DType::float32, {2, 1, 3, 4}),
                                    TensorType(DType::float32, {5, 4, 2}));
  REQUIRE(op->broadcast_a() == std::vector<bool>{false, true});
  REQUIRE(op->broadcast_b() == std::vector<bool>{true, false});
  REQUIRE(op->str() == "MatMul{batch=2, a broadcasts [1], b broadcasts [0]}");
  const auto same = MatMul::for_types(TensorType(DType::float64, {7, 1, 3, 4}),
                                      TensorType(DType::float64, {2, 4, 2}));
  REQUIRE(op->equals(*same));
  REQUIRE(op->hash() == same->hash());
  const auto other = MatMul::for_types(TensorType(DType::float32, {2, 3, 4}),
                                       TensorType(DType::float32, {2, 4, 2}));
  REQUIRE_FALSE(op->equals(*other));
  REQUIRE(Dot().equals(Dot()));
  REQUIRE_FALSE(Dot().equals(*op));
}
