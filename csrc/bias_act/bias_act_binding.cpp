// torch.library registration of bias_act: schemas, argument checks, CPU and CUDA implementations.
//
// Every elementwise tensor of a call must be dense (non-overlapping, any permutation: contiguous and channels_last
// included) and share one layout; outputs are allocated with that layout. The Python side (fastgan/ops/bias_act.py)
// arranges this, so these checks only guard against misuse of the raw ops.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/autograd/custom_function.h>
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

// ---------------------------------------------------------------------------------------------- autograd nodes
// The op's first two levels as C++ autograd nodes (fastgan/ops/bias_act.py's BiasActFunction and BiasActBackward),
// for plain eager use on the cpp and cuda backends: at a GAN's layer sizes on a GPU the kernels take microseconds
// and each Python autograd.Function ~20 us of host time. Same maths and saved tensors as the Python levels, which
// stay for torch.compile, torch.func and forward-mode AD. The third order (the backward of the level-2 node under
// create_graph) calls fastgan::bias_act_grad2_graph, implemented in Python by the level-3 Function.
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = c10::optional<at::Tensor>;

OptTensor opt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }

// The tensor whose strides the kernels follow (x, else y, else the gradient made dense), and t laid out like it.
at::Tensor layout_ref(const at::Tensor& x, const at::Tensor& y, const at::Tensor& fallback) {
  if (x.defined()) return x;
  if (y.defined()) return y;
  return fallback.is_non_overlapping_and_dense() ? fallback : fallback.contiguous();
}

at::Tensor match(const at::Tensor& t, const at::Tensor& ref) {
  if (t.strides() == ref.strides() && t.scalar_type() == ref.scalar_type() && t.sizes() == ref.sizes()) return t;
  return at::empty_like(ref).copy_(t);
}

struct Config {
  int64_t act, saved;
  double alpha, gain, clamp;
  int64_t dim;
  std::vector<double> pack() const {
    return {double(act), double(saved), alpha, gain, clamp, double(dim)};
  }
  static Config unpack(const std::vector<double>& v) {
    return {int64_t(v[0]), int64_t(v[1]), v[2], v[3], v[4], int64_t(v[5])};
  }
};

std::tuple<at::Tensor, at::Tensor> run_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& bias,
                                                const at::Tensor& y, const Config& c, bool need_db) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastgan::bias_act_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const OptTensor&,
                                                                 const OptTensor&, const OptTensor&, int64_t, int64_t,
                                                                 double, double, double, int64_t, bool)>();
  return op.call(match(dy, layout_ref(x, y, dy)), opt(x), opt(bias), opt(y), c.act, c.saved, c.alpha, c.gain,
                 c.clamp, c.dim, need_db);
}

using Grad2Signature = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, int64_t, int64_t,
    double, double, double, int64_t, bool, bool, bool);

std::tuple<at::Tensor, at::Tensor, at::Tensor> run_grad2(const at::Tensor& u, const at::Tensor& dy,
                                                         const at::Tensor& x, const at::Tensor& bias,
                                                         const at::Tensor& y, const Config& c, bool need_gdy,
                                                         bool need_gs, bool need_gb) {
  if (at::GradMode::is_enabled()) {  // a third-order gradient: through the Python level 3, differentiable again
    static auto graph = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("fastgan::bias_act_grad2_graph", "")
                            .typed<Grad2Signature>();
    return graph.call(u, opt(dy), opt(x), opt(bias), opt(y), c.act, c.saved, c.alpha, c.gain, c.clamp, c.dim,
                      need_gdy, need_gs, need_gb);
  }
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastgan::bias_act_grad2", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                           int64_t, int64_t, double, double, double, int64_t, bool, bool, bool)>();
  const at::Tensor ref = layout_ref(x, y, u);
  const at::Tensor um = match(u, ref);
  const at::Tensor dym = dy.defined() ? match(dy, ref) : um;  // piecewise linear: dy is never read
  return op.call(um, dym, opt(x), opt(bias), opt(y), c.act, c.saved, c.alpha, c.gain, c.clamp, c.dim, need_gdy,
                 need_gs, need_gb);
}

// Whether argument `arg` of a node needs a gradient: autograd numbers only the inputs that were tensors
// (`defined`: bit i set when argument i was one).
bool needs(AutogradContext* ctx, int64_t defined, int arg) {
  if (!((defined >> arg) & 1)) return false;
  int edge = 0;
  for (int i = 0; i < arg; ++i) edge += (defined >> i) & 1;
  return ctx->needs_input_grad(edge);
}

