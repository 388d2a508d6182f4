// CPU kernels of mixture_gan_loss. Forward: one pass over the logits computes, for every (generator i,
// discriminator j) pair, both players' per-pair mean losses and (when asked) every logit's gradient at once; a
// serial O(T_g T_d) epilogue forms the weighted losses, the regulariser and the weight-logit gradients. Work items
// are (j, chunk of the batch), so each real logit's gradient (a sum over i) is owned by one item: deterministic.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu.h"
#include "mixture_gan_loss/mixture_gan_loss.h"

namespace fastgan {
namespace {

constexpr int64_t kMixChunk = 4096;  // samples per work item

// log-softmax and softmax of x; false when x holds a non-finite value.
template <typename A>
bool log_softmax(const A* x, int64_t count, std::vector<A>& lw, std::vector<A>& w) {
  A top = x[0];
  for (int64_t k = 0; k < count; ++k) {
    if (!std::isfinite(x[k])) return false;
    top = std::max(top, x[k]);
  }
  A sum = A(0);
  for (int64_t k = 0; k < count; ++k) sum += std::exp(x[k] - top);
  const A log_sum = std::log(sum);
  lw.resize(count);
  w.resize(count);
  for (int64_t k = 0; k < count; ++k) {
    lw[k] = x[k] - top - log_sum;
    w[k] = std::exp(lw[k]);
  }
  return true;
}

}  // namespace

int mixture_gan_loss_forward_cpu(DType dtype, const void* real, const void* fake, const void* g_logits,
                                 const void* d_logits, int64_t tg, int64_t td, int64_t batch, int kind, double a,
                                 double b, double c, int regularizer, double reg_weight, void* d_loss, void* g_loss,
                                 void* jac) {
  int status = 0;
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    std::vector<A> lp, p, lq, q;
    if (!log_softmax(static_cast<const A*>(g_logits), tg, lp, p)) {
      status = 1;
      return;
    }
    if (!log_softmax(static_cast<const A*>(d_logits), td, lq, q)) {
      status = 2;
      return;
    }
    const T* r = static_cast<const T*>(real);
    const T* f = static_cast<const T*>(fake);
    const A ta = static_cast<A>(a), tb = static_cast<A>(b), tc = static_cast<A>(c);
    const A inv_b = A(1) / static_cast<A>(batch);
    const int64_t n_r = td * batch, n_f = tg * td * batch, section = n_r + n_f + tg + td;
    A* jd = static_cast<A*>(jac);  // d-loss section, then the g-loss one
    A* jg = jd ? jd + section : nullptr;

    const int64_t chunk = std::min(batch, kMixChunk);
    const int64_t chunks = (batch + chunk - 1) / chunk;
    const int64_t pairs = tg * td;
    std::vector<A> part_d(pairs * chunks), part_g(pairs * chunks);
    // Small problems (B = 64, T = 5: 1600 pairs of logits) run inline: threads would cost more than they save.
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, tg * chunk));
    at::parallel_for(0, td * chunks, grain, [&](int64_t begin, int64_t end) {
      std::vector<A> acc_d(chunk), acc_g(chunk);  // sum_i p_i * d loss_ij / d real, per sample of the chunk
      for (int64_t item = begin; item < end; ++item) {
        const int64_t j = item / chunks, k = item % chunks;
        const int64_t lo = k * chunk, len = std::min(batch, lo + chunk) - lo;
        const T* rj = r + j * batch + lo;
        std::fill(acc_d.begin(), acc_d.begin() + len, A(0));
        std::fill(acc_g.begin(), acc_g.begin() + len, A(0));
        for (int64_t i = 0; i < tg; ++i) {
          const int64_t pair = i * td + j;
          const int64_t off = pair * batch + lo;
          const T* fij = f + off;
          const A w = p[i] * q[j] * inv_b;
          A sum_d = A(0), sum_g = A(0);
          for (int64_t s = 0; s < len; ++s) {
            const A rr = static_cast<A>(rj[s]), ff = static_cast<A>(fij[s]);
            A ld, drd, dfd, lg, drg, dfg;
            gan_pair_term<A>(kind, kDiscriminator, rr, ff, ta, tb, tc, ld, drd, dfd);
            gan_pair_term<A>(kind, kGenerator, rr, ff, ta, tb, tc, lg, drg, dfg);
            sum_d += ld;
            sum_g += lg;
            if (jd) {
              jd[n_r + off + s] = w * dfd;
              jg[n_r + off + s] = w * dfg;
              acc_d[s] += p[i] * drd;
              acc_g[s] += p[i] * drg;
            }
          }
          part_d[pair * chunks + k] = sum_d;
          part_g[pair * chunks + k] = sum_g;
        }
        if (jd) {
          const A wq = q[j] * inv_b;
          for (int64_t s = 0; s < len; ++s) {
            jd[j * batch + lo + s] = wq * acc_d[s];
            jg[j * batch + lo + s] = wq * acc_g[s];
          }
        }
      }
    });

    // Per-pair mean losses, then a_i = sum_j q_j phi_ij (rows) and c_j = sum_i p_i phi_ij (columns).
    std::vector<A> row_d(tg, A(0)), row_g(tg, A(0)), col_d(td, A(0)), col_g(td, A(0));
    for (int64_t i = 0; i < tg; ++i) {
      for (int64_t j = 0; j < td; ++j) {
        A sd = A(0), sg = A(0);
        for (int64_t k = 0; k < chunks; ++k) {
          sd += part_d[(i * td + j) * chunks + k];
          sg += part_g[(i * td + j) * chunks + k];
        }
        sd *= inv_b;
        sg *= inv_b;
        row_d[i] += q[j] * sd;
        row_g[i] += q[j] * sg;
        col_d[j] += p[i] * sd;
        col_g[j] += p[i] * sg;
      }
    }
    A mean_d = A(0), mean_g = A(0);
    for (int64_t i = 0; i < tg; ++i) {
      mean_d += p[i] * row_d[i];
      mean_g += p[i] * row_g[i];
    }
    const A lambda = static_cast<A>(reg_weight);
    const A reg_d = mix_reg_value<A>(regularizer, lq.data(), q.data(), td);
    const A reg_g = mix_reg_value<A>(regularizer, lp.data(), p.data(), tg);
    *static_cast<A*>(d_loss) = mean_d + lambda * reg_d;
    *static_cast<A*>(g_loss) = mean_g + lambda * reg_g;
    if (jd) {
      // Softmax backward: d/d logit_k = w_k (dL/dw_k - sum_l w_l dL/dw_l).
      for (int64_t i = 0; i < tg; ++i) {
        jd[n_r + n_f + i] = p[i] * (row_d[i] - mean_d);
        jg[n_r + n_f + i] = p[i] * (row_g[i] - mean_g) + lambda * mix_reg_grad<A>(regularizer, p[i], lp[i], reg_g, tg);
      }
      for (int64_t j = 0; j < td; ++j) {
        jd[n_r + n_f + tg + j] =
            q[j] * (col_d[j] - mean_d) + lambda * mix_reg_grad<A>(regularizer, q[j], lq[j], reg_d, td);
        jg[n_r + n_f + tg + j] = q[j] * (col_g[j] - mean_g);
      }
    }
  });
  return status;
}

