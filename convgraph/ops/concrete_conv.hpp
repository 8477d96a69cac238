// ConcreteConv: what every concrete convolution op (CorrMM, OneDnnConv, GpuCorrMM, GpuDnnConv,
// ReferenceConv) shares. Each takes the same inputs and the same ConvParams as the AbstractConv it
// replaces, so the graph-level answers -- output types, shapes, gradients, R-operators, FLOPs, the
// reference for DebugMode -- are the abstract op's. The base also owns what every implementation
// checks and how every call is wrapped:
//   - the input checks, at build time (make_outputs) and at run time (the kernel), from the
//     implementation's declared requirements (device, dtypes, unshared kernels, asymmetric
//     padding, one rule of its own), with one set of messages;
//   - the per-direction wrapper of a call (ConcreteConvKernel): the input count, the tensor
//     checks, the spatial argument of the gradients, the shape checks shared by every
//     implementation (resolve_conv_problem), the imshp / kshp hints, and the problem prepared
//     once for the node's static shapes.
// An implementation writes its name, its requirements, its options and a kernel: a subclass of
// ConcreteConvKernel<Prepared> with prepare (a checked ConvProblem in its own terms) and execute.
//
// A forward node may carry an epilogue (ops/conv/conv_epilogue.hpp: bias, residual add, ReLU),
// folded in by the conv_epilogue pass for the implementations whose registry row claims it. Its
// inputs are then (image, kernel, [bias], [residual]), its graph meaning ConvEpilogueReference,
// and its kernel applies the epilogue in execute_epilogue (by default in one pass after execute;
// the implementations that claim it override that to apply it while the output is in cache).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/base/error.hpp"
#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_epilogue.hpp"
#include "convgraph/ops/conv/conv_problem.hpp"
#include "convgraph/ops/kernel_op.hpp"
#include "convgraph/runtime/device.hpp"

namespace convgraph {

// What an implementation takes. The base checks it, at build time on the node's inputs and at
// run time on the tensors, and words every refusal the same way: the op, the input, what it got
// and what the implementation takes.
struct ConcreteConvRequirements {
  // The implementation as messages name it: "<library> convolutions run on the cpu".
  std::string library;
  // Where both tensor inputs must be (UnsupportedError elsewhere).
  DeviceKind device = DeviceKind::cpu;
  // The floating dtypes it computes in: another floating dtype is an UnsupportedError, a
  // non-floating one a TypeError.
  std::vector<DType> dtypes{DType::float16, DType::float32, DType::float64};
  // Whether it takes unshared (locally connected) kernels and asymmetric padding (an
  // UnsupportedError when not).
  bool unshared = true;
  bool asymmetric_padding = true;
  // What to use instead, ending the UnsupportedError messages: "use CorrMM (conv_gemm)".
  std::string advice;
  // A rule of the implementation's own on the data dtype (cuDNN: no float16 math in a backward
  // direction), after the checks above; FN names the op. Throws when the data is refused.
  std::function<void(const std::string& fn, DType data)> check_data;

  bool accepts(DType dtype) const;
};

// The parameter part of REQUIREMENTS (unshared kernels, asymmetric padding) on PARAMS, naming FN.
void check_conv_requirements(const std::string& fn, const ConvParams& params,
                             const ConcreteConvRequirements& requirements);

class ConcreteConvKernelBase;

class ConcreteConv : public KernelOp {
 public:
  // An EPILOGUE that is not empty needs the forward direction (ValueError otherwise).
  ConcreteConv(ConvDirection direction, ConvParams params, ConvEpilogue epilogue = {});

  ConvDirection direction() const { return direction_; }
  const ConvParams& params() const { return params_; }
  const ConvEpilogue& epilogue() const { return epilogue_; }
  // The name of the registry row (optimizer/conv_registry.hpp) that builds this op ("corrmm",
  // "onednn", ...), by which passes find what the implementation supports; empty when no row does.
  virtual std::string implementation() const { return ""; }

