// The CUDA backend as plain C++ (no CUDA headers): what the device-independent runtime calls.
// Only compiled when CUDA is built in (CONVGRAPH_HAVE_CUDA).
#pragma once

#include <memory>
#include <string>

#include "convgraph/runtime/allocator.hpp"
#include "convgraph/runtime/device_backend.hpp"

namespace convgraph::cuda {

// Number of usable CUDA devices; 0 with *WHY set when there is no driver or no device.
int device_count(std::string* why = nullptr);
bool available(int index, std::string* why);
std::string describe(int index);
// What a tuned choice depends on: "NVIDIA H100 80GB HBM3; sm_90; 132 SMs; CUDA 13.0; cuBLAS
// 13.1.0" (the autotune cache key's device part).
std::string fingerprint(int index);

// The caching allocator of device INDEX (created on first use; DeviceError when unusable).
Allocator& device_allocator(int index);

void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);
std::shared_ptr<DeviceStream> create_stream(int index);
// The stream current on this thread for device INDEX, as a DeviceStream that does not own it.
std::shared_ptr<DeviceStream> current_stream_view(int index);

}  // namespace convgraph::cuda
