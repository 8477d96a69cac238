// The pass database: every graph pass with its name, position and tags, and the one rule that
// decides from the flags which passes run.
//
// Selection (as in the original, with TVM's "required" meaning for optimizer_requiring):
//   - a pass is *wanted* when one of its tags (its own name counts as a tag) is in the mode's tag
//     set (FAST_RUN and DebugMode: fast_run; FAST_COMPILE: fast_compile) or in
//     optimizer_including, or when it is marked `always`;
//   - a wanted pass is dropped when one of its tags is in optimizer_excluding (exclusion wins,
//     except over `always` passes, which cannot be excluded);
//   - every name in optimizer_requiring must be carried by some pass (else FlagError); passes
//     carrying it run even when the mode does not want them, and requiring something that is
//     also excluded is a FlagError;
//   - a tag in including or excluding that no pass carries is a warning listing the known tags.
// Selected passes run in order of position, then registration order.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "convgraph/base/config.hpp"
#include "convgraph/graph/function_graph.hpp"

namespace convgraph {

// What a pass sees while it runs, besides the graph.
struct PassContext {
  const Config& config;
  // Why each lowering candidate declined each node it was offered, for the "no implementation
  // left" error: node -> "pass: reason" lines.
  std::map<const Node*, std::vector<std::string>>* declines = nullptr;

  void decline(const Node& node, const std::string& pass, const std::string& reason) const {
    if (declines != nullptr) (*declines)[&node].push_back(pass + ": " + reason);
  }
};

// A pass over the whole graph.
using GraphPass = std::function<void(FunctionGraph&, const PassContext&)>;

// A local rewrite: replacements for NODE's outputs (one per output), or an empty vector when it
// does not apply. It may call ctx.decline() to say why.
using LocalRewrite = std::function<std::vector<Variable>(Node&, const PassContext&)>;

struct PassEntry {
  std::string name;
  double position = 0;
  std::vector<std::string> tags;
  std::string description;
  GraphPass run;
  bool always = false;  // runs whatever the flags say

  bool has_tag(const std::string& tag) const;
};

class PassDatabase {
 public:
  // Adds a pass; a duplicate name is a ValueError.
  void add(PassEntry entry);
  // Every pass, in run order.
  const std::vector<PassEntry>& entries() const { return entries_; }
  // The passes the flags of CONFIG select, in run order (see the rules above). Warnings about
  // unknown including/excluding tags are appended to WARNINGS when given.
  std::vector<const PassEntry*> select(const Config& config,
                                       std::vector<std::string>* warnings = nullptr) const;
  // Every tag and name any pass carries.
  std::set<std::string> known_tags() const;
  const PassEntry* find(const std::string& name) const;

 private:
  std::vector<PassEntry> entries_;
};

// The built-in passes, registered once on first use.
const PassDatabase& pass_database();

// A table of the passes the flags select: position, name, tags, description.
std::string describe_selected_passes(const Config& config);

// A pass that applies REWRITES to every node, repeatedly, until none applies any more (at most
// MAX_ROUNDS sweeps over the graph).
GraphPass equilibrium(std::vector<std::pair<std::string, LocalRewrite>> rewrites,
                      int max_rounds = 50);

// Runs the selected passes on GRAPH. optimizer.print_before / optimizer.print_after print the
// graph (to stderr) around the passes they name; optimizer.list_passes prints the selection.
void optimize(FunctionGraph& graph, const Config& config);

}  // namespace convgraph
