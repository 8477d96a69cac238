// ConvParams: the one parameter struct of every convolution (abstract ops, concrete ops, the
// autotune key, graph files), its normaliser, and the output / gradient shape helpers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "convgraph/graph/dim.hpp"
#include "convgraph/graph/type.hpp"

namespace convgraph {

// The border mode of one spatial axis.
struct AxisBorder {
  enum class Kind : unsigned char { valid, full, half, pads };
  Kind kind = Kind::valid;
  std::int64_t before = 0, after = 0;  // for Kind::pads

  static AxisBorder valid() { return {}; }
  static AxisBorder full() { return {Kind::full, 0, 0}; }
  static AxisBorder half() { return {Kind::half, 0, 0}; }
  static AxisBorder pads(std::int64_t b, std::int64_t a) { return {Kind::pads, b, a}; }
  bool symmetric() const { return kind != Kind::pads || before == after; }
  bool operator==(const AxisBorder&) const = default;
  // The (before, after) padding for a kernel whose dilated extent is DILATED_EXTENT.
  std::pair<Dim, Dim> resolve(const Dim& dilated_extent) const;
  std::pair<std::int64_t, std::int64_t> resolve(std::int64_t dilated_extent) const;
};

// A border mode as users write it: "valid", "full", "half", one int for every axis, or one entry
// per axis where each is an int or, in 2-D, an asymmetric (before, after) pair.
class BorderMode {
 public:
  using Entry = std::variant<std::int64_t, std::pair<std::int64_t, std::int64_t>>;

  BorderMode() : text_("valid") {}
  BorderMode(const char* mode) : text_(mode) {}             // NOLINT: implicit by design
  BorderMode(std::string mode) : text_(std::move(mode)) {}  // NOLINT
  BorderMode(int pad) : all_(pad) {}                        // NOLINT
  BorderMode(std::int64_t pad) : all_(pad) {}               // NOLINT
  BorderMode(std::vector<Entry> per_axis) : per_axis_(std::move(per_axis)) {}  // NOLINT
  BorderMode(std::initializer_list<Entry> per_axis) : per_axis_(per_axis) {}
  // Every axis padded by the (before, after) pairs, e.g. {{1, 0}, {2, 2}}.
  static BorderMode pairs(const std::vector<std::pair<std::int64_t, std::int64_t>>& pads);

  // Validates the mode (a name, one pad or one (before, after) pair per axis, pads >= 0) and
  // expands it to one AxisBorder per axis.
  std::vector<AxisBorder> normalize(int convdim) const;
  std::string str() const;

 private:
  std::optional<std::string> text_;
  std::optional<std::int64_t> all_;
  std::optional<std::vector<Entry>> per_axis_;
};

struct ConvParams {
  int convdim = 2;
  std::vector<AxisBorder> border;       // one per spatial axis
  std::vector<std::int64_t> subsample;  // strides, one per spatial axis
  bool filter_flip = true;              // true: convolution; false: cross-correlation
  std::vector<std::int64_t> dilation;
  std::int64_t num_groups = 1;
  bool unshared = false;  // 2-D only: a separate kernel per output position
  StaticShape imshp;      // hint: the image shape, 2 + convdim entries (unknown allowed)
  StaticShape kshp;       // hint: the kernel shape, 2 + convdim (unshared: 2 + 2 convdim)

