// conv_meta, the convolution meta-optimizer, and the autotune cache it keeps its choices in.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "support/catch.hpp"
#include "support/stderr_capture.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using testing::count_substr;
using testing::StderrCapture;

namespace {

// Every test that includes conv_meta keeps the autotune cache away from the user's cache
// directory: off, or a temporary file.
const char* const kNoDiskCache = "autotune.cache=off";

bool meta_registered() {
  return pass_database().find("conv_meta") != nullptr;
}

// Compiles with conv_meta included. Until the pass is registered in the database, this runs
// the database's selected passes itself with conv_meta at its position (10), then compiles the
// result (whose convolutions are then concrete).
Function compile_with_meta(const std::vector<Variable>& inputs,
                           const std::vector<Variable>& outputs, const std::string& flags) {
  CompileOptions options;
  if (meta_registered()) {
    options.flags = flags + ",optimizer_including=conv_meta";
    return compile(inputs, outputs, options);
  }
  Config config = global_config();
  config.apply(flags);
  FunctionGraph graph(inputs, outputs);
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext ctx{config, &declines};
  bool meta_done = false;
  for (const PassEntry* pass : pass_database().select(config)) {
    if (!meta_done && pass->position > 10) {
      run_conv_meta(graph, ctx);
      meta_done = true;
    }
    pass->run(graph, ctx);
  }
  options.config = config;
  return compile(graph.inputs(), graph.outputs(), options);
}

// The abstract ops' reference perform()s, for the expected values.
Function compile_reference(const std::vector<Variable>& inputs,
                           const std::vector<Variable>& outputs) {
  CompileOptions options;
  options.flags = select_conv_impl_flags("reference");
  return compile(inputs, outputs, options);
}

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* n : f.graph().toposort()) names.push_back(n->op->name());
  return names;
}

std::size_t count_of(const std::vector<std::string>& names, const std::string& what) {
  return static_cast<std::size_t>(std::count(names.begin(), names.end(), what));
}

std::size_t count_abstract(const std::vector<std::string>& names) {
  return static_cast<std::size_t>(std::count_if(
      names.begin(), names.end(), [](const auto& n) { return n.rfind("AbstractConv", 0) == 0; }));
}

// The graph of the cache tests, also built by the second-process helper program
// (meta_second_process.cpp): keep the two identical. A 2-D 'valid' convolution and its two
// gradients: three convolutions, one per direction, each with every alternative applicable.
struct CacheGraph {
  std::vector<Variable> inputs, outputs;
  std::vector<Tensor> args;
};

CacheGraph make_cache_graph() {
  Variable x = tensor("x", DType::float32, {2, 3, 10, 10});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w);
  auto grads = grad(sum(y * y), {x, w});
  return {{x, w},
          {y, grads[0], grads[1]},
          {testing::random_tensor(DType::float32, {2, 3, 10, 10}, 11),
           testing::random_tensor(DType::float32, {4, 3, 3, 3}, 12)}};
}

void require_matches_reference(const CacheGraph& g, const Function& f) {
  const auto actual = f(g.args);
  const auto expected = compile_reference(g.inputs, g.outputs)(g.args);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("output " << i);
    REQUIRE_ALLCLOSE(actual[i], expected[i], 1e-4, 1e-4);
  }
}

// The temporary files of this test program, removed when it exits (failed tests included).
struct TempFiles {
  std::vector<std::string> paths;
  TempFiles() = default;
  TempFiles(const TempFiles&) = delete;
  TempFiles& operator=(const TempFiles&) = delete;
  ~TempFiles() {
    std::error_code ignored;
    for (const auto& path : paths) std::filesystem::remove(path, ignored);
  }
};

