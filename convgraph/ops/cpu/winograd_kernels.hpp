// The loops of the Winograd convolution (winograd.hpp): minimal filtering F(4x4, 3x3) (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", interpolation points 0, 1, -1, 2, -2
// and infinity). Each 4x4 tile of the output is A^T [(G g G^T) . (B^T d B)] A, with g a 3x3
// filter and d the 6x6 input patch under the tile: per tile and channel pair 36 multiplies
// instead of 144. Summed over the channels, the 36 element-wise products become 36 independent
// GEMMs, [out channels x in channels] x [in channels x tiles], which BLAS runs.
//
// Both directions the implementation takes are one computation, a stride-1 cross-correlation with
// a 3x3 filter: the forward pass reads the image, and the gradient with respect to the inputs is
// the correlation of the output gradient with the filters turned around (channels transposed,
// taps reversed) and the padding mirrored (2 - pad, which may be negative: a crop).
#pragma once

#include <cstdint>

namespace convgraph {

// Where the planes (one channel of one batch item, h x w contiguous rows) of a tensor lie, in
// elements: plane (b, c) starts at start + (b / inner_count) * outer + (b % inner_count) * inner +
// c * channel, inner_count being the geometry's batch_inner. All zero (the default): the dense
// (batch, channels, h, w) layout. A 3-D convolution with 3x3 taps in the plane runs as 2-D
// correlations over (image, depth slice) pairs with this: outer the image's stride, inner and
// channel those of a depth slice and of a channel.
struct WinogradPlanes {
  std::int64_t start = 0, outer = 0, inner = 0, channel = 0;
  bool dense() const { return outer == 0 && inner == 0 && channel == 0; }
};

// One correlation: OUT (batch, out_channels, out_h, out_w) from IN (batch, in_channels, in_h,
// in_w), output (y, x) reading IN at (y + off_h + i, x + off_w + j) for taps i, j in 0..2, and
// zero where that falls outside IN. Both tensors dense, or laid out as IN_PLANES / OUT_PLANES say;
// with ACCUMULATE the forward and input-gradient correlations add to what OUT holds (the weight
// gradient ignores it).
struct WinogradGeometry {
  std::int64_t batch = 0;
  std::int64_t in_channels = 0, out_channels = 0;
  std::int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  std::int64_t off_h = 0, off_w = 0;
  std::int64_t batch_inner = 1;
  WinogradPlanes in_planes, out_planes;
  bool accumulate = false;

  std::int64_t tiles_h() const { return (out_h + 3) / 4; }
  std::int64_t tiles_w() const { return (out_w + 3) / 4; }
  std::int64_t tiles() const { return batch * tiles_h() * tiles_w(); }
  // Where plane (B, C) of IN starts, and plane (B, K) of OUT (or of the output gradient).
  std::int64_t in_plane(std::int64_t b, std::int64_t c) const {
    return in_planes.dense() ? (b * in_channels + c) * in_h * in_w : planes_at(in_planes, b, c);
  }
  std::int64_t out_plane(std::int64_t b, std::int64_t k) const {
    return out_planes.dense() ? (b * out_channels + k) * out_h * out_w
                              : planes_at(out_planes, b, k);
  }

