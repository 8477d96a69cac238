#include <fstream>

#include "convgraph/runtime/blas_config.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {
bool cpu_has_avx512() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" avx512f") != std::string::npos &&
             line.find(" avx512bw") != std::string::npos &&
             line.find(" avx512dq") != std::string::npos &&
             line.find(" avx512vl") != std::string::npos;
    }
  }
  return false;
}

// A float32 product through the BLAS-backed dot op, against a direct loop.
void check_gemm_still_right() {
  Variable a = matrix("a", DType::float32);
  Variable b = matrix("b", DType::float32);
  const Tensor ta = testing::random_tensor(DType::float32, {37, 53}, 1);
  const Tensor tb = testing::random_tensor(DType::float32, {53, 29}, 2);
  const Tensor got = testing::eval(dot(a, b), {a, b}, {ta, tb});
  const auto va = ta.to_vector<double>(), vb = tb.to_vector<double>();
  std::vector<double> want(37 * 29, 0.0);
  for (int i = 0; i < 37; ++i)
    for (int k = 0; k < 53; ++k)
      for (int j = 0; j < 29; ++j) want[i * 29 + j] += va[i * 53 + k] * vb[k * 29 + j];
  REQUIRE_ALLCLOSE(got.cast(DType::float64), Tensor::from_vector(want, {37, 29}), 1e-5, 1e-5);
}
}  // namespace

TEST_CASE("blas: blas.coretype selects OpenBLAS's kernels", "[blas-config]") {
  const std::string original = configure_blas_coretype("env");
  if (blas_corename() == "unknown") {
    WARN("this BLAS does not report its kernels; nothing to select");
    return;
  }
  if (cpu_has_avx512()) {
    REQUIRE(configure_blas_coretype("auto") == "SkylakeX");
    check_gemm_still_right();
    REQUIRE(configure_blas_coretype("Haswell") == "Haswell");
    check_gemm_still_right();
  } else {
    REQUIRE_FALSE(configure_blas_coretype("auto").empty());
    check_gemm_still_right();
  }
  REQUIRE_THROWS_AS(configure_blas_coretype("NoSuchCore"), ValueError);
  configure_blas_coretype("auto");
}
