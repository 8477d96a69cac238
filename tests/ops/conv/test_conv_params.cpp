// ConvParams and its normaliser: every accepted form
// of border_mode in 2-D and 3-D, one test per rejected form or condition (the exception type and
// a message naming the parameter and the value), equality / hash / str() of ConvParams, and
// conv_flops (defined for 2-D, 3-D, grouped and unshared convolutions).
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "convgraph/ops/conv/abstract_conv.hpp"
#include "convgraph/ops/conv/conv_params.hpp"
#include "support/catch.hpp"
#include "support/test_util.hpp"

using namespace convgraph;

namespace {

using Borders = std::vector<AxisBorder>;
using Pair = std::pair<std::int64_t, std::int64_t>;

// The message of the exception of type E thrown by F; "no exception" or "wrong type: ..." when
// F does something else (so that a check on the message fails with a readable INFO).
template <typename E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Borders all(std::size_t n, AxisBorder b) {
  return Borders(n, b);
}

}  // namespace

// ---- accepted border modes ----

TEST_CASE("conv params: the string border modes in 2-D and 3-D", "[conv-params]") {
  for (int convdim : {2, 3}) {
    INFO("convdim " << convdim);
    const auto n = static_cast<std::size_t>(convdim);
    REQUIRE(BorderMode("valid").normalize(convdim) == all(n, AxisBorder::valid()));
    REQUIRE(BorderMode("full").normalize(convdim) == all(n, AxisBorder::full()));
    REQUIRE(BorderMode("half").normalize(convdim) == all(n, AxisBorder::half()));
    REQUIRE(BorderMode(std::string("half")).normalize(convdim) == all(n, AxisBorder::half()));
    REQUIRE(BorderMode().normalize(convdim) == all(n, AxisBorder::valid()));
    const ConvParams p = make_conv_params(convdim, "full");
    REQUIRE(p.border == all(n, AxisBorder::full()));
    REQUIRE_FALSE(p.all_valid());
    REQUIRE(make_conv_params(convdim, "valid").all_valid());
  }
}

TEST_CASE("conv params: an int border mode pads every axis; 0 is 'valid'", "[conv-params]") {
  for (int convdim : {2, 3}) {
    INFO("convdim " << convdim);
    const auto n = static_cast<std::size_t>(convdim);
    REQUIRE(BorderMode(0).normalize(convdim) == all(n, AxisBorder::valid()));
    REQUIRE(BorderMode(std::int64_t{0}).normalize(convdim) == all(n, AxisBorder::valid()));
    REQUIRE(BorderMode(2).normalize(convdim) == all(n, AxisBorder::pads(2, 2)));
    REQUIRE(BorderMode(std::int64_t{7}).normalize(convdim) == all(n, AxisBorder::pads(7, 7)));
    REQUIRE(make_conv_params(convdim, 0) == make_conv_params(convdim, "valid"));
    REQUIRE(make_conv_params(convdim, 0).all_valid());
  }
}

TEST_CASE("conv params: one int per axis", "[conv-params]") {
  REQUIRE(BorderMode({1, 2}).normalize(2) ==
          Borders{AxisBorder::pads(1, 1), AxisBorder::pads(2, 2)});
  REQUIRE(BorderMode({3, 0, 1}).normalize(3) ==
          Borders{AxisBorder::pads(3, 3), AxisBorder::pads(0, 0), AxisBorder::pads(1, 1)});
  // A symmetric tuple with some non-zero entry stays per-axis pads (not collapsed to an int).
  REQUIRE(BorderMode({0, 1}).normalize(2) ==
          Borders{AxisBorder::pads(0, 0), AxisBorder::pads(1, 1)});
  REQUIRE(BorderMode({2, 2}).normalize(2) == BorderMode(2).normalize(2));
  REQUIRE(
      BorderMode(std::vector<BorderMode::Entry>{std::int64_t{4}, std::int64_t{5}}).normalize(2) ==
      Borders{AxisBorder::pads(4, 4), AxisBorder::pads(5, 5)});
}

