// mixture_gan_loss kernels (MIX+GAN's weighted loss over T_g x T_d pairs; maths in fastgan/ops/mixture_gan_loss.py).
//
// real [T_d, B] and fake [T_g, T_d, B] logits in the storage dtype; weight logits [T_g], [T_d] in the accumulation
// dtype. The forward writes both players' losses and, when asked, the Jacobian `jac`: two sections (d loss, then
// g loss) of S = T_d*B + T_g*T_d*B + T_g + T_d accumulation-type values, each laid out
// [d/d real | d/d fake | d/d g_weight_logits | d/d d_weight_logits]. The backward is then
// grad = up_d * jac[0:S] + up_g * jac[S:2S], cast to each input's dtype.
#pragma once
#include <cstdint>

#include "common/dtype.h"
#include "gan_loss/gan_loss.h"

namespace fastgan {

enum MixRegularizer : int { kMixRegNone = 0, kMixRegMeanNegLog = 1, kMixRegEntropy = 2 };

// Value of the regulariser from log-weights lw and weights w: mean(-log w) (MIX+GAN's reference code) or
// sum(w log w) = -H(w).
template <typename A>
FASTGAN_HOST_DEVICE A mix_reg_value(int reg, const A* lw, const A* w, int64_t count) {
  A sum = A(0);
  if (reg == kMixRegMeanNegLog) {
    for (int64_t k = 0; k < count; ++k) sum -= lw[k];
    return sum / static_cast<A>(count);
  }
  if (reg == kMixRegEntropy) {
    for (int64_t k = 0; k < count; ++k) sum += w[k] * lw[k];
  }
  return sum;
}

// d R / d (weight logit k) through the softmax: mean(-log w): w_k - 1/T; -H(w): w_k (log w_k - R).
template <typename A>
FASTGAN_HOST_DEVICE A mix_reg_grad(int reg, A w, A lw, A value, int64_t count) {
  if (reg == kMixRegMeanNegLog) return w - A(1) / static_cast<A>(count);
  if (reg == kMixRegEntropy) return w * (lw - value);
  return A(0);
}

// Returns 0, or 1 / 2 when g_weight_logits / d_weight_logits hold a non-finite value (nothing is written then).
int mixture_gan_loss_forward_cpu(DType dtype, const void* real, const void* fake, const void* g_logits,
                                 const void* d_logits, int64_t tg, int64_t td, int64_t batch, int kind, double a,
                                 double b, double c, int regularizer, double reg_weight, void* d_loss, void* g_loss,
                                 void* jac);
void mixture_gan_loss_backward_cpu(DType dtype, const void* jac, const void* up_d, const void* up_g, int64_t tg,
                                   int64_t td, int64_t batch, void* d_real, void* d_fake, void* d_g_logits,
                                   void* d_d_logits);

#ifdef FASTGAN_WITH_CUDA
// Non-finite weight logits are not detected on CUDA (that would need a device sync): they give NaN losses.
int64_t mixture_gan_loss_cuda_workspace(int64_t tg, int64_t td, int64_t batch);
void mixture_gan_loss_forward_cuda(DType dtype, const void* real, const void* fake, const void* g_logits,
                                   const void* d_logits, int64_t tg, int64_t td, int64_t batch, int kind, double a,
                                   double b, double c, int regularizer, double reg_weight, void* d_loss, void* g_loss,
                                   void* jac, void* workspace, void* stream);
void mixture_gan_loss_backward_cuda(DType dtype, const void* jac, const void* up_d, const void* up_g, int64_t tg,
                                    int64_t td, int64_t batch, void* d_real, void* d_fake, void* d_g_logits,
                                    void* d_d_logits, void* stream);
#endif

}  // namespace fastgan
