// The CUDA runtime: transfers, the caching device allocator, streams, device placement. Tagged
// [cuda]: skipped (visibly) where no GPU can be used.
#include <chrono>

#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using convgraph::testing::random_tensor;

TEST_CASE("host -> device -> host copies keep every element, in every dtype", "[cuda]") {
  testing::require_gpu_or_skip();
  for (DType dtype : kAllDTypes) {
    const Tensor host = random_tensor(dtype, {3, 5, 7}, 11, -4, 4);
    const Tensor device = host.to(Device::cuda());
    REQUIRE(device.device() == Device::cuda());
    REQUIRE(tensor_equal(device.to(Device::cpu()), host));
  }
}

TEST_CASE("strided and converting copies on the device", "[cuda]") {
  testing::require_gpu_or_skip();
  const Tensor host = random_tensor(DType::float32, {4, 6, 5}, 3);
  const Tensor device = host.to(Device::cuda());
  // A permuted view copied on the device, then to the host.
  const Tensor permuted = device.permute({2, 0, 1}).contiguous();
  REQUIRE(tensor_equal(permuted.to(Device::cpu()), host.permute({2, 0, 1}).contiguous()));
  // A dtype conversion on the device.
  const Tensor as_double = device.cast(DType::float64);
  REQUIRE(tensor_equal(as_double.to(Device::cpu()), host.cast(DType::float64)));
  const Tensor half = device.cast(DType::float16);
  REQUIRE(tensor_equal(half.to(Device::cpu()), host.cast(DType::float16)));
  // fill on the device.
  Tensor filled = Tensor::empty(DType::float32, {3, 3}, Device::cuda());
  filled.fill(2.5);
  REQUIRE(tensor_equal(filled.to(Device::cpu()), Tensor::full(DType::float32, {3, 3}, 2.5)));
  filled.fill(0.0);
  REQUIRE(tensor_equal(filled.to(Device::cpu()), Tensor::zeros(DType::float32, {3, 3})));
}

TEST_CASE("the device allocator reuses freed blocks", "[cuda]") {
  testing::require_gpu_or_skip();
  Allocator& allocator = allocator_for(Device::cuda());
  { Tensor a = Tensor::empty(DType::float32, {1 << 20}, Device::cuda()); }
  const AllocatorStats before = allocator.stats();
  { Tensor b = Tensor::empty(DType::float32, {1 << 20}, Device::cuda()); }
  const AllocatorStats after = allocator.stats();
  REQUIRE(after.allocations == before.allocations + 1);
  REQUIRE(after.cache_hits == before.cache_hits + 1);
}

TEST_CASE("an impossible device allocation is a MemoryError, and the allocator still works",
          "[cuda]") {
  testing::require_gpu_or_skip();
  REQUIRE_THROWS_AS(Tensor::empty(DType::float32, {std::int64_t{1} << 40}, Device::cuda()),
                    MemoryError);
  const Tensor ok = random_tensor(DType::float32, {16}, 1).to(Device::cuda());
  REQUIRE(ok.to(Device::cpu()).numel() == 16);
}

TEST_CASE("a device that does not exist is a DeviceError naming it", "[cuda]") {
  testing::require_gpu_or_skip();
  std::string why;
  REQUIRE_FALSE(device_available(Device::cuda(97), &why));
  REQUIRE(why.find("cuda97") != std::string::npos);
  REQUIRE_THROWS_AS(Tensor::empty(DType::float32, {4}, Device::cuda(97)), DeviceError);
}

TEST_CASE("device=cuda moves convolutions to the GPU with transfers only at the edges", "[cuda]") {
  testing::require_gpu_or_skip();
  const Variable x = tensor4("x", DType::float32);
  const Variable w = tensor4("w", DType::float32);
  const Variable y = relu(conv2d(relu(conv2d(x, w)), w));
  // Placement only (lowering is checked by the GPU op tests): keep the abstract ops.
  Config config = global_config();
  config.apply("device=cuda,optimizer_excluding=conv_dnn:conv_gemm:conv_check");
  CompileOptions options;
  options.config = config;
  const Function f = compile({x, w}, {y}, options);
  int to_gpu = 0, to_host = 0;
  for (Node* node : f.graph().toposort()) {
    if (node->op->name() == "GpuFromHost") ++to_gpu;
    if (node->op->name() == "HostFromGpu") ++to_host;
  }
  // x and w go up once each (w is read by both convolutions); each relu runs on the host, so
  // each convolution's result comes back once, and the first relu goes back up.
  CHECK(to_gpu == 3);
  CHECK(to_host == 2);
}

TEST_CASE("call_async queues a call on the function's stream without waiting; events time it",
          "[cuda]") {
  testing::require_gpu_or_skip();
  const Device gpu = Device::cuda(0);
  const Variable x = tensor4("x", DType::float32);
  const Variable w = tensor4("w", DType::float32);
  const Variable y = conv2d(x, w);
  Config config = global_config();
  config.apply("device=cuda");
  CompileOptions options;
  options.config = config;
  options.inputs_on_device = true;
  options.outputs_on_device = true;
  const Function f = compile({x, w}, {y}, options);
  const Tensor hx = random_tensor(DType::float32, {4, 3, 16, 16}, 1);
  const Tensor hw = random_tensor(DType::float32, {5, 3, 3, 3}, 2);
  const Tensor expected = f({hx.to(gpu), hw.to(gpu)}).at(0).to(Device::cpu());

  const std::shared_ptr<DeviceStream> stream = f.stream(gpu);
  REQUIRE(stream != nullptr);
  CHECK(stream->device() == gpu);
  CHECK(f.stream(Device::cpu()) == nullptr);
  CHECK(f.stream(Device::cuda(7)) == nullptr);

  // The inputs are made before the stream is kept busy (a copy on the legacy stream waits for it).
  Tensor dx = hx.to(gpu), dw = hw.to(gpu);
  const auto d0 = stream->record();
  stream->delay(300.0);
  const auto d1 = stream->record();
  const auto t0 = std::chrono::steady_clock::now();
  const auto start = stream->record();
  std::vector<Tensor> out = f.call_async({dx, dw});
  const auto end = stream->record();
  const double host_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // The inputs may go at once: the function keeps them until synchronize().
  dx = Tensor();
  dw = Tensor();
  // Queued behind a 300 ms kernel: a call that waited would have taken that long.
  CHECK(host_ms < 250.0);
  f.synchronize();
  CHECK(d0->elapsed_ms(*d1) > 250.0);
  const double call_ms = start->elapsed_ms(*end);
  CHECK(call_ms > 0.0);
  CHECK(call_ms < 250.0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].device() == gpu);
  REQUIRE_ALLCLOSE(out[0].to(Device::cpu()), expected, 1e-6, 1e-6);

  // A host output is complete when call_async returns.
  CompileOptions host_out = options;
  host_out.outputs_on_device = false;
  const Function g = compile({x, w}, {y}, host_out);
  const Tensor r = g.call_async({hx.to(gpu), hw.to(gpu)}).at(0);
  CHECK(r.device() == Device::cpu());
  REQUIRE_ALLCLOSE(r, expected, 1e-6, 1e-6);
  g.synchronize();
}
