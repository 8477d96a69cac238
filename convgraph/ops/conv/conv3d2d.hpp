// conv3d2d: a 3-D convolution computed as 2-D convolutions over (height, width) for
// every pair of (signal frame, filter frame), combined along time by summing diagonals. Its axis
// order differs from conv3d: signals (Ns, Ts, C, Hs, Ws), filters (Nf, Tf, C, Hf, Wf), output
// (Ns, Tout, Nf, Hout, Wout). It always computes a true convolution (filters flipped in T, H, W).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph::conv3d2d {

// The view v of X over axes (I0, I1) with v[a, b] = X[a + X.shape[I1] - 1 - b, b] (other axes
// untouched): extent X.shape[I0] - X.shape[I1] + 1 along I0. Shares X's buffer. Throws
// UnsupportedError when X.shape[I0] < X.shape[I1] (the original's "is this allowed?"),
// ShapeError when X.shape[I1] is 0, ValueError for bad axes.
Tensor get_diagonal_subtensor_view(const Tensor& x, int i0, int i1);

// DiagonalSubtensor{i0, i1}: X -> the diagonal view above. With INPLACE the output is that view
// (view_map {0: 0}); otherwise a copy. No pass makes it in-place yet; the flag is honoured by
// perform() because a view is safe here: buffers are reference counted and no op writes into its
// inputs.
class DiagonalSubtensor final : public Op {
 public:
  DiagonalSubtensor(int i0, int i1, bool inplace = false);
  int i0() const { return i0_; }
  int i1() const { return i1_; }
  bool inplace() const { return inplace_; }

  std::string name() const override { return "DiagonalSubtensor"; }
  std::string str()
      const override;  // "DiagonalSubtensor{1, 3}", "DiagonalSubtensor{1, 3, inplace}"
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // IncDiagonalSubtensor(zeros_like(X), gz).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // Linear: the same view of the eval point.
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;
  std::vector<std::pair<int, int>> view_map() const override;

 private:
  int i0_, i1_;
  bool inplace_;
};

// IncDiagonalSubtensor{i0, i1}: (X, AMT) -> a copy of X with AMT (exactly the shape of the
// diagonal view) added into that view. INPLACE is recorded only: the Op interface has no way to
// declare that an output overwrites an input, so perform() always copies.
class IncDiagonalSubtensor final : public Op {
 public:
  IncDiagonalSubtensor(int i0, int i1, bool inplace = false);
  int i0() const { return i0_; }
  int i1() const { return i1_; }
  bool inplace() const { return inplace_; }

  std::string name() const override { return "IncDiagonalSubtensor"; }
  std::string str() const override;
  bool equals(const Op& other) const override;
  std::size_t hash() const override;
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const override;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const override;
  // (gy, DiagonalSubtensor(gy)).
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const override;
  // Linear in (X, AMT).
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const override;
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override;

 private:
  int i0_, i1_;
  bool inplace_;
};

// Builders. Negative axes count from the end of X's rank.
Variable diagonal_subtensor(const Variable& x, int i0, int i1);
Variable inc_diagonal_subtensor(const Variable& x, int i0, int i1, const Variable& amt);

// The border mode of conv3d2d: one of "valid", "full", "half" for every axis, or one per axis
// in the order (time, height, width). Height and width must agree. "same" is recognised but not
// implemented (UnsupportedError), as in the original.
class BorderMode3d2d {
 public:
  BorderMode3d2d(const char* mode) : modes_{mode, mode, mode} {}  // NOLINT: implicit by design
  BorderMode3d2d(std::string mode) : modes_{mode, mode, mode} {}  // NOLINT
  BorderMode3d2d(std::initializer_list<std::string> per_axis) : modes_(per_axis) {}
  const std::vector<std::string>& modes() const { return modes_; }

 private:
  std::vector<std::string> modes_;
};

struct Conv3d2dOptions {
  StaticShape signals_shape;  // hint: (Ns, Ts, C, Hs, Ws), or empty
  StaticShape filters_shape;  // hint: (Nf, Tf, C, Hf, Wf), or empty
  BorderMode3d2d border_mode = "valid";
};

// The 3-D convolution of SIGNALS (Ns, Ts, C, Hs, Ws) with FILTERS (Nf, Tf, C, Hf, Wf):
//   out[n, t, f, h, w] = sum_tau sum_c conv2d(x_pad[n, t + Tf - 1 - tau, c], w[f, tau, c])[h, w]
// where x_pad is SIGNALS zero-padded in time by 0 (valid), Tf - 1 (full) or Tf / 2 (half) on
// each side. Equals conv3d with filter_flip and the axes reordered (0, 2, 1, 3, 4).
Variable conv3d(const Variable& signals, const Variable& filters,
                const Conv3d2dOptions& options = {});

}  // namespace convgraph::conv3d2d
