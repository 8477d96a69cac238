// The LLVM back end: target machine for the host CPU, the O3 pipeline, object code, the ORC JIT
// that loads it, and the memory and disk caches in front of them.
#include <fmt/format.h>
#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/SubtargetFeature.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/Host.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>

#include "convgraph/base/config.hpp"
#include "convgraph/base/half.hpp"
#include "convgraph/codegen/interpreter.hpp"
#include "convgraph/codegen/llvm/jit_emit.hpp"
#include "convgraph/codegen/llvm_backend.hpp"
#include "convgraph/codegen/object_cache.hpp"

namespace convgraph::codegen {
namespace {

// Changes whenever the generated code for an unchanged IR would change (the emitter, the
// pipeline, the kernel signature): older cache entries then no longer match.
constexpr int kCodegenKeyVersion = 2;

using KernelFn = void (*)(void* const*, const std::int64_t*, const std::int64_t*, std::int64_t,
                          std::int64_t, std::int64_t*);

std::string llvm_message(llvm::Error error) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << error;
  return os.str();
}

template <typename T>
T take(llvm::Expected<T> value, const std::string& what) {
  if (!value) throw ConvGraphError(fmt::format("{}: {}", what, llvm_message(value.takeError())));
  return std::move(*value);
}

// float16 conversions for CPUs without F16C, where LLVM 14 calls these runtime functions.
std::uint16_t convgraph_f32_to_f16(float v) {
  return Half::from_float_bits(v);
}
float convgraph_f16_to_f32(std::uint16_t h) {
  return Half::to_float(h);
}

class Jit {
 public:
  Jit() {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
    auto builder = take(llvm::orc::JITTargetMachineBuilder::detectHost(), "LLVM host detection");
    cpu_ = llvm::sys::getHostCPUName().str();
    llvm::StringMap<bool> host_features;
    llvm::SubtargetFeatures features;
    std::vector<std::string> names;
    if (llvm::sys::getHostCPUFeatures(host_features)) {
      for (const auto& feature : host_features) {
        features.AddFeature(feature.first(), feature.second);
        if (feature.second) names.push_back(feature.first().str());
      }
    }
    std::sort(names.begin(), names.end());
    features_ = fmt::format("{}", fmt::join(names, ","));
    builder.setCPU(cpu_);
    builder.getFeatures() = features;
    // The IR goes through the O3 pipeline (optimize); for the machine passes the default level
    // gave the same code as the aggressive one for these loops, in less compile time.
    builder.setCodeGenOptLevel(llvm::CodeGenOpt::Default);
    builder.setRelocationModel(llvm::Reloc::PIC_);
    builder.setCodeModel(llvm::CodeModel::Small);
    machine_ = take(builder.createTargetMachine(), "LLVM target machine");
    jit_ = take(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(builder).create(),
                "LLVM ORC JIT");
    llvm::orc::JITDylib& main = jit_->getMainJITDylib();
    const char prefix = jit_->getDataLayout().getGlobalPrefix();
    main.addGenerator(take(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(prefix),
                           "LLVM symbols"));
    llvm::orc::SymbolMap runtime;
    auto define = [&](const char* name, void* address) {
      runtime[jit_->mangleAndIntern(name)] = llvm::JITEvaluatedSymbol(
          llvm::pointerToJITTargetAddress(address), llvm::JITSymbolFlags::Exported);
    };
    define("__gnu_f2h_ieee", reinterpret_cast<void*>(&convgraph_f32_to_f16));
    define("__truncsfhf2", reinterpret_cast<void*>(&convgraph_f32_to_f16));
    define("__gnu_h2f_ieee", reinterpret_cast<void*>(&convgraph_f16_to_f32));
    define("__extendhfsf2", reinterpret_cast<void*>(&convgraph_f16_to_f32));
    if (auto error = main.define(llvm::orc::absoluteSymbols(std::move(runtime)))) {
      throw ConvGraphError("LLVM runtime symbols: " + llvm_message(std::move(error)));
    }
  }

