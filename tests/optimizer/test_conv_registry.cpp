// The registry of convolution implementations: its rows, the conv.impl selector, the lowering
// passes and the meta-optimizer reading it, and an implementation added by a test alone.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/optimizer/conv_lowering.hpp"
#include "convgraph/optimizer/conv_meta.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

using namespace convgraph;
using testing::contains;
using testing::message_of;

namespace {

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* n : f.graph().toposort()) names.push_back(n->op->name());
  return names;
}

bool has(const std::vector<std::string>& names, const std::string& what) {
  return std::find(names.begin(), names.end(), what) != names.end();
}

Function compile_flags(const std::vector<Variable>& in, const std::vector<Variable>& out,
                       const std::string& flags) {
  CompileOptions options;
  options.flags = flags;
  return compile(in, out, options);
}

// A row added for the length of a test, removed again whatever happens.
class ScopedRow {
 public:
  explicit ScopedRow(ConvImplementation row) : name_(row.name) {
    mutable_conv_registry().add(std::move(row));
  }
  ~ScopedRow() { mutable_conv_registry().remove(name_); }
  ScopedRow(const ScopedRow&) = delete;
  ScopedRow& operator=(const ScopedRow&) = delete;

 private:
  std::string name_;
};

// A test-only implementation that is fast and wrong: zeros of the forward output's shape.
ConvImplementation zeros_implementation(std::string name) {
  ConvImplementation row;
  row.name = std::move(name);
  row.device = DeviceKind::cpu;
  row.tags = {"conv_test"};
  row.summary = "zeros of the right shape (a wrong-but-fast implementation, for tests)";
  row.directions = {ConvDirection::forward};
  row.convdims = {2};
  row.hooks.supports = [](const ConvSignature& s, const Config&) -> std::optional<std::string> {
    for (std::size_t i = 0; i < 2; ++i) {
      for (const StaticDim& d : s.inputs[i].dims) {
        if (!d) return std::string("needs static shapes");
      }
    }
    return std::nullopt;
  };
  row.hooks.build = [](const ConvSignature& s, const std::vector<Variable>&, const Config&) {
    ShapeDims image, kernel;
    for (const StaticDim& d : s.inputs[0].dims) image.push_back(Dim::from_static(d));
    for (const StaticDim& d : s.inputs[1].dims) kernel.push_back(Dim::from_static(d));
    const ShapeDims out = get_conv_output_shape(image, kernel, s.params.border, s.params.subsample,
                                                s.params.dilation);
    return zeros(out, s.dtype);
  };
  return row;
}

}  // namespace

TEST_CASE("conv registry: one row per implementation, each complete", "[registry]") {
  const ConvRegistry& registry = conv_registry();
  const std::vector<std::string> names = registry.names();
  REQUIRE(names == std::vector<std::string>{"corrmm", "onednn", "onednn_winograd", "winograd",
                                            "cudnn", "gpu_corrmm", "reference"});
  for (const ConvImplementation& row : registry.all()) {
    INFO(row.name);
    CHECK_FALSE(row.summary.empty());
    // A lowering pass of the database, or none (only by name): the reference.
    CHECK(row.pass.empty() == (row.name == "reference"));
    if (!row.pass.empty()) CHECK(pass_database().find(row.pass) != nullptr);
    // Built in, or saying why not.
    CHECK((static_cast<bool>(row.hooks.build) || !row.unavailable.empty()));
    // Every direction, 2-D and 3-D (Winograd F(4x4, 3x3) too, 3x3 in the plane), Winograd with
    // a prefers hook.
    if (row.name == "winograd") {
      CHECK(row.directions.size() == 3);
      CHECK(row.convdims == std::vector<int>{2, 3});
      CHECK(static_cast<bool>(row.hooks.prefers));
    } else {
      CHECK(row.directions.size() == 3);
      CHECK(row.convdims == std::vector<int>{2, 3});
    }
  }
  CHECK(registry.find("corrmm")->hooks.build);
  CHECK(static_cast<bool>(registry.find("onednn")->hooks.build) == (CONVGRAPH_HAVE_ONEDNN != 0));
  CHECK(static_cast<bool>(registry.find("gpu_corrmm")->hooks.build) == (CONVGRAPH_HAVE_CUDA != 0));
  // Each lowering pass carries the tags of the rows it applies.
  CHECK(pass_database().find("conv_dnn")->has_tag("onednn"));
  CHECK(pass_database().find("conv_dnn_gpu")->has_tag("cudnn"));
  CHECK(pass_database().find("conv_gemm")->has_tag("conv_gemm"));
  // A second row of a name, or a row with nothing to run and no reason, is refused.
  ConvRegistry scratch;
  register_conv_implementations(scratch);
  ConvImplementation twin = *scratch.find("corrmm");
  CHECK(contains(message_of<ValueError>([&] { scratch.add(twin); }), "already registered"));
  ConvImplementation empty;
  empty.name = "nothing";
  CHECK(contains(message_of<ValueError>([&] { scratch.add(empty); }), "a supports hook"));
}

