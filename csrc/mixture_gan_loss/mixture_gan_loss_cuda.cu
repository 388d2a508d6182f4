// CUDA kernels of mixture_gan_loss. A work item is (discriminator j, chunk of kThreads samples): one thread per
// sample loops over the generators i, writes the logits' gradients, accumulates d/d real over i in a register and
// leaves one block-reduced partial sum per (i, j, chunk). An epilogue run by one block turns the partials into the
// per-pair means, the losses and the weight-logit gradients. When T_g*T_d*B is small (MIX+GAN's usual T <= 8,
// B <= 512) one block does all of it in a single launch; otherwise a grid of items, then a one-block epilogue.
// No atomics: deterministic.
#include "common/cuda.cuh"
#include "mixture_gan_loss/mixture_gan_loss.h"

namespace fastgan {
namespace {

constexpr int64_t kSingleBlockMax = 1 << 15;  // T_g*T_d*B handled by one fused launch

template <typename A>
struct SoftmaxStats {
  A top, log_sum;
};

// Every thread computes the (tiny) softmax statistics itself: no shared state, no sync.
template <typename A>
__device__ SoftmaxStats<A> softmax_stats(const A* __restrict__ x, int64_t count) {
  A top = x[0];
  for (int64_t k = 1; k < count; ++k) top = x[k] > top ? x[k] : top;
  A sum = A(0);
  for (int64_t k = 0; k < count; ++k) sum += exp(x[k] - top);
  return {top, log(sum)};
}

template <typename A>
__device__ __forceinline__ A log_weight(const A* x, int64_t k, SoftmaxStats<A> st) {
  return x[k] - st.top - st.log_sum;
}

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
  __syncthreads();  // the shared arrays are reused by the next call
}

template <typename T>
struct MixArgs {
  using A = acc_t<T>;
  const T* real;
  const T* fake;
  const A* gw;
  const A* dw;
  int64_t tg, td, batch, chunks;
  int kind, reg;
  A ta, tb, tc, lambda;
  A* d_loss;
  A* g_loss;
  A* jac;      // nullptr when no gradient is needed
  A* part_d;   // [tg*td*chunks]
  A* part_g;
  A* scratch;  // [2*tg*td + 2*tg + 2*td]
};

template <typename T>
__device__ void mix_item(const MixArgs<T>& args, int64_t item, SoftmaxStats<acc_t<T>> ps,
                         SoftmaxStats<acc_t<T>> qs) {
  using A = acc_t<T>;
  const int64_t tg = args.tg, td = args.td, batch = args.batch;
  const int64_t j = item / args.chunks, k = item % args.chunks;
  const int64_t b = k * blockDim.x + threadIdx.x;
  const bool valid = b < batch;
  const int64_t n_r = td * batch, n_f = tg * td * batch, section = n_r + n_f + tg + td;
  const A inv_b = A(1) / static_cast<A>(batch);
  const A qj = exp(log_weight(args.dw, j, qs));
  const A r = valid ? to_acc(args.real[j * batch + b]) : A(0);
  A acc_d = A(0), acc_g = A(0);
  for (int64_t i = 0; i < tg; ++i) {
    const A pi = exp(log_weight(args.gw, i, ps));
    const int64_t pair = i * td + j;
    A ld = A(0), lg = A(0);
    if (valid) {
      const int64_t at = pair * batch + b;
      const A f = to_acc(args.fake[at]);
      A drd, dfd, drg, dfg;
      gan_pair_term<A>(args.kind, kDiscriminator, r, f, args.ta, args.tb, args.tc, ld, drd, dfd);
      gan_pair_term<A>(args.kind, kGenerator, r, f, args.ta, args.tb, args.tc, lg, drg, dfg);
      if (args.jac) {
        const A w = pi * qj * inv_b;
        args.jac[n_r + at] = w * dfd;
        args.jac[section + n_r + at] = w * dfg;
        acc_d += pi * drd;
        acc_g += pi * drg;
      }
    }
    block_sum2(ld, lg);
    if (threadIdx.x == 0) {
      args.part_d[pair * args.chunks + k] = ld;
      args.part_g[pair * args.chunks + k] = lg;
    }
  }
  if (valid && args.jac) {
    args.jac[j * batch + b] = qj * inv_b * acc_d;
    args.jac[section + j * batch + b] = qj * inv_b * acc_g;
  }
}

// One block: per-pair means -> row/column sums -> losses and weight-logit gradients.
template <typename T>
__device__ void mix_finish(const MixArgs<T>& args, SoftmaxStats<acc_t<T>> ps, SoftmaxStats<acc_t<T>> qs) {
  using A = acc_t<T>;
  const int64_t tg = args.tg, td = args.td, pairs = tg * td;
  const int64_t n_r = td * args.batch, n_f = tg * td * args.batch, section = n_r + n_f + tg + td;
  const A inv_b = A(1) / static_cast<A>(args.batch);
  A* phi_d = args.scratch;
  A* phi_g = phi_d + pairs;
  A* row_d = phi_g + pairs;
  A* row_g = row_d + tg;
  A* col_d = row_g + tg;
  A* col_g = col_d + td;
  for (int64_t pair = threadIdx.x; pair < pairs; pair += blockDim.x) {
    A sd = A(0), sg = A(0);
    for (int64_t k = 0; k < args.chunks; ++k) {
      sd += args.part_d[pair * args.chunks + k];
      sg += args.part_g[pair * args.chunks + k];
    }
    phi_d[pair] = sd * inv_b;
    phi_g[pair] = sg * inv_b;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < tg; i += blockDim.x) {
    A sd = A(0), sg = A(0);
    for (int64_t j = 0; j < td; ++j) {
      const A qj = exp(log_weight(args.dw, j, qs));
      sd += qj * phi_d[i * td + j];
      sg += qj * phi_g[i * td + j];
    }
    row_d[i] = sd;
    row_g[i] = sg;
  }
  for (int64_t j = threadIdx.x; j < td; j += blockDim.x) {
    A sd = A(0), sg = A(0);
    for (int64_t i = 0; i < tg; ++i) {
      const A pi = exp(log_weight(args.gw, i, ps));
      sd += pi * phi_d[i * td + j];
      sg += pi * phi_g[i * td + j];
    }
    col_d[j] = sd;
    col_g[j] = sg;
  }
  __syncthreads();
  __shared__ A totals[4];  // mean_d, mean_g, reg_d, reg_g
  if (threadIdx.x == 0) {
    A mean_d = A(0), mean_g = A(0);
    for (int64_t i = 0; i < tg; ++i) {
      const A pi = exp(log_weight(args.gw, i, ps));
      mean_d += pi * row_d[i];
      mean_g += pi * row_g[i];
    }
    // The regulariser needs log w and w; mix_reg_value takes arrays, so evaluate it inline here.
    A reg_d = A(0), reg_g = A(0);
    for (int64_t j = 0; j < td; ++j) {
      const A lq = log_weight(args.dw, j, qs);
      reg_d += args.reg == kMixRegMeanNegLog ? -lq : (args.reg == kMixRegEntropy ? exp(lq) * lq : A(0));
    }
    for (int64_t i = 0; i < tg; ++i) {
      const A lp = log_weight(args.gw, i, ps);
      reg_g += args.reg == kMixRegMeanNegLog ? -lp : (args.reg == kMixRegEntropy ? exp(lp) * lp : A(0));
    }
    if (args.reg == kMixRegMeanNegLog) {
      reg_d /= static_cast<A>(td);
      reg_g /= static_cast<A>(tg);
    }
    totals[0] = mean_d;
    totals[1] = mean_g;
    totals[2] = reg_d;
    totals[3] = reg_g;
    *args.d_loss = mean_d + args.lambda * reg_d;
    *args.g_loss = mean_g + args.lambda * reg_g;
  }
  __syncthreads();
  if (!args.jac) return;
  const A mean_d = totals[0], mean_g = totals[1], reg_d = totals[2], reg_g = totals[3];
  for (int64_t i = threadIdx.x; i < tg; i += blockDim.x) {
    const A lp = log_weight(args.gw, i, ps), pi = exp(lp);
    args.jac[n_r + n_f + i] = pi * (row_d[i] - mean_d);
    args.jac[section + n_r + n_f + i] =
        pi * (row_g[i] - mean_g) + args.lambda * mix_reg_grad<A>(args.reg, pi, lp, reg_g, tg);
  }
  for (int64_t j = threadIdx.x; j < td; j += blockDim.x) {
    const A lq = log_weight(args.dw, j, qs), qj = exp(lq);
    args.jac[n_r + n_f + tg + j] = qj * (col_d[j] - mean_d) + args.lambda * mix_reg_grad<A>(args.reg, qj, lq, reg_d, td);
    args.jac[section + n_r + n_f + tg + j] = qj * (col_g[j] - mean_g);
  }
}

template <typename T>
__global__ void mix_fused(MixArgs<T> args) {
  const auto ps = softmax_stats(args.gw, args.tg);
  const auto qs = softmax_stats(args.dw, args.td);
  for (int64_t item = 0; item < args.td * args.chunks; ++item) mix_item(args, item, ps, qs);
  __syncthreads();
  mix_finish(args, ps, qs);
}

template <typename T>
__global__ void mix_items(MixArgs<T> args) {
  mix_item(args, blockIdx.x, softmax_stats(args.gw, args.tg), softmax_stats(args.dw, args.td));
}

template <typename T>
__global__ void mix_epilogue(MixArgs<T> args) {
  mix_finish(args, softmax_stats(args.gw, args.tg), softmax_stats(args.dw, args.td));
}

template <typename T>
__global__ void mix_backward(const acc_t<T>* __restrict__ jac, const acc_t<T>* __restrict__ up_d,
                             const acc_t<T>* __restrict__ up_g, int64_t n_r, int64_t n_f, int64_t tg, int64_t td,
                             T* __restrict__ d_real, T* __restrict__ d_fake, acc_t<T>* __restrict__ d_gw,
                             acc_t<T>* __restrict__ d_dw) {
  using A = acc_t<T>;
  const int64_t section = n_r + n_f + tg + td;
  const A ud = *up_d, ug = *up_g;
  for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < section; k += (int64_t)gridDim.x * blockDim.x) {
    const A v = ud * jac[k] + ug * jac[section + k];
    if (k < n_r) {
      d_real[k] = from_acc<T>(v);
    } else if (k < n_r + n_f) {
      d_fake[k - n_r] = from_acc<T>(v);
    } else if (k < n_r + n_f + tg) {
      d_gw[k - n_r - n_f] = v;
    } else {
      d_dw[k - n_r - n_f - tg] = v;
    }
  }
}

