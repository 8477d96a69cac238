#include "convgraph/ops/gpu/cudnn_algo.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <unordered_map>
#include <utility>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#include "convgraph/ops/gpu/cudnn_graph.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"

namespace convgraph::cudnn_detail {
namespace {

struct NamedAlgorithm {
  const char* name;
  int value;
  bool in_flag;  // a value of the direction's flag (else only a name for messages and caches)
  bool in_3d;    // whether 3-D convolutions may use it as a fixed algorithm
};

// Flag values to cuDNN algorithms, in the flags' order.
const std::vector<NamedAlgorithm>& table(ConvDirection direction) {
  static const std::vector<NamedAlgorithm> forward = {
      {"small", CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, true},
      {"none", CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, true},
      {"large", CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, false},
      {"fft", CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, false},
      {"fft_tiling", CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, true, true},
      {"winograd", CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, true, false},
      {"winograd_non_fused", CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, false},
      {"direct", CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, false, false},
  };
  static const std::vector<NamedAlgorithm> data = {
      {"none", CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, true, true},
      {"deterministic", CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, true},
      {"fft", CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, true, false},
      {"fft_tiling", CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true, true},
      {"winograd", CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, true, false},
      {"winograd_non_fused", CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, false},
  };
  static const std::vector<NamedAlgorithm> filter = {
      {"none", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, true, true},
      {"deterministic", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, false},
      {"fft", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, false},
      {"small", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, true, true},
      {"winograd_non_fused", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true, false},
      {"fft_tiling", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, true, false},
      {"winograd", CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, false, false},
  };
  switch (direction) {
    case ConvDirection::forward:
      return forward;
    case ConvDirection::grad_inputs:
      return data;
    case ConvDirection::grad_weights:
      break;
  }
  return filter;
}

int to_int(std::int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) {
    throw UnsupportedError(fmt::format(
        "cuDNN: {} {} does not fit cuDNN's 32-bit sizes (at most {})", what, v, INT_MAX));
  }
  return static_cast<int>(v);
}

std::vector<int> int_dims(const Shape& shape, const char* what) {
  std::vector<int> dims;
  for (std::int64_t d : shape) dims.push_back(to_int(d, what));
  return dims;
}

struct Cache {
  std::unordered_map<std::string, std::vector<Candidate>> entries;
};

Cache& cache() {
  static Cache instance;
  return instance;
}

std::atomic<std::int64_t> g_guessed{0};
std::atomic<std::int64_t> g_timed{0};
std::atomic<std::int64_t> g_cache_hits{0};

std::string encode(ConvDirection direction, const Candidate& c) {
  if (c.is_engine()) return c.engine;
  return fmt::format("algo={};math={}", algorithm_name(direction, c.algo), math_name(c.math));
}

std::optional<Candidate> decode(ConvDirection direction, const std::string& text, double seconds) {
  Candidate c;
  c.seconds = seconds;
  // An engine of the graph API: "engine=N;knobs=..." (re-created, or found stale, by the kernel).
  if (auto engine = EngineChoice::parse(text)) {
    c.algo = -1;
    c.engine = engine->str();
    return c;
  }
  bool have_algo = false, have_math = false;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find(';', start), text.size());
    const std::string item = text.substr(start, end - start);
    const std::size_t eq = item.find('=');
    if (eq != std::string::npos) {
      const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      if (key == "algo") {
        c.algo = algorithm_value(direction, value);
        have_algo = c.algo >= 0;
      } else if (key == "math") {
        const auto math = parse_math(value);
        if (math) c.math = *math;
        have_math = math.has_value();
      }
    }
    start = end + 1;
  }
  if (!have_algo || !have_math) return std::nullopt;
  return c;
}

// The status of a guess / time call: success, or an answer that means "nothing for this problem"
// (the caller then falls back on the fixed list), else an error.
bool answered(cudnnStatus_t status, const char* what) {
  if (status == CUDNN_STATUS_SUCCESS) return true;
  if (cuda::cudnn_not_supported(status) || cuda::cudnn_bad_param(status)) return false;
  cuda::check_cudnn(status, what);
  return false;
}

