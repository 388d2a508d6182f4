// fused_optim kernels: one RMSprop or Adam step over a list of parameters, followed by the WGAN clamp to
// [-clip, clip], in one pass over memory (CPU: one at::parallel_for over all tensors' chunks; CUDA: multi-tensor
// launches). The per-element maths mirrors torch.optim's single-tensor step operation by operation, in the
// accumulation type (fp32; fp64 for fp64 parameters), with the scalars rounded as torch rounds them.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

// One parameter: its tensors (param, grad and the optimizer states, all dense with one layout), its element
// count and dtype, and its per-parameter scalars (Adam: -lr / (1 - beta1^step) and sqrt(1 - beta2^step)).
struct OptimTensor {
  void* param;
  const void* grad;
  void* state0;  // RMSprop: square_avg    Adam: exp_avg
  void* state1;  // RMSprop: grad_avg      Adam: exp_avg_sq
  void* state2;  // RMSprop: momentum_buf  Adam: max_exp_avg_sq
  int64_t numel;
  DType dtype;
  double neg_step_size;
  double bias_correction2_sqrt;
};

struct RMSpropHyper {
  double lr, alpha, eps, weight_decay, momentum, clip;  // clip = +inf: no clamp
  bool centered, maximize;
};

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay, clip;  // clip = +inf: no clamp
  bool amsgrad, maximize, decoupled_weight_decay;
};

// torch's lerp(self, end, w) on CPU and CUDA: two formulas, chosen by |w| < 0.5, for accuracy at both ends.
template <typename A>
FASTGAN_HOST_DEVICE A optim_lerp(A self, A end, A weight) {
  return (weight < A(0.5) && weight > A(-0.5)) ? self + weight * (end - self)
                                               : end - (end - self) * (A(1) - weight);
}

template <typename A>
FASTGAN_HOST_DEVICE A optim_clamp(A x, A lo, A hi) {
  return x < lo ? lo : (x > hi ? hi : x);  // NaN stays NaN, as torch.clamp
}

void fused_optim_rmsprop_cpu(const OptimTensor* tensors, int64_t count, const RMSpropHyper& hyper);
void fused_optim_adam_cpu(const OptimTensor* tensors, int64_t count, const AdamHyper& hyper);

#ifdef FASTGAN_WITH_CUDA
void fused_optim_rmsprop_cuda(const OptimTensor* tensors, int64_t count, const RMSpropHyper& hyper, void* stream);
void fused_optim_adam_cuda(const OptimTensor* tensors, int64_t count, const AdamHyper& hyper, void* stream);
#endif

}  // namespace fastgan
