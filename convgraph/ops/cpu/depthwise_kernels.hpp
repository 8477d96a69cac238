// Direct loops for convolutions with few channels per group: depthwise ones (one input channel
// per group, a small channel multiplier) and grouped ones with a handful of channels and filters
// per group (ResNeXt's 4 x 4). Their GEMMs are (Mg x Cg taps) times (Cg taps x P): too thin for
// BLAS to run at speed, while the column matrix costs taps times the image's memory traffic. These
// loops read each image once and keep the sums of a run of output positions in vector registers.
//
// The CorrMM drivers (corrmm_kernels.cpp) hand such problems here; the graph and the lowering do
// not see the difference.
#pragma once

#include <cstdint>

#include "convgraph/ops/cpu/im2col.hpp"

namespace convgraph {

// Whether the direct loops take GEO's forward and gradient with respect to the inputs (in
// corr_gemm_tuning()'s limits on channels and filters per group), and its gradient with respect to
// the weights (depthwise only: the grouped GEMMs of that direction already run well, since their
// sums run over all positions).
bool direct_conv_applies(const CorrGeometry& geo);
bool direct_grad_weights_applies(const CorrGeometry& geo);

// The instruction sets the loops are compiled for; the best one the CPU has is picked at load.
// Tests lower it to reach the other versions.
enum class DirectIsa : unsigned char { baseline, avx2, avx512 };
DirectIsa direct_conv_isa();
// Sets the version used from now on, at most what the CPU supports; returns the one in use.
DirectIsa set_direct_conv_isa(DirectIsa isa);

// The same contracts as corr_gemm_* (im2col.hpp), on THREADS threads. Results do not depend on the
// thread count except through the order of the weight gradient's sums, which is fixed for a given
// thread count.
template <typename T>
void direct_forward(const CorrGeometry& geo, const T* image, const T* kernel, T* out, int threads);
template <typename T>
void direct_grad_inputs(const CorrGeometry& geo, const T* kernel, const T* topgrad, T* out,
                        int threads);
template <typename T>
void direct_grad_weights(const CorrGeometry& geo, const T* image, const T* topgrad, T* out,
                         int threads);

extern template void direct_forward<float>(const CorrGeometry&, const float*, const float*, float*,
                                           int);
extern template void direct_forward<double>(const CorrGeometry&, const double*, const double*,
                                            double*, int);
extern template void direct_grad_inputs<float>(const CorrGeometry&, const float*, const float*,
                                               float*, int);
extern template void direct_grad_inputs<double>(const CorrGeometry&, const double*, const double*,
                                                double*, int);
extern template void direct_grad_weights<float>(const CorrGeometry&, const float*, const float*,
                                                float*, int);
extern template void direct_grad_weights<double>(const CorrGeometry&, const double*, const double*,
                                                 double*, int);

}  // namespace convgraph
