#include "convgraph/runtime/cuda/cuda_device.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "convgraph/runtime/cuda/cuda_backend.hpp"
#include "convgraph/runtime/cuda/device_copy.hpp"
#include "convgraph/runtime/cuda/stream_delay.hpp"

namespace convgraph::cuda {
namespace {

// ---- streams ----

// The streams entered on this thread, per device (a stack: calls nest).
thread_local std::map<int, std::vector<cudaStream_t>> t_entered;
thread_local int t_device = -1;

class CudaStream final : public DeviceStream {
 public:
  explicit CudaStream(int index);
  // A view of STREAM, which someone else owns (the stream current on this thread).
  CudaStream(int index, cudaStream_t stream) : index_(index), stream_(stream), owned_(false) {}
  ~CudaStream() override;
  Device device() const override { return Device::cuda(index_); }
  void enter() override {
    set_device(index_);
    t_entered[index_].push_back(stream_);
  }
  void leave() override {
    auto& stack = t_entered[index_];
    if (!stack.empty()) stack.pop_back();
  }
  void synchronize() override;
  std::shared_ptr<DeviceEvent> record() override;
  void delay(double ms) override {
    set_device(index_);
    check(queue_delay(stream_, static_cast<long long>(ms * 1e6)),
          fmt::format("cuda{}: queueing a delay kernel", index_));
  }

 private:
  int index_;
  cudaStream_t stream_ = nullptr;
  bool owned_ = true;
};

class CudaEvent final : public DeviceEvent {
 public:
  CudaEvent(int index, cudaStream_t stream) : index_(index) {
    set_device(index);
    check(cudaEventCreate(&event_), fmt::format("cuda{}: creating an event", index));
    const cudaError_t status = cudaEventRecord(event_, stream);
    if (status != cudaSuccess) {
      cudaEventDestroy(event_);
      check(status, fmt::format("cuda{}: recording an event", index));
    }
  }
  ~CudaEvent() override {
    cudaSetDevice(index_);
    cudaEventDestroy(event_);
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void synchronize() override {
    set_device(index_);
    check(cudaEventSynchronize(event_), fmt::format("cuda{}: waiting for an event", index_));
  }
  double elapsed_ms(DeviceEvent& later) override {
    auto* other = dynamic_cast<CudaEvent*>(&later);
    if (other == nullptr || other->index_ != index_) {
      throw ValueError(fmt::format("cuda{}: elapsed time to an event of another device", index_));
    }
    synchronize();
    other->synchronize();
    float ms = 0;
    check(cudaEventElapsedTime(&ms, event_, other->event_),
          fmt::format("cuda{}: reading the time between two events", index_));
    return static_cast<double>(ms);
  }

 private:
  int index_;
  cudaEvent_t event_ = nullptr;
};

std::shared_ptr<DeviceEvent> CudaStream::record() {
  return std::make_shared<CudaEvent>(index_, stream_);
}

// ---- the caching allocator ----

// Blocks are cached by size. A block freed while a Function's stream was current may still be
// read by work queued on that stream, so until that stream is synchronized it is only handed out
// again on the same stream (or on the legacy default stream, which waits for every blocking
// stream). Blocks freed outside a Function are ordered by the legacy stream and free for all.
class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int index) : index_(index) {}

  void* allocate(std::size_t bytes) override {
    const std::size_t size = round_size(bytes);
    const cudaStream_t stream = current_stream(index_);
    {
      std::lock_guard lock(mutex_);
      ++stats_.allocations;
      // The smallest cached block that fits without wasting more than half of it.
      for (auto it = free_.lower_bound(size); it != free_.end() && it->first <= 2 * size; ++it) {
        const Block& b = it->second;
        if (b.stream != nullptr && b.stream != stream && stream != nullptr) continue;
        void* ptr = b.ptr;
        const std::size_t got = it->first;
        free_.erase(it);
        stats_.bytes_cached -= got;
        in_use_[ptr] = InUse{got, stream};
        stats_.bytes_in_use += got;
        stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
        ++stats_.cache_hits;
        return ptr;
      }
    }
    set_device(index_);
    // Requests that cannot fit are refused before asking the driver, so that a failing call
    // leaves no error state behind (and tools such as compute-sanitizer see no failed API call).
    std::size_t free_bytes = 0, total_bytes = 0;
    check(cudaMemGetInfo(&free_bytes, &total_bytes), "reading the free device memory");
    if (size > free_bytes) {
      release_cached();
      check(cudaMemGetInfo(&free_bytes, &total_bytes), "reading the free device memory");
    }
    if (size > free_bytes) {
      AllocatorStats s = stats();
      throw MemoryError(fmt::format(
          "cuda{}: out of memory allocating {:.1f} MiB; the device has {:.1f} MiB free of "
          "{:.1f} MiB and convgraph holds {:.1f} MiB in use",
          index_, size / 1048576.0, free_bytes / 1048576.0, total_bytes / 1048576.0,
          s.bytes_in_use / 1048576.0));
    }
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state of the runtime
      release_cached();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      std::size_t total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      AllocatorStats s = stats();
      throw MemoryError(fmt::format(
          "cuda{}: out of memory allocating {:.1f} MiB ({}); the device has {:.1f} MiB free of "
          "{:.1f} MiB and convgraph holds {:.1f} MiB in use",
          index_, size / 1048576.0, cudaGetErrorString(status), free_bytes / 1048576.0,
          total / 1048576.0, s.bytes_in_use / 1048576.0));
    }
    std::lock_guard lock(mutex_);
    in_use_[ptr] = InUse{size, current_stream(index_)};
    stats_.bytes_in_use += size;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    return ptr;
  }

