// CPU kernels of bias_act: one pass over memory per call (forward; backward with the bias gradient fused in;
// double backward), parallel with at::parallel_for.
//
// Structure (for speed and for compile time):
//  - traversal: memory is [outer, channels, inner] (see bias_act.h), walked as
//      rows    (inner >= kColumnsBelow, e.g. NCHW with dim=1): runs of `inner` elements share one bias value;
//      columns (short inner runs, e.g. channels_last, or [B, F] with dim=-1): each row of `channels * inner`
//               elements takes the bias vector expanded over inner;
//    templated on the storage type T only;
//  - maths: in blocks of at most kBlock elements of the accumulation type A (float, or double for fp64) that stay in
//    L1: the storage is converted in (fp16/bf16) or read in place (fp32/fp64), the bias added, then a branch-free
//    loop templated on (A, activation, saved form, clamp) runs, chosen once per call through a function pointer.
//    These loops are compiled for the baseline ISA, AVX2+FMA and AVX-512, picked at run time (cpu_isa): gcc vectorises
//    them (exp is a polynomial, not a libm call, for float).
// Bias sums are deterministic: each task writes its own partial sums (per row chunk, or per block of rows) and the
// partials are added in a fixed order that does not depend on the number of threads.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "common/cpu.h"

// The maths section below is compiled without -ftrapping-math (gcc's default): with it gcc will not if-convert
// float comparisons (the clamp in exp, min/max, branch selects), so none of these loops would vectorise. We never
// read floating-point exception flags. Everything the maths blocks inline is defined inside this region (gcc does
// not inline across different optimisation options), hence the header included here and the own min/max.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif
#include "bias_act/bias_act.h"
#include "common/cpu_math.h"

