#include "convgraph/optimizer/pass_database.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "convgraph/graph/op.hpp"
#include "convgraph/graph/printing.hpp"
#include "convgraph/optimizer/builtin_passes.hpp"

namespace convgraph {

bool PassEntry::has_tag(const std::string& tag) const {
  return name == tag || std::find(tags.begin(), tags.end(), tag) != tags.end();
}

void PassDatabase::add(PassEntry entry) {
  if (find(entry.name) != nullptr) {
    throw ValueError(
        fmt::format("pass database: a pass named '{}' is already registered", entry.name));
  }
  // Keep run order: by position, ties in registration order.
  auto pos = std::upper_bound(entries_.begin(), entries_.end(), entry.position,
                              [](double p, const PassEntry& e) { return p < e.position; });
  entries_.insert(pos, std::move(entry));
}

const PassEntry* PassDatabase::find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::set<std::string> PassDatabase::known_tags() const {
  std::set<std::string> tags;
  for (const auto& e : entries_) {
    tags.insert(e.name);
    tags.insert(e.tags.begin(), e.tags.end());
  }
  return tags;
}

std::vector<const PassEntry*> PassDatabase::select(const Config& config,
                                                   std::vector<std::string>* warnings) const {
  const std::string mode = config.get("mode");
  const std::string mode_tag = mode == "FAST_COMPILE" ? "fast_compile" : "fast_run";
  const auto including = config.get_list("optimizer_including");
  const auto excluding = config.get_list("optimizer_excluding");
  const auto requiring = config.get_list("optimizer_requiring");
  const std::set<std::string> known = known_tags();

  for (const auto& r : requiring) {
    if (!known.count(r)) {
      throw FlagError(fmt::format(
          "optimizer_requiring names '{}', which no pass carries; known passes and tags: {}", r,
          fmt::join(known, ", ")));
    }
    if (std::find(excluding.begin(), excluding.end(), r) != excluding.end()) {
      throw FlagError(
          fmt::format("'{}' is both required (optimizer_requiring) and excluded "
                      "(optimizer_excluding)",
                      r));
    }
  }
  if (warnings != nullptr) {
    for (const auto* list : {&including, &excluding}) {
      for (const auto& t : *list) {
        if (!known.count(t)) {
          warnings->push_back(
              fmt::format("{} names '{}', which no pass carries; known passes and tags: {}",
                          list == &including ? "optimizer_including" : "optimizer_excluding", t,
                          fmt::join(known, ", ")));
        }
      }
    }
  }

  auto any_of = [](const PassEntry& e, const std::vector<std::string>& tags) {
    return std::any_of(tags.begin(), tags.end(),
                       [&](const std::string& t) { return e.has_tag(t); });
  };
  std::vector<const PassEntry*> selected;
  for (const auto& e : entries_) {
    if (e.always) {
      selected.push_back(&e);
      continue;
    }
    const bool required = any_of(e, requiring);
    const bool wanted = e.has_tag(mode_tag) || any_of(e, including) || required;
    if (!wanted) continue;
    if (!required && any_of(e, excluding)) continue;
    selected.push_back(&e);
  }
  return selected;
}

const PassDatabase& pass_database() {
  static const PassDatabase db = [] {
    PassDatabase d;
    register_builtin_passes(d);
    return d;
  }();
  return db;
}

std::string describe_selected_passes(const Config& config) {
  std::vector<std::string> warnings;
  const auto selected = pass_database().select(config, &warnings);
  std::string out = fmt::format("{:>8}  {:<28} {}\n", "position", "pass", "tags");
  for (const PassEntry* e : selected) {
    out += fmt::format("{:>8g}  {:<28} {}{}\n", e->position, e->name, fmt::join(e->tags, ", "),
                       e->always ? " (always)" : "");
    out += fmt::format("{:>8}  {:<28} {}\n", "", "", e->description);
  }
  for (const auto& w : warnings) out += "warning: " + w + "\n";
  return out;
}

GraphPass equilibrium(std::vector<std::pair<std::string, LocalRewrite>> rewrites, int max_rounds) {
  return
      [rewrites = std::move(rewrites), max_rounds](FunctionGraph& graph, const PassContext& ctx) {
        for (int round = 0; round < max_rounds; ++round) {
          bool changed = false;
          const std::vector<Node*> order = graph.toposort();
          for (Node* node : order) {
            if (!graph.contains(node)) continue;
            for (const auto& [name, rewrite] : rewrites) {
              std::shared_ptr<Node> keep = node->shared_from_this();
              std::vector<Variable> replacements = rewrite(*node, ctx);
              if (replacements.empty()) continue;
              if (replacements.size() != static_cast<std::size_t>(node->num_outputs())) {
                throw ConvGraphError(
                    fmt::format("internal error: rewrite {} returned {} variables "
                                "for {} outputs of {}",
                                name, replacements.size(), node->num_outputs(), node->op->str()));
              }
              for (int k = 0; k < node->num_outputs(); ++k) {
                graph.replace(keep->output(k), replacements[static_cast<std::size_t>(k)], name);
              }
              changed = true;
              break;  // the node is gone; later rewrites see its replacement next round
            }
          }
          if (!changed) return;
        }
      };
}

void optimize(FunctionGraph& graph, const Config& config) {
  std::vector<std::string> warnings;
  const auto selected = pass_database().select(config, &warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "convgraph: warning: %s\n", w.c_str());
  if (config.get_bool("optimizer.list_passes")) {
    std::fprintf(stderr, "convgraph: passes selected:\n%s",
                 describe_selected_passes(config).c_str());
  }
  const auto before = config.get_list("optimizer.print_before");
  const auto after = config.get_list("optimizer.print_after");
  auto named_in = [](const PassEntry& e, const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), e.name) != names.end();
  };
  std::map<const Node*, std::vector<std::string>> declines;
  const PassContext ctx{config, &declines};
  for (const PassEntry* pass : selected) {
    if (named_in(*pass, before)) {
      std::fprintf(stderr, "convgraph: graph before pass %s:\n%s", pass->name.c_str(),
                   debugprint(graph).c_str());
    }
    pass->run(graph, ctx);
    if (named_in(*pass, after)) {
      std::fprintf(stderr, "convgraph: graph after pass %s:\n%s", pass->name.c_str(),
                   debugprint(graph).c_str());
    }
  }
}

}  // namespace convgraph
