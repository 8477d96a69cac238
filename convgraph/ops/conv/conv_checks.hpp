// Run-time checks shared by every convolution implementation (the reference, CorrMM, oneDNN), so
// that they reject the same inputs with the same messages.
#pragma once

#include <cstdint>
#include <string>

#include "convgraph/ops/conv/conv_params.hpp"
#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

// Python-style floor division of integers (rounds toward minus infinity).
std::int64_t floor_div_int(std::int64_t a, std::int64_t b);

// A ConvParams built by hand must still be one make_conv_params could have built: 2 or 3 axes,
// one border/subsample/dilation entry per axis, positive strides and dilations, at least one
// group, unshared only in 2-D. FN names the implementation in the messages.
void check_conv_params(const std::string& fn, const ConvParams& params);

// SPATIAL (WHAT, e.g. "the kernel's spatial shape") must have CONVDIM entries, each >= MINIMUM.
void check_conv_spatial_argument(const std::string& fn, const char* what, const Shape& spatial,
                                 int convdim, std::int64_t minimum);

// "image shape [..], kernel shape [..], <params>", for error messages.
std::string describe_conv(const ConvParams& params, const Shape& image, const Shape& kernel);

}  // namespace convgraph
