#include "convgraph/runtime/device.hpp"

#include <fmt/format.h>

#include <cctype>

#include "convgraph/base/error.hpp"

namespace convgraph {

std::string Device::str() const {
  return kind == DeviceKind::cpu ? std::string("cpu") : fmt::format("cuda{}", index);
}

Device parse_device(const std::string& text, const std::string& what) {
  if (text == "cpu") return Device::cpu();
  if (text.rfind("cuda", 0) == 0) {
    const std::string rest = text.substr(4);
    if (rest.empty()) return Device::cuda(0);
    bool digits = rest.size() <= 3;
    for (char c : rest) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) return Device::cuda(std::stoi(rest));
  }
  throw ValueError(
      fmt::format("{}: unknown device '{}'; expected 'cpu', 'cuda' or 'cudaN'", what, text));
}

}  // namespace convgraph
