// The flags of the pass database: which passes a compile selects, and what it prints about them.
#pragma once

#include <vector>

#include "convgraph/base/config.hpp"

namespace convgraph {

// Appends optimizer_including, optimizer_excluding, optimizer_requiring, optimizer.print_before,
// optimizer.print_after and optimizer.list_passes to FLAGS, in display order.
void declare_pass_database_flags(std::vector<FlagSpec>& flags);

}  // namespace convgraph
