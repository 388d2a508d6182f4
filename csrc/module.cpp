// The extension's Python module shell and its build stamp. Kernels register themselves with torch.library from
// their own binding files; Python loads this library with torch.ops.load_library.
#include <Python.h>

// JIT builds pass the stamp in a generated header so the compile flags (and ninja's rebuild decisions) stay
// the same across edits; setup.py builds pass -D defines.
#ifdef FASTGAN_STAMP_HEADER
#include "fastgan_stamp.h"
#endif

#ifndef FASTGAN_TORCH_VERSION
#define FASTGAN_TORCH_VERSION "unknown"
#endif
#ifndef FASTGAN_SOURCE_HASH
#define FASTGAN_SOURCE_HASH "unknown"
#endif
#ifdef FASTGAN_WITH_CUDA
#define FASTGAN_CUDA_STAMP "1"
#else
#define FASTGAN_CUDA_STAMP "0"
#endif

// Read from the file's bytes by fastgan/_ext.py before loading, so a library built against another torch is
// never loaded (loading it could register ops that a rebuilt one then could not replace).
extern "C" __attribute__((used, visibility("default"))) const char fastgan_build_stamp[] =
    "FASTGAN_BUILD_STAMP{torch=" FASTGAN_TORCH_VERSION ";src=" FASTGAN_SOURCE_HASH ";cuda=" FASTGAN_CUDA_STAMP "}";

static struct PyModuleDef fastgan_module = {PyModuleDef_HEAD_INIT, "_C", "fastgan's compiled kernels", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fastgan_module); }

// The CPU block cache's controls (common/cpu_block_cache.h), called through ctypes by fastgan/_ext.py.
#include "common/cpu_block_cache.h"

extern "C" __attribute__((visibility("default"))) unsigned long long fastgan_cpu_cache_clear() {
  return fastgan::CpuBlockCache::instance().clear();
}
extern "C" __attribute__((visibility("default"))) unsigned long long fastgan_cpu_cache_idle_bytes() {
  return fastgan::CpuBlockCache::instance().idle_bytes();
}
extern "C" __attribute__((visibility("default"))) unsigned long long fastgan_cpu_cache_limit() {
  return fastgan::CpuBlockCache::instance().limit();
}