namespace fastgan {
namespace {

constexpr int64_t kBlock = 512;  // elements per maths block: 5 buffers of 512 doubles stay in L1

#define BA_INLINE FASTGAN_FORCE_INLINE

template <typename A>
BA_INLINE A ba_min(A a, A b) {
  return b < a ? b : a;
}

template <typename A>
BA_INLINE A ba_max(A a, A b) {
  return a < b ? b : a;
}

BA_INLINE float ba_abs(float x) { return __builtin_fabsf(x); }
BA_INLINE double ba_abs(double x) { return __builtin_fabs(x); }

// exp for float without a library call, so that gcc vectorises the loops that use it (common/cpu_math.h). The
// input saturates at +-60 (e^-60 = 8.7e-27). Callers need exp accurately only where it matters next to 1 (x <= 20
// and e^x added to 1, or multiplied by something O(1)), so the absolute error this leaves is below 1e-26. Saturating
// at the float range instead (+-87) is much slower: gcc evaluates the saturated branch as a constant in every lane
// and blends, and constants like sigmoid(-88) = 6e-39 then make every product denormal (a microcode assist each).
BA_INLINE float exp_f32(float x) { return cpu::exp_poly_f32(ba_min(ba_max(x, -60.0f), 60.0f)); }

BA_INLINE float bits_to_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

BA_INLINE int32_t float_to_bits(float f) {
  int32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// expm1 for float, vectorisable: the Taylor series to x^7 where |x| < 0.5 (relative error < 2e-8), exp(x) - 1 beyond.
BA_INLINE float expm1_f32(float x) {
  float p = 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float series = x + x * x * p;
  return ba_abs(x) < 0.5f ? series : exp_f32(x) - 1.0f;
}

// log1p for float u >= 0 (softplus), vectorisable: w = 1 + u = m 2^e with m in [sqrt(1/2), sqrt(2)) from the bits,
// log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^11 (error < 1e-9), and the rounding
// of 1 + u added back as (u - (w - 1)) / w.
BA_INLINE float log1p_f32(float u) {
  const float w = 1.0f + u;
  const int32_t bits = float_to_bits(w);
  int32_t e = ((bits >> 23) & 0xff) - 127;
  float m = bits_to_float((bits & 0x007fffff) | 0x3f800000);
  const bool high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  e = high ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float q = 1.0f / 11.0f;
  q = q * s2 + 1.0f / 9.0f;
  q = q * s2 + 1.0f / 7.0f;
  q = q * s2 + 1.0f / 5.0f;
  q = q * s2 + 1.0f / 3.0f;
  const float log_m = 2.0f * s + 2.0f * s * s2 * q;
  const float correction = (u - (w - 1.0f)) / w;
  return static_cast<float>(e) * 0.69314718056f + log_m + correction;
}

// erf for float, vectorisable, absolute error < 5e-7 (what gelu needs: it adds erf to 1): erfc(|x|) =
// t exp(-x^2 + P(t)) with t = 1 / (1 + |x| / 2) and P a degree-9 least-squares fit (ours, over |x| <= 10), and the
// Taylor series where |x| < 0.5 for relative accuracy near 0.
BA_INLINE float erf_f32(float x) {
  const float a = ba_abs(x);
  const float t = 1.0f / (1.0f + 0.5f * a);
  float p = -1.0327352858e-01f;
  p = p * t + 8.4028951857e-01f;
  p = p * t - 2.9416326908e+00f;
  p = p * t + 5.6772454761e+00f;
  p = p * t - 6.3880070600e+00f;
  p = p * t + 4.1240763018e+00f;
  p = p * t - 1.7466648312e+00f;
  p = p * t + 8.7771512724e-01f;
  p = p * t + 9.2015426138e-01f;
  p = p * t - 1.2599025745e+00f;
  const float tail = 1.0f - t * exp_f32(-a * a + p);
  const float x2 = x * x;
  float q = 1.0f / 9360.0f;
  q = q * x2 - 1.0f / 1320.0f;
  q = q * x2 + 1.0f / 216.0f;
  q = q * x2 - 1.0f / 42.0f;
  q = q * x2 + 1.0f / 10.0f;
  q = q * x2 - 1.0f / 3.0f;
  q = q * x2 + 1.0f;
  const float series = 1.12837916709551257f * x * q;  // 2 / sqrt(pi)
  return a < 0.5f ? series : (x < 0.0f ? -tail : tail);
}

template <typename A>
struct CpuMath;

template <>
struct CpuMath<float> {
  static BA_INLINE float exp(float x) { return exp_f32(x); }
  static BA_INLINE float expm1(float x) { return expm1_f32(x); }
  static BA_INLINE float log1p(float x) { return log1p_f32(x); }
  static BA_INLINE float erf(float x) { return erf_f32(x); }
  static BA_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
  // tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1: no overflow; absolute error ~1 ulp.
  static BA_INLINE float tanh(float x) {
    const float e = exp_f32(-2.0f * ba_abs(x));
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
  }
};

template <>
struct CpuMath<double> {
  static BA_INLINE double exp(double x) { return std::exp(x); }
  static BA_INLINE double expm1(double x) { return std::expm1(x); }
  static BA_INLINE double log1p(double x) { return std::log1p(x); }
  static BA_INLINE double erf(double x) { return std::erf(x); }
  static BA_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static BA_INLINE double tanh(double x) { return std::tanh(x); }
};

template <typename A>
struct Params {
  A alpha, gain, inv_gain, clamp;
  A negative;  // relu/lrelu: the derivative factor on the negative side (gain * alpha, or 0): a loop invariant
               // computed up front, so that the branch select vectorises
};

template <typename A>
Params<A> make_params(const BiasActParams& p) {
  Params<A> q;
  q.alpha = static_cast<A>(p.alpha);
  q.gain = static_cast<A>(p.gain);
  q.inv_gain = p.gain != 0.0 ? static_cast<A>(1.0 / p.gain) : A(0);
  q.clamp = static_cast<A>(p.clamp >= 0.0 ? p.clamp : 0.0);
  q.negative = p.act == kBaLrelu ? static_cast<A>(p.gain * p.alpha) : A(0);
  return q;
}

template <int ACT>
constexpr bool kYForm = ACT == kBaLinear || ACT == kBaRelu || ACT == kBaLrelu || ACT == kBaTanh ||
                        ACT == kBaSigmoid || ACT == kBaElu || ACT == kBaSelu;

// act(z): the piecewise-linear ones as min/max (branch-free: vectorises; NaN propagates as in torch), the others
// from the shared header.
template <int ACT, typename A>
BA_INLINE A act_value(A z, A alpha) {
  if constexpr (ACT == kBaRelu) {
    return ba_max(z, A(0));
  } else if constexpr (ACT == kBaLrelu) {
    return ba_max(z, A(0)) + alpha * ba_min(z, A(0));
  } else {
    return ba_value<ACT, CpuMath<A>>(z, alpha);
  }
}

// Clamp passes the gradient where |gain * act(z)| <= clamp (torch.clamp's rule; NaN passes).
template <int ACT, bool CLAMP, typename A>
BA_INLINE A clamp_mask(A z, const A alpha, const A gain, const A clamp) {
  if constexpr (!CLAMP) {
    return A(1);
  } else {
    return ba_abs(act_value<ACT>(z, alpha) * gain) > clamp ? A(0) : A(1);
  }
}

// f(s) = dy/dz and f'(s) = df/ds from the saved value s (y for kSavedY, z = x + b for kSavedX).
template <int ACT, int SAVED, bool CLAMP, typename A>
BA_INLINE A factor(A s, const A alpha, const A gain, const A inv_gain, const A clamp, const A negative) {
  if constexpr (ACT == kBaRelu || ACT == kBaLrelu) {
    // the sign of y / gain (kSavedY) or of z (kSavedX) picks the branch
    const A f = (SAVED == kSavedY ? s * inv_gain : s) > A(0) ? gain : negative;
    return f * clamp_mask<ACT, CLAMP>(s, alpha, gain, clamp);
  } else if constexpr (SAVED == kSavedY) {
    return gain * ba_ydiff1<ACT, A>(s * inv_gain, alpha);
  } else {
    return gain * ba_deriv1<ACT, CpuMath<A>>(s, alpha) * clamp_mask<ACT, CLAMP>(s, alpha, gain, clamp);
  }
}

template <int ACT, int SAVED, bool CLAMP, typename A>
BA_INLINE A factor_slope(A s, const A alpha, const A gain, const A inv_gain, const A clamp) {
  if constexpr (SAVED == kSavedY) {
    return ba_ydiff2<ACT, A>(s * inv_gain, alpha);
  } else {
    return gain * ba_deriv2<ACT, CpuMath<A>>(s, alpha) * clamp_mask<ACT, CLAMP>(s, alpha, gain, clamp);
  }
}

// ---- maths blocks (n <= kBlock, all buffers in the accumulation type)

template <typename A>
struct Blocks {
  // y = clamp(gain * act(z))
  using Forward = void (*)(const A* z, A* y, int64_t n, const Params<A>& p);
  // dx = dy * f(s); also g_dy = u * f(s) of the double backward (s: y or z; unused for linear)
  using Backward = void (*)(const A* dy, const A* s, A* dx, int64_t n, const Params<A>& p);
  // g_s = u * dy * f'(s); g_dy too when it is not null
  using Grad2S = void (*)(const A* u, const A* dy, const A* s, A* g_dy, A* g_s, int64_t n, const Params<A>& p);
  Forward forward;
  Backward backward;
  Grad2S grad2_s;
};

// Inside the block functions: the derivative factor and its slope at saved value v, with the call's constants.
#define BA_FACTOR(v) factor<ACT, SAVED, CLAMP>(v, alpha, gain, inv_gain, c, neg)
#define BA_SLOPE(v) factor_slope<ACT, SAVED, CLAMP>(v, alpha, gain, inv_gain, c)

#define BA_BLOCK_FUNCTIONS(SUFFIX, TARGET)                                                                            \
  template <typename A, int ACT, bool CLAMP>                                                                          \
  TARGET void forward_block##SUFFIX(const A* __restrict__ z, A* __restrict__ y, int64_t n, const Params<A>& p) {      \
    const A alpha = p.alpha, gain = p.gain, c = p.clamp;                                                              \
    for (int64_t i = 0; i < n; ++i) {                                                                                 \
      A v = act_value<ACT>(z[i], alpha) * gain;                                                                       \
      if constexpr (CLAMP) v = ba_min(ba_max(v, -c), c);                                                          \
      y[i] = v;                                                                                                       \
    }                                                                                                                 \
  }                                                                                                                   \
  template <typename A, int ACT, int SAVED, bool CLAMP>                                                               \
  TARGET void backward_block##SUFFIX(const A* __restrict__ dy, const A* __restrict__ s, A* __restrict__ dx,           \
                                     int64_t n, const Params<A>& p) {                                                 \
    const A alpha = p.alpha, gain = p.gain, inv_gain = p.inv_gain, c = p.clamp, neg = p.negative;                     \
    if constexpr (SAVED == kSavedY && ACT == kBaLinear) {                                                             \
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gain;                                                           \
    } else {                                                                                                          \
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * BA_FACTOR(s[i]);                                                \
    }                                                                                                                 \
  }                                                                                                                   \
  template <typename A, int ACT, int SAVED, bool CLAMP>                                                               \
  TARGET void grad2_s_block##SUFFIX(const A* __restrict__ u, const A* __restrict__ dy, const A* __restrict__ s,       \
                                    A* __restrict__ g_dy, A* __restrict__ g_s, int64_t n, const Params<A>& p) {       \
    const A alpha = p.alpha, gain = p.gain, inv_gain = p.inv_gain, c = p.clamp, neg = p.negative;                     \
    if (g_dy != nullptr) {                                                                                            \
      for (int64_t i = 0; i < n; ++i) {                                                                               \
        g_dy[i] = u[i] * BA_FACTOR(s[i]);                                                                             \
        g_s[i] = u[i] * dy[i] * BA_SLOPE(s[i]);                                                                       \
      }                                                                                                               \
    } else {                                                                                                          \
      for (int64_t i = 0; i < n; ++i) {                                                                               \
        g_s[i] = u[i] * dy[i] * BA_SLOPE(s[i]);                                                                       \
      }                                                                                                               \
    }                                                                                                                 \
  }