  // The cache key's environment part: what makes the same IR give different code.
  std::string environment() const {
    return fmt::format("convgraph-codegen key {}\nllvm {}\ntriple {}\ncpu {}\nfeatures {}\n",
                       kCodegenKeyVersion, LLVM_VERSION_STRING, machine_->getTargetTriple().str(),
                       cpu_, features_);
  }

  // Object code for IR specialised for PLAN's shape class, as function NAME.
  std::string compile(const FusedIR& ir, const LoopPlan& plan, const std::string& name) {
    if (const std::string injected = injected_codegen_failure(); !injected.empty()) {
      throw ConvGraphError(fmt::format("{}: LLVM failed: {}", ir.label(), injected));
    }
    llvm::LLVMContext context;
    std::unique_ptr<llvm::Module> module = emit_fused_module(context, ir, plan, name);
    module->setDataLayout(machine_->createDataLayout());
    module->setTargetTriple(machine_->getTargetTriple().str());
    std::string problems;
    llvm::raw_string_ostream problem_stream(problems);
    if (llvm::verifyModule(*module, &problem_stream)) {
      throw ConvGraphError(
          fmt::format("{}: LLVM rejected the generated IR: {}", ir.label(), problem_stream.str()));
    }
    optimize(*module);
    llvm::SmallVector<char, 0> buffer;
    llvm::raw_svector_ostream out(buffer);
    llvm::legacy::PassManager codegen;
    if (machine_->addPassesToEmitFile(codegen, out, nullptr, llvm::CGFT_ObjectFile)) {
      throw ConvGraphError(
          fmt::format("{}: LLVM cannot emit object code for {}", ir.label(), cpu_));
    }
    codegen.run(*module);
    ++codegen_counters().llvm_compilations;
    return std::string(buffer.data(), buffer.size());
  }

  // Loads OBJECT into a JITDylib of its own (so that a cleared memory cache can load the same
  // symbol again) and returns function NAME.
  KernelFn load(const FusedIR& ir, const std::string& object, const std::string& name) {
    auto created = jit_->createJITDylib(fmt::format("{}.{}", name, dylibs_++));
    if (!created) {
      throw ConvGraphError(
          fmt::format("{}: LLVM JIT: {}", ir.label(), llvm_message(created.takeError())));
    }
    llvm::orc::JITDylib& dylib = *created;
    dylib.addToLinkOrder(jit_->getMainJITDylib());
    auto buffer = llvm::MemoryBuffer::getMemBufferCopy(object, name);
    if (auto error = jit_->addObjectFile(dylib, std::move(buffer))) {
      throw ConvGraphError(fmt::format("{}: loading its object code: {}", ir.label(),
                                       llvm_message(std::move(error))));
    }
    const auto symbol = take(jit_->lookup(dylib, name), ir.label() + ": linking its object code");
    return reinterpret_cast<KernelFn>(static_cast<std::uintptr_t>(symbol.getAddress()));
  }

  std::mutex mutex;
  std::unordered_map<std::string, KernelFn> memory;  // full key -> loaded function

 private:
  void optimize(llvm::Module& module) {
    llvm::LoopAnalysisManager loops;
    llvm::FunctionAnalysisManager functions;
    llvm::CGSCCAnalysisManager cgscc;
    llvm::ModuleAnalysisManager modules;
    llvm::PipelineTuningOptions tuning;
    tuning.LoopVectorization = true;
    tuning.SLPVectorization = true;
    tuning.LoopUnrolling = true;
    llvm::PassBuilder builder(machine_.get(), tuning);
    builder.registerModuleAnalyses(modules);
    builder.registerCGSCCAnalyses(cgscc);
    builder.registerFunctionAnalyses(functions);
    builder.registerLoopAnalyses(loops);
    builder.crossRegisterProxies(loops, functions, cgscc, modules);
    llvm::ModulePassManager pipeline =
        builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    pipeline.run(module, modules);
  }

