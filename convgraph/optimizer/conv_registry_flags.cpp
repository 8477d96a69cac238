#include "convgraph/optimizer/conv_registry_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_conv_registry_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(list_flag(
      "conv.impl",
      "Convolution implementations to use, by registry name in order of preference (e.g. "
      "corrmm, onednn:corrmm, cudnn:gpu_corrmm; ':'-separated): each convolution goes to the first "
      "listed one that takes it, and no other implementation is used; empty = the lowering passes "
      "choose (convgraph impls lists the names)"));
}

}  // namespace convgraph
