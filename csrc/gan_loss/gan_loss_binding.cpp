// torch.library registration of gan_loss: schemas, argument checks, CPU and CUDA implementations, and the autograd
// node of the whole op (fastgan::gan_loss), which keeps Python out of a training step's loss.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>
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

// The op with its gradient as one C++ autograd node (a Python autograd.Function costs more host time than the
// kernels at a training step's sizes). First order: the backward kernel scales the forward's gradient buffer. Under
// create_graph the backward calls fastgan::gan_loss_backward_graph, implemented in Python
// (fastgan/ops/gan_loss.py, GanLossBackward), whose own backward gives the second and higher orders.
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = c10::optional<at::Tensor>;

struct GanLossNode : public torch::autograd::Function<GanLossNode> {
  static variable_list forward(AutogradContext* ctx, const OptTensor& real, const at::Tensor& fake, int64_t kind,
                               int64_t player, int64_t reduction, double a, double b, double c) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fastgan::gan_loss_forward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                                   int64_t, int64_t, double, double, double, bool)>();
    auto [loss, grad] = op.call(real.has_value() ? *real : fake, fake, kind, player, reduction, a, b, c, true);
    ctx->save_for_backward({real.has_value() ? *real : at::Tensor(), fake, grad});
    ctx->saved_data["config"] =
        c10::IValue(std::vector<double>{static_cast<double>(kind), static_cast<double>(player),
                                        static_cast<double>(reduction), a, b, c});
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list up) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &real = saved[0], &fake = saved[1], &grad = saved[2];
    // e.g. the expanded gradient of a .sum() for reduction="none"
    const at::Tensor upstream = up[0].to(grad.scalar_type()).contiguous();
    at::Tensor flat;
    if (at::GradMode::is_enabled()) {
      static auto graph_op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fastgan::gan_loss_backward_graph", "")
                                 .typed<at::Tensor(const at::Tensor&, const OptTensor&, const at::Tensor&,
                                                   const at::Tensor&, int64_t, int64_t, int64_t, double, double,
                                                   double)>();
      const auto config = ctx->saved_data["config"].toDoubleVector();
      flat = graph_op.call(upstream, real.defined() ? OptTensor(real) : OptTensor(), fake, grad,
                           static_cast<int64_t>(config[0]), static_cast<int64_t>(config[1]),
                           static_cast<int64_t>(config[2]), config[3], config[4], config[5]);
    } else {
      static auto op = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("fastgan::gan_loss_backward", "")
                           .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
      flat = op.call(upstream, grad, fake);
    }
    // needs_input_grad counts the tensor inputs given: without real logits, fake is input 0.
    const int64_t n_real = real.defined() ? real.numel() : 0;
    at::Tensor grad_real, grad_fake;
    if (n_real && ctx->needs_input_grad(0)) grad_real = flat.narrow(0, 0, n_real);
    if (ctx->needs_input_grad(real.defined() ? 1 : 0)) grad_fake = flat.narrow(0, n_real, fake.numel());
    return {grad_real, grad_fake, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor gan_loss_autograd(const OptTensor& real, const at::Tensor& fake, int64_t kind, int64_t player,
                             int64_t reduction, double a, double b, double c) {
  return GanLossNode::apply(real, fake, kind, player, reduction, a, b, c)[0];
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("gan_loss(Tensor? real, Tensor fake, int kind, int player, int reduction, float a, float b, float c) -> Tensor");
  m.def("gan_loss_backward_graph(Tensor upstream, Tensor? real, Tensor fake, Tensor grad, int kind, int player, "
        "int reduction, float a, float b, float c) -> Tensor");
  m.def("gan_loss_forward(Tensor real, Tensor fake, int kind, int player, int reduction, float a, float b, float c, "
        "bool need_grad) -> (Tensor loss, Tensor grad)");
  m.def("gan_loss_backward(Tensor upstream, Tensor grad, Tensor like) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) { m.impl("gan_loss", &gan_loss_autograd); }

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
