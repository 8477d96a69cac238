#include "convgraph/base/flag_builders.hpp"

#include <fmt/format.h>

#include <utility>

namespace convgraph {
namespace {

// "convgraph/optimizer/compile_flags.cpp:24": the path from the source tree's convgraph/ folder
// on (the compiler may have been given an absolute path, or one relative to the build folder).
std::string declaration_site(const std::source_location& where) {
  std::string_view file = where.file_name();
  constexpr std::string_view kRoot = "convgraph/";
  std::size_t from = std::string_view::npos;
  while (true) {
    const std::size_t at = file.rfind(kRoot, from);
    if (at == std::string_view::npos) break;
    if (at == 0 || file[at - 1] == '/') {  // a whole folder name, not "libconvgraph/"
      file.remove_prefix(at);
      break;
    }
    from = at - 1;
  }
  return fmt::format("{}:{}", file, where.line());
}

FlagSpec base_spec(std::string name, FlagKind kind, std::string doc,
                   const std::source_location& where) {
  FlagSpec spec;
  spec.name = std::move(name);
  spec.kind = kind;
  spec.doc = std::move(doc);
  spec.declared_in = declaration_site(where);
  return spec;
}

}  // namespace

FlagSpec boolean_flag(std::string name, std::string default_value, std::string doc,
                      std::source_location where) {
  FlagSpec spec = base_spec(std::move(name), FlagKind::boolean, std::move(doc), where);
  spec.default_value = std::move(default_value);
  return spec;
}

FlagSpec integer_flag(std::string name, std::int64_t default_value, std::int64_t min_value,
                      std::int64_t max_value, std::string doc, std::source_location where) {
  FlagSpec spec = base_spec(std::move(name), FlagKind::integer, std::move(doc), where);
  spec.default_value = std::to_string(default_value);
  spec.min_value = min_value;
  spec.max_value = max_value;
  return spec;
}

FlagSpec choice_flag(std::string name, std::string default_value, std::vector<std::string> choices,
                     std::string doc, std::source_location where) {
  FlagSpec spec = base_spec(std::move(name), FlagKind::choice, std::move(doc), where);
  spec.default_value = std::move(default_value);
  spec.choices = std::move(choices);
  return spec;
}

FlagSpec list_flag(std::string name, std::string doc, std::source_location where) {
  return base_spec(std::move(name), FlagKind::list, std::move(doc), where);
}

FlagSpec string_flag(std::string name, std::string default_value, std::string doc,
                     bool (*check)(std::string_view), std::string accepted,
                     std::source_location where) {
  FlagSpec spec = base_spec(std::move(name), FlagKind::string, std::move(doc), where);
  spec.default_value = std::move(default_value);
  spec.check = check;
  spec.accepted = std::move(accepted);
  return spec;
}

FlagSpec deprecated_flag(std::string name, std::string replaced_by, std::source_location where) {
  FlagSpec spec =
      base_spec(std::move(name), FlagKind::string,
                fmt::format("Deprecated and without effect: use {} instead", replaced_by), where);
  spec.replaced_by = std::move(replaced_by);
  spec.accepted = "empty (deprecated)";
  return spec;
}

}  // namespace convgraph
