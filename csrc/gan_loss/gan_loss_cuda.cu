// CUDA kernels of gan_loss. Forward: each block takes a contiguous chunk of the index space, writes the per-element
// loss or gradient and one (real, fake) partial sum; a single block (the same one when the whole batch fits in one
// chunk, as it does for B <= 2048) adds the partials in a fixed order. No atomics: deterministic.
#include "common/cuda.cuh"
#include "gan_loss/gan_loss.h"

namespace fastgan {
namespace {

constexpr int64_t kElemsPerBlock = kThreads * 8;

int64_t blocks_for(int64_t total) { return (total + kElemsPerBlock - 1) / kElemsPerBlock; }

// Sum of two values over the block (blockDim.x a multiple of 32); valid in thread 0.
template <typename A>
__device__ __forceinline__ void block_sum2(A& x, A& y) {
  __shared__ A sx[32], sy[32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_down_sync(0xffffffffu, x, offset);
    y += __shfl_down_sync(0xffffffffu, y, offset);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sx[warp] = x;
    sy[warp] = y;
  }
  __syncthreads();
  const int warps = blockDim.x >> 5;
  x = threadIdx.x < warps ? sx[lane] : A(0);
  y = threadIdx.x < warps ? sy[lane] : A(0);
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      x += __shfl_down_sync(0xffffffffu, x, offset);
      y += __shfl_down_sync(0xffffffffu, y, offset);
    }
  }
}

template <typename T>
__global__ void gan_loss_chunks(const T* __restrict__ real, int64_t n_real, const T* __restrict__ fake, int64_t n_fake,
                                bool paired, int kind, int player, int reduction, acc_t<T> ta, acc_t<T> tb,
                                acc_t<T> tc, acc_t<T> scale_r, acc_t<T> scale_f, acc_t<T>* __restrict__ loss,
                                acc_t<T>* __restrict__ grad, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  const int64_t total = paired ? n_fake : n_real + n_fake;
  const int64_t lo = blockIdx.x * kElemsPerBlock;
  const int64_t hi = min(total, lo + kElemsPerBlock);
  const bool none = reduction == kReduceNone;
  A sum_r = A(0), sum_f = A(0);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    A l;
    if (paired) {
      A dr, df;
      gan_pair_term<A>(kind, player, to_acc(real[i]), to_acc(fake[i]), ta, tb, tc, l, dr, df);
      sum_f += l;
      if (grad) {
        grad[i] = dr * scale_r;
        grad[n_real + i] = df * scale_f;
      }
    } else if (i < n_real) {
      A d;
      gan_real_term<A>(kind, to_acc(real[i]), tb, l, d);
      sum_r += l;
      if (grad) grad[i] = d * scale_r;
    } else {
      A d;
      gan_fake_term<A>(kind, player, to_acc(fake[i - n_real]), ta, tc, l, d);
      sum_f += l;
      if (grad) grad[i] = d * scale_f;
    }
    if (none) loss[i] = l;
  }
  if (none) return;
  block_sum2(sum_r, sum_f);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) {
      loss[0] = sum_r * scale_r + sum_f * scale_f;
    } else {
      partial[2 * blockIdx.x] = sum_r;
      partial[2 * blockIdx.x + 1] = sum_f;
    }
  }
}

template <typename A>
__global__ void gan_loss_finish(const A* __restrict__ partial, int64_t blocks, A scale_r, A scale_f,
                                A* __restrict__ loss) {
  A sum_r = A(0), sum_f = A(0);
  for (int64_t k = threadIdx.x; k < blocks; k += blockDim.x) {
    sum_r += partial[2 * k];
    sum_f += partial[2 * k + 1];
  }
  block_sum2(sum_r, sum_f);
  if (threadIdx.x == 0) loss[0] = sum_r * scale_r + sum_f * scale_f;
}

template <typename T>
__global__ void gan_loss_scale(const acc_t<T>* __restrict__ upstream, int64_t m, const acc_t<T>* __restrict__ grad,
                               int64_t n, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    out[i] = from_acc<T>(upstream[m == 1 ? 0 : i % m] * grad[i]);
  }
}

}  // namespace

int64_t gan_loss_cuda_workspace(int64_t total) { return 2 * blocks_for(total); }

void gan_loss_forward_cuda(DType dtype, const void* real, int64_t n_real, const void* fake, int64_t n_fake,
                           bool paired, int kind, int player, int reduction, double a, double b, double c, void* loss,
                           void* grad, void* workspace, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t total = paired ? n_fake : n_real + n_fake;
    const int64_t blocks = blocks_for(total);
    if (blocks == 0) return;
    A scale_r = A(1), scale_f = A(1);
    if (reduction == kReduceMean) {
      scale_r = n_real > 0 ? A(1) / static_cast<A>(paired ? total : n_real) : A(1);
      scale_f = A(1) / static_cast<A>(paired ? total : n_fake);
    }
    A* partial = static_cast<A*>(workspace);
    gan_loss_chunks<T><<<blocks, kThreads, 0, s>>>(
        static_cast<const T*>(real), n_real, static_cast<const T*>(fake), n_fake, paired, kind, player, reduction,
        static_cast<A>(a), static_cast<A>(b), static_cast<A>(c), scale_r, scale_f, static_cast<A*>(loss),
        static_cast<A*>(grad), partial);
    check_launch("gan_loss chunks");
    if (reduction != kReduceNone && blocks > 1) {
      gan_loss_finish<A><<<1, kThreads, 0, s>>>(partial, blocks, scale_r, scale_f, static_cast<A*>(loss));
      check_launch("gan_loss finish");
    }
  });
}

void gan_loss_backward_cuda(DType dtype, const void* upstream, int64_t m, const void* grad, int64_t n, void* out,
                            void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    gan_loss_scale<T><<<grid_for(n), kThreads, 0, s>>>(static_cast<const A*>(upstream), m,
                                                        static_cast<const A*>(grad), n, static_cast<T*>(out));
    check_launch("gan_loss scale");
  });
}

}  // namespace fastgan