BA_BLOCK_FUNCTIONS(_base, )
#if FASTGAN_CPU_X86
BA_BLOCK_FUNCTIONS(_avx2, __attribute__((target("avx2,fma"))))
#define BA_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512"
BA_BLOCK_FUNCTIONS(_avx512, __attribute__((target(BA_AVX512))))
#endif

template <typename A, int ACT, int SAVED, bool CLAMP>
Blocks<A> blocks_for(CpuIsa isa) {
  Blocks<A> b{};
#if FASTGAN_CPU_X86
  if (isa == CpuIsa::kAvx512) {
    b.forward = &forward_block_avx512<A, ACT, CLAMP>;
    b.backward = &backward_block_avx512<A, ACT, SAVED, CLAMP>;
    b.grad2_s = &grad2_s_block_avx512<A, ACT, SAVED, CLAMP>;
    return b;
  }
  if (isa == CpuIsa::kAvx2) {
    b.forward = &forward_block_avx2<A, ACT, CLAMP>;
    b.backward = &backward_block_avx2<A, ACT, SAVED, CLAMP>;
    b.grad2_s = &grad2_s_block_avx2<A, ACT, SAVED, CLAMP>;
    return b;
  }
#endif
  (void)isa;
  b.forward = &forward_block_base<A, ACT, CLAMP>;
  b.backward = &backward_block_base<A, ACT, SAVED, CLAMP>;
  b.grad2_s = &grad2_s_block_base<A, ACT, SAVED, CLAMP>;
  return b;
}

}  // namespace
}  // namespace fastgan
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

