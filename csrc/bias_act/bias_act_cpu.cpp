// CPU kernels of bias_act: one pass over memory per call (forward; backward with the bias gradient fused in;
// double backward), parallel over chunks with at::parallel_for.
//
// Layout: memory is [outer, channels, inner] (see bias_act.h). Two traversals:
//   rows    (inner > 1, e.g. NCHW with dim=1): runs of `inner` elements share one bias value;
//   columns (inner == 1, e.g. channels_last or [B, F] with dim=-1): every row of `channels` elements takes the
//            whole bias vector.
// Bias sums are deterministic: each task writes its own partial sums (per row chunk, or per block of rows), and
// the partials are added in a fixed order that does not depend on the number of threads.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "bias_act/bias_act.h"
#include "common/cpu.h"

namespace fastgan {
namespace {

// exp for float without a library call, so that gcc vectorises the loops that use it (Cephes' expf: Cody-Waite
// range reduction, degree-6 polynomial, 2^n built in the exponent bits; about 1 ulp on [-87, 88]). Inputs are
// clamped to that range: callers only need exp(x) for x <= 20 accurately, and tiny/huge values saturate harmlessly
// (sigmoid(-100) = 1 / (1 + 1.6e38) ~ 6e-39 instead of 3.7e-44).
inline float exp_f32(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick (no rounding instruction needed).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <typename A>
struct CpuMath;

template <>
struct CpuMath<float> {
  static float exp(float x) { return exp_f32(x); }
  static float expm1(float x) { return std::expm1(x); }
  static float log1p(float x) { return std::log1p(x); }
  static float erf(float x) { return std::erf(x); }
  static float sigmoid(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
  // tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1: no overflow; absolute error ~1 ulp.
  static float tanh(float x) {
    const float e = exp_f32(-2.0f * std::fabs(x));
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
  }
};

template <>
struct CpuMath<double> {
  static double exp(double x) { return std::exp(x); }
  static double expm1(double x) { return std::expm1(x); }
  static double log1p(double x) { return std::log1p(x); }
  static double erf(double x) { return std::erf(x); }
  static double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static double tanh(double x) { return std::tanh(x); }
};

template <typename A>
struct Params {
  A alpha, gain, inv_gain, clamp;
  bool has_clamp;
};

template <typename A>
Params<A> make_params(const BiasActParams& p) {
  Params<A> q;
  q.alpha = static_cast<A>(p.alpha);
  q.gain = static_cast<A>(p.gain);
  q.inv_gain = p.gain != 0.0 ? static_cast<A>(1.0 / p.gain) : A(0);
  q.has_clamp = p.clamp >= 0.0;
  q.clamp = static_cast<A>(q.has_clamp ? p.clamp : 0.0);
  return q;
}

template <int ACT>
constexpr bool kYForm = ACT == kBaLinear || ACT == kBaRelu || ACT == kBaLrelu || ACT == kBaTanh ||
                        ACT == kBaSigmoid || ACT == kBaElu || ACT == kBaSelu;

// y = clamp(gain * act(z)).
template <int ACT, typename A>
inline A out_value(A z, const Params<A>& p) {
  A v = ba_value<ACT, CpuMath<A>>(z, p.alpha) * p.gain;
  if (p.has_clamp) v = std::min(std::max(v, -p.clamp), p.clamp);
  return v;
}

// Clamp passes the gradient where |gain * act(z)| <= clamp (torch.clamp's rule; NaN passes).
template <int ACT, typename A>
inline A clamp_mask(A z, const Params<A>& p) {
  if (!p.has_clamp) return A(1);
  return std::fabs(ba_value<ACT, CpuMath<A>>(z, p.alpha) * p.gain) > p.clamp ? A(0) : A(1);
}

// f(s) = d y / d z and f'(s) = d f / d s, from the saved tensor s (y for kSavedY, z = x + b for kSavedX).
template <int ACT, int SAVED, typename A>
inline A factor(A s, const Params<A>& p) {
  if constexpr (SAVED == kSavedY) {
    return p.gain * ba_ydiff1<ACT, A>(s * p.inv_gain, p.alpha);
  } else {
    return p.gain * ba_deriv1<ACT, CpuMath<A>>(s, p.alpha) * clamp_mask<ACT>(s, p);
  }
}

template <int ACT, int SAVED, typename A>
inline A factor_slope(A s, const Params<A>& p) {
  if constexpr (SAVED == kSavedY) {
    return ba_ydiff2<ACT, A>(s * p.inv_gain, p.alpha);
  } else {
    return p.gain * ba_deriv2<ACT, CpuMath<A>>(s, p.alpha) * clamp_mask<ACT>(s, p);
  }
}

constexpr int kLanes = 16;

template <typename A>
inline A sum_lanes(const A* lanes) {
  A a[kLanes / 2];
  for (int k = 0; k < kLanes / 2; ++k) a[k] = lanes[k] + lanes[k + kLanes / 2];
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// ---- spans: n consecutive elements; VB: the bias is the vector bv[0..n) (columns traversal), else the scalar bs.
// RED: return the span's sum of the reduced value (rows) or add it to colsum[0..n) (columns).

template <typename T, int ACT, bool VB>
void forward_span(const T* __restrict__ x, T* __restrict__ y, int64_t n, acc_t<T> bs,
                  const acc_t<T>* __restrict__ bv, const Params<acc_t<T>>& params) {
  using A = acc_t<T>;
  const Params<A> p = params;
  for (int64_t i = 0; i < n; ++i) {
    const A z = static_cast<A>(x[i]) + (VB ? bv[i] : bs);
    y[i] = static_cast<T>(out_value<ACT>(z, p));
  }
}

template <typename T, int ACT, int SAVED, bool VB, bool RED>
acc_t<T> backward_span(const T* __restrict__ dy, const T* __restrict__ s, T* __restrict__ dx, int64_t n, acc_t<T> bs,
                       const acc_t<T>* __restrict__ bv, const Params<acc_t<T>>& params, acc_t<T>* __restrict__ colsum) {
  using A = acc_t<T>;
  const Params<A> p = params;
  auto grad = [&](int64_t j) -> A {
    if constexpr (ACT == kBaLinear && SAVED == kSavedY) {
      return static_cast<A>(dy[j]) * p.gain;  // nothing saved
    } else if constexpr (SAVED == kSavedY) {
      return static_cast<A>(dy[j]) * factor<ACT, SAVED>(static_cast<A>(s[j]), p);
    } else {
      return static_cast<A>(dy[j]) * factor<ACT, SAVED>(static_cast<A>(s[j]) + (VB ? bv[j] : bs), p);
    }
  };
  int64_t i = 0;
  A lanes[kLanes] = {};
  if constexpr (RED && !VB) {
    // Independent partial sums: vectorises without -ffast-math, and rounds less than one running sum.
    for (; i + kLanes <= n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const A d = grad(i + k);
        dx[i + k] = static_cast<T>(d);
        lanes[k] += d;
      }
    }
  }
  for (; i < n; ++i) {
    const A d = grad(i);
    dx[i] = static_cast<T>(d);
    if constexpr (RED) {
      if constexpr (VB) {
        colsum[i] += d;
      } else {
        lanes[0] += d;
      }
    }
  }
  return (RED && !VB) ? sum_lanes(lanes) : A(0);
}

template <typename T, int ACT, int SAVED, bool VB, bool RED>
acc_t<T> grad2_span(const T* __restrict__ u, const T* __restrict__ dy, const T* __restrict__ s, T* __restrict__ g_dy,
                    T* __restrict__ g_s, int64_t n, acc_t<T> bs, const acc_t<T>* __restrict__ bv,
                    const Params<acc_t<T>>& params, acc_t<T>* __restrict__ colsum) {
  using A = acc_t<T>;
  const Params<A> p = params;
  const bool want_dy = g_dy != nullptr, want_s = g_s != nullptr;
  auto saved = [&](int64_t j) -> A {
    if constexpr (SAVED == kSavedY) {
      if constexpr (ACT == kBaLinear) {
        return A(0);
      } else {
        return static_cast<A>(s[j]);
      }
    } else {
      return static_cast<A>(s[j]) + (VB ? bv[j] : bs);
    }
  };
  auto slope_term = [&](int64_t j, A sv) -> A {
    return static_cast<A>(u[j]) * static_cast<A>(dy[j]) * factor_slope<ACT, SAVED>(sv, p);
  };
  int64_t i = 0;
  A lanes[kLanes] = {};
  if constexpr (RED && !VB) {
    for (; i + kLanes <= n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const A sv = saved(i + k);
        if (want_dy) g_dy[i + k] = static_cast<T>(static_cast<A>(u[i + k]) * factor<ACT, SAVED>(sv, p));
        const A g = slope_term(i + k, sv);
        if (want_s) g_s[i + k] = static_cast<T>(g);
        lanes[k] += g;
      }
    }
  }
  for (; i < n; ++i) {
    const A sv = saved(i);
    if (want_dy) g_dy[i] = static_cast<T>(static_cast<A>(u[i]) * factor<ACT, SAVED>(sv, p));
    if constexpr (bias_act_piecewise_linear(ACT)) {
      continue;  // the second derivative is zero: nothing to write or sum
    } else {
      if (want_s || RED) {
        const A g = slope_term(i, sv);
        if (want_s) g_s[i] = static_cast<T>(g);
        if constexpr (RED) {
          if constexpr (VB) {
            colsum[i] += g;
          } else {
            lanes[0] += g;
          }
        }
      }
    }
  }
  return (RED && !VB) ? sum_lanes(lanes) : A(0);
}

// ---- traversal: calls span_rows(offset, n, bias scalar) -> sum, or span_cols(offset, colsum) for whole rows of
// `channels` elements, in parallel, and adds the reduced values per channel (deterministically) into `sums`.
template <typename A, typename Rows, typename Cols>
void traverse(BiasActLayout layout, const A* bias, bool reduce, std::vector<double>& sums, Rows&& span_rows,
              Cols&& span_cols) {
  const int64_t channels = layout.channels, inner = layout.inner, outer = layout.outer;
  const int64_t total = outer * channels * inner;
  if (reduce) sums.assign(channels, 0.0);
  if (total == 0) return;
  if (bias == nullptr && !reduce) {
    at::parallel_for(0, (total + kCpuChunk - 1) / kCpuChunk, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t start = t * kCpuChunk;
        span_rows(start, std::min(kCpuChunk, total - start), A(0));
      }
    });
    return;
  }
  if (inner == 1 && channels > 1) {
    // Columns: blocks of rows; each block owns `channels` partial sums.
    const int64_t rows_per_block = std::max<int64_t>(1, kCpuChunk / channels);
    const int64_t blocks = (outer + rows_per_block - 1) / rows_per_block;
    std::vector<A> partial(reduce ? blocks * channels : 0, A(0));
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        A* colsum = reduce ? partial.data() + b * channels : nullptr;
        const int64_t row_end = std::min(outer, (b + 1) * rows_per_block);
        for (int64_t row = b * rows_per_block; row < row_end; ++row) span_cols(row * channels, colsum);
      }
    });
    if (reduce) {
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t c = 0; c < channels; ++c) sums[c] += static_cast<double>(partial[b * channels + c]);
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
      const A s = span_rows(row * inner + start, std::min(kCpuChunk, inner - start), b);
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

