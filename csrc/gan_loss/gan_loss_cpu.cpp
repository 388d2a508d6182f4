// CPU kernels of gan_loss: the forward reads each logit once and writes the loss and (when asked) the gradient;
// the backward is one scaling pass. Work goes in chunks of kCpuChunk logits (threads), each in blocks of kBlock
// (vectorised loops over stack arrays, see gan_loss_cpu_math.h); partial sums are combined in a fixed order, so the
// result does not depend on the number of threads.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/cpu.h"
#include "gan_loss/gan_loss.h"
#include "gan_loss/gan_loss_cpu_math.h"

namespace fastgan {

// Runtime-dispatched clones (an ifunc picks one when the library loads) on x86-64 Linux with gcc; elsewhere the
// baseline only. Feature names, not arch=: gcc's resolver matches arch= against the exact CPU model.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTGAN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTGAN_CPU_CLONES
#endif

namespace cpu {
FASTGAN_CPU_CLONES void softplus_parts_f32(const float* x, int64_t n, float* e, float* l) {
  softplus_parts_generic(x, n, e, l);
}
FASTGAN_CPU_CLONES void real_terms_f32(int kind, const float* r, const float* e, const float* l, int64_t n, float tb,
                                       float* loss, float* d) {
  real_terms_generic(kind, r, e, l, n, tb, loss, d);
}
FASTGAN_CPU_CLONES void fake_terms_f32(int kind, int player, const float* f, const float* e, const float* l, int64_t n,
                                       float ta, float tc, float* loss, float* d) {
  fake_terms_generic(kind, player, f, e, l, n, ta, tc, loss, d);
}
FASTGAN_CPU_CLONES void relativistic_terms_f32(int player, const float* x, const float* e, const float* l, int64_t n,
                                               float* loss, float* d_fake) {
  relativistic_terms_generic(player, x, e, l, n, loss, d_fake);
}
FASTGAN_CPU_CLONES void softplus_both_f32(bool minimax, const float* x, const float* e, const float* l, int64_t n,
                                          float* inv, float* loss_d, float* d_d, float* loss_g, float* d_g) {
  softplus_both_generic(minimax, x, e, l, n, inv, loss_d, d_d, loss_g, d_g);
}
}  // namespace cpu

namespace {

constexpr int64_t kBlock = 256;

// One block of a separable loss over real logits only or fake logits only (concatenated index space).
template <typename T, typename A>
void one_sided_block(bool real_side, int kind, int player, const T* x, int64_t n, A ta, A tb, A tc, A* loss,
                     A* d) {
  A xa[kBlock], e[kBlock], l[kBlock];
  cpu::load(x, n, xa);
  if (cpu::uses_softplus(kind)) cpu::softplus_parts(xa, n, e, l);
  if (real_side) {
    cpu::real_terms(kind, xa, e, l, n, tb, loss, d);
  } else {
    cpu::fake_terms(kind, player, xa, e, l, n, ta, tc, loss, d);
  }
}

// One block of pairs (r[i], f[i]): relativistic, or the discriminator's per-sample loss.
template <typename T, typename A>
void paired_block(int kind, int player, const T* r, const T* f, int64_t n, A ta, A tb, A tc, A* loss, A* dr, A* df) {
  A ra[kBlock], fa[kBlock], e[kBlock], l[kBlock];
  cpu::load(r, n, ra);
  cpu::load(f, n, fa);
  if (kind == kRelativistic) {
    for (int64_t i = 0; i < n; ++i) fa[i] -= ra[i];  // x = f - r
    cpu::softplus_parts(fa, n, e, l);
    cpu::relativistic_terms(player, fa, e, l, n, loss, df);
    for (int64_t i = 0; i < n; ++i) dr[i] = -df[i];
    return;
  }
  A loss_f[kBlock];
  if (cpu::uses_softplus(kind)) cpu::softplus_parts(ra, n, e, l);
  cpu::real_terms(kind, ra, e, l, n, tb, loss, dr);
  if (cpu::uses_softplus(kind)) cpu::softplus_parts(fa, n, e, l);
  cpu::fake_terms(kind, player, fa, e, l, n, ta, tc, loss_f, df);
  for (int64_t i = 0; i < n; ++i) loss[i] += loss_f[i];
}

}  // namespace

void gan_loss_forward_cpu(DType dtype, const void* real, int64_t n_real, const void* fake, int64_t n_fake,
                          bool paired, int kind, int player, int reduction, double a, double b, double c, void* loss,
                          void* grad) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* r = static_cast<const T*>(real);
    const T* f = static_cast<const T*>(fake);
    A* out = static_cast<A*>(loss);
    A* g = static_cast<A*>(grad);
    const A ta = static_cast<A>(a), tb = static_cast<A>(b), tc = static_cast<A>(c);
    const int64_t total = paired ? n_fake : n_real + n_fake;
    // d loss / d logit carries the reduction's scale, so that the backward is upstream * grad.
    A scale_r = A(1), scale_f = A(1);
    if (reduction == kReduceMean) {
      scale_r = n_real > 0 ? A(1) / static_cast<A>(paired ? total : n_real) : A(1);
      scale_f = A(1) / static_cast<A>(paired ? total : n_fake);
    }
    const bool none = reduction == kReduceNone;
    const int64_t chunks = std::max<int64_t>(1, (total + kCpuChunk - 1) / kCpuChunk);
    // [chunk][real sum, fake sum]: real and fake terms are scaled apart (their counts may differ).
    std::vector<A> partial(2 * chunks, A(0));
    // grain 2: a single chunk (every batch of logits below 16k) runs inline, without waking a thread.
    at::parallel_for(0, chunks, 2, [&](int64_t begin, int64_t end) {
      A lo_buf[kBlock], d1[kBlock], d2[kBlock];
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        const int64_t chunk_lo = chunk * kCpuChunk, chunk_hi = std::min(total, chunk_lo + kCpuChunk);
        A sum_r = A(0), sum_f = A(0);
        for (int64_t lo = chunk_lo; lo < chunk_hi;) {
          int64_t hi = std::min(chunk_hi, lo + kBlock);
          A* l = none ? out + lo : lo_buf;
          if (paired) {
            paired_block<T, A>(kind, player, r + lo, f + lo, hi - lo, ta, tb, tc, l, d1, d2);
            if (!none) sum_f += cpu::sum(l, hi - lo);  // reduction="none": the losses are the output
            if (g) {
              for (int64_t i = 0; i < hi - lo; ++i) g[lo + i] = d1[i] * scale_r;
              for (int64_t i = 0; i < hi - lo; ++i) g[n_real + lo + i] = d2[i] * scale_f;
            }
          } else {
            const bool real_side = lo < n_real;
            if (real_side) hi = std::min(hi, n_real);  // a block never straddles the real/fake boundary
            const T* src = real_side ? r + lo : f + (lo - n_real);
            one_sided_block<T, A>(real_side, kind, player, src, hi - lo, ta, tb, tc, l, d1);
            if (!none) (real_side ? sum_r : sum_f) += cpu::sum(l, hi - lo);
            if (g) {
              const A scale = real_side ? scale_r : scale_f;
              for (int64_t i = 0; i < hi - lo; ++i) g[lo + i] = d1[i] * scale;
            }
          }
          lo = hi;
        }
        partial[2 * chunk] = sum_r;
        partial[2 * chunk + 1] = sum_f;
      }
    });
    if (!none) {
      A sum_r = A(0), sum_f = A(0);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        sum_r += partial[2 * chunk];
        sum_f += partial[2 * chunk + 1];
      }
      out[0] = sum_r * scale_r + sum_f * scale_f;
    }
  });
}

void gan_loss_backward_cpu(DType dtype, const void* upstream, int64_t m, const void* grad, int64_t n, void* out) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const A* up = static_cast<const A*>(upstream);
    const A* g = static_cast<const A*>(grad);
    T* o = static_cast<T*>(out);
    at::parallel_for(0, n, kCpuChunk, [&](int64_t begin, int64_t end) {
      if (m == 1) {
        const A u = up[0];
        for (int64_t i = begin; i < end; ++i) o[i] = static_cast<T>(u * g[i]);
      } else {
        for (int64_t i = begin; i < end; ++i) o[i] = static_cast<T>(up[i % m] * g[i]);
      }
    });
  });
}

}  // namespace fastgan
