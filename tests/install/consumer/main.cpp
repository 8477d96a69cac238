// Uses the installed headers and library; exits 0 when a tensor built through them is right.
#include <convgraph/build_config.hpp>
#include <convgraph/convgraph.hpp>

#include <iostream>

int main() {
  std::cout << "convgraph " << CONVGRAPH_VERSION << "\n";
  const convgraph::Tensor t = convgraph::Tensor::from_vector<float>({1, 2, 3}, {3});
  std::cout << t.to_string() << "\n";
  return t.numel() == 3 ? 0 : 1;
}
