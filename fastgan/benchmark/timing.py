"""Timing: warm-up, then medians and 20/80 percentiles; CUDA events on GPU, torch.utils.benchmark on CPU."""
import statistics

import torch


def measure(fn, device, warmup=3, repeats=20, min_run_time=0.2):
    """Time fn() on `device`: {'median_ms', 'p20_ms', 'p80_ms', 'peak_mem_mb'}."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        return _measure_cuda(fn, repeats)
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    result = timer.blocked_autorange(min_run_time=min_run_time)
    times = sorted(t * 1e3 for t in result.times)
    return {"median_ms": statistics.median(times), "p20_ms": _percentile(times, 0.2),
            "p80_ms": _percentile(times, 0.8), "peak_mem_mb": None}


def _measure_cuda(fn, repeats):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    return {"median_ms": statistics.median(times), "p20_ms": _percentile(times, 0.2),
            "p80_ms": _percentile(times, 0.8), "peak_mem_mb": peak}


def _percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
