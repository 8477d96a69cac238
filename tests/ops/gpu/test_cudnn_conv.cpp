// GpuDnnConv (cuDNN) against the reference convolutions, every algorithm flag value, the
// precision flag, the algorithm caches and the dnn.enabled semantics of the conv_dnn lowering.
// Tagged [cuda]: skipped (visibly) where no GPU can be used.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include "convgraph/build_config.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"
#if CONVGRAPH_HAVE_CUDNN
#include "convgraph/ops/gpu/cudnn_conv.hpp"
#include "support/size_one_cases.hpp"
#endif

using namespace convgraph;
using convgraph::testing::random_tensor;

namespace {

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* n : f.graph().toposort()) names.push_back(n->op->name());
  return names;
}

std::size_t count_prefix(const std::vector<std::string>& names, const std::string& prefix) {
  return static_cast<std::size_t>(std::count_if(
      names.begin(), names.end(), [&](const std::string& n) { return n.starts_with(prefix); }));
}

std::string compile_error(const std::vector<Variable>& in, const std::vector<Variable>& out,
                          const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  try {
    compile(in, out, options);
  } catch (const ConvGraphError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

#if CONVGRAPH_HAVE_CUDNN

namespace {

const Device kGpu = Device::cuda(0);

Shape last_axes(const Shape& s, int n) {
  return Shape(s.end() - n, s.end());
}

CudnnConvOptions options_for(ConvDirection direction, const std::string& algo = "") {
  CudnnConvOptions o;
  o.algo = !algo.empty() ? algo : direction == ConvDirection::forward ? "small" : "none";
  o.autotune_cache = "off";  // unit tests never write the user's cache file
  return o;
}

Tensor spatial_tensor(const Shape& spatial) {
  return Tensor::from_vector<std::int64_t>(spatial, {static_cast<std::int64_t>(spatial.size())});
}

// Runs one GpuDnnConv on the device through perform(); the result comes back to the host.
Tensor run_dnn(ConvDirection direction, const ConvParams& p, const CudnnConvOptions& o,
               const Tensor& a, const Tensor& b, const Shape& spatial = {}) {
  const GpuDnnConv op(direction, p, o);
  std::vector<Tensor> in{a.to(kGpu), b.to(kGpu)};
  if (direction != ConvDirection::forward) in.push_back(spatial_tensor(spatial));
  std::vector<Tensor> out(1);
  op.perform(in, out);
  REQUIRE(out[0].device() == kGpu);
  REQUIRE(out[0].dtype() == a.dtype());
  return out[0].to(Device::cpu());
}

void require_close(const Tensor& actual, const Tensor& expected, double tol) {
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE_ALLCLOSE(actual.cast(DType::float64), expected.cast(DType::float64), tol, tol);
}

// The three directions of one problem against the reference, computed in float64 from the same
// (rounded) inputs. FWD / BWD_DATA / BWD_FILTER: the algorithm of each direction.
void check_directions(const ConvParams& p, const Shape& image_shape, const Shape& kernel_shape,
                      DType dtype, double tol, const std::string& precision = "as_input_f32",
                      const std::string& fwd = "small", const std::string& bwd_data = "none",
                      const std::string& bwd_filter = "none", std::uint64_t seed = 1,
                      const std::string& cache_path = "") {
  const int n = p.convdim;
  const Tensor image = random_tensor(dtype, image_shape, seed);
  const Tensor kernel = random_tensor(dtype, kernel_shape, seed + 1);
  const Tensor image64 = image.cast(DType::float64);
  const Tensor kernel64 = kernel.cast(DType::float64);

  CudnnConvOptions o = options_for(ConvDirection::forward, fwd);
  o.precision = precision;
  if (!cache_path.empty()) {
    o.autotune_cache = "read_write";
    o.autotune_cache_path = cache_path;
  }
  const Tensor expected_out = reference_conv_forward(p, image64, kernel64);
  {
    INFO("forward, algo " << fwd);
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected_out, tol);
  }
  const Tensor top = random_tensor(dtype, expected_out.shape(), seed + 2);
  const Tensor top64 = top.cast(DType::float64);
  {
    INFO("grad_inputs, algo " << bwd_data);
    o.algo = bwd_data;
    const Shape spatial = last_axes(image_shape, n);
    require_close(run_dnn(ConvDirection::grad_inputs, p, o, kernel, top, spatial),
                  reference_conv_grad_inputs(p, kernel64, top64, spatial), tol);
  }
  {
    INFO("grad_weights, algo " << bwd_filter);
    o.algo = bwd_filter;
    const Shape spatial = last_axes(kernel_shape, n);
    require_close(run_dnn(ConvDirection::grad_weights, p, o, image, top, spatial),
                  reference_conv_grad_weights(p, image64, top64, spatial), tol);
  }
}

struct Case {
  const char* label;
  ConvParams params;
  Shape image, kernel;
};

std::vector<Case> parameter_grid() {
  using E = BorderMode::Entry;
  const BorderMode pads_2_1(std::vector<E>{std::int64_t{2}, std::int64_t{1}});
  const BorderMode pads_1_0_2(std::vector<E>{std::int64_t{1}, std::int64_t{0}, std::int64_t{2}});
  return {
      {"2d valid", make_conv_params(2, "valid"), {2, 3, 7, 8}, {4, 3, 3, 2}},
      {"2d full, cross", make_conv_params(2, "full", {}, false), {2, 3, 6, 5}, {4, 3, 3, 3}},
      {"2d half, stride 2", make_conv_params(2, "half", {2, 2}), {2, 3, 9, 8}, {5, 3, 3, 3}},
      {"2d int pad, strides (1, 2), dilation (2, 1)",
       make_conv_params(2, std::int64_t{1}, {1, 2}, true, {2, 1}),
       {2, 2, 9, 9},
       {3, 2, 3, 3}},
      {"2d tuple pads, stride (2, 1)",
       make_conv_params(2, pads_2_1, {2, 1}),
       {1, 3, 8, 7},
       {2, 3, 4, 3}},
      {"2d groups 2, half",
       make_conv_params(2, "half", {}, true, {}, 2),
       {2, 4, 7, 7},
       {6, 2, 3, 3}},
      {"2d depthwise (groups = channels), cross",
       make_conv_params(2, "half", {1, 1}, false, {}, 3),
       {2, 3, 8, 8},
       {6, 1, 3, 3}},
      {"2d dilation 2, cross, full",
       make_conv_params(2, "full", {}, false, {2, 2}),
       {1, 2, 7, 6},
       {3, 2, 2, 3}},
      {"2d 1x1, stride 2", make_conv_params(2, "valid", {2, 2}), {2, 5, 7, 7}, {4, 5, 1, 1}},
      {"3d valid", make_conv_params(3, "valid"), {2, 2, 5, 6, 4}, {3, 2, 3, 2, 2}},
      {"3d half, strides, dilation",
       make_conv_params(3, "half", {2, 1, 2}, true, {1, 2, 1}),
       {1, 2, 6, 7, 5},
       {2, 2, 3, 3, 3}},
      {"3d full, groups 2, cross",
       make_conv_params(3, "full", {}, false, {}, 2),
       {2, 4, 4, 3, 4},
       {4, 2, 2, 2, 3}},
      {"3d tuple pads, stride 2",
       make_conv_params(3, pads_1_0_2, {2, 2, 2}),
       {1, 3, 5, 6, 5},
       {2, 3, 3, 2, 3}},
  };
}

}  // namespace

TEST_CASE(
    "cuDNN: every direction matches the reference on the parameter grid, float32 and "
    "float64",
    "[cuda]") {
  testing::require_gpu_or_skip();
  for (const Case& c : parameter_grid()) {
    for (DType dtype : {DType::float32, DType::float64}) {
      INFO(c.label << ", " << dtype_name(dtype));
      check_directions(c.params, c.image, c.kernel, dtype, dtype == DType::float64 ? 1e-10 : 1e-4);
    }
  }
}

TEST_CASE("cuDNN: kernels of size 1 on any axis, every direction, float32 and float64", "[cuda]") {
  // The shared table of size-1 kernels (support/size_one_cases.hpp) without the unshared and
  // asymmetric rows, which cuDNN does not take (the lowering leaves them to GpuCorrMM).
  testing::require_gpu_or_skip();
  convgraph::testing::SizeOneFilter filter;
  filter.unshared = false;
  filter.asymmetric = false;
  const std::vector<convgraph::testing::SizeOneCase> cases =
      convgraph::testing::size_one_cases(filter);
  for (std::size_t c = 0; c < cases.size(); ++c) {
    for (DType dtype : {DType::float32, DType::float64}) {
      INFO(cases[c].label << ", " << dtype_name(dtype));
      check_directions(cases[c].params, cases[c].image, cases[c].kernel, dtype,
                       dtype == DType::float64 ? 1e-10 : 1e-4, "as_input_f32", "small", "none",
                       "none", 1500 + c);
    }
  }
}

TEST_CASE("cuDNN: float16 data (pseudo-half by default) on the parameter grid", "[cuda]") {
  testing::require_gpu_or_skip();
  for (const Case& c : parameter_grid()) {
    INFO(c.label);
    check_directions(c.params, c.image, c.kernel, DType::float16, 2e-2);
  }
}

TEST_CASE("cuDNN: every fixed and runtime algorithm of every direction computes the reference",
          "[cuda]") {
  testing::require_gpu_or_skip();
  const std::vector<std::string> runtime = {"guess_once", "guess_on_shape_change", "time_once",
                                            "time_on_shape_change"};
  auto with_runtime = [&](std::vector<std::string> v) {
    v.insert(v.end(), runtime.begin(), runtime.end());
    return v;
  };
  const auto fwd = with_runtime(
      {"small", "none", "large", "fft", "fft_tiling", "winograd", "winograd_non_fused"});
  const auto bwd_data = with_runtime(
      {"none", "deterministic", "fft", "fft_tiling", "winograd", "winograd_non_fused"});
  const auto bwd_filter =
      with_runtime({"none", "deterministic", "fft", "small", "winograd_non_fused", "fft_tiling"});
  // One problem most algorithms support, and one many refuse (5x5 dilated strided grouped
  // kernels, a 1x1 problem for FFT, a large image for FFT): those must fall back, not fail.
  struct Problem {
    const char* label;
    ConvParams params;
    Shape image, kernel;
  };
  const std::vector<Problem> problems = {
      {"3x3 half", make_conv_params(2, "half"), {2, 3, 9, 9}, {4, 3, 3, 3}},
      {"5x5 strided dilated grouped cross",
       make_conv_params(2, std::int64_t{1}, {2, 2}, false, {2, 2}, 2),
       {2, 4, 14, 13},
       {6, 2, 5, 5}},
      {"1x1", make_conv_params(2, "valid"), {2, 8, 6, 6}, {4, 8, 1, 1}},
      {"wide image", make_conv_params(2, "half"), {1, 1, 3, 1100}, {2, 1, 3, 3}},
  };
  // FFT and Winograd algorithms are less accurate than the GEMM-based ones.
  const double tol = 2e-3;
  for (const Problem& pr : problems) {
    for (const auto& algo : fwd) {
      INFO(pr.label << ": algo_fwd=" << algo);
      check_directions(pr.params, pr.image, pr.kernel, DType::float32, tol, "as_input_f32", algo);
    }
    for (const auto& algo : bwd_data) {
      INFO(pr.label << ": algo_bwd_data=" << algo);
      check_directions(pr.params, pr.image, pr.kernel, DType::float32, tol, "as_input_f32", "none",
                       algo, "none");
    }
    for (const auto& algo : bwd_filter) {
      INFO(pr.label << ": algo_bwd_filter=" << algo);
      check_directions(pr.params, pr.image, pr.kernel, DType::float32, tol, "as_input_f32", "none",
                       "none", algo);
    }
  }
  // 3-D: the fixed algorithms 3-D convolutions have, and the runtime ones.
  const ConvParams p3 = make_conv_params(3, "half", {1, 2, 1});
  for (const std::string algo : {"none", "small", "fft_tiling", "guess_once", "time_once",
                                 "guess_on_shape_change", "time_on_shape_change"}) {
    INFO("3d algo_fwd=" << algo);
    check_directions(p3, {2, 3, 6, 7, 5}, {4, 3, 3, 3, 3}, DType::float32, tol, "as_input_f32",
                     algo, "none", "none");
  }
  for (const std::string algo :
       {"none", "deterministic", "fft_tiling", "guess_once", "time_on_shape_change"}) {
    INFO("3d algo_bwd_data=" << algo);
    check_directions(p3, {2, 3, 6, 7, 5}, {4, 3, 3, 3, 3}, DType::float32, tol, "as_input_f32",
                     "none", algo, "none");
  }
  for (const std::string algo : {"none", "small", "guess_on_shape_change", "time_once"}) {
    INFO("3d algo_bwd_filter=" << algo);
    check_directions(p3, {2, 3, 6, 7, 5}, {4, 3, 3, 3, 3}, DType::float32, tol, "as_input_f32",
                     "none", "none", algo);
  }
}

TEST_CASE("cuDNN: a fixed algorithm whose workspace exceeds the limit falls back", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "half");
  const Tensor image = random_tensor(DType::float32, {4, 16, 32, 32}, 5);
  const Tensor kernel = random_tensor(DType::float32, {16, 16, 5, 5}, 6);
  CudnnConvOptions o = options_for(ConvDirection::forward, "fft");
  o.workspace_limit_bytes = 1;  // one byte: only workspace-free algorithms fit
  require_close(run_dnn(ConvDirection::forward, p, o, image, kernel),
                reference_conv_forward(p, image, kernel), 1e-3);
}

