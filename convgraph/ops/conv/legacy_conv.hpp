// The legacy convolution: Theano's ConvOp and the deprecated conv2d of the old
// interface that builds it. Only that function reaches it: the optimizer lowers the abstract ops
// to oneDNN or im2col + GEMM, never to ConvOp. New code calls convgraph::conv2d.
//
// ConvOp keeps the parameters that decide what is computed (shapes, strides, mode). The
// original's code-generation knobs (unroll_batch, unroll_kern, unroll_patch, openmp, version,
// verbose, direction_hint) changed only how its C code was generated, and imshp_logical /
// kshp_logical / kshp_logical_top_aligned served only the ConvOp-based gradients, which convgraph
// builds from the abstract gradient ops instead; none of them is carried over.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::legacy {

struct ConvOpOptions {
  // (channels, rows, cols), or (rows, cols) for one channel; empty when unknown. Entries may be
  // unknown.
  StaticShape imshp;
  StaticShape kshp;                   // (rows, cols), or empty
  StaticDim nkern;                    // the number of filters
  StaticDim bsize;                    // the batch size
  std::int64_t dx = 1;                // stride along rows
  std::int64_t dy = 1;                // stride along columns
  std::string output_mode = "valid";  // "valid" or "full"
};

// ConvOp(image (B, C, H, W), filters (M, C, kh, kw)) -> (B, M, oh, ow): the true convolution
// (filters flipped) in 'valid' or 'full' mode, keeping every dx-th row and dy-th column:
//   out[b, m, y, x] = sum_c sum_i sum_j P[b, c, y*dx + i, x*dy + j] * W[m, c, kh-1-i, kw-1-j]
// where P is the image zero-padded by (kh - 1, kw - 1) on every side in 'full' mode.
// o = (H - kh) / dx + 1 (valid) or (H + kh - 2) / dx + 1 (full).
//
// Errors: a mode other than valid/full or a stride below 1 (ValueError; "half" is an
// UnsupportedError), malformed shapes (ValueError), a known output size below 1 (ValueError),
// at build time; inputs that are not 4-D or not floating-point (TypeError), of different dtypes
// (UnsupportedError), or whose shapes contradict the parameters (ShapeError), at build time where
// the types tell and at run time otherwise.
class ConvOp final : public Op {
 public:
  explicit ConvOp(ConvOpOptions options = {});

  // IMSHP always has 3 entries (or none) here.
  const StaticShape& imshp() const { return imshp_; }
  const StaticShape& kshp() const { return kshp_; }
  StaticDim nkern() const { return nkern_; }
  StaticDim bsize() const { return bsize_; }
  std::int64_t dx() const { return dx_; }
  std::int64_t dy() const { return dy_; }
  const std::string& output_mode() const { return output_mode_; }
  // Whether every shape (batch, channels, image, filters, kernel) is known.
  bool all_shapes_known() const;

  std::string name() const override { return "ConvOp"; }
  // "ConvOp{valid, dx=2, dy=2, imshp=[1, 5, 5], kshp=[3, 3], nkern=2, bsize=?}"
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // Built from the abstract gradient ops, with the original's restrictions: 'valid' with a stride
  // other than 1, or a stride other than 1 or 2, is an UnsupportedError; a strided gradient also
  // needs every shape known (ValueError otherwise).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // conv(R image, W) + conv(image, R W) with this op (bilinear).
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  // Direct loops accumulating in double.
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

  // Floating-point operations of a call with these shapes, as the original counts them: valid
  // kh*kw*2 * oh*ow * C*M*B; full B*M*C*kh*kw*H*W*2 (the input's size, as in the original).
  // ShapeError when the image and filter channels differ.
  double flops(const Shape& image, const Shape& filters, const Shape& output) const;

 private:
  StaticShape imshp_, kshp_;
  StaticDim nkern_, bsize_;
  std::int64_t dx_, dy_;
  std::string output_mode_;
};

struct LegacyConvOptions {
  StaticShape image_shape;   // (batch, channels, rows, cols), or empty
  StaticShape filter_shape;  // (filters, channels, rows, cols), or empty
  std::string border_mode = "valid";
  std::vector<std::int64_t> subsample = {1, 1};
};

// Deprecated: the old-interface conv2d. Prints "convgraph: legacy_conv2d is deprecated; use
// conv2d" to stderr once per process, checks the shapes (ValueError for malformed ones,
// ShapeError when the image and filter channels differ) and builds a ConvOp.
Variable conv2d(const Variable& input, const Variable& filters,
                const LegacyConvOptions& options = {});

// Whether the deprecation warning has been printed in this process (for tests).
bool deprecation_warning_issued();

}  // namespace convgraph::legacy
