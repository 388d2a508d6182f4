// CUDA kernels of spectral_norm. Layers travel in tables passed by value (up to kSNMaxLayers per launch, mixed
// dtypes allowed); per power iteration two launches serve every layer of a table:
//   rows:   one block per (layer, row chunk); warps compute s_r = W_r . v for the chunk's rows, then (update) the
//           block writes its partial W^T s over all columns, reading the chunk's rows again from L1/L2, not DRAM;
//   finish: one block per layer sums the partials in chunk order (deterministic: no atomics), normalises u and v
//           and computes sigma.
#include "common/cuda.cuh"
#include "spectral_norm/spectral_norm.h"

namespace fastgan {
namespace {

constexpr int kSNMaxLayers = 24;
constexpr int kSNMaxRows = 64;           // rows per chunk (their s_r stay in shared memory)
constexpr int64_t kSNChunkElems = 32768;  // target weight elements per chunk
constexpr int kRowThreads = 256;
constexpr int kFinishThreads = 512;

struct SNTable {
  const void* weight[kSNMaxLayers];
  void* u[kSNMaxLayers];
  void* v[kSNMaxLayers];
  void* workspace[kSNMaxLayers];
  int64_t a[kSNMaxLayers], h[kSNMaxLayers], k[kSNMaxLayers], chunks[kSNMaxLayers];
  int32_t first_block[kSNMaxLayers + 1];
  int32_t sigma_index[kSNMaxLayers];
  int8_t dtype[kSNMaxLayers];
  int32_t count;
};
static_assert(sizeof(SNTable) < 3800, "the table must fit the 4 KiB kernel-parameter limit");

// Element (r, j) of the layer's matrix view.
template <typename T>
__device__ __forceinline__ acc_t<T> w_at(const T* weight, int64_t a, int64_t h, int64_t k, int64_t r, int64_t j) {
  if (a == 1) return to_acc(weight[r * k + j]);
  const int64_t aa = j / k;
  return to_acc(weight[(aa * h + r) * k + (j - aa * k)]);
}

template <typename T>
__device__ void rows_block(const SNTable& tab, int l, int64_t chunk, bool update) {
  using A = acc_t<T>;
  __shared__ A s_rows[kSNMaxRows];
  const T* weight = static_cast<const T*>(tab.weight[l]);
  const T* v = static_cast<const T*>(tab.v[l]);
  const int64_t a = tab.a[l], h = tab.h[l], k = tab.k[l], w = a * k, chunks = tab.chunks[l];
  const int64_t row0 = chunk * h / chunks, row1 = (chunk + 1) * h / chunks;
  A* s = static_cast<A*>(tab.workspace[l]);
  A* partial = s + h + 2 * w + chunk * w;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int64_t r = row0 + warp; r < row1; r += warps) {  // one warp per row
    A value = A(0);
    for (int64_t j = lane; j < w; j += 32) value += w_at(weight, a, h, k, r, j) * to_acc(v[j]);
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) {
      s_rows[r - row0] = value;
      s[r] = value;
    }
  }
  if (!update) return;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) {  // partial W^T s, coalesced over columns
    A acc = A(0);
    for (int64_t r = row0; r < row1; ++r) acc += s_rows[r - row0] * w_at(weight, a, h, k, r, j);
    partial[j] = acc;
  }
}

__global__ void __launch_bounds__(kRowThreads) sn_rows_kernel(SNTable tab, bool update) {
  const int32_t block = blockIdx.x;
  int lo = 0, hi = tab.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (tab.first_block[mid] <= block) lo = mid; else hi = mid - 1;
  }
  const int64_t chunk = block - tab.first_block[lo];
  switch (static_cast<DType>(tab.dtype[lo])) {
    case DType::Float32: rows_block<float>(tab, lo, chunk, update); break;
    case DType::Float64: rows_block<double>(tab, lo, chunk, update); break;
    case DType::Float16: rows_block<__half>(tab, lo, chunk, update); break;
    case DType::BFloat16: rows_block<__nv_bfloat16>(tab, lo, chunk, update); break;
  }
}

// The block's sum of `value`, in every thread.
template <typename A>
__device__ A block_all_sum(A value) {
  __shared__ A result;
  __syncthreads();  // block_sum's scratch and `result` may still be read by a previous call
  value = block_sum(value);
  if (threadIdx.x == 0) result = value;
  __syncthreads();
  return result;
}

