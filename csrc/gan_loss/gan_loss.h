// gan_loss kernels and the per-element GAN loss terms that mixture_gan_loss shares.
//
// Index space of one call (see fastgan/ops/gan_loss.py): either `paired` (n elements, element i reads real[i] and
// fake[i]; relativistic losses, and reduction="none" of the discriminator loss) or concatenated (n_real real
// elements, then n_fake fake ones). The gradient buffer is always laid out [n_real | n_fake] in the accumulation
// type, already multiplied by the reduction's scale (1/n_real and 1/n_fake for "mean").
#pragma once
#include <cmath>
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

enum GanKind : int { kNonSaturating = 0, kMinimax = 1, kHinge = 2, kWasserstein = 3, kLsgan = 4, kRelativistic = 5 };
enum GanPlayer : int { kDiscriminator = 0, kGenerator = 1 };
enum GanReduction : int { kReduceNone = 0, kReduceMean = 1, kReduceSum = 2 };

template <typename A>
FASTGAN_HOST_DEVICE A gl_exp(A x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  return std::exp(x);
#endif
}

template <typename A>
FASTGAN_HOST_DEVICE A gl_log1p(A x) {
#if defined(__CUDA_ARCH__)
  return log1p(x);
#else
  return std::log1p(x);
#endif
}

// log(1 + e^x) without overflow: e^{-|x|} <= 1, so no inf at x = +-1e4, and log1p keeps e^x accurate for x << 0.
template <typename A>
FASTGAN_HOST_DEVICE A gl_softplus(A x) {
  const A ax = x < A(0) ? -x : x;
  return (x > A(0) ? x : A(0)) + gl_log1p(gl_exp(-ax));
}

// 1 / (1 + e^{-x}) from e^{-|x|} (never overflows).
template <typename A>
FASTGAN_HOST_DEVICE A gl_sigmoid(A x) {
  const A e = gl_exp(x < A(0) ? x : -x);
  return (x < A(0) ? e : A(1)) / (A(1) + e);
}

// Loss uses the real logits at all (the generator's loss only in the relativistic pairing).
FASTGAN_HOST_DEVICE bool gan_uses_real(int kind, int player) {
  return player == kDiscriminator || kind == kRelativistic;
}

// Term of one real logit r in a separable discriminator loss: loss and d loss / d r.
template <typename A>
FASTGAN_HOST_DEVICE void gan_real_term(int kind, A r, A target_b, A& loss, A& d) {
  switch (kind) {
    case kHinge: {
      const A t = A(1) - r;  // relu(1 - r): torch's relu'(0) = 0, so the kink gets gradient 0 too
      loss = t > A(0) ? t : A(0);
      d = t > A(0) ? A(-1) : A(0);
      break;
    }
    case kWasserstein:
      loss = -r;
      d = A(-1);
      break;
    case kLsgan: {
      const A t = r - target_b;
      loss = A(0.5) * t * t;
      d = t;
      break;
    }
    default:  // nonsaturating, minimax: softplus(-r) = -log sigmoid(r)
      loss = gl_softplus(-r);
      d = -gl_sigmoid(-r);
  }
}

// Term of one fake logit f (discriminator or generator loss; not relativistic): loss and d loss / d f.
template <typename A>
FASTGAN_HOST_DEVICE void gan_fake_term(int kind, int player, A f, A target_a, A target_c, A& loss, A& d) {
  if (player == kDiscriminator) {
    switch (kind) {
      case kHinge: {
        const A t = A(1) + f;
        loss = t > A(0) ? t : A(0);
        d = t > A(0) ? A(1) : A(0);
        break;
      }
      case kWasserstein:
        loss = f;
        d = A(1);
        break;
      case kLsgan: {
        const A t = f - target_a;
        loss = A(0.5) * t * t;
        d = t;
        break;
      }
      default:  // softplus(f) = -log(1 - sigmoid(f))
        loss = gl_softplus(f);
        d = gl_sigmoid(f);
    }
    return;
  }
  switch (kind) {
    case kMinimax:  // -softplus(f) = log(1 - sigmoid(f))
      loss = -gl_softplus(f);
      d = -gl_sigmoid(f);
      break;
    case kHinge:
    case kWasserstein:
      loss = -f;
      d = A(-1);
      break;
    case kLsgan: {
      const A t = f - target_c;
      loss = A(0.5) * t * t;
      d = t;
      break;
    }
    default:  // nonsaturating: softplus(-f) = -log sigmoid(f)
      loss = gl_softplus(-f);
      d = -gl_sigmoid(-f);
  }
}

// One (real, fake) pair: relativistic (RpGAN) softplus(+-(f - r)), or the sum of the separable terms.
template <typename A>
FASTGAN_HOST_DEVICE void gan_pair_term(int kind, int player, A r, A f, A ta, A tb, A tc, A& loss, A& dr, A& df) {
  if (kind == kRelativistic) {
    const A x = player == kDiscriminator ? f - r : r - f;
    const A s = gl_sigmoid(x);
    loss = gl_softplus(x);
    df = player == kDiscriminator ? s : -s;
    dr = -df;
    return;
  }
  A lf, lr = A(0);
  gan_fake_term<A>(kind, player, f, ta, tc, lf, df);
  dr = A(0);
  if (player == kDiscriminator) gan_real_term<A>(kind, r, tb, lr, dr);
  loss = lr + lf;
}

// loss: a scalar (reduction mean/sum) or [n] (none), accumulation type. grad: nullptr, or [n_real + n_fake]
// accumulation-type d loss / d logits (reduction scale included). n_real = 0 when the loss does not read real.
void gan_loss_forward_cpu(DType dtype, const void* real, int64_t n_real, const void* fake, int64_t n_fake,
                          bool paired, int kind, int player, int reduction, double a, double b, double c, void* loss,
                          void* grad);
// out[i] = upstream[m == 1 ? 0 : i % m] * grad[i] in the logits' dtype (m = upstream elements).
void gan_loss_backward_cpu(DType dtype, const void* upstream, int64_t m, const void* grad, int64_t n, void* out);

#ifdef FASTGAN_WITH_CUDA
int64_t gan_loss_cuda_workspace(int64_t total);
void gan_loss_forward_cuda(DType dtype, const void* real, int64_t n_real, const void* fake, int64_t n_fake,
                           bool paired, int kind, int player, int reduction, double a, double b, double c, void* loss,
                           void* grad, void* workspace, void* stream);
void gan_loss_backward_cuda(DType dtype, const void* upstream, int64_t m, const void* grad, int64_t n, void* out,
                            void* stream);
#endif

}  // namespace fastgan
