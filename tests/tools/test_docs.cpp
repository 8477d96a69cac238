// The documentation checked against the code it describes, so that the two cannot drift apart.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "convgraph/optimizer/pass_database.hpp"
#include "support/catch.hpp"

using namespace convgraph;

namespace {

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream file(path);
  INFO(path.string());
  REQUIRE(file.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  return lines;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

// The cells of a Markdown table row "| a | b | c |".
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string inner = trim(row);
  if (inner.size() < 2 || inner.front() != '|' || inner.back() != '|') return out;
  inner = inner.substr(1, inner.size() - 2);
  std::stringstream stream(inner);
  for (std::string cell; std::getline(stream, cell, '|');) out.push_back(trim(cell));
  return out;
}

std::string unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') {
    return cell.substr(1, cell.size() - 2);
  }
  return cell;
}

std::set<std::string> tag_set(const std::string& cell) {
  std::set<std::string> tags;
  std::stringstream stream(cell);
  for (std::string tag; std::getline(stream, tag, ',');) {
    if (!trim(tag).empty()) tags.insert(trim(tag));
  }
  return tags;
}

std::string joined(const std::set<std::string>& tags) {
  std::string out;
  for (const std::string& tag : tags) out += (out.empty() ? "" : ", ") + tag;
  return out;
}

struct PassRow {
  std::string position, name;
  std::set<std::string> tags;
};

// The rows of the pass table of docs/optimizer.md (the table whose header begins
// "| position | pass | tags |").
std::vector<PassRow> documented_passes() {
  const auto lines = read_lines(std::filesystem::path(CONVGRAPH_SOURCE_DIR) / "docs/optimizer.md");
  const auto header = std::find_if(lines.begin(), lines.end(), [](const std::string& line) {
    const auto c = cells(line);
    return c.size() >= 3 && c[0] == "position" && c[1] == "pass" && c[2] == "tags";
  });
  REQUIRE(header != lines.end());
  std::vector<PassRow> rows;
  for (auto it = header + 2; it != lines.end(); ++it) {
    const auto c = cells(*it);
    if (c.size() < 3) break;
    rows.push_back({c[0], unquote(c[1]), tag_set(c[2])});
  }
  return rows;
}

// Positions as the table writes them: 20, or 2.5.
std::string position_text(double position) {
  std::ostringstream out;
  out << position;
  return out.str();
}

}  // namespace

TEST_CASE("docs: the pass table of docs/optimizer.md is the registered passes, in run order",
          "[docs]") {
  // The database compile() selects from.
  const std::vector<PassEntry>& registered = pass_database().entries();
  const std::vector<PassRow> documented = documented_passes();
  std::string expected_table;
  for (const PassEntry& entry : registered) {
    expected_table += "| " + position_text(entry.position) + " | `" + entry.name + "` | " +
                      joined(std::set<std::string>(entry.tags.begin(), entry.tags.end())) +
                      " | ... |\n";
  }
  INFO("the registered passes, as the table should list them:\n" << expected_table);
  for (std::size_t i = 0; i < std::max(registered.size(), documented.size()); ++i) {
    INFO("row " << i + 1 << " of the table");
    REQUIRE(i < registered.size());
    REQUIRE(i < documented.size());
    const PassEntry& entry = registered[i];
    const PassRow& row = documented[i];
    CHECK(row.name == entry.name);
    CHECK(row.position == position_text(entry.position));
    CHECK(row.tags == std::set<std::string>(entry.tags.begin(), entry.tags.end()));
  }
}