namespace fastgan {
namespace {

template <typename Fn>
void dispatch_act(int act, Fn&& fn) {
  switch (act) {
    case kBaLinear: fn(std::integral_constant<int, kBaLinear>{}); break;
    case kBaRelu: fn(std::integral_constant<int, kBaRelu>{}); break;
    case kBaLrelu: fn(std::integral_constant<int, kBaLrelu>{}); break;
    case kBaTanh: fn(std::integral_constant<int, kBaTanh>{}); break;
    case kBaSigmoid: fn(std::integral_constant<int, kBaSigmoid>{}); break;
    case kBaElu: fn(std::integral_constant<int, kBaElu>{}); break;
    case kBaSelu: fn(std::integral_constant<int, kBaSelu>{}); break;
    case kBaSoftplus: fn(std::integral_constant<int, kBaSoftplus>{}); break;
    case kBaSilu: fn(std::integral_constant<int, kBaSilu>{}); break;
    case kBaGelu: fn(std::integral_constant<int, kBaGelu>{}); break;
    case kBaGeluTanh: fn(std::integral_constant<int, kBaGeluTanh>{}); break;
    default: throw std::invalid_argument("fastgan: bias_act: unknown activation code");
  }
}

// The maths blocks of one call. kSavedY never has a clamp (the Python side saves x when clamping).
template <typename A>
Blocks<A> select_blocks(const BiasActParams& p) {
  const CpuIsa isa = cpu_isa();
  const bool clamp = p.clamp >= 0.0;
  Blocks<A> out{};
  dispatch_act(p.act, [&](auto act_tag) {
    constexpr int ACT = decltype(act_tag)::value;
    if (p.saved == kSavedY) {
      if constexpr (kYForm<ACT>) {
        if (clamp) throw std::invalid_argument("fastgan: bias_act: a clamp needs saved=x");
        out = blocks_for<A, ACT, kSavedY, false>(isa);
      } else {
        throw std::invalid_argument("fastgan: bias_act: this activation cannot recompute its derivative from y");
      }
    } else {
      out = clamp ? blocks_for<A, ACT, kSavedX, true>(isa) : blocks_for<A, ACT, kSavedX, false>(isa);
    }
  });
  return out;
}

// ---- storage <-> accumulation type

// A pointer to n values of type A: the storage itself when T is A, else `buffer` filled with the converted values.
template <typename T, typename A>
BA_INLINE const A* as_acc(const T* p, int64_t n, A* buffer) {
  if constexpr (std::is_same<T, A>::value) {
    (void)n;
    (void)buffer;
    return p;
  } else {
    for (int64_t i = 0; i < n; ++i) buffer[i] = static_cast<A>(p[i]);
    return buffer;
  }
}

// Where to write n results of type A for storage p: p itself when T is A, else `buffer` (then store_acc).
template <typename T, typename A>
BA_INLINE A* out_acc(T* p, A* buffer) {
  if constexpr (std::is_same<T, A>::value) {
    (void)buffer;
    return p;
  } else {
    return buffer;
  }
}

template <typename T, typename A>
BA_INLINE void store_acc(const A* buffer, T* p, int64_t n) {
  if constexpr (!std::is_same<T, A>::value) {
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(buffer[i]);
  }
}

// z = x + bias (scalar bs, or the vector bv[0..n) when not null)
template <typename T, typename A>
BA_INLINE void load_z(const T* x, int64_t n, A bs, const A* bv, A* z) {
  if (bv != nullptr) {
    for (int64_t i = 0; i < n; ++i) z[i] = static_cast<A>(x[i]) + bv[i];
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = static_cast<A>(x[i]) + bs;
  }
}

constexpr int kLanes = 16;
// Layouts whose runs of one channel are shorter than this (channels_last: 1; small maps) go by columns.
constexpr int64_t kColumnsBelow = 128;
// Rows per block of the columns traversal at least: bounds its partial sums to 1/16 of the tensor.
constexpr int64_t kMinRowsPerBlock = 16;

// Sum of n values with 16 independent partial sums (vectorises without -ffast-math, rounds less).
template <typename A>
A block_sum(const A* v, int64_t n) {
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] += v[i + k];
  }
  for (; i < n; ++i) lanes[i % kLanes] += v[i];
  A half[kLanes / 2];
  for (int k = 0; k < kLanes / 2; ++k) half[k] = lanes[k] + lanes[k + kLanes / 2];
  return ((half[0] + half[4]) + (half[2] + half[6])) + ((half[1] + half[5]) + (half[3] + half[7]));
}