TEST_CASE("conv params: an all-zero tuple is 'valid'", "[conv-params]") {
  REQUIRE(BorderMode({0, 0}).normalize(2) == all(2, AxisBorder::valid()));
  REQUIRE(BorderMode({0, 0, 0}).normalize(3) == all(3, AxisBorder::valid()));
  REQUIRE(BorderMode::pairs({{0, 0}, {0, 0}}).normalize(2) == all(2, AxisBorder::valid()));
  REQUIRE(BorderMode({BorderMode::Entry(std::int64_t{0}), BorderMode::Entry(Pair{0, 0})})
              .normalize(2) == all(2, AxisBorder::valid()));
  REQUIRE(make_conv_params(3, {0, 0, 0}).all_valid());
  REQUIRE(make_conv_params(2, BorderMode::pairs({{0, 0}, {0, 0}})) == make_conv_params(2, "valid"));
}

TEST_CASE("conv params: equal pairs collapse to symmetric int pads", "[conv-params]") {
  const Borders from_pairs = BorderMode::pairs({{1, 1}, {2, 2}}).normalize(2);
  REQUIRE(from_pairs == BorderMode({1, 2}).normalize(2));
  REQUIRE(from_pairs[0].symmetric());
  REQUIRE(from_pairs[1].symmetric());
  const ConvParams a = make_conv_params(2, BorderMode::pairs({{1, 1}, {1, 1}}));
  const ConvParams b = make_conv_params(2, 1);
  const ConvParams c = make_conv_params(2, {1, 1});
  REQUIRE(a == b);
  REQUIRE(b == c);
  REQUIRE(a.hash() == b.hash());
  REQUIRE(a.str() == b.str());
  REQUIRE_FALSE(a.any_asymmetric());
}

TEST_CASE("conv params: asymmetric pairs in 2-D", "[conv-params]") {
  const Borders b = BorderMode::pairs({{1, 2}, {0, 3}}).normalize(2);
  REQUIRE(b == Borders{AxisBorder::pads(1, 2), AxisBorder::pads(0, 3)});
  REQUIRE_FALSE(b[0].symmetric());
  // A pair and an int mixed.
  const Borders mixed =
      BorderMode({BorderMode::Entry(Pair{2, 0}), BorderMode::Entry(std::int64_t{3})}).normalize(2);
  REQUIRE(mixed == Borders{AxisBorder::pads(2, 0), AxisBorder::pads(3, 3)});
  const ConvParams p = make_conv_params(2, BorderMode::pairs({{1, 2}, {0, 3}}));
  REQUIRE(p.any_asymmetric());
  REQUIRE_FALSE(p.all_valid());
  // (0, 1) is not all zero: kept.
  REQUIRE(BorderMode::pairs({{0, 1}, {0, 0}}).normalize(2) ==
          Borders{AxisBorder::pads(0, 1), AxisBorder::pads(0, 0)});
}

TEST_CASE("conv params: defaults and accepted hints", "[conv-params]") {
  const ConvParams p2 = make_conv_params(2, "valid");
  REQUIRE(p2.convdim == 2);
  REQUIRE(p2.subsample == std::vector<std::int64_t>{1, 1});
  REQUIRE(p2.dilation == std::vector<std::int64_t>{1, 1});
  REQUIRE(p2.filter_flip);
  REQUIRE(p2.num_groups == 1);
  REQUIRE_FALSE(p2.unshared);
  REQUIRE(p2.imshp == StaticShape(4));
  REQUIRE(p2.kshp == StaticShape(4));
  REQUIRE(p2.image_rank() == 4);
  REQUIRE(p2.kernel_rank() == 4);
  REQUIRE_FALSE(p2.strided());
  REQUIRE_FALSE(p2.dilated());

  const ConvParams p3 = make_conv_params(3, "half", {1, 2, 1}, false, {1, 1, 3}, 4);
  REQUIRE(p3.subsample == std::vector<std::int64_t>{1, 2, 1});
  REQUIRE(p3.dilation == std::vector<std::int64_t>{1, 1, 3});
  REQUIRE_FALSE(p3.filter_flip);
  REQUIRE(p3.num_groups == 4);
  REQUIRE(p3.imshp == StaticShape(5));
  REQUIRE(p3.kshp == StaticShape(5));
  REQUIRE(p3.kernel_rank() == 5);
  REQUIRE(p3.strided());
  REQUIRE(p3.dilated());

  const ConvParams u = make_conv_params(2, "valid", {}, true, {}, 1, true);
  REQUIRE(u.unshared);
  REQUIRE(u.kshp == StaticShape(6));
  REQUIRE(u.kernel_rank() == 6);

  const StaticShape imshp{std::nullopt, 3, 32, std::nullopt};
  const StaticShape kshp{16, 3, 0, 5};  // zero entries are allowed in hints
  const ConvParams h = make_conv_params(2, "valid", {}, true, {}, 1, false, imshp, kshp);
  REQUIRE(h.imshp == imshp);
  REQUIRE(h.kshp == kshp);
}

