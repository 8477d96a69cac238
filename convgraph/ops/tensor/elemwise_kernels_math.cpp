// The CPU kernels of the unary functions (neg, abs, sign, square, exp, log, log1p, sqrt, relu,
// sigmoid, tanh, softplus), for every dtype each accepts (elemwise_loops.hpp).
#include "convgraph/ops/tensor/elemwise_loops.hpp"

namespace convgraph::elemwise_detail {

template void run_scalar_op<ScalarOp::neg>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::abs>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::sign>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::square>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::exp>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::log>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::log1p>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::sqrt>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::relu>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::sigmoid>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::tanh>(const std::vector<Tensor>&, Tensor&);
template void run_scalar_op<ScalarOp::softplus>(const std::vector<Tensor>&, Tensor&);

}  // namespace convgraph::elemwise_detail
