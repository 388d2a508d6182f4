// Storage dtypes the kernels take. Bindings map at::ScalarType onto this enum so that kernel files need no torch
// headers (CUDA files then compile in seconds).
#pragma once

#if defined(__CUDACC__)
#define FASTGAN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTGAN_HOST_DEVICE inline
#endif

namespace fastgan {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

}  // namespace fastgan