TEST_CASE("conv.impl selects implementations by name, in order of preference", "[registry]") {
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  Variable cost = sum(y * y);
  auto grads = grad(cost, {x, w});
  const std::vector<Variable> outs{cost, grads[0], grads[1]};
  const auto names = op_names(compile_flags({x, w}, outs, "conv.impl=corrmm"));
  CHECK(has(names, "CorrMM"));
  CHECK(has(names, "CorrMM_gradInputs"));
  CHECK(has(names, "CorrMM_gradWeights"));
  CHECK_FALSE(has(names, "OneDnnConv2d"));
  // The flag's own spelling, through the helper tools and tests use.
  CHECK(select_conv_impl_flags("corrmm") == "conv.impl=corrmm");
  CHECK(contains(message_of<ValueError>([] { select_conv_impl_flags("corrm"); }), "corrmm"));

  // float64: oneDNN declines, so the second choice takes it.
  Variable xd = tensor("xd", DType::float64, {2, 3, 9, 9});
  Variable wd = tensor("wd", DType::float64, {4, 3, 3, 3});
  Variable yd = conv2d(xd, wd);
  CHECK(has(op_names(compile_flags({xd, wd}, {yd}, "conv.impl=onednn:corrmm")), "CorrMM"));
  // Only oneDNN: nothing takes float64, and the error says who declined and why.
  const std::string msg = message_of<UnsupportedError>([&] {
    compile_flags({xd, wd}, {yd}, "conv.impl=onednn");
  });
  INFO(msg);
  CHECK(contains(msg, "no implementation is available"));
  CHECK(contains(msg, "Selected by conv.impl: onednn"));
  CHECK(contains(msg, "corrmm (conv_gemm): not selected by conv.impl=onednn"));
#if CONVGRAPH_HAVE_ONEDNN
  CHECK(contains(msg, "onednn (conv_dnn): dtype float64"));
  CHECK(has(op_names(compile_flags({x, w}, {y}, "conv.impl=onednn:corrmm")), "OneDnnConv2d"));
#else
  CHECK(contains(msg, "onednn (conv_dnn): oneDNN is not built into this convgraph"));
#endif
  // Exclusion still wins over selection.
  const std::string excluded = message_of<UnsupportedError>([&] {
    compile_flags({x, w}, {y}, "conv.impl=corrmm,optimizer_excluding=conv_gemm");
  });
  CHECK(contains(excluded, "corrmm (conv_gemm): excluded by optimizer_excluding=conv_gemm"));
}

TEST_CASE("conv.impl: an unknown name is a flag error with a suggestion", "[registry]") {
  Variable x = tensor("x", DType::float32, {1, 1, 5, 5});
  Variable w = tensor("w", DType::float32, {1, 1, 3, 3});
  const std::string msg = message_of<FlagError>([&] {
    compile_flags({x, w}, {conv2d(x, w)}, "conv.impl=onedn");
  });
  INFO(msg);
  CHECK(contains(msg, "conv.impl"));
  CHECK(contains(msg, "'onedn'"));
  CHECK(contains(msg, "did you mean 'onednn'"));
  CHECK(contains(msg, "corrmm, onednn, onednn_winograd, winograd, cudnn, gpu_corrmm, reference"));
}

TEST_CASE("conv registry: an implementation a test adds is used only where selected",
          "[registry]") {
  const ScopedRow row(zeros_implementation("test_zeros"));
  Variable x = tensor("x", DType::float32, {2, 3, 9, 9});
  Variable w = tensor("w", DType::float32, {4, 3, 3, 3});
  Variable y = conv2d(x, w);
  // It has no lowering pass: the default compile never gives it a node.
  CHECK(has(op_names(compile_flags({x, w}, {y}, "")),
            CONVGRAPH_HAVE_ONEDNN ? "OneDnnConv2d" : "CorrMM"));
  // Selected by name it takes the forward convolution; its gradients go on to CorrMM.
  const Function f = compile_flags({x, w}, {y}, "conv.impl=test_zeros:corrmm");
  CHECK_FALSE(has(op_names(f), "CorrMM"));
  const Tensor out = f({testing::random_tensor(DType::float32, {2, 3, 9, 9}, 1),
                        testing::random_tensor(DType::float32, {4, 3, 3, 3}, 2)})[0];
  CHECK(out.shape() == Shape{2, 4, 7, 7});
  CHECK(testing::max_abs_diff(out, Tensor::zeros(DType::float32, {2, 4, 7, 7})) == 0);
  // Its declines are listed with the others.
  Variable v = tensor("v", DType::float32, {2, 3, 5, 5, 5});
  Variable k = tensor("k", DType::float32, {4, 3, 3, 3, 3});
  const std::string msg = message_of<UnsupportedError>([&] {
    compile_flags({v, k}, {conv3d(v, k)}, "conv.impl=test_zeros");
  });
  CHECK(contains(msg, "test_zeros: 3-D convolution: it implements 2-D only"));
}