TEST_CASE("cuDNN: 3-D convolutions refuse the fixed algorithms cuDNN lacks in 3-D", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p3 = make_conv_params(3, "valid");
  auto refused = [&](ConvDirection d, const std::string& algo) {
    try {
      GpuDnnConv op(d, p3, options_for(d, algo));
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  for (const std::string algo : {"large", "fft", "winograd", "winograd_non_fused"}) {
    INFO(algo);
    REQUIRE(refused(ConvDirection::forward, algo).find("can't be used for 3d convolutions") !=
            std::string::npos);
  }
  for (const std::string algo : {"fft", "winograd", "winograd_non_fused"}) {
    REQUIRE(refused(ConvDirection::grad_inputs, algo).find("can't be used for 3d") !=
            std::string::npos);
  }
  for (const std::string algo : {"deterministic", "fft", "winograd_non_fused", "fft_tiling"}) {
    REQUIRE(refused(ConvDirection::grad_weights, algo).find("can't be used for 3d") !=
            std::string::npos);
  }
  for (const std::string algo : {"none", "small", "fft_tiling", "time_once"}) {
    REQUIRE(refused(ConvDirection::forward, algo).empty());
  }
  // The same values are fine in 2-D; a name the direction does not have is refused anywhere.
  REQUIRE_NOTHROW(GpuDnnConv(ConvDirection::forward, make_conv_params(2, "valid"),
                             options_for(ConvDirection::forward, "winograd")));
  const std::string unknown = refused(ConvDirection::grad_weights, "winograd");
  REQUIRE(unknown.find("unknown cuDNN algorithm 'winograd'") != std::string::npos);
  REQUIRE(unknown.find("dnn.conv.algo_bwd_filter") != std::string::npos);
}

TEST_CASE("cuDNN: the precision flag", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "half", {2, 1});
  const Shape image{2, 3, 8, 7}, kernel{4, 3, 3, 3};
  // float32 data computed in float64 (converted on the device and back): as exact as float32.
  check_directions(p, image, kernel, DType::float32, 1e-5, "float64");
  // float64 data computed in float32: float32's accuracy.
  check_directions(p, image, kernel, DType::float64, 1e-4, "float32");
  // float16 data: as_input keeps float16 compute (TRUE_HALF) for the forward only.
  {
    const Tensor x = random_tensor(DType::float16, image, 3);
    const Tensor w = random_tensor(DType::float16, kernel, 4);
    CudnnConvOptions o = options_for(ConvDirection::forward);
    o.precision = "as_input";
    require_close(run_dnn(ConvDirection::forward, p, o, x, w),
                  reference_conv_forward(p, x.cast(DType::float64), w.cast(DType::float64)), 5e-2);
    o.precision = "float16";  // float32 data computed in float16
    const Tensor x32 = random_tensor(DType::float32, image, 5);
    const Tensor w32 = random_tensor(DType::float32, kernel, 6);
    require_close(run_dnn(ConvDirection::forward, p, o, x32, w32),
                  reference_conv_forward(p, x32, w32), 5e-2);
  }
  // float16 precision in a backward direction is a TypeError: explicitly at construction ...
  for (ConvDirection d : {ConvDirection::grad_inputs, ConvDirection::grad_weights}) {
    CudnnConvOptions o = options_for(d);
    o.precision = "float16";
    try {
      GpuDnnConv op(d, p, o);
      FAIL("float16 precision was accepted for a backward direction");
    } catch (const TypeError& e) {
      REQUIRE(std::string(e.what()).find("disabled for cuDNN backward convolutions") !=
              std::string::npos);
    }
  }
  // ... and as_input on float16 data when the node is built.
  {
    CudnnConvOptions o = options_for(ConvDirection::grad_weights);
    o.precision = "as_input";
    auto op = std::make_shared<GpuDnnConv>(ConvDirection::grad_weights, p, o);
    Variable x = transfer(tensor("x", DType::float16, {2, 3, 8, 7}), kGpu);
    Variable t = transfer(tensor("t", DType::float16, {2, 4, 4, 7}), kGpu);
    REQUIRE_THROWS_AS(apply(op, {x, t, make_constant(spatial_tensor({3, 3}))}), TypeError);
  }
  {
    CudnnConvOptions o = options_for(ConvDirection::forward);
    o.precision = "float8";
    REQUIRE_THROWS_AS(GpuDnnConv(ConvDirection::forward, p, o), ValueError);
  }
}

TEST_CASE("cuDNN: float32 is computed without TF32 unless dnn.conv.allow_tf32 is set", "[cuda]") {
  testing::require_gpu_or_skip();
  // 576 products per output: TF32's 10-bit mantissa would show as errors around 1e-3.
  const ConvParams p = make_conv_params(2, "half");
  const Tensor image = random_tensor(DType::float32, {2, 64, 12, 12}, 7);
  const Tensor kernel = random_tensor(DType::float32, {8, 64, 3, 3}, 8);
  const Tensor expected =
      reference_conv_forward(p, image.cast(DType::float64), kernel.cast(DType::float64));
  for (const std::string algo : {"none", "small", "guess_once", "time_once"}) {
    INFO(algo);
    CudnnConvOptions o = options_for(ConvDirection::forward, algo);
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, 5e-4);
    o.allow_tf32 = true;
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, 5e-2);
  }
}

