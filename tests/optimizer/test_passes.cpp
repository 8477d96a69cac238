#include <algorithm>

#include "convgraph/optimizer/builtin_passes.hpp"
#include "convgraph/optimizer/pass_database.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

std::vector<std::string> selected_names(const std::string& flags,
                                        std::vector<std::string>* warnings = nullptr) {
  Config config;
  if (!flags.empty()) config.apply(flags);
  std::vector<std::string> names;
  for (const PassEntry* e : pass_database().select(config, warnings)) names.push_back(e->name);
  return names;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> op_names(const Function& f) {
  std::vector<std::string> names;
  for (Node* n : f.graph().toposort()) names.push_back(n->op->name());
  return names;
}

PassDatabase small_database() {
  PassDatabase db;
  auto nothing = [](FunctionGraph&, const PassContext&) {};
  db.add({"late", 9, {"fast_run"}, "", nothing});
  db.add({"early", 1, {"fast_run", "fast_compile"}, "", nothing});
  db.add({"optional", 5, {"extra"}, "", nothing});
  db.add({"check", 10, {}, "", nothing, true});
  return db;
}

std::vector<std::string> names_of(const std::vector<const PassEntry*>& entries) {
  std::vector<std::string> names;
  for (const auto* e : entries) names.push_back(e->name);
  return names;
}

}  // namespace

TEST_CASE("passes: selection follows the mode and the including/excluding/requiring flags",
          "[passes]") {
  const PassDatabase db = small_database();
  Config config;
  REQUIRE(names_of(db.select(config)) == std::vector<std::string>{"early", "late", "check"});
  config.apply("mode=FAST_COMPILE");
  REQUIRE(names_of(db.select(config)) == std::vector<std::string>{"early", "check"});
  config = Config();
  config.apply("optimizer_including=extra");
  REQUIRE(names_of(db.select(config)) ==
          std::vector<std::string>{"early", "optional", "late", "check"});
  // Exclusion wins over inclusion and the mode, by tag or by name; `always` passes stay.
  config.apply("optimizer_excluding=extra:late:check");
  REQUIRE(names_of(db.select(config)) == std::vector<std::string>{"early", "check"});
  // Requiring forces a pass in; a name nobody carries, or one also excluded, is an error.
  config = Config();
  config.apply("optimizer_requiring=optional");
  REQUIRE(contains(names_of(db.select(config)), "optional"));
  config.apply("optimizer_requiring=nonexistent");
  REQUIRE_THROWS_AS(db.select(config), FlagError);
  config = Config();
  config.apply("optimizer_requiring=optional,optimizer_excluding=optional");
  REQUIRE_THROWS_AS(db.select(config), FlagError);
  // An unknown tag in including/excluding is a warning listing the known ones.
  config = Config();
  config.apply("optimizer_including=no_such_tag");
  std::vector<std::string> warnings;
  db.select(config, &warnings);
  REQUIRE(warnings.size() == 1);
  REQUIRE(warnings[0].find("no_such_tag") != std::string::npos);
  REQUIRE(warnings[0].find("fast_run") != std::string::npos);
  // Duplicate names are refused.
  PassDatabase dup = small_database();
  REQUIRE_THROWS_AS(dup.add({"early", 3, {}, "", [](FunctionGraph&, const PassContext&) {}}),
                    ValueError);
}

TEST_CASE("passes: the built-in pipeline and its listing", "[passes]") {
  const auto names = selected_names("");
  REQUIRE(contains(names, "merge"));
  REQUIRE(contains(names, "canonicalize"));
  REQUIRE(contains(names, "constant_folding"));
  REQUIRE_FALSE(contains(selected_names("mode=FAST_COMPILE"), "constant_folding"));
  REQUIRE_FALSE(contains(selected_names("optimizer_excluding=canonicalize"), "canonicalize"));
  Config config;
  const std::string table = describe_selected_passes(config);
  REQUIRE(table.find("canonicalize") != std::string::npos);
  REQUIRE(table.find("fold kernel flips") != std::string::npos);
}

TEST_CASE("passes: a kernel flip is folded into filter_flip", "[passes]") {
  Variable x = tensor("x", DType::float64, {2, 3, 7, 7});
  Variable w = tensor("w", DType::float64, {4, 3, 3, 3});
  Variable y = conv2d(x, flip(w, {2, 3}), {.border_mode = "half"});
  Function f = compile({x, w}, {y});
  const auto ops = op_names(f);
  REQUIRE(std::count(ops.begin(), ops.end(), "Flip") == 0);
  REQUIRE(f.graph().toposort().size() == 1);
  // One convolution is left, lowered, and it correlates (the flip was folded away).
  REQUIRE(f.graph().toposort()[0]->op->str() == "CorrMM{border=half, cross}");
  // Same values as the unrewritten graph.
  const Tensor a = testing::random_tensor(DType::float64, {2, 3, 7, 7}, 1);
  const Tensor b = testing::random_tensor(DType::float64, {4, 3, 3, 3}, 2);
  CompileOptions plain;
  plain.flags = "optimizer_excluding=canonicalize";
  REQUIRE_ALLCLOSE(f({a, b})[0], compile({x, w}, {y}, plain)({a, b})[0], 1e-12, 1e-12);
}

TEST_CASE("passes: DimShuffles compose and identities disappear", "[passes]") {
  Variable x = tensor("x", DType::float32, {2, 3, 4});
  Variable t = transpose(transpose(x, {1, 2, 0}), {2, 0, 1});  // back to x
  Variable z = neg(neg(x * 1.0 + 0.0));
  Function f = compile({x}, {t, z});
  REQUIRE(f.graph().num_nodes() == 0);
  const Tensor a = testing::random_tensor(DType::float32, {2, 3, 4}, 3);
  const auto out = f({a});
  REQUIRE(tensor_equal(out[0], a));
  REQUIRE(tensor_equal(out[1], a));
  // A composed pair that is not the identity stays one DimShuffle.
  Function g = compile({x}, {transpose(transpose(x, {1, 0, 2}), {0, 2, 1})});
  REQUIRE(g.graph().num_nodes() == 1);
  REQUIRE(tensor_equal(g({a})[0], a.permute({1, 2, 0}).contiguous()));
}

TEST_CASE("passes: asserts proven by folding are removed", "[passes]") {
  Variable x = tensor("x", DType::float32, {2, 3});
  Variable y = vector("y", DType::float32);
  // shape_i(x, 1) is the constant 3 once built, so this condition folds to true.
  Variable checked_x = assert_op(x, {eq(shape_i(x, 1), shape_i(x, 1))}, "never fails");
  Variable checked_y = assert_op(y, {gt(shape_i(y, 0), constant(0.0, DType::int64))}, "y empty");
  Function f = compile({x, y}, {checked_x, checked_y});
  const auto ops = op_names(f);
  REQUIRE(std::count(ops.begin(), ops.end(), "Assert") == 1);  // only y's remains
  REQUIRE_THROWS_AS(f({Tensor::zeros(DType::float32, {2, 3}), Tensor::zeros(DType::float32, {0})}),
                    AssertionError);
}
