// Creating tensors in the graph: alloc (broadcast a value to a shape), zeros/ones/full, *_like,
// arange.
#pragma once

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// VALUE (any rank, broadcasting to the trailing axes of SHAPE) broadcast to SHAPE.
Variable alloc(const Variable& value, const ShapeDims& shape);
Variable zeros(const ShapeDims& shape, DType dtype);
Variable ones(const ShapeDims& shape, DType dtype);
Variable full(const ShapeDims& shape, double value, DType dtype);
Variable zeros_like(const Variable& x);
Variable ones_like(const Variable& x);
Variable full_like(const Variable& x, double value);
// START, START+STEP, ... before STOP (STEP != 0), as in numpy.
Variable arange(const Dim& start, const Dim& stop, const Dim& step, DType dtype);

}  // namespace convgraph
