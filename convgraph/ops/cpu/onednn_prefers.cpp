// Where the default lowering leaves a float32 CPU convolution to CorrMM rather than oneDNN
// (onednn_not_preferred, onednn_conv.hpp says why for each kind of node).
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "convgraph/base/config.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"

namespace convgraph {

namespace {

// The kernel's shape in SIGNATURE: an input of the forward and the input gradient, the output of
// the weight gradient.
const StaticShape& kernel_dims(const ConvSignature& s) {
  static const StaticShape none;
  switch (s.direction) {
    case ConvDirection::forward:
      return s.inputs.size() > 1 ? s.inputs[1].dims : none;
    case ConvDirection::grad_inputs:
      return s.inputs.empty() ? none : s.inputs[0].dims;
    case ConvDirection::grad_weights:
      break;
  }
  return s.output.dims;
}

// The image's shape: the output of the input gradient, else the first input.
const StaticShape& image_dims(const ConvSignature& s) {
  static const StaticShape none;
  if (s.direction == ConvDirection::grad_inputs) return s.output.dims;
  return s.inputs.empty() ? none : s.inputs[0].dims;
}

// The output's shape: the forward's output, the gradients' output gradient (their second input).
const StaticShape& output_dims(const ConvSignature& s) {
  static const StaticShape none;
  if (s.direction == ConvDirection::forward) return s.output.dims;
  return s.inputs.size() > 1 ? s.inputs[1].dims : none;
}

std::optional<std::string> depthwise_not_preferred(const ConvSignature& s) {
  const ConvParams& p = s.params;
  if (p.convdim != 2 || p.unshared || p.strided() || p.num_groups < 2) return std::nullopt;
  const StaticShape& k = kernel_dims(s);
  const StaticShape& image = image_dims(s);
  if (k.size() != 4 || image.size() != 4 || !k[0] || !k[1] || !k[2] || !k[3] || !image[3]) {
    return std::nullopt;
  }
  if (*k[0] != p.num_groups || *k[1] != 1 || *k[2] != 3 || *k[3] != 3) return std::nullopt;
  if (*image[3] < kOneDnnDepthwiseMinWidth) return std::nullopt;
  return fmt::format(
      "depthwise 3x3 at stride 1 on rows of {} elements: CorrMM's direct loops run it at about "
      "the speed of its memory traffic, faster than oneDNN",
      *image[3]);
}

std::optional<std::string> strided_3x3_weights_not_preferred(const ConvSignature& s, bool avx512) {
  const ConvParams& p = s.params;
  if (s.direction != ConvDirection::grad_weights || p.convdim != 2 || p.num_groups != 1 ||
      p.unshared || p.dilated()) {
    return std::nullopt;
  }
  for (const std::int64_t stride : p.subsample) {
    if (stride != 2) return std::nullopt;
  }
  const StaticShape& k = kernel_dims(s);
  if (k.size() != 4 || k[2] != 3 || k[3] != 3) return std::nullopt;
  if (!avx512) {
    return std::string(
        "3x3 weight gradient at stride 2 without AVX-512: oneDNN's kernel runs it at 50-80 "
        "GFLOP/s, CorrMM's im2col + GEMM faster");
  }
  // With AVX-512, only over few output positions.
  const StaticShape& top = output_dims(s);
  if (top.size() != 4 || !top[2] || !top[3] || *top[2] * *top[3] > kOneDnnSmall1x1Positions) {
    return std::nullopt;
  }
  return fmt::format(
      "3x3 weight gradient at stride 2 over {}x{} output positions: oneDNN's AVX-512 kernel runs "
      "it slower than CorrMM's im2col + GEMM",
      *top[2], *top[3]);
}

// The weight gradient of an unstrided 1x1 layer over many positions that keeps or narrows the
// channels (kernel dims: filters, channels, 1, 1), with AVX-512.
std::optional<std::string> narrowing_weights_not_preferred(const ConvSignature& s, bool avx512) {
  const ConvParams& p = s.params;
  if (!avx512 || p.strided()) return std::nullopt;
  const StaticShape& k = kernel_dims(s);
  const StaticShape& top = output_dims(s);
  if (!k[0] || !k[1] || *k[1] < *k[0]) return std::nullopt;
  const std::int64_t positions = *top[2] * *top[3];
  if (positions < kOneDnnWide1x1WeightPositions) return std::nullopt;
  return fmt::format(
      "1x1 weight gradient of {} -> {} channels over {} output positions per image with "
      "AVX-512: oneDNN's GEMM-based kernel runs it at 100-160 GFLOP/s, CorrMM's batch-parallel "
      "GEMMs at 140-190",
      *k[1], *k[0], positions);
}

}  // namespace

std::optional<std::string> onednn_not_preferred(const ConvSignature& s, const Config& config) {
  return onednn_not_preferred(s, config, onednn_runs_avx512());
}

std::optional<std::string> onednn_not_preferred(const ConvSignature& s, const Config& config,
                                                bool avx512) {
  // Only where CorrMM, which the pass leaves the node to, is not excluded (by its tag, its pass
  // or its name): a slower implementation beats none.
  for (const std::string& excluded : config.get_list("optimizer_excluding")) {
    if (excluded == "conv_gemm" || excluded == "corrmm") return std::nullopt;
  }
  if (auto why = depthwise_not_preferred(s)) return why;
  if (auto why = strided_3x3_weights_not_preferred(s, avx512)) return why;
  if (s.direction == ConvDirection::forward || s.params.convdim != 2 || s.params.num_groups != 1 ||
      s.params.unshared || !s.params.all_valid() || s.params.dilated()) {
    return std::nullopt;
  }
  // The weight gradient's inputs: the image and the output gradient; its output: the kernel. The
  // input gradient's: the kernel and the output gradient; its output: the image.
  const bool weights = s.direction == ConvDirection::grad_weights;
  if (s.inputs.size() < 2) return std::nullopt;
  const StaticShape& kernel = kernel_dims(s);
  if (kernel.size() != 4 || kernel[2] != 1 || kernel[3] != 1) return std::nullopt;
  const StaticShape& top = output_dims(s);
  if (top.size() != 4 || !top[2] || !top[3]) return std::nullopt;
  const std::int64_t positions = *top[2] * *top[3];
  if (weights) {
    if (positions > kOneDnnSmall1x1Positions) return narrowing_weights_not_preferred(s, avx512);
    return fmt::format(
        "1x1 weight gradient over {} output positions per image: oneDNN's scratchpad holds about "
        "four copies of the weights per thread, CorrMM's GEMM is as fast without it",
        positions);
  }
  if (avx512 || !kernel[1]) return std::nullopt;
  const std::int64_t channels = *kernel[1];
  if (channels < kOneDnnAvx2Wide1x1Channels && positions > kOneDnnSmall1x1Positions) {
    return std::nullopt;
  }
  return fmt::format(
      "1x1 input gradient of {} channels over {} output positions per image without AVX-512: "
      "oneDNN's GEMM-based kernel runs at 40-60 GFLOP/s there, CorrMM's GEMMs faster",
      channels, positions);
}

std::optional<std::string> onednn_winograd_not_preferred(const ConvSignature& s) {
  const StaticShape& out = output_dims(s);
  if (out.size() != 4 || !out[2] || !out[3]) {
    return std::string("sizes unknown at compile time: the choice depends on them");
  }
  const std::int64_t positions = *out[2] * *out[3];
  if (positions <= kOneDnnWinogradMinPositions) {
    return fmt::format(
        "{}x{} output positions (at most {}): convgraph's Winograd is as fast there, with far "
        "less scratch memory",
        *out[2], *out[3], kOneDnnWinogradMinPositions);
  }
  if (s.direction != ConvDirection::forward && positions <= kOneDnnWinogradGradientsMinPositions) {
    return fmt::format(
        "a gradient over {}x{} output positions (at most {}): oneDNN's Winograd needs 18 to 30 "
        "times the image's size in scratch memory there, convgraph's almost none",
        *out[2], *out[3], kOneDnnWinogradGradientsMinPositions);
  }
  return std::nullopt;
}

}  // namespace convgraph
