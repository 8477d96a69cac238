#include "convgraph/planner/debug_mode.hpp"

#include <fmt/format.h>

#include <cmath>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/runtime/layout.hpp"

namespace convgraph {
namespace {

class DebugCheckedKernel final : public Kernel {
 public:
  // INPUT_LAYOUTS and OUTPUT_LAYOUTS: the node's (runtime/layout.hpp). The reference computes in
  // the logical order: blocked inputs are reordered for it, and its results into the node's
  // output layouts before the comparison.
  DebugCheckedKernel(std::shared_ptr<const Kernel> kernel, std::shared_ptr<const Op> reference,
                     std::string node_text, std::vector<DebugTolerance> tolerances,
                     std::vector<Layout> input_layouts, std::vector<Layout> output_layouts)
      : kernel_(std::move(kernel)),
        reference_(std::move(reference)),
        node_text_(std::move(node_text)),
        tolerances_(std::move(tolerances)),
        input_layouts_(std::move(input_layouts)),
        output_layouts_(std::move(output_layouts)) {}

  void run(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) const override {
    kernel_->run(inputs, outputs);
    std::vector<Tensor> expected(outputs.size());
    // The reference runs on the host: device inputs are copied there (to_vector in compare()
    // copies device outputs the same way).
    std::vector<Tensor> host_inputs;
    host_inputs.reserve(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& t = inputs[i];
      Tensor host = t.defined() && !t.device().is_cpu() ? t.to(Device::cpu()) : t;
      if (i < input_layouts_.size() && input_layouts_[i] != Layout::logical && host.defined()) {
        host = reorder_layout(host, input_layouts_[i], Layout::logical);
      }
      host_inputs.push_back(std::move(host));
    }
    reference_->perform(host_inputs, expected);
    for (std::size_t k = 0; k < expected.size() && k < output_layouts_.size(); ++k) {
      if (output_layouts_[k] != Layout::logical && expected[k].defined()) {
        expected[k] = reorder_layout(expected[k], Layout::logical, output_layouts_[k]);
      }
    }
    for (std::size_t k = 0; k < outputs.size(); ++k) compare(k, outputs[k], expected[k]);
  }

  std::string name() const override { return kernel_->name() + " (DebugMode)"; }

 private:
  void compare(std::size_t k, const Tensor& actual, const Tensor& expected) const {
    const std::string where =
        fmt::format("DebugMode: {} and its reference {}", kernel_->name(), reference_->str());
    if (actual.dtype() != expected.dtype() || actual.shape() != expected.shape()) {
      throw DebugModeError(fmt::format("{} disagree on output {}: {}{} vs {}{}\n{}", where, k,
                                       dtype_name(actual.dtype()), shape_str(actual.shape()),
                                       dtype_name(expected.dtype()), shape_str(expected.shape()),
                                       node_text_));
    }
    const auto a = actual.to_vector<double>();
    const auto e = expected.to_vector<double>();
    const DebugTolerance tol = tolerances_.at(k);
    double worst = 0.0, worst_excess = 0.0;
    std::size_t worst_index = 0;
    bool bad = false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      // Equal values agree, equal infinities included (their difference would be NaN); so do
      // two NaNs, as in Theano's DebugMode: both sides computed "no number" there. Any other
      // pair with a NaN or an infinity on one side disagrees by an infinite amount, ahead of
      // every finite error.
      if (a[i] == e[i] || (std::isnan(a[i]) && std::isnan(e[i]))) continue;
      const double diff = std::abs(a[i] - e[i]);
      const double excess =
          std::isfinite(diff) ? diff - (tol.atol + tol.rtol * std::abs(e[i])) : INFINITY;
      if (excess > 0 && (!bad || excess > worst_excess)) {
        bad = true;
        worst_excess = excess;
        worst = std::isnan(diff) ? INFINITY : diff;
        worst_index = i;
      }
    }
    if (bad) {
      throw DebugModeError(
          fmt::format("{} disagree on output {}: largest error {:.6g} at index {} (flat index {}; "
                      "implementation {:.10g}, reference {:.10g}; rtol {:g}, atol {:g})\n{}",
                      where, k, worst, index_str(actual.shape(), worst_index), worst_index,
                      a[worst_index], e[worst_index], tol.rtol, tol.atol, node_text_));
    }
  }

  // "[1, 0, 2]": the multi-index of row-major flat index FLAT in SHAPE.
  static std::string index_str(const Shape& shape, std::size_t flat) {
    Shape index(shape.size());
    auto rest = static_cast<std::int64_t>(flat);
    for (std::size_t d = shape.size(); d-- > 0;) {
      index[d] = shape[d] > 0 ? rest % shape[d] : 0;
      rest = shape[d] > 0 ? rest / shape[d] : rest;
    }
    return shape_str(index);
  }

  std::shared_ptr<const Kernel> kernel_;
  std::shared_ptr<const Op> reference_;
  std::string node_text_;
  std::vector<DebugTolerance> tolerances_;
  std::vector<Layout> input_layouts_, output_layouts_;
};

}  // namespace

DebugTolerance debug_tolerance(DType dtype, const Config& config) {
  const double fallback = dtype == DType::float64 ? 1e-9 : dtype == DType::float32 ? 1e-4 : 1e-2;
  auto read = [&](const char* key) {
    const std::string text = config.get(key);
    return text.empty() ? fallback : std::stod(text);
  };
  return {read("debugmode.rtol"), read("debugmode.atol")};
}

std::shared_ptr<const Kernel> debug_checked_kernel(std::shared_ptr<const Kernel> kernel,
                                                   std::shared_ptr<const Op> reference,
                                                   const Node& node, const Config& config) {
  std::vector<DebugTolerance> tolerances;
  for (const auto& out : node.output_data)
    tolerances.push_back(debug_tolerance(out.type.dtype, config));
  Node& mutable_node = const_cast<Node&>(node);
  const std::string text = "the node:\n" + debugprint(mutable_node.outputs());
  std::vector<Layout> input_layouts, output_layouts;
  for (const Variable& in : node.inputs) input_layouts.push_back(in.type().layout);
  for (const auto& out : node.output_data) output_layouts.push_back(out.type.layout);
  return std::make_shared<DebugCheckedKernel>(std::move(kernel), std::move(reference), text,
                                              std::move(tolerances), std::move(input_layouts),
                                              std::move(output_layouts));
}

}  // namespace convgraph
