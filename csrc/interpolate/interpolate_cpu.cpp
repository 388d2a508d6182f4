// CPU kernels of interpolate: one pass forward; one pass backward that writes both input gradients and the
// per-sample alpha gradient together.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/cpu.h"
#include "interpolate/interpolate.h"

namespace fastgan {

void interpolate_forward_cpu(DType dtype, const void* real, const void* fake, const void* alpha, int64_t batch,
                             int64_t n, void* out) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* r = static_cast<const T*>(real);
    const T* f = static_cast<const T*>(fake);
    const A* a = static_cast<const A*>(alpha);
    T* o = static_cast<T*>(out);
    at::parallel_for(0, batch * n, kCpuChunk, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t row = i / n, row_end = std::min(end, (row + 1) * n);
        const A w = a[row], v = A(1) - w;
        for (; i < row_end; ++i) o[i] = static_cast<T>(w * static_cast<A>(r[i]) + v * static_cast<A>(f[i]));
      }
    });
  });
}

void interpolate_backward_cpu(DType dtype, const void* grad, const void* real, const void* fake, const void* alpha,
                              int64_t batch, int64_t n, void* grad_real, void* grad_fake, void* grad_alpha) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* g = static_cast<const T*>(grad);
    const T* r = static_cast<const T*>(real);
    const T* f = static_cast<const T*>(fake);
    const A* a = static_cast<const A*>(alpha);
    T* gr = static_cast<T*>(grad_real);
    T* gf = static_cast<T*>(grad_fake);
    const int64_t chunks = std::max<int64_t>(1, (n + kCpuChunk - 1) / kCpuChunk);
    // Per-(row, chunk) partial dot products, summed in a fixed order: deterministic for any thread count.
    std::vector<A> partial(grad_alpha ? batch * chunks : 0);
    at::parallel_for(0, batch * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row = task / chunks, start = row * n + (task % chunks) * kCpuChunk;
        const int64_t stop = std::min(start + kCpuChunk, (row + 1) * n);
        const A w = a[row], v = A(1) - w;
        if (gr) for (int64_t i = start; i < stop; ++i) gr[i] = static_cast<T>(w * static_cast<A>(g[i]));
        if (gf) for (int64_t i = start; i < stop; ++i) gf[i] = static_cast<T>(v * static_cast<A>(g[i]));
        if (grad_alpha) {
          A dot = A(0);
          for (int64_t i = start; i < stop; ++i) dot += static_cast<A>(g[i]) * (static_cast<A>(r[i]) - static_cast<A>(f[i]));
          partial[task] = dot;
        }
      }
    });
    if (grad_alpha) {
      A* ga = static_cast<A*>(grad_alpha);
      for (int64_t row = 0; row < batch; ++row) {
        A total = A(0);
        for (int64_t c = 0; c < chunks; ++c) total += partial[row * chunks + c];
        ga[row] = total;
      }
    }
  });
}

}  // namespace fastgan
