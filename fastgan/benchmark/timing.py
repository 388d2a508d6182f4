"""Timing: warm-up, then medians and 20/80 percentiles, and the peak memory of one call.

CUDA: ``triton.testing.do_bench`` (CUDA events around each call, L2 flushed before each one, so inputs smaller than
L2 are not timed from the cache; warm-up and repeat budgets in milliseconds), or CUDA events with our own L2 flush
where Triton is missing. Peak memory: the allocator's peak over one call, above what was allocated before it.
CPU: ``torch.utils.benchmark.Timer.blocked_autorange`` (blocks of calls, at least a few blocks). Peak memory: the
bytes of tensors alive at once during one call, counted by a dispatch mode over every op the call runs (C++
kernels' internal scratch is not seen; tensors alive before the call are not counted).

The ceilings of the roofline figures come from the same module: `copy_bandwidth` (a large device-to-device copy,
bytes read plus bytes written) and `matmul_rate` (a large matrix product), measured in the same run as the cases.
"""
import math
import statistics
import time
import weakref

import torch

# Default effort; the harness switches to the quick profile for smoke tests (fewer, shorter repeats).
PROFILES = {
    "normal": {"warmup": 3, "repeats": 20, "min_run_time": 0.3, "min_blocks": 6, "warmup_ms": 25, "rep_ms": 100,
               "rounds": 3},
    "quick": {"warmup": 1, "repeats": 3, "min_run_time": 0.01, "min_blocks": 3, "warmup_ms": 2, "rep_ms": 5,
              "single_calls": True},
}
_profile = dict(PROFILES["normal"])


def set_profile(name):
    """Use the 'normal' or 'quick' timing effort for calls that do not pass their own."""
    _profile.clear()
    _profile.update(PROFILES[name])


def profile():
    return dict(_profile)


def measure(fn, device, warmup=None, repeats=None, min_run_time=None, memory=True):
    """Time fn() on `device`: {'median_ms', 'p20_ms', 'p80_ms', 'peak_mem_mb', 'n'}.

    warmup: calls before timing; repeats: timed calls on CUDA (only without triton); min_run_time: seconds of
    timing on CPU. memory=False skips the peak-memory call (peak_mem_mb is then None).
    """
    device = torch.device(device)
    warmup = _profile["warmup"] if warmup is None else warmup
    repeats = _profile["repeats"] if repeats is None else repeats
    min_run_time = _profile["min_run_time"] if min_run_time is None else min_run_time
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        estimate_ms = (time.perf_counter() - start) * 1e3 / max(1, warmup)
        result = _measure_cuda(fn, repeats, estimate_ms)
        result["peak_mem_mb"] = _peak_cuda(fn) if memory else None
        return result
    for _ in range(warmup):
        fn()
    result = _measure_cpu(fn, min_run_time)
    result.pop("times_ms")
    result["peak_mem_mb"] = _peak_dispatch(fn) if memory else None
    return result


def _measure_cpu(fn, min_run_time, min_blocks=None):
    from torch.utils import benchmark

    min_blocks = _profile["min_blocks"] if min_blocks is None else min_blocks
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    if _profile.get("single_calls"):
        # quick profile (smoke tests): a few single calls, no block calibration
        times, number = [timer.timeit(1).mean * 1e3 for _ in range(min_blocks)], 1
    else:
        result = timer.blocked_autorange(min_run_time=min_run_time)
        times, number = [t * 1e3 for t in result.times], result.number_per_run
        # Slow calls give a single block in min_run_time: top up so that medians and percentiles mean something.
        while len(times) < min_blocks:
            times.append(timer.timeit(number).mean * 1e3)
    return _summary(times, len(times) * number)


def _summary(times, n):
    times = sorted(times)
    return {"median_ms": statistics.median(times), "p20_ms": _percentile(times, 0.2),
            "p80_ms": _percentile(times, 0.8), "n": n, "times_ms": times}