void mixture_gan_loss_backward_cpu(DType dtype, const void* jac, const void* up_d, const void* up_g, int64_t tg,
                                   int64_t td, int64_t batch, void* d_real, void* d_fake, void* d_g_logits,
                                   void* d_d_logits) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t n_r = td * batch, n_f = tg * td * batch, section = n_r + n_f + tg + td;
    const A* jd = static_cast<const A*>(jac);
    const A* jg = jd + section;
    const A ud = *static_cast<const A*>(up_d), ug = *static_cast<const A*>(up_g);
    T* out_r = static_cast<T*>(d_real);
    T* out_f = static_cast<T*>(d_fake);
    at::parallel_for(0, n_r + n_f, kCpuChunk, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < std::min(end, n_r); ++k) out_r[k] = static_cast<T>(ud * jd[k] + ug * jg[k]);
      for (int64_t k = std::max(begin, n_r); k < end; ++k) out_f[k - n_r] = static_cast<T>(ud * jd[k] + ug * jg[k]);
    });
    A* out_gw = static_cast<A*>(d_g_logits);
    A* out_dw = static_cast<A*>(d_d_logits);
    for (int64_t i = 0; i < tg; ++i) out_gw[i] = ud * jd[n_r + n_f + i] + ug * jg[n_r + n_f + i];
    for (int64_t j = 0; j < td; ++j) out_dw[j] = ud * jd[n_r + n_f + tg + j] + ug * jg[n_r + n_f + tg + j];
  });
}

}  // namespace fastgan
