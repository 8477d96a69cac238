#include "convgraph/optimizer/pass_database_flags.hpp"

#include "convgraph/base/flag_builders.hpp"

namespace convgraph {

void declare_pass_database_flags(std::vector<FlagSpec>& flags) {
  flags.push_back(list_flag("optimizer_including",
                            "Extra passes or tags to enable when compiling (':'-separated)"));
  flags.push_back(list_flag(
      "optimizer_excluding",
      "Passes or tags to disable when compiling (':'-separated); exclusion wins over inclusion"));
  flags.push_back(list_flag(
      "optimizer_requiring",
      "Tags a pass must all carry to run when compiling (':'-separated); others are dropped"));
  flags.push_back(list_flag("optimizer.print_before",
                            "Passes whose input graph is printed before they run (':'-separated)"));
  flags.push_back(list_flag("optimizer.print_after",
                            "Passes whose output graph is printed after they run (':'-separated)"));
  flags.push_back(boolean_flag("optimizer.list_passes", "False",
                               "Print the passes the optimizer flags select when compiling"));
}

}  // namespace convgraph
