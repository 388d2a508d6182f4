// CPU kernel helpers: dtype dispatch and fp32/fp64 accumulation types for raw-pointer kernels.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "common/dtype.h"

namespace fastgan {

// Half types accumulate in fp32, fp64 in fp64.
template <typename T>
using acc_t = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

// Calls fn(T{}) with T the C++ type of dtype.
template <typename Fn>
void dispatch_cpu(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: fn(float{}); break;
    case DType::Float64: fn(double{}); break;
    case DType::Float16: fn(c10::Half{}); break;
    case DType::BFloat16: fn(c10::BFloat16{}); break;
    default: throw std::invalid_argument("fastgan: unsupported dtype");
  }
}

// x86-64 with gcc: kernels compile ISA variants of their hot loops with __attribute__((target(...))) and pick one
// at run time with cpu_isa() (the build itself targets plain x86-64, so the binary runs on any x86-64 CPU).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTGAN_CPU_X86 1
#else
#define FASTGAN_CPU_X86 0
#endif

#define FASTGAN_FORCE_INLINE inline __attribute__((always_inline))

// kAvx2: AVX2 with FMA; kAvx512: AVX-512 F, VL, BW and DQ (with AVX2 and FMA).
enum class CpuIsa { kBase, kAvx2, kAvx512 };

// The widest of those this CPU has (kBase off x86-64 gcc builds); detected once.
inline CpuIsa cpu_isa() {
#if FASTGAN_CPU_X86
  static const CpuIsa isa = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
      return CpuIsa::kAvx512;
    }
    return avx2 ? CpuIsa::kAvx2 : CpuIsa::kBase;
  }();
  return isa;
#else
  return CpuIsa::kBase;
#endif
}

// Elements per parallel task: large enough to amortise thread wake-up, small enough to split a row over cores.
constexpr int64_t kCpuChunk = 16384;

}  // namespace fastgan
