// Shapes as graph values: the Shape / Shape_i / MakeVector ops, Dim arithmetic (constants fold,
// symbolic dims build int64 scalar graph nodes, unknown stays unknown), and symbolic shape
// inference over a graph.
#pragma once

#include <cstdint>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/graph/variable.hpp"

namespace convgraph {

// The shape of X as an int64 vector (folded to a constant when every dim is static).
Variable shape(const Variable& x);
// Dim AXIS of X as an int64 scalar (negative axes count from the end; a constant if static).
Variable shape_i(const Variable& x, int axis);
// An int64 vector from int64 scalars (or Dims).
Variable make_vector(const std::vector<Variable>& scalars);
Variable shape_vector(const ShapeDims& dims);

// Dim arithmetic. Constants fold; unknown is contagious; otherwise graph nodes are built.
Dim operator+(const Dim& a, const Dim& b);
Dim operator-(const Dim& a, const Dim& b);
Dim operator*(const Dim& a, const Dim& b);
Dim floor_div(const Dim& a, const Dim& b);  // Python //: rounds toward minus infinity
Dim ceil_div(const Dim& a, const Dim& b);
Dim dim_max(const Dim& a, const Dim& b);
Dim dim_min(const Dim& a, const Dim& b);
// The scalar int64 variable of D (a constant for constant dims; throws ValueError if unknown).
Variable dim_variable(const Dim& d);

// The symbolic shape of X: constants where known, expressions in the graph's inputs' Shape_i
// otherwise, computed by walking X's graph with each op's infer_shape.
ShapeDims symbolic_shape(const Variable& x);
// A readable form of a shape: "(8, 64, (Shape_i{2}('x') - 2), ?)".
std::string shape_expression(const ShapeDims& dims);

}  // namespace convgraph