  // "<name>{<params>[, <options>][, epilogue=<steps>]}"
  std::string str() const override;
  // Same class, direction, parameters, epilogue and options.
  bool equals(const Op& other) const final;
  std::size_t hash() const final;
  // The requirements' checks on INPUTS, then the abstract op's types (with an epilogue, the
  // epilogue's input checks too).
  std::vector<TensorType> make_outputs(const std::vector<Variable>& inputs) const final;
  std::vector<ShapeDims> infer_shape(const Node& node,
                                     const std::vector<ShapeDims>& input_shapes) const final;
  std::vector<Variable> grad(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& output_grads) const final;
  std::vector<Variable> r_op(const std::vector<Variable>& inputs,
                             const std::vector<Variable>& outputs,
                             const std::vector<Variable>& eval_points) const final;
  std::optional<double> flops(const std::vector<Shape>& input_shapes,
                              const std::vector<Shape>& output_shapes) const final;
  bool foldable() const override { return false; }
  // The AbstractConv of the same direction and parameters; with an epilogue, the
  // ConvEpilogueReference of the parameters and epilogue.
  std::shared_ptr<const Op> reference_op() const final { return reference_; }
  // Runs a kernel made without a node (named by str()), and waits for the device when the
  // result is on one: perform returns finished work.
  void perform(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const final;
  // The implementation's kernel, named by kernel_name(NODE), with the problem of the node's
  // static shapes prepared when they are all known.
  std::shared_ptr<const Kernel> make_kernel(const Node& node) const final;

  // What the implementation takes (devices, dtypes, parameters).
  virtual ConcreteConvRequirements requirements() const = 0;

  // The memory layout (runtime/layout.hpp) input I must come in, and the one the output is
  // written in: the logical order unless the layout pass gave an implementation that keeps
  // blocked layouts across layers (OneDnnConv) other ones. make_outputs checks the inputs' types
  // against them (TypeError) and gives the output its layout.
  virtual Layout input_layout(int i) const {
    (void)i;
    return Layout::logical;
  }
  virtual Layout output_layout() const { return Layout::logical; }
  bool understands_layouts() const final { return true; }

 protected:
  // A new kernel of the implementation, named NAME in its errors.
  virtual std::shared_ptr<ConcreteConvKernelBase> make_conv_kernel(std::string name) const = 0;
  // The name of NODE's kernel in run-time errors (default: str()).
  virtual std::string kernel_name(const Node& node) const;
  // Parameters beyond ConvParams (algorithm flags, TF32, ...): compared, hashed and shown.
  virtual bool same_options(const ConcreteConv& other) const {
    (void)other;
    return true;
  }
  virtual std::size_t options_hash() const { return 0; }
  virtual std::string options_str() const { return ""; }
  const AbstractConv& abstract() const { return *abstract_; }

 private:
  // The shapes of NODE's two tensor inputs and its spatial argument when they are all known at
  // compile time (static dims, constant shape input).
  struct StaticShapes {
    Shape a, b, spatial;
  };
  std::optional<StaticShapes> static_shapes(const Node& node) const;

  // A kernel of the implementation with this op's epilogue.
  std::shared_ptr<ConcreteConvKernelBase> make_kernel_with_epilogue(std::string name) const;

  ConvDirection direction_;
  ConvParams params_;
  ConvEpilogue epilogue_;
  std::shared_ptr<const AbstractConv> abstract_;
  std::shared_ptr<const Op> reference_;  // abstract_, or the epilogue's reference op
};

// The run-time side of a concrete convolution: one call of one direction, whatever the family.
// Inputs by direction, as AbstractConv: forward (image, kernel, then the epilogue's bias and
// residual when it has them); grad_inputs (kernel, topgrad, shape); grad_weights (image, topgrad,
// shape), the shape being the spatial sizes of the image or of the kernel.
class ConcreteConvKernelBase : public Kernel {
 public:
  ConcreteConvKernelBase(std::string name, ConvDirection direction, ConvParams params,
                         ConcreteConvRequirements requirements);