// Calls fn(act tag, saved tag) for the valid (activation, saved form) pairs.
template <typename Fn>
void dispatch_act_saved(const BiasActParams& p, Fn&& fn) {
  dispatch_act(p.act, [&](auto act_tag) {
    constexpr int ACT = decltype(act_tag)::value;
    if (p.saved == kSavedY) {
      if constexpr (kYForm<ACT>) {
        fn(act_tag, std::integral_constant<int, kSavedY>{});
      } else {
        throw std::invalid_argument("fastgan: bias_act: this activation cannot recompute its derivative from y");
      }
    } else {
      fn(act_tag, std::integral_constant<int, kSavedX>{});
    }
  });
}

}  // namespace

void bias_act_forward_cpu(DType dtype, const void* x, const void* bias, BiasActLayout layout,
                          const BiasActParams& params, void* y) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
    const std::vector<A> b = bias_to_acc<T>(bias, layout.channels);
    const A* bp = bias != nullptr ? b.data() : nullptr;
    const Params<A> p = make_params<A>(params);
    std::vector<double> unused;
    dispatch_act(params.act, [&](auto act_tag) {
      constexpr int ACT = decltype(act_tag)::value;
      traverse<A>(
          layout, bp, false, unused,
          [&](int64_t off, int64_t n, A bs) {
            forward_span<T, ACT, false>(xp + off, yp + off, n, bs, nullptr, p);
            return A(0);
          },
          [&](int64_t off, A*) { forward_span<T, ACT, true>(xp + off, yp + off, layout.channels, A(0), bp, p); });
    });
  });
}