// A fresh path in the temporary directory; nothing exists there yet.
std::string temp_cache_path(const std::string& tag) {
  static std::atomic<int> counter{0};
  static TempFiles files;
  const auto path = std::filesystem::temp_directory_path() /
                    fmt::format("convgraph_meta_{}_{}_{}.jsonl", ::getpid(), tag, counter++);
  std::filesystem::remove(path);
  files.paths.push_back(path.string());
  return path.string();
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs COPIES of the helper program at once, all with the cache file PATH. Each copy's exit code
// (0: it timed nothing, 1: it timed candidates, 2: an error, 3: wrong values; -1: it did not
// run) and what they printed.
struct HelperRuns {
  std::vector<int> codes;
  std::string output;
};

HelperRuns run_second_process(const std::string& path, int copies = 1) {
  std::vector<std::string> outs, codes;
  std::string command = "(";
  for (int i = 0; i < copies; ++i) {
    outs.push_back(temp_cache_path("out"));
    codes.push_back(temp_cache_path("code"));
    command += fmt::format(
        "(CONVGRAPH_FLAGS='autotune.cache_path={}' '{}' >'{}' 2>&1; "
        "echo $? >'{}') & ",
        path, CONVGRAPH_META_SECOND_PROCESS, outs.back(), codes.back());
  }
  command += "wait)";
  const int status = std::system(command.c_str());
  HelperRuns runs;
  if (status != 0) runs.output = fmt::format("the shell returned status {}\n", status);
  for (int i = 0; i < copies; ++i) {
    const std::string code = read_text(codes[static_cast<std::size_t>(i)]);
    runs.codes.push_back(code.empty() ? -1 : std::stoi(code));
    runs.output += read_text(outs[static_cast<std::size_t>(i)]);
    std::filesystem::remove(codes[static_cast<std::size_t>(i)]);
    std::filesystem::remove(outs[static_cast<std::size_t>(i)]);
  }
  return runs;
}

// ---- one abstract convolution, lowered by one candidate ----

ShapeDims to_dims(const Shape& shape) {
  return ShapeDims(shape.begin(), shape.end());
}

struct Problem {
  ConvDirection direction;
  ConvParams params;
  Shape image, kernel;
};

std::string describe(const Problem& p) {
  const char* dir = p.direction == ConvDirection::forward       ? "forward"
                    : p.direction == ConvDirection::grad_inputs ? "gradInputs"
                                                                : "gradWeights";
  return fmt::format("{} {}D {} image {} kernel {}", dir, p.params.convdim, p.params.str(),
                     shape_str(p.image), shape_str(p.kernel));
}

// Builds the problem's abstract node on fresh inputs, lets candidate NAME replace it, and
// compares the result with the reference on random data. Returns why the candidate does not
// apply (empty when it applied and matched); *LOWERED gets the concrete ops it became.
std::string check_candidate(const std::string& name, const Problem& pb,
                            std::vector<std::string>* lowered = nullptr) {
  const ConvParams& p = pb.params;
  const int n = p.convdim;
  const Shape out = [&] {
    Shape r;
    for (const Dim& d : get_conv_output_shape(to_dims(pb.image), to_dims(pb.kernel), p.border,
                                              p.subsample, p.dilation)) {
      r.push_back(d.value());
    }
    return r;
  }();
  const Shape image_spatial(pb.image.end() - n, pb.image.end());
  const Shape kernel_spatial(pb.kernel.end() - n, pb.kernel.end());
  auto input = [](const char* label, const Shape& s) {
    return tensor(label, DType::float32, StaticShape(s.begin(), s.end()));
  };
  Variable a, b, y;
  Tensor ta, tb, expected;
  switch (pb.direction) {
    case ConvDirection::forward:
      a = input("image", pb.image);
      b = input("kernel", pb.kernel);
      y = abstract_conv(p, a, b);
      ta = testing::random_tensor(DType::float32, pb.image, 1);
      tb = testing::random_tensor(DType::float32, pb.kernel, 2);
      expected = reference_conv_forward(p, ta, tb);
      break;
    case ConvDirection::grad_inputs:
      a = input("kernel", pb.kernel);
      b = input("topgrad", out);
      y = abstract_conv_grad_inputs(p, a, b, to_dims(image_spatial), false);
      ta = testing::random_tensor(DType::float32, pb.kernel, 3);
      tb = testing::random_tensor(DType::float32, out, 4);
      expected = reference_conv_grad_inputs(p, ta, tb, image_spatial);
      break;
    case ConvDirection::grad_weights:
      a = input("image", pb.image);
      b = input("topgrad", out);
      y = abstract_conv_grad_weights(p, a, b, to_dims(kernel_spatial), false);
      ta = testing::random_tensor(DType::float32, pb.image, 5);
      tb = testing::random_tensor(DType::float32, out, 6);
      expected = reference_conv_grad_weights(p, ta, tb, kernel_spatial);
      break;
  }
  FunctionGraph graph({a, b}, {y});
  Node* node = nullptr;
  for (Node* candidate : graph.toposort()) {
    if (dynamic_cast<const AbstractConv*>(candidate->op.get()) != nullptr) node = candidate;
  }
  REQUIRE(node != nullptr);
  const Config config = global_config();
  const PassContext ctx{config, nullptr};
  std::string why;
  const Variable replacement = build_conv_meta_candidate(name, *node, ctx, &why);
  if (!replacement.defined()) {
    REQUIRE(!why.empty());
    return why;
  }
  graph.replace(node->output(0), replacement, "test");
  Function f = compile(graph.inputs(), graph.outputs());
  if (lowered != nullptr) *lowered = op_names(f);
  REQUIRE(count_abstract(op_names(f)) == 0);
  const Tensor actual = f({ta, tb})[0];
  REQUIRE_ALLCLOSE(actual, expected, 1e-4, 1e-4);
  return "";
}

ConvParams params(int n, const BorderMode& border, bool flip,
                  std::vector<std::int64_t> dilation = {}, std::vector<std::int64_t> subsample = {},
                  std::int64_t groups = 1) {
  return make_conv_params(n, border, std::move(subsample), flip, std::move(dilation), groups);
}

}  // namespace

