// Torch-side launch helpers shared by every op's binding: output allocation and the current CUDA stream.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#ifdef FASTGAN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fastgan {

// fp64 stays fp64; every other floating dtype accumulates (and returns per-sample reductions) in fp32.
inline at::ScalarType acc_scalar_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline at::Tensor empty_acc(int64_t n, const at::Tensor& like) {
  return at::empty({n}, like.options().dtype(acc_scalar_type(like)));
}

#ifdef FASTGAN_WITH_CUDA
inline void* current_stream(const at::Tensor& t) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
}
#endif

}  // namespace fastgan
