#include "convgraph/codegen/loop_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "convgraph/runtime/cpu_threads.hpp"

namespace convgraph::codegen {
namespace {

// Below this many elements a parallel region costs more than it saves (as for the elementwise
// kernels).
constexpr std::int64_t kParallelThreshold = 32768;
// Elements per parallel work item.
constexpr std::int64_t kChunkElements = 16384;

// The iteration axis that axis J of a rank-R tensor faces, for iteration rank RANK.
int facing_axis(int rank, std::size_t tensor_rank, std::size_t j) {
  return rank - static_cast<int>(tensor_rank) + static_cast<int>(j);
}

void check_tensor(const FusedIR& ir, const Tensor& t, const char* what, std::size_t i,
                  DType expected) {
  if (!t.defined()) {
    throw ValueError(fmt::format("{}: {} {} is undefined", ir.label(), what, i));
  }
  if (!t.device().is_cpu()) {
    throw UnsupportedError(fmt::format("{}: {} {} is on {}; fused kernels run on the CPU",
                                       ir.label(), what, i, t.device().str()));
  }
  if (t.dtype() != expected) {
    throw TypeError(fmt::format("{}: {} {} has dtype {}, expected {}", ir.label(), what, i,
                                dtype_name(t.dtype()), dtype_name(expected)));
  }
  if (const std::string problem = t.out_of_storage(); !problem.empty()) {
    throw ValueError(
        fmt::format("{}: {} {} reads outside its buffer: {}", ir.label(), what, i, problem));
  }
}

// Fills the accumulator ACC with the identity of KIND.
void fill_identity(Tensor& acc, FusedReduceKind kind) {
  dispatch_dtype(acc.dtype(), [&]<typename A>() {
    A identity{};
    if constexpr (!std::is_same_v<A, bool> && !std::is_same_v<A, Half>) {
      if (kind == FusedReduceKind::max) {
        identity = std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity()
                                                        : std::numeric_limits<A>::lowest();
      }
    }
    A* p = acc.data<A>();
    std::fill(p, p + acc.numel(), identity);
  });
}

}  // namespace

std::int64_t LoopPlan::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= d;
  return n;
}

std::string LoopPlan::signature() const {
  std::string mask, inner;
  for (bool r : reduced) mask += r ? 'r' : '.';
  for (const auto& s : strides) {
    const std::int64_t last = s.back();
    inner += last == 1 ? 'c' : last == 0 ? 'b' : 's';
  }
  return fmt::format("r{} k{} {}", dims.size(), mask, inner);
}

