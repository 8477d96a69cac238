#include "convgraph/codegen/llvm/jit_emit.hpp"

#include <fmt/format.h>
#include <llvm/IR/CFG.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>

#include <cmath>
#include <vector>

#include "convgraph/base/half.hpp"

namespace convgraph::codegen {
namespace {

using llvm::Value;

// Emits the instructions of one kernel into a function under construction.
class Emitter {
 public:
  Emitter(llvm::Module& module, const FusedIR& ir, const LoopPlan& plan)
      : m_(module), ctx_(module.getContext()), b_(ctx_), ir_(ir), plan_(plan) {}

  void emit(const std::string& name);

 private:
  // ---- types ----
  llvm::Type* storage_type(DType d) {
    switch (d) {
      case DType::float16:
        return b_.getHalfTy();
      case DType::float32:
        return b_.getFloatTy();
      case DType::float64:
        return b_.getDoubleTy();
      case DType::int8:
      case DType::boolean:
        return b_.getInt8Ty();
      case DType::int32:
        return b_.getInt32Ty();
      case DType::int64:
        return b_.getInt64Ty();
    }
    return nullptr;
  }
  // Arithmetic happens in float for float16 (as in the elementwise kernels); bools are i1.
  llvm::Type* compute_type(DType d) {
    if (d == DType::float16) return b_.getFloatTy();
    if (d == DType::boolean) return b_.getInt1Ty();
    return storage_type(d);
  }

  // ---- conversions between storage and compute values ----
  Value* from_storage(DType d, Value* v) {
    if (d == DType::float16) return b_.CreateFPExt(v, b_.getFloatTy());
    if (d == DType::boolean) return b_.CreateICmpNE(v, b_.getInt8(0));
    return v;
  }
  Value* to_storage(DType d, Value* v) {
    if (d == DType::float16) return b_.CreateFPTrunc(v, b_.getHalfTy());
    if (d == DType::boolean) return b_.CreateZExt(v, b_.getInt8Ty());
    return v;
  }
  // A float16 result rounded to float16 and back, as an unfused op would store it.
  Value* round_half(DType d, Value* v) {
    if (d != DType::float16) return v;
    return b_.CreateFPExt(b_.CreateFPTrunc(v, b_.getHalfTy()), b_.getFloatTy());
  }

  Value* call_libm(const char* float_name, const char* double_name, Value* a, Value* b = nullptr) {
    const bool is_double = a->getType()->isDoubleTy();
    llvm::Type* t = a->getType();
    std::vector<llvm::Type*> params(b ? 2 : 1, t);
    llvm::FunctionCallee f = m_.getOrInsertFunction(is_double ? double_name : float_name,
                                                    llvm::FunctionType::get(t, params, false));
    if (auto* fn = llvm::dyn_cast<llvm::Function>(f.getCallee())) {
      fn->addFnAttr(llvm::Attribute::NoUnwind);
      fn->addFnAttr(llvm::Attribute::WillReturn);
    }
    return b ? b_.CreateCall(f, {a, b}) : b_.CreateCall(f, {a});
  }
  Value* intrinsic(llvm::Intrinsic::ID id, Value* a, Value* b = nullptr) {
    llvm::Function* f = llvm::Intrinsic::getDeclaration(&m_, id, {a->getType()});
    return b ? b_.CreateCall(f, {a, b}) : b_.CreateCall(f, {a});
  }
  Value* fconst(llvm::Type* t, double v) { return llvm::ConstantFP::get(t, v); }
  Value* iconst(llvm::Type* t, std::int64_t v) {
    return llvm::ConstantInt::get(t, static_cast<std::uint64_t>(v), true);
  }

  Value* emit_constant(const FusedInstr& in);
  Value* emit_cast(DType from, DType to, Value* v);
  Value* emit_scalar(ScalarOp op, DType t, const std::vector<Value*>& a);
  Value* emit_int_pow(Value* base, Value* exponent);
  void add_status(Value* condition, std::int64_t bit);

