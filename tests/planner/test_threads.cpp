// A compiled Function's CPU kernels run with the thread count of the configuration it was compiled
// with, not with the process-wide flag at call time.
#include <atomic>

#include "convgraph/runtime/cpu_threads.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

std::atomic<int> probed_threads{-1};

// Passes its input through and records the thread count a kernel would use.
class ThreadProbeOp final : public Op {
 public:
  std::string name() const override { return "ThreadProbe"; }
  bool equals(const Op& other) const override {
    return dynamic_cast<const ThreadProbeOp*>(&other) != nullptr;
  }
  std::size_t hash() const override { return 29; }
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override {
    return {inputs.at(0).type()};
  }
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    probed_threads = cpu_threads();
    outputs[0] = inputs[0].clone();
  }
};

Function probe_function(const std::string& flags) {
  const Variable x = vector("x", DType::float32);
  CompileOptions options;
  options.flags = flags;
  return compile({x}, {apply(std::make_shared<ThreadProbeOp>(), {x})}, options);
}

int probe(const Function& f) {
  probed_threads = -1;
  f({Tensor::from_vector(std::vector<float>{1, 2, 3}, {3})});
  return probed_threads;
}

}  // namespace

TEST_CASE("threads: scopes nest and fall back to the process-wide flag", "[threads]") {
  const ScopedFlags flags("threads=2");
  CHECK(cpu_threads() == 2);
  CHECK(cpu_threads_flag() == 2);
  {
    const ScopedCpuThreads outer(3);
    CHECK(cpu_threads() == 3);
    {
      const ScopedCpuThreads inner(1);
      CHECK(cpu_threads() == 1);
    }
    CHECK(cpu_threads() == 3);
    const ScopedCpuThreads all(0);
    CHECK(cpu_threads_flag() == 0);
    CHECK(cpu_threads() >= 1);
  }
  CHECK(cpu_threads() == 2);
}

TEST_CASE("threads: a Function runs with the threads it was compiled with", "[threads]") {
  const Function three = probe_function("threads=3");
  Function from_global;
  {
    const ScopedFlags flags("threads=5");
    from_global = probe_function("");
    CHECK(probe(three) == 3);  // not the process-wide 5
    CHECK(probe(from_global) == 5);
  }
  const ScopedFlags flags("threads=2");
  CHECK(probe(three) == 3);
  CHECK(probe(from_global) == 5);  // the configuration it was compiled with
  // Outside any call, a kernel follows the process-wide flag again.
  CHECK(cpu_threads() == 2);
}
