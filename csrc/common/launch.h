// Torch-side launch helpers shared by every op's binding: output allocation and the current CUDA stream.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Storage.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/cpu_block_cache.h"

#ifdef FASTGAN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fastgan {

// fp64 stays fp64; every other floating dtype accumulates (and returns per-sample reductions) in fp32.
inline at::ScalarType acc_scalar_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline at::Tensor empty_acc(int64_t n, const at::Tensor& like) {
  return at::empty({n}, like.options().dtype(acc_scalar_type(like)));
}

// Large CPU outputs: ask the kernel for transparent huge pages before the first write. A fresh buffer of a few MB
// or more is fresh mmap'd memory, and faulting it in 4 KB at a time costs more than an elementwise kernel's own
// work (a 33 MB output on the 2-core dev machine: ~11 ms of page faults against ~2 ms of writing); 2 MB pages fault
// 512x less often. PyTorch's CPU allocator does the same only when THP_MEM_ALLOC_ENABLE=1 is set. Advice only: it
// changes no values, and where the system does not honour it nothing happens.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t(2) << 20;
  const std::uintptr_t bytes = static_cast<std::uintptr_t>(t.nbytes());
  if (!t.device().is_cpu() || bytes < 2 * kHuge) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const std::uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// at::empty_like for a CPU kernel's output (same layout as `like`): large outputs come from the block cache
// (common/cpu_block_cache.h), others from torch's allocator, backed by huge pages when large.
inline at::Tensor empty_like_output(const at::Tensor& like) {
  CpuBlockCache& cache = CpuBlockCache::instance();
  const std::size_t bytes = like.nbytes();
  if (like.device().is_cpu() && bytes >= CpuBlockCache::kMinBytes && cache.enabled() &&
      like.is_non_overlapping_and_dense()) {
    const std::size_t size = CpuBlockCache::rounded(bytes);
    if (void* block = cache.get(size)) {
      // The storage returns the block when it dies; it stays resizable (a resize moves it to torch's allocator).
      // A dense tensor's empty_like has its strides, so the block holds exactly its elements.
      c10::DataPtr data(block, new CpuBlockLease{block, size}, &CpuBlockLease::release, c10::Device(c10::kCPU));
      c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, std::move(data), c10::GetCPUAllocator(),
                           /*resizable=*/true);
      return at::empty({0}, like.options()).set_(storage, 0, like.sizes(), like.strides());
    }
  }
  at::Tensor out = at::empty_like(like);
  advise_huge_pages(out);
  return out;
}

#ifdef FASTGAN_WITH_CUDA
inline void* current_stream(const at::Tensor& t) {
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
}
#endif

}  // namespace fastgan
