// torch.library registration of fused_optim: in-place RMSprop and Adam steps (with an optional clamp) over lists of
// parameters, their gradients and optimizer states. Schemas, argument checks, CPU and CUDA implementations.
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/binding.h"
#include "common/launch.h"
#include "fused_optim/fused_optim.h"

namespace fastgan {
namespace {

std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// `t` must be laid out exactly like its parameter: the kernels index every tensor of a parameter with one offset.
void check_like(const at::Tensor& t, const at::Tensor& param, const char* list, size_t i) {
  const std::string name = item(list, i);
  TORCH_CHECK(t.device() == param.device(), "fastgan: ", name, " is on ", t.device(), " but its parameter is on ",
              param.device());
  TORCH_CHECK_TYPE(t.scalar_type() == param.scalar_type(), "fastgan: ", name, " has dtype ", t.scalar_type(),
                   " but its parameter has ", param.scalar_type());
  TORCH_CHECK(t.sizes() == param.sizes() && (param.numel() == 0 || t.strides() == param.strides()), "fastgan: ",
              name, " must have its parameter's shape and memory layout");
}

void check_list(at::TensorList list, at::TensorList params, const char* name, bool used) {
  if (!used) return;
  TORCH_CHECK_VALUE(list.size() == params.size(), "fastgan: ", name, " must have one tensor per parameter (",
                    params.size(), "), got ", list.size());
  for (size_t i = 0; i < list.size(); ++i) check_like(list[i], params[i], name, i);
}

std::vector<OptimTensor> table_of(at::TensorList params, at::TensorList grads, at::TensorList s0, at::TensorList s1,
                                  bool use_s1, at::TensorList s2, bool use_s2, double clip) {
  TORCH_CHECK_VALUE(clip > 0 && !std::isnan(clip), "fastgan: clip must be > 0 (inf: no clamp), got ", clip);
  check_list(grads, params, "grads", true);
  check_list(s0, params, "state", true);
  check_list(s1, params, "state", use_s1);
  check_list(s2, params, "state", use_s2);
  std::vector<OptimTensor> table;
  table.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const DType dtype = to_dtype(p, item("params", i).c_str());
    TORCH_CHECK(p.device() == params[0].device(), "fastgan: ", item("params", i), " is on ", p.device(),
                " but params[0] is on ", params[0].device());
    if (p.numel() == 0) continue;
    TORCH_CHECK(p.is_non_overlapping_and_dense(), "fastgan: ", item("params", i), " must be dense");
    table.push_back({p.data_ptr(), grads[i].data_ptr(), s0[i].data_ptr(), use_s1 ? s1[i].data_ptr() : nullptr,
                     use_s2 ? s2[i].data_ptr() : nullptr, p.numel(), dtype, 0.0, 1.0});
  }
  return table;
}

struct Rmsprop {
  std::vector<OptimTensor> table;
  RMSpropHyper hyper;
};

Rmsprop prepare_rmsprop(at::TensorList params, at::TensorList grads, at::TensorList square_avgs,
                        at::TensorList grad_avgs, at::TensorList momentum_buffers, double lr, double alpha, double eps,
                        double weight_decay, double momentum, bool centered, bool maximize, double clip) {
  Rmsprop r;
  r.table = table_of(params, grads, square_avgs, grad_avgs, centered, momentum_buffers, momentum > 0, clip);
  r.hyper = {lr, alpha, eps, weight_decay, momentum, clip, centered, maximize};
  return r;
}

struct Adam {
  std::vector<OptimTensor> table;
  AdamHyper hyper;
};

Adam prepare_adam(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                  at::TensorList max_exp_avg_sqs, at::ArrayRef<double> neg_step_sizes,
                  at::ArrayRef<double> bias_correction2_sqrts, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay, double clip) {
  TORCH_CHECK_VALUE(neg_step_sizes.size() == params.size() && bias_correction2_sqrts.size() == params.size(),
                    "fastgan: neg_step_sizes and bias_correction2_sqrts need one value per parameter");
  Adam a;
  a.table = table_of(params, grads, exp_avgs, exp_avg_sqs, true, max_exp_avg_sqs, amsgrad, clip);
  size_t k = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].numel() == 0) continue;
    a.table[k].neg_step_size = neg_step_sizes[i];
    a.table[k].bias_correction2_sqrt = bias_correction2_sqrts[i];
    ++k;
  }
  a.hyper = {lr, beta1, beta2, eps, weight_decay, clip, amsgrad, maximize, decoupled_weight_decay};
  return a;
}

void rmsprop_cpu(at::TensorList params, at::TensorList grads, at::TensorList square_avgs, at::TensorList grad_avgs,
                 at::TensorList momentum_buffers, double lr, double alpha, double eps, double weight_decay,
                 double momentum, bool centered, bool maximize, double clip) {
  auto r = prepare_rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay,
                           momentum, centered, maximize, clip);
  fused_optim_rmsprop_cpu(r.table.data(), static_cast<int64_t>(r.table.size()), r.hyper);
}

void adam_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
              at::TensorList max_exp_avg_sqs, at::ArrayRef<double> neg_step_sizes,
              at::ArrayRef<double> bias_correction2_sqrts, double lr, double beta1, double beta2, double eps,
              double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay, double clip) {
  auto a = prepare_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts,
                        lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip);
  fused_optim_adam_cpu(a.table.data(), static_cast<int64_t>(a.table.size()), a.hyper);
}

#ifdef FASTGAN_WITH_CUDA
void rmsprop_cuda(at::TensorList params, at::TensorList grads, at::TensorList square_avgs, at::TensorList grad_avgs,
                  at::TensorList momentum_buffers, double lr, double alpha, double eps, double weight_decay,
                  double momentum, bool centered, bool maximize, double clip) {
  auto r = prepare_rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay,
                           momentum, centered, maximize, clip);
  if (r.table.empty()) return;
  c10::cuda::CUDAGuard guard(params[0].device());
  fused_optim_rmsprop_cuda(r.table.data(), static_cast<int64_t>(r.table.size()), r.hyper, current_stream(params[0]));
}

void adam_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
               at::TensorList max_exp_avg_sqs, at::ArrayRef<double> neg_step_sizes,
               at::ArrayRef<double> bias_correction2_sqrts, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay, double clip) {
  auto a = prepare_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts,
                        lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip);
  if (a.table.empty()) return;
  c10::cuda::CUDAGuard guard(params[0].device());
  fused_optim_adam_cuda(a.table.data(), static_cast<int64_t>(a.table.size()), a.hyper, current_stream(params[0]));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def(
      "fused_optim_rmsprop_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] square_avgs, Tensor(c!)[] grad_avgs, "
      "Tensor(d!)[] momentum_buffers, float lr, float alpha, float eps, float weight_decay, float momentum, "
      "bool centered, bool maximize, float clip) -> ()");
  m.def(
      "fused_optim_adam_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
      "Tensor(d!)[] max_exp_avg_sqs, float[] neg_step_sizes, float[] bias_correction2_sqrts, float lr, float beta1, "
      "float beta2, float eps, float weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay, "
      "float clip) -> ()");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("fused_optim_rmsprop_", &rmsprop_cpu);
  m.impl("fused_optim_adam_", &adam_cpu);
}

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("fused_optim_rmsprop_", &rmsprop_cuda);
  m.impl("fused_optim_adam_", &adam_cuda);
}
#endif

}  // namespace fastgan
