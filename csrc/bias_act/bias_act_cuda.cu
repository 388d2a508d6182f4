// CUDA kernels of bias_act. CUDA headers only (no torch): raw pointers and a stream.
//
// Memory [outer, channels, inner] is read as a matrix [outer, L] with L = channels * inner. A block owns a run of
// blockDim.x consecutive columns (so loads of one row are coalesced, channels_last or not) and a range of rows;
// each thread keeps one column, whose channel j / inner it computes once: no division per element. Bias sums:
// every thread writes its column's partial sum over its rows to the workspace ([splits, L]); a second kernel gives
// each channel one block that adds its partials in a fixed order (deterministic, no atomics).
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "bias_act/bias_act.h"
#include "common/cuda.cuh"

namespace fastgan {
namespace {

template <typename A>
struct CudaMath;

template <>
struct CudaMath<float> {
  static __device__ __forceinline__ float exp(float x) { return expf(x); }
  static __device__ __forceinline__ float expm1(float x) { return expm1f(x); }
  static __device__ __forceinline__ float log1p(float x) { return log1pf(x); }
  static __device__ __forceinline__ float tanh(float x) { return tanhf(x); }
  static __device__ __forceinline__ float erf(float x) { return erff(x); }
  static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
};

template <>
struct CudaMath<double> {
  static __device__ __forceinline__ double exp(double x) { return ::exp(x); }
  static __device__ __forceinline__ double expm1(double x) { return ::expm1(x); }
  static __device__ __forceinline__ double log1p(double x) { return ::log1p(x); }
  static __device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
  static __device__ __forceinline__ double erf(double x) { return ::erf(x); }
  static __device__ __forceinline__ double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }
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

template <int ACT, typename A>
__device__ __forceinline__ A clamp_mask(A z, const Params<A>& p) {
  if (!p.has_clamp) return A(1);
  return fabs(ba_value<ACT, CudaMath<A>>(z, p.alpha) * p.gain) > p.clamp ? A(0) : A(1);
}

template <int ACT, int SAVED, typename A>
__device__ __forceinline__ A factor(A s, const Params<A>& p) {
  if constexpr (SAVED == kSavedY) {
    return p.gain * ba_ydiff1<ACT, A>(s * p.inv_gain, p.alpha);
  } else {
    return p.gain * ba_deriv1<ACT, CudaMath<A>>(s, p.alpha) * clamp_mask<ACT>(s, p);
  }
}

template <int ACT, int SAVED, typename A>
__device__ __forceinline__ A factor_slope(A s, const Params<A>& p) {
  if constexpr (SAVED == kSavedY) {
    return ba_ydiff2<ACT, A>(s * p.inv_gain, p.alpha);
  } else {
    return p.gain * ba_deriv2<ACT, CudaMath<A>>(s, p.alpha) * clamp_mask<ACT>(s, p);
  }
}

// Geometry shared by the launchers and the workspace size.
struct Geometry {
  int64_t cols;            // L = channels * inner
  int64_t rows;            // outer
  int64_t rows_per_split;
  int64_t splits;
  int threads;
  int64_t col_blocks;
};

Geometry geometry(BiasActLayout layout) {
  Geometry g;
  g.cols = layout.channels * layout.inner;
  g.rows = layout.outer;
  g.threads = g.cols >= kThreads ? kThreads : static_cast<int>(((g.cols + 31) / 32) * 32);
  if (g.threads < 32) g.threads = 32;
  g.col_blocks = (g.cols + g.threads - 1) / g.threads;
  // 32 rows per thread keeps several loads in flight and the workspace at 1/32 of the data; more when the grid's
  // y dimension (65535) would overflow.
  g.rows_per_split = std::max<int64_t>(32, (g.rows + 65534) / 65535);
  g.splits = std::max<int64_t>(1, (g.rows + g.rows_per_split - 1) / g.rows_per_split);
  return g;
}

template <typename T, int ACT>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y, int64_t cols,
                               int64_t rows, int64_t rows_per_split, int64_t inner, Params<acc_t<T>> p) {
  using A = acc_t<T>;
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const A b = bias != nullptr ? to_acc(bias[j / inner]) : A(0);
  const int64_t r0 = blockIdx.y * rows_per_split, r1 = min(rows, r0 + rows_per_split);
#pragma unroll 4
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + j;
    A v = ba_value<ACT, CudaMath<A>>(to_acc(x[i]) + b, p.alpha) * p.gain;
    if (p.has_clamp) v = v < -p.clamp ? -p.clamp : (v > p.clamp ? p.clamp : v);  // NaN passes, as torch.clamp
    y[i] = from_acc<T>(v);
  }
}

