// The conformance suite of the convolution implementations: every row of the registry that is
// built in (the CPU rows here, the CUDA rows in [cuda] cases that skip without a GPU) against the
// reference, over the grid of conv_grid.hpp, with the opt-outs of conv_opt_outs.hpp. The default
// suite runs a sample of the large grids (every EVERY-th case) and the whole grid of kernel sizes
// of 1; the [slow] cases run every case.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "conformance/conv_conformance.hpp"
#include "support/catch.hpp"

using namespace convgraph;
using namespace convgraph::testing;

namespace {

// The default suite's sampling of the large grids (see sample(); the grid test checks that each
// shares no factor with its grid's lists).
constexpr std::size_t kEvery2d = 13;
constexpr std::size_t kEvery3d = 7;
constexpr std::size_t kEveryUnshared = 13;

// The CPU rows run on one thread: on problems this small a parallel region only adds barriers,
// and OpenMP spinning at them on a loaded machine multiplies the time. The threaded drivers have
// tests of their own. (A process-wide flag: the kernels read the thread count at run time from
// the global configuration, not from the compile's flags.)
constexpr const char* kCpuFlags = "threads=1";

void run_rows(DeviceKind kind, const std::vector<ConvCase>& cases, const std::string& flags) {
  const ScopedFlags scoped(flags);
  for (const ConvImplementation* row : conformance_rows(kind)) {
    DYNAMIC_SECTION(row->name) {
      check_conformance(run_conformance(*row, cases));
    }
  }
}

}  // namespace

TEST_CASE("the opt-out table names registered implementations", "[conformance]") {
  for (const ConvOptOut& o : conv_opt_outs()) {
    INFO(o.implementation << ": " << o.what);
    CHECK(conv_registry().find(o.implementation) != nullptr);
    CHECK_FALSE(o.decline_says.empty());
    CHECK_FALSE(o.why.empty());
  }
}

TEST_CASE(
    "the grid has every kernel size of 1 on one axis (shared and unshared) and "
    "pointwise problems with batch 1 and more in every dtype",
    "[conformance]") {
  const std::vector<ConvCase> ones = make_grid(grid_ones_2d_spec());
  for (DType dtype : {DType::float64, DType::float32, DType::float16}) {
    for (bool unshared : {false, true}) {
      for (const Shape& k : {Shape{1, 1}, Shape{1, 3}, Shape{3, 1}}) {
        INFO(dtype_name(dtype) << (unshared ? ", unshared, " : ", shared, ") << shape_str(k));
        std::set<std::int64_t> pointwise_batches;
        int padded_or_strided = 0;
        for (const ConvCase& c : ones) {
          if (c.dtype != dtype || c.params.unshared != unshared || c.kernel_spatial() != k)
            continue;
          if (c.pointwise()) pointwise_batches.insert(c.batch());
          if (!c.pointwise()) ++padded_or_strided;
        }
        if (k == Shape{1, 1}) {
          CHECK(pointwise_batches.count(1) == 1);
          CHECK(pointwise_batches.size() >= 2);
        }
        CHECK(padded_or_strided > 0);
      }
    }
  }
  const std::vector<ConvCase> ones_3d = make_grid(grid_ones_3d_spec());
  for (const Shape& k : {Shape{1, 1, 1}, Shape{1, 3, 3}, Shape{3, 1, 1}}) {
    INFO(shape_str(k));
    CHECK(std::any_of(ones_3d.begin(), ones_3d.end(),
                      [&](const ConvCase& c) { return c.kernel_spatial() == k; }));
  }
  // The sampled large grids keep every kernel size and dtype.
  for (const GridSpec& spec : {grid_2d_spec(), grid_3d_spec(), grid_unshared_spec()}) {
    const std::size_t every = spec.name == "2-D"   ? kEvery2d
                              : spec.name == "3-D" ? kEvery3d
                                                   : kEveryUnshared;
    CHECK(sampling_is_coprime(spec, every));
    const std::vector<ConvCase> sampled = sample(make_grid(spec), every);
    for (const Shape& k : spec.kernels) {
      for (DType dtype : spec.dtypes) {
        INFO(spec.name << " sampled every " << every << ": " << shape_str(k) << ", "
                       << dtype_name(dtype));
        CHECK(std::any_of(sampled.begin(), sampled.end(), [&](const ConvCase& c) {
          return c.kernel_spatial() == k && c.dtype == dtype;
        }));
      }
    }
  }
}

