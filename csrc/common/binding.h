// Shared argument checks for the torch-facing bindings (light headers only: no torch/extension.h).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/dtype.h"

namespace fastgan {

inline DType to_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK_TYPE(false, "fastgan: ", name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
}

// Each sample of t is one dense block of numel/B elements (contiguous or channels_last), so kernels may treat the
// tensor as a flat [B, N] array; the Python side makes inputs satisfy this before launching.
inline void check_batch_major(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() >= 1, "fastgan: ", name, " must have a batch dimension");
  TORCH_CHECK(t.is_non_overlapping_and_dense(), "fastgan: ", name, " must be dense (call .contiguous())");
  const int64_t batch = t.size(0);
  TORCH_CHECK(batch <= 1 || t.numel() == 0 || t.stride(0) == t.numel() / batch, "fastgan: ", name,
              " must have its batch dimension outermost in memory (call .contiguous())");
}

inline void check_same(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK(a.device() == b.device(), "fastgan: ", an, " and ", bn, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

}  // namespace fastgan