// ---- rejected forms: one test each ----

TEST_CASE("conv params: a bad border_mode string is a ValueError", "[conv-params]") {
  for (const char* bad : {"same", "Valid", ""}) {
    const std::string m = error_of<ValueError>([&] { make_conv_params(2, bad); });
    INFO(m);
    CHECK(has(m, "border_mode"));
    CHECK(has(m, std::string("'") + bad + "'"));
  }
  const std::string m3 = error_of<ValueError>([] { BorderMode("halff").normalize(3); });
  INFO(m3);
  CHECK(has(m3, "border_mode"));
  CHECK(has(m3, "halff"));
}

TEST_CASE("conv params: a negative int border_mode is a ValueError", "[conv-params]") {
  for (int convdim : {2, 3}) {
    const std::string m = error_of<ValueError>([&] { make_conv_params(convdim, -1); });
    INFO(m);
    CHECK(has(m, "border_mode"));
    CHECK(has(m, "-1"));
  }
}

TEST_CASE("conv params: a border_mode tuple of the wrong length is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, {1, 2, 3}); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(1, 2, 3)"));
  m = error_of<ValueError>([] { make_conv_params(3, {4, 5}); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(4, 5)"));
  m = error_of<ValueError>([] { BorderMode::pairs({{1, 2}}).normalize(2); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "((1, 2))"));
}

TEST_CASE("conv params: a negative border_mode entry is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, {1, -2}); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(1, -2)"));
  m = error_of<ValueError>([] { make_conv_params(3, {0, 0, -3}); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "-3"));
}

