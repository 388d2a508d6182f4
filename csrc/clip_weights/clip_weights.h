// clip_weights kernels: clamp every element of a list of dense tensors to [-clip, clip] in place, all tensors in
// one parallel call (CPU) or one launch per kClipMaxTensors tensors (CUDA). Mixed dtypes are allowed: each tensor
// carries its own dtype and the clip bound is rounded to that dtype first, so the result equals torch's clamp_.
#pragma once
#include <cstdint>

#include "common/dtype.h"

namespace fastgan {

// One tensor of the list: its first element (a dense tensor's lowest address), its element count, its dtype.
struct ClipTensor {
  void* data;
  int64_t numel;
  DType dtype;
};

// x -> min(max(x, lo), hi) with NaN kept (both comparisons are false for NaN), as torch.clamp does.
template <typename A>
FASTGAN_HOST_DEVICE A clip_value(A x, A lo, A hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

void clip_weights_cpu(const ClipTensor* tensors, int64_t count, double clip);

#ifdef FASTGAN_WITH_CUDA
// Tensors per launch: the launch's table (pointers, sizes, block offsets, dtypes) is a kernel argument passed by
// value, which must stay under the 4 KiB kernel-parameter limit of older toolkits.
constexpr int kClipMaxTensors = 96;
void clip_weights_cuda(const ClipTensor* tensors, int64_t count, double clip, void* stream);
#endif

}  // namespace fastgan