TEST_CASE("conv_meta: candidates are selected by the metaopt counting rule", "[meta]") {
  // The table holds the CPU candidates, then the GPU ones (each node is offered only those of its
  // device); the rule selects over the whole table.
  auto selected = [](const std::string& flags) {
    Config config;
    config.apply(flags);
    return fmt::format("{}", fmt::join(select_conv_meta_candidates(config), " "));
  };
  REQUIRE(selected("") ==
          "corrmm onednn onednn_winograd winograd corrmm_alt onednn_alt onednn_winograd_alt "
          "winograd_alt cudnn gpu_corrmm cudnn_alt gpu_corrmm_alt");
  // Excluding a tag subtracts one per tag carried: the conv_gemm and Winograd candidates stay.
  REQUIRE(selected("metaopt.optimizer_excluding=conv_dnn") ==
          "corrmm winograd corrmm_alt winograd_alt gpu_corrmm gpu_corrmm_alt");
  REQUIRE(selected("metaopt.optimizer_excluding=alternative") ==
          "corrmm onednn onednn_winograd winograd cudnn gpu_corrmm");
  // Nothing default survives excluding default and conv_dnn ...
  REQUIRE(selected("metaopt.optimizer_excluding=conv_dnn:default").empty());
  // ... and including alternative brings back the gemm alternatives (the spec's example) and
  // conv3d2d, which is never default.
  REQUIRE(selected("metaopt.optimizer_including=alternative,"
                   "metaopt.optimizer_excluding=conv_dnn:default") ==
          "corrmm_alt winograd_alt conv3d2d gpu_corrmm_alt gpu_conv3d2d");
  REQUIRE(selected("metaopt.optimizer_including=conv3d2d") ==
          "corrmm onednn onednn_winograd winograd corrmm_alt onednn_alt onednn_winograd_alt "
          "winograd_alt conv3d2d cudnn gpu_corrmm cudnn_alt gpu_corrmm_alt gpu_conv3d2d");
  // Each listed tag counts: conv_gemm included twice outweighs default excluded once.
  REQUIRE(selected("metaopt.optimizer_including=conv_gemm,"
                   "metaopt.optimizer_excluding=default:onednn") ==
          "corrmm corrmm_alt gpu_corrmm gpu_corrmm_alt");
  REQUIRE(conv_meta_candidates().size() == 14);
}