template <typename T, int ACT, int SAVED>
__global__ void backward_kernel(const T* __restrict__ dy, const T* __restrict__ s, const T* __restrict__ bias,
                                T* __restrict__ dx, acc_t<T>* __restrict__ partial, int64_t cols, int64_t rows,
                                int64_t rows_per_split, int64_t inner, Params<acc_t<T>> p) {
  using A = acc_t<T>;
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const A b = (SAVED == kSavedX && bias != nullptr) ? to_acc(bias[j / inner]) : A(0);
  const int64_t r0 = blockIdx.y * rows_per_split, r1 = min(rows, r0 + rows_per_split);
  A total = A(0);
#pragma unroll 4
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + j;
    A d;
    if constexpr (SAVED == kSavedY && ACT == kBaLinear) {
      d = to_acc(dy[i]) * p.gain;
    } else if constexpr (SAVED == kSavedY) {
      d = to_acc(dy[i]) * factor<ACT, SAVED>(to_acc(s[i]), p);
    } else {
      d = to_acc(dy[i]) * factor<ACT, SAVED>(to_acc(s[i]) + b, p);
    }
    dx[i] = from_acc<T>(d);
    total += d;
  }
  if (partial != nullptr) partial[blockIdx.y * cols + j] = total;
}

template <typename T, int ACT, int SAVED>
__global__ void grad2_kernel(const T* __restrict__ u, const T* __restrict__ dy, const T* __restrict__ s,
                             const T* __restrict__ bias, T* __restrict__ g_dy, T* __restrict__ g_s,
                             acc_t<T>* __restrict__ partial, int64_t cols, int64_t rows, int64_t rows_per_split,
                             int64_t inner, Params<acc_t<T>> p) {
  using A = acc_t<T>;
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const A b = (SAVED == kSavedX && bias != nullptr) ? to_acc(bias[j / inner]) : A(0);
  const int64_t r0 = blockIdx.y * rows_per_split, r1 = min(rows, r0 + rows_per_split);
  const bool slope = !bias_act_piecewise_linear(ACT) && (g_s != nullptr || partial != nullptr);
  A total = A(0);
#pragma unroll 4
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + j;
    const A uv = to_acc(u[i]);
    A sv = A(0);
    if constexpr (!(SAVED == kSavedY && ACT == kBaLinear)) sv = to_acc(s[i]) + b;
    if (g_dy != nullptr) g_dy[i] = from_acc<T>(uv * factor<ACT, SAVED>(sv, p));
    if (slope) {
      const A g = uv * to_acc(dy[i]) * factor_slope<ACT, SAVED>(sv, p);
      if (g_s != nullptr) g_s[i] = from_acc<T>(g);
      total += g;
    }
  }
  if (partial != nullptr) partial[blockIdx.y * cols + j] = total;
}

// out[c] = sum over splits and the channel's `inner` columns of partial[split, c * inner + k], one block per channel,
// each thread a fixed strided subset, then a fixed-shape block reduction: the same order on every run.
template <typename T>
__global__ void finish_kernel(const acc_t<T>* __restrict__ partial, T* __restrict__ out, int64_t channels,
                              int64_t inner, int64_t cols, int64_t splits) {
  using A = acc_t<T>;
  const int64_t c = blockIdx.x;
  const int64_t count = splits * inner;
  A total = A(0);
  for (int64_t q = threadIdx.x; q < count; q += blockDim.x) {
    const int64_t split = q / inner, k = q % inner;
    total += partial[split * cols + c * inner + k];
  }
  total = block_sum(total);
  if (threadIdx.x == 0 && c < channels) out[c] = from_acc<T>(total);
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

int64_t bias_act_cuda_workspace(BiasActLayout layout) {
  const Geometry g = geometry(layout);
  return g.splits * g.cols;
}

void bias_act_forward_cuda(DType dtype, const void* x, const void* bias, BiasActLayout layout,
                           const BiasActParams& params, void* y, void* stream) {
  const Geometry g = geometry(layout);
  if (g.cols == 0 || g.rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const Params<A> p = make_params<A>(params);
    dispatch_act(params.act, [&](auto act_tag) {
      constexpr int ACT = decltype(act_tag)::value;
      forward_kernel<T, ACT><<<dim3(g.col_blocks, g.splits), g.threads, 0, s>>>(
          static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<T*>(y), g.cols, g.rows,
          g.rows_per_split, layout.inner, p);
    });
    check_launch("bias_act forward");
  });
}

