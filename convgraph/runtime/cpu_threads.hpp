// The thread count of the CPU kernels running now.
//
// A compiled Function runs with the `threads` value of the configuration it was compiled with
// (CompileOptions::flags or ::config), not with whatever the process-wide flags say when it is
// called: the executor and compile() set it for the calling thread with ScopedCpuThreads, and
// every CPU kernel asks cpu_threads(). Outside such a scope (a kernel called directly, an op's
// perform from a test) the process-wide `threads` flag applies.
#pragma once

#include <cstdint>

namespace convgraph {

// The threads a CPU kernel's parallel loops use now: the innermost ScopedCpuThreads' count,
// else the process-wide `threads` flag; either way 0 resolves to OpenMP's default (all cores, or
// OMP_NUM_THREADS). Always >= 1.
int cpu_threads();

// The `threads` value in force now (0 = OpenMP's default), as the autotune key records it.
std::int64_t cpu_threads_flag();

// Sets the `threads` value (0 = OpenMP's default) of the calling thread for the scope's
// lifetime; scopes nest.
class ScopedCpuThreads {
 public:
  explicit ScopedCpuThreads(std::int64_t threads_flag);
  ~ScopedCpuThreads();
  ScopedCpuThreads(const ScopedCpuThreads&) = delete;
  ScopedCpuThreads& operator=(const ScopedCpuThreads&) = delete;

 private:
  std::int64_t previous_;
};

}  // namespace convgraph