Shape fused_output_shape(const FusedIR& ir, std::size_t k, const Shape& shape) {
  const auto& reduction = ir.output_reduction(k);
  if (!reduction) return shape;
  Shape out;
  for (int axis = 0; axis < ir.rank(); ++axis) {
    if (!ir.is_reduced_axis(k, axis)) {
      out.push_back(shape[static_cast<std::size_t>(axis)]);
    } else if (reduction->keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

Shape infer_iteration_shape(const FusedIR& ir, const std::vector<Tensor>& inputs) {
  Shape shape(static_cast<std::size_t>(ir.rank()), 1);
  std::vector<int> source(shape.size(), -1);
  for (std::size_t i = 0; i < inputs.size() && i < ir.inputs().size(); ++i) {
    const auto& bcast = ir.inputs()[i].broadcast;
    if (!inputs[i].defined() || inputs[i].shape().size() != bcast.size()) continue;
    for (std::size_t j = 0; j < bcast.size(); ++j) {
      if (bcast[j]) continue;
      const auto axis = static_cast<std::size_t>(facing_axis(ir.rank(), bcast.size(), j));
      const std::int64_t extent = inputs[i].shape()[j];
      if (source[axis] >= 0 && shape[axis] != extent) {
        throw ShapeError(fmt::format(
            "{}: input {} has extent {} on iteration axis {} but input {} has {} (inputs {} and "
            "{} have shapes {} and {})",
            ir.label(), i, extent, axis, source[axis], shape[axis], source[axis], i,
            shape_str(inputs[static_cast<std::size_t>(source[axis])].shape()),
            shape_str(inputs[i].shape())));
      }
      shape[axis] = extent;
      source[axis] = static_cast<int>(i);
    }
  }
  return shape;
}

BoundCall::BoundCall(const FusedIR& ir, const std::vector<Tensor>& inputs,
                     const std::vector<Tensor>& outputs, const Shape* loop_shape)
    : ir_(ir), outputs_(outputs) {
  const auto rank = static_cast<std::size_t>(ir.rank());
  if (inputs.size() != ir.inputs().size()) {
    throw ValueError(fmt::format("{}: {} inputs given, {} expected", ir.label(), inputs.size(),
                                 ir.inputs().size()));
  }
  if (outputs.size() != ir.outputs().size()) {
    throw ValueError(fmt::format("{}: {} outputs given, {} expected", ir.label(), outputs.size(),
                                 ir.outputs().size()));
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    check_tensor(ir, inputs[i], "input", i, ir.inputs()[i].dtype);
    if (inputs[i].shape().size() != ir.inputs()[i].broadcast.size()) {
      throw ShapeError(fmt::format("{}: input {} has shape {} (rank {}), expected rank {}",
                                   ir.label(), i, shape_str(inputs[i].shape()),
                                   inputs[i].shape().size(), ir.inputs()[i].broadcast.size()));
    }
  }
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    check_tensor(ir, outputs[k], "output", k, ir.output_dtype(k));
  }

  if (loop_shape != nullptr) {
    if (loop_shape->size() != rank) {
      throw ShapeError(fmt::format("{}: iteration shape {} has rank {}, expected {}", ir.label(),
                                   shape_str(*loop_shape), loop_shape->size(), rank));
    }
    shape_ = *loop_shape;
  } else {
    shape_ = infer_iteration_shape(ir, inputs);
    // Axes that no input determines take an elementwise output's extents (an output of broadcast
    // inputs).
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      const Shape& out = outputs[k].shape();
      if (ir.output_reduction(k) || out.size() != rank) continue;
      for (std::size_t a = 0; a < rank; ++a) {
        if (shape_[a] == 1) shape_[a] = out[a];
      }
      break;
    }
  }
  for (std::int64_t d : shape_) {
    if (d < 0)
      throw ShapeError(fmt::format("{}: negative extent in {}", ir.label(), shape_str(shape_)));
  }

  // Operand strides over the iteration axes, in the IR's axis order.
  std::vector<std::vector<std::int64_t>> strides;
  std::vector<void*> data;
  std::vector<DType> dtypes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto& bcast = ir.inputs()[i].broadcast;
    std::vector<std::int64_t> s(rank, 0);
    for (std::size_t j = 0; j < bcast.size(); ++j) {
      const auto axis = static_cast<std::size_t>(facing_axis(ir.rank(), bcast.size(), j));
      const std::int64_t extent = inputs[i].shape()[j];
      const std::int64_t expected = bcast[j] ? 1 : shape_[axis];
      if (extent != expected) {
        throw ShapeError(fmt::format(
            "{}: input {} has shape {}: its axis {} is {}, expected {} ({}; iteration shape {})",
            ir.label(), i, shape_str(inputs[i].shape()), j, extent, expected,
            bcast[j] ? "a broadcast axis" : "the iteration extent", shape_str(shape_)));
      }
      if (!bcast[j]) s[axis] = inputs[i].strides()[j];
    }
    strides.push_back(std::move(s));
    data.push_back(inputs[i].raw_data());
    dtypes.push_back(inputs[i].dtype());
  }

  for (std::size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& out = outputs[k];
    const auto& reduction = ir.output_reduction(k);
    Shape expected = shape_;
    if (reduction) {
      // Either shape is accepted: reduced axes dropped, or kept as 1.
      expected = out.shape().size() == rank ? shape_ : Shape{};
      for (std::size_t axis = 0; axis < rank; ++axis) {
        const bool red = ir.is_reduced_axis(k, static_cast<int>(axis));
        if (out.shape().size() == rank) {
          if (red) expected[axis] = 1;
        } else if (!red) {
          expected.push_back(shape_[axis]);
        }
      }
    }
    if (out.shape() != expected) {
      throw ShapeError(fmt::format("{}: output {} has shape {}, expected {}", ir.label(), k,
                                   shape_str(out.shape()), shape_str(expected)));
    }
    if (!reduction) {
      strides.push_back(out.strides());
      data.push_back(out.raw_data());
      dtypes.push_back(out.dtype());
      continue;
    }
    // The accumulator: contiguous over the kept axes, stride 0 along the reduced ones.
    const FusedReduceKind kind = reduction->kind;
    Shape kept;
    std::int64_t count = 1;
    for (std::size_t axis = 0; axis < rank; ++axis) {
      if (ir.is_reduced_axis(k, static_cast<int>(axis))) {
        count *= shape_[axis];
      } else {
        kept.push_back(shape_[axis]);
      }
    }
    if (kind == FusedReduceKind::max && count == 0 && shape_numel(kept) > 0) {
      throw ShapeError(
          fmt::format("{}: output {} is a max over an empty axis (iteration shape {}), which "
                      "has no identity",
                      ir.label(), k, shape_str(shape_)));
    }
    Tensor acc = Tensor::empty(fused_accumulator_dtype(kind, ir.output_value_dtype(k)), kept);
    fill_identity(acc, kind);
    std::vector<std::int64_t> s(rank, 0);
    std::size_t j = 0;
    for (std::size_t axis = 0; axis < rank; ++axis) {
      if (!ir.is_reduced_axis(k, static_cast<int>(axis))) s[axis] = acc.strides()[j++];
    }
    strides.push_back(std::move(s));
    data.push_back(acc.raw_data());
    dtypes.push_back(acc.dtype());
    plan_.accumulators.push_back({inputs.size() + k, std::move(acc), kind});
    reduced_counts_.push_back(count);
  }

  // Loop order: the IR's, which walks contiguous tensors in memory order (measured 1.2x to 3x
  // faster than any other for a bias gradient with its gradient, and the only order whose
  // innermost runs of 7x7 images stay cheap). Its outermost axis is split across the threads;
  // where that axis is reduced, each thread takes an equal range of it with private
  // accumulators, so when its extent cannot be split evenly (not a multiple of the thread count
  // and under four per thread: a batch of 3 on 2 threads) the axes no output reduces move
  // outward instead and the threads split those.
  std::vector<std::size_t> order(rank);
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (rank > 0 && ir.any_reduces_axis(ir.rank() - 1)) {
    const auto outer =
        std::find_if(shape_.begin(), shape_.end(), [](std::int64_t d) { return d != 1; });
    const auto outer_axis = static_cast<int>(outer - shape_.begin());
    if (outer != shape_.end() && ir.any_reduces_axis(outer_axis)) {
      const std::int64_t threads = codegen_threads();
      if (threads > 1 && *outer % threads != 0 && *outer < 4 * threads) {
        std::stable_partition(order.begin(), order.end(), [&](std::size_t axis) {
          return !ir.any_reduces_axis(static_cast<int>(axis));
        });
      }
    }
  }
  plan_.data = std::move(data);
  plan_.dtypes = std::move(dtypes);
  plan_.strides.assign(plan_.data.size(), {});
  bool any_zero = false;
  for (std::size_t axis : order) any_zero = any_zero || shape_[axis] == 0;
  for (std::size_t axis : order) {
    const std::int64_t extent = shape_[axis];
    const bool red = ir.any_reduces_axis(static_cast<int>(axis));
    if (!any_zero && extent == 1) continue;
    if (any_zero && extent != 0) continue;  // one zero axis says it all
    bool merge = !plan_.dims.empty() && plan_.reduced.back() == red;
    for (std::size_t k = 0; k < strides.size() && merge; ++k) {
      merge = plan_.strides[k].back() == strides[k][axis] * extent;
    }
    if (merge) {
      plan_.dims.back() *= extent;
      for (std::size_t k = 0; k < strides.size(); ++k) plan_.strides[k].back() = strides[k][axis];
    } else {
      plan_.dims.push_back(extent);
      plan_.reduced.push_back(red);
      for (std::size_t k = 0; k < strides.size(); ++k) plan_.strides[k].push_back(strides[k][axis]);
    }
    if (any_zero) break;
  }
  if (plan_.dims.empty()) {
    plan_.dims.push_back(1);
    plan_.reduced.push_back(false);
    for (auto& s : plan_.strides) s.push_back(0);
  }
}

