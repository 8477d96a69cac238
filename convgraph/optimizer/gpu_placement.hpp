// Device placement: with device=cuda, every node that has a GPU
// implementation moves to the GPU, and transfers are inserted only where a value crosses between
// the host and the device -- at the function's inputs and outputs, and around the nodes that run
// on the host.
//
// What moves today: the abstract convolutions of every direction (their shape input stays on the
// host), with float16, float32 or float64 data, and the view ops (DimShuffle, Flip) whose input
// is computed on the device. Constants they read are put on the device once,
// at compile time, instead of being transferred on every call. Everything else runs on the host.
#pragma once

#include "convgraph/optimizer/pass_database.hpp"

namespace convgraph {

// The pass (tags fast_run, fast_compile, gpu). Does nothing when the flag device is cpu; with
// cuda[N] it first checks the device can be used (DeviceError at compile time otherwise).
void place_on_device(FunctionGraph& graph, const PassContext& ctx);

}  // namespace convgraph
