// Logistic regression trained with a few steps of gradient descent: the graph is built once,
// differentiated, compiled, and called once per step.
#include <cstdio>
#include <random>

#include "convgraph/convgraph.hpp"

using namespace convgraph;

int main() {
  constexpr int kExamples = 256, kFeatures = 8, kSteps = 30;
  constexpr double kLearningRate = 0.5;

  // Data: labels from a hidden linear rule, so the loss can fall well below log(2).
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> features(kExamples * kFeatures), labels(kExamples), truth(kFeatures);
  for (float& t : truth) t = normal(rng);
  for (int n = 0; n < kExamples; ++n) {
    float score = 0.3f;
    for (int f = 0; f < kFeatures; ++f) {
      features[n * kFeatures + f] = normal(rng);
      score += truth[f] * features[n * kFeatures + f];
    }
    labels[n] = score > 0 ? 1.0f : 0.0f;
  }

  // The model: p(y = 1 | x) = sigmoid(x . w + b), loss = mean binary cross-entropy.
  Variable x = tensor("x", DType::float32, {std::nullopt, kFeatures});
  Variable y = vector("y", DType::float32);
  Variable w = tensor("w", DType::float32, {kFeatures});
  Variable b = scalar("b", DType::float32);
  Variable logits = dot(x, w) + b;
  Variable loss = mean(softplus(logits) - y * logits);  // = BCE(sigmoid(logits), y), stably
  auto grads = grad(loss, {w, b});
  Function step =
      compile({x, y, w, b}, {loss, w - kLearningRate * grads[0], b - kLearningRate * grads[1]});

  std::printf("loss graph:\n%s\n", debugprint(loss).c_str());
  Tensor tx = Tensor::from_vector(features, {kExamples, kFeatures});
  Tensor ty = Tensor::from_vector(labels, {kExamples});
  Tensor tw = Tensor::zeros(DType::float32, {kFeatures});
  Tensor tb = Tensor::zeros(DType::float32, {});
  for (int i = 0; i <= kSteps; ++i) {
    auto out = step({tx, ty, tw, tb});
    if (i % 5 == 0) std::printf("step %2d  loss %.4f\n", i, out[0].item<double>());
    tw = out[1];
    tb = out[2];
  }
  std::printf("peak memory of the last call: %lld bytes\n",
              static_cast<long long>(step.last_peak_bytes()));
  return 0;
}