TEST_CASE("conv_meta: every convolution becomes concrete and matches the reference", "[meta]") {
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  Variable x = tensor("x", DType::float32, {2, 3, 9, 8});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 2});
  Variable v = tensor("v", DType::float32, {2, 2, 5, 6, 4});
  Variable k = tensor("k", DType::float32, {3, 2, 3, 2, 2});
  Variable y = conv2d(x, w, {.border_mode = "half", .subsample = {2, 1}});
  Variable z = conv3d(v, k, {.border_mode = "full", .filter_flip = false});
  Variable cost = sum(y * y) + sum(z * z);
  auto grads = grad(cost, {x, w, v, k});
  const std::vector<Variable> inputs{x, w, v, k};
  const std::vector<Variable> outputs{cost, grads[0], grads[1], grads[2], grads[3]};
  Function f = compile_with_meta(inputs, outputs, kNoDiskCache);
  const auto names = op_names(f);
  REQUIRE(count_abstract(names) == 0);
  // Six convolutions, all three directions in 2-D and 3-D, each replaced by a timed winner.
  const ConvMetaStats stats = conv_meta_stats();
  REQUIRE(stats.nodes_replaced == 6);
  REQUIRE(stats.nodes_timed == 6);
  REQUIRE(stats.nodes_left == 0);
  REQUIRE(stats.candidates_timed >= 6);

  const std::vector<Tensor> args{testing::random_tensor(DType::float32, {2, 3, 9, 8}, 1),
                                 testing::random_tensor(DType::float32, {4, 3, 3, 2}, 2),
                                 testing::random_tensor(DType::float32, {2, 2, 5, 6, 4}, 3),
                                 testing::random_tensor(DType::float32, {3, 2, 3, 2, 2}, 4)};
  const auto actual = f(args);
  const auto expected = compile_reference(inputs, outputs)(args);
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("output " << i);
    REQUIRE_ALLCLOSE(actual[i], expected[i], 1e-3, 1e-3);
  }
}

TEST_CASE("conv_meta: each direction alternative computes what the node computes", "[meta]") {
  std::vector<std::pair<Problem, std::string>> cases;  // problem, the op it must become
  for (int n : {2, 3}) {
    const Shape image = n == 2 ? Shape{2, 3, 7, 6} : Shape{2, 3, 6, 7, 6};
    const Shape kernel = n == 2 ? Shape{4, 3, 3, 2} : Shape{4, 3, 2, 3, 2};
    const std::string mm = n == 2 ? "CorrMM" : "Corr3dMM";
    const std::vector<std::int64_t> ones(static_cast<std::size_t>(n), 1);
    const std::vector<std::int64_t> twos(static_cast<std::size_t>(n), 2);
    for (bool flip : {true, false}) {
      // forward 'full': the input gradient of a 'valid' correlation (dilation allowed).
      for (const auto& d : {ones, twos}) {
        cases.push_back({{ConvDirection::forward, params(n, "full", flip, d), image, kernel},
                         mm + "_gradInputs"});
      }
      // forward 'valid': the kernel gradient of the transposed problem.
      cases.push_back(
          {{ConvDirection::forward, params(n, "valid", flip), image, kernel}, mm + "_gradWeights"});
      // gradWeights 'valid': a forward correlation of the transposed tensors.
      cases.push_back({{ConvDirection::grad_weights, params(n, "valid", flip), image, kernel}, mm});
      // gradInputs 'valid': a 'full' forward convolution (dilation allowed).
      for (const auto& d : {ones, twos}) {
        cases.push_back(
            {{ConvDirection::grad_inputs, params(n, "valid", flip, d), image, kernel}, mm});
      }
    }
  }
  // 'full' spelled as explicit pads of the kernel extent minus one.
  cases.push_back({{ConvDirection::forward,
                    params(2, BorderMode::pairs({{2, 2}, {1, 1}}), true),
                    {2, 3, 7, 6},
                    {4, 3, 3, 2}},
                   "CorrMM_gradInputs"});
  for (const auto& [problem, op] : cases) {
    INFO(describe(problem));
    std::vector<std::string> lowered;
    REQUIRE(check_candidate("corrmm_alt", problem, &lowered).empty());
    REQUIRE(count_of(lowered, op) == 1);
    // The oneDNN alternative computes the same through oneDNN, where that lowering exists.
    const std::string why = check_candidate("onednn_alt", problem);
    INFO("onednn_alt: " << why);
    REQUIRE((why.empty() || why.find("oneDNN") != std::string::npos ||
             why.find("onednn") != std::string::npos));
  }
}