  // ---- loops ----
  // Emits loop levels AXIS.. with operand offsets OFFSETS (elements, i64).
  void emit_level(std::size_t axis, std::vector<Value*> offsets);
  void emit_inner(std::vector<Value*> offsets);
  // Runs BODY(index) for index in [LO, HI); returns with the builder after the loop.
  template <typename Body>
  void emit_loop(Value* lo, Value* hi, const char* name, Body&& body);

  llvm::Module& m_;
  llvm::LLVMContext& ctx_;
  llvm::IRBuilder<> b_;
  const FusedIR& ir_;
  const LoopPlan& plan_;
  llvm::Function* fn_ = nullptr;
  std::vector<Value*> base_;                  // typed origin pointer per operand
  std::vector<Value*> dims_;                  // per loop axis
  std::vector<std::vector<Value*>> strides_;  // [operand][axis]
  Value* begin_ = nullptr;
  Value* end_ = nullptr;
  llvm::AllocaInst* status_ = nullptr;
};

template <typename Body>
void Emitter::emit_loop(Value* lo, Value* hi, const char* name, Body&& body) {
  llvm::BasicBlock* pre = b_.GetInsertBlock();
  auto* header = llvm::BasicBlock::Create(ctx_, fmt::format("{}.body", name), fn_);
  auto* exit = llvm::BasicBlock::Create(ctx_, fmt::format("{}.exit", name), fn_);
  b_.CreateCondBr(b_.CreateICmpSLT(lo, hi), header, exit);
  b_.SetInsertPoint(header);
  llvm::PHINode* index = b_.CreatePHI(b_.getInt64Ty(), 2, name);
  index->addIncoming(lo, pre);
  body(static_cast<Value*>(index));
  Value* next = b_.CreateAdd(index, b_.getInt64(1), "", /*HasNUW=*/true, /*HasNSW=*/true);
  index->addIncoming(next, b_.GetInsertBlock());
  b_.CreateCondBr(b_.CreateICmpSLT(next, hi), header, exit);
  b_.SetInsertPoint(exit);
}

void Emitter::add_status(Value* condition, std::int64_t bit) {
  Value* old = b_.CreateLoad(b_.getInt64Ty(), status_);
  Value* flag = b_.CreateSelect(condition, b_.getInt64(bit), b_.getInt64(0));
  b_.CreateStore(b_.CreateOr(old, flag), status_);
}

Value* Emitter::emit_constant(const FusedInstr& in) {
  llvm::Type* t = compute_type(in.dtype);
  switch (in.dtype) {
    case DType::float16:
      return fconst(t, static_cast<double>(to_float(Half(static_cast<float>(in.value)))));
    case DType::float32:
      return fconst(t, static_cast<double>(static_cast<float>(in.value)));
    case DType::float64:
      return fconst(t, in.value);
    case DType::boolean:
      return b_.getInt1(in.value != 0.0);
    default:
      return iconst(t, static_cast<std::int64_t>(in.value));
  }
}

// cast()'s rules: float -> integer truncates, saturates and maps NaN to 0 (llvm.fptosi.sat does
// exactly that); anything -> bool is != 0; to float16 goes through float, as Half(float(v)) does.
Value* Emitter::emit_cast(DType from, DType to, Value* v) {
  llvm::Type* target = compute_type(to);
  if (from == to) return v;
  if (to == DType::boolean) {
    if (is_float(from)) return b_.CreateFCmpUNE(v, fconst(v->getType(), 0.0));
    return b_.CreateICmpNE(v, llvm::ConstantInt::get(v->getType(), 0));
  }
  if (is_float(to)) {
    llvm::Type* via = to == DType::float16 ? b_.getFloatTy() : target;
    Value* r;
    if (from == DType::boolean) {
      r = b_.CreateUIToFP(v, via);
    } else if (!is_float(from)) {
      r = b_.CreateSIToFP(v, via);
    } else {
      r = b_.CreateFPCast(v, via);
    }
    return round_half(to, r);
  }
  // to an integer
  if (from == DType::boolean) return b_.CreateZExt(v, target);
  if (is_float(from)) {
    llvm::Function* sat =
        llvm::Intrinsic::getDeclaration(&m_, llvm::Intrinsic::fptosi_sat, {target, v->getType()});
    return b_.CreateCall(sat, {v});
  }
  return b_.CreateSExtOrTrunc(v, target);
}

// Exponentiation by squaring over every bit of the exponent, with selects instead of branches so
// that the loop around it still vectorizes; wraps like the elementwise kernel's int_pow.
Value* Emitter::emit_int_pow(Value* base, Value* exponent) {
  llvm::Type* t = base->getType();
  const unsigned bits = t->getIntegerBitWidth();
  Value* result = llvm::ConstantInt::get(t, 1);
  for (unsigned k = 0; k + 1 < bits; ++k) {
    Value* bit = b_.CreateTrunc(b_.CreateLShr(exponent, k), b_.getInt1Ty());
    result = b_.CreateSelect(bit, b_.CreateMul(result, base), result);
    base = b_.CreateMul(base, base);
  }
  return result;
}

Value* Emitter::emit_scalar(ScalarOp op, DType t, const std::vector<Value*>& a) {
  const bool fp = is_float(t);
  const bool boolean = t == DType::boolean;
  if (op == ScalarOp::where) return b_.CreateSelect(a[0], a[1], a[2]);
  llvm::Type* ty = a[0]->getType();
  Value* zero = fp ? fconst(ty, 0.0) : llvm::ConstantInt::get(ty, 0);
  auto lt = [&](Value* x, Value* y) {
    return fp ? b_.CreateFCmpOLT(x, y) : boolean ? b_.CreateICmpULT(x, y) : b_.CreateICmpSLT(x, y);
  };
  auto gt = [&](Value* x, Value* y) {
    return fp ? b_.CreateFCmpOGT(x, y) : boolean ? b_.CreateICmpUGT(x, y) : b_.CreateICmpSGT(x, y);
  };
  auto le = [&](Value* x, Value* y) {
    return fp ? b_.CreateFCmpOLE(x, y) : boolean ? b_.CreateICmpULE(x, y) : b_.CreateICmpSLE(x, y);
  };
  auto ge = [&](Value* x, Value* y) {
    return fp ? b_.CreateFCmpOGE(x, y) : boolean ? b_.CreateICmpUGE(x, y) : b_.CreateICmpSGE(x, y);
  };
  switch (op) {
    case ScalarOp::add:
      return fp ? b_.CreateFAdd(a[0], a[1]) : b_.CreateAdd(a[0], a[1]);
    case ScalarOp::sub:
      return fp ? b_.CreateFSub(a[0], a[1]) : b_.CreateSub(a[0], a[1]);
    case ScalarOp::mul:
      return fp ? b_.CreateFMul(a[0], a[1]) : b_.CreateMul(a[0], a[1]);
    case ScalarOp::true_div:
      return b_.CreateFDiv(a[0], a[1]);
    case ScalarOp::int_div:
    case ScalarOp::mod: {
      if (fp) {
        if (op == ScalarOp::int_div) {
          return intrinsic(llvm::Intrinsic::floor, b_.CreateFDiv(a[0], a[1]));
        }
        // fmod, then moved to the divisor's sign; an exact zero takes the divisor's sign.
        Value* r = b_.CreateFRem(a[0], a[1]);
        Value* adjust = b_.CreateXor(b_.CreateFCmpOLT(r, zero), b_.CreateFCmpOLT(a[1], zero));
        Value* moved = b_.CreateSelect(adjust, b_.CreateFAdd(r, a[1]), r);
        Value* signed_zero = intrinsic(llvm::Intrinsic::copysign, zero, a[1]);
        return b_.CreateSelect(b_.CreateFCmpUNE(r, zero), moved, signed_zero);
      }
      // Python's floor division and modulo; a zero divisor is reported, -1 never divides (INT_MIN
      // / -1 overflows).
      Value* is_zero = b_.CreateICmpEQ(a[1], zero);
      Value* minus_one = b_.CreateICmpEQ(a[1], llvm::ConstantInt::get(ty, -1, true));
      add_status(is_zero, kStatusDivisionByZero);
      Value* safe =
          b_.CreateSelect(b_.CreateOr(is_zero, minus_one), llvm::ConstantInt::get(ty, 1), a[1]);
      Value* q = b_.CreateSDiv(a[0], safe);
      Value* r = b_.CreateSRem(a[0], safe);
      Value* inexact = b_.CreateICmpNE(r, zero);
      if (op == ScalarOp::int_div) {
        Value* signs = b_.CreateXor(b_.CreateICmpSLT(a[0], zero), b_.CreateICmpSLT(a[1], zero));
        Value* floor_q = b_.CreateSub(q, b_.CreateZExt(b_.CreateAnd(inexact, signs), ty));
        return b_.CreateSelect(minus_one, b_.CreateSub(zero, a[0]), floor_q);
      }
      Value* signs = b_.CreateXor(b_.CreateICmpSLT(r, zero), b_.CreateICmpSLT(a[1], zero));
      Value* moved = b_.CreateSelect(b_.CreateAnd(inexact, signs), b_.CreateAdd(r, a[1]), r);
      return b_.CreateSelect(minus_one, zero, moved);
    }
    case ScalarOp::pow:
      if (fp) return call_libm("powf", "pow", a[0], a[1]);
      add_status(b_.CreateICmpSLT(a[1], zero), kStatusNegativeExponent);
      return emit_int_pow(a[0], a[1]);
    case ScalarOp::maximum:
    case ScalarOp::minimum: {
      // NaN propagates: (a >= b || a != a) ? a : b.
      Value* pick_a = op == ScalarOp::maximum ? ge(a[0], a[1]) : le(a[0], a[1]);
      if (fp) pick_a = b_.CreateOr(pick_a, b_.CreateFCmpUNO(a[0], a[0]));
      return b_.CreateSelect(pick_a, a[0], a[1]);
    }
    case ScalarOp::eq:
      return fp ? b_.CreateFCmpOEQ(a[0], a[1]) : b_.CreateICmpEQ(a[0], a[1]);
    case ScalarOp::neq:
      return fp ? b_.CreateFCmpUNE(a[0], a[1]) : b_.CreateICmpNE(a[0], a[1]);
    case ScalarOp::lt:
      return lt(a[0], a[1]);
    case ScalarOp::le:
      return le(a[0], a[1]);
    case ScalarOp::gt:
      return gt(a[0], a[1]);
    case ScalarOp::ge:
      return ge(a[0], a[1]);
    case ScalarOp::logical_and:
      return b_.CreateAnd(a[0], a[1]);
    case ScalarOp::logical_or:
      return b_.CreateOr(a[0], a[1]);
    case ScalarOp::logical_not:
      return b_.CreateNot(a[0]);
    case ScalarOp::neg:
      // 0 - a, not a negation: the elementwise kernel gives +0 for +0.
      return fp ? b_.CreateFSub(zero, a[0]) : b_.CreateSub(zero, a[0]);
    case ScalarOp::abs:
      if (fp) return intrinsic(llvm::Intrinsic::fabs, a[0]);
      return b_.CreateSelect(b_.CreateICmpSLT(a[0], zero), b_.CreateSub(zero, a[0]), a[0]);
    case ScalarOp::sign: {
      if (!fp) {
        return b_.CreateSub(b_.CreateZExt(b_.CreateICmpSGT(a[0], zero), ty),
                            b_.CreateZExt(b_.CreateICmpSLT(a[0], zero), ty));
      }
      Value* negative = b_.CreateSelect(b_.CreateFCmpOLT(a[0], zero), fconst(ty, -1.0), a[0]);
      return b_.CreateSelect(b_.CreateFCmpOGT(a[0], zero), fconst(ty, 1.0), negative);
    }
    case ScalarOp::square:
      return fp ? b_.CreateFMul(a[0], a[0]) : b_.CreateMul(a[0], a[0]);
    case ScalarOp::exp:
      return call_libm("expf", "exp", a[0]);
    case ScalarOp::log:
      return call_libm("logf", "log", a[0]);
    case ScalarOp::log1p:
      return call_libm("log1pf", "log1p", a[0]);
    case ScalarOp::tanh:
      return call_libm("tanhf", "tanh", a[0]);
    case ScalarOp::sqrt:
      return intrinsic(llvm::Intrinsic::sqrt, a[0]);
    case ScalarOp::relu:
      // a < 0 ? 0 : a keeps NaN.
      return b_.CreateSelect(lt(a[0], zero), zero, a[0]);
    case ScalarOp::sigmoid: {
      // exp(-|a|) is exp(-a) for a >= 0 and exp(a) otherwise: the two branches of the elementwise
      // kernel with one exponential.
      Value* e = call_libm("expf", "exp", b_.CreateFNeg(intrinsic(llvm::Intrinsic::fabs, a[0])));
      Value* one = fconst(ty, 1.0);
      Value* denominator = b_.CreateFAdd(one, e);
      return b_.CreateSelect(b_.CreateFCmpOGE(a[0], zero), b_.CreateFDiv(one, denominator),
                             b_.CreateFDiv(e, denominator));
    }
    case ScalarOp::softplus: {
      Value* positive = b_.CreateSelect(b_.CreateFCmpOGT(a[0], zero), a[0], zero);
      Value* e = call_libm("expf", "exp", b_.CreateFNeg(intrinsic(llvm::Intrinsic::fabs, a[0])));
      return b_.CreateFAdd(positive, call_libm("log1pf", "log1p", e));
    }
    case ScalarOp::where:
      break;  // handled above
  }
  throw UnsupportedError(
      fmt::format("{}: no LLVM lowering for ScalarOp {}", ir_.label(), static_cast<int>(op)));
}

void Emitter::emit_level(std::size_t axis, std::vector<Value*> offsets) {
  const std::size_t nd = plan_.dims.size();
  if (axis + 1 == nd) return emit_inner(std::move(offsets));
  Value* lo = axis == 0 ? begin_ : b_.getInt64(0);
  Value* hi = axis == 0 ? end_ : dims_[axis];
  emit_loop(lo, hi, "outer", [&](Value* index) {
    std::vector<Value*> inner = offsets;
    for (std::size_t k = 0; k < inner.size(); ++k) {
      inner[k] = b_.CreateAdd(inner[k], b_.CreateMul(index, strides_[k][axis]));
    }
    emit_level(axis + 1, std::move(inner));
  });
}

void Emitter::emit_inner(std::vector<Value*> offsets) {
  const std::size_t nd = plan_.dims.size();
  const std::size_t nin = ir_.inputs().size();
  const std::size_t nout = ir_.outputs().size();
  auto inner_class = [&](std::size_t k) {
    const std::int64_t s = plan_.strides[k][nd - 1];
    return s == 1 ? 'c' : s == 0 ? 'b' : 's';
  };
  auto element = [&](std::size_t k, Value* index) {
    Value* offset = offsets[k];
    const char c = inner_class(k);
    if (c == 'c') offset = b_.CreateAdd(offset, index);
    if (c == 's') offset = b_.CreateAdd(offset, b_.CreateMul(index, strides_[k][nd - 1]));
    return b_.CreateInBoundsGEP(storage_type(plan_.dtypes[k]), base_[k], offset);
  };
  auto combine = [&](FusedReduceKind kind, Value* acc, Value* value, DType value_dtype,
                     bool reassociate) -> Value* {
    llvm::Type* at = acc->getType();
    if (at->isFloatingPointTy()) {
      value = b_.CreateFPCast(value, at);
      if (kind == FusedReduceKind::max) {
        Value* take = b_.CreateOr(b_.CreateFCmpOGT(value, acc), b_.CreateFCmpUNO(value, value));
        return b_.CreateSelect(take, value, acc);
      }
      Value* sum = b_.CreateFAdd(acc, value);
      // Reassociation lets the vectorizer keep partial sums per lane (a register accumulation
      // only; the results stay within rounding of the sequential order).
      if (auto* inst = llvm::dyn_cast<llvm::Instruction>(sum); inst != nullptr && reassociate) {
        llvm::FastMathFlags flags;
        flags.setAllowReassoc();
        inst->setFastMathFlags(flags);
      }
      return sum;
    }
    value =
        value_dtype == DType::boolean ? b_.CreateZExt(value, at) : b_.CreateSExtOrTrunc(value, at);
    if (kind == FusedReduceKind::max)
      return b_.CreateSelect(b_.CreateICmpSGT(value, acc), value, acc);
    return b_.CreateAdd(acc, value);
  };
  // Per output: elementwise (stored), reduced along the innermost axis (accumulated in a register
  // seeded from its accumulator element, one per output), or reduced elsewhere (each element
  // added to the accumulator element it faces).
  std::vector<int> in_register(nout, -1);
  std::vector<Value*> acc_ptrs, acc_init;

  // Broadcast inputs are loop-invariant: loaded once before the loop.
  std::vector<Value*> hoisted(nin, nullptr);
  for (std::size_t k = 0; k < nin; ++k) {
    if (inner_class(k) == 'b') {
      hoisted[k] = from_storage(plan_.dtypes[k],
                                b_.CreateLoad(storage_type(plan_.dtypes[k]), element(k, nullptr)));
    }
  }
  for (std::size_t o = 0; o < nout; ++o) {
    const auto& reduction = ir_.output_reduction(o);
    if (!reduction || inner_class(nin + o) != 'b') continue;
    in_register[o] = static_cast<int>(acc_ptrs.size());
    acc_ptrs.push_back(element(nin + o, nullptr));
    acc_init.push_back(b_.CreateLoad(storage_type(plan_.dtypes[nin + o]), acc_ptrs.back()));
  }
  llvm::BasicBlock* pre = b_.GetInsertBlock();
  std::vector<llvm::PHINode*> phis;
  std::vector<Value*> finals(acc_ptrs.size(), nullptr);
  Value* lo = nd == 1 ? begin_ : b_.getInt64(0);
  Value* hi = nd == 1 ? end_ : dims_[nd - 1];
  auto* after = llvm::BasicBlock::Create(ctx_, "inner.after", fn_);
  emit_loop(lo, hi, "inner", [&](Value* index) {
    for (Value* init : acc_init) {
      phis.push_back(b_.CreatePHI(init->getType(), 2));
      phis.back()->addIncoming(init, pre);
    }
    std::vector<Value*> values;
    for (const FusedInstr& in : ir_.instrs()) {
      std::vector<Value*> args;
      for (int arg : in.args) args.push_back(values[static_cast<std::size_t>(arg)]);
      switch (in.kind) {
        case FusedOpKind::load: {
          const auto k = static_cast<std::size_t>(in.input);
          values.push_back(hoisted[k] != nullptr
                               ? hoisted[k]
                               : from_storage(in.dtype, b_.CreateLoad(storage_type(in.dtype),
                                                                      element(k, index))));
          break;
        }
        case FusedOpKind::constant:
          values.push_back(emit_constant(in));
          break;
        case FusedOpKind::cast:
          values.push_back(emit_cast(ir_.instrs()[static_cast<std::size_t>(in.args[0])].dtype,
                                     in.dtype, args[0]));
          break;
        case FusedOpKind::scalar: {
          const DType operand =
              ir_.instrs()[static_cast<std::size_t>(in.args[in.op == ScalarOp::where ? 1 : 0])]
                  .dtype;
          values.push_back(round_half(in.dtype, emit_scalar(in.op, operand, args)));
          break;
        }
      }
    }
    for (std::size_t o = 0; o < nout; ++o) {
      const std::size_t k = nin + o;
      const auto v = static_cast<std::size_t>(ir_.output_value(o));
      Value* value = values[v];
      const auto& reduction = ir_.output_reduction(o);
      if (!reduction) {
        b_.CreateStore(to_storage(plan_.dtypes[k], value), element(k, index));
      } else if (in_register[o] >= 0) {
        const auto r = static_cast<std::size_t>(in_register[o]);
        finals[r] = combine(reduction->kind, phis[r], value, ir_.instrs()[v].dtype, true);
      } else {
        Value* ptr = element(k, index);
        Value* acc = b_.CreateLoad(storage_type(plan_.dtypes[k]), ptr);
        b_.CreateStore(combine(reduction->kind, acc, value, ir_.instrs()[v].dtype, false), ptr);
      }
    }
    for (std::size_t r = 0; r < finals.size(); ++r) {
      phis[r]->addIncoming(finals[r], b_.GetInsertBlock());
    }
  });
  // emit_loop leaves the builder in the loop's exit block, reached from the guard (no iteration)
  // or from the latch.
  if (!acc_ptrs.empty()) {
    llvm::BasicBlock* exit = b_.GetInsertBlock();
    std::vector<llvm::PHINode*> results;
    for (std::size_t r = 0; r < acc_ptrs.size(); ++r) {
      results.push_back(b_.CreatePHI(acc_init[r]->getType(), 2));
      for (llvm::BasicBlock* pred : llvm::predecessors(exit)) {
        results.back()->addIncoming(pred == pre ? acc_init[r] : finals[r], pred);
      }
    }
    for (std::size_t r = 0; r < acc_ptrs.size(); ++r) b_.CreateStore(results[r], acc_ptrs[r]);
  }
  b_.CreateBr(after);
  b_.SetInsertPoint(after);
}

void Emitter::emit(const std::string& name) {
  llvm::Type* i64 = b_.getInt64Ty();
  llvm::Type* i8ptr = b_.getInt8PtrTy();
  llvm::Type* i64ptr = llvm::PointerType::getUnqual(i64);
  auto* type = llvm::FunctionType::get(
      b_.getVoidTy(), {llvm::PointerType::getUnqual(i8ptr), i64ptr, i64ptr, i64, i64, i64ptr},
      false);
  fn_ = llvm::Function::Create(type, llvm::Function::ExternalLinkage, name, m_);
  fn_->addFnAttr(llvm::Attribute::NoUnwind);
  auto* entry = llvm::BasicBlock::Create(ctx_, "entry", fn_);
  b_.SetInsertPoint(entry);
  auto arg = fn_->arg_begin();
  Value* data = &*arg++;
  Value* dims = &*arg++;
  Value* strides = &*arg++;
  begin_ = &*arg++;
  end_ = &*arg++;
  Value* status_out = &*arg++;

  status_ = b_.CreateAlloca(i64);
  b_.CreateStore(b_.getInt64(0), status_);
  const std::size_t nd = plan_.dims.size();
  const std::size_t nops = plan_.data.size();
  for (std::size_t a = 0; a < nd; ++a) {
    dims_.push_back(b_.CreateLoad(i64, b_.CreateConstInBoundsGEP1_64(i64, dims, a)));
  }
  strides_.resize(nops);
  std::vector<Value*> offsets(nops, b_.getInt64(0));
  for (std::size_t k = 0; k < nops; ++k) {
    Value* raw = b_.CreateLoad(i8ptr, b_.CreateConstInBoundsGEP1_64(i8ptr, data, k));
    base_.push_back(
        b_.CreateBitCast(raw, llvm::PointerType::getUnqual(storage_type(plan_.dtypes[k]))));
    for (std::size_t a = 0; a < nd; ++a) {
      strides_[k].push_back(
          b_.CreateLoad(i64, b_.CreateConstInBoundsGEP1_64(i64, strides, k * nd + a)));
    }
  }
  emit_level(0, std::move(offsets));

  Value* status = b_.CreateLoad(i64, status_);
  auto* report = llvm::BasicBlock::Create(ctx_, "report", fn_);
  auto* done = llvm::BasicBlock::Create(ctx_, "done", fn_);
  b_.CreateCondBr(b_.CreateICmpNE(status, b_.getInt64(0)), report, done);
  b_.SetInsertPoint(report);
  b_.CreateAtomicRMW(llvm::AtomicRMWInst::Or, status_out, status, llvm::MaybeAlign(8),
                     llvm::AtomicOrdering::Monotonic);
  b_.CreateBr(done);
  b_.SetInsertPoint(done);
  b_.CreateRetVoid();
}

}  // namespace

std::unique_ptr<llvm::Module> emit_fused_module(llvm::LLVMContext& context, const FusedIR& ir,
                                                const LoopPlan& plan,
                                                const std::string& function_name) {
  auto module = std::make_unique<llvm::Module>(function_name, context);
  Emitter(*module, ir, plan).emit(function_name);
  return module;
}

}  // namespace convgraph::codegen
