// CPU kernels of mixture_gan_loss. Forward: one pass over the logits computes, for every (generator i,
// discriminator j) pair, both players' per-pair mean losses and (when asked) every logit's gradient at once, with
// one exp and one log1p per fake logit serving both players (gan_loss_cpu_math.h) and the separable kinds' real term
// computed once per discriminator rather than once per pair; a serial O(T_g T_d) epilogue forms the weighted losses,
// the regulariser and the weight-logit gradients. Work items are (j, chunk of the batch), so each real logit's
// gradient (a sum over i) is owned by one item: deterministic.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu.h"
#include "gan_loss/gan_loss_cpu_math.h"
#include "mixture_gan_loss/mixture_gan_loss.h"

namespace fastgan {
namespace {

constexpr int64_t kMixChunk = 256;  // samples per work item (its stack arrays stay in L1)

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
    const bool relativistic = kind == kRelativistic, softplus = cpu::uses_softplus(kind);
    A p_sum = A(0);  // 1 up to rounding; the separable real term's weight, sum_i p_i
    for (int64_t i = 0; i < tg; ++i) p_sum += p[i];
    std::vector<A> part_d(pairs * chunks), part_g(pairs * chunks);
    // Below ~64k pairs of logits per thread (B = 64, T = 5 is 1600) the work runs inline: waking threads costs more.
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, tg * chunk));
    at::parallel_for(0, td * chunks, grain, [&](int64_t begin, int64_t end) {
      A ra[kMixChunk], fa[kMixChunk], e[kMixChunk], l[kMixChunk], loss_d[kMixChunk], loss_g[kMixChunk],
          df_d[kMixChunk], df_g[kMixChunk], real_d[kMixChunk], acc_d[kMixChunk], acc_g[kMixChunk], inv[kMixChunk];
      for (int64_t item = begin; item < end; ++item) {
        const int64_t j = item / chunks, k = item % chunks;
        const int64_t lo = k * chunk, len = std::min(batch, lo + chunk) - lo;
        cpu::load(r + j * batch + lo, len, ra);
        A real_sum = A(0);
        if (!relativistic) {
          // Separable kinds: the discriminator's real term is the same for every generator i.
          if (softplus) cpu::softplus_parts(ra, len, e, l);
          cpu::real_terms(kind, ra, e, l, len, tb, loss_d, real_d);
          real_sum = cpu::sum(loss_d, len);
        } else {
          std::fill(acc_d, acc_d + len, A(0));
          std::fill(acc_g, acc_g + len, A(0));
        }
        for (int64_t i = 0; i < tg; ++i) {
          const int64_t pair = i * td + j;
          const int64_t off = pair * batch + lo;
          cpu::load(f + off, len, fa);
          if (relativistic) {
            for (int64_t s = 0; s < len; ++s) fa[s] -= ra[s];  // x = f - r, shared by both players
          }
          if (softplus) {  // one exp, one log1p and one division per logit serve both players
            cpu::softplus_parts(fa, len, e, l);
            cpu::softplus_both(kind == kMinimax, fa, e, l, len, inv, loss_d, df_d, loss_g, df_g);
          } else {
            cpu::fake_terms(kind, kDiscriminator, fa, e, l, len, ta, tc, loss_d, df_d);
            cpu::fake_terms(kind, kGenerator, fa, e, l, len, ta, tc, loss_g, df_g);
          }
          part_d[pair * chunks + k] = cpu::sum(loss_d, len) + real_sum;
          part_g[pair * chunks + k] = cpu::sum(loss_g, len);
          if (jd) {
            const A w = p[i] * q[j] * inv_b;
            A* out_d = jd + n_r + off;
            A* out_g = jg + n_r + off;
            for (int64_t s = 0; s < len; ++s) out_d[s] = w * df_d[s];
            for (int64_t s = 0; s < len; ++s) out_g[s] = w * df_g[s];
            if (relativistic) {  // d/d r = -d/d f per pair, summed over i with weight p_i
              const A pi = p[i];
              for (int64_t s = 0; s < len; ++s) acc_d[s] -= pi * df_d[s];
              for (int64_t s = 0; s < len; ++s) acc_g[s] -= pi * df_g[s];
            }
          }
        }
        if (jd) {
          const A wq = q[j] * inv_b;
          A* out_d = jd + j * batch + lo;
          A* out_g = jg + j * batch + lo;
          if (relativistic) {
            for (int64_t s = 0; s < len; ++s) out_d[s] = wq * acc_d[s];
            for (int64_t s = 0; s < len; ++s) out_g[s] = wq * acc_g[s];
          } else {  // separable: only the discriminator's loss reads real logits
            const A w = wq * p_sum;
            for (int64_t s = 0; s < len; ++s) out_d[s] = w * real_d[s];
            for (int64_t s = 0; s < len; ++s) out_g[s] = A(0);
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
