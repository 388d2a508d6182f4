// torch.library registration of mixture_gan_loss: schemas, argument checks, CPU and CUDA implementations, and the
// autograd node of the whole op (fastgan::mixture_gan_loss), which keeps Python out of a training step's loss.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "common/binding.h"
#include "common/launch.h"
#include "mixture_gan_loss/mixture_gan_loss.h"

namespace fastgan {
namespace {

struct Sizes {
  int64_t tg, td, batch;
};

Sizes check_forward(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& gw, const at::Tensor& dw,
                    int64_t kind, int64_t regularizer) {
  const DType dtype = to_dtype(fake, "fake_logits");
  TORCH_CHECK_TYPE(to_dtype(real, "real_logits") == dtype, "fastgan: real_logits and fake_logits must have the same dtype");
  TORCH_CHECK_VALUE(kind >= kNonSaturating && kind <= kRelativistic, "fastgan: mixture_gan_loss kind must be 0..5, got ",
                    kind);
  TORCH_CHECK_VALUE(regularizer >= kMixRegNone && regularizer <= kMixRegEntropy,
                    "fastgan: mixture_gan_loss regularizer must be 0, 1 or 2, got ", regularizer);
  check_same(fake, "fake_logits", real, "real_logits");
  check_same(fake, "fake_logits", gw, "g_weight_logits");
  check_same(fake, "fake_logits", dw, "d_weight_logits");
  TORCH_CHECK_VALUE(fake.dim() == 3 && real.dim() == 2 && gw.dim() == 1 && dw.dim() == 1,
                    "fastgan: mixture_gan_loss takes fake_logits [T_g, T_d, B], real_logits [T_d, B] and weight "
                    "logits [T_g], [T_d]");
  const Sizes sizes{fake.size(0), fake.size(1), fake.size(2)};
  TORCH_CHECK_VALUE(sizes.tg > 0 && sizes.td > 0 && sizes.batch > 0, "fastgan: fake_logits must not be empty");
  TORCH_CHECK_VALUE(real.size(0) == sizes.td && real.size(1) == sizes.batch, "fastgan: real_logits must be [T_d, B] = [",
                    sizes.td, ", ", sizes.batch, "], got ", real.sizes());
  TORCH_CHECK_VALUE(gw.size(0) == sizes.tg, "fastgan: g_weight_logits must have T_g = ", sizes.tg, " entries");
  TORCH_CHECK_VALUE(dw.size(0) == sizes.td, "fastgan: d_weight_logits must have T_d = ", sizes.td, " entries");
  const auto acc = acc_scalar_type(fake);
  TORCH_CHECK(real.is_contiguous() && fake.is_contiguous() && gw.is_contiguous() && dw.is_contiguous(),
              "fastgan: mixture_gan_loss takes contiguous tensors");
  TORCH_CHECK_TYPE(gw.scalar_type() == acc && dw.scalar_type() == acc,
                   "fastgan: weight logits must be of the accumulation dtype (float32, float64 for float64 logits)");
  return sizes;
}

int64_t section(const Sizes& s) { return s.td * s.batch + s.tg * s.td * s.batch + s.tg + s.td; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> allocate(const at::Tensor& fake, const Sizes& s, bool need_grad) {
  const auto options = fake.options().dtype(acc_scalar_type(fake));
  return {at::empty({}, options), at::empty({}, options), at::empty({need_grad ? 2 * section(s) : 0}, options)};
}

void check_backward(const at::Tensor& jac, const at::Tensor& up_d, const at::Tensor& up_g, const at::Tensor& real,
                    const at::Tensor& fake, const at::Tensor& gw, const at::Tensor& dw) {
  const Sizes s = check_forward(real, fake, gw, dw, 0, 0);
  const auto acc = acc_scalar_type(fake);
  check_same(fake, "fake_logits", jac, "jac");
  check_same(fake, "fake_logits", up_d, "up_d");
  check_same(fake, "fake_logits", up_g, "up_g");
  TORCH_CHECK(jac.dim() == 1 && jac.numel() == 2 * section(s) && jac.is_contiguous() && jac.scalar_type() == acc,
              "fastgan: jac must be the forward's contiguous Jacobian buffer");
  TORCH_CHECK(up_d.numel() == 1 && up_g.numel() == 1 && up_d.scalar_type() == acc && up_g.scalar_type() == acc,
              "fastgan: up_d and up_g must be one-element tensors of the accumulation dtype");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> allocate_grads(const at::Tensor& real,
                                                                           const at::Tensor& fake,
                                                                           const at::Tensor& gw,
                                                                           const at::Tensor& dw) {
  return {at::empty(real.sizes(), real.options()), at::empty(fake.sizes(), fake.options()),
          at::empty(gw.sizes(), gw.options()), at::empty(dw.sizes(), dw.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& real, const at::Tensor& fake,
                                                           const at::Tensor& gw, const at::Tensor& dw, int64_t kind,
                                                           double a, double b, double c, int64_t regularizer,
                                                           double reg_weight, bool need_grad) {
  const Sizes s = check_forward(real, fake, gw, dw, kind, regularizer);
  auto [d_loss, g_loss, jac] = allocate(fake, s, need_grad);
  const int status = mixture_gan_loss_forward_cpu(
      to_dtype(fake, "fake_logits"), real.data_ptr(), fake.data_ptr(), gw.data_ptr(), dw.data_ptr(), s.tg, s.td,
      s.batch, static_cast<int>(kind), a, b, c, static_cast<int>(regularizer), reg_weight, d_loss.data_ptr(),
      g_loss.data_ptr(), need_grad ? jac.data_ptr() : nullptr);
  TORCH_CHECK_VALUE(status != 1, "fastgan: g_weight_logits must be finite (got inf or nan)");
  TORCH_CHECK_VALUE(status != 2, "fastgan: d_weight_logits must be finite (got inf or nan)");
  return {d_loss, g_loss, jac};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& jac, const at::Tensor& up_d,
                                                                        const at::Tensor& up_g, const at::Tensor& real,
                                                                        const at::Tensor& fake, const at::Tensor& gw,
                                                                        const at::Tensor& dw) {
  check_backward(jac, up_d, up_g, real, fake, gw, dw);
  auto [d_real, d_fake, d_gw, d_dw] = allocate_grads(real, fake, gw, dw);
  mixture_gan_loss_backward_cpu(to_dtype(fake, "fake_logits"), jac.data_ptr(), up_d.data_ptr(), up_g.data_ptr(),
                                fake.size(0), fake.size(1), fake.size(2), d_real.data_ptr(), d_fake.data_ptr(),
                                d_gw.data_ptr(), d_dw.data_ptr());
  return {d_real, d_fake, d_gw, d_dw};
}

#ifdef FASTGAN_WITH_CUDA
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& real, const at::Tensor& fake,
                                                            const at::Tensor& gw, const at::Tensor& dw, int64_t kind,
                                                            double a, double b, double c, int64_t regularizer,
                                                            double reg_weight, bool need_grad) {
  const Sizes s = check_forward(real, fake, gw, dw, kind, regularizer);
  c10::cuda::CUDAGuard guard(fake.device());
  auto [d_loss, g_loss, jac] = allocate(fake, s, need_grad);
  at::Tensor workspace = empty_acc(mixture_gan_loss_cuda_workspace(s.tg, s.td, s.batch), fake);
  mixture_gan_loss_forward_cuda(to_dtype(fake, "fake_logits"), real.data_ptr(), fake.data_ptr(), gw.data_ptr(),
                                dw.data_ptr(), s.tg, s.td, s.batch, static_cast<int>(kind), a, b, c,
                                static_cast<int>(regularizer), reg_weight, d_loss.data_ptr(), g_loss.data_ptr(),
                                need_grad ? jac.data_ptr() : nullptr, workspace.data_ptr(), current_stream(fake));
  return {d_loss, g_loss, jac};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& jac,
                                                                         const at::Tensor& up_d,
                                                                         const at::Tensor& up_g,
                                                                         const at::Tensor& real,
                                                                         const at::Tensor& fake, const at::Tensor& gw,
                                                                         const at::Tensor& dw) {
  check_backward(jac, up_d, up_g, real, fake, gw, dw);
  c10::cuda::CUDAGuard guard(fake.device());
  auto [d_real, d_fake, d_gw, d_dw] = allocate_grads(real, fake, gw, dw);
  mixture_gan_loss_backward_cuda(to_dtype(fake, "fake_logits"), jac.data_ptr(), up_d.data_ptr(), up_g.data_ptr(),
                                 fake.size(0), fake.size(1), fake.size(2), d_real.data_ptr(), d_fake.data_ptr(),
                                 d_gw.data_ptr(), d_dw.data_ptr(), current_stream(fake));
  return {d_real, d_fake, d_gw, d_dw};
}
#endif

// The op with its gradient as one C++ autograd node. At MIX+GAN's sizes (T = 5, B = 64) the kernels take ~20 us and
// a Python autograd.Function around them ~40 us more, so the node lives here. First order: the backward kernel
// from the saved Jacobian. Under create_graph (a higher-order gradient) the backward calls
// fastgan::mixture_gan_loss_backward_graph, implemented in Python (fastgan/ops/mixture_gan_loss.py) by
// differentiating the reference, so every order stays exact.
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct MixtureGanLossNode : public torch::autograd::Function<MixtureGanLossNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
                               const at::Tensor& gw, const at::Tensor& dw, int64_t kind, double a, double b, double c,
                               int64_t regularizer, double reg_weight) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fastgan::mixture_gan_loss_forward", "")
                         .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                             const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
                             double, double, double, int64_t, double, bool)>();
    auto [d_loss, g_loss, jac] = op.call(real, fake, gw, dw, kind, a, b, c, regularizer, reg_weight, true);
    ctx->save_for_backward({real, fake, gw, dw, jac});
    ctx->saved_data["config"] = c10::IValue(std::vector<double>{static_cast<double>(kind), a, b, c,
                                                                static_cast<double>(regularizer), reg_weight});
    return {d_loss, g_loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list up) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &real = saved[0], &fake = saved[1], &gw = saved[2], &dw = saved[3], &jac = saved[4];
    // Materialised grads: an output that took no part arrives as zeros of its (0-dim) shape.
    const at::Tensor up_d = up[0].to(jac.scalar_type()), up_g = up[1].to(jac.scalar_type());
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> grads;
    if (at::GradMode::is_enabled()) {
      static auto graph_op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fastgan::mixture_gan_loss_backward_graph", "")
                                 .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                                     const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double,
                                     double, double, int64_t, double)>();
      const auto config = ctx->saved_data["config"].toDoubleVector();
      grads = graph_op.call(up_d, up_g, real, fake, gw, dw, jac, static_cast<int64_t>(config[0]), config[1],
                            config[2], config[3], static_cast<int64_t>(config[4]), config[5]);
    } else {
      static auto op = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("fastgan::mixture_gan_loss_backward", "")
                           .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                               const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
      grads = op.call(jac, up_d, up_g, real, fake, gw, dw);
    }
    auto pick = [&](size_t i, const at::Tensor& g) { return ctx->needs_input_grad(i) ? g : at::Tensor(); };
    return {pick(0, std::get<0>(grads)), pick(1, std::get<1>(grads)), pick(2, std::get<2>(grads)),
            pick(3, std::get<3>(grads)), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> mixture_gan_loss_autograd(const at::Tensor& real, const at::Tensor& fake,
                                                             const at::Tensor& gw, const at::Tensor& dw, int64_t kind,
                                                             double a, double b, double c, int64_t regularizer,
                                                             double reg_weight) {
  auto out = MixtureGanLossNode::apply(real, fake, gw, dw, kind, a, b, c, regularizer, reg_weight);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("mixture_gan_loss(Tensor real, Tensor fake, Tensor g_weight_logits, Tensor d_weight_logits, int kind, "
        "float a, float b, float c, int regularizer, float reg_weight) -> (Tensor d_loss, Tensor g_loss)");
  m.def("mixture_gan_loss_backward_graph(Tensor up_d, Tensor up_g, Tensor real, Tensor fake, "
        "Tensor g_weight_logits, Tensor d_weight_logits, Tensor jac, int kind, float a, float b, float c, "
        "int regularizer, float reg_weight) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("mixture_gan_loss_forward(Tensor real, Tensor fake, Tensor g_weight_logits, Tensor d_weight_logits, int kind, "
        "float a, float b, float c, int regularizer, float reg_weight, bool need_grad) -> "
        "(Tensor d_loss, Tensor g_loss, Tensor jac)");
  m.def("mixture_gan_loss_backward(Tensor jac, Tensor up_d, Tensor up_g, Tensor real, Tensor fake, "
        "Tensor g_weight_logits, Tensor d_weight_logits) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) { m.impl("mixture_gan_loss", &mixture_gan_loss_autograd); }

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("mixture_gan_loss_forward", &forward_cpu);
  m.impl("mixture_gan_loss_backward", &backward_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("mixture_gan_loss_forward", &forward_cuda);
  m.impl("mixture_gan_loss_backward", &backward_cuda);
}
#endif

}  // namespace fastgan
