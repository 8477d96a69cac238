// Memory layouts of tensors. Every op works on the logical order (row-major over the shape: NCHW
// for images); the layout pass (optimizer/layout_pass.hpp) may keep a value in a channel-blocked
// order between ops that understand it, with explicit reorders where a reader needs the logical
// one.
//
// A blocked value keeps its logical shape (N, C, spatial...) and its size: only the order of its
// elements differs. Channels are cut into blocks of B (8 or 16), and the block is the innermost
// axis: element (n, c, s) of a tensor with S spatial positions sits at
//   ((n * C / B + c / B) * S + s) * B + c % B,
// which is oneDNN's nChw8c / nChw16c (nCdhw8c / nCdhw16c in 3-D). Only channel counts that are a
// multiple of B are kept blocked, so a blocked buffer holds exactly the logical number of
// elements (oneDNN would pad the last block with zeros otherwise): the memory plan, the
// executor and every shape check see the logical shape, and an elementwise kernel applied to
// blocked operands of one shape computes the blocked result of the same operation.
#pragma once

#include <cstdint>
#include <string>

#include "convgraph/runtime/tensor.hpp"

namespace convgraph {

enum class Layout : unsigned char { logical, blocked_c8, blocked_c16 };

// The channel block of LAYOUT (1 for logical).
std::int64_t layout_block(Layout layout);
// "logical", or oneDNN's name for the blocked order at RANK: "nChw8c" (rank 4), "nCdhw16c" (rank
// 5), "nCw8c" (rank 3), "blocked:c8" otherwise (rank < 0: the generic name).
std::string layout_name(Layout layout, int rank = -1);

// Whether a tensor of SHAPE can be held in LAYOUT: always for logical; for a blocked layout,
// rank >= 3 and channels (axis 1) a multiple of the block.
bool layout_fits(Layout layout, const Shape& shape);

// VALUE (contiguous or not, any dtype, logical shape) reordered from layout FROM into layout TO,
// written into GIVEN when it is a contiguous tensor of VALUE's dtype, shape and device (the
// plan's buffer), else into a new one. Parallel over the outer axes with the CPU kernels' thread
// count. Throws ValueError when VALUE's shape does not fit FROM or TO, DeviceError off the CPU.
Tensor reorder_layout(const Tensor& value, Layout from, Layout to, const Tensor& given = {});

}  // namespace convgraph
