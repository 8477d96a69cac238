// The CPU kernels of the arithmetic ops (add, sub, mul, true_div, int_div, mod, pow, maximum,
// minimum), for every dtype each accepts (elemwise_loops.hpp).
#include "convgraph/ops/tensor/elemwise_loops.hpp"

namespace convgraph::elemwise_detail {

template void run_scalar_op<ScalarOp::add>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::sub>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::mul>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::true_div>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::int_div>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::mod>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::pow>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::maximum>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::minimum>(const std::vector<Tensor>&, Tensor&);

}  // namespace convgraph::elemwise_detail
