// interpolate kernels: out = alpha[b] * real + (1 - alpha[b]) * fake over flat [B, N] arrays; alpha and
// grad_alpha are [B] in the accumulation type. Backward outputs that are not needed are passed as nullptr.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

void interpolate_forward_cpu(DType dtype, const void* real, const void* fake, const void* alpha, int64_t batch,
                             int64_t n, void* out);
void interpolate_backward_cpu(DType dtype, const void* grad, const void* real, const void* fake, const void* alpha,
                              int64_t batch, int64_t n, void* grad_real, void* grad_fake, void* grad_alpha);

#ifdef FASTGAN_WITH_CUDA
int64_t interpolate_cuda_workspace(int64_t batch, int64_t n);
void interpolate_forward_cuda(DType dtype, const void* real, const void* fake, const void* alpha, int64_t batch,
                              int64_t n, void* out, void* stream);
void interpolate_backward_cuda(DType dtype, const void* grad, const void* real, const void* fake, const void* alpha,
                               int64_t batch, int64_t n, void* grad_real, void* grad_fake, void* grad_alpha,
                               void* workspace, void* stream);
#endif

}  // namespace fastgan
