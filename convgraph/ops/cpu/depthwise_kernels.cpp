// Direct loops for depthwise and small-group convolutions (see depthwise_kernels.hpp).
//
// One unit of work is a (batch item, group) pair: its source planes are copied once into a
// per-thread buffer whose rows carry zero padding left and right, so that every read of an output
// row falls inside a row and the inner loops have no bounds to check; rows above and below the
// source are skipped (a test per row, not per element). Each output row is then computed in chunks
// of one vector register of positions per output plane: the sums over source rows, taps and
// source planes stay in registers, and each output element is stored once. The last chunk of a row
// overlaps the one before it instead of running a scalar tail.
//
// The forward and the gradient with respect to the inputs share the engine: both are, per axis,
// out[start + step * q] = sum over taps of w[tap] * src[q * src_step + offset(tap)]. The forward
// has one "phase" per axis (step 1, src_step = stride). The input gradient at stride s splits each
// axis into s phases (the outputs congruent to r modulo s), each a stride-1 correlation of the
// topgrad with the taps that reach that residue; phases along x go through a row buffer and are
// interleaved into the output row.
//
// The loops are compiled three times, for AVX-512, AVX2 + FMA and the baseline x86-64 ISA (the
// library is built for the baseline); the best version the CPU runs is picked at load time. They
// are written with GCC vector extensions of 64 bytes, which each version lowers to its registers.
//
// This file holds the drivers: the plans of each direction, the threads, the per-thread buffers
// and the choice of the instruction-set version. The loops are in depthwise_conv_loops.hpp and
// depthwise_weight_loops.hpp, compiled once per version in depthwise_conv_<isa>.cpp and
// depthwise_weights.cpp.
#include "convgraph/ops/cpu/depthwise_kernels.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <utility>
#include <vector>

#include "convgraph/ops/cpu/depthwise_problem.hpp"