template <typename T>
__device__ void finish_block(const SNTable& tab, int l, double eps, bool update, double* sigma) {
  using A = acc_t<T>;
  const int64_t h = tab.h[l], w = tab.a[l] * tab.k[l], chunks = tab.chunks[l];
  A* s = static_cast<A*>(tab.workspace[l]);
  A* t = s + h;
  const A* partial = s + h + 2 * w;
  T* u = static_cast<T*>(tab.u[l]);
  T* v = static_cast<T*>(tab.v[l]);
  if (!update) {
    A acc = A(0);
    for (int64_t r = threadIdx.x; r < h; r += blockDim.x) acc += to_acc(u[r]) * s[r];
    acc = block_all_sum(acc);
    if (threadIdx.x == 0) sigma[tab.sigma_index[l]] = static_cast<double>(acc);
    return;
  }
  A ss = A(0);
  for (int64_t r = threadIdx.x; r < h; r += blockDim.x) ss += s[r] * s[r];
  const A den_s = max(sqrt(block_all_sum(ss)), static_cast<A>(eps));
  for (int64_t r = threadIdx.x; r < h; r += blockDim.x) u[r] = from_acc<T>(s[r] / den_s);
  A tt = A(0);
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) {
    A value = partial[j];
    for (int64_t c = 1; c < chunks; ++c) value += partial[c * w + j];
    value /= den_s;
    t[j] = value;
    tt += value * value;
  }
  const A den_t = max(sqrt(block_all_sum(tt)), static_cast<A>(eps));
  A acc = A(0);
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) {
    const A vj = t[j] / den_t;
    v[j] = from_acc<T>(vj);
    acc += t[j] * vj;  // v before its rounding to the weight's dtype: sigma is not off by that rounding
  }
  acc = block_all_sum(acc);
  if (threadIdx.x == 0) sigma[tab.sigma_index[l]] = static_cast<double>(acc);
}

__global__ void __launch_bounds__(kFinishThreads) sn_finish_kernel(SNTable tab, double eps, bool update,
                                                                    double* sigma) {
  const int l = blockIdx.x;
  switch (static_cast<DType>(tab.dtype[l])) {
    case DType::Float32: finish_block<float>(tab, l, eps, update, sigma); break;
    case DType::Float64: finish_block<double>(tab, l, eps, update, sigma); break;
    case DType::Float16: finish_block<__half>(tab, l, eps, update, sigma); break;
    case DType::BFloat16: finish_block<__nv_bfloat16>(tab, l, eps, update, sigma); break;
  }
}

}  // namespace

int64_t spectral_norm_cuda_chunks(int64_t h, int64_t w) {
  const int64_t by_rows = (h + kSNMaxRows - 1) / kSNMaxRows;  // at most kSNMaxRows rows per chunk
  const int64_t by_size = (h * w + kSNChunkElems - 1) / kSNChunkElems;
  return std::max<int64_t>(1, std::min<int64_t>(h, std::max(by_rows, by_size)));
}

void spectral_norm_cuda(const SNLayer* layers, int64_t count, int64_t n_power_iterations, double eps, bool update,
                        double* sigma, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t iterations = update ? n_power_iterations : 1;
  for (int64_t begin = 0; begin < count; begin += kSNMaxLayers) {
    SNTable tab;
    tab.count = 0;
    tab.first_block[0] = 0;
    for (int64_t i = begin; i < count && i < begin + kSNMaxLayers; ++i) {
      const SNLayer& l = layers[i];
      const int c = tab.count;
      tab.weight[c] = l.weight;
      tab.u[c] = l.u;
      tab.v[c] = l.v;
      tab.workspace[c] = l.workspace;
      tab.a[c] = l.a;
      tab.h[c] = l.h;
      tab.k[c] = l.k;
      tab.chunks[c] = l.chunks;
      tab.dtype[c] = static_cast<int8_t>(l.dtype);
      tab.sigma_index[c] = static_cast<int32_t>(i);
      tab.first_block[c + 1] = tab.first_block[c] + static_cast<int32_t>(l.chunks);
      tab.count = c + 1;
    }
    for (int64_t it = 0; it < iterations; ++it) {
      sn_rows_kernel<<<tab.first_block[tab.count], kRowThreads, 0, s>>>(tab, update);
      check_launch("spectral_norm rows");
      sn_finish_kernel<<<tab.count, kFinishThreads, 0, s>>>(tab, eps, update, sigma);
      check_launch("spectral_norm finish");
    }
  }
}

}  // namespace fastgan
