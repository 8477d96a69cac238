#include "convgraph/runtime/cpu_threads.hpp"

#include <omp.h>

#include <algorithm>

#include "convgraph/base/config.hpp"

namespace convgraph {
namespace {

// -1: no scope is active on this thread (the process-wide flag applies).
thread_local std::int64_t scoped_threads = -1;

}  // namespace

std::int64_t cpu_threads_flag() {
  return scoped_threads >= 0 ? scoped_threads : global_config().get_int("threads");
}

int cpu_threads() {
  const std::int64_t configured = cpu_threads_flag();
  return std::max(1, configured > 0 ? static_cast<int>(configured) : omp_get_max_threads());
}

ScopedCpuThreads::ScopedCpuThreads(std::int64_t threads_flag) : previous_(scoped_threads) {
  scoped_threads = std::max<std::int64_t>(0, threads_flag);
}

ScopedCpuThreads::~ScopedCpuThreads() {
  scoped_threads = previous_;
}

}  // namespace convgraph
