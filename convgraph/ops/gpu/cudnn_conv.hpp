// The cuDNN convolutions: GpuDnnConv, GpuDnnConvGradI, GpuDnnConvGradW and their 3-D
// forms, through cuDNN's legacy convolution API. Groups go through the group count; conv or cross
// mode comes from filter_flip. Only compiled when cuDNN is built in (CONVGRAPH_HAVE_CUDNN).
//
// As GpuCorrMM, a node takes the same inputs and ConvParams as the AbstractConv it replaces, plus
// the cuDNN options below, fixed when the graph is lowered (from the flags).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"

namespace convgraph {

struct CudnnConvOptions {
  // The algorithm flag value for the node's direction (dnn.conv.algo_fwd / algo_bwd_data /
  // algo_bwd_filter): a fixed algorithm name, guess_once, guess_on_shape_change, time_once or
  // time_on_shape_change.
  std::string algo;
  // dnn.conv.precision: as_input_f32, as_input, float16, float32, float64.
  std::string precision = "as_input_f32";
  // dnn.conv.allow_tf32: tensor-core TF32 math for float32 data.
  bool allow_tf32 = false;
  // dnn.conv.workspace_limit_mb in bytes; 0 = no fixed limit (runtime selection then considers
  // the free device memory, at most 4 GiB).
  std::int64_t workspace_limit_bytes = 0;
  // The autotune cache flags, for the persistent algorithm choices of time_* / guess_*.
  std::string autotune_cache = "read_write";
  std::string autotune_cache_path;

  bool operator==(const CudnnConvOptions&) const = default;
  std::string str() const;
};

// The options of CONFIG for DIRECTION.
CudnnConvOptions cudnn_options_from(const Config& config, ConvDirection direction);

class GpuDnnConv final : public ConcreteConv {
 public:
  // Throws ValueError for a fixed algorithm the direction / dimensionality does not have (some
  // algorithms of 2-D convolutions cannot be used for 3-D ones), and TypeError for float16
  // precision in a backward direction (disabled, as in the original, for the computation errors
  // of cuDNN's half-precision backward convolutions).
  GpuDnnConv(ConvDirection direction, ConvParams params, CudnnConvOptions options);

  const CudnnConvOptions& options() const { return options_; }

  // "GpuDnnConv", "GpuDnnConvGradI", "GpuDnnConvGradW" (3-D: the same names; str() shows it).
  std::string name() const override;
  // "GpuDnnConv{2d, <params>; <options>}"
  std::string str() const override;
  // Tensors on a CUDA device, floating dtypes, shared kernels, symmetric padding, and no float16
  // math in a backward direction.
  ConcreteConvRequirements requirements() const override;

 protected:
  // The kernel owns the node's descriptors and its algorithm choice (per *_once / per shape).
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
  std::string kernel_name(const Node& node) const override;
  bool same_options(const ConcreteConv& other) const override;
  std::size_t options_hash() const override;

 private:
  CudnnConvOptions options_;
};

// Whether cuDNN can be used on DEVICE (library loads, versions match, device supported); *WHY
// says why not.
bool cudnn_usable(Device device, std::string* why = nullptr);
// "9.14.0" (the library's version at run time).
std::string cudnn_version();

// Counters for tests: algorithm selections by cuDNN's heuristics and by timing
// (cudnnFind*AlgorithmEx) since the process started; a choice served from the in-memory or the
// on-disk cache is not counted.
struct CudnnAlgoStats {
  std::int64_t guessed = 0;
  std::int64_t timed = 0;
  std::int64_t cache_hits = 0;
};
CudnnAlgoStats cudnn_algo_stats();
// Forgets the in-memory algorithm cache (the on-disk cache stays).
void reset_cudnn_algo_cache();

// The registry row's hooks (optimizer/conv_registry.cpp): floating dtypes on a CUDA device,
// shared kernels, symmetric pads, where cuDNN is usable. dnn.enabled=False declines; True makes an
// unusable cuDNN a DeviceError instead of a decline.
ConvImplementationHooks cudnn_conv_hooks();

}  // namespace convgraph
