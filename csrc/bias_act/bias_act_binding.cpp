// torch.library registration of bias_act: schemas, argument checks, CPU and CUDA implementations.
//
// Every elementwise tensor of a call must be dense (non-overlapping, any permutation: contiguous and channels_last
// included) and share one layout; outputs are allocated with that layout. The Python side (fastgan/ops/bias_act.py)
// arranges this, so these checks only guard against misuse of the raw ops.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "bias_act/bias_act.h"
#include "common/binding.h"
#include "common/launch.h"

namespace fastgan {
namespace {

void check_params(int64_t act, int64_t saved) {
  TORCH_CHECK_VALUE(act >= 0 && act < kBaNumActs, "fastgan: bias_act: act code must be in [0, ", kBaNumActs,
                    "), got ", act);
  TORCH_CHECK_VALUE(saved == kSavedY || saved == kSavedX, "fastgan: bias_act: saved must be 0 (y) or 1 (x), got ",
                    saved);
}

// [outer, channels, inner] of a dense tensor for the bias dimension `dim` (inner = that dimension's stride).
BiasActLayout layout_of(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK(t.is_non_overlapping_and_dense(), "fastgan: bias_act: ", name,
              " must be dense (contiguous, channels_last or another permutation): call .contiguous()");
  BiasActLayout layout{1, 1, t.numel()};
  if (t.dim() == 0) return layout;
  TORCH_CHECK_VALUE(dim >= 0 && dim < t.dim(), "fastgan: bias_act: dim must be in [0, ", t.dim(), "), got ", dim);
  const int64_t channels = t.size(dim);
  if (channels <= 1 || t.numel() == 0) {
    layout.channels = channels;
    layout.inner = channels == 0 ? 0 : t.numel();
    return layout;
  }
  layout.channels = channels;
  layout.inner = t.stride(dim);
  layout.outer = t.numel() / (channels * layout.inner);
  return layout;
}

void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_same(ref, ref_name, t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "fastgan: bias_act: ", name, " must have ", ref_name,
                   "'s dtype ", ref.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == ref.sizes() && t.strides() == ref.strides(), "fastgan: bias_act: ", name,
              " must have the shape and strides of ", ref_name);
}

void check_bias(const c10::optional<at::Tensor>& bias, const at::Tensor& ref, BiasActLayout layout) {
  if (!bias.has_value()) return;
  check_same(ref, "x", *bias, "bias");
  TORCH_CHECK_TYPE(bias->scalar_type() == ref.scalar_type(), "fastgan: bias_act: bias must have x's dtype");
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == layout.channels && bias->is_contiguous(),
                    "fastgan: bias_act: bias must be a contiguous [", layout.channels, "] tensor");
}

BiasActParams params_of(int64_t act, int64_t saved, double alpha, double gain, double clamp) {
  check_params(act, saved);
  BiasActParams p;
  p.act = static_cast<int>(act);
  p.saved = static_cast<int>(saved);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  return p;
}