TEST_CASE("conv_meta: alternatives and conv3d2d say why they do not apply", "[meta]") {
  const Shape image{2, 4, 7, 6}, kernel{4, 2, 3, 2}, kernel1{4, 4, 3, 2};
  auto why = [&](const Problem& p) { return check_candidate("corrmm_alt", p); };
  CHECK(why({ConvDirection::forward, params(2, "half", true), image, kernel1}).find("'full'") !=
        std::string::npos);
  CHECK(why({ConvDirection::forward, params(2, "valid", true, {}, {2, 2}), image, kernel1})
            .find("stride") != std::string::npos);
  CHECK(why({ConvDirection::forward, params(2, "valid", true, {}, {}, 2), image, kernel})
            .find("ungrouped") != std::string::npos);
  CHECK(why({ConvDirection::grad_weights, params(2, "valid", true, {2, 2}), image, kernel1})
            .find("dilation") != std::string::npos);
  CHECK(
      why({ConvDirection::grad_inputs, params(2, "full", true), image, kernel1}).find("'valid'") !=
      std::string::npos);

  // conv3d2d: a true 3-D convolution only (decision 3), with every border it knows.
  const Shape v{2, 3, 5, 6, 4}, k{4, 3, 2, 3, 2};
  for (const char* border : {"valid", "full", "half"}) {
    INFO(border);
    std::vector<std::string> lowered;
    REQUIRE(check_candidate("conv3d2d", {ConvDirection::forward, params(3, border, true), v, k},
                            &lowered)
                .empty());
    REQUIRE(count_of(lowered, "CorrMM") >= 1);
  }
  REQUIRE(check_candidate("conv3d2d", {ConvDirection::forward, params(3, "valid", false), v, k})
              .find("cross-correlation") != std::string::npos);
  REQUIRE(check_candidate(
              "conv3d2d",
              {ConvDirection::forward, params(2, "valid", true), {2, 3, 5, 6}, {4, 3, 2, 3}})
              .find("not offered") != std::string::npos);
}

TEST_CASE("conv_meta: the metaopt flags decide which candidates compete", "[meta]") {
  clear_autotune_memory_cache();
  const CacheGraph g = make_cache_graph();
  SECTION("only the gemm alternatives: every node is computed through another direction") {
    reset_conv_meta_stats();
    Function f = compile_with_meta(g.inputs, g.outputs,
                                   fmt::format("{},metaopt.optimizer_including=alternative,"
                                               "metaopt.optimizer_excluding=conv_dnn:default:"
                                               "winograd",
                                               kNoDiskCache));
    const auto names = op_names(f);
    // forward -> kernel gradient; kernel gradient -> forward; input gradient -> forward 'full'.
    REQUIRE(count_of(names, "CorrMM_gradWeights") == 1);
    REQUIRE(count_of(names, "CorrMM") == 2);
    REQUIRE(count_of(names, "CorrMM_gradInputs") == 0);
    REQUIRE(conv_meta_stats().candidates_timed == 3);
    require_matches_reference(g, f);
  }
  SECTION("no alternative and no oneDNN: each node keeps its direction") {
    reset_conv_meta_stats();
    Function f = compile_with_meta(
        g.inputs, g.outputs,
        fmt::format("{},metaopt.optimizer_excluding=alternative:conv_dnn:winograd", kNoDiskCache));
    const auto names = op_names(f);
    REQUIRE(count_of(names, "CorrMM") == 1);
    REQUIRE(count_of(names, "CorrMM_gradInputs") == 1);
    REQUIRE(count_of(names, "CorrMM_gradWeights") == 1);
    REQUIRE(conv_meta_stats().candidates_timed == 3);
    REQUIRE(conv_meta_stats().nodes_replaced == 3);
    require_matches_reference(g, f);
  }
  SECTION("no candidate left: the nodes fall through to the lowering passes") {
    reset_conv_meta_stats();
    StderrCapture capture;
    Function f = compile_with_meta(
        g.inputs, g.outputs,
        fmt::format("{},metaopt.optimizer_excluding=default,metaopt.verbose=1", kNoDiskCache));
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(conv_meta_stats().candidates_timed == 0);
    REQUIRE(conv_meta_stats().nodes_left == 3);
    REQUIRE(count_substr(err, "select no candidate") == 3);
    REQUIRE(count_abstract(op_names(f)) == 0);
    require_matches_reference(g, f);
  }
}

