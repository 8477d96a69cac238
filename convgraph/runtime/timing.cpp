#include "convgraph/runtime/timing.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace convgraph {

double min_host_seconds(const std::function<void()>& call, int max_runs, double budget_seconds) {
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const Clock::time_point start = Clock::now();
  double best = std::numeric_limits<double>::infinity();
  int runs = 0;
  do {
    const Clock::time_point t0 = Clock::now();
    call();
    best = std::min(best, seconds_since(t0));
    ++runs;
  } while (runs < max_runs && seconds_since(start) + best < budget_seconds);
  return best;
}

double min_device_seconds(DeviceStream& stream, const std::function<void()>& queue_one, int runs,
                          double queue_seconds) {
  runs = std::max(runs, 1);
  const double delay_ms = std::min(200.0, 2.0 * runs * queue_seconds * 1e3 + 0.05);
  stream.delay(delay_ms);
  std::vector<std::shared_ptr<DeviceEvent>> events;
  events.reserve(static_cast<std::size_t>(runs) + 1);
  events.push_back(stream.record());
  for (int i = 0; i < runs; ++i) {
    queue_one();
    events.push_back(stream.record());
  }
  stream.synchronize();
  double best_ms = std::numeric_limits<double>::infinity();
  for (std::size_t i = 1; i < events.size(); ++i) {
    best_ms = std::min(best_ms, events[i - 1]->elapsed_ms(*events[i]));
  }
  return best_ms / 1e3;
}

}  // namespace convgraph
