// The LLVM back end against the unfused kernels and the interpreter, and its caches. In a build
// without LLVM these tests are skipped (CTest lists them as such), except the second-process test,
// which checks there that the interpreter runs the kernels and nothing is written to the cache.
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "codegen/fused_reference.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/codegen/fused_kernel.hpp"
#include "convgraph/codegen/object_cache.hpp"
#include "convgraph/convgraph.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using namespace convgraph::codegen;
using convgraph::testing::compare_tensors;
using convgraph::testing::random_tensor;
using convgraph::testing::reference_outputs;

namespace {

bool skip_without_llvm() {
  if (llvm_backend_built_in()) return false;
  convgraph::testing::skip_test(
      fmt::format("this build has no LLVM back end ({})", llvm_backend_missing_reason()));
  return true;
}

// A fresh cache folder for one test, removed at the end.
struct TempCacheDir {
  std::filesystem::path path;
  TempCacheDir()
      : path(std::filesystem::temp_directory_path() /
             fmt::format("convgraph-codegen-test-{}-{}", ::getpid(), counter()++)) {
    std::filesystem::remove_all(path);
  }
  ~TempCacheDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

FusedIR bias_relu_ir(DType dtype) {
  FusedIRBuilder b(4, "bias_relu");
  const int x = b.load(b.input(dtype));
  const int bias = b.load(b.input(dtype, {true, false, true, true}));
  b.output(b.op(ScalarOp::relu, {b.op(ScalarOp::add, {x, bias})}));
  return b.build();
}

void check_random_cases(std::uint64_t first, std::uint64_t last, bool reduction, int ulps,
                        double rtol) {
  ScopedFlags flags("codegen.disk_cache=off");
  for (std::uint64_t seed = first; seed < last; ++seed) {
    const auto c = convgraph::testing::random_fused_case(seed, reduction);
    INFO(c.ir.to_string() << "shape " << shape_str(c.shape));
    const auto expected = reference_outputs(c.ir, c.inputs, c.shape);
    std::vector<Tensor> outputs;
    for (std::size_t k = 0; k < expected.size(); ++k) {
      outputs.push_back(Tensor::empty(c.ir.output_dtype(k), expected[k].shape()));
    }
    compile_fused(c.ir, FusedBackend::llvm)->run(c.inputs, outputs, c.shape);
    for (std::size_t k = 0; k < expected.size(); ++k) {
      const std::string diff = compare_tensors(outputs[k], expected[k], ulps, rtol);
      INFO("seed " << seed << " output " << k << ": " << diff);
      REQUIRE(diff.empty());
    }
  }
}

}  // namespace

TEST_CASE("llvm: LLVM kernels equal the unfused kernels on random IR", "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  // The same libm functions and IEEE operations in the same order: bit for bit.
  check_random_cases(1, 301, false, 0, 0.0);
}

TEST_CASE("llvm: LLVM reductions equal the Reduce op on random IR", "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  check_random_cases(1000, 1200, true, 4, 1e-6);
}

TEST_CASE(
    "llvm: LLVM bias + relu, bias gradient and mean over odd, large, empty and strided "
    "shapes",
    "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  ScopedFlags flags("codegen.disk_cache=off");
  for (DType dtype : {DType::float32, DType::float64, DType::float16}) {
    for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{2, 7, 3, 5}, Shape{1, 33, 1, 1},
                               Shape{3, 4, 0, 5}, Shape{1, 3, 1000003, 1}, Shape{2, 16, 9, 33}}) {
      INFO(dtype_name(dtype) << " shape " << shape_str(shape));
      const FusedIR ir = bias_relu_ir(dtype);
      const Tensor xt = random_tensor(dtype, shape, 3);
      const Tensor bt = random_tensor(dtype, {1, shape[1], 1, 1}, 4);
      const auto out = (*compile_fused(ir, FusedBackend::llvm))({xt, bt});
      REQUIRE(compare_tensors(out[0], reference_outputs(ir, {xt, bt}, shape)[0]).empty());
      // A transposed view of x.
      const Tensor xs =
          random_tensor(dtype, {shape[0], shape[1], shape[3], shape[2]}, 5).permute({0, 1, 3, 2});
      const auto outs = (*compile_fused(ir, FusedBackend::llvm))({xs, bt});
      REQUIRE(compare_tensors(outs[0], reference_outputs(ir, {xs, bt}, shape)[0]).empty());

      for (FusedReduceKind kind : {FusedReduceKind::sum, FusedReduceKind::mean}) {
        FusedIRBuilder g(4, "bias_grad");
        g.output(g.load(g.input(dtype)));
        g.reduce(kind, {0, 2, 3});
        const FusedIR grad = g.build();
        const auto db = (*compile_fused(grad, FusedBackend::llvm))({xt});
        REQUIRE(db[0].shape() == Shape{shape[1]});
        const std::string diff = compare_tensors(db[0], reference_outputs(grad, {xt}, shape)[0], 4,
                                                 dtype == DType::float16 ? 1e-3 : 1e-6);
        INFO(diff);
        REQUIRE(diff.empty());
      }
    }
  }
}