  bool operator==(const ConvParams&) const = default;
  std::size_t hash() const;
  // "border=half, subsample=(2, 2), cross, dilation=(2, 2), groups=4, unshared" (defaults omitted)
  std::string str() const;
  // The kernel rank (4, 5, or 6 for unshared 2-D) and the image rank.
  int kernel_rank() const { return 2 + (unshared ? 2 : 1) * convdim; }
  int image_rank() const { return 2 + convdim; }
  bool all_valid() const;
  bool any_asymmetric() const;
  bool strided() const;
  bool dilated() const;
};

// Builds and validates a ConvParams. Empty SUBSAMPLE / DILATION mean all ones;
// empty IMSHP / KSHP mean all unknown. Throws ValueError (or UnsupportedError for asymmetric
// padding outside 2-D and unshared outside 2-D) naming the parameter, the value and what was
// expected.
ConvParams make_conv_params(int convdim, const BorderMode& border_mode,
                            std::vector<std::int64_t> subsample = {}, bool filter_flip = true,
                            std::vector<std::int64_t> dilation = {}, std::int64_t num_groups = 1,
                            bool unshared = false, StaticShape imshp = {}, StaticShape kshp = {});

// The largest stride, dilation or padding any convolution takes: the implementations (cuDNN,
// oneDNN, the GPU kernels) hold geometry in 32-bit integers, and no image is that large anyway.
inline constexpr std::int64_t kMaxConvGeometry = 2147483647;

// Throws ValueError naming FN and the parameter (subsample, filter_dilation or border_mode) when
// one of PARAMS' strides, dilations or explicit pads exceeds kMaxConvGeometry in magnitude.
void check_conv_geometry_limits(const std::string& fn, const ConvParams& params);

// ---- shape helpers, on Dims: constants fold, symbolic dims build graph,
// unknown stays unknown ----

// Output size of one axis: (image + before + after - dilated_kernel) // subsample + 1 (floor
// division; results <= 0 are returned as they are).
Dim get_conv_shape_1axis(const Dim& image, const Dim& kernel, const AxisBorder& border,
                         std::int64_t subsample, std::int64_t dilation = 1);
// (batch, output channels, spatial outputs...) from the image and kernel shapes; the kernel may
// be unshared (its last CONVDIM dims are the spatial kernel).
ShapeDims get_conv_output_shape(const ShapeDims& image_shape, const ShapeDims& kernel_shape,
                                const std::vector<AxisBorder>& border,
                                const std::vector<std::int64_t>& subsample,
                                const std::vector<std::int64_t>& dilation = {});
// Kernel size of one axis from the image and output sizes; unknown when it cannot be told
// (stride > 1, 'half' border) or when the sizes are inconsistent.
Dim get_conv_gradweights_shape_1axis(const Dim& image, const Dim& top, const AxisBorder& border,
                                     std::int64_t subsample, std::int64_t dilation);
// (M, C / G, k...) (unshared: (M, top spatial..., C / G, k...)).
ShapeDims get_conv_gradweights_shape(const ShapeDims& image_shape, const ShapeDims& top_shape,
                                     const std::vector<AxisBorder>& border,
                                     const std::vector<std::int64_t>& subsample,
                                     const std::vector<std::int64_t>& dilation = {},
                                     std::int64_t num_groups = 1, bool unshared = false);
// Image size of one axis from the kernel and output sizes; unknown for stride > 1.
Dim get_conv_gradinputs_shape_1axis(const Dim& kernel, const Dim& top, const AxisBorder& border,
                                    std::int64_t subsample, std::int64_t dilation);
// (B, C, image...) with C = kernel channels * G.
ShapeDims get_conv_gradinputs_shape(const ShapeDims& kernel_shape, const ShapeDims& top_shape,
                                    const std::vector<AxisBorder>& border,
                                    const std::vector<std::int64_t>& subsample,
                                    const std::vector<std::int64_t>& dilation = {},
                                    std::int64_t num_groups = 1);
// Whether IMAGE_SHAPE, KERNEL_SHAPE and OUTPUT_SHAPE fit together (unknown entries fit).
bool check_conv_gradinputs_shape(const ShapeDims& image_shape, const ShapeDims& kernel_shape,
                                 const ShapeDims& output_shape,
                                 const std::vector<AxisBorder>& border,
                                 const std::vector<std::int64_t>& subsample,
                                 const std::vector<std::int64_t>& dilation = {});
// Per-axis (before, after) pads for the given dilated kernel extents.
std::vector<std::pair<std::int64_t, std::int64_t>> border_mode_to_pad(
    const std::vector<AxisBorder>& border, const std::vector<std::int64_t>& dilated_extents);

}  // namespace convgraph
