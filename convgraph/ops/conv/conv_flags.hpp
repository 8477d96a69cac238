// The flags of convolutions that hold in every build: the run-time shape check of the abstract
// ops, and the vendor DNN libraries' settings (cuDNN, oneDNN). They are declared here, in a file
// compiled with or without CUDA, cuDNN and oneDNN, so that a setting written for one build is
// accepted (and ignored where it does not apply) by every other.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends conv.assert_shape and the dnn.* flags (dnn.enabled, the cuDNN algorithms, precision,
// TF32, workspace limit, and the deprecated cuDNN flags) to FLAGS, in display order.
void declare_conv_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
