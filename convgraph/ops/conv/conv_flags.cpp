#include "convgraph/ops/conv/conv_flags.hpp"

#include <string>
#include <utility>

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_conv_flags(std::vector<FlagSpec>& flags) {
  // Read by the abstract convolutions when they build their graph.
  flags.push_back(boolean_flag("conv.assert_shape", "False",
                               "Check at run time that convolution inputs have the shapes "
                               "declared when the graph was built (image and filter shapes)"));

  // Read by the cuDNN and oneDNN implementations, their registry rows and conv_meta.
  FlagSpec dnn_enabled = choice_flag(
      "dnn.enabled", "auto", {"auto", "True", "False", "no_check"},
      "Use the vendor DNN library for convolutions (cuDNN on the GPU; False also keeps oneDNN off "
      "on the CPU): auto = when usable, True = error if unusable, False = never, no_check = skip "
      "the availability probe");
  dnn_enabled.aliases = {"dnn.enable"};
  flags.push_back(std::move(dnn_enabled));

  // Each cuDNN direction accepts its fixed algorithms, then the ones chosen at run time.
  const std::vector<std::string> runtime_algorithms = {"guess_once", "guess_on_shape_change",
                                                       "time_once", "time_on_shape_change"};
  const auto with_runtime = [&](std::vector<std::string> fixed) {
    fixed.insert(fixed.end(), runtime_algorithms.begin(), runtime_algorithms.end());
    return fixed;
  };
  flags.push_back(choice_flag(
      "dnn.conv.algo_fwd", "small",
      with_runtime(
          {"small", "none", "large", "fft", "fft_tiling", "winograd", "winograd_non_fused"}),
      "cuDNN forward algorithm: a fixed one, or guess_* (cuDNN heuristic) / time_* (benchmark) "
      "chosen once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.algo_bwd_data", "none",
      with_runtime(
          {"none", "deterministic", "fft", "fft_tiling", "winograd", "winograd_non_fused"}),
      "cuDNN backward-data (input gradient) algorithm: a fixed one, or guess_* / time_* chosen "
      "once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.algo_bwd_filter", "none",
      with_runtime({"none", "deterministic", "fft", "small", "winograd_non_fused", "fft_tiling"}),
      "cuDNN backward-filter (weight gradient) algorithm: a fixed one, or guess_* / time_* chosen "
      "once per op or on each new shape"));
  flags.push_back(choice_flag(
      "dnn.conv.precision", "as_input_f32",
      {"as_input_f32", "as_input", "float16", "float32", "float64"},
      "Compute dtype of cuDNN convolutions: as_input_f32 = the inputs' dtype but float32 for "
      "float16 inputs, as_input = the inputs' dtype, or a fixed dtype"));
  flags.push_back(
      boolean_flag("dnn.conv.allow_tf32", "False",
                   "Allow TF32 tensor-core math for float32 convolutions on GPUs that have it"));
  flags.push_back(integer_flag(
      "dnn.conv.workspace_limit_mb", 0, 0, kNoFlagMaximum,
      "Largest cuDNN workspace in MiB (an algorithm needing more falls back to the next one); "
      "0 = no fixed limit: guess_* / time_* consider the free GPU memory (at most 4 "
      "GiB) and any algorithm whose workspace can be allocated runs"));

  // Theano's older cuDNN flags: reported, never silently ignored.
  flags.push_back(deprecated_flag("dnn.conv.workmem", "dnn.conv.algo_fwd"));
  flags.push_back(deprecated_flag("dnn.conv.workmem_bwd",
                                  "dnn.conv.algo_bwd_filter and dnn.conv.algo_bwd_data"));
  flags.push_back(
      deprecated_flag("dnn.conv.algo_bwd", "dnn.conv.algo_bwd_filter and dnn.conv.algo_bwd_data"));
}

}  // namespace convgraph