  std::string name() const final { return name_; }
  ConvDirection direction() const { return direction_; }
  const ConvParams& params() const { return params_; }
  const ConcreteConvRequirements& requirements() const { return requirements_; }
  // The epilogue every call applies (forward only; set once, before the kernel is shared).
  const ConvEpilogue& epilogue() const { return epilogue_; }
  void set_epilogue(const ConvEpilogue& epilogue);

  // The input count of the direction and epilogue (ValueError), the spatial argument, then
  // compute().
  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const final;
  // The direction on A, B and SPATIAL (the inputs as above; SPATIAL ignored for the forward):
  // the tensor checks, the shape checks, the hints when CHECK_HINTS (what the op's perform and
  // kernels do; the tensor functions of CorrMM and GpuCorrMM, like the reference's, do not),
  // the epilogue's tensors EPILOGUE against the result, then the family's computation.
  Tensor compute(const Tensor& a, const Tensor& b, const Shape& spatial, bool check_hints = true,
                 const ConvEpilogueArgs& epilogue = {}) const;
  // The checked problem of these shapes (ranks, parameters, resolve_conv_problem): what compute
  // would work out, for the shapes alone. Throws as compute would.
  ConvProblem resolve(const Shape& a, const Shape& b, const Shape& spatial) const;
  // Prepares the call of these shapes and dtype now, when they are static in the graph; an error
  // is left for the call to report.
  virtual void precompute(DType dtype, const Shape& a, const Shape& b, const Shape& spatial) = 0;

 protected:
  // The result's buffer: the output the plan gave run() when it has DTYPE, SHAPE and DEVICE
  // (runtime/step_memory.hpp), else a fresh tensor. A family that takes its result from here
  // says so with writes_given_outputs().
  static Tensor result_buffer(DType dtype, const Shape& shape, Device device = Device::cpu());

  // After the checks: the family's part of compute.
  virtual Tensor compute_checked(const Tensor& a, const Tensor& b, const Shape& spatial,
                                 bool check_hints, const ConvEpilogueArgs& epilogue) const = 0;
  // ARGS checked against the result shape RESULT of inputs of dtype DTYPE (a no-op without an
  // epilogue).
  void check_epilogue(const ConvEpilogueArgs& args, const Shape& result, DType dtype,
                      Device device) const;

 private:
  // The parameters, each tensor (defined, device, floating, rank), then the pair (one dtype, one
  // device, a dtype the implementation takes) and the implementation's own rule.
  void check_inputs(const Tensor& a, const Tensor& b) const;

  std::string name_;
  ConvDirection direction_;
  ConvParams params_;
  ConcreteConvRequirements requirements_;
  ConvEpilogue epilogue_;
};

// A family's kernel: PREPARED is what it makes of a checked problem (its geometry, descriptors,
// ...). The problem of the node's static shapes is prepared once, when the kernel is made; calls
// with other shapes prepare their own.
template <typename Prepared>
class ConcreteConvKernel : public ConcreteConvKernelBase {
 public:
  using ConcreteConvKernelBase::ConcreteConvKernelBase;

  // The family's workspace_for() of the problem of these input shapes: the forward's from its
  // shapes alone; a gradient's (whose spatial argument is a value) from the problem prepared at
  // compile time when the shapes are its shapes, else unknown.
  std::optional<std::int64_t> workspace_bytes(const std::vector<Shape>& input_shapes,
                                              const std::vector<DType>& input_dtypes) const final {
    if (input_shapes.size() < 2 || input_dtypes.empty()) return std::nullopt;
    const Shape& a = input_shapes[0];
    const Shape& b = input_shapes[1];
    if (cached_ && cached_->dtype == input_dtypes[0] && cached_->a == a && cached_->b == b) {
      return workspace_for(cached_->prepared, input_dtypes[0], a, b, cached_->spatial);
    }
    if (direction() != ConvDirection::forward || !requirements().accepts(input_dtypes[0])) {
      return std::nullopt;
    }
    try {
      return workspace_for(prepare(resolve(a, b, {})), input_dtypes[0], a, b, {});
    } catch (const ConvGraphError&) {
      return std::nullopt;  // the call reports it
    }
  }

