// bias_act kernels: y = clamp(act(x + bias) * gain), bias broadcast along one dimension (see
// fastgan/ops/bias_act.py for the maths and for what each activation saves).
//
// Memory layout. Every elementwise tensor of one call shares one dense layout (contiguous, channels_last, or any
// other non-overlapping dense permutation) and is read as [outer, channels, inner] in memory order, where
// inner = stride of the bias dimension: element i has channel (i / inner) % channels. No torch headers here: the
// CUDA file includes this one.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/dtype.h"

// The maths below must inline into the CPU kernels' vectorised loops whatever gcc's size budget says.
#if defined(__CUDACC__)
#define BA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define BA_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace fastgan {

// Activation codes: the order of ACTIVATIONS in fastgan/ops/bias_act.py.
enum BiasActKind : int {
  kBaLinear = 0, kBaRelu = 1, kBaLrelu = 2, kBaTanh = 3, kBaSigmoid = 4, kBaElu = 5, kBaSelu = 6,
  kBaSoftplus = 7, kBaSilu = 8, kBaGelu = 9, kBaGeluTanh = 10, kBaNumActs = 11
};

// What the backward reads. kSavedY: the output y (the derivative is a function of y: linear, relu, lrelu, tanh,
// sigmoid, elu, selu without clamp, gain != 0); linear reads nothing. kSavedX: the input x and the bias (z = x + b
// is recomputed).
enum BiasActSaved : int { kSavedY = 0, kSavedX = 1 };

struct BiasActParams {
  int act;
  int saved;
  double alpha;  // lrelu: negative slope; elu: alpha; softplus: beta. Others ignore it.
  double gain;
  double clamp;  // < 0: no clamp
};

struct BiasActLayout {
  int64_t outer, channels, inner;
};

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;     // gelu tanh: sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;      // 1 / sqrt(2 pi)
constexpr double kSoftplusThreshold = 20.0;                             // torch's default: linear above it

// True for the activations whose second derivative is zero (the double backward then has no x term).
BA_HOST_DEVICE constexpr bool bias_act_piecewise_linear(int act) {
  return act == kBaLinear || act == kBaRelu || act == kBaLrelu;
}

// The activation maths, templated on a math policy M (M::exp, expm1, log1p, tanh, erf, sigmoid for the
// accumulation type A), so the CPU file can use vectorisable approximations and the CUDA file its intrinsics.
// z-form: a(z), a'(z), a''(z). y-form: with r = y / gain, the derivative a'(z) = yd1(r) and its derivative with
// respect to y times gain, yd2(r) (so that d/dy [gain * yd1(y / gain)] = yd2(r)).
template <int ACT, typename M, typename A>
BA_HOST_DEVICE A ba_value(A z, A alpha) {
  if constexpr (ACT == kBaLinear) {
    return z;
  } else if constexpr (ACT == kBaRelu) {
    return z < A(0) ? A(0) : z;  // keeps NaN, as torch.relu does
  } else if constexpr (ACT == kBaLrelu) {
    return z > A(0) ? z : z * alpha;
  } else if constexpr (ACT == kBaTanh) {
    return M::tanh(z);
  } else if constexpr (ACT == kBaSigmoid) {
    return M::sigmoid(z);
  } else if constexpr (ACT == kBaElu) {
    return z > A(0) ? z : alpha * M::expm1(z);
  } else if constexpr (ACT == kBaSelu) {
    return z > A(0) ? A(kSeluScale) * z : A(kSeluScale * kSeluAlpha) * M::expm1(z);
  } else if constexpr (ACT == kBaSoftplus) {
    const A bz = alpha * z;
    return bz > A(kSoftplusThreshold) ? z : M::log1p(M::exp(bz)) / alpha;
  } else if constexpr (ACT == kBaSilu) {
    return z * M::sigmoid(z);
  } else if constexpr (ACT == kBaGelu) {
    return A(0.5) * z * (A(1) + M::erf(z * A(kInvSqrt2)));
  } else {  // kBaGeluTanh
    const A t = M::tanh(A(kSqrt2OverPi) * (z + A(kGeluCubic) * z * z * z));
    return A(0.5) * z * (A(1) + t);
  }
}

template <int ACT, typename M, typename A>
BA_HOST_DEVICE A ba_deriv1(A z, A alpha) {
  if constexpr (ACT == kBaLinear) {
    return A(1);
  } else if constexpr (ACT == kBaRelu) {
    return z > A(0) ? A(1) : A(0);
  } else if constexpr (ACT == kBaLrelu) {
    return z > A(0) ? A(1) : alpha;
  } else if constexpr (ACT == kBaTanh) {
    const A t = M::tanh(z);
    return A(1) - t * t;
  } else if constexpr (ACT == kBaSigmoid) {
    const A s = M::sigmoid(z);
    return s * (A(1) - s);
  } else if constexpr (ACT == kBaElu) {
    return z > A(0) ? A(1) : alpha * M::exp(z);
  } else if constexpr (ACT == kBaSelu) {
    return z > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * M::exp(z);
  } else if constexpr (ACT == kBaSoftplus) {
    return alpha * z > A(kSoftplusThreshold) ? A(1) : M::sigmoid(alpha * z);
  } else if constexpr (ACT == kBaSilu) {
    const A s = M::sigmoid(z);
    return s * (A(1) + z * (A(1) - s));
  } else if constexpr (ACT == kBaGelu) {
    const A cdf = A(0.5) * (A(1) + M::erf(z * A(kInvSqrt2)));
    const A pdf = A(kInvSqrt2Pi) * M::exp(A(-0.5) * z * z);
    return cdf + z * pdf;
  } else {  // kBaGeluTanh
    const A z2 = z * z;
    const A t = M::tanh(A(kSqrt2OverPi) * (z + A(kGeluCubic) * z2 * z));
    const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * z2);
    return A(0.5) * (A(1) + t) + A(0.5) * z * (A(1) - t * t) * du;
  }
}