  void deallocate(void* ptr, std::size_t /*bytes*/) override {
    if (ptr == nullptr) return;
    cudaStream_t stream =
        t_entered.count(index_) && !t_entered[index_].empty() ? t_entered[index_].back() : nullptr;
    std::lock_guard lock(mutex_);
    auto it = in_use_.find(ptr);
    if (it == in_use_.end()) return;  // not ours: nothing safe to do
    const std::size_t size = it->second.size;
    // Freed outside a Function: the stream it was made on may still have work queued that writes
    // it (Function::call_async), so it stays with that stream until the stream is synchronized.
    if (stream == nullptr && live_streams_.count(it->second.stream) != 0) {
      stream = it->second.stream;
    }
    in_use_.erase(it);
    stats_.bytes_in_use -= size;
    free_.emplace(size, Block{ptr, stream});
    stats_.bytes_cached += size;
  }

  // A Function's stream was created / is being destroyed (after a final synchronization).
  void stream_created(cudaStream_t stream) {
    std::lock_guard lock(mutex_);
    live_streams_.insert(stream);
  }
  void stream_destroyed(cudaStream_t stream) {
    stream_synchronized(stream);
    std::lock_guard lock(mutex_);
    live_streams_.erase(stream);
  }

  Device device() const override { return Device::cuda(index_); }
  AllocatorStats stats() const override {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  void release_cached() override {
    set_device(index_);
    cudaDeviceSynchronize();
    std::lock_guard lock(mutex_);
    for (auto& [size, block] : free_) cudaFree(block.ptr);
    free_.clear();
    stats_.bytes_cached = 0;
  }

  // Work queued on STREAM before now has finished: its blocks are free for every stream.
  void stream_synchronized(cudaStream_t stream) {
    std::lock_guard lock(mutex_);
    for (auto& [size, block] : free_) {
      if (block.stream == stream) block.stream = nullptr;
    }
  }

  std::size_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return stats_.bytes_cached;
  }

 private:
  struct Block {
    void* ptr;
    cudaStream_t stream;  // null: usable on any stream
  };
  static std::size_t round_size(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    constexpr std::size_t small = 512, large = 2u << 20;
    return bytes <= (1u << 20) ? (bytes + small - 1) / small * small
                               : (bytes + large - 1) / large * large;
  }

  int index_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, Block> free_;
  struct InUse {
    std::size_t size;
    cudaStream_t stream;  // current when it was allocated (null: the legacy stream)
  };
  std::unordered_map<void*, InUse> in_use_;
  std::unordered_set<cudaStream_t> live_streams_;
  AllocatorStats stats_;
};

std::mutex g_mutex;
std::map<int, CudaCachingAllocator*> g_allocators;

CudaCachingAllocator& caching_allocator(int index) {
  {
    std::lock_guard lock(g_mutex);
    auto it = g_allocators.find(index);
    if (it != g_allocators.end()) return *it->second;
  }
  std::string why;
  if (!available(index, &why)) throw DeviceError(why);
  std::lock_guard lock(g_mutex);
  auto& slot = g_allocators[index];
  // Never destroyed: tensors held by static objects may be freed after main returns.
  if (slot == nullptr) {
    slot = new CudaCachingAllocator(index);
    register_allocator(Device::cuda(index), slot);
  }
  return *slot;
}