TEST_CASE("conv_meta: unknown shapes fall through to the lowering passes; hints make them known",
          "[meta]") {
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  Variable x = tensor4("x", DType::float32);  // every dim unknown
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  {
    // CorrMM takes the node the meta-optimizer leaves.
    StderrCapture capture;
    Function f = compile_with_meta(
        {x, w}, {y},
        fmt::format("{},metaopt.verbose=1,{}", kNoDiskCache, select_conv_impl_flags("corrmm")));
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(count_substr(err, "cannot meta-optimize") == 1);
    REQUIRE(err.find("1 of 2 input shapes unknown") != std::string::npos);
    REQUIRE(count_of(op_names(f), "CorrMM") == 1);
    REQUIRE(conv_meta_stats().nodes_left == 1);
    REQUIRE(conv_meta_stats().candidates_timed == 0);
    // Without that, the node gets what it gets without conv_meta.
    const Function plain = compile({x, w}, {y});
    REQUIRE(op_names(compile_with_meta({x, w}, {y}, kNoDiskCache)) == op_names(plain));
  }
  {
    // Silent with metaopt.verbose=0 (the default, 1, says which nodes it cannot time).
    StderrCapture capture;
    compile_with_meta({x, w}, {y}, fmt::format("{},metaopt.verbose=0", kNoDiskCache));
    REQUIRE(capture.finish().find("conv_meta") == std::string::npos);
  }
  // The image shape given as a hint: the node is tuned for it, and the hint is checked at run
  // time like the reference does.
  reset_conv_meta_stats();
  Variable hinted = conv2d(x, w, {.input_shape = {2, 3, 8, 8}, .border_mode = "half"});
  Function f = compile_with_meta({x, w}, {hinted}, kNoDiskCache);
  REQUIRE(conv_meta_stats().nodes_replaced == 1);
  REQUIRE(count_abstract(op_names(f)) == 0);
  const Tensor tx = testing::random_tensor(DType::float32, {2, 3, 8, 8}, 1);
  const Tensor tw = testing::random_tensor(DType::float32, {4, 3, 3, 3}, 2);
  REQUIRE_ALLCLOSE(f({tx, tw})[0], reference_conv_forward(make_conv_params(2, "half"), tx, tw),
                   1e-4, 1e-4);
  const Tensor wrong = testing::random_tensor(DType::float32, {2, 3, 9, 8}, 3);
  REQUIRE_THROWS_AS(f({wrong, tw}), ShapeError);
}

TEST_CASE("conv_meta: metaopt.verbose prints one line per convolution, or every candidate",
          "[meta]") {
  const CacheGraph g = make_cache_graph();
  auto output_of = [&](const std::string& verbose) {
    clear_autotune_memory_cache();
    StderrCapture capture;
    compile_with_meta(g.inputs, g.outputs,
                      fmt::format("{},metaopt.verbose={}", kNoDiskCache, verbose));
    return capture.finish();
  };
  REQUIRE(output_of("0").find("conv_meta") == std::string::npos);
  const std::string one = output_of("1");
  INFO(one);
  REQUIRE(count_substr(one, "winner") == 3);
  REQUIRE(count_substr(one, "* ") == 0);
  REQUIRE(one.find("AbstractConv2d_gradInputs") != std::string::npos);
  const std::string two = output_of("2");
  INFO(two);
  REQUIRE(count_substr(two, "winner") == 3);
  REQUIRE(count_substr(two, "* corrmm:") == 3);
  REQUIRE(count_substr(two, "* corrmm_alt:") == 3);
  REQUIRE(count_substr(two, "meta-optimizing") == 3);

  // Level 2 also says which candidates do not apply and why; level 1 does not.
  Variable x = tensor("x", DType::float32, {2, 3, 8, 8});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  for (const char* level : {"1", "2"}) {
    clear_autotune_memory_cache();
    StderrCapture capture;
    compile_with_meta({x, w}, {y}, fmt::format("{},metaopt.verbose={}", kNoDiskCache, level));
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(count_substr(err, "* corrmm_alt: not applicable (a forward alternative needs") ==
            (level[0] == '2' ? 1u : 0u));
  }
}

