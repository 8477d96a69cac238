// Non-finite values at the padding: CorrMM computes what the reference computes.
//
// The reference convolutions leave taps that fall in the zero padding out of every sum: padding
// contributes nothing, whatever it would have been multiplied by. The GEMM drivers instead
// multiply the zeros of the column matrix (and the direct loops the zeros of their padded rows),
// which gives the same sums for finite values but NaN for 0 * inf and 0 * NaN. These functions,
// run after a direction has computed its result, find the elements that received such a product
// (forward: a non-finite weight at a tap that reads padding; gradWeights: a non-finite topgrad
// value at an output position where a tap reads padding; gradInputs: a non-finite weight) and
// compute them again as the reference does. A product with padding is zero or NaN, so only an
// element that came out NaN can differ from the reference. On finite data they only look: at the
// weights (forward, gradInputs) or at the weight gradient (gradWeights) for a non-finite value.
#pragma once

#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph {

// OUT = the forward of IMAGE and KERNEL as the GEMM drivers computed it; GEO complete.
template <typename T>
void reconcile_forward_padding(const CorrGeometry& geo, const T* image, const T* kernel, T* out);
// OUT = the weight gradient of IMAGE and TOPGRAD as the drivers computed it; GEO complete.
template <typename T>
void reconcile_grad_weights_padding(const CorrGeometry& geo, const T* image, const T* topgrad,
                                    T* out);

// OUT = the image gradient of KERNEL and TOPGRAD as the drivers computed it; GEO complete. The
// direct loops read a zero-padded topgrad, which meets the taps at outputs that do not exist:
// the elements a non-finite weight reaches that way are computed again.
template <typename T>
void reconcile_grad_inputs_padding(const CorrGeometry& geo, const T* kernel, const T* topgrad,
                                   T* out);

extern template void reconcile_forward_padding<float>(const CorrGeometry&, const float*,
                                                      const float*, float*);
extern template void reconcile_forward_padding<double>(const CorrGeometry&, const double*,
                                                       const double*, double*);
extern template void reconcile_grad_weights_padding<float>(const CorrGeometry&, const float*,
                                                           const float*, float*);
extern template void reconcile_grad_weights_padding<double>(const CorrGeometry&, const double*,
                                                            const double*, double*);
extern template void reconcile_grad_inputs_padding<float>(const CorrGeometry&, const float*,
                                                          const float*, float*);
extern template void reconcile_grad_inputs_padding<double>(const CorrGeometry&, const double*,
                                                           const double*, double*);

}  // namespace convgraph
