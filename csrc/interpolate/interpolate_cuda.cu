// CUDA kernels of interpolate. Backward: a (split, row) grid writes both input gradients and per-split partial dot
// products for alpha (no atomics: deterministic), then one thread per row sums its partials.
#include "common/cuda.cuh"
#include "interpolate/interpolate.h"

namespace fastgan {
namespace {

constexpr int64_t kElemsPerBlock = kThreads * 16;

int64_t splits_for(int64_t n) { return (n + kElemsPerBlock - 1) / kElemsPerBlock; }

template <typename T>
__global__ void interpolate_forward_kernel(const T* __restrict__ real, const T* __restrict__ fake,
                                           const acc_t<T>* __restrict__ alpha, int64_t batch, int64_t n,
                                           T* __restrict__ out) {
  using A = acc_t<T>;
  const int64_t total = batch * n;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const A w = alpha[i / n];
    out[i] = from_acc<T>(w * to_acc(real[i]) + (A(1) - w) * to_acc(fake[i]));
  }
}

template <typename T>
__global__ void interpolate_backward_kernel(const T* __restrict__ grad, const T* __restrict__ real,
                                            const T* __restrict__ fake, const acc_t<T>* __restrict__ alpha, int64_t n,
                                            int64_t splits, T* __restrict__ grad_real, T* __restrict__ grad_fake,
                                            acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.y, split = blockIdx.x;
  const int64_t start = row * n + split * kElemsPerBlock;
  const int64_t end = min(row * n + n, start + kElemsPerBlock);
  const A w = alpha[row], v = A(1) - w;
  A dot = A(0);
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const A g = to_acc(grad[i]);
    if (grad_real) grad_real[i] = from_acc<T>(w * g);
    if (grad_fake) grad_fake[i] = from_acc<T>(v * g);
    if (partial) dot += g * (to_acc(real[i]) - to_acc(fake[i]));
  }
  if (partial) {
    dot = block_sum(dot);
    if (threadIdx.x == 0) partial[row * splits + split] = dot;
  }
}

template <typename A>
__global__ void sum_partials(const A* __restrict__ partial, int64_t batch, int64_t splits, A* __restrict__ out) {
  const int64_t row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= batch) return;
  A total = A(0);
  for (int64_t s = 0; s < splits; ++s) total += partial[row * splits + s];
  out[row] = total;
}

}  // namespace

int64_t interpolate_cuda_workspace(int64_t batch, int64_t n) { return batch * splits_for(n); }

void interpolate_forward_cuda(DType dtype, const void* real, const void* fake, const void* alpha, int64_t batch,
                              int64_t n, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    interpolate_forward_kernel<T><<<grid_for(batch * n), kThreads, 0, s>>>(
        static_cast<const T*>(real), static_cast<const T*>(fake), static_cast<const A*>(alpha), batch, n,
        static_cast<T*>(out));
    check_launch("interpolate forward");
  });
}

void interpolate_backward_cuda(DType dtype, const void* grad, const void* real, const void* fake, const void* alpha,
                               int64_t batch, int64_t n, void* grad_real, void* grad_fake, void* grad_alpha,
                               void* workspace, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t splits = splits_for(n);
    A* partial = grad_alpha ? static_cast<A*>(workspace) : nullptr;
    if (splits > 0) {
      interpolate_backward_kernel<T><<<dim3(splits, batch), kThreads, 0, s>>>(
          static_cast<const T*>(grad), static_cast<const T*>(real), static_cast<const T*>(fake),
          static_cast<const A*>(alpha), n, splits, static_cast<T*>(grad_real), static_cast<T*>(grad_fake), partial);
      check_launch("interpolate backward");
    }
    if (grad_alpha) {
      sum_partials<A><<<(batch + kThreads - 1) / kThreads, kThreads, 0, s>>>(partial, batch, splits,
                                                                              static_cast<A*>(grad_alpha));
      check_launch("interpolate sum_partials");
    }
  });
}

}  // namespace fastgan
