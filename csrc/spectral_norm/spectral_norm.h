// spectral_norm kernels: the power iteration of spectral normalisation (Miyato et al. 2018) for a list of layers.
//
// Each weight is a dense [A, H, K] array whose middle dimension is the normalised one, seen as the matrix
// W[r, a*K + k] = weight[a, r, k] with h = H rows and w = A*K columns (dim 0: A = 1; ConvTranspose's dim 1: A =
// in_channels). One update (torch's _power_method step) is, from v:
//     s = W v,   u = s / max(|s|, eps),   t = W^T u,   v = t / max(|t|, eps),   sigma = u^T W v = t . v,
// computed in ONE pass over W: s_r = W_r . v and W^T s = sum_r s_r W_r accumulate row by row while the row is in
// cache, and t = W^T s / max(|s|, eps). Without update: sigma = u^T W v with the stored u, v (one pass).
// Accumulation in fp32 (fp64 for fp64 weights); u and v keep the weight's dtype, as torch's buffers do; the sums
// are per-(layer, row chunk) partials combined in a fixed order, so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

struct SNLayer {
  const void* weight;  // [A, H, K], dense
  void* u;             // [H], weight dtype, updated in place
  void* v;             // [A*K], weight dtype, updated in place
  int64_t a, h, k;
  DType dtype;
  void* workspace;  // spectral_norm_workspace(h, w, chunks) accumulation-type elements, 8-byte aligned
  int64_t chunks;   // row chunks: spectral_norm_*_chunks(h, w)
};

// Accumulation-type elements of a layer's workspace: s [h], t [w], v_acc [w], partial [chunks * w].
inline int64_t spectral_norm_workspace(int64_t h, int64_t w, int64_t chunks) { return h + 2 * w + chunks * w; }

int64_t spectral_norm_cpu_chunks(int64_t h, int64_t w);
// sigma: one double per layer. update: run n_power_iterations updates of u and v first.
void spectral_norm_cpu(const SNLayer* layers, int64_t count, int64_t n_power_iterations, double eps, bool update,
                       double* sigma);

#ifdef FASTGAN_WITH_CUDA
int64_t spectral_norm_cuda_chunks(int64_t h, int64_t w);
// sigma: device array of one double per layer.
void spectral_norm_cuda(const SNLayer* layers, int64_t count, int64_t n_power_iterations, double eps, bool update,
                        double* sigma, void* stream);
#endif

}  // namespace fastgan
