// grad_norm_penalty kernels. grad is a flat [B, N] array (see check_batch_major); penalty and norm are [B] in the
// accumulation type (fp64 for fp64 grads, fp32 otherwise); mode: 0 two_sided, 1 one_sided, 2 squared.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

enum GradNormMode : int { kTwoSided = 0, kOneSided = 1, kSquared = 2 };

// phi(n): the per-sample penalty of the norm n.
template <typename A>
FASTGAN_HOST_DEVICE A gnp_penalty(A norm, A target, int mode) {
  if (mode == kSquared) return norm * norm;
  A excess = norm - target;
  if (mode == kOneSided && excess < A(0)) excess = A(0);
  return excess * excess;
}

// phi'(n) / n, the factor that turns the upstream gradient into dL/dg = up * factor * g. At n = 0 the direction
// g / n is undefined and g itself is zero, so the factor is taken as 0 (as torch's norm backward does): no NaN.
template <typename A>
FASTGAN_HOST_DEVICE A gnp_grad_factor(A norm, A target, int mode) {
  if (mode == kSquared) return A(2);
  if (!(norm > A(0))) return A(0);
  A excess = norm - target;
  if (mode == kOneSided && excess < A(0)) return A(0);
  return A(2) * excess / norm;
}

void grad_norm_penalty_forward_cpu(DType dtype, const void* grad, int64_t batch, int64_t n, double target, int mode,
                                   void* penalty, void* norm);
void grad_norm_penalty_backward_cpu(DType dtype, const void* grad, const void* norm, const void* upstream,
                                    int64_t batch, int64_t n, double target, int mode, void* grad_grad);

#ifdef FASTGAN_WITH_CUDA
// workspace: at least grad_norm_penalty_cuda_workspace(batch, n) accumulation-type elements.
int64_t grad_norm_penalty_cuda_workspace(int64_t batch, int64_t n);
void grad_norm_penalty_forward_cuda(DType dtype, const void* grad, int64_t batch, int64_t n, double target, int mode,
                                    void* penalty, void* norm, void* workspace, void* stream);
void grad_norm_penalty_backward_cuda(DType dtype, const void* grad, const void* norm, const void* upstream,
                                     int64_t batch, int64_t n, double target, int mode, void* grad_grad, void* stream);
#endif

}  // namespace fastgan