template <typename Perf>
std::vector<Candidate> successful(const Perf* results, int count, std::size_t limit,
                                  bool with_time) {
  std::vector<Candidate> ranked;
  for (int i = 0; i < count; ++i) {
    const Perf& r = results[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > limit) continue;
    Candidate c{static_cast<int>(r.algo), r.mathType, with_time ? r.time / 1000.0 : 0.0, {}};
    if (std::find(ranked.begin(), ranked.end(), c) == ranked.end()) ranked.push_back(c);
  }
  return ranked;
}

}  // namespace

// ---- names ----

const std::vector<std::string>& fixed_algorithm_names(ConvDirection direction) {
  static const auto names_of = [](ConvDirection d) {
    std::vector<std::string> names;
    for (const NamedAlgorithm& a : table(d)) {
      if (a.in_flag) names.emplace_back(a.name);
    }
    return names;
  };
  static const std::vector<std::string> forward = names_of(ConvDirection::forward);
  static const std::vector<std::string> data = names_of(ConvDirection::grad_inputs);
  static const std::vector<std::string> filter = names_of(ConvDirection::grad_weights);
  return direction == ConvDirection::forward       ? forward
         : direction == ConvDirection::grad_inputs ? data
                                                   : filter;
}

bool fixed_algorithm_allowed_in_3d(ConvDirection direction, const std::string& name) {
  for (const NamedAlgorithm& a : table(direction)) {
    if (a.in_flag && name == a.name) return a.in_3d;
  }
  return false;
}

bool is_runtime_algorithm(const std::string& name) {
  return name == "guess_once" || name == "guess_on_shape_change" || name == "time_once" ||
         name == "time_on_shape_change";
}

int algorithm_value(ConvDirection direction, const std::string& name) {
  for (const NamedAlgorithm& a : table(direction)) {
    if (name == a.name) return a.value;
  }
  return -1;
}

std::string algorithm_name(ConvDirection direction, int value) {
  for (const NamedAlgorithm& a : table(direction)) {
    if (a.value == value) return a.name;
  }
  return fmt::format("algorithm#{}", value);
}

int none_algorithm(ConvDirection direction) {
  return algorithm_value(direction, "none");
}

int algorithm_count(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward:
      return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case ConvDirection::grad_inputs:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case ConvDirection::grad_weights:
      break;
  }
  return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

std::string math_name(cudnnMathType_t math) {
  switch (math) {
    case CUDNN_DEFAULT_MATH:
      return "default";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor_op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor_op_allow_conversion";
    case CUDNN_FMA_MATH:
      return "fma";
  }
  return fmt::format("math#{}", static_cast<int>(math));
}

std::optional<cudnnMathType_t> parse_math(const std::string& name) {
  for (cudnnMathType_t m : {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH,
                            CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH}) {
    if (math_name(m) == name) return m;
  }
  return std::nullopt;
}

// ---- descriptors ----

TensorDesc::TensorDesc(cudnnDataType_t type, const Shape& shape) {
  cuda::check_cudnn(cudnnCreateTensorDescriptor(&desc_), "creating a cuDNN tensor descriptor");
  const std::vector<int> dims = int_dims(shape, "tensor dimension");
  std::vector<int> strides(dims.size(), 1);
  std::int64_t stride = 1;
  for (std::size_t i = dims.size(); i-- > 0;) {
    strides[i] = to_int(stride, "tensor stride");
    stride *= std::max(dims[i], 1);
  }
  const cudnnStatus_t status = cudnnSetTensorNdDescriptor(
      desc_, type, static_cast<int>(dims.size()), dims.data(), strides.data());
  if (status != CUDNN_STATUS_SUCCESS) {
    cudnnDestroyTensorDescriptor(desc_);
    cuda::check_cudnn(status, fmt::format("describing a tensor of shape {}", shape_str(shape)));
  }
}

TensorDesc::~TensorDesc() {
  if (desc_ != nullptr) cudnnDestroyTensorDescriptor(desc_);
}

