#include "convgraph/ops/tensor/tensor_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_tensor_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(choice_flag("floatX", "float32", {"float16", "float32", "float64"},
                              "Dtype of scalars and constants created without an explicit dtype"));
}

}  // namespace convgraph