const void* ptr_or_null(const c10::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

// Shared front half of backward/grad2: the tensor whose layout everything follows, its layout, and checks.
struct Prepared {
  at::Tensor ref;
  BiasActLayout layout;
  BiasActParams params;
};

Prepared prepare(const at::Tensor& grad, const char* grad_name, const c10::optional<at::Tensor>& x,
                 const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& y, int64_t act,
                 int64_t saved, double alpha, double gain, double clamp, int64_t dim) {
  Prepared out;
  out.params = params_of(act, saved, alpha, gain, clamp);
  to_dtype(grad, grad_name);
  if (saved == kSavedX) {
    TORCH_CHECK_VALUE(x.has_value(), "fastgan: bias_act: saved=x needs x");
    out.ref = *x;
  } else if (y.has_value()) {
    out.ref = *y;
  } else {
    TORCH_CHECK_VALUE(act == kBaLinear, "fastgan: bias_act: saved=y needs y for this activation");
    out.ref = grad;
  }
  out.layout = layout_of(out.ref, dim, "the saved tensor");
  check_like(grad, grad_name, out.ref, "the saved tensor");
  if (saved == kSavedX) check_bias(bias, out.ref, out.layout);
  return out;
}

at::Tensor forward_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& bias, int64_t act, double alpha,
                       double gain, double clamp, int64_t dim) {
  to_dtype(x, "x");
  const BiasActLayout layout = layout_of(x, dim, "x");
  check_bias(bias, x, layout);
  const BiasActParams p = params_of(act, kSavedX, alpha, gain, clamp);
  at::Tensor y = empty_like_output(x);  // dense input: same strides (channels_last kept)
  bias_act_forward_cpu(to_dtype(x, "x"), x.data_ptr(), ptr_or_null(bias), layout, p, y.data_ptr());
  return y;
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& dy, const c10::optional<at::Tensor>& x,
                                                const c10::optional<at::Tensor>& bias,
                                                const c10::optional<at::Tensor>& y, int64_t act, int64_t saved,
                                                double alpha, double gain, double clamp, int64_t dim, bool need_db) {
  Prepared pr = prepare(dy, "dy", x, bias, y, act, saved, alpha, gain, clamp, dim);
  at::Tensor dx = empty_like_output(pr.ref);
  at::Tensor db = at::empty({need_db ? pr.layout.channels : 0}, dy.options());
  bias_act_backward_cpu(to_dtype(dy, "dy"), dy.data_ptr(), saved == kSavedX ? x->data_ptr() : nullptr,
                        saved == kSavedX ? ptr_or_null(bias) : nullptr, ptr_or_null(y), pr.layout, pr.params,
                        dx.data_ptr(), need_db ? db.data_ptr() : nullptr);
  return {dx, db};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> grad2_cpu(const at::Tensor& u, const at::Tensor& dy,
                                                         const c10::optional<at::Tensor>& x,
                                                         const c10::optional<at::Tensor>& bias,
                                                         const c10::optional<at::Tensor>& y, int64_t act,
                                                         int64_t saved, double alpha, double gain, double clamp,
                                                         int64_t dim, bool need_gdy, bool need_gs, bool need_gb) {
  Prepared pr = prepare(u, "u", x, bias, y, act, saved, alpha, gain, clamp, dim);
  check_like(dy, "dy", pr.ref, "the saved tensor");
  const bool smooth = !bias_act_piecewise_linear(static_cast<int>(act));
  need_gs = need_gs && smooth;
  need_gb = need_gb && smooth && saved == kSavedX && bias.has_value();
  at::Tensor g_dy = need_gdy ? empty_like_output(pr.ref) : at::empty({0}, u.options());
  at::Tensor g_s = need_gs ? empty_like_output(pr.ref) : at::empty({0}, u.options());
  at::Tensor g_b = at::empty({need_gb ? pr.layout.channels : 0}, u.options());
  bias_act_grad2_cpu(to_dtype(u, "u"), u.data_ptr(), dy.data_ptr(), saved == kSavedX ? x->data_ptr() : nullptr,
                     saved == kSavedX ? ptr_or_null(bias) : nullptr, ptr_or_null(y), pr.layout, pr.params,
                     need_gdy ? g_dy.data_ptr() : nullptr, need_gs ? g_s.data_ptr() : nullptr,
                     need_gb ? g_b.data_ptr() : nullptr);
  return {g_dy, g_s, g_b};
}

#ifdef FASTGAN_WITH_CUDA
at::Tensor workspace_for(const BiasActLayout& layout, const at::Tensor& like) {
  return empty_acc(std::max<int64_t>(1, bias_act_cuda_workspace(layout)), like);
}

at::Tensor forward_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& bias, int64_t act, double alpha,
                        double gain, double clamp, int64_t dim) {
  to_dtype(x, "x");
  const BiasActLayout layout = layout_of(x, dim, "x");
  check_bias(bias, x, layout);
  const BiasActParams p = params_of(act, kSavedX, alpha, gain, clamp);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  bias_act_forward_cuda(to_dtype(x, "x"), x.data_ptr(), ptr_or_null(bias), layout, p, y.data_ptr(),
                        current_stream(x));
  return y;
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& dy, const c10::optional<at::Tensor>& x,
                                                 const c10::optional<at::Tensor>& bias,
                                                 const c10::optional<at::Tensor>& y, int64_t act, int64_t saved,
                                                 double alpha, double gain, double clamp, int64_t dim, bool need_db) {
  Prepared pr = prepare(dy, "dy", x, bias, y, act, saved, alpha, gain, clamp, dim);
  c10::cuda::CUDAGuard guard(dy.device());
  at::Tensor dx = at::empty_like(pr.ref);
  at::Tensor db = at::empty({need_db ? pr.layout.channels : 0}, dy.options());
  at::Tensor workspace = workspace_for(pr.layout, dy);
  bias_act_backward_cuda(to_dtype(dy, "dy"), dy.data_ptr(), saved == kSavedX ? x->data_ptr() : nullptr,
                         saved == kSavedX ? ptr_or_null(bias) : nullptr, ptr_or_null(y), pr.layout, pr.params,
                         dx.data_ptr(), need_db ? db.data_ptr() : nullptr, workspace.data_ptr(), current_stream(dy));
  return {dx, db};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> grad2_cuda(const at::Tensor& u, const at::Tensor& dy,
                                                          const c10::optional<at::Tensor>& x,
                                                          const c10::optional<at::Tensor>& bias,
                                                          const c10::optional<at::Tensor>& y, int64_t act,
                                                          int64_t saved, double alpha, double gain, double clamp,
                                                          int64_t dim, bool need_gdy, bool need_gs, bool need_gb) {
  Prepared pr = prepare(u, "u", x, bias, y, act, saved, alpha, gain, clamp, dim);
  check_like(dy, "dy", pr.ref, "the saved tensor");
  c10::cuda::CUDAGuard guard(u.device());
  const bool smooth = !bias_act_piecewise_linear(static_cast<int>(act));
  need_gs = need_gs && smooth;
  need_gb = need_gb && smooth && saved == kSavedX && bias.has_value();
  at::Tensor g_dy = need_gdy ? at::empty_like(pr.ref) : at::empty({0}, u.options());
  at::Tensor g_s = need_gs ? at::empty_like(pr.ref) : at::empty({0}, u.options());
  at::Tensor g_b = at::empty({need_gb ? pr.layout.channels : 0}, u.options());
  at::Tensor workspace = workspace_for(pr.layout, u);
  bias_act_grad2_cuda(to_dtype(u, "u"), u.data_ptr(), dy.data_ptr(), saved == kSavedX ? x->data_ptr() : nullptr,
                      saved == kSavedX ? ptr_or_null(bias) : nullptr, ptr_or_null(y), pr.layout, pr.params,
                      need_gdy ? g_dy.data_ptr() : nullptr, need_gs ? g_s.data_ptr() : nullptr,
                      need_gb ? g_b.data_ptr() : nullptr, workspace.data_ptr(), current_stream(u));
  return {g_dy, g_s, g_b};
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("bias_act_forward(Tensor x, Tensor? bias, int act, float alpha, float gain, float clamp, int dim) -> Tensor");
  m.def("bias_act_backward(Tensor dy, Tensor? x, Tensor? bias, Tensor? y, int act, int saved, float alpha, "
        "float gain, float clamp, int dim, bool need_db) -> (Tensor dx, Tensor db)");
  m.def("bias_act_grad2(Tensor u, Tensor dy, Tensor? x, Tensor? bias, Tensor? y, int act, int saved, float alpha, "
        "float gain, float clamp, int dim, bool need_gdy, bool need_gs, bool need_gb) "
        "-> (Tensor g_dy, Tensor g_s, Tensor g_b)");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("bias_act_forward", &forward_cpu);
  m.impl("bias_act_backward", &backward_cpu);
  m.impl("bias_act_grad2", &grad2_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("bias_act_forward", &forward_cuda);
  m.impl("bias_act_backward", &backward_cuda);
  m.impl("bias_act_grad2", &grad2_cuda);
}
#endif

}  // namespace fastgan
