#include "convgraph/runtime/device_backend.hpp"

#include <fmt/format.h>

#include "convgraph/build_config.hpp"
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#endif

namespace convgraph {
namespace {

[[maybe_unused]] std::string no_cuda_build(Device device) {
  return fmt::format(
      "{} cannot be used: this build of convgraph has no CUDA support (it was configured "
      "without a CUDA toolkit, or with CONVGRAPH_WITH_CUDA=OFF)",
      device.str());
}

}  // namespace

bool device_available(Device device, std::string* why) {
  if (device.is_cpu()) return true;
#if CONVGRAPH_HAVE_CUDA
  return cuda::available(device.index, why);
#else
  if (why != nullptr) *why = no_cuda_build(device);
  return false;
#endif
}

void require_device(Device device) {
  std::string why;
  if (!device_available(device, &why)) throw DeviceError(why);
}

std::string describe_device(Device device) {
  if (device.is_cpu()) return "cpu";
#if CONVGRAPH_HAVE_CUDA
  require_device(device);
  return cuda::describe(device.index);
#else
  throw DeviceError(no_cuda_build(device));
#endif
}

void copy_between_devices(const Tensor& dst, const Tensor& src) {
#if CONVGRAPH_HAVE_CUDA
  cuda::copy(dst, src);
#else
  throw DeviceError(no_cuda_build(dst.device().is_cpu() ? src.device() : dst.device()));
#endif
}

void fill_on_device(const Tensor& dst, double value) {
#if CONVGRAPH_HAVE_CUDA
  cuda::fill(dst, value);
#else
  (void)value;
  throw DeviceError(no_cuda_build(dst.device()));
#endif
}

std::shared_ptr<DeviceStream> create_device_stream(Device device) {
  if (device.is_cpu()) return nullptr;
#if CONVGRAPH_HAVE_CUDA
  return cuda::create_stream(device.index);
#else
  throw DeviceError(no_cuda_build(device));
#endif
}

std::shared_ptr<DeviceStream> current_device_stream(Device device) {
  if (device.is_cpu()) return nullptr;
#if CONVGRAPH_HAVE_CUDA
  return cuda::current_stream_view(device.index);
#else
  throw DeviceError(no_cuda_build(device));
#endif
}

}  // namespace convgraph
