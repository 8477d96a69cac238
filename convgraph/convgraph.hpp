// convgraph: the whole public API in one include. A program that includes only this header can
// build graphs with every convolution (conv.hpp's conv2d / conv3d and their gradients, the
// composites: conv2d_transpose, separable, causal, bilinear; conv3d2d::conv3d and the deprecated
// legacy::conv2d), differentiate, compile and run them, catch every error (DebugModeError
// included), and inspect or manage the passes and the autotune cache.
#pragma once

#include "convgraph/autodiff/gradient.hpp"
#include "convgraph/autodiff/verify_grad.hpp"
#include "convgraph/base/config.hpp"
#include "convgraph/base/dtype.hpp"
#include "convgraph/base/error.hpp"
#include "convgraph/build_config.hpp"
#include "convgraph/graph/function_graph.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/graph/variable.hpp"
#include "convgraph/ops/conv/composites.hpp"
#include "convgraph/ops/conv/conv.hpp"
#include "convgraph/ops/conv/conv3d2d.hpp"
#include "convgraph/ops/conv/legacy_conv.hpp"
#include "convgraph/ops/tensor/alloc.hpp"
#include "convgraph/ops/tensor/assert.hpp"
#include "convgraph/ops/tensor/blas.hpp"
#include "convgraph/ops/tensor/elemwise.hpp"
#include "convgraph/ops/tensor/join.hpp"
#include "convgraph/ops/tensor/nnet.hpp"
#include "convgraph/ops/tensor/reduce.hpp"
#include "convgraph/ops/tensor/reshape.hpp"
#include "convgraph/ops/tensor/shape.hpp"
#include "convgraph/ops/tensor/subtensor.hpp"
#include "convgraph/ops/tensor/transfer.hpp"
#include "convgraph/optimizer/conv_registry.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "convgraph/planner/compile.hpp"
#include "convgraph/planner/debug_mode.hpp"
#include "convgraph/runtime/autotune_cache.hpp"
#include "convgraph/runtime/device_backend.hpp"
#include "convgraph/runtime/profile.hpp"
#include "convgraph/runtime/tensor.hpp"