CudaStream::CudaStream(int index) : index_(index) {
  set_device(index);
  // A blocking stream: it stays ordered with the legacy default stream, which copies and kernels
  // outside a Function use.
  check(cudaStreamCreate(&stream_), fmt::format("cuda{}: creating a stream", index));
  caching_allocator(index_).stream_created(stream_);
}

CudaStream::~CudaStream() {
  if (owned_ && stream_ != nullptr) {
    cudaSetDevice(index_);
    cudaStreamSynchronize(stream_);
    caching_allocator(index_).stream_destroyed(stream_);
    cudaStreamDestroy(stream_);
  }
}

void CudaStream::synchronize() {
  set_device(index_);
  check(cudaStreamSynchronize(stream_), fmt::format("cuda{}: waiting for the stream", index_));
  caching_allocator(index_).stream_synchronized(stream_);
}

std::string error_text(cudaError_t status) {
  return fmt::format("{} ({})", cudaGetErrorString(status), cudaGetErrorName(status));
}

}  // namespace

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();
  if (status == cudaErrorMemoryAllocation) {
    throw MemoryError(fmt::format("{}: {}", what, error_text(status)));
  }
  throw DeviceError(fmt::format("{}: {}", what, error_text(status)));
}

void check(cudaError_t status, const std::string& what) {
  check(status, what.c_str());
}

void check_cublas(cublasStatus_t status, const std::string& what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string text = fmt::format("{}: cuBLAS: {} ({})", what, cublasGetStatusString(status),
                                       cublasGetStatusName(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw MemoryError(text);
  throw DeviceError(text);
}

void check_launch(const char* kernel_name) {
  check(cudaGetLastError(), fmt::format("launching the CUDA kernel {}", kernel_name));
}

int device_count(std::string* why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    if (why != nullptr) {
      *why = fmt::format("no usable CUDA driver or device: {}", error_text(status));
    }
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "the CUDA driver reports no device";
  return count;
}

bool available(int index, std::string* why) {
  std::string reason;
  const int count = device_count(&reason);
  if (count == 0) {
    if (why != nullptr) *why = fmt::format("cuda{} cannot be used: {}", index, reason);
    return false;
  }
  if (index < 0 || index >= count) {
    if (why != nullptr) {
      *why = fmt::format("cuda{} does not exist: this machine has {} CUDA device{} (cuda0{})",
                         index, count, count == 1 ? "" : "s",
                         count > 1 ? fmt::format("..cuda{}", count - 1) : "");
    }
    return false;
  }
  return true;
}

const DeviceProperties& properties(int index) {
  static std::mutex mutex;
  static std::map<int, DeviceProperties> cache;
  std::lock_guard lock(mutex);
  auto it = cache.find(index);
  if (it != cache.end()) return it->second;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index),
        fmt::format("cuda{}: reading the device properties", index));
  DeviceProperties p;
  p.name = prop.name;
  p.major = prop.major;
  p.minor = prop.minor;
  p.sm_count = prop.multiProcessorCount;
  p.total_memory = prop.totalGlobalMem;
  p.shared_memory_per_block = prop.sharedMemPerBlock;
  p.l2_cache_bytes = static_cast<std::size_t>(std::max(prop.l2CacheSize, 0));
  return cache.emplace(index, std::move(p)).first->second;
}

std::string describe(int index) {
  const DeviceProperties& p = properties(index);
  return fmt::format("cuda{}: {} (sm_{}{}, {} SMs, {:.1f} GiB)", index, p.name, p.major, p.minor,
                     p.sm_count, p.total_memory / 1073741824.0);
}

std::string fingerprint(int index) {
  const DeviceProperties& p = properties(index);
  return fmt::format("{}; sm_{}{}; {} SMs; CUDA {}; cuBLAS {}", p.name, p.major, p.minor,
                     p.sm_count, runtime_version(), cublas_version());
}

void set_device(int index) {
  if (t_device == index) return;
  check(cudaSetDevice(index), fmt::format("selecting cuda{}", index));
  t_device = index;
}

cudaStream_t current_stream(int index) {
  auto it = t_entered.find(index);
  if (it != t_entered.end() && !it->second.empty()) return it->second.back();
  return nullptr;
}

void synchronize_current(int index) {
  set_device(index);
  const cudaStream_t stream = current_stream(index);
  check(cudaStreamSynchronize(stream), fmt::format("cuda{}: waiting for the stream", index));
  caching_allocator(index).stream_synchronized(stream);
}

