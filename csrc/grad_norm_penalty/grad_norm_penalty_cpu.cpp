// CPU kernels of grad_norm_penalty: one read pass forward, one read + one write pass backward.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/cpu.h"
#include "grad_norm_penalty/grad_norm_penalty.h"

namespace fastgan {
namespace {

// Eight independent partial sums: lets gcc vectorise without -ffast-math and keeps fp32 rounding growth small.
template <typename T, typename A>
A sum_squares(const T* x, int64_t n) {
  A acc[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) {
      const A v = static_cast<A>(x[i + k]);
      acc[k] += v * v;
    }
  }
  for (; i < n; ++i) {
    const A v = static_cast<A>(x[i]);
    acc[0] += v * v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

void grad_norm_penalty_forward_cpu(DType dtype, const void* grad, int64_t batch, int64_t n, double target, int mode,
                                   void* penalty, void* norm) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* g = static_cast<const T*>(grad);
    const int64_t chunks = std::max<int64_t>(1, (n + kCpuChunk - 1) / kCpuChunk);
    // Per-(row, chunk) partial sums combined in a fixed order: the result does not depend on the thread count.
    std::vector<A> partial(batch * chunks);
    at::parallel_for(0, batch * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row = task / chunks, start = (task % chunks) * kCpuChunk;
        partial[task] = sum_squares<T, A>(g + row * n + start, std::min(kCpuChunk, n - start));
      }
    });
    A* pen = static_cast<A*>(penalty);
    A* nrm = static_cast<A*>(norm);
    for (int64_t row = 0; row < batch; ++row) {
      A total = A(0);
      for (int64_t c = 0; c < chunks; ++c) total += partial[row * chunks + c];
      nrm[row] = std::sqrt(total);
      pen[row] = gnp_penalty<A>(nrm[row], static_cast<A>(target), mode);
    }
  });
}

void grad_norm_penalty_backward_cpu(DType dtype, const void* grad, const void* norm, const void* upstream,
                                    int64_t batch, int64_t n, double target, int mode, void* grad_grad) {
  dispatch_cpu(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* g = static_cast<const T*>(grad);
    const A* nrm = static_cast<const A*>(norm);
    const A* up = static_cast<const A*>(upstream);
    T* out = static_cast<T*>(grad_grad);
    at::parallel_for(0, batch * n, kCpuChunk, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t row = i / n, row_end = std::min(end, (row + 1) * n);
        const A factor = up[row] * gnp_grad_factor<A>(nrm[row], static_cast<A>(target), mode);
        for (; i < row_end; ++i) out[i] = static_cast<T>(factor * static_cast<A>(g[i]));
      }
    });
  });
}

}  // namespace fastgan
