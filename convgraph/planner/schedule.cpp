#include "convgraph/planner/schedule.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <queue>
#include <tuple>
#include <unordered_map>

#include "convgraph/base/error.hpp"
#include "convgraph/graph/inplace.hpp"
#include "convgraph/graph/op.hpp"
#include "convgraph/optimizer/inplace_pass.hpp"

namespace convgraph {
namespace {

std::int64_t static_bytes(const TensorType& type) {
  std::int64_t n = 1;
  for (const auto& d : type.dims) n *= d ? std::max<std::int64_t>(*d, 0) : 1;
  return n * static_cast<std::int64_t>(dtype_size(type.dtype));
}

// A buffer and the values that see it (the value that allocated it and views of it).
struct Group {
  std::int64_t bytes = 0;
  int pending = 0;           // reads not yet run, one per (node, distinct value of the group) pair
  bool kept = false;         // never freed: a function input, constant or output sees it
  std::vector<int> readers;  // nodes reading it, unscheduled first (compacted as they run)
};

}  // namespace

std::vector<Node*> schedule_nodes(const FunctionGraph& graph, bool by_memory) {
  const std::vector<Node*>& order = graph.toposort();
  const std::size_t n = order.size();
  std::unordered_map<const Node*, int> index;
  index.reserve(n);
  for (std::size_t i = 0; i < n; ++i) index.emplace(order[i], static_cast<int>(i));

  // Groups of values sharing a buffer; values outside every group (function inputs and
  // constants, and views of them) belong to the kept group 0.
  std::vector<Group> groups(1);
  groups[0].kept = true;
  std::unordered_map<const VariableData*, int> group_of;
  auto group = [&](const Variable& v) {
    auto it = group_of.find(v.get());
    return it != group_of.end() ? it->second : 0;
  };
  std::vector<std::int64_t> allocates(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    Node* node = order[i];
    const auto views = node->op->view_map();
    for (int k = 0; k < node->num_outputs(); ++k) {
      const Variable out = node->output(k);
      int g = -1;
      for (const auto& [o, in] : views) {
        if (o == k) g = group(node->inputs[static_cast<std::size_t>(in)]);
      }
      if (g < 0) {
        g = static_cast<int>(groups.size());
        groups.push_back({static_bytes(out.type()), 0, false, {}});
        allocates[i] += groups.back().bytes;
      }
      group_of[out.get()] = g;
    }
  }
  for (const Variable& out : graph.outputs())
    groups[static_cast<std::size_t>(group(out))].kept = true;

  // Dependencies: producers of the inputs, and for a node writing into an input, every other
  // reader of that input.
  std::vector<std::vector<int>> successors(n);
  std::vector<int> waiting(n, 0);
  auto add_edge = [&](int from, int to) {
    successors[static_cast<std::size_t>(from)].push_back(to);
    ++waiting[static_cast<std::size_t>(to)];
  };
  // The distinct values each node reads, with their groups.
  std::vector<std::vector<const VariableData*>> reads(n);
  for (std::size_t i = 0; i < n; ++i) {
    Node* node = order[i];
    for (const Variable& in : node->inputs) {
      auto& r = reads[i];
      if (std::find(r.begin(), r.end(), in.get()) != r.end()) continue;
      r.push_back(in.get());
      if (in.owner() != nullptr) add_edge(index.at(in.owner()), static_cast<int>(i));
      Group& g = groups[static_cast<std::size_t>(group(in))];
      ++g.pending;
      g.readers.push_back(static_cast<int>(i));
    }
    for (const auto& [k, j] : destroy_map_of(*node->op)) {
      for (Node* reader :
           readers_through_views(graph, node->inputs[static_cast<std::size_t>(j)], node)) {
        add_edge(index.at(reader), static_cast<int>(i));
      }
    }
  }

  std::vector<bool> scheduled(n, false);
  // The bytes node I frees when it runs now, net of what it allocates.
  auto score = [&](int i) -> std::int64_t {
    if (!by_memory) return 0;
    std::int64_t freed = 0;
    const auto& r = reads[static_cast<std::size_t>(i)];
    for (std::size_t a = 0; a < r.size(); ++a) {
      const int g = group_of.count(r[a]) ? group_of.at(r[a]) : 0;
      const Group& grp = groups[static_cast<std::size_t>(g)];
      if (grp.kept) continue;
      // Counted once per group: only at its first value among this node's reads.
      bool first = true;
      int mine = 0;
      for (std::size_t b = 0; b < r.size(); ++b) {
        const int h = group_of.count(r[b]) ? group_of.at(r[b]) : 0;
        if (h != g) continue;
        if (b < a) first = false;
        ++mine;
      }
      if (first && mine == grp.pending) freed += grp.bytes;
    }
    return freed - allocates[static_cast<std::size_t>(i)];
  };
  // Highest score first, then the earliest in toposort().
  using Entry = std::tuple<std::int64_t, int, int>;  // score, -index, index
  std::priority_queue<Entry> ready;
  for (std::size_t i = 0; i < n; ++i) {
    if (waiting[i] == 0)
      ready.emplace(score(static_cast<int>(i)), -static_cast<int>(i), static_cast<int>(i));
  }
  std::vector<Node*> result;
  result.reserve(n);
  while (!ready.empty()) {
    const auto [entry_score, neg, i] = ready.top();
    ready.pop();
    if (scheduled[static_cast<std::size_t>(i)]) continue;
    // Scores only grow as other readers run: a stale entry is pushed again with its score now.
    const std::int64_t now = score(i);
    if (now != entry_score) {
      ready.emplace(now, neg, i);
      continue;
    }
    scheduled[static_cast<std::size_t>(i)] = true;
    result.push_back(order[static_cast<std::size_t>(i)]);
    for (const VariableData* v : reads[static_cast<std::size_t>(i)]) {
      const int g = group_of.count(v) ? group_of.at(v) : 0;
      Group& grp = groups[static_cast<std::size_t>(g)];
      --grp.pending;
      if (!by_memory || grp.kept || grp.pending <= 0 || grp.pending > 4) continue;
      // Few reads left: a ready reader holding all of them now frees the buffer; let it compete
      // with its new score.
      auto& readers = grp.readers;
      readers.erase(std::remove_if(readers.begin(), readers.end(),
                                   [&](int r) { return scheduled[static_cast<std::size_t>(r)]; }),
                    readers.end());
      for (int r : readers) {
        if (waiting[static_cast<std::size_t>(r)] == 0) ready.emplace(score(r), -r, r);
      }
    }
    for (int s : successors[static_cast<std::size_t>(i)]) {
      if (--waiting[static_cast<std::size_t>(s)] == 0) ready.emplace(score(s), -s, s);
    }
  }
  if (result.size() != n) {
    throw ConvGraphError(fmt::format(
        "internal error: the memory schedule placed {} of {} nodes (a cycle through an in-place "
        "node's ordering constraints)",
        result.size(), n));
  }
  return result;
}

}  // namespace convgraph
