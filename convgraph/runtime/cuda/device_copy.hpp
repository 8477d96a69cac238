// Element-wise copy between two tensors on the same CUDA device, any strides, dtype converted.
#pragma once

#include <cuda_runtime_api.h>

#include "convgraph/runtime/tensor.hpp"

namespace convgraph::cuda {

// DST and SRC: same shape, same device, rank <= 8 (after merging nothing; higher ranks are an
// UnsupportedError).
void strided_copy(const Tensor& dst, const Tensor& src, cudaStream_t stream);

}  // namespace convgraph::cuda