void BoundCall::finish(std::int64_t status) const {
  if (status & kStatusDivisionByZero) {
    throw ValueError(
        fmt::format("{}: integer division or modulo by zero; cast to a "
                    "floating-point dtype to get inf/nan instead",
                    ir_.label()));
  }
  if (status & kStatusNegativeExponent) {
    throw ValueError(
        fmt::format("{}: integer power with a negative exponent; cast to a "
                    "floating-point dtype first",
                    ir_.label()));
  }
  for (std::size_t a = 0; a < plan_.accumulators.size(); ++a) {
    const LoopPlan::Accumulator& accumulator = plan_.accumulators[a];
    const Tensor& acc = accumulator.tensor;
    const Tensor& out = outputs_[accumulator.operand - ir_.inputs().size()];
    const bool mean = accumulator.kind == FusedReduceKind::mean;
    const std::int64_t count = reduced_counts_[a];
    const std::int64_t n = acc.numel();
    dispatch_dtype(acc.dtype(), [&]<typename A>() {
      dispatch_dtype(out.dtype(), [&]<typename O>() {
        if constexpr (std::is_same_v<A, bool> || std::is_same_v<A, Half>) {
          throw ValueError("fused kernel: invalid accumulator dtype");
        } else {
          const A* src = acc.data<A>();
          // Kept dims or not, the output's elements are in the accumulator's row-major order.
          O* base = out.data<O>();
          std::vector<std::int64_t> index(out.shape().size(), 0);
          for (std::int64_t e = 0; e < n; ++e) {
            std::int64_t offset = 0;
            for (std::size_t d = 0; d < index.size(); ++d) offset += index[d] * out.strides()[d];
            A v = src[e];
            if (mean) v = v / static_cast<A>(count);
            base[offset] = convert<O>(v);
            for (std::size_t d = index.size(); d-- > 0;) {
              if (++index[d] < out.shape()[d]) break;
              index[d] = 0;
            }
          }
        }
      });
    });
  }
}