FilterDesc::FilterDesc(cudnnDataType_t type, const Shape& shape) {
  cuda::check_cudnn(cudnnCreateFilterDescriptor(&desc_), "creating a cuDNN filter descriptor");
  const std::vector<int> dims = int_dims(shape, "filter dimension");
  const cudnnStatus_t status = cudnnSetFilterNdDescriptor(
      desc_, type, CUDNN_TENSOR_NCHW, static_cast<int>(dims.size()), dims.data());
  if (status != CUDNN_STATUS_SUCCESS) {
    cudnnDestroyFilterDescriptor(desc_);
    cuda::check_cudnn(status, fmt::format("describing a filter of shape {}", shape_str(shape)));
  }
}

FilterDesc::~FilterDesc() {
  if (desc_ != nullptr) cudnnDestroyFilterDescriptor(desc_);
}

ConvDesc::ConvDesc(const Geometry& g, cudnnMathType_t math) : math_(math) {
  cuda::check_cudnn(cudnnCreateConvolutionDescriptor(&desc_),
                    "creating a cuDNN convolution descriptor");
  // cuDNN's CONVOLUTION mode flips the filter, CROSS_CORRELATION does not: the same meaning as
  // filter_flip.
  const cudnnConvolutionMode_t mode = g.flip ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION;
  cudnnStatus_t status = cudnnSetConvolutionNdDescriptor(
      desc_, g.convdim, g.pads.data(), g.strides.data(), g.dilations.data(), mode, g.compute_type);
  const char* stage = "describing the convolution";
  if (status == CUDNN_STATUS_SUCCESS) {
    status = cudnnSetConvolutionGroupCount(desc_, g.groups);
    stage = "setting the group count";
  }
  if (status == CUDNN_STATUS_SUCCESS) {
    status = cudnnSetConvolutionMathType(desc_, math);
    stage = "setting the math type";
  }
  if (status != CUDNN_STATUS_SUCCESS) {
    cudnnDestroyConvolutionDescriptor(desc_);
    cuda::check_cudnn(
        status, fmt::format("{} (pads ({}), strides ({}), dilations ({}), groups {}, math {})",
                            stage, fmt::join(g.pads, ", "), fmt::join(g.strides, ", "),
                            fmt::join(g.dilations, ", "), g.groups, math_name(math)));
  }
}

ConvDesc::~ConvDesc() {
  if (desc_ != nullptr) cudnnDestroyConvolutionDescriptor(desc_);
}

Descriptors::Descriptors(Geometry geometry)
    : g(std::move(geometry)),
      image(g.data_type, g.image),
      output(g.data_type, g.output),
      kernel(g.data_type, g.kernel) {}

// ---- calls ----

cudnnStatus_t workspace_size(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv,
                             int algo, std::size_t* bytes) {
  *bytes = 0;
  switch (d.g.direction) {
    case ConvDirection::forward:
      return cudnnGetConvolutionForwardWorkspaceSize(
          handle, d.image.get(), d.kernel.get(), conv.get(), d.output.get(),
          static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
    case ConvDirection::grad_inputs:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          handle, d.kernel.get(), d.output.get(), conv.get(), d.image.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
    case ConvDirection::grad_weights:
      break;
  }
  return cudnnGetConvolutionBackwardFilterWorkspaceSize(
      handle, d.image.get(), d.output.get(), conv.get(), d.kernel.get(),
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
}

cudnnStatus_t launch(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv, int algo,
                     const Buffers& buffers, void* workspace, std::size_t workspace_bytes) {
  // Scaling factors are double for double data and float for every other type.
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const bool as_double = d.g.data_type == CUDNN_DATA_DOUBLE;
  const void* alpha = as_double ? static_cast<const void*>(&one_d) : &one_f;
  const void* beta = as_double ? static_cast<const void*>(&zero_d) : &zero_f;
  switch (d.g.direction) {
    case ConvDirection::forward:
      return cudnnConvolutionForward(handle, alpha, d.image.get(), buffers.a, d.kernel.get(),
                                     buffers.b, conv.get(),
                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo), workspace,
                                     workspace_bytes, beta, d.output.get(), buffers.out);
    case ConvDirection::grad_inputs:
      return cudnnConvolutionBackwardData(
          handle, alpha, d.kernel.get(), buffers.a, d.output.get(), buffers.b, conv.get(),
          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), workspace, workspace_bytes, beta,
          d.image.get(), buffers.out);
    case ConvDirection::grad_weights:
      break;
  }
  return cudnnConvolutionBackwardFilter(
      handle, alpha, d.image.get(), buffers.a, d.output.get(), buffers.b, conv.get(),
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), workspace, workspace_bytes, beta,
      d.kernel.get(), buffers.out);
}