TEST_CASE("llvm: LLVM integer division by zero is an error naming the kernel", "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  ScopedFlags flags("codegen.disk_cache=off");
  FusedIRBuilder b(1, "int_div");
  const int a = b.load(b.input(DType::int64));
  const int d = b.load(b.input(DType::int64));
  b.output(b.op(ScalarOp::int_div, {a, d}));
  const auto kernel = compile_fused(b.build(), FusedBackend::llvm);
  const Tensor at = random_tensor(DType::int64, {100000}, 1, -1000, 1000);
  Tensor dt = random_tensor(DType::int64, {100000}, 2, 1, 50);
  const auto out = (*kernel)({at, dt});
  REQUIRE(compare_tensors(out[0], reference_outputs(kernel->ir(), {at, dt}, {100000})[0]).empty());
  dt.data<std::int64_t>()[77777] = 0;
  const std::string msg = convgraph::testing::message_of<ValueError>([&] { (*kernel)({at, dt}); });
  CHECK(convgraph::testing::contains(msg, "fused kernel 'int_div'"));
  CHECK(convgraph::testing::contains(msg, "division or modulo by zero"));
}

TEST_CASE(
    "llvm: the disk cache is reused without generating, and a corrupt entry is "
    "regenerated",
    "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  TempCacheDir dir;
  ScopedFlags flags("codegen.disk_cache=on,codegen.cache_dir=" + dir.path.string());
  // An IR no other test uses, so that the process's memory cache does not already hold it.
  FusedIRBuilder b(2, "cached");
  const int x = b.load(b.input(DType::float32));
  b.output(b.op(ScalarOp::mul, {b.op(ScalarOp::tanh, {x}), b.constant(0.1234567, DType::float32)}));
  const FusedIR ir = b.build();
  const Tensor xt = random_tensor(DType::float32, {37, 41}, 9);
  const Tensor expected = reference_outputs(ir, {xt}, {37, 41})[0];
  CodegenCounters& counters = codegen_counters();

  const std::int64_t compiled0 = counters.llvm_compilations;
  REQUIRE(compare_tensors((*compile_fused(ir))({xt})[0], expected).empty());
  REQUIRE(counters.llvm_compilations == compiled0 + 1);
  std::vector<std::filesystem::path> entries;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) entries.push_back(e.path());
  REQUIRE(entries.size() == 1);
  REQUIRE(entries[0].extension() == ".o");

  // As a second process: nothing in memory, everything on disk.
  clear_codegen_memory_cache();
  const std::int64_t hits0 = counters.disk_hits;
  REQUIRE(compare_tensors((*compile_fused(ir))({xt})[0], expected).empty());
  CHECK(counters.llvm_compilations == compiled0 + 1);
  CHECK(counters.disk_hits == hits0 + 1);

  // A truncated entry is ignored (one warning), regenerated and rewritten.
  const auto size = std::filesystem::file_size(entries[0]);
  std::filesystem::resize_file(entries[0], size / 2);
  clear_codegen_memory_cache();
  const std::int64_t rejected0 = counters.rejected_entries;
  REQUIRE(compare_tensors((*compile_fused(ir))({xt})[0], expected).empty());
  CHECK(counters.rejected_entries == rejected0 + 1);
  CHECK(counters.llvm_compilations == compiled0 + 2);
  CHECK(std::filesystem::file_size(entries[0]) == size);

  // A foreign file under the entry's name (another key, garbage) is treated the same way.
  {
    std::ofstream garbage(entries[0], std::ios::binary | std::ios::trunc);
    garbage << "convgraph-codegen-object 1\n5\nother\n3\nabc\nend\n";
  }
  clear_codegen_memory_cache();
  REQUIRE(compare_tensors((*compile_fused(ir))({xt})[0], expected).empty());
  CHECK(counters.rejected_entries == rejected0 + 2);
  CHECK(counters.llvm_compilations == compiled0 + 3);

  // codegen.disk_cache=off neither reads nor writes.
  clear_codegen_memory_cache();
  ScopedFlags off("codegen.disk_cache=off");
  const std::int64_t hits1 = counters.disk_hits;
  REQUIRE(compare_tensors((*compile_fused(ir))({xt})[0], expected).empty());
  CHECK(counters.disk_hits == hits1);
  CHECK(counters.llvm_compilations == compiled0 + 4);
}