TEST_CASE(
    "every decline of a CPU implementation on the whole grid is covered by an "
    "opt-out and every opt-out is used",
    "[conformance]") {
  const std::vector<ConvCase> all = full_conformance_grid();
  for (const ConvImplementation* row : conformance_rows(DeviceKind::cpu)) {
    DYNAMIC_SECTION(row->name) {
      check_conformance(audit_opt_outs(*row, all));
    }
  }
}

TEST_CASE("CPU implementations match the reference on the 2-D grid (sampled)", "[conformance]") {
  run_rows(DeviceKind::cpu, sample(make_grid(grid_2d_spec()), kEvery2d), kCpuFlags);
}

TEST_CASE("CPU implementations match the reference on the 3-D grid (sampled)", "[conformance]") {
  run_rows(DeviceKind::cpu, sample(make_grid(grid_3d_spec()), kEvery3d), kCpuFlags);
}

TEST_CASE("CPU implementations match the reference on the unshared grid (sampled)",
          "[conformance]") {
  run_rows(DeviceKind::cpu, sample(make_grid(grid_unshared_spec()), kEveryUnshared), kCpuFlags);
}

TEST_CASE(
    "CPU implementations match the reference on kernel sizes of 1 in every "
    "direction (shared and unshared)",
    "[conformance]") {
  std::vector<ConvCase> cases = make_grid(grid_ones_2d_spec());
  const std::vector<ConvCase> cases_3d = make_grid(grid_ones_3d_spec());
  cases.insert(cases.end(), cases_3d.begin(), cases_3d.end());
  run_rows(DeviceKind::cpu, cases, kCpuFlags);
}

TEST_CASE("CPU implementations match the reference on the whole grid", "[conformance][slow]") {
  run_rows(DeviceKind::cpu, full_conformance_grid(), kCpuFlags);
}

// ---- CUDA rows (not run on this machine without a GPU) ----

TEST_CASE(
    "every decline of a CUDA implementation on the whole grid is covered by an "
    "opt-out and every opt-out is used",
    "[conformance][cuda]") {
  require_gpu_or_skip();
  const std::vector<ConvCase> all = full_conformance_grid();
  for (const ConvImplementation* row : conformance_rows(DeviceKind::cuda)) {
    DYNAMIC_SECTION(row->name) {
      check_conformance(audit_opt_outs(*row, all));
    }
  }
}

TEST_CASE(
    "CUDA implementations match the reference on the sampled grids and kernel "
    "sizes of 1",
    "[conformance][cuda]") {
  require_gpu_or_skip();
  std::vector<ConvCase> cases = sample(make_grid(grid_2d_spec()), kEvery2d);
  for (const std::vector<ConvCase>& more :
       {sample(make_grid(grid_3d_spec()), kEvery3d),
        sample(make_grid(grid_unshared_spec()), kEveryUnshared), make_grid(grid_ones_2d_spec()),
        make_grid(grid_ones_3d_spec())}) {
    cases.insert(cases.end(), more.begin(), more.end());
  }
  run_rows(DeviceKind::cuda, cases, "");
}

TEST_CASE("CUDA implementations match the reference on the whole grid",
          "[conformance][cuda][slow]") {
  require_gpu_or_skip();
  run_rows(DeviceKind::cuda, full_conformance_grid(), "");
}