TEST_CASE("cuDNN: empty batches and channels give empty or zero outputs", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "half");
  const CudnnConvOptions fwd = options_for(ConvDirection::forward);
  const Tensor empty_batch = random_tensor(DType::float32, {0, 3, 5, 5}, 1);
  const Tensor kernel = random_tensor(DType::float32, {4, 3, 3, 3}, 2);
  REQUIRE(run_dnn(ConvDirection::forward, p, fwd, empty_batch, kernel).shape() ==
          Shape{0, 4, 5, 5});
  // No input channels: every output is a sum over nothing.
  const Tensor no_channels = random_tensor(DType::float32, {2, 0, 5, 5}, 3);
  const Tensor no_channel_kernel = random_tensor(DType::float32, {4, 0, 3, 3}, 4);
  const Tensor zeros = run_dnn(ConvDirection::forward, p, fwd, no_channels, no_channel_kernel);
  REQUIRE(tensor_equal(zeros, Tensor::zeros(DType::float32, {2, 4, 5, 5})));
  // The weight gradient of an empty batch is zero.
  const Tensor top = random_tensor(DType::float32, {0, 4, 5, 5}, 5);
  const Tensor dw = run_dnn(ConvDirection::grad_weights, p,
                            options_for(ConvDirection::grad_weights), empty_batch, top, {3, 3});
  REQUIRE(tensor_equal(dw, Tensor::zeros(DType::float32, {4, 3, 3, 3})));
}