cublasHandle_t cublas_handle(int index) {
  thread_local std::map<int, cublasHandle_t> handles;
  set_device(index);
  auto it = handles.find(index);
  if (it == handles.end()) {
    cublasHandle_t handle = nullptr;
    check_cublas(cublasCreate(&handle), fmt::format("cuda{}: creating the cuBLAS handle", index));
    // Kept for the thread's lifetime (destroying handles at thread exit races with driver
    // shutdown at process exit).
    it = handles.emplace(index, handle).first;
  }
  check_cublas(cublasSetStream(it->second, current_stream(index)), "binding cuBLAS to a stream");
  return it->second;
}

std::string cublas_version() {
  int v = 0;
  if (cublasGetProperty(MAJOR_VERSION, &v) != CUBLAS_STATUS_SUCCESS) return "unknown";
  int minor = 0, patch = 0;
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  return fmt::format("{}.{}.{}", v, minor, patch);
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

std::size_t free_memory(int index) {
  set_device(index);
  std::size_t free_bytes = 0, total = 0;
  check(cudaMemGetInfo(&free_bytes, &total), fmt::format("cuda{}: reading free memory", index));
  return free_bytes + caching_allocator(index).cached_bytes();
}

void release_cached(int index) {
  caching_allocator(index).release_cached();
}

Allocator& device_allocator(int index) {
  return caching_allocator(index);
}

std::shared_ptr<DeviceStream> create_stream(int index) {
  caching_allocator(index);  // checks the device
  return std::make_shared<CudaStream>(index);
}

std::shared_ptr<DeviceStream> current_stream_view(int index) {
  caching_allocator(index);  // checks the device
  return std::make_shared<CudaStream>(index, current_stream(index));
}

// ---- copies ----

namespace {

Device device_of_pair(const Tensor& a, const Tensor& b) {
  return a.device().is_cuda() ? a.device() : b.device();
}

}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  if (src.shape() != dst.shape()) {
    throw ShapeError(fmt::format("copy: source shape {} differs from destination shape {}",
                                 shape_str(src.shape()), shape_str(dst.shape())));
  }
  if (dst.numel() == 0) return;
  const Device dev = device_of_pair(dst, src);
  set_device(dev.index);
  const cudaStream_t stream = current_stream(dev.index);
  const bool same_layout = dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous();
  if (src.device().is_cpu()) {  // host -> device
    if (same_layout) {
      check(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyHostToDevice,
                            stream),
            fmt::format("copying {} bytes from the host to {}", dst.nbytes(), dev.str()));
      // Pageable host memory may be reused by the caller as soon as we return.
      check(cudaStreamSynchronize(stream), "waiting for a host-to-device copy");
      return;
    }
    const Tensor host = src.contiguous().cast(dst.dtype()).contiguous();
    if (dst.is_contiguous()) {
      copy(dst, host);
    } else {
      Tensor staged = Tensor::empty(dst.dtype(), dst.shape(), dev);
      copy(staged, host);
      copy(dst, staged);
    }
    return;
  }
  if (dst.device().is_cpu()) {  // device -> host
    if (same_layout) {
      check(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToHost,
                            stream),
            fmt::format("copying {} bytes from {} to the host", dst.nbytes(), dev.str()));
      check(cudaStreamSynchronize(stream), "waiting for a device-to-host copy");
      return;
    }
    Tensor packed = src;
    if (!src.is_contiguous()) {
      packed = Tensor::empty(src.dtype(), src.shape(), src.device());
      copy(packed, src);
    }
    Tensor host = Tensor::empty(src.dtype(), src.shape(), Device::cpu());
    copy(host, packed);
    Tensor(dst).copy_from(host);  // a handle copy: same elements
    return;
  }
  if (src.device() != dst.device()) {  // device -> other device, through the host
    Tensor host = Tensor::empty(src.dtype(), src.shape(), Device::cpu());
    copy(host, src);
    copy(dst, host);
    return;
  }
  if (same_layout) {
    check(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                          stream),
          fmt::format("copying {} bytes on {}", dst.nbytes(), dev.str()));
    return;
  }
  strided_copy(dst, src, stream);
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  const int index = dst.device().index;
  set_device(index);
  if (value == 0.0 && dst.is_contiguous()) {
    check(cudaMemsetAsync(dst.raw_data(), 0, dst.nbytes(), current_stream(index)),
          fmt::format("clearing {} bytes on {}", dst.nbytes(), dst.device().str()));
    return;
  }
  copy(dst, Tensor::full(dst.dtype(), dst.shape(), value));
}

}  // namespace convgraph::cuda
