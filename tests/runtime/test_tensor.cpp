#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

TEST_CASE("tensor: construction, shape and element access", "[tensor]") {
  const Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  REQUIRE(t.dtype() == DType::float32);
  REQUIRE(t.shape() == Shape{2, 3});
  REQUIRE(t.strides() == Strides{3, 1});
  REQUIRE(t.numel() == 6);
  REQUIRE(t.nbytes() == 24);
  REQUIRE(t.is_contiguous());
  REQUIRE(t.dim(-1) == 3);
  REQUIRE_THROWS_AS(t.dim(2), ValueError);
  REQUIRE(t.to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6});
  REQUIRE_THROWS_AS(t.data<double>(), TypeError);
  REQUIRE_THROWS_AS(Tensor::from_vector<float>({1, 2}, {3}), ShapeError);
  REQUIRE_THROWS_AS(Tensor::empty(DType::float32, {2, -1}), ValueError);
  REQUIRE(Tensor::scalar(DType::int32, 7.9).item<int>() == 7);
  REQUIRE(Tensor::full(DType::boolean, {2}, 3.0).to_vector<int>() == std::vector<int>{1, 1});
}

TEST_CASE("tensor: views share the buffer and index correctly", "[tensor]") {
  const Tensor t = Tensor::from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  const Tensor tt = t.permute({1, 0});
  REQUIRE(tt.shape() == Shape{4, 3});
  REQUIRE_FALSE(tt.is_contiguous());
  REQUIRE(tt.shares_storage_with(t));
  REQUIRE(tt.contiguous().to_vector<double>() ==
          std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  // Row 2, columns 3, 1 (negative step).
  const Tensor s = t.select(0, 2).slice(0, 3, 0, -2);
  REQUIRE(s.to_vector<double>() == std::vector<double>{11, 9});
  REQUIRE(t.slice(1, 1, 4, 2).to_vector<double>() == std::vector<double>{1, 3, 5, 7, 9, 11});
  REQUIRE(t.slice(0, 2, 2, 1).numel() == 0);
  // reshape of a non-contiguous view copies.
  const Tensor r = tt.reshape({12});
  REQUIRE_FALSE(r.shares_storage_with(t));
  REQUIRE(r.to_vector<double>()[1] == 4);
  REQUIRE(t.reshape({2, 6}).shares_storage_with(t));
  REQUIRE_THROWS_AS(t.reshape({5}), ShapeError);
  REQUIRE(t.unsqueeze(0).shape() == Shape{1, 3, 4});
  REQUIRE_THROWS_AS(t.permute({0, 0}), ValueError);
}

TEST_CASE("tensor: casts between every dtype", "[tensor]") {
  const Tensor t = Tensor::from_vector<double>({-2.5, 0.0, 1.5, 3.0}, {4});
  REQUIRE(t.cast(DType::int32).to_vector<int>() == std::vector<int>{-2, 0, 1, 3});
  REQUIRE(t.cast(DType::boolean).to_vector<int>() == std::vector<int>{1, 0, 1, 1});
  REQUIRE(t.cast(DType::float16).to_vector<double>() == std::vector<double>{-2.5, 0, 1.5, 3});
  REQUIRE(t.cast(DType::int8).cast(DType::float32).to_vector<float>() ==
          std::vector<float>{-2, 0, 1, 3});
  for (DType d : kAllDTypes) {
    const Tensor c = t.cast(d);
    REQUIRE(c.dtype() == d);
    REQUIRE(c.shape() == t.shape());
  }
}

TEST_CASE("half: conversions round to nearest even and keep specials", "[tensor]") {
  auto roundtrip = [](float f) { return to_float(Half(f)); };
  REQUIRE(roundtrip(1.0f) == 1.0f);
  REQUIRE(roundtrip(65504.0f) == 65504.0f);
  REQUIRE(std::isinf(roundtrip(65520.0f)));  // rounds up past the largest half
  REQUIRE(roundtrip(0.1f) == 0.0999755859375f);
  REQUIRE(roundtrip(5.960464477539063e-08f) == 5.960464477539063e-08f);  // smallest subnormal
  REQUIRE(roundtrip(2.9e-08f) == 0.0f);
  REQUIRE(roundtrip(1.0f + 1.0f / 2048) == 1.0f);  // tie rounds to even
  REQUIRE(roundtrip(1.0f + 3.0f / 2048) == 1.0f + 2.0f / 1024);
  REQUIRE(std::isnan(roundtrip(std::numeric_limits<float>::quiet_NaN())));
  REQUIRE(roundtrip(-std::numeric_limits<float>::infinity()) ==
          -std::numeric_limits<float>::infinity());
  REQUIRE(std::signbit(roundtrip(-0.0f)));
}

TEST_CASE("allocator: freed blocks are reused, statistics add up", "[tensor]") {
  Allocator& a = cpu_allocator();
  const AllocatorStats before = a.stats();
  { Tensor t = Tensor::empty(DType::float32, {1000, 1000}); }
  { Tensor t = Tensor::empty(DType::float32, {1000, 999}); }  // same size class
  const AllocatorStats after = a.stats();
  REQUIRE(after.allocations - before.allocations == 2);
  REQUIRE(after.cache_hits - before.cache_hits >= 1);
  REQUIRE(after.bytes_in_use == before.bytes_in_use);
  void* p = a.allocate(100);
  REQUIRE(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  a.deallocate(p, 100);
  REQUIRE_THROWS_AS(allocator_for(Device::cuda(3)), DeviceError);
  REQUIRE_THROWS_AS(Tensor::empty(DType::float64, {1LL << 40, 1LL << 20}), MemoryError);
}

TEST_CASE(
    "allocator: large blocks are mappings; with CONVGRAPH_ALLOCATOR_GIVE_BACK=1 a miss gives "
    "back cached blocks of other sizes",
    "[tensor]") {
  const char* env = std::getenv("CONVGRAPH_ALLOCATOR_GIVE_BACK");
  const bool give_back = env != nullptr && std::string(env) == "1";
  Allocator& a = cpu_allocator();
  a.release_cached();
  // Sizes no other test of this process uses, so that their classes start empty.
  const std::size_t big = (std::size_t{23} << 20) + 4096;
  const std::size_t other = (std::size_t{13} << 20) + 4096;
  void* p = a.allocate(big);
  a.deallocate(p, big);
  const AllocatorStats cached = a.stats();
  REQUIRE(cached.bytes_cached >= big);
  // A block of another class: the cached one does not fit it and goes back to the system, so
  // what the process holds does not grow by both.
  void* q = a.allocate(other);
  const AllocatorStats after = a.stats();
  REQUIRE(after.cache_hits == cached.cache_hits);
  if (give_back) {
    REQUIRE(after.bytes_cached + big <= cached.bytes_cached);
  } else {
    REQUIRE(after.bytes_cached == cached.bytes_cached);  // kept for the next call of that size
  }
  // Mapped blocks are written and read like any other (2 MiB aligned from 4 MiB).
  REQUIRE(reinterpret_cast<std::uintptr_t>(q) % (std::size_t{2} << 20) == 0);
  static_cast<char*>(q)[0] = 1;
  static_cast<char*>(q)[other - 1] = 2;
  REQUIRE(static_cast<char*>(q)[other - 1] == 2);
  a.deallocate(q, other);
  // Its own class is reused.
  void* r = a.allocate(other);
  REQUIRE(a.stats().cache_hits == after.cache_hits + 1);
  REQUIRE(r == q);
  a.deallocate(r, other);
  // Small blocks are cached as before: a miss for one gives back nothing.
  const std::size_t small = 3000;
  const AllocatorStats with_large = a.stats();
  void* s = a.allocate(small);
  // (At most the small block's own class left the cache, if it was there.)
  REQUIRE(a.stats().bytes_cached + 4096 >= with_large.bytes_cached);
  a.deallocate(s, small);
  a.release_cached();
  REQUIRE(a.stats().bytes_cached == 0);
}

TEST_CASE("device: parsing", "[tensor]") {
  REQUIRE(parse_device("cpu", "device") == Device::cpu());
  REQUIRE(parse_device("cuda", "device") == Device::cuda(0));
  REQUIRE(parse_device("cuda1", "device") == Device::cuda(1));
  REQUIRE_THROWS_AS(parse_device("gpu", "device"), ValueError);
  REQUIRE(Device::cuda(2).str() == "cuda2");
}