template <typename A>
BA_INLINE void add_columns(const A* v, int64_t n, A* colsum) {
  for (int64_t i = 0; i < n; ++i) colsum[i] += v[i];
}

// ---- traversal: calls span(offset, n, bias scalar, bias vector or null, colsum or null) -> sum of the reduced
// values (rows), in parallel, and adds the reduced values per channel (deterministically) into `sums`.
template <typename A, typename Span>
void traverse(BiasActLayout layout, const A* bias, bool reduce, std::vector<double>& sums, Span&& span) {
  const int64_t channels = layout.channels, inner = layout.inner, outer = layout.outer;
  const int64_t total = outer * channels * inner;
  if (reduce) sums.assign(channels, 0.0);
  if (total == 0) return;
  if (bias == nullptr && !reduce) {
    at::parallel_for(0, (total + kCpuChunk - 1) / kCpuChunk, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t start = t * kCpuChunk;
        span(start, std::min(kCpuChunk, total - start), A(0), nullptr, nullptr);
      }
    });
    return;
  }
  if (channels > 1 && inner < kColumnsBelow) {
    // Columns: each outer row is `width` = channels * inner elements with the bias expanded along them; blocks of
    // rows, each owning `width` partial sums, folded per channel at the end. Short rows of one channel (a 4x4 map
    // has inner = 16) would otherwise cost a call per 16 elements.
    const int64_t width = channels * inner;
    std::vector<A> expanded(width, A(0));
    if (bias != nullptr) {
      for (int64_t j = 0; j < width; ++j) expanded[j] = bias[j / inner];
    }
    const int64_t rows_per_block = std::max<int64_t>(kMinRowsPerBlock, (kCpuChunk + width - 1) / width);
    const int64_t blocks = (outer + rows_per_block - 1) / rows_per_block;
    std::vector<A> partial(reduce ? blocks * width : 0, A(0));
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        A* colsum = reduce ? partial.data() + b * width : nullptr;
        const int64_t row_end = std::min(outer, (b + 1) * rows_per_block);
        for (int64_t row = b * rows_per_block; row < row_end; ++row) {
          span(row * width, width, A(0), expanded.data(), colsum);
        }
      }
    });
    if (reduce) {
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t c = 0; c < channels; ++c) {
          double total = 0.0;
          for (int64_t k = 0; k < inner; ++k) total += static_cast<double>(partial[b * width + c * inner + k]);
          sums[c] += total;
        }
      }
    }
    return;
  }
  // Rows: each (outer, channel) row of `inner` elements, split into chunks of at most kCpuChunk.
  const int64_t chunks = (inner + kCpuChunk - 1) / kCpuChunk;
  const int64_t rows = outer * channels, tasks = rows * chunks;
  const int64_t grain = std::max<int64_t>(1, kCpuChunk / std::min(inner, kCpuChunk));
  std::vector<A> partial(reduce ? tasks : 0, A(0));
  at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t row = t / chunks, chunk = t % chunks;
      const int64_t start = chunk * kCpuChunk;
      const A b = bias != nullptr ? bias[row % channels] : A(0);
      const A s = span(row * inner + start, std::min(kCpuChunk, inner - start), b, nullptr, nullptr);
      if (reduce) partial[t] = s;
    }
  });
  if (reduce) {
    for (int64_t t = 0; t < tasks; ++t) sums[(t / chunks) % channels] += static_cast<double>(partial[t]);
  }
}

