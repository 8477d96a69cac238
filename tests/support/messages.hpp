// Helpers for tests that check error messages.
#pragma once

#include <string>

#include "support/catch.hpp"

namespace convgraph::testing {

// Runs FN, which must throw E, and returns its message (the test fails when nothing is thrown).
template <typename E, typename Fn>
std::string message_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("the expected exception was not thrown");
  return "";
}

// Whether TEXT contains PART.
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace convgraph::testing
