// A kernel that keeps a stream busy for a while: benchmarks queue it first so that the host can
// queue the timed calls ahead of the device, and events then measure device time only.
#pragma once

#include <cuda_runtime_api.h>

namespace convgraph::cuda {

// Queues on STREAM one single-thread kernel that spins for about NANOSECONDS (at most 2 s) on the
// device's global timer; the launch error, if any, is returned (cudaSuccess otherwise).
cudaError_t queue_delay(cudaStream_t stream, long long nanoseconds);

}  // namespace convgraph::cuda
