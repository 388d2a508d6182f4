// CPU kernels of gan_loss: the forward reads each logit once and writes the loss and (when asked) the gradient;
// the backward is one scaling pass. Chunked partial sums combined in a fixed order: deterministic for any number
// of threads.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/cpu.h"
#include "gan_loss/gan_loss.h"

namespace fastgan {

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
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        const int64_t lo = chunk * kCpuChunk, hi = std::min(total, lo + kCpuChunk);
        A sum_r = A(0), sum_f = A(0);
        if (paired) {
          for (int64_t i = lo; i < hi; ++i) {
            A l, dr, df;
            gan_pair_term<A>(kind, player, static_cast<A>(r[i]), static_cast<A>(f[i]), ta, tb, tc, l, dr, df);
            if (none) out[i] = l; else sum_f += l;
            if (g) {
              g[i] = dr * scale_r;
              g[n_real + i] = df * scale_f;
            }
          }
        } else {
          const int64_t split = std::min(hi, std::max(lo, n_real));
          for (int64_t i = lo; i < split; ++i) {
            A l, d;
            gan_real_term<A>(kind, static_cast<A>(r[i]), tb, l, d);
            if (none) out[i] = l; else sum_r += l;
            if (g) g[i] = d * scale_r;
          }
          for (int64_t i = split; i < hi; ++i) {
            A l, d;
            gan_fake_term<A>(kind, player, static_cast<A>(f[i - n_real]), ta, tc, l, d);
            if (none) out[i] = l; else sum_f += l;
            if (g) g[i] = d * scale_f;
          }
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