// Level 2: (dx, db) from dy; its backward is the fused double backward.
struct BiasActBackwardNode : public torch::autograd::Function<BiasActBackwardNode> {
  // Optional inputs go in as std::optional: autograd takes an undefined tensor input for no input at all.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& dy, const OptTensor& x_in,
                               const OptTensor& bias_in, const OptTensor& y_in, std::vector<double> packed,
                               bool need_db) {
    const at::Tensor x = x_in.value_or(at::Tensor()), bias = bias_in.value_or(at::Tensor()),
                     y = y_in.value_or(at::Tensor());
    const Config c = Config::unpack(packed);
    ctx->saved_data["defined"] = c10::IValue(int64_t(1 | (x.defined() << 1) | (bias.defined() << 2) |
                                                     (y.defined() << 3)));
    auto [dx, db] = run_backward(dy, x, bias, y, c, need_db);
    // dy only matters for the act'' term, which is zero for the piecewise-linear activations.
    ctx->save_for_backward({bias_act_piecewise_linear(int(c.act)) ? at::Tensor() : dy, x, bias, y});
    ctx->saved_data["config"] = c10::IValue(packed);
    ctx->saved_data["shape"] = c10::IValue(dy.sizes().vec());
    ctx->set_materialize_grads(false);
    if (!need_db) ctx->mark_non_differentiable({db});
    return {dx, db};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &dy = saved[0], &x = saved[1], &bias = saved[2], &y = saved[3];
    const Config c = Config::unpack(ctx->saved_data["config"].toDoubleVector());
    const at::Tensor &g_dx = grads[0], &g_db = grads[1];
    at::Tensor u = g_dx;
    if (g_db.defined()) {  // db's upstream, broadcast along the channel dimension
      const auto shape = ctx->saved_data["shape"].toIntVector();
      std::vector<int64_t> column(shape.size(), 1);
      column[c.dim] = g_db.size(0);
      const at::Tensor per_channel = g_db.view(column);
      u = g_dx.defined() ? g_dx.add(per_channel) : per_channel.expand(shape);
    }
    const bool smooth = !bias_act_piecewise_linear(int(c.act));
    const int64_t defined = ctx->saved_data["defined"].toInt();
    const bool need_dy = needs(ctx, defined, 0), need_x = needs(ctx, defined, 1) && smooth,
               need_b = needs(ctx, defined, 2) && smooth && bias.defined(), need_y = needs(ctx, defined, 3) && smooth;
    variable_list out(6);
    if (!u.defined() || !(need_dy || need_x || need_b || need_y)) return out;
    auto [g_dy, g_s, g_b] = run_grad2(u, dy, x, bias, y, c, need_dy, need_x || need_y, need_b);
    if (need_dy) out[0] = g_dy;
    if (need_x) out[1] = g_s;
    if (need_b) out[2] = g_b;
    if (need_y) out[3] = g_s;
    return out;
  }
};

// Level 1: y = clamp(act(x + b) * gain); its backward is level 2 (a node of its own only under create_graph).
struct BiasActNode : public torch::autograd::Function<BiasActNode> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const OptTensor& bias_in,
                               std::vector<double> packed) {
    const at::Tensor bias = bias_in.value_or(at::Tensor());
    ctx->saved_data["defined"] = c10::IValue(int64_t(1 | (bias.defined() << 1)));
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fastgan::bias_act_forward", "")
                         .typed<at::Tensor(const at::Tensor&, const OptTensor&, int64_t, double, double, double,
                                           int64_t)>();
    const Config c = Config::unpack(packed);
    at::Tensor y = op.call(x, opt(bias), c.act, c.alpha, c.gain, c.clamp, c.dim);
    if (c.saved == kSavedY) {
      ctx->save_for_backward({at::Tensor(), at::Tensor(), c.act == kBaLinear ? at::Tensor() : y});
    } else {
      ctx->save_for_backward({x, bias, at::Tensor()});
    }
    ctx->saved_data["config"] = c10::IValue(packed);
    // No zeros for a missing upstream (the double backward of relu/lrelu/linear gives y none): skip the pass.
    ctx->set_materialize_grads(false);
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &bias = saved[1], &y = saved[2];
    const at::Tensor& dy = grads[0];
    const int64_t defined = ctx->saved_data["defined"].toInt();
    const bool need_x = needs(ctx, defined, 0), need_b = needs(ctx, defined, 1);
    variable_list out(3);
    if (!dy.defined() || !(need_x || need_b)) return out;
    at::Tensor dx, db;
    if (at::GradMode::is_enabled()) {  // create_graph: the gradient must be differentiable in turn
      auto level2 = BiasActBackwardNode::apply(dy, opt(x), opt(bias), opt(y),
                                               ctx->saved_data["config"].toDoubleVector(), need_b);
      dx = level2[0];
      db = level2[1];
    } else {
      const Config c = Config::unpack(ctx->saved_data["config"].toDoubleVector());
      std::tie(dx, db) = run_backward(dy, x, bias, y, c, need_b);
    }
    if (need_x) out[0] = dx;
    if (need_b) out[1] = db;
    return out;
  }
};

at::Tensor bias_act_autograd(const at::Tensor& x, const OptTensor& bias, int64_t act, int64_t saved, double alpha,
                             double gain, double clamp, int64_t dim) {
  const Config c{act, saved, alpha, gain, clamp, dim};
  return BiasActNode::apply(x, bias.has_value() && bias->defined() ? bias : OptTensor(), c.pack())[0];
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def("bias_act(Tensor x, Tensor? bias, int act, int saved, float alpha, float gain, float clamp, int dim) -> Tensor");
  m.def("bias_act_grad2_graph(Tensor u, Tensor? dy, Tensor? x, Tensor? bias, Tensor? y, int act, int saved, "
        "float alpha, float gain, float clamp, int dim, bool need_gdy, bool need_gs, bool need_gb) "
        "-> (Tensor g_dy, Tensor g_s, Tensor g_b)");
  m.def("bias_act_forward(Tensor x, Tensor? bias, int act, float alpha, float gain, float clamp, int dim) -> Tensor");
  m.def("bias_act_backward(Tensor dy, Tensor? x, Tensor? bias, Tensor? y, int act, int saved, float alpha, "
        "float gain, float clamp, int dim, bool need_db) -> (Tensor dx, Tensor db)");
  m.def("bias_act_grad2(Tensor u, Tensor dy, Tensor? x, Tensor? bias, Tensor? y, int act, int saved, float alpha, "
        "float gain, float clamp, int dim, bool need_gdy, bool need_gs, bool need_gb) "
        "-> (Tensor g_dy, Tensor g_s, Tensor g_b)");
}

TORCH_LIBRARY_IMPL(fastgan, Autograd, m) { m.impl("bias_act", &bias_act_autograd); }

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
