// The one list of what each convolution implementation may decline in the conformance suite
// (conformance/conv_conformance.hpp). Every row of the registry runs the whole grid of
// conformance/conv_grid.hpp in every direction and dtype; where a row declines a case (its
// supports hook, or its build refusing the node), an opt-out here must cover that case and name
// the reason the row gives. A decline that no opt-out covers fails the suite (an implementation
// may not silently decline), and so does an opt-out that covers a case the row takes, or one that
// covers no declined case of the whole grid (a stale opt-out).
//
// Adding an implementation: add nothing here if it takes every case; otherwise one line per kind
// of problem it declines, with the phrase of its decline message and why that is acceptable.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "conformance/conv_grid.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#if CONVGRAPH_HAVE_ONEDNN
#include "convgraph/ops/cpu/onednn_conv.hpp"
#endif

namespace convgraph::testing {

struct ConvOptOut {
  std::string implementation;  // the registry row's name
  std::string what;            // the kind of problem, in a few words
  // Whether the opt-out covers case C in direction D.
  std::function<bool(const ConvCase& c, ConvDirection d)> covers;
  std::string decline_says;  // a phrase the row's reason for declining must contain
  std::string why;           // why declining it is acceptable
};

inline const std::vector<ConvOptOut>& conv_opt_outs() {
  using C = const ConvCase&;
  using D = ConvDirection;
  static const std::vector<ConvOptOut> table = [] {
    std::vector<ConvOptOut> t = {
        {"corrmm", "float16", [](C c, D) { return c.dtype == DType::float16; }, "dtype float16",
         "CorrMM's GEMMs are float32 and float64; on the CPU only the reference takes float16"},
        {"onednn", "float64", [](C c, D) { return c.dtype == DType::float64; }, "dtype float64",
         "convgraph lowers only float32 convolutions to oneDNN; CorrMM takes float64 on the CPU"},
        {"onednn", "float16", [](C c, D) { return c.dtype == DType::float16; }, "dtype float16",
         "convgraph lowers only float32 convolutions to oneDNN; on the CPU only the reference "
         "takes float16"},
        {"onednn", "unshared", [](C c, D) { return c.params.unshared; }, "unshared",
         "oneDNN has no locally connected convolution; CorrMM takes them on the CPU"},
        {"winograd", "3-D dilated in the plane",
         [](C c, D) {
           return c.convdim() == 3 && (c.params.dilation[1] != 1 || c.params.dilation[2] != 1);
         },
         "dilation",
         "in 3-D the depth taps' 2-D correlations are undilated in the plane; oneDNN and "
         "CorrMM take those"},
        {"winograd", "float16", [](C c, D) { return c.dtype == DType::float16; }, "dtype float16",
         "its GEMMs are float32 and float64; on the CPU only the reference takes float16"},
        {"winograd", "unshared", [](C c, D) { return c.params.unshared; }, "unshared",
         "Winograd needs one kernel for every output position; CorrMM takes unshared ones"},
        {"winograd", "groups", [](C c, D) { return c.params.num_groups != 1; }, "groups",
         "implemented for one group; oneDNN and CorrMM take grouped convolutions"},
        {"winograd", "strides", [](C c, D) { return c.params.strided(); }, "stride",
         "F(4x4, 3x3) computes stride-1 convolutions; oneDNN and CorrMM take strided ones"},
        {"winograd", "kernels other than 3x3",
         [](C c, D) {
           const Shape k = c.kernel_spatial();
           return k.size() < 2 || k[k.size() - 2] != 3 || k[k.size() - 1] != 3;
         },
         "kernel size",
         "F(4x4, 3x3) is specific to 3x3 filters (in the plane, in 3-D); oneDNN and CorrMM take "
         "every size"},
        {"winograd", "kernel size unknown at compile time",
         [](C c, D d) { return !c.static_shapes && d != D::grad_weights; },
         "unknown at compile time",
         "the lowering must know the kernel is 3x3 to choose Winograd (the weight gradient's shape "
         "input, a constant, tells it); oneDNN and CorrMM take kernels of any size"},
        {"onednn_winograd", "float64", [](C c, D) { return c.dtype == DType::float64; },
         "dtype float64", "oneDNN's Winograd is float32; convgraph's Winograd takes float64"},
        {"onednn_winograd", "float16", [](C c, D) { return c.dtype == DType::float16; },
         "dtype float16",
         "oneDNN's Winograd is float32; on the CPU only the reference takes float16"},
        {"onednn_winograd", "3-D", [](C c, D) { return c.convdim() == 3; }, "3-D",
         "oneDNN's Winograd is 2-D; convgraph's Winograd runs 3-D ones as 2-D correlations"},
        {"onednn_winograd", "unshared", [](C c, D) { return c.params.unshared; }, "unshared",
         "Winograd needs one kernel for every output position; CorrMM takes unshared ones"},
        {"onednn_winograd", "groups", [](C c, D) { return c.params.num_groups != 1; }, "groups",
         "oneDNN's Winograd takes one group; its direct kernels and CorrMM take grouped ones"},
        {"onednn_winograd", "strides", [](C c, D) { return c.params.strided(); }, "stride",
         "F(4x4, 3x3) computes stride-1 convolutions; oneDNN's direct kernels take strided ones"},
        {"onednn_winograd", "dilation", [](C c, D) { return c.params.dilated(); }, "dilat",
         "oneDNN's Winograd takes no dilation; convgraph's Winograd takes dilated 3x3 kernels"},
        {"onednn_winograd", "sizes unknown at compile time",
         [](C c, D) { return !c.static_shapes; }, "unknown at compile time",
         "the node is checked against oneDNN's kernel conditions on its static shapes"},
        {"onednn_winograd", "kernels other than 3x3",
         [](C c, D) {
           const Shape k = c.kernel_spatial();
           return k.size() != 2 || k[0] != 3 || k[1] != 3;
         },
         "kernel size", "F(4x4, 3x3) is specific to 3x3 filters"},
        {"onednn_winograd", "pads over 1",
         [](C c, D) {
           for (const AxisBorder& b : c.params.border) {
             const auto [before, after] = b.resolve(std::int64_t{3});
             if (before > 1 || after > 1) return true;
           }
           return false;
         },
         "pads at most 1", "oneDNN 2.6's Winograd kernels pad at most 1 on each side"},
        {"cudnn", "unshared", [](C c, D) { return c.params.unshared; }, "unshared",
         "cuDNN has no locally connected convolution; GpuCorrMM takes them on the GPU"},
        {"cudnn", "asymmetric pads", [](C c, D) { return c.params.any_asymmetric(); },
         "asymmetric padding", "cuDNN pads both sides of an axis equally; GpuCorrMM takes them"},
    };
#if CONVGRAPH_HAVE_ONEDNN
    // Host-dependent: listed only where it applies (elsewhere it would cover nothing).
    if (!onednn_runs_avx512()) {
      t.push_back({"onednn_winograd", "no AVX-512", [](C, D) { return true; }, "AVX-512",
                   "oneDNN has Winograd kernels for avx512_core only; convgraph's Winograd runs "
                   "on AVX2"});
    }
#endif
    return t;
  }();
  return table;
}

}  // namespace convgraph::testing
