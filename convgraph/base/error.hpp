// The exception hierarchy of convgraph. Every message names the op, input or flag at fault, the
// value received and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace convgraph {

class ConvGraphError : public std::runtime_error {
 public:
  explicit ConvGraphError(const std::string& message)
      : std::runtime_error(message), message_(message) {}
  const char* what() const noexcept override { return message_.c_str(); }
  // Adds context in front of the message (e.g. the node that raised it) while the exception
  // keeps its type: catch by reference, prepend, rethrow with `throw;`.
  void prepend(const std::string& context) { message_ = context + message_; }
  // Removes the first COUNT characters (context that the caller is about to prepend anyway).
  void drop_prefix(std::size_t count) { message_.erase(0, count); }

 private:
  std::string message_;
};

// A tensor or graph has a shape that contradicts what an operation needs.
class ShapeError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// A dtype, rank or variable kind is not what an operation accepts.
class TypeError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// A parameter value is out of its accepted range or form.
class ValueError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// A configuration flag is unknown, malformed or has a value outside its accepted set.
class FlagError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// The request is well formed but this build or this path does not implement it.
class UnsupportedError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// A device, driver or vendor library failed or is unavailable.
class DeviceError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// Memory could not be allocated.
class MemoryError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// An Assert node's condition was false at run time.
class AssertionError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

// Malformed serialized data (graph files, plans, caches).
class FormatError : public ConvGraphError {
 public:
  using ConvGraphError::ConvGraphError;
};

}  // namespace convgraph
