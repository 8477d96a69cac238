// Views out of range: slice, select, as_strided and unsqueeze refuse them with a ValueError naming
// the axis, the value and the valid range; the bounds arithmetic handles negative strides and
// cannot overflow; a Function refuses an argument whose view reaches outside its buffer.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/messages.hpp"
#include "support/test_util.hpp"

namespace convgraph {

// The seam tensor.hpp declares: builds views without the checks, as a bug elsewhere could.
struct TensorTestAccess {
  static Tensor unchecked_view(const Tensor& base, const Shape& shape, const Strides& strides,
                               std::int64_t offset) {
    Tensor t = base;
    t.shape_ = shape;
    t.strides_ = strides;
    t.offset_ = offset;
    return t;
  }
};

}  // namespace convgraph

using namespace convgraph;
using convgraph::testing::contains;
using convgraph::testing::message_of;

namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();

Tensor iota(const Shape& shape) {
  std::vector<float> values(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  return Tensor::from_vector(values, shape);
}

}  // namespace

TEST_CASE("tensor views: slice out of range names the axis, the bounds and the valid range",
          "[tensor]") {
  const Tensor t = iota({3, 4});
  std::string m = message_of<ValueError>([&] { t.slice(1, 0, 5, 1); });
  CHECK(contains(m, "Tensor::slice"));
  CHECK(contains(m, "axis 1 of size 4"));
  CHECK(contains(m, "stop 5"));
  CHECK(contains(m, "expected both in [0, 4]"));
  m = message_of<ValueError>([&] { t.slice(0, -1, 2, 1); });
  CHECK(contains(m, "start -1"));
  m = message_of<ValueError>([&] { t.slice(0, 3, 1, -1); });
  CHECK(contains(m, "expected both in [-1, 2]"));
  m = message_of<ValueError>([&] { t.slice(0, 1, -2, -1); });
  CHECK(contains(m, "stop -2"));
  m = message_of<ValueError>([&] { t.slice(1, 0, 4, 0); });
  CHECK(contains(m, "step 0"));
  m = message_of<ValueError>([&] { t.slice(2, 0, 1, 1); });
  CHECK(contains(m, "axis 2 is out of range for a tensor of rank 2"));
  CHECK(contains(m, "-2 to 1"));
  CHECK_THROWS_AS(t.slice(-3, 0, 1, 1), ValueError);

  // In range: the edges, reversed, empty, huge steps (no overflow in the count or the stride).
  CHECK(t.slice(1, 0, 4, 1).shape() == Shape{3, 4});
  CHECK(t.slice(1, 4, 4, 1).shape() == Shape{3, 0});
  CHECK(t.slice(1, 3, 1, 1).shape() == Shape{3, 0});   // Python's [3:1]: empty
  CHECK(t.slice(0, 0, 2, -1).shape() == Shape{0, 4});  // [0:2:-1]: empty
  CHECK(t.slice(-1, 3, -1, -1).to_vector<float>() ==
        std::vector<float>{3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8});
  CHECK(t.slice(0, 2, -1, -2).to_vector<float>() == std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3});
  CHECK(t.slice(0, 1, 3, kMax).shape() == Shape{1, 4});
  CHECK(t.slice(0, 2, -1, kMin).to_vector<float>() == std::vector<float>{8, 9, 10, 11});
  const Tensor empty = Tensor::zeros(DType::float32, {0, 2});
  CHECK(empty.slice(0, -1, -1, -1).shape() == Shape{0, 2});
  CHECK(empty.slice(0, 0, 0, 1).shape() == Shape{0, 2});
}

TEST_CASE("tensor views: select and unsqueeze out of range", "[tensor]") {
  const Tensor t = iota({3, 4});
  std::string m = message_of<ValueError>([&] { t.select(0, 3); });
  CHECK(contains(m, "Tensor::select"));
  CHECK(contains(m, "index 3 is out of range for axis 0 of size 3"));
  CHECK(contains(m, "0 to 2"));
  m = message_of<ValueError>([&] { t.select(1, -1); });
  CHECK(contains(m, "index -1"));
  m = message_of<ValueError>([&] { t.select(-3, 0); });
  CHECK(contains(m, "axis -3"));
  m = message_of<ValueError>([&] { Tensor::zeros(DType::float32, {2, 0}).select(1, 0); });
  CHECK(contains(m, "the axis is empty"));
  CHECK(t.select(-1, 3).to_vector<float>() == std::vector<float>{3, 7, 11});

  m = message_of<ValueError>([&] { t.unsqueeze(3); });
  CHECK(contains(m, "Tensor::unsqueeze: axis 3"));
  CHECK(contains(m, "-3 to 2"));
  CHECK_THROWS_AS(t.unsqueeze(-4), ValueError);
  CHECK(t.unsqueeze(-1).shape() == Shape{3, 4, 1});
  CHECK(t.unsqueeze(2).shape() == Shape{3, 4, 1});
}

