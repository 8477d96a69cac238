#include "convgraph/codegen/interpreter.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "convgraph/ops/tensor/elemwise_loops.hpp"

namespace convgraph::codegen {
namespace {

using elemwise_detail::Scalar;

// Elements evaluated per instruction at a time: long enough to amortise the dispatch, short
// enough for every value of a kernel to stay in the cache.
constexpr std::int64_t kBlock = 256;

// The values of one SSA instruction over a block, in its dtype's compute type (float for
// float16, one byte per bool).
struct Block {
  alignas(8) std::array<std::uint64_t, kBlock> storage;
  template <typename C>
  C* as() {
    static_assert(sizeof(C) <= sizeof(std::uint64_t));
    return reinterpret_cast<C*>(storage.data());
  }
};

// A float16 result is rounded to float16, as an unfused op would store it.
template <typename T, typename V>
V round_result(V v) {
  if constexpr (std::is_same_v<T, Half> && std::is_same_v<V, float>) {
    return to_float(Half(v));
  } else {
    return v;
  }
}

// cast()'s rules (float -> integer saturates and maps NaN to 0, anything -> bool is != 0), from
// the compute value V of a source dtype to the compute value of storage type D.
template <typename D, typename SC>
compute_t<D> cast_compute(SC v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != SC(0);
  } else if constexpr (std::is_same_v<D, Half>) {
    return to_float(Half(static_cast<float>(v)));
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<SC>) {
    if (v != v) return D(0);
    if (v <= static_cast<SC>(std::numeric_limits<D>::min())) return std::numeric_limits<D>::min();
    if (v >= static_cast<SC>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

template <ScalarOp Op, typename T>
void eval_scalar(const std::vector<Block>& values, const FusedInstr& in, Block& out, std::int64_t n,
                 std::int64_t& status) {
  using F = Scalar<Op>;
  using C = compute_t<T>;
  if constexpr (Op == ScalarOp::where) {
    const bool* c = const_cast<Block&>(values[in.args[0]]).as<bool>();
    const C* a = const_cast<Block&>(values[in.args[1]]).as<C>();
    const C* b = const_cast<Block&>(values[in.args[2]]).as<C>();
    C* o = out.as<C>();
    for (std::int64_t i = 0; i < n; ++i) o[i] = c[i] ? a[i] : b[i];
  } else if constexpr (!elemwise_detail::domain_accepts<F::domain, T>()) {
    throw TypeError("fused interpreter: an instruction has a dtype its op does not accept");
  } else {
    using R = std::conditional_t<F::gives_bool, bool, C>;
    R* o = out.as<R>();
    const C* a = const_cast<Block&>(values[in.args[0]]).as<C>();
    if constexpr (F::arity == 1) {
      for (std::int64_t i = 0; i < n; ++i) o[i] = round_result<T>(static_cast<R>(F::apply(a[i])));
    } else {
      const C* b = const_cast<Block&>(values[in.args[1]]).as<C>();
      constexpr bool checked_divisor =
          std::is_integral_v<C> && (Op == ScalarOp::int_div || Op == ScalarOp::mod);
      constexpr bool checked_exponent = std::is_integral_v<C> && Op == ScalarOp::pow;
      for (std::int64_t i = 0; i < n; ++i) {
        if constexpr (checked_divisor) {
          if (b[i] == C(0)) {
            status |= kStatusDivisionByZero;
            o[i] = R(0);
            continue;
          }
        }
        if constexpr (checked_exponent) {
          if (b[i] < C(0)) status |= kStatusNegativeExponent;
        }
        o[i] = round_result<T>(static_cast<R>(F::apply(a[i], b[i])));
      }
    }
  }
}

template <ScalarOp Op>
void eval_op(DType operand, const std::vector<Block>& values, const FusedInstr& in, Block& out,
             std::int64_t n, std::int64_t& status) {
  dispatch_dtype(operand, [&]<typename T>() { eval_scalar<Op, T>(values, in, out, n, status); });
}

#define CONVGRAPH_EVAL_CASE(OP) \
  case ScalarOp::OP:            \
    return eval_op<ScalarOp::OP>(operand, values, in, out, n, status);

void eval_scalar_instr(const std::vector<FusedInstr>& instrs, const std::vector<Block>& values,
                       const FusedInstr& in, Block& out, std::int64_t n, std::int64_t& status) {
  const DType operand =
      instrs[static_cast<std::size_t>(in.args[in.op == ScalarOp::where ? 1 : 0])].dtype;
  switch (in.op) {
    CONVGRAPH_EVAL_CASE(add)
    CONVGRAPH_EVAL_CASE(sub)
    CONVGRAPH_EVAL_CASE(mul)
    CONVGRAPH_EVAL_CASE(true_div)
    CONVGRAPH_EVAL_CASE(int_div)
    CONVGRAPH_EVAL_CASE(mod)
    CONVGRAPH_EVAL_CASE(pow)
    CONVGRAPH_EVAL_CASE(maximum)
    CONVGRAPH_EVAL_CASE(minimum)
    CONVGRAPH_EVAL_CASE(eq)
    CONVGRAPH_EVAL_CASE(neq)
    CONVGRAPH_EVAL_CASE(lt)
    CONVGRAPH_EVAL_CASE(le)
    CONVGRAPH_EVAL_CASE(gt)
    CONVGRAPH_EVAL_CASE(ge)
    CONVGRAPH_EVAL_CASE(logical_and)
    CONVGRAPH_EVAL_CASE(logical_or)
    CONVGRAPH_EVAL_CASE(logical_not)
    CONVGRAPH_EVAL_CASE(neg)
    CONVGRAPH_EVAL_CASE(abs)
    CONVGRAPH_EVAL_CASE(sign)
    CONVGRAPH_EVAL_CASE(square)
    CONVGRAPH_EVAL_CASE(exp)
    CONVGRAPH_EVAL_CASE(log)
    CONVGRAPH_EVAL_CASE(log1p)
    CONVGRAPH_EVAL_CASE(sqrt)
    CONVGRAPH_EVAL_CASE(relu)
    CONVGRAPH_EVAL_CASE(sigmoid)
    CONVGRAPH_EVAL_CASE(tanh)
    CONVGRAPH_EVAL_CASE(softplus)
    CONVGRAPH_EVAL_CASE(where)
  }
  throw ValueError("fused interpreter: invalid ScalarOp value");
}

#undef CONVGRAPH_EVAL_CASE

void eval_cast(DType from, DType to, Block& src, Block& out, std::int64_t n) {
  dispatch_dtype(to, [&]<typename D>() {
    dispatch_dtype(from, [&]<typename S>() {
      using SC = compute_t<S>;
      const SC* a = src.as<SC>();
      compute_t<D>* o = out.as<compute_t<D>>();
      for (std::int64_t i = 0; i < n; ++i) o[i] = cast_compute<D>(a[i]);
    });
  });
}

void eval_constant(const FusedInstr& in, Block& out, std::int64_t n) {
  dispatch_dtype(in.dtype, [&]<typename D>() {
    const compute_t<D> v = cast_compute<D>(in.value);
    compute_t<D>* o = out.as<compute_t<D>>();
    for (std::int64_t i = 0; i < n; ++i) o[i] = v;
  });
}

void eval_load(DType dtype, const void* base, std::int64_t stride, Block& out, std::int64_t n) {
  dispatch_dtype(dtype, [&]<typename T>() {
    const T* p = static_cast<const T*>(base);
    compute_t<T>* o = out.as<compute_t<T>>();
    // Unit-stride and broadcast runs get loops of their own, which the compiler vectorizes.
    if (stride == 1) {
      for (std::int64_t i = 0; i < n; ++i) o[i] = convert<compute_t<T>>(p[i]);
    } else if (stride == 0) {
      const compute_t<T> v = convert<compute_t<T>>(*p);
      for (std::int64_t i = 0; i < n; ++i) o[i] = v;
    } else {
      for (std::int64_t i = 0; i < n; ++i) o[i] = convert<compute_t<T>>(p[i * stride]);
    }
  });
}

void store_value(DType dtype, Block& value, void* base, std::int64_t stride, std::int64_t n) {
  dispatch_dtype(dtype, [&]<typename T>() {
    const compute_t<T>* v = value.as<compute_t<T>>();
    T* p = static_cast<T*>(base);
    if (stride == 1) {
      for (std::int64_t i = 0; i < n; ++i) p[i] = convert<T>(v[i]);
    } else {
      for (std::int64_t i = 0; i < n; ++i) p[i * stride] = convert<T>(v[i]);
    }
  });
}

// Folds a block of values (dtype VALUE) into accumulator elements (dtype ACC).
void accumulate_value(FusedReduceKind kind, DType value, DType acc, Block& block, void* base,
                      std::int64_t stride, std::int64_t n) {
  dispatch_dtype(acc, [&]<typename A>() {
    dispatch_dtype(value, [&]<typename T>() {
      if constexpr (std::is_same_v<A, bool> || std::is_same_v<A, Half>) {
        throw ValueError("fused interpreter: invalid accumulator dtype");
      } else {
        const compute_t<T>* v = block.as<compute_t<T>>();
        A* p = static_cast<A*>(base);
        auto combine = [kind](A a, A x) {
          if (kind == FusedReduceKind::max) {
            if constexpr (std::is_floating_point_v<A>) {
              return (x > a || std::isnan(x)) ? x : a;
            } else {
              return x > a ? x : a;
            }
          }
          return elemwise_detail::wrap_add(a, x);
        };
        if (stride == 0) {  // reduced along the run: accumulated in registers
          A a = *p;
          std::int64_t i = 0;
          if (kind != FusedReduceKind::max && n >= 16) {
            // Eight interleaved partial sums break the chain of dependent additions (and let
            // the compiler vectorize); they are folded pairwise in a fixed order.
            A part[8] = {};
            for (; i + 8 <= n; i += 8) {
              for (int j = 0; j < 8; ++j) {
                part[j] = elemwise_detail::wrap_add(part[j], static_cast<A>(v[i + j]));
              }
            }
            for (int width = 4; width > 0; width /= 2) {
              for (int j = 0; j < width; ++j) {
                part[j] = elemwise_detail::wrap_add(part[j], part[j + width]);
              }
            }
            a = elemwise_detail::wrap_add(a, part[0]);
          }
          for (; i < n; ++i) a = combine(a, static_cast<A>(v[i]));
          *p = a;
        } else {
          for (std::int64_t i = 0; i < n; ++i) {
            p[i * stride] = combine(p[i * stride], static_cast<A>(v[i]));
          }
        }
      }
    });
  });
}

}  // namespace

void interpret_range(const FusedIR& ir, const LoopPlan& plan, void* const* data, std::int64_t begin,
                     std::int64_t end, std::int64_t* status) {
  const std::size_t nd = plan.dims.size();
  const std::size_t nin = ir.inputs().size();
  const std::size_t nops = plan.data.size();
  std::vector<Block> values(ir.instrs().size());
  std::int64_t local_status = 0;
  std::vector<std::size_t> sizes(nops);
  for (std::size_t k = 0; k < nops; ++k) sizes[k] = dtype_size(plan.dtypes[k]);

  // Runs the innermost axis from element FIRST to LAST at operand offsets BASE.
  auto run_inner = [&](const std::vector<std::int64_t>& base, std::int64_t first,
                       std::int64_t last) {
    for (std::int64_t start = first; start < last; start += kBlock) {
      const std::int64_t n = std::min(kBlock, last - start);
      auto address = [&](std::size_t k) {
        return static_cast<char*>(data[k]) +
               (base[k] + start * plan.strides[k][nd - 1]) * static_cast<std::int64_t>(sizes[k]);
      };
      for (std::size_t i = 0; i < ir.instrs().size(); ++i) {
        const FusedInstr& in = ir.instrs()[i];
        switch (in.kind) {
          case FusedOpKind::load: {
            const auto k = static_cast<std::size_t>(in.input);
            eval_load(in.dtype, address(k), plan.strides[k][nd - 1], values[i], n);
            break;
          }
          case FusedOpKind::constant:
            eval_constant(in, values[i], n);
            break;
          case FusedOpKind::cast:
            eval_cast(ir.instrs()[static_cast<std::size_t>(in.args[0])].dtype, in.dtype,
                      values[static_cast<std::size_t>(in.args[0])], values[i], n);
            break;
          case FusedOpKind::scalar:
            eval_scalar_instr(ir.instrs(), values, in, values[i], n, local_status);
            break;
        }
      }
      for (std::size_t o = 0; o < ir.outputs().size(); ++o) {
        const std::size_t k = nin + o;
        const auto v = static_cast<std::size_t>(ir.output_value(o));
        if (const auto& reduction = ir.output_reduction(o)) {
          accumulate_value(reduction->kind, ir.instrs()[v].dtype, plan.dtypes[k], values[v],
                           address(k), plan.strides[k][nd - 1], n);
        } else {
          store_value(plan.dtypes[k], values[v], address(k), plan.strides[k][nd - 1], n);
        }
      }
    }
  };

  std::vector<std::int64_t> base(nops, 0);
  if (nd == 1) {
    run_inner(base, begin, end);
  } else {
    // Outer index over axes 0..nd-2, axis 0 limited to [begin, end).
    std::vector<std::int64_t> index(nd - 1, 0);
    index[0] = begin;
    for (std::size_t k = 0; k < nops; ++k) base[k] = begin * plan.strides[k][0];
    while (index[0] < end) {
      run_inner(base, 0, plan.dims[nd - 1]);
      std::size_t axis = nd - 1;
      while (axis-- > 0) {
        ++index[axis];
        for (std::size_t k = 0; k < nops; ++k) base[k] += plan.strides[k][axis];
        if (axis == 0 || index[axis] < plan.dims[axis]) break;
        for (std::size_t k = 0; k < nops; ++k) base[k] -= plan.strides[k][axis] * plan.dims[axis];
        index[axis] = 0;
      }
    }
  }
  if (local_status != 0) {
#pragma omp atomic
    *status |= local_status;
  }
}

}  // namespace convgraph::codegen
