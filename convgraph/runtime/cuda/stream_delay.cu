#include "convgraph/runtime/cuda/stream_delay.hpp"

namespace convgraph::cuda {
namespace {

__device__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spin_kernel(unsigned long long nanoseconds) {
  const unsigned long long start = global_ns();
  while (global_ns() - start < nanoseconds) {
#if __CUDA_ARCH__ >= 700
    __nanosleep(1000);
#endif
  }
}

}  // namespace

cudaError_t queue_delay(cudaStream_t stream, long long nanoseconds) {
  constexpr long long kMax = 2'000'000'000;
  if (nanoseconds <= 0) return cudaSuccess;
  if (nanoseconds > kMax) nanoseconds = kMax;
  spin_kernel<<<1, 1, 0, stream>>>(static_cast<unsigned long long>(nanoseconds));
  return cudaGetLastError();
}

}  // namespace convgraph::cuda