TEST_CASE("conv params: a negative member of a border_mode pair is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] {
    make_conv_params(2, BorderMode::pairs({{1, -1}, {0, 0}}));
  });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(1, -1)"));
  m = error_of<ValueError>([] { make_conv_params(2, BorderMode::pairs({{0, 0}, {-4, 2}})); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(-4, 2)"));
}

TEST_CASE("conv params: a border_mode pair in 3-D is an UnsupportedError", "[conv-params]") {
  const std::vector<BorderMode::Entry> asym{Pair{1, 2}, std::int64_t{0}, std::int64_t{0}};
  std::string m = error_of<UnsupportedError>([&] { make_conv_params(3, asym); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(1, 2)"));
  CHECK(has(m, "3"));
  // Even an equal pair: pairs exist only in 2-D.
  const std::vector<BorderMode::Entry> equal{std::int64_t{0}, Pair{1, 1}, std::int64_t{0}};
  m = error_of<UnsupportedError>([&] { make_conv_params(3, equal); });
  INFO(m);
  CHECK(has(m, "border_mode"));
  CHECK(has(m, "(1, 1)"));
}

TEST_CASE("conv params: convdim other than 2 or 3 is a ValueError", "[conv-params]") {
  for (int convdim : {1, 4, 0}) {
    const std::string m = error_of<ValueError>([&] { make_conv_params(convdim, "valid"); });
    INFO(m);
    CHECK(has(m, "dimension"));
    CHECK(has(m, std::to_string(convdim)));
  }
}

TEST_CASE("conv params: subsample of the wrong length is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, "valid", {1, 1, 1}); });
  INFO(m);
  CHECK(has(m, "subsample"));
  CHECK(has(m, "(1, 1, 1)"));
  m = error_of<ValueError>([] { make_conv_params(3, "valid", {2, 3}); });
  INFO(m);
  CHECK(has(m, "subsample"));
  CHECK(has(m, "(2, 3)"));
}

TEST_CASE("conv params: filter_dilation of the wrong length is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, "valid", {}, true, {2, 3, 4}); });
  INFO(m);
  CHECK(has(m, "dilation"));
  CHECK(has(m, "(2, 3, 4)"));
  m = error_of<ValueError>([] { make_conv_params(3, "valid", {}, true, {5, 6}); });
  INFO(m);
  CHECK(has(m, "dilation"));
  CHECK(has(m, "(5, 6)"));
}

TEST_CASE("conv params: a zero or negative subsample is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, "valid", {1, 0}); });
  INFO(m);
  CHECK(has(m, "subsample"));
  CHECK(has(m, "(1, 0)"));
  m = error_of<ValueError>([] { make_conv_params(3, "full", {2, -1, 1}); });
  INFO(m);
  CHECK(has(m, "subsample"));
  CHECK(has(m, "(2, -1, 1)"));
}

TEST_CASE("conv params: a zero or negative dilation is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] { make_conv_params(2, "valid", {}, true, {0, 1}); });
  INFO(m);
  CHECK(has(m, "dilation"));
  CHECK(has(m, "(0, 1)"));
  m = error_of<ValueError>([] { make_conv_params(3, "half", {}, true, {1, 1, -2}); });
  INFO(m);
  CHECK(has(m, "dilation"));
  CHECK(has(m, "(1, 1, -2)"));
}

TEST_CASE("conv params: num_groups below 1 is a ValueError", "[conv-params]") {
  for (std::int64_t g : {0, -3}) {
    const std::string m =
        error_of<ValueError>([&] { make_conv_params(2, "valid", {}, true, {}, g); });
    INFO(m);
    CHECK(has(m, "num_groups"));
    CHECK(has(m, std::to_string(g)));
  }
}

TEST_CASE("conv params: unshared in 3-D is an UnsupportedError", "[conv-params]") {
  const std::string m =
      error_of<UnsupportedError>([] { make_conv_params(3, "valid", {}, true, {}, 1, true); });
  INFO(m);
  CHECK(has(m, "unshared"));
  CHECK(has(m, "3"));
}

TEST_CASE("conv params: imshp of the wrong length is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] {
    make_conv_params(2, "valid", {}, true, {}, 1, false, {1, 2, 3});
  });
  INFO(m);
  CHECK(has(m, "imshp"));
  CHECK(has(m, "[1, 2, 3]"));
  m = error_of<ValueError>([] {
    make_conv_params(3, "valid", {}, true, {}, 1, false, {1, 2, 3, std::nullopt});
  });
  INFO(m);
  CHECK(has(m, "imshp"));
  CHECK(has(m, "[1, 2, 3, ?]"));
}

TEST_CASE("conv params: kshp of the wrong length is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] {
    make_conv_params(2, "valid", {}, true, {}, 1, false, {}, {4, 3, 3, 3, 3});
  });
  INFO(m);
  CHECK(has(m, "kshp"));
  CHECK(has(m, "[4, 3, 3, 3, 3]"));
  // An unshared kernel has 6 dims: a 4-D hint is wrong there.
  m = error_of<ValueError>([] {
    make_conv_params(2, "valid", {}, true, {}, 1, true, {}, {4, 3, 3, 3});
  });
  INFO(m);
  CHECK(has(m, "kshp"));
  CHECK(has(m, "[4, 3, 3, 3]"));
  CHECK(has(m, "unshared"));
}

TEST_CASE("conv params: a negative imshp or kshp entry is a ValueError", "[conv-params]") {
  std::string m = error_of<ValueError>([] {
    make_conv_params(2, "valid", {}, true, {}, 1, false, {1, -3, 4, 4});
  });
  INFO(m);
  CHECK(has(m, "imshp"));
  CHECK(has(m, "-3"));
  m = error_of<ValueError>([] {
    make_conv_params(3, "valid", {}, true, {}, 1, false, {}, {2, 2, 3, std::nullopt, -1});
  });
  INFO(m);
  CHECK(has(m, "kshp"));
  CHECK(has(m, "-1"));
}

// ---- equality, hash, str ----

