// CPU kernel of clip_weights: one at::parallel_for over the fixed-size chunks of every tensor of the list.
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "clip_weights/clip_weights.h"
#include "common/cpu.h"

namespace fastgan {
namespace {

// Below this many elements in all, threads cost more than they save: run on the calling thread.
constexpr int64_t kSerialElems = 1 << 15;

// std::max(x, lo) is (x < lo ? lo : x): NaN stays NaN, and gcc maps it onto one max instruction (and std::min onto
// one min), so the loop is two instructions per vector instead of compare-and-blend sequences.
template <typename A>
FASTGAN_FORCE_INLINE void clip_plain(A* __restrict__ x, int64_t n, A lo, A hi) {
#pragma GCC unroll 4
  for (int64_t i = 0; i < n; ++i) x[i] = std::min(std::max(x[i], lo), hi);
}

void clip_sse(float* x, int64_t n, float lo, float hi) { clip_plain(x, n, lo, hi); }
void clip_sse(double* x, int64_t n, double lo, double hi) { clip_plain(x, n, lo, hi); }
#if FASTGAN_CPU_X86
__attribute__((target("avx2"))) void clip_avx2(float* x, int64_t n, float lo, float hi) { clip_plain(x, n, lo, hi); }
__attribute__((target("avx2"))) void clip_avx2(double* x, int64_t n, double lo, double hi) {
  clip_plain(x, n, lo, hi);
}
__attribute__((target("avx512f"))) void clip_avx512(float* x, int64_t n, float lo, float hi) {
  clip_plain(x, n, lo, hi);
}
__attribute__((target("avx512f"))) void clip_avx512(double* x, int64_t n, double lo, double hi) {
  clip_plain(x, n, lo, hi);
}
#endif

template <typename T>
void clip_range(T* __restrict__ x, int64_t n, double clip) {
  using A = acc_t<T>;
  // The bound in the storage dtype first, as torch's clamp_ converts its scalars.
  const A hi = static_cast<A>(static_cast<T>(clip));
  const A lo = static_cast<A>(static_cast<T>(-clip));
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(clip_value<A>(static_cast<A>(x[i]), lo, hi));
}

template <typename T>
void clip_native(T* x, int64_t n, double clip) {  // float and double: no conversions, vector min/max
  const T hi = static_cast<T>(clip), lo = -hi;
#if FASTGAN_CPU_X86
  const CpuIsa isa = cpu_isa();
  if (isa == CpuIsa::kAvx512) return clip_avx512(x, n, lo, hi);
  if (isa == CpuIsa::kAvx2) return clip_avx2(x, n, lo, hi);
#endif
  clip_sse(x, n, lo, hi);
}

template <>
void clip_range<float>(float* __restrict__ x, int64_t n, double clip) { clip_native(x, n, clip); }
template <>
void clip_range<double>(double* __restrict__ x, int64_t n, double clip) { clip_native(x, n, clip); }

}  // namespace

void clip_weights_cpu(const ClipTensor* tensors, int64_t count, double clip) {
  // Task t covers elements [chunk * kCpuChunk, ...) of one tensor; first[i] is tensor i's first task.
  std::vector<int64_t> first(count + 1, 0);
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    first[i + 1] = first[i] + (tensors[i].numel + kCpuChunk - 1) / kCpuChunk;
    total += tensors[i].numel;
  }
  const int64_t tasks = first[count];
  if (tasks == 0) return;
  at::parallel_for(0, tasks, total < kSerialElems ? tasks : 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1;
      const ClipTensor& t = tensors[i];
      const int64_t start = (task - first[i]) * kCpuChunk;
      const int64_t n = std::min(kCpuChunk, t.numel - start);
      dispatch_cpu(t.dtype, [&](auto tag) {
        using T = decltype(tag);
        clip_range<T>(static_cast<T*>(t.data) + start, n, clip);
      });
    }
  });
}

}  // namespace fastgan
