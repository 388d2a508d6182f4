// torch.library registration of gan_loss: schemas, argument checks, CPU and CUDA implementations.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/binding.h"
#include "common/launch.h"
#include "gan_loss/gan_loss.h"

namespace fastgan {
namespace {

struct Layout {
  int64_t n_real, n_fake, total;
  bool paired;
};

// Which logits the loss reads and how they pair (the Python front end makes the same choice).
Layout check_forward(const at::Tensor& real, const at::Tensor& fake, int64_t kind, int64_t player, int64_t reduction) {
  TORCH_CHECK_VALUE(kind >= kNonSaturating && kind <= kRelativistic, "fastgan: gan_loss kind must be 0..5, got ", kind);
  TORCH_CHECK_VALUE(player == kDiscriminator || player == kGenerator, "fastgan: gan_loss player must be 0 or 1, got ",
                    player);
  TORCH_CHECK_VALUE(reduction >= kReduceNone && reduction <= kReduceSum,
                    "fastgan: gan_loss reduction must be 0, 1 or 2, got ", reduction);
  const DType dtype = to_dtype(fake, "fake");
  TORCH_CHECK_TYPE(to_dtype(real, "real") == dtype, "fastgan: real and fake must have the same dtype");
  check_same(real, "real", fake, "fake");
  TORCH_CHECK(real.dim() == 1 && fake.dim() == 1 && real.is_contiguous() && fake.is_contiguous(),
              "fastgan: gan_loss takes contiguous 1-D logits");
  TORCH_CHECK_VALUE(fake.numel() > 0, "fastgan: fake must not be empty");
  const bool uses_real = gan_uses_real(static_cast<int>(kind), static_cast<int>(player));
  Layout layout;
  layout.paired = kind == kRelativistic || (player == kDiscriminator && reduction == kReduceNone);
  layout.n_real = uses_real ? real.numel() : 0;
  layout.n_fake = fake.numel();
  TORCH_CHECK_VALUE(!uses_real || real.numel() > 0, "fastgan: real must not be empty");
  TORCH_CHECK_VALUE(!layout.paired || layout.n_real == layout.n_fake,
                    "fastgan: real and fake must have the same number of logits for this loss, got ", real.numel(),
                    " and ", fake.numel());
  layout.total = layout.paired ? layout.n_fake : layout.n_real + layout.n_fake;
  return layout;
}

std::tuple<at::Tensor, at::Tensor> allocate(const at::Tensor& fake, const Layout& layout, int64_t reduction,
                                            bool need_grad) {
  const auto options = fake.options().dtype(acc_scalar_type(fake));
  at::Tensor loss = reduction == kReduceNone ? at::empty({layout.total}, options) : at::empty({}, options);
  at::Tensor grad = at::empty({need_grad ? layout.n_real + layout.n_fake : 0}, options);
  return {loss, grad};
}

void check_backward(const at::Tensor& upstream, const at::Tensor& grad, const at::Tensor& like) {
  to_dtype(like, "like");
  check_same(grad, "grad", like, "like");
  check_same(upstream, "upstream", like, "like");
  const auto acc = acc_scalar_type(like);
  TORCH_CHECK(grad.dim() == 1 && grad.is_contiguous() && grad.scalar_type() == acc,
              "fastgan: grad must be a contiguous 1-D tensor of the accumulation dtype");
  TORCH_CHECK(upstream.is_contiguous() && upstream.scalar_type() == acc && upstream.numel() > 0,
              "fastgan: upstream must be a contiguous non-empty tensor of the accumulation dtype");
  TORCH_CHECK(upstream.numel() == 1 || grad.numel() % upstream.numel() == 0,
              "fastgan: upstream must have 1 element or divide grad's length");
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& real, const at::Tensor& fake, int64_t kind,
                                               int64_t player, int64_t reduction, double a, double b, double c,
                                               bool need_grad) {
  const Layout layout = check_forward(real, fake, kind, player, reduction);
  auto [loss, grad] = allocate(fake, layout, reduction, need_grad);
  gan_loss_forward_cpu(to_dtype(fake, "fake"), real.data_ptr(), layout.n_real, fake.data_ptr(), layout.n_fake,
                       layout.paired, static_cast<int>(kind), static_cast<int>(player), static_cast<int>(reduction), a,
                       b, c, loss.data_ptr(), need_grad ? grad.data_ptr() : nullptr);
  return {loss, grad};
}

at::Tensor backward_cpu(const at::Tensor& upstream, const at::Tensor& grad, const at::Tensor& like) {
  check_backward(upstream, grad, like);
  at::Tensor out = at::empty({grad.numel()}, like.options());
  gan_loss_backward_cpu(to_dtype(like, "like"), upstream.data_ptr(), upstream.numel(), grad.data_ptr(), grad.numel(),
                        out.data_ptr());
  return out;
}

#ifdef FASTGAN_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& real, const at::Tensor& fake, int64_t kind,
                                                int64_t player, int64_t reduction, double a, double b, double c,
                                                bool need_grad) {
  const Layout layout = check_forward(real, fake, kind, player, reduction);
  c10::cuda::CUDAGuard guard(fake.device());
  auto [loss, grad] = allocate(fake, layout, reduction, need_grad);
  at::Tensor workspace = empty_acc(gan_loss_cuda_workspace(layout.total), fake);
  gan_loss_forward_cuda(to_dtype(fake, "fake"), real.data_ptr(), layout.n_real, fake.data_ptr(), layout.n_fake,
                        layout.paired, static_cast<int>(kind), static_cast<int>(player), static_cast<int>(reduction),
                        a, b, c, loss.data_ptr(), need_grad ? grad.data_ptr() : nullptr, workspace.data_ptr(),
                        current_stream(fake));
  return {loss, grad};
}

at::Tensor backward_cuda(const at::Tensor& upstream, const at::Tensor& grad, const at::Tensor& like) {
  check_backward(upstream, grad, like);
  c10::cuda::CUDAGuard guard(like.device());
  at::Tensor out = at::empty({grad.numel()}, like.options());
  gan_loss_backward_cuda(to_dtype(like, "like"), upstream.data_ptr(), upstream.numel(), grad.data_ptr(), grad.numel(),
                         out.data_ptr(), current_stream(like));
  return out;
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("gan_loss_forward(Tensor real, Tensor fake, int kind, int player, int reduction, float a, float b, float c, "
        "bool need_grad) -> (Tensor loss, Tensor grad)");
  m.def("gan_loss_backward(Tensor upstream, Tensor grad, Tensor like) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("gan_loss_forward", &forward_cpu);
  m.impl("gan_loss_backward", &backward_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("gan_loss_forward", &forward_cuda);
  m.impl("gan_loss_backward", &backward_cuda);
}
#endif

}  // namespace fastgan
