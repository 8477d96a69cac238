// Where a tensor lives.
#pragma once

#include <string>

namespace convgraph {

enum class DeviceKind : unsigned char { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static Device cpu() { return {DeviceKind::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  bool operator==(const Device&) const = default;
  // "cpu", "cuda0", ...
  std::string str() const;
};

// Parses "cpu", "cuda" (= cuda0) and "cudaN"; throws ValueError naming WHAT otherwise.
Device parse_device(const std::string& text, const std::string& what);

}  // namespace convgraph