TEST_CASE("cuDNN: bad inputs are errors naming the op, before anything runs", "[cuda]") {
  testing::require_gpu_or_skip();
  const ConvParams p = make_conv_params(2, "valid");
  const CudnnConvOptions o = options_for(ConvDirection::forward);
  const Tensor image = random_tensor(DType::float32, {2, 3, 5, 5}, 1);
  const Tensor wrong_channels = random_tensor(DType::float32, {4, 2, 3, 3}, 2);
  REQUIRE_THROWS_AS(run_dnn(ConvDirection::forward, p, o, image, wrong_channels), ShapeError);
  // Inputs left on the host.
  const GpuDnnConv op(ConvDirection::forward, p, o);
  std::vector<Tensor> out(1);
  REQUIRE_THROWS_AS(op.perform({image, random_tensor(DType::float32, {4, 3, 3, 3}, 3)}, out),
                    UnsupportedError);
  // A topgrad that does not fit the given image size.
  const Tensor kernel = random_tensor(DType::float32, {4, 3, 3, 3}, 4);
  const Tensor top = random_tensor(DType::float32, {2, 4, 4, 4}, 5);
  REQUIRE_THROWS_AS(run_dnn(ConvDirection::grad_inputs, p, options_for(ConvDirection::grad_inputs),
                            kernel, top, {5, 5}),
                    ShapeError);
  // Parameters cuDNN has no form for.
  REQUIRE_THROWS_AS(GpuDnnConv(ConvDirection::forward,
                               make_conv_params(2, BorderMode::pairs({{1, 0}, {2, 2}})), o),
                    UnsupportedError);
}

