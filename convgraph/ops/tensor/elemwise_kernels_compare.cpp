// The CPU kernels of the comparisons, the logical ops and where, for every dtype each accepts
// (elemwise_loops.hpp).
#include "convgraph/ops/tensor/elemwise_loops.hpp"

namespace convgraph::elemwise_detail {

template void run_scalar_op<ScalarOp::eq>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::neq>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::lt>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::le>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::gt>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::ge>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::logical_and>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::logical_or>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::logical_not>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::where>(const std::vector<Tensor>&, Tensor&);

}  // namespace convgraph::elemwise_detail