def measure_interleaved(fns, device, memory=True):
    """Time several implementations of one case: {name: measure()-like dict, or the exception it raised}.

    On CPU the calls are spread over `rounds` passes A, B, C, A, B, C, ... so that a change of load on a shared
    machine during the case hits every implementation alike instead of whichever ran in the busy minute; the
    statistics pool every round's blocks. On CUDA (a GPU to itself) each implementation is measured once.
    """
    device = torch.device(device)
    rounds = 1 if device.type == "cuda" else _profile.get("rounds", 1)
    pooled = {name: [] for name in fns}
    counts = {name: 0 for name in fns}
    out = {}
    for index in range(rounds):
        last = index == rounds - 1
        for name, fn in fns.items():
            if isinstance(out.get(name), Exception):
                continue
            try:
                if rounds == 1:
                    out[name] = measure(fn, device, memory=memory)
                    continue
                for _ in range(_profile["warmup"] if index == 0 else 1):
                    fn()
                result = _measure_cpu(fn, _profile["min_run_time"] / rounds,
                                      max(1, -(-_profile["min_blocks"] // rounds)))
                pooled[name] += result["times_ms"]
                counts[name] += result["n"]
                if last:
                    out[name] = _summary(pooled[name], counts[name])
                    out[name]["peak_mem_mb"] = _peak_dispatch(fn) if memory else None
            except Exception as error:  # noqa: BLE001 - the caller reports it
                out[name] = error
    return out


def _do_bench():
    try:
        from triton.testing import do_bench
    except Exception:  # noqa: BLE001 - no triton (or a broken one): fall back to our own events
        return None
    return do_bench


def _measure_cuda(fn, repeats, estimate_ms=0.0):
    torch.cuda.synchronize()
    do_bench = _do_bench()
    if do_bench is not None:
        # do_bench repeats for `rep` milliseconds: give slow calls (training steps) at least ~10 repeats
        rep = min(max(_profile["rep_ms"], 10 * estimate_ms), 20 * _profile["rep_ms"])
        try:
            median, p20, p80 = do_bench(fn, warmup=_profile["warmup_ms"], rep=rep, quantiles=[0.5, 0.2, 0.8])
            return {"median_ms": median, "p20_ms": p20, "p80_ms": p80, "n": None}
        except TypeError:  # a triton without quantiles=: use our own loop
            pass
    flush = torch.empty(_l2_bytes() * 2 // 4, dtype=torch.int32, device="cuda")
    times = []
    for _ in range(repeats):
        flush.zero_()  # evict the inputs from L2, as do_bench does
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return {"median_ms": statistics.median(times), "p20_ms": _percentile(times, 0.2),
            "p80_ms": _percentile(times, 0.8), "n": len(times)}


def _l2_bytes():
    try:
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size) or 64 * 2**20
    except Exception:  # noqa: BLE001 - older torch without the property
        return 64 * 2**20


def _peak_cuda(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _peak_dispatch(fn):
    """Peak bytes of tensor storage alive at once during fn(), in MB, or None if fn cannot run under the mode."""
    try:
        tracker = _PeakTracker()
        with tracker:
            fn()
        return tracker.peak / 2**20
    except Exception:  # noqa: BLE001 - e.g. a compiled graph that refuses a dispatch mode: no figure
        return None


def _make_tracker_class():
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class PeakTracker(TorchDispatchMode):
        """Counts each new storage an op returns until Python's handle on it (kept alive by torch for as long as
        the storage lives) is finalised."""

        def __init__(self):
            super().__init__()
            self.live, self.current, self.peak = {}, 0, 0

        def _free(self, key):
            self.current -= self.live.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in tree_flatten(out)[0]:
                if not isinstance(value, torch.Tensor) or value.device.type == "meta":
                    continue
                try:
                    storage = value.untyped_storage()
                    key, size = storage.data_ptr(), storage.nbytes()
                except Exception:  # noqa: BLE001 - tensors without storage (sparse, nested)
                    continue
                if size == 0 or key in self.live:
                    continue
                self.live[key] = size
                self.current += size
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._free, key)
            return out

    return PeakTracker


_tracker_class = None


def _PeakTracker():  # noqa: N802 - a lazily built class
    global _tracker_class
    if _tracker_class is None:
        _tracker_class = _make_tracker_class()
    return _tracker_class()


def copy_bandwidth(device, nbytes=None):
    """Measured device-memory bandwidth in GB/s: one large copy, counting bytes read plus bytes written."""
    device = torch.device(device)
    if nbytes is None:
        quick = _profile["repeats"] < 10
        nbytes = (1 << 30) if device.type == "cuda" else ((32 << 20) if quick else (256 << 20))
    n = nbytes // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), device, memory=False)
    return {"gbps": 2 * n * 4 / (timing["median_ms"] * 1e-3) / 1e9, "bytes": 2 * n * 4,
            "median_ms": timing["median_ms"]}


def matmul_rate(device, dtype, size=None):
    """Measured matrix-product rate in GFLOP/s (2 n^3 FLOPs for an n x n product on random data)."""
    device = torch.device(device)
    if size is None:
        quick = _profile["repeats"] < 10
        size = (4096 if quick else 8192) if device.type == "cuda" else (512 if quick else 2048)
    if device.type == "cpu" and dtype in (torch.float16,):
        dtype = torch.float32  # fp16 matmul on CPU is an emulation, not a ceiling
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timing = measure(lambda: torch.mm(a, b, out=out), device, memory=False)
    return {"gflops": 2 * size ** 3 / (timing["median_ms"] * 1e-3) / 1e9, "size": size,
            "dtype": str(dtype).replace("torch.", ""), "median_ms": timing["median_ms"]}


def _percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def finite(value):
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
