// Private to the cuDNN convolution (cudnn_conv.cpp): descriptors, the tables of the algorithms the
// dnn.conv.algo_* flags name, the calls into cuDNN's legacy convolution API, and the algorithm
// cache (in memory, shared by every kernel of the process, and persisted through the autotune
// cache).
//
// Only compiled with cuDNN (CONVGRAPH_HAVE_CUDNN); cudnn.h is visible inside the library only.
#pragma once

#include "convgraph/build_config.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "convgraph/runtime/cuda/cudnn_handle.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::cudnn_detail {

// ---- algorithm names (the values of the dnn.conv.algo_* flags) ----

// The fixed algorithm names the flag of DIRECTION accepts, in the flag's order.
const std::vector<std::string>& fixed_algorithm_names(ConvDirection direction);
// The fixed algorithms that exist for 3-D convolutions.
bool fixed_algorithm_allowed_in_3d(ConvDirection direction, const std::string& name);
// guess_once, guess_on_shape_change, time_once, time_on_shape_change.
bool is_runtime_algorithm(const std::string& name);
// The cuDNN enum value of a fixed algorithm name (-1 when the direction has no such name).
int algorithm_value(ConvDirection direction, const std::string& name);
// The name of a cuDNN enum value: the flag's name, or for the values no flag names (forward
// DIRECT, backward-filter WINOGRAD) a name of our own.
std::string algorithm_name(ConvDirection direction, int value);
// The value no flag can make worse: IMPLICIT_GEMM (forward) / ALGO_0 (backward), the 'none' of
// each direction, which needs little or no workspace.
int none_algorithm(ConvDirection direction);
// Every enum value of the direction (CUDNN_CONVOLUTION_*_ALGO_COUNT of them).
int algorithm_count(ConvDirection direction);

std::string math_name(cudnnMathType_t math);
std::optional<cudnnMathType_t> parse_math(const std::string& name);

// ---- descriptors (RAII) ----

class TensorDesc {
 public:
  TensorDesc(cudnnDataType_t type, const Shape& shape);  // fully packed (C order)
  ~TensorDesc();
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc(cudnnDataType_t type, const Shape& shape);  // (M, C / G, k...), NCHW order
  ~FilterDesc();
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

// One problem: shapes, padding and the (data, compute) types, everything but the math type.
struct Geometry {
  ConvDirection direction = ConvDirection::forward;
  int convdim = 2;
  Shape image, kernel, output;  // full shapes: (B, C, ...), (M, C / G, ...), (B, M, ...)
  std::vector<int> pads, strides, dilations;
  int groups = 1;
  bool flip = true;
  cudnnDataType_t data_type = CUDNN_DATA_FLOAT;
  cudnnDataType_t compute_type = CUDNN_DATA_FLOAT;
};

class ConvDesc {
 public:
  ConvDesc(const Geometry& g, cudnnMathType_t math);
  ~ConvDesc();
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }
  cudnnMathType_t math() const { return math_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
  cudnnMathType_t math_;
};

// The geometry's tensor and filter descriptors.
struct Descriptors {
  explicit Descriptors(Geometry geometry);
  Geometry g;
  TensorDesc image, output;
  FilterDesc kernel;
};

// ---- calls ----

// Pointers of one call, by role: forward reads x (image), w (kernel) and writes y; backward
// data reads w, dy and writes dx; backward filter reads x, dy and writes dw.
struct Buffers {
  const void* a = nullptr;  // the direction's first input: x, w, x
  const void* b = nullptr;  // the second: w, dy, dy
  void* out = nullptr;      // y, dx, dw
};

// cudnnGet*WorkspaceSize for ALGO.
cudnnStatus_t workspace_size(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv,
                             int algo, std::size_t* bytes);
// The convolution (alpha 1, beta 0).
cudnnStatus_t launch(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv, int algo,
                     const Buffers& buffers, void* workspace, std::size_t workspace_bytes);
// The output dims cuDNN computes for the forward geometry, to check ours against.
Shape cudnn_output_shape(const Descriptors& d, const ConvDesc& conv);

// One algorithm choice: what a selection ranks and the caches keep. Two kinds: a legacy
// algorithm (ALGO, MATH) run through cudnnConvolutionForward & co., or an engine configuration of
// the graph API (ENGINE non-empty: EngineChoice::str(), "engine=12;knobs=1:0,3:2"; ALGO and MATH
// are then unused) run through an execution plan (cudnn_graph.hpp).
struct Candidate {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  double seconds = 0;  // as timed (cudnnFind*AlgorithmEx, or events for engines); 0 when guessed
  std::string engine;
  bool is_engine() const { return !engine.empty(); }
  bool operator==(const Candidate& o) const {
    return engine == o.engine && (is_engine() || (algo == o.algo && math == o.math));
  }
};

// cudnnGet*Algorithm_v7: the successful results whose workspace is at most LIMIT, in cuDNN's
// order. Throws on errors other than an empty answer.
std::vector<Candidate> guess_algorithms(cudnnHandle_t handle, const Descriptors& d,
                                        const ConvDesc& conv, std::size_t limit);
// The largest workspace any algorithm of the direction needs (at most LIMIT), for timing.
std::size_t largest_workspace(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv,
                              std::size_t limit);
// cudnnFind*AlgorithmEx on BUFFERS (OUT a scratch buffer) with WORKSPACE: the successful results,
// fastest first.
std::vector<Candidate> time_algorithms(cudnnHandle_t handle, const Descriptors& d,
                                       const ConvDesc& conv, const Buffers& buffers,
                                       void* workspace, std::size_t workspace_bytes);

// ---- the algorithm cache ----

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, cuDNN 9.14.0, cuBLAS 13.1.0"
std::string device_fingerprint(int index);

struct SelectionKey {
  std::string memory;          // the in-memory key: includes the device index
  AutotuneKey persistent;      // the on-disk key: includes the device fingerprint
  AutotuneCacheOptions cache;  // where the on-disk cache is
};

// Serialises selections across threads: a problem is timed once even when two kernels meet it
// at the same time. Hold it around lookup + select + store.
std::mutex& selection_mutex();
// The ranked choices for KEY from memory, else from the autotune cache (then remembered in
// memory); counts a cache hit. The caller holds selection_mutex().
std::optional<std::vector<Candidate>> cached_selection(const SelectionKey& key,
                                                       ConvDirection direction);
// Remembers a selection in memory and in the autotune cache. The caller holds selection_mutex().
void store_selection(const SelectionKey& key, const std::vector<Candidate>& ranked,
                     ConvDirection direction, std::size_t workspace_bytes);
void count_guessed();
void count_timed();

}  // namespace convgraph::cudnn_detail

#endif  // CONVGRAPH_HAVE_CUDNN