template <typename T>
std::vector<acc_t<T>> bias_to_acc(const void* bias, int64_t channels) {
  std::vector<acc_t<T>> out;
  if (bias == nullptr) return out;
  const T* b = static_cast<const T*>(bias);
  out.resize(channels);
  for (int64_t c = 0; c < channels; ++c) out[c] = static_cast<acc_t<T>>(b[c]);
  return out;
}

template <typename T>
void store_sums(const std::vector<double>& sums, void* out) {
  T* o = static_cast<T*>(out);
  for (size_t c = 0; c < sums.size(); ++c) o[c] = static_cast<T>(static_cast<acc_t<T>>(sums[c]));
}

// The reduced value of a block: its sum (rows) or added into the column sums (columns).
template <typename A>
BA_INLINE A reduce_block(const A* v, int64_t n, A* colsum) {
  if (colsum != nullptr) {
    add_columns(v, n, colsum);
    return A(0);
  }
  return block_sum(v, n);
}

template <typename T>
void forward_impl(const void* x, const void* bias, BiasActLayout layout, const BiasActParams& params, void* y) {
  using A = acc_t<T>;
  const T* xp = static_cast<const T*>(x);
  T* yp = static_cast<T*>(y);
  const std::vector<A> b = bias_to_acc<T>(bias, layout.channels);
  const Params<A> p = make_params<A>(params);
  const Blocks<A> blocks = select_blocks<A>(params);
  std::vector<double> unused;
  traverse<A>(layout, bias != nullptr ? b.data() : nullptr, false, unused,
              [&](int64_t off, int64_t n, A bs, const A* bv, A*) {
                alignas(64) A zb[kBlock], yb[kBlock];
                for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
                  const int64_t m = std::min(kBlock, n - i0);
                  load_z(xp + off + i0, m, bs, bv != nullptr ? bv + i0 : nullptr, zb);
                  A* out = out_acc<T, A>(yp + off + i0, yb);
                  blocks.forward(zb, out, m, p);
                  store_acc<T, A>(out, yp + off + i0, m);
                }
                return A(0);
              });
}