void bias_act_backward_cuda(DType dtype, const void* dy, const void* x, const void* bias, const void* y,
                            BiasActLayout layout, const BiasActParams& params, void* dx, void* db, void* workspace,
                            void* stream) {
  const Geometry g = geometry(layout);
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const Params<A> p = make_params<A>(params);
    A* partial = db != nullptr ? static_cast<A*>(workspace) : nullptr;
    if (g.cols > 0 && g.rows > 0) {
      dispatch_act_saved(params, [&](auto act_tag, auto saved_tag) {
        constexpr int ACT = decltype(act_tag)::value;
        constexpr int SAVED = decltype(saved_tag)::value;
        const T* saved = static_cast<const T*>(SAVED == kSavedY ? y : x);
        backward_kernel<T, ACT, SAVED><<<dim3(g.col_blocks, g.splits), g.threads, 0, s>>>(
            static_cast<const T*>(dy), saved, static_cast<const T*>(bias), static_cast<T*>(dx), partial, g.cols,
            g.rows, g.rows_per_split, layout.inner, p);
      });
      check_launch("bias_act backward");
    } else if (db != nullptr) {
      cudaMemsetAsync(workspace, 0, sizeof(A) * std::max<int64_t>(1, g.splits * g.cols), s);
    }
    if (db != nullptr && layout.channels > 0) {
      finish_kernel<T><<<layout.channels, kThreads, 0, s>>>(partial, static_cast<T*>(db), layout.channels,
                                                            layout.inner, g.cols, g.rows > 0 ? g.splits : 0);
      check_launch("bias_act bias sum");
    }
  });
}

void bias_act_grad2_cuda(DType dtype, const void* u, const void* dy, const void* x, const void* bias, const void* y,
                         BiasActLayout layout, const BiasActParams& params, void* g_dy, void* g_s, void* g_b,
                         void* workspace, void* stream) {
  const Geometry g = geometry(layout);
  auto s = static_cast<cudaStream_t>(stream);
  const bool reduce = g_b != nullptr && params.saved == kSavedX && !bias_act_piecewise_linear(params.act);
  if (bias_act_piecewise_linear(params.act)) g_s = nullptr;
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const Params<A> p = make_params<A>(params);
    A* partial = reduce ? static_cast<A*>(workspace) : nullptr;
    if (g.cols > 0 && g.rows > 0 && (g_dy != nullptr || g_s != nullptr || reduce)) {
      dispatch_act_saved(params, [&](auto act_tag, auto saved_tag) {
        constexpr int ACT = decltype(act_tag)::value;
        constexpr int SAVED = decltype(saved_tag)::value;
        const T* saved = static_cast<const T*>(SAVED == kSavedY ? y : x);
        grad2_kernel<T, ACT, SAVED><<<dim3(g.col_blocks, g.splits), g.threads, 0, s>>>(
            static_cast<const T*>(u), static_cast<const T*>(dy), saved, static_cast<const T*>(bias),
            static_cast<T*>(g_dy), static_cast<T*>(g_s), partial, g.cols, g.rows, g.rows_per_split, layout.inner,
            p);
      });
      check_launch("bias_act grad2");
    }
    if (g_b != nullptr && layout.channels > 0) {
      if (reduce && g.cols > 0 && g.rows > 0) {
        finish_kernel<T><<<layout.channels, kThreads, 0, s>>>(partial, static_cast<T*>(g_b), layout.channels,
                                                              layout.inner, g.cols, g.splits);
        check_launch("bias_act grad2 bias sum");
      } else {
        cudaMemsetAsync(g_b, 0, layout.channels * (dtype == DType::Float64 ? 8 : dtype == DType::Float32 ? 4 : 2), s);
      }
    }
  });
}

}  // namespace fastgan
