// The oneDNN convolution family (pass conv_dnn on the CPU): forward, gradient with respect to the
// inputs and gradient with respect to the weights, in 2-D ("OneDnnConv2d") and 3-D
// ("OneDnnConv3d"), float32 only, with groups, dilation and asymmetric padding.
//
// Like CorrMM, a OneDnnConv node takes the same inputs and the same ConvParams as the AbstractConv
// it replaces, filter_flip included: oneDNN computes cross-correlations, so the kernel flips the
// small weight tensor before forward and backward-data and flips the weight gradient after
// backward-weights. Types, shapes, gradients and R-operators are the abstract op's.
//
// This header is part of every build; the definitions exist only where oneDNN was found at
// configure time (CONVGRAPH_HAVE_ONEDNN in convgraph/build_config.hpp). Code that may be built
// without oneDNN must check that macro before calling anything declared here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "convgraph/ops/concrete_conv.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_implementation.hpp"
#include "convgraph/runtime/layout.hpp"

namespace convgraph {

// The memory layouts (runtime/layout.hpp) of a OneDnnConv node's activations, set by the layout
// pass (optimizer/layout_pass.hpp) so that a blocked value passes from one convolution to the
// next without the reorders to and from the logical order around each one. A blocked slot is
// bound to the primitive directly; a logical one is reordered in or out as the primitive needs.
// The slots a direction may block: forward the image (A), the residual and the output; gradient
// with respect to the inputs the output gradient (B) and the result; gradient with respect to
// the weights the image (A) and the output gradient (B). Weights are always logical.
struct OneDnnLayouts {
  Layout a = Layout::logical;
  Layout b = Layout::logical;
  Layout residual = Layout::logical;
  Layout out = Layout::logical;

  bool any_blocked() const;
  // "a=nChw8c, out=nChw8c" (the blocked slots only; empty when none).
  std::string str() const;
  std::size_t hash() const;
  bool operator==(const OneDnnLayouts&) const = default;
};

// oneDNN's algorithm for a OneDnnConv node: direct convolution (its direct, 1x1 and GEMM-based
// kernels, oneDNN's choice), or Winograd F(4x4, 3x3) (registry row onednn_winograd: 2-D 3x3 at
// stride 1, no dilation, one group, with AVX-512; blocked layouts only, the node reorders plain
// activations in and out).
enum class OneDnnAlgorithm : unsigned char { direct, winograd };

// Inputs by direction, as AbstractConv:
//   forward:      (image, kernel)
//   grad_inputs:  (kernel, topgrad, shape)   shape = the image's spatial sizes
//   grad_weights: (image, topgrad, shape)    shape = the kernel's spatial sizes
// float32 on the CPU only; unshared convolutions are not supported (the lowering declines them,
// float16, float64 and non-CPU nodes before building this op; make_outputs refuses them too).
class OneDnnConv final : public ConcreteConv {
 public:
  // EPILOGUE (forward only): the primitive's bias argument, a sum post-op for the residual and an
  // eltwise_relu post-op where it works in blocked layouts; one pass after it on plain ones.
  // LAYOUTS: blocked slots the direction does not have are a ValueError.
  OneDnnConv(ConvDirection direction, ConvParams params, ConvEpilogue epilogue = {},
             OneDnnLayouts layouts = {}, OneDnnAlgorithm algorithm = OneDnnAlgorithm::direct);

  const OneDnnLayouts& layouts() const { return layouts_; }
  OneDnnAlgorithm algorithm() const { return algorithm_; }
  // This node with other LAYOUTS.
  std::shared_ptr<OneDnnConv> with_layouts(OneDnnLayouts layouts) const;
  // The input index of each slot: A is 0, B is 1, the residual 2 or 3 (after the bias); -1 for
  // an input that is not an activation (weights, bias, shape).
  Layout input_layout(int i) const override;
  Layout output_layout() const override { return layouts_.out; }

