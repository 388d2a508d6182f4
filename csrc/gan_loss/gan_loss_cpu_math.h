// CPU building blocks of the GAN losses, shared by gan_loss and mixture_gan_loss: loops over short arrays (a chunk
// of logits in the accumulation type) that gcc vectorises. Every loss needs at most e = exp(-|x|) and
// l = log1p(e) per logit (softplus(x) = max(x, 0) + l and sigmoid(x) = [x >= 0 ? 1 : e] / (1 + e) for x and -x
// alike), so those two are computed once per logit. float uses branch-free polynomial exp and log1p (libm calls
// would stop the vectorisation and cost ~20 ns each: at B = 64, T = 5 they were 90% of the op's time); double
// keeps libm for full fp64 accuracy.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/cpu_math.h"
#include "gan_loss/gan_loss.h"

namespace fastgan {
namespace cpu {

// exp(y) for -87 <= y <= 0 (callers clamp with std::min before, so no clamp here: gcc does not if-convert one
// without -fno-trapping-math).
inline float exp_nonpositive(float y) { return exp_poly_f32(y); }

// log1p(e) for e in [0, 1]: 2 atanh(t) with t = e / (2 + e) in [0, 1/3], seven terms of the series (truncation
// < 2e-8 relative); no cancellation as e -> 0.
inline float log1p_unit(float e) {
  const float t = e / (2.0f + e);
  const float s = t * t;
  float p = 1.0f / 13.0f;
  p = p * s + 1.0f / 11.0f;
  p = p * s + 1.0f / 9.0f;
  p = p * s + 1.0f / 7.0f;
  p = p * s + 1.0f / 5.0f;
  p = p * s + 1.0f / 3.0f;
  p = p * s + 1.0f;
  return 2.0f * t * p;
}

// Three simple loops, each vectorised. |x| is clamped to 87 (exp(-87) ~ 1.6e-38, the edge of the normal range):
// beyond it e is 1.6e-38 instead of a denormal or 0, an absolute error below 2e-38.
inline void softplus_parts_generic(const float* x, int64_t n, float* e, float* l) {
  for (int64_t i = 0; i < n; ++i) e[i] = -std::min(std::fabs(x[i]), 87.0f);
  for (int64_t i = 0; i < n; ++i) e[i] = exp_nonpositive(e[i]);
  for (int64_t i = 0; i < n; ++i) l[i] = log1p_unit(e[i]);
}

// float entry points compiled also for AVX-512 and AVX2 where gcc can clone functions (defined in gan_loss_cpu.cpp,
// picked at load time): the build carries no -march flag, so this is where wider vectors come from (softplus_parts
// runs ~4x faster with AVX-512 than with the SSE2 baseline). The templates below are the code they run.
void softplus_parts_f32(const float* x, int64_t n, float* e, float* l);
void real_terms_f32(int kind, const float* r, const float* e, const float* l, int64_t n, float tb, float* loss,
                    float* d);
void fake_terms_f32(int kind, int player, const float* f, const float* e, const float* l, int64_t n, float ta,
                    float tc, float* loss, float* d);
void relativistic_terms_f32(int player, const float* x, const float* e, const float* l, int64_t n, float* loss,
                            float* d_fake);
void softplus_both_f32(bool minimax, const float* x, const float* e, const float* l, int64_t n, float* inv,
                       float* loss_d, float* d_d, float* loss_g, float* d_g);

inline void softplus_parts(const float* x, int64_t n, float* e, float* l) { softplus_parts_f32(x, n, e, l); }

inline void softplus_parts(const double* x, int64_t n, double* e, double* l) {
  for (int64_t i = 0; i < n; ++i) {
    e[i] = std::exp(-std::fabs(x[i]));
    l[i] = std::log1p(e[i]);
  }
}

// sign bit of x set ? if_negative : otherwise, through the bits. Comparisons of floats are not if-converted by
// gcc under its default -ftrapping-math, which keeps loops with a sigmoid's select from vectorising; at x = +-0
// both sigmoid branches are equal (e = 1), so the sign of zero does not matter.
inline float select_by_sign(float x, float if_negative, float otherwise) {
  int32_t xb, a, b;
  std::memcpy(&xb, &x, sizeof xb);
  std::memcpy(&a, &if_negative, sizeof a);
  std::memcpy(&b, &otherwise, sizeof b);
  const int32_t mask = xb >> 31;  // all ones when negative (arithmetic shift)
  const int32_t bits = (a & mask) | (b & ~mask);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

inline double select_by_sign(double x, double if_negative, double otherwise) {
  int64_t xb, a, b;
  std::memcpy(&xb, &x, sizeof xb);
  std::memcpy(&a, &if_negative, sizeof a);
  std::memcpy(&b, &otherwise, sizeof b);
  const int64_t mask = xb >> 63;
  const int64_t bits = (a & mask) | (b & ~mask);
  double out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// sigmoid(x) and sigmoid(-x) from e = exp(-|x|) and inv = 1 / (1 + e).
template <typename A>
inline A sigmoid_pos(A x, A e, A inv) { return select_by_sign(x, e * inv, inv); }
template <typename A>
inline A sigmoid_neg(A x, A e, A inv) { return select_by_sign(x, inv, e * inv); }
template <typename A>
inline A relu(A x) { return x > A(0) ? x : A(0); }

// The kinds whose terms need e and l (the others are piecewise linear or quadratic).
inline bool uses_softplus(int kind) { return kind == kRelativistic || kind == kNonSaturating || kind == kMinimax; }

// Real-logit terms of a separable discriminator loss: loss[i] and d loss / d r.
template <typename A>
void real_terms_generic(int kind, const A* r, const A* e, const A* l, int64_t n, A tb, A* loss, A* d) {
  switch (kind) {
    case kHinge:
      for (int64_t i = 0; i < n; ++i) {
        const A t = A(1) - r[i];
        loss[i] = t > A(0) ? t : A(0);
        d[i] = t > A(0) ? A(-1) : A(0);
      }
      break;
    case kWasserstein:
      for (int64_t i = 0; i < n; ++i) {
        loss[i] = -r[i];
        d[i] = A(-1);
      }
      break;
    case kLsgan:
      for (int64_t i = 0; i < n; ++i) {
        const A t = r[i] - tb;
        loss[i] = A(0.5) * t * t;
        d[i] = t;
      }
      break;
    default:  // softplus(-r), -sigmoid(-r)
      for (int64_t i = 0; i < n; ++i) {
        const A inv = A(1) / (A(1) + e[i]);
        loss[i] = relu(-r[i]) + l[i];
        d[i] = -sigmoid_neg(r[i], e[i], inv);
      }
  }
}

// Fake-logit terms (not relativistic) of the discriminator's (player 0) or generator's loss.
template <typename A>
void fake_terms_generic(int kind, int player, const A* f, const A* e, const A* l, int64_t n, A ta, A tc, A* loss, A* d) {
  if (kind == kHinge && player == kDiscriminator) {
    for (int64_t i = 0; i < n; ++i) {
      const A t = A(1) + f[i];
      loss[i] = t > A(0) ? t : A(0);
      d[i] = t > A(0) ? A(1) : A(0);
    }
  } else if (kind == kWasserstein && player == kDiscriminator) {
    for (int64_t i = 0; i < n; ++i) {
      loss[i] = f[i];
      d[i] = A(1);
    }
  } else if (kind == kHinge || kind == kWasserstein) {  // generator: -f
    for (int64_t i = 0; i < n; ++i) {
      loss[i] = -f[i];
      d[i] = A(-1);
    }
  } else if (kind == kLsgan) {
    const A target = player == kDiscriminator ? ta : tc;
    for (int64_t i = 0; i < n; ++i) {
      const A t = f[i] - target;
      loss[i] = A(0.5) * t * t;
      d[i] = t;
    }
  } else if (player == kDiscriminator || kind == kMinimax) {  // +-softplus(f), +-sigmoid(f)
    const A sign = player == kDiscriminator ? A(1) : A(-1);
    for (int64_t i = 0; i < n; ++i) {
      const A inv = A(1) / (A(1) + e[i]);
      loss[i] = sign * (relu(f[i]) + l[i]);
      d[i] = sign * sigmoid_pos(f[i], e[i], inv);
    }
  } else {  // nonsaturating generator: softplus(-f), -sigmoid(-f)
    for (int64_t i = 0; i < n; ++i) {
      const A inv = A(1) / (A(1) + e[i]);
      loss[i] = relu(-f[i]) + l[i];
      d[i] = -sigmoid_neg(f[i], e[i], inv);
    }
  }
}

// Relativistic pair terms from x = f - r: D softplus(x) (d/df = sigmoid(x)), G softplus(-x) (d/df = -sigmoid(-x));
// d/dr = -d/df in both.
template <typename A>
void relativistic_terms_generic(int player, const A* x, const A* e, const A* l, int64_t n, A* loss, A* d_fake) {
  if (player == kDiscriminator) {
    for (int64_t i = 0; i < n; ++i) {
      const A inv = A(1) / (A(1) + e[i]);
      loss[i] = relu(x[i]) + l[i];
      d_fake[i] = sigmoid_pos(x[i], e[i], inv);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const A inv = A(1) / (A(1) + e[i]);
      loss[i] = relu(-x[i]) + l[i];
      d_fake[i] = -sigmoid_neg(x[i], e[i], inv);
    }
  }
}

// Both players' terms of the logits x for the softplus kinds: x = f (nonsaturating, minimax) or x = f - r
// (relativistic, whose D and G terms in x are the nonsaturating ones: softplus(x) and softplus(-x)).
// D: softplus(x), d/dx = sigmoid(x); G: softplus(-x), d/dx = -sigmoid(-x) (minimax: -softplus(x), -sigmoid(x)).
// One division per logit serves all four (inv: scratch). Separate simple loops: gcc does not vectorise one loop
// holding both sign selects.
template <typename A>
void softplus_both_generic(bool minimax, const A* x, const A* e, const A* l, int64_t n, A* inv, A* loss_d, A* d_d,
                   A* loss_g, A* d_g) {
  for (int64_t i = 0; i < n; ++i) inv[i] = A(1) / (A(1) + e[i]);
  for (int64_t i = 0; i < n; ++i) {
    loss_d[i] = relu(x[i]) + l[i];
    d_d[i] = sigmoid_pos(x[i], e[i], inv[i]);
  }
  if (minimax) {
    for (int64_t i = 0; i < n; ++i) {
      loss_g[i] = -loss_d[i];
      d_g[i] = -d_d[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      loss_g[i] = relu(-x[i]) + l[i];
      d_g[i] = -sigmoid_neg(x[i], e[i], inv[i]);
    }
  }
}

// Dispatch: float to the cloned entry points, double to the templates.
inline void real_terms(int kind, const float* r, const float* e, const float* l, int64_t n, float tb, float* loss,
                       float* d) {
  real_terms_f32(kind, r, e, l, n, tb, loss, d);
}
inline void real_terms(int kind, const double* r, const double* e, const double* l, int64_t n, double tb,
                       double* loss, double* d) {
  real_terms_generic(kind, r, e, l, n, tb, loss, d);
}
inline void fake_terms(int kind, int player, const float* f, const float* e, const float* l, int64_t n, float ta,
                       float tc, float* loss, float* d) {
  fake_terms_f32(kind, player, f, e, l, n, ta, tc, loss, d);
}
inline void fake_terms(int kind, int player, const double* f, const double* e, const double* l, int64_t n,
                       double ta, double tc, double* loss, double* d) {
  fake_terms_generic(kind, player, f, e, l, n, ta, tc, loss, d);
}
inline void relativistic_terms(int player, const float* x, const float* e, const float* l, int64_t n, float* loss,
                               float* d_fake) {
  relativistic_terms_f32(player, x, e, l, n, loss, d_fake);
}
inline void relativistic_terms(int player, const double* x, const double* e, const double* l, int64_t n,
                               double* loss, double* d_fake) {
  relativistic_terms_generic(player, x, e, l, n, loss, d_fake);
}
inline void softplus_both(bool minimax, const float* x, const float* e, const float* l, int64_t n, float* inv,
                          float* loss_d, float* d_d, float* loss_g, float* d_g) {
  softplus_both_f32(minimax, x, e, l, n, inv, loss_d, d_d, loss_g, d_g);
}
inline void softplus_both(bool minimax, const double* x, const double* e, const double* l, int64_t n, double* inv,
                          double* loss_d, double* d_d, double* loss_g, double* d_g) {
  softplus_both_generic(minimax, x, e, l, n, inv, loss_d, d_d, loss_g, d_g);
}

// Eight interleaved partial sums: vectorisable without -ffast-math, smaller rounding growth.
template <typename A>
A sum(const A* x, int64_t n) {
  A acc[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  }
  for (; i < n; ++i) acc[0] += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename T, typename A>
void load(const T* src, int64_t n, A* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<A>(src[i]);
}

}  // namespace cpu
}  // namespace fastgan