TEST_CASE("conv params: equality and hash", "[conv-params]") {
  const auto make = [] {
    return make_conv_params(2, BorderMode::pairs({{1, 2}, {0, 0}}), {2, 1}, true, {1, 2}, 2, false,
                            {4, 6, 9, 9}, {8, 3, 3, 3});
  };
  const ConvParams base = make();
  const ConvParams same = make();
  REQUIRE(base == same);
  REQUIRE(base.hash() == same.hash());

  // Equal spellings of the same parameters are equal, with equal hashes.
  REQUIRE(make_conv_params(2, "valid") == make_conv_params(2, {0, 0}));
  REQUIRE(make_conv_params(2, "valid").hash() == make_conv_params(2, {0, 0}).hash());
  REQUIRE(make_conv_params(3, 2) == make_conv_params(3, {2, 2, 2}));
  REQUIRE(make_conv_params(3, 2).hash() == make_conv_params(3, {2, 2, 2}).hash());
  REQUIRE(make_conv_params(2, "half", {1, 1}, true, {1, 1}) == make_conv_params(2, "half"));

  // Changing any one field makes them unequal.
  std::vector<std::pair<std::string, std::function<void(ConvParams&)>>> changes{
      {"convdim", [](ConvParams& p) { p.convdim = 3; }},
      {"border kind", [](ConvParams& p) { p.border[1] = AxisBorder::full(); }},
      {"border before", [](ConvParams& p) { p.border[0].before = 2; }},
      {"border after", [](ConvParams& p) { p.border[0].after = 1; }},
      {"subsample", [](ConvParams& p) { p.subsample[1] = 3; }},
      {"filter_flip", [](ConvParams& p) { p.filter_flip = false; }},
      {"dilation", [](ConvParams& p) { p.dilation[0] = 2; }},
      {"num_groups", [](ConvParams& p) { p.num_groups = 3; }},
      {"unshared", [](ConvParams& p) { p.unshared = true; }},
      {"imshp entry", [](ConvParams& p) { p.imshp[2] = 10; }},
      {"imshp unknown", [](ConvParams& p) { p.imshp[0] = std::nullopt; }},
      {"kshp entry", [](ConvParams& p) { p.kshp[0] = 16; }},
      {"kshp unknown", [](ConvParams& p) { p.kshp[3] = std::nullopt; }},
  };
  for (const auto& [what, change] : changes) {
    INFO("changed: " << what);
    ConvParams changed = base;
    change(changed);
    CHECK_FALSE(changed == base);
    CHECK(changed != base);
    CHECK(changed.hash() != base.hash());
  }
  // The ops compare by direction and params.
  const AbstractConv fwd(ConvDirection::forward, base);
  REQUIRE(fwd.equals(AbstractConv(ConvDirection::forward, same)));
  REQUIRE(fwd.hash() == AbstractConv(ConvDirection::forward, same).hash());
  REQUIRE_FALSE(fwd.equals(AbstractConv(ConvDirection::grad_inputs, same)));
  REQUIRE_FALSE(fwd.equals(AbstractConv(ConvDirection::forward, make_conv_params(2, "valid"))));
}

TEST_CASE("conv params: str names every non-default parameter", "[conv-params]") {
  const ConvParams plain = make_conv_params(2, "valid");
  REQUIRE(plain.str() == "border=valid");
  REQUIRE(make_conv_params(3, "full").str() == "border=full");
  REQUIRE(make_conv_params(2, "half").str() == "border=half");

  const ConvParams rich = make_conv_params(2, "half", {2, 3}, false, {2, 1}, 2, true);
  const std::string s = rich.str();
  INFO(s);
  CHECK(s.rfind("border=half", 0) == 0);
  CHECK(has(s, "subsample=(2, 3)"));
  CHECK(has(s, "dilation=(2, 1)"));
  CHECK(has(s, "groups=2"));
  CHECK(has(s, "unshared"));
  // Convolution and cross-correlation print differently.
  ConvParams flipped = rich;
  flipped.filter_flip = true;
  CHECK(flipped.str() != s);

  const std::string pads = make_conv_params(2, BorderMode::pairs({{1, 2}, {3, 3}})).str();
  INFO(pads);
  CHECK(has(pads, "(1, 2)"));
  CHECK(has(pads, "3"));
  CHECK(make_conv_params(3, 2).str() != make_conv_params(3, 1).str());
  CHECK(make_conv_params(2, {0, 1}).str() != make_conv_params(2, {1, 0}).str());

  // BorderMode::str shows what the user wrote.
  CHECK(BorderMode("half").str() == "'half'");
  CHECK(BorderMode(3).str() == "3");
  CHECK(BorderMode({1, 2}).str() == "(1, 2)");
  CHECK(BorderMode::pairs({{1, 2}, {0, 0}}).str() == "((1, 2), (0, 0))");

  // Op names: one class per direction and dimension.
  CHECK(AbstractConv(ConvDirection::forward, plain).name() == "AbstractConv2d");
  CHECK(AbstractConv(ConvDirection::grad_inputs, make_conv_params(3, "valid")).name() ==
        "AbstractConv3d_gradInputs");
  CHECK(AbstractConv(ConvDirection::grad_weights, plain).name() == "AbstractConv2d_gradWeights");
  CHECK(has(AbstractConv(ConvDirection::forward, rich).str(), s));
}