 private:
  std::int64_t planes_at(const WinogradPlanes& p, std::int64_t b, std::int64_t c) const {
    return p.start + (b / batch_inner) * p.outer + (b % batch_inner) * p.inner + c * p.channel;
  }
};

// Input tiles of 6x6, output tiles of 4x4: 36 transformed elements per tile.
inline constexpr int kWinogradAlpha = 6;
inline constexpr int kWinogradTile = 4;
inline constexpr int kWinogradElements = kWinogradAlpha * kWinogradAlpha;

// How the driver cuts the work; process-wide, for tests (to reach every path with small shapes)
// and benchmarks. Not meant to change while convolutions run.
struct WinogradTuning {
  // Tiles per block: at least this many (narrower GEMMs lose more to BLAS's packing and edges
  // than the caches give back: measured on ResNet-50's layers, blocks of 256 tiles beat blocks
  // that fit the L2 cache by 10-50%) ...
  std::int64_t min_block_tiles = 256;
  // ... and enough that the transformed filters, read once per block, cost no more than the
  // block's own data, as long as the block's transformed input and output stay within this.
  std::int64_t block_bytes = std::int64_t{20} << 20;
  // The transformed filters (36 x out channels x in channels elements: 36 MiB for ResNet's res5)
  // are held whole when they take at most this many bytes; else they are cut into blocks of output
  // channels (at least one), each thread transforming one block at a time just before its GEMMs,
  // the threads' blocks together within this bound: the workspace stays bounded (the memory plan
  // reserves it at the peak of a training step) and a block is read back from the caches.
  std::int64_t filter_bytes = std::int64_t{8} << 20;
  // Threads: automatic (each thread its own blocks where there are enough tiles, else all
  // threads on each block: the transforms split over channels, the GEMMs over the 36 elements),
  // or one of the two forced.
  enum class Mode : unsigned char { automatic, private_blocks, shared_blocks };
  Mode mode = Mode::automatic;
  // Below this many multiply-adds of the direct convolution a call runs on one thread.
  std::int64_t parallel_work = std::int64_t{1} << 20;
  // Whether the transforms use their AVX2 + FMA version where the CPU has it (tests switch it
  // off to run the baseline version, which CPUs without AVX2 run).
  bool avx2 = true;
};
WinogradTuning winograd_tuning();
void set_winograd_tuning(const WinogradTuning& tuning);

// U[e][row][col], e over the 36 elements, = (G g G^T)[e] for the 3x3 filter g of (row, col):
// W is (filters, channels, 3, 3); rows are the filters and columns the channels, or the other
// way round when TRANSPOSE (the gradient with respect to the inputs); REVERSE turns each filter's
// taps around. U holds 36 * filters * channels elements.
template <typename T>
void winograd_transform_filters(const T* w, std::int64_t filters, std::int64_t channels,
                                bool transpose, bool reverse, T* u);

// OUT = the correlation GEO describes of IN with the filters W, transformed as above (TRANSPOSE,
// REVERSE; rows the output channels) a block of output channels at a time (WinogradTuning::
// filter_bytes), on cpu_threads() threads; the BLAS thread count is left as found.
// GEO must be non-empty (every size >= 1). Returns false when some output element is not finite
// (Inf or NaN in the data, or an overflow in the transforms): the caller then computes the call
// another way, since a tile mixes every input into every output.
template <typename T>
bool winograd_correlate(const WinogradGeometry& geo, const T* in, const T* w, bool transpose,
                        bool reverse, T* out, T* workspace = nullptr);
// The elements of the WORKSPACE winograd_correlate takes for GEO (a block of transformed filters
// and the blocks' transformed data, per thread with private blocks); without one it allocates it.
template <typename T>
std::int64_t winograd_correlate_workspace(const WinogradGeometry& geo);

// OUT = the gradient of the correlation GEO describes with respect to its 3x3 filters:
// OUT[k][c][i][j] = sum over batch items and output positions (y, x) of DY[k] (batch, out_channels,
// out_h, out_w) times IN[c] at (y + off_h + i, x + off_w + j) (zero outside IN); taps turned
// around (OUT[k][c][2 - i][2 - j]) when REVERSE. On cpu_threads() threads; GEO non-empty. Returns
// false when some element is not finite (the caller then computes it another way).
template <typename T>
bool winograd_correlate_weights(const WinogradGeometry& geo, const T* in, const T* dy, bool reverse,
                                T* out, T* workspace = nullptr);
// The elements of the WORKSPACE winograd_correlate_weights takes for GEO (a block's transformed
// data and the 36 sums of a block of output channels, as WinogradTuning::filter_bytes bounds);
// without one it allocates it.
template <typename T>
std::int64_t winograd_weights_workspace(const WinogradGeometry& geo);

extern template void winograd_transform_filters<float>(const float*, std::int64_t, std::int64_t,
                                                       bool, bool, float*);
extern template void winograd_transform_filters<double>(const double*, std::int64_t, std::int64_t,
                                                        bool, bool, double*);
extern template bool winograd_correlate<float>(const WinogradGeometry&, const float*, const float*,
                                               bool, bool, float*, float*);
extern template bool winograd_correlate<double>(const WinogradGeometry&, const double*,
                                                const double*, bool, bool, double*, double*);
extern template std::int64_t winograd_correlate_workspace<float>(const WinogradGeometry&);
extern template std::int64_t winograd_correlate_workspace<double>(const WinogradGeometry&);
extern template bool winograd_correlate_weights<float>(const WinogradGeometry&, const float*,
                                                       const float*, bool, float*, float*);
extern template bool winograd_correlate_weights<double>(const WinogradGeometry&, const double*,
                                                        const double*, bool, double*, double*);
extern template std::int64_t winograd_weights_workspace<float>(const WinogradGeometry&);
extern template std::int64_t winograd_weights_workspace<double>(const WinogradGeometry&);

}  // namespace convgraph
