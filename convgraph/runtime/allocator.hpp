// Memory allocators. The CPU allocator caches freed blocks by size class and hands them out again,
// because a freshly faulted page costs about as much as computing on it: per-call allocation of
// large buffers must not reach the operating system. Blocks of 1 MiB and more are mappings of
// their own, and a request for one that its class cannot serve first returns as many cached
// bytes of other large classes to the system: the process then holds about the peak of the bytes
// in use, not the sum of each size class's own peak (which, over a training step whose forward
// and backward passes free and ask for different sizes, was 0.25 GiB more for resnet50_conv).
#pragma once

#include <cstddef>
#include <cstdint>

#include "convgraph/runtime/device.hpp"

namespace convgraph {

struct AllocatorStats {
  std::size_t bytes_in_use = 0;       // handed out and not yet returned
  std::size_t peak_bytes_in_use = 0;  // since construction or the last reset_peak()
  std::size_t bytes_cached = 0;       // returned and kept for reuse
  std::uint64_t allocations = 0;      // calls to allocate()
  std::uint64_t cache_hits = 0;       // allocations served from the cache
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns at least BYTES bytes aligned to 64 bytes (never null; BYTES may be 0). Throws
  // MemoryError when the memory cannot be had.
  virtual void* allocate(std::size_t bytes) = 0;
  // Gives back a block from allocate(); BYTES is the size that was asked for.
  virtual void deallocate(void* ptr, std::size_t bytes) = 0;
  virtual Device device() const = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns every cached block to the system.
  virtual void release_cached() = 0;
};

// The process-wide caching CPU allocator.
Allocator& cpu_allocator();

// Allocator for DEVICE: the CPU allocator, or one a device backend registered.
Allocator& allocator_for(Device device);
// Used by device backends (CUDA) to register their allocator; not owned.
void register_allocator(Device device, Allocator* allocator);

}  // namespace convgraph