  void precompute(DType dtype, const Shape& a, const Shape& b, const Shape& spatial) final {
    cached_.reset();
    if (!requirements().accepts(dtype)) return;
    try {
      const ConvProblem problem = resolve(a, b, spatial);
      check_conv_hints(name(), direction(), params(), a, b, problem.result);
      Prepared prepared = prepare(problem);
      warm(prepared, a, b, spatial);
      cached_.emplace(Cached{dtype, a, b, spatial, problem.result, std::move(prepared)});
    } catch (const ConvGraphError&) {
      cached_.reset();  // the call reports it
    }
  }

 protected:
  // The family's terms for a checked PROBLEM (its result shape included, for execute).
  virtual Prepared prepare(const ConvProblem& problem) const = 0;
  // Compile-time work for the static shapes A, B, SPATIAL beyond prepare (oneDNN creates its
  // primitives); errors are the call's to report, so this swallows them.
  virtual void warm(const Prepared& prepared, const Shape& a, const Shape& b,
                    const Shape& spatial) const {
    (void)prepared, (void)a, (void)b, (void)spatial;
  }
  // The bytes execute() takes through a Workspace (runtime/step_memory.hpp) for this problem on
  // inputs of DTYPE: 0 for a family that takes none, std::nullopt when it cannot tell.
  virtual std::optional<std::int64_t> workspace_for(const Prepared& prepared, DType dtype,
                                                    const Shape& a, const Shape& b,
                                                    const Shape& spatial) const {
    (void)prepared, (void)dtype, (void)a, (void)b, (void)spatial;
    return 0;
  }
  // Computes the prepared problem on the checked tensors A, B (SPATIAL: the call's spatial
  // argument, for caches keyed by shapes).
  virtual Tensor execute(const Prepared& prepared, const Tensor& a, const Tensor& b,
                         const Shape& spatial) const = 0;
  // The same followed by the kernel's epilogue (not empty), its tensors ARGS checked. By default
  // one pass over execute's result; implementations that can do better override it.
  virtual Tensor execute_epilogue(const Prepared& prepared, const Tensor& a, const Tensor& b,
                                  const Shape& spatial, const ConvEpilogueArgs& args) const {
    Tensor out = execute(prepared, a, b, spatial).contiguous();
    apply_conv_epilogue(epilogue(), args, out);
    return out;
  }

  Tensor compute_checked(const Tensor& a, const Tensor& b, const Shape& spatial, bool check_hints,
                         const ConvEpilogueArgs& args) const final {
    if (cached_ && cached_->dtype == a.dtype() && cached_->a == a.shape() &&
        cached_->b == b.shape() && cached_->spatial == spatial) {
      return run_prepared(cached_->prepared, cached_->result, a, b, spatial, args);
    }
    const ConvProblem problem = resolve(a.shape(), b.shape(), spatial);
    if (check_hints)
      check_conv_hints(name(), direction(), params(), a.shape(), b.shape(), problem.result);
    return run_prepared(prepare(problem), problem.result, a, b, spatial, args);
  }

 private:
  Tensor run_prepared(const Prepared& prepared, const Shape& result, const Tensor& a,
                      const Tensor& b, const Shape& spatial, const ConvEpilogueArgs& args) const {
    if (epilogue().empty()) return execute(prepared, a, b, spatial);
    check_epilogue(args, result, a.dtype(), a.device());
    return execute_epilogue(prepared, a, b, spatial, args);
  }

  struct Cached {
    DType dtype;
    Shape a, b, spatial;
    Shape result;
    Prepared prepared;
  };
  // Set before the kernel is shared, read-only afterwards.
  std::optional<Cached> cached_;
};

}  // namespace convgraph