TEST_CASE("cuDNN: time_once selects once per node, the process cache serves other nodes",
          "[cuda]") {
  testing::require_gpu_or_skip();
  reset_cudnn_algo_cache();
  Variable x = tensor4("x", DType::float32);
  Variable w = tensor4("w", DType::float32);
  Variable y = conv2d(x, w, {.border_mode = "half"});
  auto compiled = [&](const std::string& algo) {
    CompileOptions options;
    options.flags = fmt::format("device=cuda,dnn.conv.algo_fwd={},autotune.cache=off", algo);
    Function f = compile({x, w}, {y}, options);
    REQUIRE(count_prefix(op_names(f), "GpuDnnConv") == 1);
    return f;
  };
  const ConvParams p = make_conv_params(2, "half");
  auto check = [&](const Function& f, std::int64_t batch, std::uint64_t seed) {
    const Tensor xs = random_tensor(DType::float32, {batch, 3, 10, 9}, seed);
    const Tensor ws = random_tensor(DType::float32, {5, 3, 3, 3}, seed + 1);
    require_close(f({xs, ws})[0], reference_conv_forward(p, xs, ws), 1e-3);
  };

  Function once = compiled("time_once");
  const CudnnAlgoStats s0 = cudnn_algo_stats();
  check(once, 2, 1);
  const CudnnAlgoStats s1 = cudnn_algo_stats();
  REQUIRE(s1.timed == s0.timed + 1);
  check(once, 2, 3);
  check(once, 3, 5);  // another shape: *_once keeps its first choice
  REQUIRE(cudnn_algo_stats().timed == s1.timed);

  // Another node with the same problem: its first selection comes from the process cache.
  Function on_change = compiled("time_on_shape_change");
  check(on_change, 2, 7);
  const CudnnAlgoStats s2 = cudnn_algo_stats();
  REQUIRE(s2.timed == s1.timed);
  REQUIRE(s2.cache_hits == s1.cache_hits + 1);
  check(on_change, 3, 9);  // a new shape is timed
  const CudnnAlgoStats s3 = cudnn_algo_stats();
  REQUIRE(s3.timed == s2.timed + 1);
  check(on_change, 3, 11);  // and remembered by the node
  REQUIRE(cudnn_algo_stats().timed == s3.timed);
  REQUIRE(cudnn_algo_stats().cache_hits == s3.cache_hits);

  // guess_*: cuDNN's heuristics, counted apart.
  Function guess = compiled("guess_on_shape_change");
  check(guess, 4, 13);
  REQUIRE(cudnn_algo_stats().guessed == s3.guessed + 1);
  REQUIRE(cudnn_algo_stats().timed == s3.timed);

  // Forgetting the cache makes the next new node time again.
  reset_cudnn_algo_cache();
  Function again = compiled("time_on_shape_change");
  check(again, 2, 15);
  REQUIRE(cudnn_algo_stats().timed == s3.timed + 1);
}

