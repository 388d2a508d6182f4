// CUDA kernels of grad_norm_penalty. Forward: a (split, row) grid of blocks writes per-split partial sums of
// squares (no atomics: deterministic), then one thread per row finishes the norm and penalty. Backward: one
// grid-stride elementwise pass.
#include "common/cuda.cuh"
#include "grad_norm_penalty/grad_norm_penalty.h"

namespace fastgan {
namespace {

// Elements one block reduces: ~16 per thread keeps loads in flight while giving >= 4 blocks/SM at 64x3x32x32.
constexpr int64_t kElemsPerBlock = kThreads * 16;

int64_t splits_for(int64_t n) { return (n + kElemsPerBlock - 1) / kElemsPerBlock; }

template <typename T>
__global__ void partial_sum_squares(const T* __restrict__ grad, int64_t n, int64_t splits, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.y, split = blockIdx.x;
  const int64_t start = split * kElemsPerBlock;
  const int64_t end = min(n, start + kElemsPerBlock);
  const T* g = grad + row * n;
  A acc = A(0);
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const A v = to_acc(g[i]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[row * splits + split] = acc;
}

template <typename A>
__global__ void finish_penalty(const A* __restrict__ partial, int64_t batch, int64_t splits, A target, int mode,
                               A* __restrict__ penalty, A* __restrict__ norm) {
  const int64_t row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= batch) return;
  A total = A(0);
  for (int64_t s = 0; s < splits; ++s) total += partial[row * splits + s];
  const A value = sqrt(total);
  norm[row] = value;
  penalty[row] = gnp_penalty<A>(value, target, mode);
}

template <typename T>
__global__ void scale_rows(const T* __restrict__ grad, const acc_t<T>* __restrict__ norm,
                           const acc_t<T>* __restrict__ upstream, int64_t batch, int64_t n, acc_t<T> target, int mode,
                           T* __restrict__ out) {
  using A = acc_t<T>;
  const int64_t total = batch * n;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / n;
    const A factor = upstream[row] * gnp_grad_factor<A>(norm[row], target, mode);
    out[i] = from_acc<T>(factor * to_acc(grad[i]));
  }
}

}  // namespace

int64_t grad_norm_penalty_cuda_workspace(int64_t batch, int64_t n) { return batch * splits_for(n); }

void grad_norm_penalty_forward_cuda(DType dtype, const void* grad, int64_t batch, int64_t n, double target, int mode,
                                    void* penalty, void* norm, void* workspace, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t splits = splits_for(n);
    A* partial = static_cast<A*>(workspace);
    if (splits > 0) {
      partial_sum_squares<T><<<dim3(splits, batch), kThreads, 0, s>>>(static_cast<const T*>(grad), n, splits, partial);
      check_launch("grad_norm_penalty partial_sum_squares");
    }
    finish_penalty<A><<<(batch + kThreads - 1) / kThreads, kThreads, 0, s>>>(
        partial, batch, splits, static_cast<A>(target), mode, static_cast<A*>(penalty), static_cast<A*>(norm));
    check_launch("grad_norm_penalty finish_penalty");
  });
}

void grad_norm_penalty_backward_cuda(DType dtype, const void* grad, const void* norm, const void* upstream,
                                     int64_t batch, int64_t n, double target, int mode, void* grad_grad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    scale_rows<T><<<grid_for(batch * n), kThreads, 0, s>>>(
        static_cast<const T*>(grad), static_cast<const A*>(norm), static_cast<const A*>(upstream), batch, n,
        static_cast<A>(target), mode, static_cast<T*>(grad_grad));
    check_launch("grad_norm_penalty scale_rows");
  });
}

}  // namespace fastgan
