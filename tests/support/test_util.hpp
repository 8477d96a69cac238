// Helpers shared by the tests: random data, comparisons, compiling and running small graphs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convgraph/convgraph.hpp"

namespace convgraph::testing {

// Uniform values in [LOW, HIGH) (integers: rounded down; bool: random true/false).
Tensor random_tensor(DType dtype, const Shape& shape, std::uint64_t seed, double low = -1.0,
                     double high = 1.0);

// Largest |a - b| over all elements after converting both to float64; SHAPES must match.
double max_abs_diff(const Tensor& a, const Tensor& b);

// How many nodes of the compiled graph of F run the op called NAME.
std::size_t count_ops(const Function& f, const std::string& name);
// Returns an empty string when every element satisfies |a - b| <= atol + rtol * |b| and the
// dtypes and shapes are equal; otherwise a description of the worst element.
std::string allclose_report(const Tensor& actual, const Tensor& expected, double rtol = 1e-5,
                            double atol = 1e-8);
// Default tolerances for a dtype (rtol = atol): float64 1e-10, float32 1e-5, float16 1e-2,
// integers and bool 0.
double default_tolerance(DType dtype);

// Compiles OUTPUTS from INPUTS with FLAGS and runs it once on ARGS.
std::vector<Tensor> run_graph(const std::vector<Variable>& inputs,
                              const std::vector<Variable>& outputs, const std::vector<Tensor>& args,
                              const std::string& flags = "");
// Convenience: one output.
Tensor eval(const Variable& output, const std::vector<Variable>& inputs = {},
            const std::vector<Tensor>& args = {}, const std::string& flags = "");

// Checks Rop(fn(x), x, v) at POINTS against central finite differences of fn along random
// directions V (float64 inputs expected). Returns an empty string on success, else a report.
std::string check_rop(const std::function<Variable(const std::vector<Variable>&)>& fn,
                      const std::vector<Tensor>& points, double tolerance = 1e-6,
                      std::uint64_t seed = 7);

// Marks the running test as skipped, saying WHY (a component this build lacks); the caller returns
// right after. The warning's text starts with kSkipMarker, which CTest reads as "skipped" (every
// test carries it as SKIP_REGULAR_EXPRESSION, see ConvgraphCatchAddTests.cmake), so such a test is
// listed as Skipped rather than Passed; run directly, it passes with the warning printed.
inline constexpr const char* kSkipMarker = "SKIPPED (whole test): ";
void skip_test(const std::string& why);

// For [cuda] tests: returns when a CUDA device can be used. Otherwise prints why ("SKIPPED: ...")
// and ends the test process with exit code 77, which CTest reports as skipped (the cuda tests
// carry SKIP_RETURN_CODE 77), so a machine without a GPU shows every GPU test as skipped.
void require_gpu_or_skip();

}  // namespace convgraph::testing

// REQUIRE that two tensors are close; prints the report on failure.
#define REQUIRE_ALLCLOSE(actual, expected, rtol, atol)                               \
  do {                                                                               \
    const std::string convgraph_report_ =                                            \
        ::convgraph::testing::allclose_report((actual), (expected), (rtol), (atol)); \
    INFO(convgraph_report_);                                                         \
    REQUIRE(convgraph_report_.empty());                                              \
  } while (false)
