// torch.library registration of grad_norm_penalty: schema, argument checks, CPU and CUDA implementations.
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/binding.h"
#include "common/launch.h"
#include "grad_norm_penalty/grad_norm_penalty.h"

namespace fastgan {
namespace {

void check_grad(const at::Tensor& grad, int64_t mode) {
  to_dtype(grad, "grad");
  check_batch_major(grad, "grad");
  TORCH_CHECK_VALUE(mode >= kTwoSided && mode <= kSquared, "fastgan: mode must be 0, 1 or 2, got ", mode);
}

void check_backward(const at::Tensor& grad, const at::Tensor& norm, const at::Tensor& upstream, int64_t mode) {
  check_grad(grad, mode);
  check_same(grad, "grad", norm, "norm");
  check_same(grad, "grad", upstream, "upstream");
  const auto acc = acc_scalar_type(grad);
  TORCH_CHECK(norm.dim() == 1 && norm.size(0) == grad.size(0) && norm.is_contiguous() && norm.scalar_type() == acc,
              "fastgan: norm must be a contiguous [B] tensor of the accumulation dtype");
  TORCH_CHECK(upstream.dim() == 1 && upstream.size(0) == grad.size(0) && upstream.is_contiguous() &&
                  upstream.scalar_type() == acc,
              "fastgan: upstream must be a contiguous [B] tensor of the accumulation dtype");
}

int64_t row_size(const at::Tensor& grad) { return grad.size(0) == 0 ? 0 : grad.numel() / grad.size(0); }

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& grad, double target, int64_t mode) {
  check_grad(grad, mode);
  const int64_t batch = grad.size(0);
  at::Tensor penalty = empty_acc(batch, grad), norm = empty_acc(batch, grad);
  grad_norm_penalty_forward_cpu(to_dtype(grad, "grad"), grad.data_ptr(), batch, row_size(grad), target,
                                static_cast<int>(mode), penalty.data_ptr(), norm.data_ptr());
  return {penalty, norm};
}

at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& norm, const at::Tensor& upstream, double target,
                        int64_t mode) {
  check_backward(grad, norm, upstream, mode);
  at::Tensor out = empty_like_output(grad);  // keeps channels_last
  grad_norm_penalty_backward_cpu(to_dtype(grad, "grad"), grad.data_ptr(), norm.data_ptr(), upstream.data_ptr(),
                                 grad.size(0), row_size(grad), target, static_cast<int>(mode), out.data_ptr());
  return out;
}

#ifdef FASTGAN_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& grad, double target, int64_t mode) {
  check_grad(grad, mode);
  TORCH_CHECK(grad.size(0) <= 65535, "fastgan: grad_norm_penalty on CUDA takes at most 65535 samples per call");
  c10::cuda::CUDAGuard guard(grad.device());
  const int64_t batch = grad.size(0), n = row_size(grad);
  at::Tensor penalty = empty_acc(batch, grad), norm = empty_acc(batch, grad);
  if (batch == 0) return {penalty, norm};
  at::Tensor workspace = empty_acc(grad_norm_penalty_cuda_workspace(batch, n), grad);
  grad_norm_penalty_forward_cuda(to_dtype(grad, "grad"), grad.data_ptr(), batch, n, target, static_cast<int>(mode),
                                 penalty.data_ptr(), norm.data_ptr(), workspace.data_ptr(), current_stream(grad));
  return {penalty, norm};
}

at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& norm, const at::Tensor& upstream, double target,
                         int64_t mode) {
  check_backward(grad, norm, upstream, mode);
  c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor out = at::empty_like(grad);
  if (grad.numel() == 0) return out;
  grad_norm_penalty_backward_cuda(to_dtype(grad, "grad"), grad.data_ptr(), norm.data_ptr(), upstream.data_ptr(),
                                  grad.size(0), row_size(grad), target, static_cast<int>(mode), out.data_ptr(),
                                  current_stream(grad));
  return out;
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("grad_norm_penalty_forward(Tensor grad, float target, int mode) -> (Tensor penalty, Tensor norm)");
  m.def("grad_norm_penalty_backward(Tensor grad, Tensor norm, Tensor upstream, float target, int mode) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("grad_norm_penalty_forward", &forward_cpu);
  m.impl("grad_norm_penalty_backward", &backward_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("grad_norm_penalty_forward", &forward_cuda);
  m.impl("grad_norm_penalty_backward", &backward_cuda);
}
#endif

}  // namespace fastgan