namespace {

// A fresh autotune cache file in a fresh directory (removed with the object).
struct TempCache {
  std::filesystem::path dir;
  std::string path;
  TempCache() {
    dir = std::filesystem::temp_directory_path() /
          fmt::format("convgraph_cudnn_graph_{}", std::random_device{}());
    std::filesystem::create_directories(dir);
    path = (dir / "autotune.jsonl").string();
  }
  ~TempCache() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string text() const {
    std::ifstream in(path);
    std::stringstream t;
    t << in.rdbuf();
    return t.str();
  }
  // The "choice" of every cudnn_algo record, in file order.
  std::vector<std::string> choices() const {
    std::vector<std::string> out;
    std::istringstream lines(text());
    for (std::string line; std::getline(lines, line);) {
      if (line.find("cudnn_algo") == std::string::npos) continue;
      const std::size_t at = line.find("\"choice\"");
      if (at == std::string::npos) continue;
      const std::size_t open = line.find('"', line.find(':', at) + 1);
      const std::size_t close = line.find('"', open + 1);
      out.push_back(line.substr(open + 1, close - open - 1));
    }
    return out;
  }
};

std::size_t count_engines(const std::vector<std::string>& choices) {
  return static_cast<std::size_t>(
      std::count_if(choices.begin(), choices.end(),
                    [](const std::string& c) { return c.starts_with("engine="); }));
}

}  // namespace

TEST_CASE(
    "cuDNN graph API: guess_* runs the graph API's first engine, matching the reference in "
    "float32, float16, grouped and 3-D convolutions",
    "[cuda]") {
  testing::require_gpu_or_skip();
  reset_cudnn_algo_cache();
  for (DType dtype : {DType::float32, DType::float16}) {
    TempCache cache;
    for (const Case& c : parameter_grid()) {
      INFO(c.label << ", " << dtype_name(dtype));
      check_directions(c.params, c.image, c.kernel, dtype, dtype == DType::float32 ? 1e-4 : 2e-2,
                       "as_input_f32", "guess_once", "guess_once", "guess_on_shape_change", 1,
                       cache.path);
    }
    // Every selection is a record; the graph API's engine is the winner of (almost) every one
    // (the graph API may have nothing for an odd problem: the legacy heuristics then win).
    const auto choices = cache.choices();
    INFO(dtype_name(dtype) << " records:\n" << cache.text());
    REQUIRE(choices.size() == 3 * parameter_grid().size());
    REQUIRE(count_engines(choices) * 10 >= choices.size() * 9);
  }
  reset_cudnn_algo_cache();
}

TEST_CASE(
    "cuDNN graph API: time_* times the engines with the legacy algorithms; the choice is "
    "re-created from the cache file",
    "[cuda]") {
  testing::require_gpu_or_skip();
  reset_cudnn_algo_cache();
  const ConvParams p = make_conv_params(2, "half");
  for (DType dtype : {DType::float16, DType::float32}) {
    INFO(dtype_name(dtype));
    TempCache cache;
    const Tensor image = random_tensor(dtype, {8, 64, 14, 14}, 21);
    const Tensor kernel = random_tensor(dtype, {64, 64, 3, 3}, 22);
    const Tensor expected =
        reference_conv_forward(p, image.cast(DType::float64), kernel.cast(DType::float64));
    const double tol = dtype == DType::float16 ? 2e-2 : 5e-4;
    CudnnConvOptions o = options_for(ConvDirection::forward, "time_once");
    o.autotune_cache = "read_write";
    o.autotune_cache_path = cache.path;
    const CudnnAlgoStats s0 = cudnn_algo_stats();
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, tol);
    const CudnnAlgoStats s1 = cudnn_algo_stats();
    REQUIRE(s1.timed == s0.timed + 1);
    // Both kinds were timed: the record's timings name legacy algorithms and engines.
    const std::string text = cache.text();
    INFO(text);
    REQUIRE(text.find("algo=") != std::string::npos);
    REQUIRE(text.find("engine=") != std::string::npos);
    REQUIRE(cache.choices().size() == 1);
    // Another node in a "new process" (the in-memory cache forgotten): the winner comes from the
    // file -- an engine is re-created from its index and knobs -- and nothing is timed again.
    reset_cudnn_algo_cache();
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, tol);
    const CudnnAlgoStats s2 = cudnn_algo_stats();
    REQUIRE(s2.timed == s1.timed);
    REQUIRE(s2.cache_hits == s1.cache_hits + 1);
    // Backward directions too.
    const Tensor top = random_tensor(dtype, expected.shape(), 23);
    const Tensor top64 = top.cast(DType::float64);
    if (dtype == DType::float32) {
      o.algo = "time_on_shape_change";
      require_close(run_dnn(ConvDirection::grad_inputs, p, o, kernel, top, {14, 14}),
                    reference_conv_grad_inputs(p, kernel.cast(DType::float64), top64, {14, 14}),
                    tol);
      require_close(run_dnn(ConvDirection::grad_weights, p, o, image, top, {3, 3}),
                    reference_conv_grad_weights(p, image.cast(DType::float64), top64, {3, 3}),
                    2e-3);
    }
  }
  reset_cudnn_algo_cache();
}