template <typename T>
void backward_impl(const void* dy, const void* x, const void* bias, const void* y, BiasActLayout layout,
                   const BiasActParams& params, void* dx, void* db) {
  using A = acc_t<T>;
  const T* dyp = static_cast<const T*>(dy);
  const bool saved_x = params.saved == kSavedX;
  const T* sp = static_cast<const T*>(saved_x ? x : y);
  T* dxp = static_cast<T*>(dx);
  const bool reduce = db != nullptr;
  std::vector<A> b = bias_to_acc<T>(saved_x ? bias : nullptr, layout.channels);
  if (b.empty() && reduce) b.assign(layout.channels, A(0));  // the columns traversal walks a bias vector
  const Params<A> p = make_params<A>(params);
  const Blocks<A> blocks = select_blocks<A>(params);
  std::vector<double> sums;
  traverse<A>(layout, b.empty() ? nullptr : b.data(), reduce, sums,
              [&](int64_t off, int64_t n, A bs, const A* bv, A* colsum) {
                alignas(64) A dyb[kBlock], sb[kBlock], dxb[kBlock];
                A total = A(0);
                for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
                  const int64_t m = std::min(kBlock, n - i0);
                  const A* d = as_acc<T, A>(dyp + off + i0, m, dyb);
                  const A* s = nullptr;
                  if (saved_x) {
                    load_z(sp + off + i0, m, bs, bv != nullptr ? bv + i0 : nullptr, sb);
                    s = sb;
                  } else if (sp != nullptr) {
                    s = as_acc<T, A>(sp + off + i0, m, sb);
                  }
                  A* out = out_acc<T, A>(dxp + off + i0, dxb);
                  blocks.backward(d, s, out, m, p);
                  if (reduce) total += reduce_block(out, m, colsum != nullptr ? colsum + i0 : nullptr);
                  store_acc<T, A>(out, dxp + off + i0, m);
                }
                return total;
              });
  if (reduce) store_sums<T>(sums, db);
}

