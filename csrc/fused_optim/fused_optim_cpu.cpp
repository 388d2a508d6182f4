// CPU kernels of fused_optim: one at::parallel_for over the fixed-size chunks of every parameter. Each chunk is
// processed in L1-sized tiles in two loops that gcc vectorises (state update, then parameter update) with the
// square roots in between done by SSE2 (std::sqrt in a loop is not vectorised while it may set errno).
// Values are rounded to the storage type T wherever torch's single-tensor step writes a tensor (a no-op for fp32
// and fp64), so fp16/bf16 parameters follow torch's own trajectory rather than a more precise one.
//
// Bitwise agreement with torch on CPU: ATen's vectorised kernels (AVX2/AVX512 builds) compute a + b*c as one fused
// multiply-add (lerp explicitly, add(alpha=)/addcmul by contraction) and addcdiv without one. On CPUs with AVX2+FMA
// (where ATen runs those kernels) we take an AVX2 code path that calls std::fma at exactly those places, with
// contraction switched off everywhere else; elsewhere a plain SSE2 path without FMA, as ATen's default kernels.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/cpu.h"
#include "fused_optim/fused_optim.h"

namespace fastgan {
namespace {

constexpr int64_t kTile = 256;

#if FASTGAN_CPU_X86
#define FASTGAN_OPTIM_AVX2 __attribute__((target("avx2,fma"), optimize("fp-contract=off")))
#define FASTGAN_OPTIM_PLAIN __attribute__((optimize("fp-contract=off")))
#else
#define FASTGAN_OPTIM_PLAIN
#endif

// a * b + c, rounded once (kFma: as ATen's AVX2 kernels) or twice.
template <bool kFma, typename A>
FASTGAN_FORCE_INLINE A mul_add(A a, A b, A c) {
  if (kFma) return std::fma(a, b, c);
  return a * b + c;
}

// torch.lerp: the small-weight formula or the one anchored at `end`, each with one multiply-add.
template <bool kFma, typename A>
FASTGAN_FORCE_INLINE A lerp_of(A self, A end, A weight) {
  const A diff = end - self;
  return (weight < A(0.5) && weight > A(-0.5)) ? mul_add<kFma>(weight, diff, self)
                                               : mul_add<kFma>(-diff, A(1) - weight, end);
}
constexpr int64_t kSerialElems = 1 << 14;  // below this many elements in all, run on the calling thread

FASTGAN_FORCE_INLINE void sqrt_inplace(float* x, int64_t n) {
  int64_t i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

FASTGAN_FORCE_INLINE void sqrt_inplace(double* x, int64_t n) {
  int64_t i = 0;
#if defined(__SSE2__)
  for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// The clip bound rounded to the parameter's dtype first, as torch's clamp_ converts its scalars; +inf: no clamp.
template <typename T>
acc_t<T> bound_in(double clip) {
  using A = acc_t<T>;
  return std::isinf(clip) ? std::numeric_limits<A>::infinity() : static_cast<A>(static_cast<T>(clip));
}

// Runs body(tensor, start, n) over every (tensor, chunk) of the list in one parallel region.
template <typename Body>
void for_each_chunk(const OptimTensor* tensors, int64_t count, Body&& body) {
  std::vector<int64_t> first(count + 1, 0);
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    first[i + 1] = first[i] + (tensors[i].numel + kCpuChunk - 1) / kCpuChunk;
    total += tensors[i].numel;
  }
  const int64_t tasks = first[count];
  if (tasks == 0) return;
  at::parallel_for(0, tasks, total < kSerialElems ? tasks : 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1;
      const int64_t start = (task - first[i]) * kCpuChunk;
      body(tensors[i], start, std::min(kCpuChunk, tensors[i].numel - start));
    }
  });
}

// The value the storage type holds (identity for fp32/fp64): where torch's step writes a tensor.
template <typename T>
FASTGAN_FORCE_INLINE acc_t<T> rnd(acc_t<T> x) {
  return static_cast<acc_t<T>>(static_cast<T>(x));
}

template <typename T, bool kFma, bool kCentered, bool kMomentum, bool kWeightDecay>
FASTGAN_FORCE_INLINE void rmsprop_chunk(const OptimTensor& t, int64_t start, int64_t n, const RMSpropHyper& h) {
  using A = acc_t<T>;
  T* __restrict__ p = static_cast<T*>(t.param) + start;
  const T* __restrict__ g = static_cast<const T*>(t.grad) + start;
  T* __restrict__ sq = static_cast<T*>(t.state0) + start;
  T* __restrict__ ga = kCentered ? static_cast<T*>(t.state1) + start : nullptr;
  T* __restrict__ buf = kMomentum ? static_cast<T*>(t.state2) + start : nullptr;
  const A sign = h.maximize ? A(-1) : A(1), wd = static_cast<A>(h.weight_decay);
  const A alpha = static_cast<A>(h.alpha), one_minus_alpha = static_cast<A>(1 - h.alpha);
  const A eps = static_cast<A>(h.eps), neg_lr = static_cast<A>(-h.lr), momentum = static_cast<A>(h.momentum);
  const A hi = bound_in<T>(h.clip), lo = -hi;
  A den[kTile];
  for (int64_t base = 0; base < n; base += kTile) {
    const int64_t m = std::min(kTile, n - base);
    for (int64_t j = 0; j < m; ++j) {  // square_avg.mul_(alpha).addcmul_(g, g, 1 - alpha); grad_avg.lerp_(g, 1 - alpha)
      const int64_t i = base + j;
      A gi = sign * static_cast<A>(g[i]);
      if (kWeightDecay) gi = rnd<T>(mul_add<kFma>(wd, static_cast<A>(p[i]), gi));
      A s = rnd<T>(static_cast<A>(sq[i]) * alpha);
      s = rnd<T>(mul_add<kFma>(one_minus_alpha * gi, gi, s));
      sq[i] = static_cast<T>(s);
      if (kCentered) {
        const A a = rnd<T>(lerp_of<kFma>(static_cast<A>(ga[i]), gi, one_minus_alpha));
        ga[i] = static_cast<T>(a);
        s = rnd<T>(mul_add<kFma>(A(-1) * a, a, s));  // square_avg.addcmul(grad_avg, grad_avg, value=-1)
      }
      den[j] = s;
    }
    sqrt_inplace(den, m);
    for (int64_t j = 0; j < m; ++j) {  // avg = sqrt(.) + eps; parameter update; clamp
      const int64_t i = base + j;
      const A pi = static_cast<A>(p[i]);
      A gi = sign * static_cast<A>(g[i]);
      if (kWeightDecay) gi = rnd<T>(mul_add<kFma>(wd, pi, gi));
      const A avg = rnd<T>(rnd<T>(den[j]) + eps);
      A out;
      if (kMomentum) {  // buf.mul_(momentum).addcdiv_(g, avg); param.add_(buf, alpha=-lr)
        A b = rnd<T>(static_cast<A>(buf[i]) * momentum);
        b = rnd<T>(b + A(1) * gi / avg);
        buf[i] = static_cast<T>(b);
        out = mul_add<kFma>(neg_lr, b, pi);
      } else {  // param.addcdiv_(g, avg, value=-lr)
        out = pi + neg_lr * gi / avg;
      }
      p[i] = static_cast<T>(optim_clamp<A>(out, lo, hi));
    }
  }
}

template <typename T, bool kFma, int kWeightDecay /* 0 none, 1 L2, 2 decoupled */, bool kAmsgrad>
FASTGAN_FORCE_INLINE void adam_chunk(const OptimTensor& t, int64_t start, int64_t n, const AdamHyper& h) {
  using A = acc_t<T>;
  T* __restrict__ p = static_cast<T*>(t.param) + start;
  const T* __restrict__ g = static_cast<const T*>(t.grad) + start;
  T* __restrict__ exp_avg = static_cast<T*>(t.state0) + start;
  T* __restrict__ exp_avg_sq = static_cast<T*>(t.state1) + start;
  T* __restrict__ max_sq = kAmsgrad ? static_cast<T*>(t.state2) + start : nullptr;
  const A sign = h.maximize ? A(-1) : A(1), wd = static_cast<A>(h.weight_decay);
  const A decay = static_cast<A>(1 - h.lr * h.weight_decay);
  const A one_minus_beta1 = static_cast<A>(1 - h.beta1), beta2 = static_cast<A>(h.beta2);
  const A one_minus_beta2 = static_cast<A>(1 - h.beta2), eps = static_cast<A>(h.eps);
  const A neg_step = static_cast<A>(t.neg_step_size), bc2 = static_cast<A>(t.bias_correction2_sqrt);
  const A hi = bound_in<T>(h.clip), lo = -hi;
  A den[kTile];
  for (int64_t base = 0; base < n; base += kTile) {
    const int64_t m = std::min(kTile, n - base);
    for (int64_t j = 0; j < m; ++j) {  // moments (and the decoupled decay of the parameter)
      const int64_t i = base + j;
      A gi = sign * static_cast<A>(g[i]);
      if (kWeightDecay == 1) gi = rnd<T>(mul_add<kFma>(wd, static_cast<A>(p[i]), gi));
      if (kWeightDecay == 2) p[i] = static_cast<T>(static_cast<A>(p[i]) * decay);
      exp_avg[i] = static_cast<T>(lerp_of<kFma>(static_cast<A>(exp_avg[i]), gi, one_minus_beta1));
      A v = rnd<T>(static_cast<A>(exp_avg_sq[i]) * beta2);
      v = rnd<T>(mul_add<kFma>(one_minus_beta2 * gi, gi, v));
      exp_avg_sq[i] = static_cast<T>(v);
      if (kAmsgrad) {
        const A old = static_cast<A>(max_sq[i]);
        v = (old > v || old != old) ? old : v;  // torch.maximum propagates NaN
        max_sq[i] = static_cast<T>(v);
      }
      den[j] = v;
    }
    sqrt_inplace(den, m);
    for (int64_t j = 0; j < m; ++j) {  // denom = sqrt(v) / bc2 + eps; param.addcdiv_(m, denom, -step); clamp
      const int64_t i = base + j;
      const A d = rnd<T>(rnd<T>(rnd<T>(den[j]) / bc2) + eps);
      const A out = static_cast<A>(p[i]) + neg_step * static_cast<A>(exp_avg[i]) / d;
      p[i] = static_cast<T>(optim_clamp<A>(out, lo, hi));
    }
  }
}

template <typename T, bool kFma>
FASTGAN_FORCE_INLINE void rmsprop_any(const OptimTensor& t, int64_t start, int64_t n, const RMSpropHyper& h) {
  const bool c = h.centered, m = h.momentum > 0, w = h.weight_decay != 0;
  if (c && m && w) rmsprop_chunk<T, kFma, true, true, true>(t, start, n, h);
  else if (c && m) rmsprop_chunk<T, kFma, true, true, false>(t, start, n, h);
  else if (c && w) rmsprop_chunk<T, kFma, true, false, true>(t, start, n, h);
  else if (c) rmsprop_chunk<T, kFma, true, false, false>(t, start, n, h);
  else if (m && w) rmsprop_chunk<T, kFma, false, true, true>(t, start, n, h);
  else if (m) rmsprop_chunk<T, kFma, false, true, false>(t, start, n, h);
  else if (w) rmsprop_chunk<T, kFma, false, false, true>(t, start, n, h);
  else rmsprop_chunk<T, kFma, false, false, false>(t, start, n, h);
}

template <typename T, bool kFma>
FASTGAN_FORCE_INLINE void adam_any(const OptimTensor& t, int64_t start, int64_t n, const AdamHyper& h) {
  const int w = h.weight_decay == 0 ? 0 : (h.decoupled_weight_decay ? 2 : 1);
  if (h.amsgrad) {
    if (w == 0) adam_chunk<T, kFma, 0, true>(t, start, n, h);
    else if (w == 1) adam_chunk<T, kFma, 1, true>(t, start, n, h);
    else adam_chunk<T, kFma, 2, true>(t, start, n, h);
  } else {
    if (w == 0) adam_chunk<T, kFma, 0, false>(t, start, n, h);
    else if (w == 1) adam_chunk<T, kFma, 1, false>(t, start, n, h);
    else adam_chunk<T, kFma, 2, false>(t, start, n, h);
  }
}

// The entry points: the templates above are inlined into these and compiled for their target.
template <typename T>
FASTGAN_OPTIM_PLAIN void rmsprop_plain(const OptimTensor& t, int64_t start, int64_t n, const RMSpropHyper& h) {
  rmsprop_any<T, false>(t, start, n, h);
}
template <typename T>
FASTGAN_OPTIM_PLAIN void adam_plain(const OptimTensor& t, int64_t start, int64_t n, const AdamHyper& h) {
  adam_any<T, false>(t, start, n, h);
}
#if FASTGAN_CPU_X86
template <typename T>
FASTGAN_OPTIM_AVX2 void rmsprop_avx2(const OptimTensor& t, int64_t start, int64_t n, const RMSpropHyper& h) {
  rmsprop_any<T, true>(t, start, n, h);
}
template <typename T>
FASTGAN_OPTIM_AVX2 void adam_avx2(const OptimTensor& t, int64_t start, int64_t n, const AdamHyper& h) {
  adam_any<T, true>(t, start, n, h);
}
#endif

// ATen runs its AVX2/AVX512 kernels (with fused multiply-adds) when the CPU has them, unless
// ATEN_CPU_CAPABILITY=default asks for the plain ones: follow the same choice.
bool use_fma_path() {
#if FASTGAN_CPU_X86
  static const bool value = [] {
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    if (env != nullptr && std::string(env) == "default") return false;
    return cpu_isa() != CpuIsa::kBase;
  }();
  return value;
#else
  return false;
#endif
}

}  // namespace

void fused_optim_rmsprop_cpu(const OptimTensor* tensors, int64_t count, const RMSpropHyper& hyper) {
  const bool fma = use_fma_path();
  for_each_chunk(tensors, count, [&](const OptimTensor& t, int64_t start, int64_t n) {
    dispatch_cpu(t.dtype, [&](auto tag) {
      using T = decltype(tag);
#if FASTGAN_CPU_X86
      if (fma) return rmsprop_avx2<T>(t, start, n, hyper);
#endif
      rmsprop_plain<T>(t, start, n, hyper);
    });
  });
}

void fused_optim_adam_cpu(const OptimTensor* tensors, int64_t count, const AdamHyper& hyper) {
  const bool fma = use_fma_path();
  for_each_chunk(tensors, count, [&](const OptimTensor& t, int64_t start, int64_t n) {
    dispatch_cpu(t.dtype, [&](auto tag) {
      using T = decltype(tag);
#if FASTGAN_CPU_X86
      if (fma) return adam_avx2<T>(t, start, n, hyper);
#endif
      adam_plain<T>(t, start, n, hyper);
    });
  });
}

}  // namespace fastgan
