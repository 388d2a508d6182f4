// torch.library registration of clip_weights_: schema (an in-place op on a list of tensors), argument checks,
// CPU and CUDA implementations.
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "clip_weights/clip_weights.h"
#include "common/binding.h"
#include "common/launch.h"

namespace fastgan {
namespace {

std::vector<ClipTensor> table_of(const at::TensorList params, double clip) {
  TORCH_CHECK_VALUE(std::isfinite(clip) && clip > 0, "fastgan: clip must be a finite number > 0, got ", clip);
  std::vector<ClipTensor> table;
  table.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const std::string name = "params[" + std::to_string(i) + "]";
    const DType dtype = to_dtype(p, name.c_str());
    TORCH_CHECK(p.device() == params[0].device(), "fastgan: ", name, " is on ", p.device(), " but params[0] is on ",
                params[0].device());
    // Dense tensors (contiguous, channels_last, transposed...) are one block of numel elements from data_ptr.
    TORCH_CHECK(p.numel() == 0 || p.is_non_overlapping_and_dense(), "fastgan: ", name,
                " must be dense (non-overlapping); clamp strided views with torch.clamp_");
    if (p.numel() > 0) table.push_back({p.data_ptr(), p.numel(), dtype});
  }
  return table;
}

void clip_cpu(at::TensorList params, double clip) {
  auto table = table_of(params, clip);
  clip_weights_cpu(table.data(), static_cast<int64_t>(table.size()), clip);
}

#ifdef FASTGAN_WITH_CUDA
void clip_cuda(at::TensorList params, double clip) {
  auto table = table_of(params, clip);
  if (table.empty()) return;
  c10::cuda::CUDAGuard guard(params[0].device());
  clip_weights_cuda(table.data(), static_cast<int64_t>(table.size()), clip, current_stream(params[0]));
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgan, m) { m.def("clip_weights_(Tensor(a!)[] params, float clip) -> ()"); }

TORCH_LIBRARY_IMPL(fastgan, CPU, m) { m.impl("clip_weights_", &clip_cpu); }

#ifdef FASTGAN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgan, CUDA, m) { m.impl("clip_weights_", &clip_cuda); }
#endif

}  // namespace fastgan