template <int ACT, typename M, typename A>
BA_HOST_DEVICE A ba_deriv2(A z, A alpha) {
  if constexpr (ACT == kBaLinear || ACT == kBaRelu || ACT == kBaLrelu) {
    return A(0);
  } else if constexpr (ACT == kBaTanh) {
    const A t = M::tanh(z);
    return A(-2) * t * (A(1) - t * t);
  } else if constexpr (ACT == kBaSigmoid) {
    const A s = M::sigmoid(z);
    return s * (A(1) - s) * (A(1) - A(2) * s);
  } else if constexpr (ACT == kBaElu) {
    return z > A(0) ? A(0) : alpha * M::exp(z);
  } else if constexpr (ACT == kBaSelu) {
    return z > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * M::exp(z);
  } else if constexpr (ACT == kBaSoftplus) {
    if (alpha * z > A(kSoftplusThreshold)) return A(0);
    const A s = M::sigmoid(alpha * z);
    return alpha * s * (A(1) - s);
  } else if constexpr (ACT == kBaSilu) {
    const A s = M::sigmoid(z);
    return s * (A(1) - s) * (A(2) + z * (A(1) - A(2) * s));
  } else if constexpr (ACT == kBaGelu) {
    return A(kInvSqrt2Pi) * M::exp(A(-0.5) * z * z) * (A(2) - z * z);
  } else {  // kBaGeluTanh: with u = k (z + c z^3), T = tanh(u), S = 1 - T^2: S u' - z T S u'^2 + z S u'' / 2
    const A z2 = z * z;
    const A t = M::tanh(A(kSqrt2OverPi) * (z + A(kGeluCubic) * z2 * z));
    const A s = A(1) - t * t;
    const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * z2);
    const A ddu = A(6 * kSqrt2OverPi * kGeluCubic) * z;
    return s * du - z * t * s * du * du + A(0.5) * z * s * ddu;
  }
}

// y-form (only for the kSavedY activations; r = y / gain; the branch of relu/lrelu/elu/selu is the sign of r,
// which needs alpha >= 0 and gain != 0: the Python side picks kSavedX otherwise).
template <int ACT, typename A>
BA_HOST_DEVICE A ba_ydiff1(A r, A alpha) {
  if constexpr (ACT == kBaLinear) {
    return A(1);
  } else if constexpr (ACT == kBaRelu) {
    return r > A(0) ? A(1) : A(0);
  } else if constexpr (ACT == kBaLrelu) {
    return r > A(0) ? A(1) : alpha;
  } else if constexpr (ACT == kBaTanh) {
    return A(1) - r * r;
  } else if constexpr (ACT == kBaSigmoid) {
    return r * (A(1) - r);
  } else if constexpr (ACT == kBaElu) {
    return r > A(0) ? A(1) : r + alpha;
  } else if constexpr (ACT == kBaSelu) {
    return r > A(0) ? A(kSeluScale) : r + A(kSeluScale * kSeluAlpha);
  } else {
    return A(0);  // never instantiated for the smooth-only activations
  }
}

template <int ACT, typename A>
BA_HOST_DEVICE A ba_ydiff2(A r, A alpha) {
  (void)alpha;
  if constexpr (ACT == kBaTanh) {
    return A(-2) * r;
  } else if constexpr (ACT == kBaSigmoid) {
    return A(1) - A(2) * r;
  } else if constexpr (ACT == kBaElu || ACT == kBaSelu) {
    return r > A(0) ? A(0) : A(1);
  } else {
    return A(0);
  }
}

// ---- CPU (raw pointers; every elementwise tensor in the layout described above; bias: [channels] or null).
// forward: y = clamp(act(x + b) * gain).
void bias_act_forward_cpu(DType dtype, const void* x, const void* bias, BiasActLayout layout,
                          const BiasActParams& params, void* y);
// backward: dx = dy * f(s), f = gain * act'(z) * [not clamped]; s = y (kSavedY; null for linear) or x, bias
// (kSavedX). db (nullable, [channels], storage dtype) = sum of dx over everything but the channel.
void bias_act_backward_cpu(DType dtype, const void* dy, const void* x, const void* bias, const void* y,
                           BiasActLayout layout, const BiasActParams& params, void* dx, void* db);
// double backward: with u the upstream gradient of dx, g_dy = u * f(s) and g_s = u * dy * df/ds (zero for the
// piecewise-linear activations: never computed). All outputs nullable; g_b = sum of g_s over all but the channel
// (kSavedX).
void bias_act_grad2_cpu(DType dtype, const void* u, const void* dy, const void* x, const void* bias, const void* y,
                        BiasActLayout layout, const BiasActParams& params, void* g_dy, void* g_s, void* g_b);

#ifdef FASTGAN_WITH_CUDA
// Accumulation-type elements of scratch space the CUDA backward / grad2 need for their deterministic bias sums.
int64_t bias_act_cuda_workspace(BiasActLayout layout);
void bias_act_forward_cuda(DType dtype, const void* x, const void* bias, BiasActLayout layout,
                           const BiasActParams& params, void* y, void* stream);
void bias_act_backward_cuda(DType dtype, const void* dy, const void* x, const void* bias, const void* y,
                            BiasActLayout layout, const BiasActParams& params, void* dx, void* db, void* workspace,
                            void* stream);
void bias_act_grad2_cuda(DType dtype, const void* u, const void* dy, const void* x, const void* bias, const void* y,
                         BiasActLayout layout, const BiasActParams& params, void* g_dy, void* g_s, void* g_b,
                         void* workspace, void* stream);
#endif

}  // namespace fastgan
