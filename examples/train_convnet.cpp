// A small convolutional network trained with gradient descent on the CPU: conv + bias + relu, a
// second strided conv, global average pooling and a softmax cross-entropy loss. The graph is
// built once, differentiated with respect to every parameter, compiled, and called per step.
//
// The task: tell images holding a horizontal bar from images holding a vertical one.
#include <cstdio>
#include <random>

#include "convgraph/convgraph.hpp"

using namespace convgraph;

namespace {

constexpr int kBatch = 32, kSize = 12, kHidden = 8, kClasses = 2, kSteps = 40;
constexpr double kLearningRate = 0.2;

// Images (kBatch, 1, kSize, kSize) with one bright bar on noise, and one-hot labels.
std::pair<Tensor, Tensor> make_batch(std::mt19937& rng) {
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_int_distribution<int> where(1, kSize - 2), kind(0, 1);
  std::vector<float> images(kBatch * kSize * kSize), labels(kBatch * kClasses, 0.0f);
  for (int n = 0; n < kBatch; ++n) {
    const int label = kind(rng), at = where(rng);
    for (int i = 0; i < kSize; ++i) {
      for (int j = 0; j < kSize; ++j) {
        const bool on_bar = label == 0 ? i == at : j == at;
        images[(n * kSize + i) * kSize + j] = (on_bar ? 1.0f : 0.0f) + noise(rng);
      }
    }
    labels[n * kClasses + label] = 1.0f;
  }
  return {Tensor::from_vector(images, {kBatch, 1, kSize, kSize}),
          Tensor::from_vector(labels, {kBatch, kClasses})};
}

Tensor random_weights(std::mt19937& rng, const Shape& shape, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(static_cast<std::size_t>(shape_numel(shape)));
  for (float& v : values) v = normal(rng);
  return Tensor::from_vector(values, shape);
}

}  // namespace

int main() {
  // The model.
  Variable x = tensor("x", DType::float32, {std::nullopt, 1, kSize, kSize});
  Variable y = tensor("y", DType::float32, {std::nullopt, kClasses});
  Variable w1 = tensor("w1", DType::float32, {kHidden, 1, 3, 3});
  Variable b1 = tensor("b1", DType::float32, {kHidden});
  Variable w2 = tensor("w2", DType::float32, {kClasses, kHidden, 3, 3});
  Variable h = relu(conv2d(x, w1, {.border_mode = "half"}) + dimshuffle(b1, {-1, 0, -1, -1}));
  Variable z = conv2d(h, w2, {.border_mode = 1, .subsample = {2, 2}});  // (B, 2, 6, 6)
  Variable logits = mean(z, {2, 3});
  Variable loss = mean(cross_entropy_with_logits(logits, y));

  // Gradients and one SGD step as a single compiled function.
  const std::vector<Variable> params = {w1, b1, w2};
  const std::vector<Variable> grads = grad(loss, params);
  std::vector<Variable> outputs = {loss};
  for (std::size_t i = 0; i < params.size(); ++i) {
    outputs.push_back(params[i] - kLearningRate * grads[i]);
  }
  Function step = compile({x, y, w1, b1, w2}, outputs);
  std::printf("forward graph:\n%s\n", debugprint(loss).c_str());

  std::mt19937 rng(7);
  Tensor tw1 = random_weights(rng, {kHidden, 1, 3, 3}, 0.5f);
  Tensor tb1 = Tensor::zeros(DType::float32, {kHidden});
  Tensor tw2 = random_weights(rng, {kClasses, kHidden, 3, 3}, 0.3f);
  for (int i = 0; i <= kSteps; ++i) {
    auto [images, labels] = make_batch(rng);
    auto out = step({images, labels, tw1, tb1, tw2});
    if (i % 5 == 0) std::printf("step %2d  loss %.4f\n", i, out[0].item<double>());
    tw1 = out[1];
    tb1 = out[2];
    tw2 = out[3];
  }
  std::printf("peak memory of the last call: %lld bytes\n",
              static_cast<long long>(step.last_peak_bytes()));
  return 0;
}
