// Lowering of the abstract convolutions on a CUDA device (spec 7.5): conv_dnn -> cuDNN
// (GpuDnnConv family), conv_gemm -> GpuCorrMM family. Both decline CPU nodes, and every node in
// a build without CUDA (or without cuDNN, for the first).
#pragma once

#include <vector>

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// conv_dnn on the GPU. Declines (ctx.decline) unshared kernels, asymmetric padding, dnn.enabled
// False, and cuDNN being unusable with dnn.enabled=auto; with dnn.enabled=True an unusable cuDNN
// is a DeviceError.
std::vector<Variable> lower_conv_to_cudnn(Node& node, const PassContext& ctx);

// conv_gemm on the GPU: AbstractConv on a CUDA device -> GpuCorrMM of the same direction and
// parameters (float16, float32, float64).
std::vector<Variable> lower_conv_to_gpu_corrmm(Node& node, const PassContext& ctx);

}  // namespace convgraph
