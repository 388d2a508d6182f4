// torch.library registration of spectral_norm_power_iteration_: the power iteration (updating u and v in place)
// and sigma for a list of layers in one call. Schema, argument checks, CPU and CUDA implementations.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "common/binding.h"
#include "common/launch.h"
#include "spectral_norm/spectral_norm.h"

namespace fastgan {
namespace {

std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// Layer descriptors and one workspace for all of them (8-byte slots: any accumulation type fits).
struct Prepared {
  std::vector<SNLayer> layers;
  at::Tensor workspace;
  at::Tensor sigma;
};

template <typename Chunks>
Prepared prepare(at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
                 int64_t n_power_iterations, double eps, Chunks&& chunks_of) {
  const size_t count = weights.size();
  TORCH_CHECK_VALUE(us.size() == count && vs.size() == count && dims.size() == count,
                    "fastgan: weights, us, vs and dims must have one entry per layer");
  TORCH_CHECK_VALUE(n_power_iterations >= 1, "fastgan: n_power_iterations must be >= 1, got ", n_power_iterations);
  TORCH_CHECK_VALUE(eps > 0, "fastgan: eps must be > 0, got ", eps);
  Prepared out;
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor& wt = weights[i];
    const DType dtype = to_dtype(wt, item("weights", i).c_str());
    TORCH_CHECK(wt.device() == weights[0].device(), "fastgan: ", item("weights", i),
                " is on another device than weights[0]");
    TORCH_CHECK_VALUE(wt.dim() >= 2, "fastgan: ", item("weights", i), " must have at least 2 dimensions");
    TORCH_CHECK(wt.is_contiguous(), "fastgan: ", item("weights", i), " must be contiguous");
    const int64_t dim = dims[i];
    TORCH_CHECK_VALUE(dim >= 0 && dim < wt.dim(), "fastgan: ", item("dims", i), " is out of range");
    int64_t a = 1, k = 1;
    for (int64_t d = 0; d < dim; ++d) a *= wt.size(d);
    for (int64_t d = dim + 1; d < wt.dim(); ++d) k *= wt.size(d);
    const int64_t h = wt.size(dim), w = a * k;
    for (const auto& pair : {std::make_pair(&us[i], h), std::make_pair(&vs[i], w)}) {
      const at::Tensor& t = *pair.first;
      TORCH_CHECK(t.dim() == 1 && t.size(0) == pair.second && t.is_contiguous() &&
                      t.scalar_type() == wt.scalar_type() && t.device() == wt.device(),
                  "fastgan: ", item(pair.first == &us[i] ? "us" : "vs", i), " must be a contiguous vector of ",
                  pair.second, " elements with the weight's dtype and device");
    }
    const int64_t chunks = h * w == 0 ? 1 : chunks_of(h, w);
    out.layers.push_back({wt.data_ptr(), us[i].data_ptr(), vs[i].data_ptr(), a, h, k, dtype, nullptr, chunks});
    offsets.push_back(total);
    total += spectral_norm_workspace(h, w, chunks);
  }
  const auto options = weights.empty() ? at::TensorOptions().dtype(at::kDouble)
                                       : weights[0].options().dtype(at::kDouble);
  out.workspace = at::empty({std::max<int64_t>(total, 1)}, options);
  out.sigma = at::empty({static_cast<int64_t>(count)}, options);
  double* base = out.workspace.data_ptr<double>();
  for (size_t i = 0; i < count; ++i) out.layers[i].workspace = base + offsets[i];
  return out;
}

at::Tensor power_iteration_cpu(at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
                               int64_t n_power_iterations, double eps, bool update) {
  auto p = prepare(weights, us, vs, dims, n_power_iterations, eps, &spectral_norm_cpu_chunks);
  spectral_norm_cpu(p.layers.data(), static_cast<int64_t>(p.layers.size()), n_power_iterations, eps, update,
                    p.sigma.data_ptr<double>());
  return p.sigma;
}

#ifdef FASTGAN_WITH_CUDA
at::Tensor power_iteration_cuda(at::TensorList weights, at::TensorList us, at::TensorList vs, at::IntArrayRef dims,
                                int64_t n_power_iterations, double eps, bool update) {
  TORCH_CHECK(!weights.empty(), "fastgan: weights must not be empty");
  c10::cuda::CUDAGuard guard(weights[0].device());
  auto p = prepare(weights, us, vs, dims, n_power_iterations, eps, &spectral_norm_cuda_chunks);
  spectral_norm_cuda(p.layers.data(), static_cast<int64_t>(p.layers.size()), n_power_iterations, eps, update,
                     p.sigma.data_ptr<double>(), current_stream(weights[0]));
  return p.sigma;
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) {
  m.def(
      "spectral_norm_power_iteration_(Tensor[] weights, Tensor(a!)[] us, Tensor(b!)[] vs, int[] dims, "
      "int n_power_iterations, float eps, bool update) -> Tensor sigma");
}

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("spectral_norm_power_iteration_", &power_iteration_cpu); }

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) { m.impl("spectral_norm_power_iteration_", &power_iteration_cuda); }
#endif

}  // namespace fastgan