namespace convgraph {
namespace {

using namespace depthwise_detail;

AxisPlan forward_axis(const CorrGeometry& geo, std::size_t a) {
  AxisPlan plan{geo.output[a], 1, geo.image[a], geo.stride[a], {}};
  Phase phase{0, geo.output[a], {}, {}};
  for (std::int64_t t = 0; t < geo.kernel[a]; ++t) {
    phase.taps.push_back(t);
    phase.offsets.push_back(geo.tap_offset[a][static_cast<std::size_t>(t)]);
  }
  plan.phases.push_back(std::move(phase));
  return plan;
}

// Image position i is read by output o through a tap of offset f when i = o * s + f: so the
// outputs congruent to r (mod s) get the taps with f = r (mod s), from topgrad position
// q + (r - f) / s for i = r + s q.
AxisPlan backward_axis(const CorrGeometry& geo, std::size_t a) {
  const std::int64_t s = geo.stride[a];
  AxisPlan plan{geo.image[a], s, geo.output[a], 1, {}};
  for (std::int64_t r = 0; r < std::min(s, geo.image[a]); ++r) {
    Phase phase{r, ceil_div(geo.image[a] - r, s), {}, {}};
    for (std::int64_t t = 0; t < geo.kernel[a]; ++t) {
      const std::int64_t f = geo.tap_offset[a][static_cast<std::size_t>(t)];
      if (((r - f) % s + s) % s != 0) continue;
      phase.taps.push_back(t);
      phase.offsets.push_back((r - f) / s);
    }
    plan.phases.push_back(std::move(phase));
  }
  return plan;
}

// Sets the padding of the source rows so that every read of the x plan's phases (over at least a
// vector of positions) stays inside a padded row.
template <typename T>
void plan_padding(Problem<T>& p) {
  constexpr std::int64_t lanes = Vec<T>::lanes;
  const AxisPlan& x = p.axes[2];
  std::int64_t lo = 0, hi = x.src_size - 1;
  p.max_row = lanes;
  for (const Phase& ph : x.phases) {
    const std::int64_t n = std::max(ph.count, lanes);
    p.max_row = std::max(p.max_row, n);
    for (std::int64_t f : ph.offsets) {
      lo = std::min(lo, f);
      hi = std::max(hi, (n - 1) * x.src_step + f + over_read(x.src_step));
    }
  }
  p.pad_left = -lo;
  // A single stride-1 phase whose taps span at most a vector: correlate_run reads the rows in
  // aligned vectors from the leftmost tap on, two per chunk; those reads must be aligned (the
  // rows start on 64-byte boundaries, the leftmost tap's read of output 0 as well) and in the row.
  const Phase& ph = x.phases[0];
  if (x.phases.size() == 1 && x.src_step == 1 && !ph.offsets.empty()) {
    const auto [first, last] = std::minmax_element(ph.offsets.begin(), ph.offsets.end());
    if (*last - *first <= lanes) {
      p.aligned_taps = true;
      p.pad_left += ((-(p.pad_left + *first)) % lanes + lanes) % lanes;
      const std::int64_t n = std::max(ph.count, lanes);
      hi = std::max(hi, n + lanes + *first - 1);
    }
  }
  p.padded_width = hi + p.pad_left + 1;
  if (p.aligned_taps) p.padded_width = ceil_div(p.padded_width, lanes) * lanes;
}

// The calling thread's buffers. They outlive the call: freed at its end, a worker thread's buffers
// went back to the system (glibc trims the arenas of threads other than the main one) and were
// faulted in again on the next call, which cost a tenth of a depthwise layer's time. Buffers that
// grew past 64 MiB (large 3-D volumes) are released after the call instead.
template <typename T>
Scratch<T>& thread_scratch() {
  thread_local Scratch<T> scratch;
  return scratch;
}

template <typename T>
void trim_scratch(Scratch<T>& s) {
  constexpr std::size_t limit = std::size_t{64} << 20;
  if ((s.padded.capacity() + s.table.capacity() + s.tmp.capacity() + s.acc.capacity()) * sizeof(T) >
      limit) {
    s = Scratch<T>();
  }
}

// ---- source rows padded just before their use ----

// Depthwise planes (one source plane per output plane, multiplier 1) in 2-D, whose x axis is a
// single stride-1 phase read in aligned vectors and whose y axis is a single phase, with 3 x 3 or
// 5 x 5 taps. Their units skip pad_sources and the prefetching of the next unit (see ring_plane).
// On the depthwise layer of the suite this alone measured as fast as the whole-plane copy, not
// faster; what it gained came with the non-temporal stores below.
template <typename T>
bool ring_applies(const Problem<T>& p) {
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  if (p.outs != 1 || p.srcs != 1 || !p.aligned_taps) return false;
  if (az.src_size != 1 || az.out_size != 1 || az.phases.size() != 1 ||
      az.phases[0].offsets.size() != 1 || az.phases[0].offsets[0] != 0) {
    return false;
  }
  if (ay.phases.size() != 1 || ay.out_step != 1 || ax.phases.size() != 1 || ax.src_step != 1 ||
      ax.out_step != 1 || ax.phases[0].count < Vec<T>::lanes) {
    return false;
  }
  const std::size_t r = ay.phases[0].taps.size(), k = ax.phases[0].taps.size();
  return (r == 3 && k == 3) || (r == 5 && k == 5);
}

// Depthwise planes (multiplier 1) in 2-D with 3 x 3 or 5 x 5 taps, a single y phase of output
// step 1 (any y stride or dilation in the forward, stride 1 in the input gradient) and a single
// stride-1 x phase (any dilation): the native-width loops take them on the versions that have
// them (native_plane_fn). TAPS is the tap count per row.
template <typename T>
bool native_applies(const Problem<T>& p, int& taps) {
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  if (p.outs != 1 || p.srcs != 1) return false;
  if (az.src_size != 1 || az.out_size != 1 || az.phases.size() != 1 ||
      az.phases[0].offsets.size() != 1 || az.phases[0].offsets[0] != 0) {
    return false;
  }
  if (ay.phases.size() != 1 || ay.out_step != 1 || ax.phases.size() != 1 || ax.src_step != 1 ||
      ax.out_step != 1) {
    return false;
  }
  const std::size_t r = ay.phases[0].taps.size(), k = ax.phases[0].taps.size();
  taps = static_cast<int>(r);
  return (r == 3 && k == 3) || (r == 5 && k == 5);
}

// The weight gradient's units of 2-D 3 x 3 kernels with an x stride of 1 (any y stride,
// dilation, padding or multiplier) go to native_weight_fn where the version has it.
template <typename T>
bool native_weights_apply(const Problem<T>& p) {
  const AxisPlan &az = p.axes[0], &ay = p.axes[1], &ax = p.axes[2];
  return az.out_size == 1 && az.src_size == 1 && az.phases[0].offsets.size() == 1 &&
         az.phases[0].offsets[0] == 0 && ay.phases[0].taps.size() == 3 &&
         ax.phases[0].taps.size() == 3 && ax.src_step == 1;
}

// Outputs of at least this many bytes are written by ring_plane with non-temporal stores, that
// do not read each output line into the cache before writing it and leave the cache to the
// sources (the depthwise layer of the suite, 12 MiB of output, took a tenth less time).
constexpr std::int64_t stream_bytes = std::int64_t{8} << 20;

// ---- the instruction-set versions ----

template <typename T>
struct Units {
  ConvUnitFn<T> conv;
  WeightUnitFn<T> weights;
  ConvParts<T> parts;
};

DirectIsa supported_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return DirectIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DirectIsa::avx2;
  return DirectIsa::baseline;
}

std::atomic<DirectIsa>& isa_in_use() {
  static std::atomic<DirectIsa> isa{supported_isa()};
  return isa;
}

template <DirectIsa ISA, typename T>
Units<T> units_of() {
  return {conv_unit_fn<ISA, T>(),
          weight_unit_fn<ISA, T>(),
          {ring_fn<ISA, T>(3), ring_fn<ISA, T>(5), block_fn<ISA, T, 1>(), block_fn<ISA, T, 2>(),
           block_fn<ISA, T, 4>()}};
}

// One table per version for the life of the process: a Problem keeps a pointer to its parts.
template <typename T>
const Units<T>& units_for(DirectIsa isa) {
  switch (isa) {
    case DirectIsa::avx512: {
      static const Units<T> table = units_of<DirectIsa::avx512, T>();
      return table;
    }
    case DirectIsa::avx2: {
      static const Units<T> table = units_of<DirectIsa::avx2, T>();
      return table;
    }
    case DirectIsa::baseline:
      break;
  }
  static const Units<T> table = units_of<DirectIsa::baseline, T>();
  return table;
}

// [begin, end) of part PART when COUNT items are split into PARTS contiguous runs.
std::pair<std::int64_t, std::int64_t> split(std::int64_t count, int parts, int part) {
  return {count * part / parts, count * (part + 1) / parts};
}

// Runs FN(scratch, slot, unit, next unit of the same thread or -1) over [0, UNITS) on up to THREADS
// threads: units handed out as threads finish them, or (FIXED) in contiguous runs, one per thread,
// so that per-thread sums come out the same from run to run. Returns the number of slots used.
template <typename T, typename Fn>
int run_units(int threads, std::int64_t units, bool fixed, Fn&& fn) {
  threads = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), units));
  if (threads <= 1) {
    Scratch<T>& s = thread_scratch<T>();
    for (std::int64_t u = 0; u < units; ++u) fn(s, 0, u, u + 1 < units ? u + 1 : -1);
    trim_scratch(s);
    return 1;
  }
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    const int slot = omp_get_thread_num();
    const int size = omp_get_num_threads();
    if (slot == 0) team = size;
    // Exceptions (allocation failures) must not cross the parallel region.
    try {
      Scratch<T>& s = thread_scratch<T>();
      if (fixed) {
        const auto [begin, end] = split(units, size, slot);
        for (std::int64_t u = begin; u < end; ++u) fn(s, slot, u, u + 1 < end ? u + 1 : -1);
      } else {
        // Each thread claims its next unit before running the current one, to prefetch it.
        std::int64_t u = next++;
        while (u < units) {
          const std::int64_t following = next++;
          fn(s, slot, u, following < units ? following : -1);
          u = following;
        }
      }
      trim_scratch(s);
    } catch (...) {
#pragma omp critical(convgraph_direct_conv_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return team;
}