int64_t chunks_for(int64_t batch) { return (batch + kThreads - 1) / kThreads; }

}  // namespace

int64_t mixture_gan_loss_cuda_workspace(int64_t tg, int64_t td, int64_t batch) {
  return 2 * tg * td * chunks_for(batch) + 2 * tg * td + 2 * tg + 2 * td;
}

void mixture_gan_loss_forward_cuda(DType dtype, const void* real, const void* fake, const void* g_logits,
                                   const void* d_logits, int64_t tg, int64_t td, int64_t batch, int kind, double a,
                                   double b, double c, int regularizer, double reg_weight, void* d_loss, void* g_loss,
                                   void* jac, void* workspace, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    MixArgs<T> args;
    args.real = static_cast<const T*>(real);
    args.fake = static_cast<const T*>(fake);
    args.gw = static_cast<const A*>(g_logits);
    args.dw = static_cast<const A*>(d_logits);
    args.tg = tg;
    args.td = td;
    args.batch = batch;
    args.chunks = chunks_for(batch);
    args.kind = kind;
    args.reg = regularizer;
    args.ta = static_cast<A>(a);
    args.tb = static_cast<A>(b);
    args.tc = static_cast<A>(c);
    args.lambda = static_cast<A>(reg_weight);
    args.d_loss = static_cast<A*>(d_loss);
    args.g_loss = static_cast<A*>(g_loss);
    args.jac = static_cast<A*>(jac);
    args.part_d = static_cast<A*>(workspace);
    args.part_g = args.part_d + tg * td * args.chunks;
    args.scratch = args.part_g + tg * td * args.chunks;
    if (tg * td * batch <= kSingleBlockMax) {
      mix_fused<T><<<1, kThreads, 0, s>>>(args);
      check_launch("mixture_gan_loss fused");
    } else {
      mix_items<T><<<td * args.chunks, kThreads, 0, s>>>(args);
      check_launch("mixture_gan_loss items");
      mix_epilogue<T><<<1, kThreads, 0, s>>>(args);
      check_launch("mixture_gan_loss epilogue");
    }
  });
}

void mixture_gan_loss_backward_cuda(DType dtype, const void* jac, const void* up_d, const void* up_g, int64_t tg,
                                    int64_t td, int64_t batch, void* d_real, void* d_fake, void* d_g_logits,
                                    void* d_d_logits, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_cuda(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t n_r = td * batch, n_f = tg * td * batch;
    mix_backward<T><<<grid_for(n_r + n_f + tg + td), kThreads, 0, s>>>(
        static_cast<const A*>(jac), static_cast<const A*>(up_d), static_cast<const A*>(up_g), n_r, n_f, tg, td,
        static_cast<T*>(d_real), static_cast<T*>(d_fake), static_cast<A*>(d_g_logits), static_cast<A*>(d_d_logits));
    check_launch("mixture_gan_loss backward");
  });
}

}  // namespace fastgan
