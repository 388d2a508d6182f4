// torch.library registration of interpolate: schema, argument checks, CPU and CUDA implementations.
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/binding.h"
#include "common/launch.h"
#include "interpolate/interpolate.h"

namespace fastgan {
namespace {

void check_pair(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  const DType dtype = to_dtype(real, "real");
  TORCH_CHECK_TYPE(to_dtype(fake, "fake") == dtype, "fastgan: real and fake must have the same dtype");
  TORCH_CHECK_VALUE(real.sizes() == fake.sizes(), "fastgan: real and fake must have the same shape, got ",
                    real.sizes(), " and ", fake.sizes());
  TORCH_CHECK(real.strides() == fake.strides(), "fastgan: real and fake must have the same memory layout");
  check_batch_major(real, "real");
  check_same(real, "real", fake, "fake");
  check_same(real, "real", alpha, "alpha");
  TORCH_CHECK(alpha.dim() == 1 && alpha.size(0) == real.size(0) && alpha.is_contiguous() &&
                  alpha.scalar_type() == acc_scalar_type(real),
              "fastgan: alpha must be a contiguous [B] tensor of the accumulation dtype");
}

int64_t row_size(const at::Tensor& t) { return t.size(0) == 0 ? 0 : t.numel() / t.size(0); }

at::Tensor maybe_empty_like(bool needed, const at::Tensor& like) {
  return needed ? empty_like_output(like) : at::empty({0}, like.options());
}

at::Tensor forward_cpu(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  check_pair(real, fake, alpha);
  at::Tensor out = empty_like_output(real);
  interpolate_forward_cpu(to_dtype(real, "real"), real.data_ptr(), fake.data_ptr(), alpha.data_ptr(), real.size(0),
                          row_size(real), out.data_ptr());
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad, const at::Tensor& real,
                                                             const at::Tensor& fake, const at::Tensor& alpha,
                                                             bool need_real, bool need_fake, bool need_alpha) {
  check_pair(real, fake, alpha);
  TORCH_CHECK(grad.sizes() == real.sizes() && grad.strides() == real.strides() && grad.scalar_type() == real.scalar_type(),
              "fastgan: grad must match real in shape, layout and dtype");
  at::Tensor grad_real = maybe_empty_like(need_real, real), grad_fake = maybe_empty_like(need_fake, fake);
  at::Tensor grad_alpha = need_alpha ? at::empty_like(alpha) : at::empty({0}, alpha.options());
  interpolate_backward_cpu(to_dtype(real, "real"), grad.data_ptr(), real.data_ptr(), fake.data_ptr(),
                           alpha.data_ptr(), real.size(0), row_size(real), need_real ? grad_real.data_ptr() : nullptr,
                           need_fake ? grad_fake.data_ptr() : nullptr, need_alpha ? grad_alpha.data_ptr() : nullptr);
  return {grad_real, grad_fake, grad_alpha};
}

#ifdef FASTGAN_WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  check_pair(real, fake, alpha);
  c10::cuda::CUDAGuard guard(real.device());
  at::Tensor out = at::empty_like(real);
  if (real.numel() == 0) return out;
  interpolate_forward_cuda(to_dtype(real, "real"), real.data_ptr(), fake.data_ptr(), alpha.data_ptr(), real.size(0),
                           row_size(real), out.data_ptr(), current_stream(real));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad, const at::Tensor& real,
                                                              const at::Tensor& fake, const at::Tensor& alpha,
                                                              bool need_real, bool need_fake, bool need_alpha) {
  check_pair(real, fake, alpha);
  TORCH_CHECK(grad.sizes() == real.sizes() && grad.strides() == real.strides() && grad.scalar_type() == real.scalar_type(),
              "fastgan: grad must match real in shape, layout and dtype");
  TORCH_CHECK(real.size(0) <= 65535, "fastgan: interpolate on CUDA takes at most 65535 samples per call");
  c10::cuda::CUDAGuard guard(real.device());
  at::Tensor grad_real = maybe_empty_like(need_real, real), grad_fake = maybe_empty_like(need_fake, fake);
  at::Tensor grad_alpha = need_alpha ? at::empty_like(alpha) : at::empty({0}, alpha.options());
  if (real.size(0) == 0) return {grad_real, grad_fake, grad_alpha};
  at::Tensor workspace = empty_acc(need_alpha ? interpolate_cuda_workspace(real.size(0), row_size(real)) : 0, real);
  interpolate_backward_cuda(to_dtype(real, "real"), grad.data_ptr(), real.data_ptr(), fake.data_ptr(),
                            alpha.data_ptr(), real.size(0), row_size(real), need_real ? grad_real.data_ptr() : nullptr,
                            need_fake ? grad_fake.data_ptr() : nullptr, need_alpha ? grad_alpha.data_ptr() : nullptr,
                            workspace.data_ptr(), current_stream(real));
  return {grad_real, grad_fake, grad_alpha};
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("interpolate_forward(Tensor real, Tensor fake, Tensor alpha) -> Tensor");
  m.def("interpolate_backward(Tensor grad, Tensor real, Tensor fake, Tensor alpha, bool need_real, bool need_fake, "
        "bool need_alpha) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("interpolate_forward", &forward_cpu);
  m.impl("interpolate_backward", &backward_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("interpolate_forward", &forward_cuda);
  m.impl("interpolate_backward", &backward_cuda);
}
#endif

}  // namespace fastgan