template <typename T>
void run_conv(Problem<T>& p, int threads) {
  plan_padding(p);
  const std::int64_t out_bytes =
      p.geo->batch * p.out_channels * p.out_plane * std::int64_t{sizeof(T)};
  int taps = 0;
  if (native_applies(p, taps)) {
    if (const NativePlaneFn<T> plane = native_plane_fn<T>(direct_conv_isa(), taps)) {
      p.stream = out_bytes >= stream_bytes;
      const std::int64_t groups = p.geo->groups;
      run_units<T>(threads, p.geo->batch * groups, false,
                   [&](Scratch<T>& s, int, std::int64_t u, std::int64_t next) {
                     const T* next_src =
                         next < 0 ? nullptr
                                  : p.src + (next / groups * p.src_channels + next % groups) *
                                                p.src_plane;
                     plane(p, s, u / groups, u % groups, next_src);
                   });
      return;
    }
  }
  p.ring = ring_applies(p);
  p.stream = p.ring && out_bytes >= stream_bytes;
  const Units<T>& units = units_for<T>(direct_conv_isa());
  p.parts = &units.parts;
  run_units<T>(
      threads, p.geo->batch * p.geo->groups, false,
      [&](Scratch<T>& s, int, std::int64_t u, std::int64_t next) { units.conv(p, s, u, next); });
}

}  // namespace

