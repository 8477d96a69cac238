// Matrix products through BLAS (float32/float64; other dtypes use a direct loop).
#pragma once

#include "convgraph/graph/variable.hpp"

namespace convgraph {

// numpy.dot for rank 1 and 2: vector.vector -> scalar, matrix.vector, vector.matrix,
// matrix.matrix. Inner dims must agree (ShapeError at build time when static, at run time else).
Variable dot(const Variable& a, const Variable& b);
// numpy.matmul: rank >= 1, leading (batch) dims broadcast, rank-1 operands promoted and dropped.
Variable matmul(const Variable& a, const Variable& b);

}  // namespace convgraph
