// CPU kernel of spectral_norm: per power iteration, one at::parallel_for over every (layer, row chunk) that reads
// each weight once (row dot products and the W^T s accumulation together), one over column blocks that sums the
// chunks' partials in a fixed order, and one over layers for the normalisations and sigma.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "common/cpu.h"
#include "spectral_norm/spectral_norm.h"

namespace fastgan {
namespace {

constexpr int64_t kMaxChunks = 16;
constexpr int64_t kColumnBlock = 4096;

// The row pass's two loops, vectorised by OpenMP simd (-fopenmp is on): gcc does not vectorise them on its own
// once inlined (aliasing), and the plain loops ran at scalar speed. The simd reduction's order depends on the
// vector width of the variant cpu_isa() picks (so on the CPU model), not on the thread count.
template <typename T, typename A>
FASTGAN_FORCE_INLINE A dot(const T* __restrict__ x, const A* __restrict__ y, int64_t n) {
  A acc = A(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<A>(x[i]) * y[i];
  return acc;
}

template <typename A>
A sum_squares(const A* __restrict__ x, int64_t n) {
  A acc[8] = {A(0), A(0), A(0), A(0), A(0), A(0), A(0), A(0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * x[i + j];
  }
  for (; i < n; ++i) acc[0] += x[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename T, typename A>
FASTGAN_FORCE_INLINE void axpy(A* __restrict__ y, A alpha, const T* __restrict__ x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * static_cast<A>(x[i]);
}

struct View {  // a layer's workspace, in its accumulation type
  template <typename A>
  static A* s(const SNLayer& l) { return static_cast<A*>(l.workspace); }
  template <typename A>
  static A* t(const SNLayer& l) { return static_cast<A*>(l.workspace) + l.h; }
  template <typename A>
  static A* v_acc(const SNLayer& l) { return static_cast<A*>(l.workspace) + l.h + l.a * l.k; }
  template <typename A>
  static A* partial(const SNLayer& l) { return static_cast<A*>(l.workspace) + l.h + 2 * l.a * l.k; }
};

// Rows [row0, row1) of one layer: s_r = W_r . v and, when updating, partial = sum_r s_r W_r.
template <typename T>
FASTGAN_FORCE_INLINE void rows_pass_body(const SNLayer& l, int64_t chunk, bool update) {
  using A = acc_t<T>;
  const int64_t w = l.a * l.k;
  const int64_t row0 = chunk * l.h / l.chunks, row1 = (chunk + 1) * l.h / l.chunks;
  const T* weight = static_cast<const T*>(l.weight);
  const A* v = View::v_acc<A>(l);
  A* s = View::s<A>(l);
  A* partial = View::partial<A>(l) + chunk * w;
  if (update) std::fill(partial, partial + w, A(0));
  for (int64_t r = row0; r < row1; ++r) {
    A value = A(0);
    for (int64_t a = 0; a < l.a; ++a) value += dot<T, A>(weight + (a * l.h + r) * l.k, v + a * l.k, l.k);
    s[r] = value;
    if (update) {
      for (int64_t a = 0; a < l.a; ++a) axpy<T, A>(partial + a * l.k, value, weight + (a * l.h + r) * l.k, l.k);
    }
  }
}

template <typename T>
void rows_pass_plain(const SNLayer& l, int64_t chunk, bool update) { rows_pass_body<T>(l, chunk, update); }
#if FASTGAN_CPU_X86
template <typename T>
__attribute__((target("avx2,fma"))) void rows_pass_avx2(const SNLayer& l, int64_t chunk, bool update) {
  rows_pass_body<T>(l, chunk, update);
}
template <typename T>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void rows_pass_avx512(const SNLayer& l, int64_t chunk,
                                                                           bool update) {
  rows_pass_body<T>(l, chunk, update);
}
#endif

template <typename T>
void rows_pass(const SNLayer& l, int64_t chunk, bool update) {
#if FASTGAN_CPU_X86
  if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value) {  // half: conversions dominate
    const CpuIsa isa = cpu_isa();
    if (isa == CpuIsa::kAvx512) return rows_pass_avx512<T>(l, chunk, update);
    if (isa == CpuIsa::kAvx2) return rows_pass_avx2<T>(l, chunk, update);
  }
#endif
  rows_pass_plain<T>(l, chunk, update);
}

// Columns [col0, col1): t = sum over chunks of the partials, in chunk order.
template <typename T>
void columns_pass(const SNLayer& l, int64_t col0, int64_t col1) {
  using A = acc_t<T>;
  const int64_t w = l.a * l.k;
  const A* partial = View::partial<A>(l);
  A* t = View::t<A>(l);
  for (int64_t j = col0; j < col1; ++j) t[j] = partial[j];
  for (int64_t c = 1; c < l.chunks; ++c) {
    for (int64_t j = col0; j < col1; ++j) t[j] += partial[c * w + j];
  }
}

template <typename T>
void load_v(const SNLayer& l) {
  using A = acc_t<T>;
  const T* v = static_cast<const T*>(l.v);
  A* out = View::v_acc<A>(l);
  for (int64_t j = 0; j < l.a * l.k; ++j) out[j] = static_cast<A>(v[j]);
}

// u = s / max(|s|, eps), t /= max(|s|, eps), v = t / max(|t|, eps), sigma = t . v  (update), or u . s.
template <typename T>
double finish(const SNLayer& l, double eps, bool update) {
  using A = acc_t<T>;
  const int64_t w = l.a * l.k;
  A* s = View::s<A>(l);
  T* u = static_cast<T*>(l.u);
  if (!update) {
    A sigma = A(0);
    for (int64_t r = 0; r < l.h; ++r) sigma += static_cast<A>(u[r]) * s[r];
    return static_cast<double>(sigma);
  }
  const A den_s = std::max(std::sqrt(sum_squares<A>(s, l.h)), static_cast<A>(eps));
  for (int64_t r = 0; r < l.h; ++r) u[r] = static_cast<T>(s[r] / den_s);
  A* t = View::t<A>(l);
  for (int64_t j = 0; j < w; ++j) t[j] = t[j] / den_s;
  const A den_t = std::max(std::sqrt(sum_squares<A>(t, w)), static_cast<A>(eps));
  T* v = static_cast<T*>(l.v);
  A* v_acc = View::v_acc<A>(l);
  A sigma = A(0);
  for (int64_t j = 0; j < w; ++j) {
    const A vj = t[j] / den_t;
    v[j] = static_cast<T>(vj);
    v_acc[j] = static_cast<A>(v[j]);
    sigma += t[j] * vj;  // v before its rounding to the weight's dtype: sigma is not off by that rounding
  }
  return static_cast<double>(sigma);
}

// Calls fn(layer, item) for every (layer, item < items(layer)) in one parallel region.
template <typename Items, typename Fn>
void for_each_item(const SNLayer* layers, int64_t count, Items&& items, Fn&& fn) {
  std::vector<int64_t> first(count + 1, 0);
  for (int64_t i = 0; i < count; ++i) first[i + 1] = first[i] + items(layers[i]);
  if (first[count] == 0) return;
  at::parallel_for(0, first[count], 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1;
      fn(layers[i], task - first[i]);
    }
  });
}

}  // namespace

int64_t spectral_norm_cpu_chunks(int64_t h, int64_t w) {
  const int64_t by_size = (h * w + kCpuChunk - 1) / kCpuChunk;
  return std::max<int64_t>(1, std::min<int64_t>(std::min(h, by_size), kMaxChunks));
}

void spectral_norm_cpu(const SNLayer* layers, int64_t count, int64_t n_power_iterations, double eps, bool update,
                       double* sigma) {
  if (count == 0) return;
  auto each_dtype = [](const SNLayer& l, auto&& body) { dispatch_cpu(l.dtype, body); };
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) each_dtype(layers[i], [&](auto tag) { load_v<decltype(tag)>(layers[i]); });
  });
  const int64_t iterations = update ? n_power_iterations : 1;
  for (int64_t it = 0; it < iterations; ++it) {
    for_each_item(layers, count, [](const SNLayer& l) { return l.chunks; }, [&](const SNLayer& l, int64_t chunk) {
      each_dtype(l, [&](auto tag) { rows_pass<decltype(tag)>(l, chunk, update); });
    });
    if (update) {
      auto blocks = [](const SNLayer& l) { return (l.a * l.k + kColumnBlock - 1) / kColumnBlock; };
      for_each_item(layers, count, blocks, [&](const SNLayer& l, int64_t block) {
        const int64_t col0 = block * kColumnBlock, col1 = std::min(l.a * l.k, col0 + kColumnBlock);
        each_dtype(l, [&](auto tag) { columns_pass<decltype(tag)>(l, col0, col1); });
      });
    }
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        each_dtype(layers[i], [&](auto tag) { sigma[i] = finish<decltype(tag)>(layers[i], eps, update); });
      }
    });
  }
}

}  // namespace fastgan
