// What the runtime needs from a device other than the CPU: whether it can be used, copies to and
// from it, and streams (queues of device work). The functions here are compiled into every build;
// in a build without CUDA they throw DeviceError saying so.
#pragma once

#include <memory>
#include <string>

#include "convgraph/runtime/device.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// Whether DEVICE can be used here; when not, *WHY says why (no CUDA in this build, no driver, no
// such device number, ...).
bool device_available(Device device, std::string* why = nullptr);
// Throws DeviceError naming DEVICE and the reason when it cannot be used.
void require_device(Device device);
// A one-line description: "cpu", "cuda0: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)".
std::string describe_device(Device device);

// Copies SRC into DST: same shape, any devices (CPU <-> device, device <-> device), dtype
// converted. Work goes to the current stream of the device involved; the copy is complete when
// the function returns.
void copy_between_devices(const Tensor& dst, const Tensor& src);
// Sets every element of DST (on a device) to VALUE.
void fill_on_device(const Tensor& dst, double value);

// A point in a stream's work, recorded with timing: how long the device took between two events.
class DeviceEvent {
 public:
  virtual ~DeviceEvent() = default;
  // Waits until the work queued before the event is done; DeviceError when it failed.
  virtual void synchronize() = 0;
  // Milliseconds of device time from this event to LATER (waits for both first).
  virtual double elapsed_ms(DeviceEvent& later) = 0;
};

// A queue of device work. A Function owns one per device it runs on: while a call runs the stream
// is current on the calling thread, so every kernel of the call goes to it, and the call ends by
// waiting for it (Function::call_async does not wait).
class DeviceStream {
 public:
  virtual ~DeviceStream() = default;
  virtual Device device() const = 0;
  // An event at the current end of the stream's queue.
  virtual std::shared_ptr<DeviceEvent> record() = 0;
  // Queues a kernel that keeps the stream busy for about MS milliseconds (at most 2 s). For
  // benchmarks: work queued behind it is timed by events without the host's launch gaps.
  virtual void delay(double ms) = 0;
  // Makes this stream the current one of its device on this thread; leave() restores the one
  // that was current before. Calls nest.
  virtual void enter() = 0;
  virtual void leave() = 0;
  // Waits until all work queued on the stream is done; throws DeviceError when it failed.
  virtual void synchronize() = 0;
};

// A new stream on DEVICE (DeviceError when the device cannot be used).
std::shared_ptr<DeviceStream> create_device_stream(Device device);
// The stream current on this thread for DEVICE (a Function's while it runs, else the default
// stream), as a DeviceStream that does not own it: for timing work that library code queues on
// the current stream.
std::shared_ptr<DeviceStream> current_device_stream(Device device);

// Makes STREAM current for the lifetime of the guard (nothing when STREAM is null).
class StreamGuard {
 public:
  explicit StreamGuard(DeviceStream* stream) : stream_(stream) {
    if (stream_ != nullptr) stream_->enter();
  }
  ~StreamGuard() {
    if (stream_ != nullptr) stream_->leave();
  }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  DeviceStream* stream_;
};

}  // namespace convgraph