int codegen_threads() {
  return cpu_threads();
}

namespace {

// Folds the accumulator PART into ACC (same dtype and layout).
void fold_accumulator(const Tensor& part, const Tensor& acc, FusedReduceKind kind) {
  dispatch_dtype(acc.dtype(), [&]<typename A>() {
    if constexpr (!std::is_same_v<A, bool> && !std::is_same_v<A, Half>) {
      const A* src = part.data<A>();
      A* dst = acc.data<A>();
      for (std::int64_t i = 0; i < acc.numel(); ++i) {
        const A x = src[i];
        if (kind == FusedReduceKind::max) {
          if constexpr (std::is_floating_point_v<A>) {
            dst[i] = (x > dst[i] || std::isnan(x)) ? x : dst[i];
          } else {
            dst[i] = x > dst[i] ? x : dst[i];
          }
        } else if constexpr (std::is_integral_v<A>) {  // wraps, as the sums do
          using U = std::make_unsigned_t<A>;
          dst[i] = static_cast<A>(static_cast<U>(dst[i]) + static_cast<U>(x));
        } else {
          dst[i] += x;
        }
      }
    }
  });
}

}  // namespace

void for_outer_ranges(const LoopPlan& plan,
                      const std::function<void(std::int64_t, std::int64_t, void* const*)>& body) {
  const std::int64_t numel = plan.numel();
  if (numel == 0) return;
  const std::int64_t extent = plan.dims[0];
  const int threads = numel > kParallelThreshold && extent > 1
                          ? static_cast<int>(std::min<std::int64_t>(codegen_threads(), extent))
                          : 1;
  if (threads <= 1) {
    body(0, extent, plan.data.data());
    return;
  }
  // The accumulators reduced along the outermost axis: those need a private copy per thread.
  std::vector<std::size_t> private_accs;
  for (std::size_t a = 0; a < plan.accumulators.size(); ++a) {
    if (plan.strides[plan.accumulators[a].operand][0] == 0) private_accs.push_back(a);
  }
  if (private_accs.empty()) {
    // Every accumulator element is reached from one index of the outermost axis, so from one
    // chunk: the threads write disjoint elements.
    const std::int64_t per_index = numel / extent;
    std::int64_t per_chunk = std::max<std::int64_t>(1, kChunkElements / per_index);
    // At least one chunk per thread.
    per_chunk = std::min(per_chunk, std::max<std::int64_t>(1, extent / threads));
    const std::int64_t chunks = (extent + per_chunk - 1) / per_chunk;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      const std::int64_t begin = chunk * per_chunk;
      body(begin, std::min(extent, begin + per_chunk), plan.data.data());
    }
    return;
  }
  // One range per thread; threads 1.. accumulate into private copies, folded in afterwards.
  std::vector<std::vector<Tensor>> partials(static_cast<std::size_t>(threads));
  std::vector<std::vector<void*>> data(static_cast<std::size_t>(threads), plan.data);
  for (std::size_t t = 1; t < partials.size(); ++t) {
    for (std::size_t a : private_accs) {
      const LoopPlan::Accumulator& shared = plan.accumulators[a];
      Tensor part = Tensor::empty(shared.tensor.dtype(), shared.tensor.shape());
      fill_identity(part, shared.kind);
      data[t][shared.operand] = part.raw_data();
      partials[t].push_back(std::move(part));
    }
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const std::int64_t begin = extent * t / threads, end = extent * (t + 1) / threads;
    body(begin, end, data[static_cast<std::size_t>(t)].data());
  }
  for (std::size_t t = 1; t < partials.size(); ++t) {
    for (std::size_t i = 0; i < private_accs.size(); ++i) {
      const LoopPlan::Accumulator& shared = plan.accumulators[private_accs[i]];
      fold_accumulator(partials[t][i], shared.tensor, shared.kind);
    }
  }
}

}  // namespace convgraph::codegen
