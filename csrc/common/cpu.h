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

// Elements per parallel task: large enough to amortise thread wake-up, small enough to split a row over cores.
constexpr int64_t kCpuChunk = 16384;

}  // namespace fastgan
