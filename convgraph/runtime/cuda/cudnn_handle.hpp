// cuDNN for the code that calls it (ops/gpu): one handle per device per thread, bound to the
// current stream, status checks that throw DeviceError / MemoryError, versions, and whether cuDNN
// can be used at all on a device. Part of every CUDA build; empty without cuDNN
// (CONVGRAPH_HAVE_CUDNN), and cudnn.h is only visible inside the convgraph library.
#pragma once

#include "convgraph/build_config.hpp"

#if CONVGRAPH_HAVE_CUDNN

#include <cudnn.h>

#include <string>

namespace convgraph::cuda {

// Throws unless STATUS is CUDNN_STATUS_SUCCESS: MemoryError for cuDNN's allocation failures,
// DeviceError otherwise, both "WHAT: cuDNN: <cudnnGetErrorString> (status <n>)".
void check_cudnn(cudnnStatus_t status, const std::string& what);
// "<cudnnGetErrorString> (status <n>)", for messages that do not throw at once.
std::string cudnn_status_text(cudnnStatus_t status);
// The status family (cuDNN 9 numbers statuses by category: 3000 = not supported, ...).
inline bool cudnn_not_supported(cudnnStatus_t status) {
  return static_cast<int>(status) / 1000 == CUDNN_STATUS_NOT_SUPPORTED / 1000;
}
inline bool cudnn_bad_param(cudnnStatus_t status) {
  return static_cast<int>(status) / 1000 == CUDNN_STATUS_BAD_PARAM / 1000;
}

// The cuDNN handle of device INDEX for the calling thread (created on first use, kept for the
// thread's lifetime), bound to cuda::current_stream(INDEX). Makes INDEX the current device.
cudnnHandle_t cudnn_handle(int index);

// The library loaded at run time, "9.14.0", and the header this build was compiled against.
std::string cudnn_version();
std::string cudnn_header_version();

// Whether the loaded library has the major version of the header (cuDNN changes its ABI between
// majors; a mix is unusable). *WHY says why not.
bool cudnn_library_matches(std::string* why);
// Whether cuDNN can be used on device INDEX: matching library, compute capability >= 3.0 and a
// handle can be created. The answer is computed once per device and remembered.
bool cudnn_device_usable(int index, std::string* why);

}  // namespace convgraph::cuda

#endif  // CONVGRAPH_HAVE_CUDNN