TEST_CASE("conv_meta: a wrong-but-fast candidate never wins", "[registry][meta]") {
  const ScopedRow row(zeros_implementation("test_zeros"));
  reset_conv_meta_stats();
  Variable x = tensor("x", DType::float32, {2, 3, 12, 12});
  Variable w = tensor("w", DType::float32, {8, 3, 3, 3});
  Variable y = conv2d(x, w, {.border_mode = "half"});
  const Function f =
      compile_flags({x, w}, {y},
                    "optimizer_including=conv_meta,conv.impl=test_zeros:corrmm,autotune.cache=off,"
                    "metaopt.verbose=0");
  const ConvMetaStats stats = conv_meta_stats();
  CHECK(stats.nodes_timed == 1);
  CHECK(stats.candidates_rejected >= 1);
  CHECK(stats.nodes_replaced == 1);
  CHECK(has(op_names(f), "CorrMM"));
  const Tensor a = testing::random_tensor(DType::float32, {2, 3, 12, 12}, 3);
  const Tensor b = testing::random_tensor(DType::float32, {8, 3, 3, 3}, 4);
  const ConvParams p = make_conv_params(2, "half", {1, 1}, true, {1, 1}, 1);
  REQUIRE_ALLCLOSE(f({a, b})[0], reference_conv_forward(p, a, b), 1e-4, 1e-4);
  // Only the selected implementations are candidates.
  Config config;
  config.apply("conv.impl=test_zeros:corrmm");
  CHECK(fmt::format("{}", fmt::join(select_conv_meta_candidates(config), " ")) ==
        "corrmm test_zeros corrmm_alt test_zeros_alt");
}

TEST_CASE("conv.impl=reference runs the abstract op's direct loops", "[registry]") {
  Variable x = tensor("x", DType::float64, {2, 3, 7, 6});
  Variable w = tensor("w", DType::float64, {4, 3, 3, 2});
  Variable y = conv2d(x, w, {.border_mode = "full", .subsample = {2, 1}});
  Variable cost = sum(y * y);
  auto grads = grad(cost, {x, w});
  const std::vector<Variable> outs{cost, grads[0], grads[1]};
  const Function reference = compile_flags({x, w}, outs, select_conv_impl_flags("reference"));
  const auto names = op_names(reference);
  CHECK(has(names, "ReferenceConv2d"));
  CHECK(has(names, "ReferenceConv2d_gradInputs"));
  CHECK(has(names, "ReferenceConv2d_gradWeights"));
  const Function fast = compile_flags({x, w}, outs, select_conv_impl_flags("corrmm"));
  const std::vector<Tensor> args{testing::random_tensor(DType::float64, {2, 3, 7, 6}, 1),
                                 testing::random_tensor(DType::float64, {4, 3, 3, 2}, 2)};
  const auto a = reference(args);
  const auto b = fast(args);
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE_ALLCLOSE(a[i], b[i], 1e-10, 1e-10);
  // Never a meta-optimizer candidate, never a default lowering.
  for (const std::string& name : select_conv_meta_candidates(Config::defaults())) {
    CHECK(name.find("reference") == std::string::npos);
  }
  CHECK_FALSE(has(op_names(compile_flags({x, w}, outs, "")), "ReferenceConv2d"));
}

TEST_CASE("conv registry: every registered lowering tag is a known optimizer tag", "[registry]") {
  const std::set<std::string> known = pass_database().known_tags();
  for (const ConvImplementation& row : conv_registry().all()) {
    if (row.pass.empty()) continue;  // tags of a row no pass applies: known through conv.impl only
    for (const std::string& tag : row.tags) {
      INFO(row.name << " " << tag);
      CHECK(known.count(tag) == 1);
    }
  }
}

TEST_CASE("conv registry: docs/optimizer.md's implementations table lists every row",
          "[registry]") {
  const auto path = std::filesystem::path(CONVGRAPH_SOURCE_DIR) / "docs/optimizer.md";
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  for (const ConvImplementation& row : conv_registry().all()) {
    INFO(row.name);
    CHECK(contains(text.str(), "| `" + row.name + "` | " +
                                   (row.device == DeviceKind::cpu ? "CPU" : "GPU") + " |"));
  }
}
