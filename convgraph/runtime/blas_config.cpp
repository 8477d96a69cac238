#include "convgraph/runtime/blas_config.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include "convgraph/base/error.hpp"

namespace convgraph {
namespace {

// OpenBLAS's DYNAMIC_ARCH entry points, looked up at run time so that other BLAS builds (or an
// OpenBLAS built for one CPU) simply have no runtime selection.
struct OpenBlasDynamic {
  char* (*get_corename)() = nullptr;
  void (*dynamic_init)() = nullptr;
  void (*dynamic_quit)() = nullptr;
};

const OpenBlasDynamic& openblas() {
  static const OpenBlasDynamic api = [] {
    OpenBlasDynamic a;
    a.get_corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    a.dynamic_init = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    a.dynamic_quit = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
    return a;
  }();
  return api;
}

bool cpu_has_avx512_for_skylakex() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    auto has = [&](const char* flag) {
      return line.find(std::string(" ") + flag) != std::string::npos;
    };
    return has("avx512f") && has("avx512bw") && has("avx512dq") && has("avx512vl");
  }
  return false;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::string blas_corename() {
  const auto& api = openblas();
  if (api.get_corename == nullptr) return "unknown";
  const char* name = api.get_corename();
  return name != nullptr ? std::string(name) : std::string("unknown");
}

std::string configure_blas_coretype(const std::string& coretype) {
  static std::mutex mutex;
  static std::string applied;
  std::lock_guard lock(mutex);
  if (coretype == applied) return blas_corename();
  std::string wanted;
  if (coretype == "auto") {
    if (cpu_has_avx512_for_skylakex()) wanted = "SkylakeX";
  } else if (coretype != "env") {
    wanted = coretype;
  }
  const auto& api = openblas();
  if (!wanted.empty() && lower(blas_corename()) != lower(wanted)) {
    if (api.dynamic_init == nullptr || api.dynamic_quit == nullptr) {
      if (coretype != "auto") {
        throw ValueError(
            fmt::format("blas.coretype={}: this BLAS cannot select kernels at run "
                        "time (it is not an OpenBLAS DYNAMIC_ARCH build)",
                        coretype));
      }
    } else {
      const char* previous = std::getenv("OPENBLAS_CORETYPE");
      const std::string saved = previous != nullptr ? previous : "";
      setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1);
      api.dynamic_quit();
      api.dynamic_init();
      if (previous != nullptr) {
        setenv("OPENBLAS_CORETYPE", saved.c_str(), 1);
      } else {
        unsetenv("OPENBLAS_CORETYPE");
      }
      if (lower(blas_corename()) != lower(wanted) && coretype != "auto") {
        throw ValueError(
            fmt::format("blas.coretype={}: OpenBLAS selected '{}' instead; the name "
                        "is unknown to this OpenBLAS or the CPU lacks its "
                        "instructions",
                        coretype, blas_corename()));
      }
    }
  }
  applied = coretype;
  return blas_corename();
}

}  // namespace convgraph
