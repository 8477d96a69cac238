// Timing helpers shared by the benchmark programs of tools/.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace convgraph::bench {

// The median of V (the mean of the two middle values for an even count); 0 when V is empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Milliseconds since T0.
inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Milliseconds one run of FN takes.
inline double time_ms(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return ms_since(t0);
}

// The median of REPS timed runs of FN, in milliseconds.
inline double median_ms(int reps, const std::function<void()>& fn) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) times.push_back(time_ms(fn));
  return median(std::move(times));
}

}  // namespace convgraph::bench
