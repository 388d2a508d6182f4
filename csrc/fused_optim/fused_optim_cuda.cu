// CUDA kernels of fused_optim: multi-tensor launches. The host packs up to kOptimMaxTensors parameters (pointers
// to param, grad and states, sizes, dtypes, per-parameter scalars) into a table passed by value; block b finds its
// parameter by binary search over the first blocks and updates one chunk of it: optimizer step and clamp in one
// read and one write of every tensor. Parameters of different dtypes share a launch (the dtype is per block).
#include <limits>

#include "common/cuda.cuh"
#include "fused_optim/fused_optim.h"

namespace fastgan {
namespace {

constexpr int kOptimMaxTensors = 40;
constexpr int kOptimThreads = 256;
constexpr int64_t kOptimChunk = kOptimThreads * 16;  // elements per block

struct OptimTable {
  void* param[kOptimMaxTensors];
  const void* grad[kOptimMaxTensors];
  void* state0[kOptimMaxTensors];
  void* state1[kOptimMaxTensors];
  void* state2[kOptimMaxTensors];
  int64_t numel[kOptimMaxTensors];
  double neg_step_size[kOptimMaxTensors];
  double bias_correction2_sqrt[kOptimMaxTensors];
  int32_t first_block[kOptimMaxTensors + 1];
  int8_t dtype[kOptimMaxTensors];
  int32_t count;
};
static_assert(sizeof(OptimTable) + sizeof(AdamHyper) < 4000, "the table must fit the 4 KiB kernel-parameter limit");

// IEEE round-to-nearest square root and division: the build uses --use_fast_math, whose approximate versions
// would drift from torch.optim by a few ulp per step.
__device__ __forceinline__ float optim_sqrt(float x) { return __fsqrt_rn(x); }
__device__ __forceinline__ double optim_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float optim_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double optim_div(double a, double b) { return a / b; }

// Rounds to the storage type where torch's single-tensor step writes a tensor (identity for fp32/fp64).
template <typename T>
__device__ __forceinline__ acc_t<T> rnd(acc_t<T> x) { return to_acc(from_acc<T>(x)); }

template <typename T>
__device__ __forceinline__ acc_t<T> clip_bound(double clip) {
  using A = acc_t<T>;
  return isinf(clip) ? A(clip) : to_acc(from_acc<T>(static_cast<A>(clip)));
}

__device__ __forceinline__ int find_tensor(const int32_t* first_block, int count) {
  const int32_t block = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (first_block[mid] <= block) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename T, bool kCentered, bool kMomentum, bool kWeightDecay>
__device__ void rmsprop_chunk(const OptimTable& table, int k, int64_t start, int64_t n, const RMSpropHyper& h) {
  using A = acc_t<T>;
  T* __restrict__ p = static_cast<T*>(table.param[k]) + start;
  const T* __restrict__ g = static_cast<const T*>(table.grad[k]) + start;
  T* __restrict__ sq = static_cast<T*>(table.state0[k]) + start;
  T* __restrict__ ga = kCentered ? static_cast<T*>(table.state1[k]) + start : nullptr;
  T* __restrict__ buf = kMomentum ? static_cast<T*>(table.state2[k]) + start : nullptr;
  const A sign = h.maximize ? A(-1) : A(1), wd = static_cast<A>(h.weight_decay);
  const A alpha = static_cast<A>(h.alpha), one_minus_alpha = static_cast<A>(1 - h.alpha);
  const A eps = static_cast<A>(h.eps), neg_lr = static_cast<A>(-h.lr), momentum = static_cast<A>(h.momentum);
  const A hi = clip_bound<T>(h.clip), lo = -hi;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const A pi = to_acc(p[i]);
    A gi = sign * to_acc(g[i]);
    if (kWeightDecay) gi = rnd<T>(gi + wd * pi);
    A s = rnd<T>(to_acc(sq[i]) * alpha);
    s = rnd<T>(s + one_minus_alpha * gi * gi);
    sq[i] = from_acc<T>(s);
    A avg;
    if (kCentered) {
      const A a = rnd<T>(optim_lerp<A>(to_acc(ga[i]), gi, one_minus_alpha));
      ga[i] = from_acc<T>(a);
      avg = rnd<T>(optim_sqrt(rnd<T>(s + A(-1) * a * a)));
    } else {
      avg = rnd<T>(optim_sqrt(s));
    }
    avg = rnd<T>(avg + eps);
    A out;
    if (kMomentum) {
      A b = rnd<T>(to_acc(buf[i]) * momentum);
      b = rnd<T>(b + optim_div(gi, avg));
      buf[i] = from_acc<T>(b);
      out = pi + neg_lr * b;
    } else {
      out = pi + optim_div(neg_lr * gi, avg);
    }
    p[i] = from_acc<T>(optim_clamp<A>(out, lo, hi));
  }
}

template <typename T, int kWeightDecay, bool kAmsgrad>
__device__ void adam_chunk(const OptimTable& table, int k, int64_t start, int64_t n, const AdamHyper& h) {
  using A = acc_t<T>;
  T* __restrict__ p = static_cast<T*>(table.param[k]) + start;
  const T* __restrict__ g = static_cast<const T*>(table.grad[k]) + start;
  T* __restrict__ exp_avg = static_cast<T*>(table.state0[k]) + start;
  T* __restrict__ exp_avg_sq = static_cast<T*>(table.state1[k]) + start;
  T* __restrict__ max_sq = kAmsgrad ? static_cast<T*>(table.state2[k]) + start : nullptr;
  const A sign = h.maximize ? A(-1) : A(1), wd = static_cast<A>(h.weight_decay);
  const A decay = static_cast<A>(1 - h.lr * h.weight_decay);
  const A one_minus_beta1 = static_cast<A>(1 - h.beta1), beta2 = static_cast<A>(h.beta2);
  const A one_minus_beta2 = static_cast<A>(1 - h.beta2), eps = static_cast<A>(h.eps);
  const A neg_step = static_cast<A>(table.neg_step_size[k]);
  const A bc2 = static_cast<A>(table.bias_correction2_sqrt[k]);
  const A hi = clip_bound<T>(h.clip), lo = -hi;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    A pi = to_acc(p[i]);
    A gi = sign * to_acc(g[i]);
    if (kWeightDecay == 1) gi = rnd<T>(gi + wd * pi);
    if (kWeightDecay == 2) pi = rnd<T>(pi * decay);
    const A m = rnd<T>(optim_lerp<A>(to_acc(exp_avg[i]), gi, one_minus_beta1));
    exp_avg[i] = from_acc<T>(m);
    A v = rnd<T>(to_acc(exp_avg_sq[i]) * beta2);
    v = rnd<T>(v + one_minus_beta2 * gi * gi);
    exp_avg_sq[i] = from_acc<T>(v);
    if (kAmsgrad) {
      const A old = to_acc(max_sq[i]);
      v = (old > v || old != old) ? old : v;  // torch.maximum propagates NaN
      max_sq[i] = from_acc<T>(v);
    }
    const A d = rnd<T>(rnd<T>(optim_div(rnd<T>(optim_sqrt(v)), bc2)) + eps);
    p[i] = from_acc<T>(optim_clamp<A>(pi + optim_div(neg_step * m, d), lo, hi));
  }
}

template <bool kCentered, bool kMomentum, bool kWeightDecay>
__global__ void __launch_bounds__(kOptimThreads) rmsprop_kernel(OptimTable table, RMSpropHyper hyper) {
  const int k = find_tensor(table.first_block, table.count);
  const int64_t start = static_cast<int64_t>(blockIdx.x - table.first_block[k]) * kOptimChunk;
  const int64_t n = min(kOptimChunk, table.numel[k] - start);
  switch (static_cast<DType>(table.dtype[k])) {
    case DType::Float32: rmsprop_chunk<float, kCentered, kMomentum, kWeightDecay>(table, k, start, n, hyper); break;
    case DType::Float64: rmsprop_chunk<double, kCentered, kMomentum, kWeightDecay>(table, k, start, n, hyper); break;
    case DType::Float16: rmsprop_chunk<__half, kCentered, kMomentum, kWeightDecay>(table, k, start, n, hyper); break;
    case DType::BFloat16:
      rmsprop_chunk<__nv_bfloat16, kCentered, kMomentum, kWeightDecay>(table, k, start, n, hyper);
      break;
  }
}

template <int kWeightDecay, bool kAmsgrad>
__global__ void __launch_bounds__(kOptimThreads) adam_kernel(OptimTable table, AdamHyper hyper) {
  const int k = find_tensor(table.first_block, table.count);
  const int64_t start = static_cast<int64_t>(blockIdx.x - table.first_block[k]) * kOptimChunk;
  const int64_t n = min(kOptimChunk, table.numel[k] - start);
  switch (static_cast<DType>(table.dtype[k])) {
    case DType::Float32: adam_chunk<float, kWeightDecay, kAmsgrad>(table, k, start, n, hyper); break;
    case DType::Float64: adam_chunk<double, kWeightDecay, kAmsgrad>(table, k, start, n, hyper); break;
    case DType::Float16: adam_chunk<__half, kWeightDecay, kAmsgrad>(table, k, start, n, hyper); break;
    case DType::BFloat16: adam_chunk<__nv_bfloat16, kWeightDecay, kAmsgrad>(table, k, start, n, hyper); break;
  }
}

// Packs the tensors into tables of at most kOptimMaxTensors and calls launch(table, blocks) for each.
template <typename Launch>
void for_each_table(const OptimTensor* tensors, int64_t count, Launch&& launch) {
  OptimTable table;
  table.count = 0;
  table.first_block[0] = 0;
  auto flush = [&]() {
    if (table.count == 0) return;
    launch(table, table.first_block[table.count]);
    table.count = 0;
    table.first_block[0] = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    const OptimTensor& t = tensors[i];
    if (t.numel == 0) continue;
    const int64_t blocks = (t.numel + kOptimChunk - 1) / kOptimChunk;
    if (blocks > (int64_t(1) << 30)) throw std::invalid_argument("fastgan: fused_optim parameter too large");
    if (table.count == kOptimMaxTensors || table.first_block[table.count] + blocks > (int64_t(1) << 30)) flush();
    const int c = table.count;
    table.param[c] = t.param;
    table.grad[c] = t.grad;
    table.state0[c] = t.state0;
    table.state1[c] = t.state1;
    table.state2[c] = t.state2;
    table.numel[c] = t.numel;
    table.neg_step_size[c] = t.neg_step_size;
    table.bias_correction2_sqrt[c] = t.bias_correction2_sqrt;
    table.dtype[c] = static_cast<int8_t>(t.dtype);
    table.first_block[c + 1] = table.first_block[c] + static_cast<int32_t>(blocks);
    table.count = c + 1;
  }
  flush();
}

}  // namespace