// ---- flops (defined for every convolution, where the original's count was wrong or missing for
// 3-D, grouped and unshared ones) ----

TEST_CASE("conv params: conv_flops is 2 * B * M * prod(out) * (C / G) * prod(k)", "[conv-params]") {
  // 2-D: B=8, C=3, M=16, k 5x5, output 28x28.
  {
    const ConvParams p = make_conv_params(2, "valid");
    const double expected = 2.0 * 8 * 16 * (28 * 28) * 3 * (5 * 5);
    REQUIRE(conv_flops(p, {8, 3, 32, 32}, {16, 3, 5, 5}, {8, 16, 28, 28}) == expected);
    REQUIRE(expected == 15052800.0);
  }
  // 3-D: B=2, C=4, M=6, k 3x2x1, output 5x6x7.
  {
    const ConvParams p = make_conv_params(3, "valid");
    const double expected = 2.0 * 2 * 6 * (5 * 6 * 7) * 4 * (3 * 2 * 1);
    REQUIRE(conv_flops(p, {2, 4, 7, 7, 7}, {6, 4, 3, 2, 1}, {2, 6, 5, 6, 7}) == expected);
    REQUIRE(expected == 120960.0);
  }
  // Grouped 2-D: B=2, C=6, G=3 (2 channels per group), M=9, k 3x3, output 4x4 (half).
  {
    const ConvParams p = make_conv_params(2, "half", {}, true, {}, 3);
    const double expected = 2.0 * 2 * 9 * (4 * 4) * (6 / 3) * (3 * 3);
    REQUIRE(conv_flops(p, {2, 6, 4, 4}, {9, 2, 3, 3}, {2, 9, 4, 4}) == expected);
    REQUIRE(expected == 10368.0);
  }
  // Grouped 3-D: B=1, C=8, G=4, M=4, k 2x2x2, output 3x3x3.
  {
    const ConvParams p = make_conv_params(3, "valid", {}, true, {}, 4);
    const double expected = 2.0 * 1 * 4 * 27 * 2 * 8;
    REQUIRE(conv_flops(p, {1, 8, 4, 4, 4}, {4, 2, 2, 2, 2}, {1, 4, 3, 3, 3}) == expected);
    REQUIRE(expected == 3456.0);
  }
  // Unshared 2-D: kernel (M=4, oh=3, ow=2, C/G=2, kh=2, kw=3); B=3, C=4, G=2.
  {
    const ConvParams p = make_conv_params(2, "valid", {}, true, {}, 2, true);
    const double expected = 2.0 * 3 * 4 * (3 * 2) * 2 * (2 * 3);
    REQUIRE(conv_flops(p, {3, 4, 4, 4}, {4, 3, 2, 2, 2, 3}, {3, 4, 3, 2}) == expected);
    REQUIRE(expected == 1728.0);
  }
  // Strided and dilated: only the output size matters.
  {
    const ConvParams p = make_conv_params(2, "full", {2, 2}, true, {2, 2});
    REQUIRE(conv_flops(p, {1, 1, 5, 5}, {1, 1, 3, 3}, {1, 1, 5, 5}) == 2.0 * 25 * 9);
  }
}
