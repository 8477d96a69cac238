#include "convgraph/runtime/cuda/cudnn_handle.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <fmt/format.h>

#include <map>
#include <mutex>

#include "convgraph/base/error.hpp"
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#include "convgraph/runtime/cuda/cuda_device.hpp"

namespace convgraph::cuda {

std::string cudnn_status_text(cudnnStatus_t status) {
  return fmt::format("{} (status {})", cudnnGetErrorString(status), static_cast<int>(status));
}

void check_cudnn(cudnnStatus_t status, const std::string& what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string text = fmt::format("{}: cuDNN: {}", what, cudnn_status_text(status));
  if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED) {
    throw MemoryError(text);
  }
  throw DeviceError(text);
}

cudnnHandle_t cudnn_handle(int index) {
  thread_local std::map<int, cudnnHandle_t> handles;
  set_device(index);
  auto it = handles.find(index);
  if (it == handles.end()) {
    cudnnHandle_t handle = nullptr;
    check_cudnn(cudnnCreate(&handle), fmt::format("cuda{}: creating the cuDNN handle", index));
    // Never destroyed, as the cuBLAS handles: destroying at thread exit races with the driver's
    // own shutdown at process exit.
    it = handles.emplace(index, handle).first;
  }
  check_cudnn(cudnnSetStream(it->second, current_stream(index)),
              fmt::format("cuda{}: binding the cuDNN handle to a stream", index));
  return it->second;
}

std::string cudnn_version() {
  int major = 0, minor = 0, patch = 0;
  if (cudnnGetProperty(MAJOR_VERSION, &major) != CUDNN_STATUS_SUCCESS) return "unknown";
  cudnnGetProperty(MINOR_VERSION, &minor);
  cudnnGetProperty(PATCH_LEVEL, &patch);
  return fmt::format("{}.{}.{}", major, minor, patch);
}

std::string cudnn_header_version() {
  return fmt::format("{}.{}.{}", CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
}

bool cudnn_library_matches(std::string* why) {
  int major = 0;
  const cudnnStatus_t status = cudnnGetProperty(MAJOR_VERSION, &major);
  if (status != CUDNN_STATUS_SUCCESS) {
    if (why != nullptr) {
      *why = fmt::format("the cuDNN library does not report its version: {}",
                         cudnn_status_text(status));
    }
    return false;
  }
  if (major != CUDNN_MAJOR) {
    if (why != nullptr) {
      *why = fmt::format(
          "mixed cuDNN versions: convgraph was compiled against cuDNN {} but the library loaded "
          "at run time is cuDNN {}; install a cuDNN {}.x library or rebuild convgraph",
          cudnn_header_version(), cudnn_version(), CUDNN_MAJOR);
    }
    return false;
  }
  return true;
}

bool cudnn_device_usable(int index, std::string* why) {
  static std::mutex mutex;
  static std::map<int, std::string> answers;  // device -> why not ("" = usable)
  {
    std::lock_guard lock(mutex);
    auto it = answers.find(index);
    if (it != answers.end()) {
      if (why != nullptr) *why = it->second;
      return it->second.empty();
    }
  }
  std::string reason;
  if (cudnn_library_matches(&reason) && available(index, &reason)) {
    try {
      const DeviceProperties& p = properties(index);
      if (p.major < 3) {
        reason = fmt::format("cuda{} ({}) has compute capability {}.{}; cuDNN needs 3.0 or later",
                             index, p.name, p.major, p.minor);
      } else {
        cudnn_handle(index);
      }
    } catch (const ConvGraphError& e) {
      reason = e.what();
    }
  }
  {
    std::lock_guard lock(mutex);
    answers.emplace(index, reason);
  }
  if (why != nullptr) *why = reason;
  return reason.empty();
}

}  // namespace convgraph::cuda

#endif  // CONVGRAPH_HAVE_CUDNN
