#include "convgraph/ops/conv/conv.hpp"

#include <fmt/format.h>

#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/reshape.hpp"

namespace convgraph {
namespace {

// OUTPUT (the convolution of FILTERS) + BIAS broadcast per channel, as conv2d / conv3d with a
// bias build it.
Variable add_bias(const char* who, const Variable& output, const Variable& filters,
                  const Variable& bias) {
  if (!bias.defined()) throw ValueError(fmt::format("{}: the bias is an undefined Variable", who));
  if (bias.ndim() != 1) {
    throw TypeError(
        fmt::format("{}: the bias {} has type {}; expected a vector of one value per "
                    "filter",
                    who, bias.label(), bias.type().str()));
  }
  const StaticDim& k = bias.type().dims[0];
  const StaticDim& m = filters.type().dims.empty() ? StaticDim() : filters.type().dims[0];
  if (k && m && *k != *m) {
    throw ShapeError(fmt::format("{}: the bias {} has {} values but there are {} filters", who,
                                 bias.label(), *k, *m));
  }
  std::vector<int> pattern(static_cast<std::size_t>(output.ndim()), -1);
  pattern[1] = 0;
  return output + dimshuffle(cast(bias, output.dtype()), pattern);
}

ConvParams params_from(int convdim, const ConvOptions& o, StaticShape imshp, StaticShape kshp) {
  return make_conv_params(convdim, o.border_mode, o.subsample, o.filter_flip, o.filter_dilation,
                          o.num_groups, o.unshared, std::move(imshp), std::move(kshp));
}

// The hint for a shape given as Dims: constants kept, symbolic entries unknown. Entries in
// [0, constant_only) must not be symbolic, entries from REQUIRED_FROM on must not be unknown.
StaticShape hint_from(const std::string& who, const char* what, const ShapeDims& dims,
                      std::size_t constant_only, std::size_t required_from) {
  StaticShape hint;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i < constant_only && dims[i].is_symbolic()) {
      throw ValueError(fmt::format("{}: {}[{}] must be a constant or unknown; got the symbolic {}",
                                   who, what, i, dims[i].str()));
    }
    if (i >= required_from && dims[i].is_unknown()) {
      throw ValueError(
          fmt::format("{}: {}[{}] must be a constant or a symbolic integer; it "
                      "cannot be unknown",
                      who, what, i));
    }
    hint.push_back(dims[i].to_static());
  }
  return hint;
}

Variable grad_wrt_inputs(int convdim, const char* who, const Variable& output_grad,
                         const Variable& filters, const ShapeDims& input_shape,
                         const ConvOptions& options) {
  const std::size_t rank = 2 + static_cast<std::size_t>(convdim);
  if (input_shape.size() != rank) {
    throw ValueError(
        fmt::format("{}: input_shape has {} entries; expected {}", who, input_shape.size(), rank));
  }
  const StaticShape imshp = hint_from(who, "input_shape", input_shape, 2, 2);
  const std::size_t kernel_rank =
      2 + (options.unshared ? 2 : 1) * static_cast<std::size_t>(convdim);
  if (!options.filter_shape.empty() && options.filter_shape.size() != kernel_rank) {
    throw ValueError(fmt::format("{}: filter_shape {} has {} entries; expected {}", who,
                                 static_shape_str(options.filter_shape),
                                 options.filter_shape.size(), kernel_rank));
  }
  const ConvParams params = params_from(convdim, options, imshp, options.filter_shape);
  return abstract_conv_grad_inputs(params, filters, output_grad,
                                   ShapeDims(input_shape.begin() + 2, input_shape.end()));
}

Variable grad_wrt_weights(int convdim, const char* who, const Variable& input,
                          const Variable& output_grad, const ShapeDims& filter_shape,
                          const ConvOptions& options) {
  const std::size_t kernel_rank =
      2 + (options.unshared ? 2 : 1) * static_cast<std::size_t>(convdim);
  if (filter_shape.size() != kernel_rank) {
    throw ValueError(fmt::format("{}: filter_shape has {} entries; expected {}{}", who,
                                 filter_shape.size(), kernel_rank,
                                 options.unshared ? " for an unshared kernel" : ""));
  }
  const std::size_t spatial_from = kernel_rank - static_cast<std::size_t>(convdim);
  const StaticShape kshp = hint_from(who, "filter_shape", filter_shape, spatial_from, spatial_from);
  const std::size_t rank = 2 + static_cast<std::size_t>(convdim);
  if (!options.input_shape.empty() && options.input_shape.size() != rank) {
    throw ValueError(fmt::format("{}: input_shape {} has {} entries; expected {}", who,
                                 static_shape_str(options.input_shape), options.input_shape.size(),
                                 rank));
  }
  const ConvParams params = params_from(convdim, options, options.input_shape, kshp);
  return abstract_conv_grad_weights(
      params, input, output_grad,
      ShapeDims(filter_shape.begin() + static_cast<std::ptrdiff_t>(spatial_from),
                filter_shape.end()));
}

}  // namespace

Variable conv2d(const Variable& input, const Variable& filters, const ConvOptions& options) {
  return abstract_conv(params_from(2, options, options.input_shape, options.filter_shape), input,
                       filters);
}

Variable conv3d(const Variable& input, const Variable& filters, const ConvOptions& options) {
  if (options.unshared) {
    throw UnsupportedError("conv3d: unshared convolution is only implemented for 2-D");
  }
  return abstract_conv(params_from(3, options, options.input_shape, options.filter_shape), input,
                       filters);
}

Variable conv2d(const Variable& input, const Variable& filters, const Variable& bias,
                const ConvOptions& options) {
  return add_bias("conv2d", conv2d(input, filters, options), filters, bias);
}

Variable conv3d(const Variable& input, const Variable& filters, const Variable& bias,
                const ConvOptions& options) {
  return add_bias("conv3d", conv3d(input, filters, options), filters, bias);
}

Variable conv2d_grad_wrt_inputs(const Variable& output_grad, const Variable& filters,
                                const ShapeDims& input_shape, const ConvOptions& options) {
  return grad_wrt_inputs(2, "conv2d_grad_wrt_inputs", output_grad, filters, input_shape, options);
}

Variable conv3d_grad_wrt_inputs(const Variable& output_grad, const Variable& filters,
                                const ShapeDims& input_shape, const ConvOptions& options) {
  if (options.unshared) {
    throw UnsupportedError(
        "conv3d_grad_wrt_inputs: unshared convolution is only implemented for 2-D");
  }
  return grad_wrt_inputs(3, "conv3d_grad_wrt_inputs", output_grad, filters, input_shape, options);
}

Variable conv2d_grad_wrt_weights(const Variable& input, const Variable& output_grad,
                                 const ShapeDims& filter_shape, const ConvOptions& options) {
  return grad_wrt_weights(2, "conv2d_grad_wrt_weights", input, output_grad, filter_shape, options);
}

Variable conv3d_grad_wrt_weights(const Variable& input, const Variable& output_grad,
                                 const ShapeDims& filter_shape, const ConvOptions& options) {
  if (options.unshared) {
    throw UnsupportedError(
        "conv3d_grad_wrt_weights: unshared convolution is only implemented for 2-D");
  }
  return grad_wrt_weights(3, "conv3d_grad_wrt_weights", input, output_grad, filter_shape, options);
}

}  // namespace convgraph
