#!/usr/bin/env python
"""Where a registered benchmark case spends its time: host (Python, dispatch, launches) or device.

    python bench/profile_case.py --op bias_act --sizes 64x128x32x32 --mode full [--label lrelu] [--device cuda]
                                 [--impls eager,cuda,triton] [--iters 50] [--rows 15]

For each implementation of each matching case: the median time per call measured three ways (host time of a call
without synchronising, wall time with a synchronise after each call, and on CUDA the device time as the suite
measures it), then torch.profiler's table of the ops that cost the most host time. When the host time per call is
close to the synchronised time the case is launch/Python-bound, and the table says which calls to remove.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fastgan.benchmark import registry, timing  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_ms(samples):
    return statistics.median(samples) * 1e3


def measure(fn, device, iters):
    """(host ms per call unsynchronised, wall ms per call synchronised, device ms per call or None)."""
    for _ in range(5):
        fn()
    _sync(device)
    host, wall = [], []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        host.append(time.perf_counter() - start)
        _sync(device)
        wall.append(time.perf_counter() - start)
    device_ms = None
    if torch.device(device).type == "cuda":  # the suite's own device timing (CUDA events, L2 flushed)
        device_ms = timing.measure(fn, device, memory=False)["median_ms"]
    return _median_ms(host), _median_ms(wall), device_ms


def profile_table(fn, device, iters, rows):
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            fn()
        _sync(device)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", required=True, help="a registered case's op, e.g. bias_act, mixture_gan_step")
    parser.add_argument("--sizes", required=True, help="a preset or shapes like 64x128x32x32")
    parser.add_argument("--mode", required=True, help="the case's mode: fwd, fwd_bwd, full, d_step, ...")
    parser.add_argument("--label", default="", help="only cases whose label contains this text")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--impls", default="", help="comma-separated implementations (default: all of the case)")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be at least 1")
    try:
        sizes = registry.parse_sizes(args.sizes)
    except ValueError as error:
        parser.error(str(error))
    cases = registry.load_cases()
    if args.op not in cases:
        parser.error(f"--op: no registered case {args.op!r}; known: {', '.join(sorted(cases))}")
    registry.set_compile(False, "not profiled")
    wanted = [name for name in args.impls.split(",") if name]
    found = False
    for bench in cases[args.op](args.device, DTYPES[args.dtype], sizes, (args.mode,)):
        if bench.mode != args.mode or args.label not in bench.label:
            continue
        found = True
        for name, fn in bench.run.items():
            if wanted and name not in wanted:
                continue
            host, wall, dev = measure(fn, args.device, args.iters)
            print(f"\n=== {bench.op} {bench.label} {bench.mode} [{name}] on {args.device} {args.dtype}: "
                  f"host {host:.3f} ms/call unsynchronised, wall {wall:.3f} ms/call synchronised"
                  + (f", device {dev:.3f} ms" if dev is not None else ""))
            print(profile_table(fn, args.device, min(args.iters, 20), args.rows))
    if not found:
        parser.error(f"no case of {args.op} at {args.sizes} with mode {args.mode!r} and label containing {args.label!r}")


if __name__ == "__main__":
    main()