void bias_act_backward_cpu(DType dtype, const void* dy, const void* x, const void* bias, const void* y,
                           BiasActLayout layout, const BiasActParams& params, void* dx, void* db) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* dyp = static_cast<const T*>(dy);
    const T* sp = static_cast<const T*>(params.saved == kSavedY ? y : x);
    T* dxp = static_cast<T*>(dx);
    const std::vector<A> b = bias_to_acc<T>(params.saved == kSavedX ? bias : nullptr, layout.channels);
    const bool reduce = db != nullptr;
    // The traversal needs the bias vector (columns) when there is a bias to add or a bias gradient to sum.
    std::vector<A> zeros;
    const A* bp = b.empty() ? nullptr : b.data();
    if (bp == nullptr && reduce) {
      zeros.assign(layout.channels, A(0));
      bp = zeros.data();
    }
    const Params<A> p = make_params<A>(params);
    std::vector<double> sums;
    dispatch_act_saved(params, [&](auto act_tag, auto saved_tag) {
      constexpr int ACT = decltype(act_tag)::value;
      constexpr int SAVED = decltype(saved_tag)::value;
      auto rows = [&](int64_t off, int64_t n, A bs) -> A {
        const T* s = sp == nullptr ? nullptr : sp + off;
        if (reduce) {
          return backward_span<T, ACT, SAVED, false, true>(dyp + off, s, dxp + off, n, bs, nullptr, p, nullptr);
        }
        return backward_span<T, ACT, SAVED, false, false>(dyp + off, s, dxp + off, n, bs, nullptr, p, nullptr);
      };
      auto cols = [&](int64_t off, A* colsum) {
        const T* s = sp == nullptr ? nullptr : sp + off;
        if (reduce) {
          backward_span<T, ACT, SAVED, true, true>(dyp + off, s, dxp + off, layout.channels, A(0), bp, p, colsum);
        } else {
          backward_span<T, ACT, SAVED, true, false>(dyp + off, s, dxp + off, layout.channels, A(0), bp, p, nullptr);
        }
      };
      traverse<A>(layout, bp, reduce, sums, rows, cols);
    });
    if (reduce) store_sums<T>(sums, db);
  });
}