  std::string cpu_;
  std::string features_;
  std::unique_ptr<llvm::TargetMachine> machine_;
  std::unique_ptr<llvm::orc::LLJIT> jit_;
  std::int64_t dylibs_ = 0;
};

Jit& jit() {
  static Jit instance;
  return instance;
}

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

class LlvmKernel final : public FusedKernel {
 public:
  using FusedKernel::FusedKernel;
  FusedBackend backend() const override { return FusedBackend::llvm; }

 protected:
  void execute(const LoopPlan& plan, std::int64_t* status) const override {
    const KernelFn fn = function_for(plan);
    if (fn == nullptr) {  // codegen.fallback=interpreter after a failure, logged then
      for_outer_ranges(plan, [&](std::int64_t begin, std::int64_t end, void* const* data) {
        interpret_range(ir(), plan, data, begin, end, status);
      });
      return;
    }
    const std::size_t nd = plan.dims.size();
    std::vector<std::int64_t> strides;
    strides.reserve(plan.strides.size() * nd);
    for (const auto& s : plan.strides) strides.insert(strides.end(), s.begin(), s.end());
    for_outer_ranges(plan, [&](std::int64_t begin, std::int64_t end, void* const* data) {
      fn(data, plan.dims.data(), strides.data(), begin, end, status);
    });
  }

 private:
  KernelFn function_for(const LoopPlan& plan) const {
    const std::string signature = plan.signature();
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = variants_.find(signature); it != variants_.end()) return it->second;
    KernelFn fn = nullptr;
    try {
      fn = generate(plan, signature);
    } catch (const ConvGraphError& e) {
      if (global_config().get("codegen.fallback") != "interpreter") throw;
      std::fprintf(stderr,
                   "convgraph: warning: %s; codegen.fallback=interpreter: this kernel runs on the "
                   "interpreter\n",
                   e.what());
    }
    variants_[signature] = fn;
    return fn;
  }

  KernelFn generate(const LoopPlan& plan, const std::string& signature) const {
    Jit& engine = jit();
    const std::string key = engine.environment() + "variant " + signature + "\n" + ir().to_string();
    const std::string name = fmt::format("convgraph_fused_{:016x}", fnv1a(key));
    std::lock_guard<std::mutex> lock(engine.mutex);
    if (auto it = engine.memory.find(key); it != engine.memory.end()) {
      ++codegen_counters().memory_hits;
      return it->second;
    }
    struct CountTime {
      std::chrono::steady_clock::time_point since;
      ~CountTime() {
        codegen_counters().generation_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - since)
                                                .count();
      }
    } count_time{std::chrono::steady_clock::now()};
    const ObjectCacheOptions cache = object_cache_options();
    const bool use_disk = cache.enabled && !cache.dir.empty();
    std::optional<std::string> object;
    if (use_disk) object = read_cached_object(cache.dir, key);
    KernelFn fn = nullptr;
    if (object) {
      try {
        fn = engine.load(ir(), *object, name);
        ++codegen_counters().disk_hits;
      } catch (const ConvGraphError& e) {
        // An entry whose key matches but whose object does not load: generated again below.
        ++codegen_counters().rejected_entries;
        std::fprintf(stderr,
                     "convgraph: warning: generated-code cache entry %s is ignored (%s); the "
                     "code is generated again\n",
                     object_cache_path(cache.dir, key).c_str(), e.what());
      }
    }
    if (fn == nullptr) {
      const std::string generated = engine.compile(ir(), plan, name);
      fn = engine.load(ir(), generated, name);
      if (use_disk) write_cached_object(cache.dir, key, generated);
    }
    engine.memory[key] = fn;
    return fn;
  }

  mutable std::mutex mutex_;
  mutable std::map<std::string, KernelFn> variants_;  // LoopPlan::signature -> function
};

}  // namespace

std::shared_ptr<const FusedKernel> make_llvm_kernel(const FusedIR& ir) {
  return std::make_shared<LlvmKernel>(ir);
}

void clear_llvm_memory_cache() {
  Jit& engine = jit();
  std::lock_guard<std::mutex> lock(engine.mutex);
  engine.memory.clear();
}

}  // namespace convgraph::codegen