TEST_CASE("llvm: the memory cache shares code between kernels of one IR", "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  ScopedFlags flags("codegen.disk_cache=off");
  const FusedIR ir = bias_relu_ir(DType::float32);
  const Tensor xt = random_tensor(DType::float32, {2, 3, 4, 5}, 1);
  const Tensor bt = random_tensor(DType::float32, {1, 3, 1, 1}, 2);
  (*compile_fused(ir))({xt, bt});
  const std::int64_t compiled = codegen_counters().llvm_compilations;
  (*compile_fused(ir))({xt, bt});
  CHECK(codegen_counters().llvm_compilations == compiled);
}

TEST_CASE(
    "llvm: a second process generates nothing: it loads every kernel from the disk cache (without "
    "LLVM: the interpreter runs them and nothing is written)",
    "[codegen][llvm]") {
  TempCacheDir dir;
  auto run = [&](int n) {
    const std::filesystem::path out = dir.path.string() + fmt::format(".out{}", n);
    const std::string command = fmt::format("'{}' '{}' > '{}'", CONVGRAPH_CODEGEN_SECOND_PROCESS,
                                            dir.path.string(), out.string());
    const int status = std::system(command.c_str());
    std::ifstream in(out);
    std::string line;
    std::getline(in, line);
    std::filesystem::remove(out);
    INFO(command << " -> " << line);
    REQUIRE(status == 0);
    return line;
  };
  if (llvm_backend_built_in()) {
    CHECK(run(1) == "backend=llvm generated=2 loaded=0");
    CHECK(run(2) == "backend=llvm generated=0 loaded=2");
    CHECK(std::filesystem::exists(dir.path));
  } else {
    // Without LLVM the kernels run on the interpreter (the helper checks their results), and the
    // disk cache, on by default, is neither read nor written.
    CHECK(run(1) == "backend=interpreter generated=0 loaded=0");
    CHECK(run(2) == "backend=interpreter generated=0 loaded=0");
    CHECK(!std::filesystem::exists(dir.path));
  }
}

TEST_CASE("llvm: an LLVM failure is an error naming the kernel, or a logged fallback",
          "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  ScopedFlags flags("codegen.disk_cache=off");
  struct Injection {
    Injection() { inject_codegen_failure_for_testing("unsupported instruction (injected)"); }
    ~Injection() { inject_codegen_failure_for_testing(""); }
  } injection;
  FusedIRBuilder b(1, "will_fail");
  const int x = b.load(b.input(DType::float64));
  b.output(b.op(ScalarOp::sqrt, {b.op(ScalarOp::abs, {x})}));
  const FusedIR ir = b.build();
  const Tensor xt = random_tensor(DType::float64, {1000}, 3);
  const std::string msg = convgraph::testing::message_of<ConvGraphError>(
      [&] { (*compile_fused(ir, FusedBackend::llvm))({xt}); });
  CHECK(convgraph::testing::contains(msg, "fused kernel 'will_fail'"));
  CHECK(convgraph::testing::contains(msg, "unsupported instruction (injected)"));

  ScopedFlags fallback("codegen.fallback=interpreter");
  const auto kernel = compile_fused(ir, FusedBackend::llvm);
  const std::int64_t compiled = codegen_counters().llvm_compilations;
  REQUIRE(compare_tensors((*kernel)({xt})[0], reference_outputs(ir, {xt}, {1000})[0]).empty());
  CHECK(codegen_counters().llvm_compilations == compiled);
}

TEST_CASE("llvm: a function's own codegen.cache_dir flag chooses where its kernels are cached",
          "[codegen][llvm]") {
  if (skip_without_llvm()) return;
  // The flag given to compile(), not the process's: kernels made while compiling go there.
  TempCacheDir dir;
  const Variable x = tensor("x", DType::float32, {33, 7});
  const Variable y = tanh(x * 0.7654321) + x;  // an expression no other test fuses
  CompileOptions options;
  options.flags = "codegen.disk_cache=on,codegen.cache_dir=" + dir.path.string();
  clear_codegen_memory_cache();
  const Function f = compile({x}, {y}, options);
  std::size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    if (e.path().extension() == ".o") ++entries;
  }
  CHECK(entries >= 1);
  // Outside the compile the process's flags apply again.
  CHECK(object_cache_options().dir != dir.path.string());
  const Tensor xt = random_tensor(DType::float32, {33, 7}, 4);
  const std::vector<float> got = f({xt})[0].to_vector<float>();
  const std::vector<float> in = xt.to_vector<float>();
  for (std::size_t i = 0; i < in.size(); ++i) {
    CHECK(std::abs(got[i] - (std::tanh(in[i] * 0.7654321f) + in[i])) <= 1e-5f);
  }
}