Shape cudnn_output_shape(const Descriptors& d, const ConvDesc& conv) {
  const int rank = d.g.convdim + 2;
  std::vector<int> dims(static_cast<std::size_t>(rank), 0);
  cuda::check_cudnn(cudnnGetConvolutionNdForwardOutputDim(conv.get(), d.image.get(), d.kernel.get(),
                                                          rank, dims.data()),
                    "computing the convolution's output shape");
  return Shape(dims.begin(), dims.end());
}

std::vector<Candidate> guess_algorithms(cudnnHandle_t handle, const Descriptors& d,
                                        const ConvDesc& conv, std::size_t limit) {
  int max_count = 0;
  int returned = 0;
  switch (d.g.direction) {
    case ConvDirection::forward: {
      cuda::check_cudnn(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count),
                        "counting the forward algorithms");
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
      if (!answered(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.image.get(), d.kernel.get(),
                                                           conv.get(), d.output.get(), max_count,
                                                           &returned, perf.data()),
                    "asking cuDNN's heuristics for a forward algorithm"))
        return {};
      return successful(perf.data(), returned, limit, false);
    }
    case ConvDirection::grad_inputs: {
      cuda::check_cudnn(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count),
                        "counting the backward-data algorithms");
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
      if (!answered(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                        handle, d.kernel.get(), d.output.get(), conv.get(), d.image.get(),
                        max_count, &returned, perf.data()),
                    "asking cuDNN's heuristics for a backward-data algorithm"))
        return {};
      return successful(perf.data(), returned, limit, false);
    }
    case ConvDirection::grad_weights:
      break;
  }
  cuda::check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count),
                    "counting the backward-filter algorithms");
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
  if (!answered(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.image.get(), d.output.get(),
                                                              conv.get(), d.kernel.get(), max_count,
                                                              &returned, perf.data()),
                "asking cuDNN's heuristics for a backward-filter algorithm"))
    return {};
  return successful(perf.data(), returned, limit, false);
}

std::size_t largest_workspace(cudnnHandle_t handle, const Descriptors& d, const ConvDesc& conv,
                              std::size_t limit) {
  std::size_t largest = 0;
  for (int algo = 0; algo < algorithm_count(d.g.direction); ++algo) {
    std::size_t bytes = 0;
    // An algorithm that cannot run this problem reports an error here: it is simply not counted.
    if (workspace_size(handle, d, conv, algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    if (bytes <= limit) largest = std::max(largest, bytes);
  }
  return largest;
}

std::vector<Candidate> time_algorithms(cudnnHandle_t handle, const Descriptors& d,
                                       const ConvDesc& conv, const Buffers& buffers,
                                       void* workspace, std::size_t workspace_bytes) {
  int max_count = 0;
  int returned = 0;
  const std::size_t any = static_cast<std::size_t>(-1);
  switch (d.g.direction) {
    case ConvDirection::forward: {
      cuda::check_cudnn(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count),
                        "counting the forward algorithms");
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
      if (!answered(cudnnFindConvolutionForwardAlgorithmEx(
                        handle, d.image.get(), buffers.a, d.kernel.get(), buffers.b, conv.get(),
                        d.output.get(), buffers.out, max_count, &returned, perf.data(), workspace,
                        workspace_bytes),
                    "timing the forward algorithms"))
        return {};
      return successful(perf.data(), returned, any, true);
    }
    case ConvDirection::grad_inputs: {
      cuda::check_cudnn(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count),
                        "counting the backward-data algorithms");
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
      if (!answered(cudnnFindConvolutionBackwardDataAlgorithmEx(
                        handle, d.kernel.get(), buffers.a, d.output.get(), buffers.b, conv.get(),
                        d.image.get(), buffers.out, max_count, &returned, perf.data(), workspace,
                        workspace_bytes),
                    "timing the backward-data algorithms"))
        return {};
      return successful(perf.data(), returned, any, true);
    }
    case ConvDirection::grad_weights:
      break;
  }
  cuda::check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count),
                    "counting the backward-filter algorithms");
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(max_count));
  if (!answered(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                    handle, d.image.get(), buffers.a, d.output.get(), buffers.b, conv.get(),
                    d.kernel.get(), buffers.out, max_count, &returned, perf.data(), workspace,
                    workspace_bytes),
                "timing the backward-filter algorithms"))
    return {};
  return successful(perf.data(), returned, any, true);
}

