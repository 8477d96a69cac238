// Measuring how long work takes, for the autotuners (the convolution meta-optimizer and cuDNN's
// algorithm search share these): the minimum over repeated runs, which is the least noisy estimate
// of what code costs on a busy machine. On a device, runs are queued behind a delay kernel so that
// events measure the device's work alone, not the host's launch gaps between runs.
#pragma once

#include <functional>

#include "convgraph/runtime/device_backend.hpp"

namespace convgraph {

// The fastest of up to MAX_RUNS calls of CALL (each complete when it returns), in seconds;
// calls stop early once BUDGET_SECONDS have passed (at least one call is made).
double min_host_seconds(const std::function<void()>& call, int max_runs = 10,
                        double budget_seconds = 0.2);

// The fastest of RUNS runs of QUEUE_ONE (each queues one run of work on STREAM, which must be the
// current stream of its device), in seconds of device time. QUEUE_SECONDS is about how long the
// host takes to queue one run (from a warm-up): the delay kernel in front of the runs lasts twice
// that per run, plus 50 us, at most 0.2 s. Returns once the runs are done.
double min_device_seconds(DeviceStream& stream, const std::function<void()>& queue_one, int runs,
                          double queue_seconds);

}  // namespace convgraph
