// <convgraph/convgraph.hpp> alone gives every public API: this file includes nothing else of
// convgraph, so a function missing from the umbrella header fails to compile here.
#include <convgraph/convgraph.hpp>

#include <string>

#include "support/catch.hpp"

using namespace convgraph;

TEST_CASE("public api: the umbrella header builds every convolution function", "[api]") {
  const Variable x = tensor4("x", DType::float64);
  const Variable w = tensor4("w", DType::float64);
  CHECK(conv2d(x, w).type().rank() == 4);
  CHECK(conv2d_transpose(x, w, {Dim::unknown(), 3, 8, 8}).type().rank() == 4);
  const Variable depthwise = tensor4("depthwise", DType::float64);
  const Variable pointwise = tensor4("pointwise", DType::float64);
  CHECK(separable_conv2d(x, depthwise, pointwise, 3).type().rank() == 4);
  const Variable x1 = tensor3("x1", DType::float64);
  const Variable w1 = tensor3("w1", DType::float64);
  CHECK(causal_conv1d(x1, w1, {4, 3, 5}).type().rank() == 3);
  CHECK(bilinear_upsampling(x, {.ratio = 2}).type().rank() == 4);
  CHECK(bilinear_kernel_2D(Dim(2)).type().rank() == 2);
  const Variable signals = tensor5("signals", DType::float64);
  const Variable filters = tensor5("filters", DType::float64);
  CHECK(conv3d2d::conv3d(signals, filters).type().rank() == 5);
  CHECK(legacy::conv2d(x, w).type().rank() == 4);
}

TEST_CASE("public api: the umbrella header gives DebugModeError and the autotune cache calls",
          "[api]") {
  // DebugModeError is a ConvGraphError a program can catch by its own type.
  try {
    throw DebugModeError("an implementation disagreed with the reference");
  } catch (const ConvGraphError& e) {
    CHECK(dynamic_cast<const DebugModeError*>(&e) != nullptr);
  }
  clear_autotune_memory_cache();
  const AutotuneCacheOptions memory_only{AutotuneCacheMode::off, ""};
  const AutotuneKey key{"public_api_test", "cpu", {{"shape", "1"}}};
  CHECK_FALSE(autotune_lookup(key, memory_only).has_value());
  autotune_store(key, {"a", 1e-3, {{"a", 1e-3}}}, memory_only);
  REQUIRE(autotune_lookup(key, memory_only).has_value());
  CHECK(autotune_lookup(key, memory_only)->choice == "a");
  CHECK(autotune_cache_stats().memory_hits >= 1);
  clear_autotune_memory_cache();
  const std::string path = default_autotune_cache_path();
  CHECK((path.empty() || path.find("autotune") != std::string::npos));
}

TEST_CASE("public api: the umbrella header lists the passes", "[api]") {
  CHECK(pass_database().find("conv_check") != nullptr);
  CHECK(describe_selected_passes(Config::defaults()).find("merge") != std::string::npos);
}