TEST_CASE("conv_meta: the autotune cache is reused in this process and by a second one", "[meta]") {
  const CacheGraph g = make_cache_graph();
  const std::string path = temp_cache_path("cache");
  const std::string flags = "autotune.cache_path=" + path;
  clear_autotune_memory_cache();

  // First compile: every convolution is timed and one record per convolution is written.
  reset_conv_meta_stats();
  Function first = compile_with_meta(g.inputs, g.outputs, flags);
  REQUIRE(conv_meta_stats().nodes_timed == 3);
  REQUIRE(conv_meta_stats().candidates_timed >= 6);
  REQUIRE(read_lines(path).size() == 3);
  REQUIRE(autotune_cache_stats().records_written == 3);
  require_matches_reference(g, first);

  // Second compile in this process: the memory cache answers, nothing is timed or written.
  reset_conv_meta_stats();
  Function second = compile_with_meta(g.inputs, g.outputs, flags);
  REQUIRE(conv_meta_stats().candidates_timed == 0);
  REQUIRE(conv_meta_stats().cache_hits == 3);
  REQUIRE(autotune_cache_stats().memory_hits == 3);
  REQUIRE(read_lines(path).size() == 3);
  require_matches_reference(g, second);

  // A second process reads the file and times nothing (exit code 0; 1 if it timed).
  const HelperRuns other = run_second_process(path);
  INFO(other.output);
  REQUIRE(other.codes == std::vector<int>{0});
  REQUIRE(other.output.find("timed 0 candidates") != std::string::npos);
  REQUIRE(read_lines(path).size() == 3);

  // The same program with an empty cache does time (so the check above can fail), and several
  // copies appending at once leave only whole records.
  const std::string shared = temp_cache_path("shared");
  const HelperRuns fresh = run_second_process(shared, 3);
  INFO(fresh.output);
  // Copies that start late may find what earlier ones appended: each times all, some or none.
  REQUIRE(fresh.codes.size() == 3);
  for (int code : fresh.codes) REQUIRE((code == 0 || code == 1));
  REQUIRE(std::count(fresh.codes.begin(), fresh.codes.end(), 1) >= 1);
  REQUIRE(read_lines(shared).size() >= 3);
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  compile_with_meta(g.inputs, g.outputs, "autotune.cache=read_only,autotune.cache_path=" + shared);
  REQUIRE(autotune_cache_stats().malformed_lines == 0);
  REQUIRE(autotune_cache_stats().file_hits == 3);
  REQUIRE(conv_meta_stats().candidates_timed == 0);
}

TEST_CASE("conv_meta: clear losers are timed once, contenders in full", "[meta]") {
  const CacheGraph g = make_cache_graph();
  clear_autotune_memory_cache();

  // 0 turns the cut off: every candidate that ran is timed in full.
  reset_conv_meta_stats();
  Function all =
      compile_with_meta(g.inputs, g.outputs, "autotune.cache=off,metaopt.clear_loser_percent=0");
  REQUIRE(conv_meta_stats().nodes_timed == 3);
  REQUIRE(conv_meta_stats().candidates_timed >= 6);
  REQUIRE(conv_meta_stats().candidates_cut == 0);
  require_matches_reference(g, all);

  // At 100% only candidates as fast as the fastest first call are timed again: with at least two
  // candidates per convolution, all but the fastest of each are cut (exact ties aside).
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  Function cut =
      compile_with_meta(g.inputs, g.outputs, "autotune.cache=off,metaopt.clear_loser_percent=100");
  const ConvMetaStats stats = conv_meta_stats();
  REQUIRE(stats.nodes_timed == 3);
  REQUIRE(stats.candidates_cut >= 3);
  REQUIRE(stats.candidates_cut <= stats.candidates_timed - stats.nodes_timed);
  REQUIRE(stats.candidates_cut_at_warm_up <= stats.candidates_cut);
  REQUIRE(stats.nodes_replaced == 3);
  require_matches_reference(g, cut);

  // At 1% (and no floor) a warm-up call over 2% of the fastest first call so far cuts its
  // candidate before any timed call: every candidate after the first one that ran, on each node.
  clear_autotune_memory_cache();
  reset_conv_meta_stats();
  Function early = compile_with_meta(
      g.inputs, g.outputs,
      "autotune.cache=off,metaopt.clear_loser_percent=1,metaopt.warm_up_cut_ms=0");
  const ConvMetaStats at_warm_up = conv_meta_stats();
  REQUIRE(at_warm_up.nodes_replaced == 3);
  REQUIRE(at_warm_up.candidates_cut_at_warm_up >= 3);
  REQUIRE(at_warm_up.candidates_cut_at_warm_up <= at_warm_up.candidates_cut);
  require_matches_reference(g, early);
}