template <typename T>
void grad2_impl(const void* u, const void* dy, const void* x, const void* bias, const void* y, BiasActLayout layout,
                const BiasActParams& params, void* g_dy, void* g_s, void* g_b) {
  using A = acc_t<T>;
  const T* up = static_cast<const T*>(u);
  const T* dyp = static_cast<const T*>(dy);
  const bool saved_x = params.saved == kSavedX;
  const T* sp = static_cast<const T*>(saved_x ? x : y);
  T* gdyp = static_cast<T*>(g_dy);
  const bool smooth = !bias_act_piecewise_linear(params.act);
  T* gsp = smooth ? static_cast<T*>(g_s) : nullptr;  // zero for linear/relu/lrelu: never asked for
  const bool reduce = g_b != nullptr && saved_x && smooth;
  const bool slope = gsp != nullptr || reduce;
  std::vector<A> b = bias_to_acc<T>(saved_x ? bias : nullptr, layout.channels);
  if (b.empty() && reduce) b.assign(layout.channels, A(0));
  const Params<A> p = make_params<A>(params);
  const Blocks<A> blocks = select_blocks<A>(params);
  std::vector<double> sums;
  if (gdyp != nullptr || slope) {
    traverse<A>(layout, b.empty() ? nullptr : b.data(), reduce, sums,
                [&](int64_t off, int64_t n, A bs, const A* bv, A* colsum) {
                  alignas(64) A ub[kBlock], dyb[kBlock], sb[kBlock], gdyb[kBlock], gsb[kBlock];
                  A total = A(0);
                  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
                    const int64_t m = std::min(kBlock, n - i0);
                    const A* uu = as_acc<T, A>(up + off + i0, m, ub);
                    const A* s = nullptr;
                    if (saved_x) {
                      load_z(sp + off + i0, m, bs, bv != nullptr ? bv + i0 : nullptr, sb);
                      s = sb;
                    } else if (sp != nullptr) {
                      s = as_acc<T, A>(sp + off + i0, m, sb);
                    }
                    A* out_dy = gdyp != nullptr ? out_acc<T, A>(gdyp + off + i0, gdyb) : nullptr;
                    if (slope) {
                      const A* d = as_acc<T, A>(dyp + off + i0, m, dyb);
                      A* out_s = gsp != nullptr ? out_acc<T, A>(gsp + off + i0, gsb) : gsb;
                      blocks.grad2_s(uu, d, s, out_dy, out_s, m, p);
                      if (reduce) total += reduce_block(out_s, m, colsum != nullptr ? colsum + i0 : nullptr);
                      if (gsp != nullptr) store_acc<T, A>(out_s, gsp + off + i0, m);
                    } else {
                      blocks.backward(uu, s, out_dy, m, p);  // g_dy = u * f(s): the backward's formula
                    }
                    if (out_dy != nullptr) store_acc<T, A>(out_dy, gdyp + off + i0, m);
                  }
                  return total;
                });
  }
  if (g_b != nullptr) {
    if (reduce) {
      store_sums<T>(sums, g_b);
    } else {
      T* o = static_cast<T*>(g_b);
      for (int64_t c = 0; c < layout.channels; ++c) o[c] = static_cast<T>(0.0f);
    }
  }
}

}  // namespace

void bias_act_forward_cpu(DType dtype, const void* x, const void* bias, BiasActLayout layout,
                          const BiasActParams& params, void* y) {
  dispatch_cpu(dtype, [&](auto tag) { forward_impl<decltype(tag)>(x, bias, layout, params, y); });
}

void bias_act_backward_cpu(DType dtype, const void* dy, const void* x, const void* bias, const void* y,
                           BiasActLayout layout, const BiasActParams& params, void* dx, void* db) {
  dispatch_cpu(dtype, [&](auto tag) { backward_impl<decltype(tag)>(dy, x, bias, y, layout, params, dx, db); });
}

void bias_act_grad2_cpu(DType dtype, const void* u, const void* dy, const void* x, const void* bias, const void* y,
                        BiasActLayout layout, const BiasActParams& params, void* g_dy, void* g_s, void* g_b) {
  dispatch_cpu(dtype,
               [&](auto tag) { grad2_impl<decltype(tag)>(u, dy, x, bias, y, layout, params, g_dy, g_s, g_b); });
}

}  // namespace fastgan