  // "OneDnnConv2d", "OneDnnConv2d_gradInputs", "OneDnnConv3d_gradWeights", ...; with the Winograd
  // algorithm "OneDnnWinogradConv2d", "OneDnnWinogradConv2d_gradInputs", ...
  std::string name() const override;
  // The registry row: "onednn", or "onednn_winograd".
  std::string implementation() const override {
    return algorithm_ == OneDnnAlgorithm::winograd ? "onednn_winograd" : "onednn";
  }
  // float32 on the CPU, shared kernels only.
  ConcreteConvRequirements requirements() const override;

 protected:
  // A kernel that caches its oneDNN primitives per input shape; when the node's shapes are
  // static, the primitives for them are created when it is made, at compile time.
  std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const override;
  bool same_options(const ConcreteConv& other) const override;
  std::size_t options_hash() const override;
  std::string options_str() const override;

 private:
  OneDnnLayouts layouts_;
  OneDnnAlgorithm algorithm_;
};

// The layouts the primitive of DIRECTION picks for its activations on these input shapes under
// the process-wide policy (set_onednn_layout), with no layout given: logical where it reads or
// writes the plain order, a blocked Layout where it uses oneDNN's nChw8c / nChw16c (nCdhw... in
// 3-D) and the shape fits it without padding (layout_fits), std::nullopt for any other order.
// The layout pass asks it which neighbouring convolutions agree. Throws as the kernel would.
struct OneDnnActivationLayouts {
  std::optional<Layout> a, b, out;
};
OneDnnActivationLayouts onednn_conv_activation_layouts(
    ConvDirection direction, const ConvParams& params, const ConvEpilogue& epilogue, const Shape& a,
    const Shape& b, const Shape& spatial = {}, OneDnnAlgorithm algorithm = OneDnnAlgorithm::direct);

// The computations on tensors, with the same checks, results and errors as the reference_conv_*
// functions of abstract_conv.hpp (plus UnsupportedError for float16 / float64 / unshared, and
// DeviceError when oneDNN fails). Each call creates its primitives anew; compiled graphs go
// through the op's kernel, which keeps them.
Tensor onednn_conv_forward(const ConvParams& params, const Tensor& image, const Tensor& kernel);
Tensor onednn_conv_grad_inputs(const ConvParams& params, const Tensor& kernel,
                               const Tensor& topgrad, const Shape& image_spatial);
Tensor onednn_conv_grad_weights(const ConvParams& params, const Tensor& image,
                                const Tensor& topgrad, const Shape& kernel_spatial);

// Which memory layouts the primitives use. The user's tensors are always plain NCHW / NCDHW;
//   blocked:   oneDNN picks the layouts (format_tag::any), data is reordered in and out;
//   plain:     the activations stay plain (oneDNN then mostly runs its GEMM-based code), only the
//              weights may be reordered;
//   automatic: per problem, whichever of the two measured faster on the benchmark suite's layers
//              (see docs/convolution.md): plain for unpadded 1x1 layers (but their strided
//              forward, and with AVX-512 their forward and backward-data over at most
//              kOneDnnSmall1x1Positions output positions) and for the backward-data of images
//              with fewer than 16 channels, blocked otherwise.
enum class OneDnnLayout : unsigned char { automatic, blocked, plain };

// The process-wide layout policy (default automatic), for tests and benchmarks. Kernels read it
// on every call; primitives made under another policy are cached separately.
void set_onednn_layout(OneDnnLayout layout);
OneDnnLayout onednn_layout();

// How many convolution primitives this process has created (each kernel creates one per new
// combination of input shapes, thread count, layout policy and epilogue), to observe the caches.
std::uint64_t onednn_primitives_created();

// "oneDNN 2.6.3 (cpu runtime: OpenMP, ISA: cpu_isa_avx512_core_bf16)": the library loaded at
// run time and the instruction set it uses on this CPU.
std::string onednn_version();

// What the kernel of DIRECTION would run for these input shapes (A, B and the spatial argument
// as the op's inputs): the implementation oneDNN chose and the layouts, e.g.
// "jit:avx512_core, blocked:16 (weights blocked:16x16)" or "x64:gemm:jit, plain (weights plain)".
// For benchmarks, tests and debugging; throws as the kernel would.
std::string onednn_conv_describe(ConvDirection direction, const ConvParams& params, const Shape& a,
                                 const Shape& b, const Shape& spatial = {},
                                 OneDnnAlgorithm algorithm = OneDnnAlgorithm::direct);

// The registry row's hooks (optimizer/conv_registry.cpp): float32 on the CPU, shared kernels;
// declines everything under dnn.enabled=False; every epilogue on the forward. Its prefers hook
// (onednn_not_preferred) leaves some 1x1 weight and input gradients and the depthwise
// convolutions CorrMM's direct loops run faster to CorrMM.
ConvImplementationHooks onednn_conv_hooks();

// Why the default lowering leaves SIGNATURE to the passes after conv_dnn, or std::nullopt where
// oneDNN is used. Three kinds of 2-D 1x1 convolutions (one group, no padding, no dilation) are
// left, and the depthwise ones below:
// - the weight gradient with at most kOneDnnSmall1x1Positions output positions per image, at
//   any stride (ResNet's 7x7 stage). oneDNN runs it as im2col + GEMM with a scratchpad of about
//   four copies of the weights per thread (32 MiB for a 2048 x 512 layer on two threads, 64 MiB for
//   the strided 1024 -> 2048 one), which sat at the peak of resnet50_conv's training step; CorrMM's
//   im2col + GEMM measured as fast there, with one copy of the weights for the second thread.
// - without AVX-512 (oneDNN's ISA on this CPU; AVX2 hosts), the input gradient of an image of at
//   least kOneDnnAvx2Wide1x1Channels channels or over at most kOneDnnSmall1x1Positions output
//   positions. oneDNN picks its GEMM-based kernel (x64:gemm:jit) for these and, on a 2-core AVX2
//   Zen 3 with ResNet-50's layers at batch 8, ran them at 38-58 GFLOP/s (1024 channels at 14x14,
//   the strided 1024 -> 2048 layer, 2048 and 512 channels at 7x7) where CorrMM ran 60-90; below
//   1024 channels with more positions oneDNN was as fast or faster (104-139). AVX-512 hosts were
//   not measured: oneDNN keeps them.
inline constexpr std::int64_t kOneDnnSmall1x1Positions = 7 * 7;
inline constexpr std::int64_t kOneDnnAvx2Wide1x1Channels = 1024;
// - with AVX-512, the weight gradient at stride 1 with at least kOneDnnWide1x1WeightPositions
//   output positions per image whose filters are no more than its channels (ResNet-50's 64 -> 64,
//   256 -> 64, 256 -> 128, 512 -> 128 and 512 -> 256 layers at 56x56 and 28x28). On a 2-core
//   Zen 4 at batch 8, two runs each: oneDNN's x64:gemm:jit took 1.8-2.0, 6.6-7.7, 10.3-11.3,
//   5.3-5.6 and 9.1-9.4 ms, CorrMM 1.3-1.5, 5.2-5.9, 9.5-9.9, 4.7 and 8.5-8.6 ms. Widening layers
//   (128 -> 512 at 28x28: oneDNN 4.4-4.5 ms, CorrMM 4.6-5.0), strided ones and 14x14 images
//   measured even or better on oneDNN; AVX2 hosts were not measured (emulated on the Zen 4 with
//   oneDNN held to AVX2, the two were even): oneDNN keeps them.
inline constexpr std::int64_t kOneDnnWide1x1WeightPositions = 28 * 28;
// Not preferred either: 2-D depthwise 3 x 3 convolutions of multiplier 1 (one input channel and
// one filter per group) at stride 1, any padding and dilation, on images at least
// kOneDnnDepthwiseMinWidth wide. CorrMM's direct loops have specialised versions for them (the
// native vector width on AVX2, the 64-byte ring loops on AVX-512): on MobileNet's 112 x 112 layer
// they measured 2 to 4 times faster than oneDNN's in every direction on both kinds of CPU, and
// faster on AVX2 down to 28 x 28. Narrower planes (14 x 14 even, 7 x 7 three times slower: rows
// shorter than a vector) and 5 x 5 kernels stay with oneDNN, whose kernels run across channels.
inline constexpr std::int64_t kOneDnnDepthwiseMinWidth = 28;
// Nor the weight gradients of 2-D 3 x 3 convolutions at stride 2 (one group, no
// dilation, any padding). On the 2-core AVX2 Zen 3, ResNet-50's four stride-2 3 x 3 layers at N = 8
// (64, 128, 256 and 512 channels from 112, 56, 28 and 14 wide images, two interleaved runs) took
// 16.5-24.2 ms in CorrMM against 20.9-31.8 ms in oneDNN (50-80 GFLOP/s), every layer faster in
// both runs. With AVX-512, those over at most kOneDnnSmall1x1Positions output positions: on the
// 2-core Zen 4, ResNet-50's 512-channel layer (14x14 -> 7x7, N = 8, three interleaved runs) took
// 19.0-21.4 ms in oneDNN against 14.5-16.1 in CorrMM, while its 64-, 128- and 256-channel layers
// (56x56 to 14x14 outputs) were 5-20% faster in oneDNN.
// Under CONFIG's optimizer_excluding naming conv_gemm or corrmm, oneDNN is preferred everywhere.
// The first form asks onednn_runs_avx512(); the second is told AVX512 (for tests).
std::optional<std::string> onednn_not_preferred(const ConvSignature& signature,
                                                const Config& config);
std::optional<std::string> onednn_not_preferred(const ConvSignature& signature,
                                                const Config& config, bool avx512);

// The registry row onednn_winograd's hooks: oneDNN's Winograd F(4x4, 3x3) (OneDnnAlgorithm::
// winograd) for float32 2-D 3x3 convolutions at stride 1, no dilation, one group, on CPUs where
// oneDNN runs AVX-512, with static shapes on which oneDNN makes the primitive (it has conditions
// of its own); every direction; the forward's epilogue in the primitive where oneDNN takes it.
// Its prefers hook (onednn_winograd_not_preferred) keeps it to the images where it measured
// faster than convgraph's own Winograd.
ConvImplementationHooks onednn_winograd_conv_hooks();

// Why the default lowering leaves SIGNATURE (which onednn_winograd supports) to the passes after
// conv_dnn_winograd (convgraph's Winograd, then oneDNN's direct kernels), or std::nullopt where
// oneDNN's Winograd is used. On a 2-core AVX-512 Zen 4 with ResNet-50's stride-1 3x3 layers at
// N = 8 (measured in the training step, node by node, plain activations reordered in and out
// inside the node), oneDNN's Winograd took 4.2-4.4 / 4.4 / 5.2-5.4 ms (forward / input gradient /
// weight gradient) at 56x56 against convgraph's 5.0-5.3 / 5.3-5.7 / 6.4-7.0, 4.9-5.1 / 5.0-5.1 /
// 5.5 at 28x28 against 6.1-6.2 / 6.6-6.9 / 8.5, and 5.1-5.2 / 5.1-5.3 / 5.5-5.8 at 14x14 against
// 6.9-7.4 / 7.0-7.7 / 8.6-9.9: the step went 1.07x faster with it everywhere but 7x7. Its
// scratchpad (transforms of whole tensors, where convgraph's works in cache-sized blocks) decides
// the rest, against the memory target of the training step:
// - output images of at most kOneDnnWinogradMinPositions positions stay with convgraph's: at 7x7
//   (512 channels) the two were even, and oneDNN's scratchpad raised the step's planned peak by
//   52 MiB (0.375 to 0.427 GiB), its forwards running next to the peak at the loss;
// - gradients over at most kOneDnnWinogradGradientsMinPositions positions stay too: at 14x14 (256
//   channels) oneDNN's input gradient needs 29 MiB of scratchpad and its weight gradient 49 MiB
//   (about 18 and 30 times the image), at the top of the backward pass, which they raised by 5
//   and 20 MiB (0.354 to 0.359 and 0.375 GiB).
std::optional<std::string> onednn_winograd_not_preferred(const ConvSignature& signature);
inline constexpr std::int64_t kOneDnnWinogradMinPositions = 7 * 7;
inline constexpr std::int64_t kOneDnnWinogradGradientsMinPositions = 14 * 14;

// Whether oneDNN runs AVX-512 code (avx512_core or later) on this CPU.
bool onednn_runs_avx512();

}  // namespace convgraph