TEST_CASE("cuDNN graph API: without dnn.conv.allow_tf32 no TF32 engine runs", "[cuda]") {
  testing::require_gpu_or_skip();
  reset_cudnn_algo_cache();
  // 1152 products per output: TF32 (10-bit mantissa) would be off by about 1e-3 relative.
  const ConvParams p = make_conv_params(2, "half");
  const Tensor image = random_tensor(DType::float32, {8, 128, 14, 14}, 31);
  const Tensor kernel = random_tensor(DType::float32, {128, 128, 3, 3}, 32);
  const Tensor expected =
      reference_conv_forward(p, image.cast(DType::float64), kernel.cast(DType::float64));
  for (const std::string algo : {"guess_once", "time_once", "guess_on_shape_change"}) {
    INFO(algo);
    // Both caches in memory would serve the guess_* twice (guess_once and guess_on_shape_change
    // share their key): each algorithm writes its own file.
    reset_cudnn_algo_cache();
    clear_autotune_memory_cache();
    TempCache cache;
    CudnnConvOptions o = options_for(ConvDirection::forward, algo);
    o.autotune_cache = "read_write";
    o.autotune_cache_path = cache.path;
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, 5e-4);
    if (algo.starts_with("guess")) {
      // The graph API's engine ran (it is the first choice of a guess).
      const auto choices = cache.choices();
      INFO(cache.text());
      REQUIRE(choices.size() == 1);
      REQUIRE(count_engines(choices) == 1);
    }
    o.allow_tf32 = true;
    require_close(run_dnn(ConvDirection::forward, p, o, image, kernel), expected, 5e-2);
  }
  reset_cudnn_algo_cache();
}

#ifdef CONVGRAPH_CUDNN_SECOND_PROCESS
TEST_CASE("cuDNN: a second process reuses the algorithms timed by the first", "[cuda]") {
  testing::require_gpu_or_skip();
  const auto dir = std::filesystem::temp_directory_path() /
                   fmt::format("convgraph_cudnn_cache_{}", std::random_device{}());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "autotune.jsonl").string();
  const std::string out = (dir / "out.txt").string();

  const std::string command =
      fmt::format("CONVGRAPH_FLAGS='autotune.cache_path={}' '{}' >'{}' 2>&1", path,
                  CONVGRAPH_CUDNN_SECOND_PROCESS, out);
  auto run_helper = [&](std::string* printed) {
    const int status = std::system(command.c_str());
    std::ifstream in(out);
    std::stringstream text;
    text << in.rdbuf();
    *printed = text.str();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  // The first run selects every algorithm (exit code 1) and writes the choices to the file; the
  // second finds them all there (0).
  std::string first, second;
  const int first_code = run_helper(&first);
  INFO("first run: " << first);
  REQUIRE(first_code == 1);
  {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    INFO(text.str());
    REQUIRE(text.str().find("cudnn_algo") != std::string::npos);
  }
  const int second_code = run_helper(&second);
  INFO("second run: " << second);
  REQUIRE(second_code == 0);
  std::filesystem::remove_all(dir);
}
#endif