TEST_CASE("conv_meta: a damaged or unusable cache file is a warning, never an error", "[meta]") {
  const CacheGraph g = make_cache_graph();
  const std::string path = temp_cache_path("damaged");
  clear_autotune_memory_cache();
  compile_with_meta(g.inputs, g.outputs, "autotune.cache_path=" + path);
  const std::vector<std::string> records = read_lines(path);
  REQUIRE(records.size() == 3);

  SECTION("malformed lines are skipped with one warning; the good records are used") {
    {
      std::ofstream out(path, std::ios::trunc);
      out << "this is not json\n" << records[0] << "\n" << records[1] << "\n";
      out << records[2].substr(0, records[2].size() / 2) << "\n";  // a torn record
      out << "{\"key\": {}, \"choice\": 3}\n" << records[2] << "\n";
    }
    clear_autotune_memory_cache();
    reset_conv_meta_stats();
    StderrCapture capture;
    Function f = compile_with_meta(g.inputs, g.outputs, "autotune.cache_path=" + path);
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(count_substr(err, "warning") == 1);
    REQUIRE(err.find("skipped 3 malformed lines (line 1: not valid JSON)") != std::string::npos);
    REQUIRE(autotune_cache_stats().malformed_lines == 3);
    REQUIRE(conv_meta_stats().cache_hits == 3);
    REQUIRE(conv_meta_stats().candidates_timed == 0);
    require_matches_reference(g, f);
  }
  SECTION("an unwritable cache warns once and keeps the results in memory") {
    // A directory cannot be created under a regular file, whoever runs the test.
    const std::string unwritable = path + "/sub/autotune.jsonl";
    clear_autotune_memory_cache();
    reset_conv_meta_stats();
    StderrCapture capture;
    Function f = compile_with_meta(g.inputs, g.outputs, "autotune.cache_path=" + unwritable);
    const std::string err = capture.finish();
    INFO(err);
    REQUIRE(count_substr(err, "cannot be written") == 1);
    REQUIRE(conv_meta_stats().nodes_replaced == 3);
    require_matches_reference(g, f);
  }
  SECTION("read_only never appends, off never touches the file") {
    const std::string other = temp_cache_path("modes");
    clear_autotune_memory_cache();
    compile_with_meta(g.inputs, g.outputs, "autotune.cache=read_only,autotune.cache_path=" + other);
    REQUIRE(!std::filesystem::exists(other));
    clear_autotune_memory_cache();
    compile_with_meta(g.inputs, g.outputs, "autotune.cache=off,autotune.cache_path=" + other);
    REQUIRE(!std::filesystem::exists(other));
    // off ignores an existing file too.
    clear_autotune_memory_cache();
    reset_conv_meta_stats();
    compile_with_meta(g.inputs, g.outputs, "autotune.cache=off,autotune.cache_path=" + path);
    REQUIRE(conv_meta_stats().nodes_timed == 3);
  }
}

TEST_CASE("autotune cache: keys, default path and fingerprints", "[meta]") {
  clear_autotune_memory_cache();
  AutotuneKey key{"test", "device A", {{"shape", "[1, 2]"}, {"dtype", "float32"}}};
  AutotuneKey reordered{"test", "device A", {{"dtype", "float32"}, {"shape", "[1, 2]"}}};
  AutotuneKey other_device{"test", "device B", {{"shape", "[1, 2]"}, {"dtype", "float32"}}};
  REQUIRE(key.canonical() == reordered.canonical());
  REQUIRE(key.canonical() != other_device.canonical());
  REQUIRE(key.canonical().find("\"key_version\":" + std::to_string(kAutotuneKeyVersion)) !=
          std::string::npos);
  REQUIRE(key.canonical().find("OpenBLAS") != std::string::npos);

  const AutotuneCacheOptions off{AutotuneCacheMode::off, ""};
  REQUIRE(!autotune_lookup(key, off));
  autotune_store(key, {"winner", 0.5, {{"winner", 0.5}, {"loser", 0.7}}}, off);
  const auto hit = autotune_lookup(reordered, off);
  REQUIRE(hit);
  REQUIRE(hit->choice == "winner");
  REQUIRE(hit->timings.size() == 2);
  REQUIRE(!autotune_lookup(other_device, off));

  const std::string fingerprint = cpu_device_fingerprint(3);
  REQUIRE(fingerprint.rfind("cpu: ", 0) == 0);
  REQUIRE(fingerprint.find("3 threads") != std::string::npos);
  const std::string path = default_autotune_cache_path();
  if (!path.empty()) REQUIRE(path.find("convgraph/autotune.jsonl") != std::string::npos);
  clear_autotune_memory_cache();
}
