// A cache of large CPU output buffers, so that a training loop's repeated outputs skip the page faults.
//
// PyTorch's CPU allocator hands every large request to malloc, which maps fresh memory above its mmap threshold
// (at most 32 MB in glibc) and unmaps it on free; the next step's output of the same size then faults in and
// zeroes every page again. For an elementwise kernel that costs more than the kernel (a 33 MB output on a 2-core
// Xeon: ~3 ms of faulting with huge pages, ~11 ms without, against ~2 ms of writing). fastgan's CPU kernels take
// their outputs of kMinBytes or more from here instead: blocks keyed by size (rounded to 2 MB), returned when the
// tensor dies and kept while the idle total stays under the limit, as the CUDA caching allocator keeps blocks.
// The limit is FASTGAN_CPU_CACHE_MB (default 512; 0 turns the cache off); fastgan.empty_cpu_cache() frees the
// idle blocks. Torch-free: raw memory only (module.cpp exposes the controls without torch headers).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastgan {

class CpuBlockCache {
 public:
  static constexpr std::size_t kMinBytes = std::size_t(4) << 20;
  static constexpr std::size_t kAlign = std::size_t(2) << 20;  // a huge page

  // Never destroyed: tensors holding blocks may die during interpreter shutdown, after static destructors.
  static CpuBlockCache& instance() {
    static CpuBlockCache* cache = new CpuBlockCache();
    return *cache;
  }

  static std::size_t rounded(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

  bool enabled() const { return limit_ > 0; }

  // A block of exactly `bytes` (a multiple of kAlign), reused or new; nullptr if allocation fails.
  void* get(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.find(bytes);
      if (it != idle_.end()) {
        void* block = it->second;
        idle_.erase(it);
        idle_bytes_ -= bytes;
        return block;
      }
    }
    void* block = nullptr;
    if (posix_memalign(&block, kAlign, bytes) != 0) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(block, bytes, MADV_HUGEPAGE);  // advice only: fewer faults on the first touch
#endif
    return block;
  }

  // Takes a block back from a dead tensor: kept for reuse while under the limit, else freed.
  void put(void* block, std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idle_bytes_ + bytes <= limit_) {
        idle_.emplace(bytes, block);
        idle_bytes_ += bytes;
        return;
      }
    }
    std::free(block);
  }

  // Frees every idle block; returns the bytes freed.
  std::size_t clear() {
    std::multimap<std::size_t, void*> idle;
    std::size_t freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle.swap(idle_);
      freed = idle_bytes_;
      idle_bytes_ = 0;
    }
    for (auto& entry : idle) std::free(entry.second);
    return freed;
  }

  std::size_t idle_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return idle_bytes_;
  }

  std::size_t limit() const { return limit_; }

 private:
  CpuBlockCache() {
    const char* text = std::getenv("FASTGAN_CPU_CACHE_MB");
    long long mb = 512;
    if (text != nullptr && *text != '\0') {
      char* end = nullptr;
      const long long parsed = std::strtoll(text, &end, 10);
      if (end != text && *end == '\0' && parsed >= 0) mb = parsed;  // a malformed value keeps the default
    }
    limit_ = static_cast<std::size_t>(mb) << 20;
  }

  std::mutex mutex_;
  std::multimap<std::size_t, void*> idle_;
  std::size_t idle_bytes_ = 0;
  std::size_t limit_ = 0;
};

// What a tensor's storage holds for a cached block: giving it back returns the block to the cache.
struct CpuBlockLease {
  void* block;
  std::size_t bytes;
  static void release(void* lease) {
    auto* self = static_cast<CpuBlockLease*>(lease);
    CpuBlockCache::instance().put(self->block, self->bytes);
    delete self;
  }
};

}  // namespace fastgan