TEST_CASE("cuDNN: dnn.enabled decides whether conv_dnn lowers to GpuDnnConv", "[cuda]") {
  testing::require_gpu_or_skip();
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half", .subsample = {2, 2}});
  auto grads = grad(sum(y * y), {x, w});
  const std::vector<Variable> in{x, w};
  const std::vector<Variable> out{y, grads[0], grads[1]};
  const std::vector<Tensor> args{random_tensor(DType::float32, {2, 3, 9, 9}, 1),
                                 random_tensor(DType::float32, {4, 3, 3, 3}, 2)};
  CompileOptions reference;
  reference.flags = "optimizer_excluding=conv_gemm:conv_dnn:conv_check";
  const auto expected = compile(in, out, reference)(args);
  const std::string base = "device=cuda,autotune.cache=off,dnn.enabled=";
  for (const std::string enabled : {"auto", "True", "no_check", "False"}) {
    INFO("dnn.enabled=" << enabled);
    CompileOptions options;
    options.flags = base + enabled;
    const Function f = compile(in, out, options);
    const auto names = op_names(f);
    REQUIRE(count_prefix(names, "AbstractConv") == 0);
    if (enabled == "False") {
      REQUIRE(count_prefix(names, "GpuDnnConv") == 0);
    } else {
      REQUIRE(std::count(names.begin(), names.end(), "GpuDnnConv") == 1);
      REQUIRE(std::count(names.begin(), names.end(), "GpuDnnConvGradI") == 1);
      REQUIRE(std::count(names.begin(), names.end(), "GpuDnnConvGradW") == 1);
    }
    const auto actual = f(args);
    for (std::size_t i = 0; i < actual.size(); ++i) {
      require_close(actual[i], expected[i], 1e-3);
    }
  }
  // With conv_gemm excluded too, nothing is left, and the error says why.
  const std::string msg = compile_error(in, out, base + "False,optimizer_excluding=conv_gemm");
  INFO(msg);
  REQUIRE(msg.find("no implementation") != std::string::npos);
  REQUIRE(msg.find("conv_dnn (cuDNN): disabled by the flag dnn.enabled") != std::string::npos);
}

TEST_CASE(
    "cuDNN: asymmetric padding, unshared kernels and float16 backward precision go to "
    "conv_gemm",
    "[cuda]") {
  testing::require_gpu_or_skip();
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  const std::string flags = "device=cuda,autotune.cache=off";
  auto lowered = [&](const Variable& y, const std::vector<Variable>& in, const std::string& f) {
    CompileOptions options;
    options.flags = f;
    return op_names(compile(in, {y}, options));
  };
  Variable asym = conv2d(x, w, {.border_mode = BorderMode::pairs({{1, 0}, {2, 2}})});
  REQUIRE(count_prefix(lowered(asym, {x, w}, flags), "GpuDnnConv") == 0);
  std::string msg = compile_error({x, w}, {asym}, flags + ",optimizer_excluding=conv_gemm");
  INFO(msg);
  REQUIRE(msg.find("conv_dnn (cuDNN): asymmetric padding") != std::string::npos);

  Variable wu = tensor("wu", DType::float32, {4, 7, 7, 3, 3, 3});
  Variable unshared = conv2d(x, wu, {.unshared = true});
  REQUIRE(count_prefix(lowered(unshared, {x, wu}, flags), "GpuDnnConv") == 0);
  msg = compile_error({x, wu}, {unshared}, flags + ",optimizer_excluding=conv_gemm");
  REQUIRE(msg.find("conv_dnn (cuDNN): unshared") != std::string::npos);

  // float16 precision: the forward keeps cuDNN, the gradients are declined with the reason.
  Variable y = conv2d(x, w);
  auto grads = grad(sum(y * y), {x, w});
  CompileOptions options;
  options.flags = flags + ",dnn.conv.precision=float16";
  const auto names = op_names(compile({x, w}, {y, grads[0], grads[1]}, options));
  REQUIRE(std::count(names.begin(), names.end(), "GpuDnnConv") == 1);
  REQUIRE(count_prefix(names, "GpuDnnConvGrad") == 0);
  msg = compile_error({x, w}, {grads[1]},
                      flags + ",dnn.conv.precision=float16,optimizer_excluding=conv_gemm");
  REQUIRE(msg.find("disabled for cuDNN backward convolutions") != std::string::npos);
}

TEST_CASE("cuDNN: the library is usable and reports its version", "[cuda]") {
  testing::require_gpu_or_skip();
  std::string why;
  INFO(why);
  REQUIRE(cudnn_usable(kGpu, &why));
  REQUIRE(why.empty());
  REQUIRE(cudnn_version().starts_with("9."));
  REQUIRE_FALSE(cudnn_usable(Device::cpu(), &why));
  REQUIRE_FALSE(why.empty());
}

#else  // !CONVGRAPH_HAVE_CUDNN

TEST_CASE("cuDNN: without cuDNN, dnn.enabled=True is an error and auto falls back", "[cuda]") {
  testing::require_gpu_or_skip();
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w);
  const std::string msg = compile_error({x, w}, {y}, "device=cuda,dnn.enabled=True");
  INFO(msg);
  REQUIRE(msg.find("you enabled cuDNN (dnn.enabled=True) but it cannot be used") !=
          std::string::npos);
  REQUIRE(msg.find("not built into this convgraph") != std::string::npos);
  CompileOptions options;
  options.flags = "device=cuda,dnn.enabled=auto";
  REQUIRE(count_prefix(op_names(compile({x, w}, {y}, options)), "GpuDnnConv") == 0);
}

#endif