void fused_optim_rmsprop_cuda(const OptimTensor* tensors, int64_t count, const RMSpropHyper& hyper, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const bool c = hyper.centered, m = hyper.momentum > 0, w = hyper.weight_decay != 0;
  for_each_table(tensors, count, [&](const OptimTable& table, int32_t blocks) {
#define FASTGAN_RMSPROP_LAUNCH(C, M, W) rmsprop_kernel<C, M, W><<<blocks, kOptimThreads, 0, s>>>(table, hyper)
    if (c) {
      if (m) { if (w) FASTGAN_RMSPROP_LAUNCH(true, true, true); else FASTGAN_RMSPROP_LAUNCH(true, true, false); }
      else { if (w) FASTGAN_RMSPROP_LAUNCH(true, false, true); else FASTGAN_RMSPROP_LAUNCH(true, false, false); }
    } else {
      if (m) { if (w) FASTGAN_RMSPROP_LAUNCH(false, true, true); else FASTGAN_RMSPROP_LAUNCH(false, true, false); }
      else { if (w) FASTGAN_RMSPROP_LAUNCH(false, false, true); else FASTGAN_RMSPROP_LAUNCH(false, false, false); }
    }
#undef FASTGAN_RMSPROP_LAUNCH
    check_launch("fused_optim rmsprop");
  });
}

void fused_optim_adam_cuda(const OptimTensor* tensors, int64_t count, const AdamHyper& hyper, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const int w = hyper.weight_decay == 0 ? 0 : (hyper.decoupled_weight_decay ? 2 : 1);
  for_each_table(tensors, count, [&](const OptimTable& table, int32_t blocks) {
    if (hyper.amsgrad) {
      if (w == 0) adam_kernel<0, true><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
      else if (w == 1) adam_kernel<1, true><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
      else adam_kernel<2, true><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
    } else {
      if (w == 0) adam_kernel<0, false><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
      else if (w == 1) adam_kernel<1, false><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
      else adam_kernel<2, false><<<blocks, kOptimThreads, 0, s>>>(table, hyper);
    }
    check_launch("fused_optim adam");
  });
}

}  // namespace fastgan
