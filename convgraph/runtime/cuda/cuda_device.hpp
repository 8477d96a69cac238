// CUDA runtime helpers for the code that launches device work (runtime/cuda and ops/gpu): error
// checks that throw DeviceError, device properties, the current stream, the cuBLAS handle.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/device.hpp"

namespace convgraph::cuda {

// Throws DeviceError "WHAT: <CUDA's message> (<error name>)" unless STATUS is cudaSuccess. An
// out-of-memory status throws MemoryError instead.
void check(cudaError_t status, const char* what);
void check(cudaError_t status, const std::string& what);
// The same for cuBLAS statuses.
void check_cublas(cublasStatus_t status, const std::string& what);
// Checks for an error from the last kernel launch.
void check_launch(const char* kernel_name);

struct DeviceProperties {
  std::string name;
  int major = 0;
  int minor = 0;
  int sm_count = 0;
  std::size_t total_memory = 0;
  std::size_t shared_memory_per_block = 0;
  std::size_t l2_cache_bytes = 0;
};
const DeviceProperties& properties(int index);

// Makes INDEX the calling thread's CUDA device (cheap when it already is).
void set_device(int index);
// The stream that device work on this thread goes to: the one a Function entered (see
// DeviceStream), else the legacy default stream, which orders itself with every other stream.
cudaStream_t current_stream(int index);
// Waits for the current stream of device INDEX.
void synchronize_current(int index);

// The cuBLAS handle of device INDEX for this thread (created once), bound to the current stream.
cublasHandle_t cublas_handle(int index);
// "13.1.0"
std::string cublas_version();
std::string runtime_version();

// Free bytes of device INDEX that an allocation could get: free memory reported by the driver
// plus blocks the caching allocator holds unused.
std::size_t free_memory(int index);
// Gives the caching allocator's unused blocks back to the driver (after waiting for the device).
void release_cached(int index);

// Launch geometry for N independent elements.
inline unsigned int blocks_for(long long n, unsigned int threads) {
  const long long b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(b < 1 ? 1 : (b > 65535LL * 32 ? 65535LL * 32 : b));
}

}  // namespace convgraph::cuda