bool direct_conv_applies(const CorrGeometry& geo) {
  if (geo.unshared) return false;
  const CorrGemmTuning tuning = corr_gemm_tuning();
  if (geo.filters_per_group > tuning.direct_max_filters) return false;
  if (geo.channels_per_group == 1) return true;
  return geo.groups > 1 && geo.channels_per_group <= tuning.direct_max_channels;
}

bool direct_grad_weights_applies(const CorrGeometry& geo) {
  return !geo.unshared && geo.channels_per_group == 1 &&
         geo.filters_per_group <= corr_gemm_tuning().direct_max_filters;
}

DirectIsa direct_conv_isa() {
  return isa_in_use().load();
}

DirectIsa set_direct_conv_isa(DirectIsa isa) {
  const DirectIsa best = supported_isa();
  const DirectIsa used =
      static_cast<unsigned char>(isa) <= static_cast<unsigned char>(best) ? isa : best;
  isa_in_use().store(used);
  return used;
}

template <typename T>
void direct_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out, int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = forward_axis(geo, a);
  p.outs = geo.filters_per_group;
  p.srcs = geo.channels_per_group;
  p.out_channels = geo.filters;
  p.src_channels = geo.channels;
  p.out_plane = geo.positions();
  p.src_plane = geo.image_size();
  p.src = image;
  p.kernel = kernel;
  p.dst = out;
  run_conv(p, threads);
}

template <typename T>
void direct_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out,
                        int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = backward_axis(geo, a);
  p.backward = true;
  p.outs = geo.channels_per_group;
  p.srcs = geo.filters_per_group;
  p.out_channels = geo.channels;
  p.src_channels = geo.filters;
  p.out_plane = geo.image_size();
  p.src_plane = geo.positions();
  p.src = topgrad;
  p.kernel = kernel;
  p.dst = out;
  run_conv(p, threads);
}

template <typename T>
void direct_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out,
                         int threads) {
  Problem<T> p;
  p.geo = &geo;
  for (std::size_t a = 0; a < 3; ++a) p.axes[a] = forward_axis(geo, a);
  p.outs = 1;
  p.srcs = 1;
  p.out_channels = geo.filters;
  p.src_channels = geo.channels;
  p.out_plane = geo.positions();
  p.src_plane = geo.image_size();
  p.src = image;
  plan_padding(p);
  const std::int64_t weights = geo.filters * geo.taps();
  const std::int64_t units = geo.batch * geo.filters;
  const int slots = static_cast<int>(std::min<std::int64_t>(std::max(threads, 1), units));
  // Each thread sums its units into its own copy; the copies are added in slot order.
  std::vector<T> partial(slots > 1 ? static_cast<std::size_t>(slots * weights) : 0, T(0));
  if (slots <= 1) std::fill(out, out + weights, T(0));
  const DirectIsa isa = direct_conv_isa();
  WeightUnitFn<T> unit_fn = native_weights_apply(p) ? native_weight_fn<T>(isa) : nullptr;
  if (unit_fn == nullptr) unit_fn = units_for<T>(isa).weights;
  const int used =
      run_units<T>(slots, units, true, [&](Scratch<T>& s, int slot, std::int64_t u, std::int64_t) {
        unit_fn(p, s, u, topgrad, slots > 1 ? partial.data() + slot * weights : out);
      });
  if (slots > 1) {
    std::fill(out, out + weights, T(0));
    for (int slot = 0; slot < used; ++slot) {
      const T* src = partial.data() + slot * weights;
      for (std::int64_t i = 0; i < weights; ++i) out[i] += src[i];
    }
  }
}

template void direct_forward<float>(const CorrGeometry&, const float*, const float*, float*, int);
template void direct_forward<double>(const CorrGeometry&, const double*, const double*, double*,
                                     int);
template void direct_grad_inputs<float>(const CorrGeometry&, const float*, const float*, float*,
                                        int);
template void direct_grad_inputs<double>(const CorrGeometry&, const double*, const double*, double*,
                                         int);
template void direct_grad_weights<float>(const CorrGeometry&, const float*, const float*, float*,
                                         int);
template void direct_grad_weights<double>(const CorrGeometry&, const double*, const double*,
                                          double*, int);

}  // namespace convgraph