TEST_CASE("tensor views: as_strided stays inside the buffer, negative strides included",
          "[tensor]") {
  const Tensor t = iota({12});
  // Reversed, overlapping (a sliding window), broadcast: all inside.
  CHECK(t.as_strided({4}, {-2}, 11).to_vector<float>() == std::vector<float>{11, 9, 7, 5});
  CHECK(t.as_strided({3, 4}, {4, 1}, 0).to_vector<float>() == iota({3, 4}).to_vector<float>());
  CHECK(t.as_strided({5, 3}, {2, 1}, 0).select(0, 4).to_vector<float>() ==
        std::vector<float>{8, 9, 10});
  CHECK(t.as_strided({2, 3}, {0, -1}, 2).to_vector<float>() ==
        std::vector<float>{2, 1, 0, 2, 1, 0});
  CHECK(t.as_strided({0, 5}, {100, 100}, 12).numel() == 0);

  std::string m = message_of<ValueError>([&] { t.as_strided({3, 5}, {4, 1}, 0); });
  CHECK(contains(m, "Tensor::as_strided"));
  CHECK(contains(m, "reads elements 0 to 12"));
  CHECK(contains(m, "buffer of 12 elements"));
  m = message_of<ValueError>([&] { t.as_strided({4}, {-2}, 5); });
  CHECK(contains(m, "reads elements -1 to 5"));
  m = message_of<ValueError>([&] { t.as_strided({2}, {1}, -1); });
  CHECK(contains(m, "reads elements -1 to 0"));
  m = message_of<ValueError>([&] { t.as_strided({2, 2}, {1}, 0); });
  CHECK(contains(m, "2 dims but 1 strides"));
  m = message_of<ValueError>([&] { t.as_strided({-1}, {1}, 0); });
  CHECK(contains(m, "dim 0 is negative"));
  // An empty view reads nothing: any offset is fine (padding an empty slice makes such views).
  CHECK(t.as_strided({0}, {1}, 13).numel() == 0);
  CHECK_THROWS_AS(Tensor().as_strided({1}, {1}, 0), ValueError);

  // Overflow anywhere in the bounds arithmetic is a refusal, never undefined behaviour.
  m = message_of<ValueError>([&] { t.as_strided({3}, {kMax}, 0); });
  CHECK(contains(m, "more elements than int64 can count"));
  m = message_of<ValueError>([&] { t.as_strided({2}, {kMin}, 0); });
  CHECK(contains(m, "reads elements"));
  m = message_of<ValueError>([&] { t.as_strided({2, 2}, {kMax, kMax}, 0); });
  CHECK(contains(m, "int64"));
  m = message_of<ValueError>([&] { t.as_strided({2, 2}, {kMin, kMin}, 0); });
  CHECK(contains(m, "int64"));
  m = message_of<ValueError>([&] { t.as_strided({2}, {kMax}, kMax); });
  CHECK(contains(m, "int64"));
  m = message_of<ValueError>([&] { t.as_strided({2}, {-1}, kMin); });
  CHECK(contains(m, "int64"));
}

TEST_CASE("view_bounds_problem: the element range of a view, overflow-checked", "[tensor]") {
  CHECK(view_bounds_problem({}, {}, 0, 1).empty());
  CHECK_FALSE(view_bounds_problem({}, {}, 1, 1).empty());
  CHECK(view_bounds_problem({2, 3}, {3, 1}, 0, 6).empty());
  CHECK_FALSE(view_bounds_problem({2, 3}, {3, 1}, 1, 6).empty());
  CHECK(view_bounds_problem({2, 3}, {-3, -1}, 5, 6).empty());
  CHECK_FALSE(view_bounds_problem({2, 3}, {-3, -1}, 4, 6).empty());
  CHECK(view_bounds_problem({2, 3}, {-3, 1}, 3, 6).empty());
  CHECK(view_bounds_problem({1, 1}, {kMax, kMin}, 0, 1).empty());  // size-1 axes never step
  CHECK(view_bounds_problem({kMax, 0}, {kMax, 1}, 0, 0).empty());  // empty: reads nothing
  CHECK_FALSE(view_bounds_problem({kMax}, {1}, 0, 100).empty());
}

TEST_CASE("a Function refuses an argument whose view reaches outside its buffer", "[tensor]") {
  const Variable x = tensor("x", DType::float32, {std::nullopt});
  const Function f = compile({x}, {x * 2.0});
  const Tensor base = iota({6});
  // Each of these would read outside the 6-element buffer.
  const std::vector<std::pair<Strides, std::int64_t>> bad = {
      {{1}, 3}, {{2}, 0}, {{-1}, 2}, {{kMax}, 0}, {{1}, kMax}};
  for (const auto& [strides, offset] : bad) {
    INFO("strides " << strides[0] << ", offset " << offset);
    const Tensor view = TensorTestAccess::unchecked_view(base, {4}, strides, offset);
    const std::string m = message_of<ValueError>([&] { f({view}); });
    CHECK(contains(m, "input 0 ('x')"));
    CHECK(contains(m, "outside its buffer"));
  }
  // In range, reversed: accepted.
  const Tensor reversed = TensorTestAccess::unchecked_view(base, {4}, {-1}, 5);
  CHECK(f({reversed})[0].to_vector<float>() == std::vector<float>{10, 8, 6, 4});
}