// ---- the cache ----

std::string device_fingerprint(int index) {
  const cuda::DeviceProperties& p = cuda::properties(index);
  return fmt::format("{}, sm_{}{}, {} SMs, cuDNN {}, cuBLAS {}", p.name, p.major, p.minor,
                     p.sm_count, cuda::cudnn_version(), cuda::cublas_version());
}

std::mutex& selection_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::optional<std::vector<Candidate>> cached_selection(const SelectionKey& key,
                                                       ConvDirection direction) {
  auto& entries = cache().entries;
  auto it = entries.find(key.memory);
  if (it != entries.end()) {
    ++g_cache_hits;
    return it->second;
  }
  // With the on-disk cache off, this map is the only cache (the autotune cache would otherwise
  // keep a second in-memory copy that reset_cudnn_algo_cache could not forget).
  if (key.cache.mode == AutotuneCacheMode::off) return std::nullopt;
  const std::optional<AutotuneResult> stored = autotune_lookup(key.persistent, key.cache);
  if (!stored) return std::nullopt;
  std::vector<Candidate> ranked;
  // The winner is the record's choice; the rest of the ranking is in the timings, which the file
  // keeps by name: ordered by time again (a guess has no times: the winner is what counts).
  if (auto c = decode(direction, stored->choice, stored->seconds)) ranked.push_back(*c);
  std::vector<Candidate> rest;
  for (const auto& [text, seconds] : stored->timings) {
    auto c = decode(direction, text, seconds);
    if (c && (ranked.empty() || !(*c == ranked.front()))) rest.push_back(*c);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const Candidate& x, const Candidate& y) { return x.seconds < y.seconds; });
  ranked.insert(ranked.end(), rest.begin(), rest.end());
  if (ranked.empty()) return std::nullopt;  // written by another convgraph: select again
  ++g_cache_hits;
  entries[key.memory] = ranked;
  return ranked;
}

void store_selection(const SelectionKey& key, const std::vector<Candidate>& ranked,
                     ConvDirection direction, std::size_t workspace_bytes) {
  cache().entries[key.memory] = ranked;
  if (ranked.empty() || key.cache.mode == AutotuneCacheMode::off) return;
  AutotuneResult result;
  result.choice =
      fmt::format("{};workspace={}", encode(direction, ranked.front()), workspace_bytes);
  result.seconds = ranked.front().seconds;
  for (const Candidate& c : ranked) result.timings.emplace_back(encode(direction, c), c.seconds);
  autotune_store(key.persistent, result, key.cache);
}

void count_guessed() {
  ++g_guessed;
}

void count_timed() {
  ++g_timed;
}

}  // namespace convgraph::cudnn_detail

namespace convgraph {

CudnnAlgoStats cudnn_algo_stats() {
  using namespace cudnn_detail;
  return {g_guessed.load(), g_timed.load(), g_cache_hits.load()};
}

void reset_cudnn_algo_cache() {
  const std::lock_guard<std::mutex> lock(cudnn_detail::selection_mutex());
  cudnn_detail::cache().entries.clear();
}

}  // namespace convgraph

#endif  // CONVGRAPH_HAVE_CUDNN
