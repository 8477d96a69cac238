// Timing helpers and the machine's description, shared by the benchmark programs of tools/.
#pragma once

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
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

// The value of the first /proc/cpuinfo line whose key is KEY ("model name", "cpu family"), or "?".
inline std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name == key) return colon + 2 <= line.size() ? line.substr(colon + 2) : std::string();
  }
  return "?";
}

// The CPU's model name, as the peers' JSON gives it.
inline std::string cpu_model() {
  return cpuinfo_field("model name");
}

// What a sitting must say of its CPU: model, family and model numbers, the widest vector ISA
// (AVX-512 or AVX2), logical CPUs.
inline std::string cpu_description() {
  const std::string flags = " " + cpuinfo_field("flags") + " ";
  const std::string isa = flags.find(" avx512f ") != std::string::npos ? "AVX-512"
                          : flags.find(" avx2 ") != std::string::npos  ? "AVX2 (no AVX-512)"
                                                                       : "no AVX2";
  return cpu_model() + " (family " + cpuinfo_field("cpu family") + " model " +
         cpuinfo_field("model") + "), " + isa + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " logical CPUs";
}

}  // namespace convgraph::bench
