// CUDA kernel of clip_weights: a multi-tensor launch. The host packs up to kClipMaxTensors tensors into a table
// passed by value; block b finds its tensor by binary search over the tensors' first blocks and clamps one chunk
// of it. Tensors of different dtypes share a launch (the dtype switch is per block, so no divergence).
#include "clip_weights/clip_weights.h"
#include "common/cuda.cuh"

namespace fastgan {
namespace {

constexpr int kClipThreads = 256;
constexpr int kClipUnroll = 8;
constexpr int64_t kClipChunk = kClipThreads * kClipUnroll * 2;  // elements per block

struct ClipTable {
  void* data[kClipMaxTensors];
  int64_t numel[kClipMaxTensors];
  int32_t first_block[kClipMaxTensors + 1];
  int8_t dtype[kClipMaxTensors];
  int32_t count;
};
static_assert(sizeof(ClipTable) < 4000, "the table must fit the 4 KiB kernel-parameter limit");

template <typename T>
__device__ __forceinline__ T bound_in(double value) { return from_acc<T>(static_cast<acc_t<T>>(value)); }

template <typename T>
__device__ void clip_chunk(T* __restrict__ x, int64_t n, double clip) {
  using A = acc_t<T>;
  // The bound rounded to the storage dtype first, as torch's clamp_ does.
  const A hi = to_acc(bound_in<T>(clip)), lo = to_acc(bound_in<T>(-clip));
  for (int64_t base = 0; base < n; base += kClipThreads * kClipUnroll) {
    A v[kClipUnroll];
#pragma unroll
    for (int k = 0; k < kClipUnroll; ++k) {  // all loads first: kClipUnroll requests in flight per thread
      const int64_t i = base + k * kClipThreads + threadIdx.x;
      v[k] = i < n ? to_acc(x[i]) : A(0);
    }
#pragma unroll
    for (int k = 0; k < kClipUnroll; ++k) {
      const int64_t i = base + k * kClipThreads + threadIdx.x;
      if (i < n) x[i] = from_acc<T>(clip_value<A>(v[k], lo, hi));
    }
  }
}

__global__ void __launch_bounds__(kClipThreads) clip_weights_kernel(ClipTable table, double clip) {
  const int32_t block = blockIdx.x;
  int lo = 0, hi = table.count - 1;
  while (lo < hi) {  // the last tensor whose first block is <= this block
    const int mid = (lo + hi + 1) >> 1;
    if (table.first_block[mid] <= block) lo = mid; else hi = mid - 1;
  }
  const int64_t start = static_cast<int64_t>(block - table.first_block[lo]) * kClipChunk;
  const int64_t n = min(kClipChunk, table.numel[lo] - start);
  void* data = table.data[lo];
  switch (static_cast<DType>(table.dtype[lo])) {
    case DType::Float32: clip_chunk(static_cast<float*>(data) + start, n, clip); break;
    case DType::Float64: clip_chunk(static_cast<double*>(data) + start, n, clip); break;
    case DType::Float16: clip_chunk(static_cast<__half*>(data) + start, n, clip); break;
    case DType::BFloat16: clip_chunk(static_cast<__nv_bfloat16*>(data) + start, n, clip); break;
  }
}

}  // namespace

void clip_weights_cuda(const ClipTensor* tensors, int64_t count, double clip, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  ClipTable table;
  table.count = 0;
  table.first_block[0] = 0;
  auto flush = [&]() {
    if (table.count == 0) return;
    const int32_t blocks = table.first_block[table.count];
    clip_weights_kernel<<<blocks, kClipThreads, 0, s>>>(table, clip);
    check_launch("clip_weights");
    table.count = 0;
    table.first_block[0] = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    if (tensors[i].numel == 0) continue;
    const int64_t blocks = (tensors[i].numel + kClipChunk - 1) / kClipChunk;
    if (table.count == kClipMaxTensors || table.first_block[table.count] + blocks > (int64_t(1) << 30)) flush();
    if (blocks > (int64_t(1) << 30)) throw std::invalid_argument("fastgan: clip_weights tensor too large");
    const int c = table.count;
    table.data[c] = tensors[i].data;
    table.numel[c] = tensors[i].numel;
    table.dtype[c] = static_cast<int8_t>(tensors[i].dtype);
    table.first_block[c + 1] = table.first_block[c] + static_cast<int32_t>(blocks);
    table.count = c + 1;
  }
  flush();
}

}  // namespace fastgan
