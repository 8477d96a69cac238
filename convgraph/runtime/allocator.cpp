#include "convgraph/runtime/allocator.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <array>
#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#if CONVGRAPH_HAVE_CUDA
#include "convgraph/runtime/cuda/cuda_backend.hpp"
#endif

namespace convgraph {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kHugeAlignment = std::size_t{2} << 20;  // 2 MiB: transparent huge pages
constexpr std::size_t kHugeThreshold = std::size_t{4} << 20;
// Blocks from this size up are mapped from the system directly, so that giving one back really
// returns its pages (malloc keeps freed blocks below its adaptive threshold, up to 32 MiB, in
// its heaps), and a miss in their size class first gives back cached blocks of other classes.
constexpr std::size_t kMappedThreshold = std::size_t{1} << 20;
// Whether a miss for a large block first gives back cached large blocks of other sizes: the
// process then holds about the peak in use, at the cost of fresh pages (page faults) in every
// call whose sizes change between steps. CONVGRAPH_ALLOCATOR_GIVE_BACK=1 turns it on.
bool give_back_on_miss() {
  static const bool on = [] {
    const char* v = std::getenv("CONVGRAPH_ALLOCATOR_GIVE_BACK");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

// Cached bytes above this are returned to the system (oldest size classes first).
constexpr std::size_t kCacheLimit = std::size_t{4} << 30;

// Size classes: 64-byte multiples up to 1 KiB, then four classes per power of two, so a block is
// at most 25% larger than asked for.
std::size_t size_class(std::size_t bytes) {
  if (bytes <= 1024)
    return bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
  const int top = std::bit_width(bytes - 1) - 1;  // 2^top < bytes <= 2^(top+1)
  const std::size_t step = std::size_t{1} << (top - 2);
  return (bytes + step - 1) / step * step;
}

class CachingCpuAllocator final : public Allocator {
 public:
  ~CachingCpuAllocator() override { release_cached(); }

  void* allocate(std::size_t bytes) override {
    const std::size_t cls = size_class(bytes);
    std::unique_lock lock(mutex_);
    ++stats_.allocations;
    auto it = free_.find(cls);
    void* ptr = nullptr;
    if (it != free_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= cls;
      ++stats_.cache_hits;
    } else {
      // A miss for a large block: the cache's other large blocks do not fit it, and keeping them
      // while mapping a new one would make the process hold the sum over size classes of each
      // class's own peak rather than the peak of what is in use. Give back at least as many
      // cached bytes first (the largest classes, the least likely to fit what comes next), so
      // that what the process holds grows only when what is in use does.
      std::vector<std::pair<void*, std::size_t>> to_free;
      if (cls >= kMappedThreshold && give_back_on_miss()) take_cached_for(cls, to_free);
      lock.unlock();
      for (auto& [p, size] : to_free) system_free(p, size);
      ptr = system_allocate(cls);
      if (ptr == nullptr) {
        release_cached();
        ptr = system_allocate(cls);
      }
      lock.lock();
      if (ptr == nullptr) {
        throw MemoryError(fmt::format(
            "out of CPU memory: could not allocate {} bytes ({} bytes in use by convgraph)", bytes,
            stats_.bytes_in_use));
      }
    }
    stats_.bytes_in_use += cls;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
      stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return ptr;
  }

  void deallocate(void* ptr, std::size_t bytes) override {
    if (ptr == nullptr) return;
    const std::size_t cls = size_class(bytes);
    std::vector<std::pair<void*, std::size_t>> to_free;
    {
      std::lock_guard lock(mutex_);
      stats_.bytes_in_use -= cls;
      free_[cls].push_back(ptr);
      stats_.bytes_cached += cls;
      // Over the limit: give back the largest classes first (they are the cheapest to refault
      // per byte when huge pages are in use).
      while (stats_.bytes_cached > kCacheLimit) {
        auto last = std::prev(free_.end());
        if (last->second.empty()) {
          free_.erase(last);
          continue;
        }
        to_free.emplace_back(last->second.back(), last->first);
        last->second.pop_back();
        stats_.bytes_cached -= last->first;
      }
    }
    for (auto& [p, size] : to_free) system_free(p, size);
  }

  Device device() const override { return Device::cpu(); }

  AllocatorStats stats() const override {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard lock(mutex_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

  void release_cached() override {
    std::map<std::size_t, std::vector<void*>> blocks;
    {
      std::lock_guard lock(mutex_);
      blocks.swap(free_);
      stats_.bytes_cached = 0;
    }
    for (auto& [size, list] : blocks) {
      for (void* p : list) system_free(p, size);
    }
  }

 private:
  // Moves cached blocks of at least kMappedThreshold bytes, other than of class CLS, to TO_FREE
  // until they add up to CLS or none is left. Called with the mutex held.
  void take_cached_for(std::size_t cls, std::vector<std::pair<void*, std::size_t>>& to_free) {
    std::size_t taken = 0;
    for (auto it = free_.rbegin(); it != free_.rend() && taken < cls; ++it) {
      if (it->first < kMappedThreshold) break;
      if (it->first == cls) continue;
      while (!it->second.empty() && taken < cls) {
        to_free.emplace_back(it->second.back(), it->first);
        it->second.pop_back();
        stats_.bytes_cached -= it->first;
        taken += it->first;
      }
    }
  }

  // Blocks of kMappedThreshold bytes and more are mappings of their own (2 MiB aligned from
  // kHugeThreshold, for transparent huge pages); smaller ones come from malloc.
  static std::size_t mapped_length(std::size_t cls) {
    const std::size_t page = cls >= kHugeThreshold ? kHugeAlignment : 4096;
    return (cls + page - 1) / page * page;
  }

  static void* system_allocate(std::size_t cls) {
    if (cls < kMappedThreshold) return std::aligned_alloc(kAlignment, cls);
    const std::size_t length = mapped_length(cls);
    const std::size_t align = cls >= kHugeThreshold ? kHugeAlignment : 4096;
    // Over-map by the alignment and unmap what lies outside the aligned block.
    const std::size_t span = length + (align > 4096 ? align : 0);
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (start + align - 1) / align * align;
    if (aligned > start) munmap(raw, aligned - start);
    const std::uintptr_t end = start + span;
    if (end > aligned + length)
      munmap(reinterpret_cast<void*>(aligned + length), end - aligned - length);
    void* p = reinterpret_cast<void*>(aligned);
    if (cls >= kHugeThreshold) madvise(p, length, MADV_HUGEPAGE);
    return p;
  }

  static void system_free(void* p, std::size_t cls) {
    if (cls < kMappedThreshold) {
      std::free(p);
    } else {
      munmap(p, mapped_length(cls));
    }
  }

  mutable std::mutex mutex_;
  std::map<std::size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

struct Registry {
  std::mutex mutex;
  std::map<std::pair<int, int>, Allocator*> allocators;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Allocator& cpu_allocator() {
  // Never destroyed: tensors held by static objects may be freed after main returns.
  static auto* allocator = new CachingCpuAllocator();
  return *allocator;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  auto& r = registry();
  std::unique_lock lock(r.mutex);
  auto it = r.allocators.find({static_cast<int>(device.kind), device.index});
#if CONVGRAPH_HAVE_CUDA
  if (it == r.allocators.end() && device.is_cuda()) {
    lock.unlock();
    return cuda::device_allocator(device.index);  // registers itself
  }
#endif
  if (it == r.allocators.end()) {
    throw DeviceError(fmt::format(
        "no allocator for device {}: this build or this machine has no such device", device.str()));
  }
  return *it->second;
}

void register_allocator(Device device, Allocator* allocator) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.allocators[{static_cast<int>(device.kind), device.index}] = allocator;
}

}  // namespace convgraph
