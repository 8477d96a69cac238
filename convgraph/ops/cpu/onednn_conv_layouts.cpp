// The layouts of OneDnnConv nodes (their slots, checks and labels); the kernel that binds them to
// the primitives is in onednn_conv.cpp.
#include <fmt/format.h>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/ops/cpu/onednn_conv.hpp"

namespace convgraph {

OneDnnConv::OneDnnConv(ConvDirection direction, ConvParams params, ConvEpilogue epilogue,
                       OneDnnLayouts layouts, OneDnnAlgorithm algorithm)
    : ConcreteConv(direction, std::move(params), epilogue),
      layouts_(layouts),
      algorithm_(algorithm) {
  const bool forward = direction == ConvDirection::forward;
  const bool grad_inputs = direction == ConvDirection::grad_inputs;
  const char* bad = nullptr;
  if (grad_inputs && layouts_.a != Layout::logical) bad = "a (the kernel)";
  if (forward && layouts_.b != Layout::logical) bad = "b (the kernel)";
  if (!(forward && epilogue.residual) && layouts_.residual != Layout::logical) {
    bad = "residual (the node has no residual input)";
  }
  if (direction == ConvDirection::grad_weights && layouts_.out != Layout::logical) {
    bad = "out (the weight gradient)";
  }
  if (bad != nullptr) {
    throw ValueError(
        fmt::format("{}: the {} slot cannot take a blocked layout ({}); blocked "
                    "layouts are for activations",
                    name(), bad, layouts_.str()));
  }
}

bool OneDnnLayouts::any_blocked() const {
  return a != Layout::logical || b != Layout::logical || residual != Layout::logical ||
         out != Layout::logical;
}

std::string OneDnnLayouts::str() const {
  std::string s;
  auto add = [&](const char* slot, Layout l) {
    if (l == Layout::logical) return;
    s += fmt::format("{}{}={}", s.empty() ? "" : ", ", slot, layout_name(l, 4));
  };
  add("a", a);
  add("b", b);
  add("residual", residual);
  add("out", out);
  return s;
}

std::size_t OneDnnLayouts::hash() const {
  return hash_values(static_cast<int>(a), static_cast<int>(b), static_cast<int>(residual),
                     static_cast<int>(out));
}

std::shared_ptr<OneDnnConv> OneDnnConv::with_layouts(OneDnnLayouts layouts) const {
  return std::make_shared<OneDnnConv>(direction(), params(), epilogue(), layouts, algorithm_);
}

Layout OneDnnConv::input_layout(int i) const {
  if (i == 0) return layouts_.a;
  if (i == 1) return layouts_.b;
  if (direction() == ConvDirection::forward && epilogue().residual &&
      i == 2 + (epilogue().bias ? 1 : 0)) {
    return layouts_.residual;
  }
  return Layout::logical;
}

bool OneDnnConv::same_options(const ConcreteConv& other) const {
  const auto& o = static_cast<const OneDnnConv&>(other);
  return o.layouts_ == layouts_ && o.algorithm_ == algorithm_;
}

std::size_t OneDnnConv::options_hash() const {
  return hash_values(layouts_.hash(), static_cast<int>(algorithm_));
}

std::string OneDnnConv::options_str() const {
  return layouts_.any_blocked() ? "layouts(" + layouts_.str() + ")" : "";
}

}  // namespace convgraph