void bias_act_grad2_cpu(DType dtype, const void* u, const void* dy, const void* x, const void* bias, const void* y,
                        BiasActLayout layout, const BiasActParams& params, void* g_dy, void* g_s, void* g_b) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* up = static_cast<const T*>(u);
    const T* dyp = static_cast<const T*>(dy);
    const T* sp = static_cast<const T*>(params.saved == kSavedY ? y : x);
    T* gdyp = static_cast<T*>(g_dy);
    T* gsp = static_cast<T*>(g_s);
    const bool reduce = g_b != nullptr && params.saved == kSavedX && !bias_act_piecewise_linear(params.act);
    const std::vector<A> b = bias_to_acc<T>(params.saved == kSavedX ? bias : nullptr, layout.channels);
    std::vector<A> zeros;
    const A* bp = b.empty() ? nullptr : b.data();
    if (bp == nullptr && reduce) {
      zeros.assign(layout.channels, A(0));
      bp = zeros.data();
    }
    if (bias_act_piecewise_linear(params.act)) gsp = nullptr;  // zero: the caller never asks for it
    const Params<A> p = make_params<A>(params);
    std::vector<double> sums;
    dispatch_act_saved(params, [&](auto act_tag, auto saved_tag) {
      constexpr int ACT = decltype(act_tag)::value;
      constexpr int SAVED = decltype(saved_tag)::value;
      auto ptr = [](const T* base, int64_t off) { return base == nullptr ? nullptr : base + off; };
      auto mptr = [](T* base, int64_t off) { return base == nullptr ? nullptr : base + off; };
      auto rows = [&](int64_t off, int64_t n, A bs) -> A {
        if (reduce) {
          return grad2_span<T, ACT, SAVED, false, true>(up + off, ptr(dyp, off), ptr(sp, off), mptr(gdyp, off),
                                                        mptr(gsp, off), n, bs, nullptr, p, nullptr);
        }
        return grad2_span<T, ACT, SAVED, false, false>(up + off, ptr(dyp, off), ptr(sp, off), mptr(gdyp, off),
                                                       mptr(gsp, off), n, bs, nullptr, p, nullptr);
      };
      auto cols = [&](int64_t off, A* colsum) {
        if (reduce) {
          grad2_span<T, ACT, SAVED, true, true>(up + off, ptr(dyp, off), ptr(sp, off), mptr(gdyp, off),
                                                mptr(gsp, off), layout.channels, A(0), bp, p, colsum);
        } else {
          grad2_span<T, ACT, SAVED, true, false>(up + off, ptr(dyp, off), ptr(sp, off), mptr(gdyp, off),
                                                 mptr(gsp, off), layout.channels, A(0), bp, p, nullptr);
        }
      };
      traverse<A>(layout, bp, reduce, sums, rows, cols);
    });
    if (g_b != nullptr) {
      if (reduce) {
        store_sums<T>(sums, g_b);
      } else {
        T* o = static_cast<T*>(g_b);
        for (int64_t c = 0; c < layout.channels; ++c) o[c] = static_cast<T>(0.0f);
      }
    }
  });
}

}  // namespace fastgan
