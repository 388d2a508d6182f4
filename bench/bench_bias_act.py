#!/usr/bin/env python
"""Issue 3's benchmark: fastgan.ops.bias_act against eager PyTorch (and torch.compile), and a WGAN-GP critic step on
a DCGAN-style critic, original vs fastgan.nn.fuse_activations.

    python bench/bench_bias_act.py [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--modes fwd,fwd_bwd,full]
                                   [--sizes 64x128x32x32,...] [--preset small|medium|large] [--out DIR] [--quick]
                                   [--paired N] [--threads T]

- bias_act forward, forward+backward and forward+backward+double backward for lrelu and silu (the registered
  cases of fastgan/benchmark/cases/bias_act.py, so the numbers agree with `fastgan bench bias_act`); default sizes:
  64x128x32x32 and 64x256x32x32 on CPU, up to 256x256x64x64 on a GPU;
- the WGAN-GP critic D-step (forward on real, fake and interpolates, penalty, double backward) of a DCGAN critic
  (32x32, width 64, B = 64), original vs fused, with the time ratio and peak memory.
Prints the table and the issue's CPU targets: bias_act with double backward >= 4x eager at 64x128x32x32; the D-step
>= 1.15x eager with peak memory <= 0.85x. Writes JSON, CSV, markdown and plots under bench/results/<device-name>/
bias_act_*. Triton is never timed on CPU (the interpreter is not a benchmark).

--paired N: also time the two target cases as N interleaved (eager, fastgan) pairs and report the median of the
per-pair ratios, in wall time and in CPU time. On a machine shared with other jobs, medians of separate runs drift
apart with the load; ratios of adjacent calls do not. Written to bias_act_paired_*.json beside the report.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fastgan.benchmark import registry, suite  # noqa: E402

CPU_SIZES = "64x128x32x32,64x256x32x32"
GPU_SIZES = "64x128x32x32,128x256x64x64,256x256x64x64"
KERNEL_TARGET = ("lrelu 64x128x32x32", "full", 4.0)
STEP_TARGET = (1.15, 0.85)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(suite.DTYPES), default="fp32")
    parser.add_argument("--modes", default="fwd,fwd_bwd,full")
    parser.add_argument("--sizes", default=None, help=f"shapes (default {CPU_SIZES} on CPU, {GPU_SIZES} on GPU)")
    parser.add_argument("--preset", choices=registry.PRESETS, default=None,
                        help="a size preset instead of --sizes (small: smoke test)")
    parser.add_argument("--out", default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="the quick timing profile, no torch.compile")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="also time the target cases as N interleaved eager/fastgan pairs (robust ratios)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    sizes = args.preset or args.sizes or (GPU_SIZES if args.device == "cuda" else CPU_SIZES)
    modes = tuple(m for m in args.modes.split(",") if m)
    report = suite.run_suite(ops=["bias_act"], device=args.device, dtype=args.dtype, sizes=sizes, modes=modes,
                             out=args.out, quick=args.quick or None, name="bias_act")
    print()
    print(report.markdown)
    print(summary(report, args.device))
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    if args.paired:
        paired = paired_targets(args.device, suite.DTYPES[args.dtype], args.paired)
        folder = os.path.dirname(report.files["json"]) if report.files.get("json") else "."
        path = os.path.join(folder, f"bias_act_paired_{datetime.datetime.now():%Y%m%d-%H%M%S}_{args.dtype}.json")
        with open(path, "w") as handle:
            json.dump({"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
                       "pairs": args.paired, "results": paired, "commit": report.meta.get("commit")}, handle,
                      indent=2)
        print(f"wrote paired: {path}")
    return 1 if report.errors else 0


def _time_call(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def paired_ratio(eager, fast, device, pairs):
    """Median (and quartiles) of eager/fast time ratios over interleaved pairs, in wall and CPU time."""
    for _ in range(2):
        eager()
        fast()
    walls, cpus, eager_ms, fast_ms = [], [], [], []
    for i in range(pairs):
        first, second = (eager, fast) if i % 2 == 0 else (fast, eager)
        a, b = _time_call(first, device), _time_call(second, device)
        (e_wall, e_cpu), (f_wall, f_cpu) = (a, b) if i % 2 == 0 else (b, a)
        walls.append(e_wall / f_wall)
        cpus.append(e_cpu / max(f_cpu, 1e-9))
        eager_ms.append(e_wall * 1e3)
        fast_ms.append(f_wall * 1e3)

    def stats(values):
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return {"median": statistics.median(values), "p25": q[0], "p75": q[2]}

    return {"wall_ratio": stats(walls), "cpu_ratio": stats(cpus), "eager_ms": statistics.median(eager_ms),
            "fastgan_ms": statistics.median(fast_ms)}


def paired_targets(device, dtype, pairs):
    """The issue's two CPU targets, timed as interleaved pairs: bias_act lrelu full at 64x128x32x32 and the critic
    D-step (32px, width 64, B = 64), eager vs the fastest timed backend."""
    from fastgan.benchmark.cases.bias_act import critic_benches, kernel_benches

    backend = "cpp" if device == "cpu" else None
    out = {}
    benches = list(kernel_benches(device, dtype, [(64, 128, 32, 32)], ("full",), acts=("lrelu",)))
    benches += list(critic_benches(device, dtype, "medium"))
    for bench in benches:
        name = backend or next((b for b in ("cuda", "triton") if b in bench.run), None)
        if name is None or name not in bench.run:
            continue
        result = paired_ratio(bench.run["eager"], bench.run[name], device, pairs)
        result["backend"] = name
        out[f"{bench.label} {bench.mode}"] = result
        print(f"paired ({pairs} pairs, {torch.get_num_threads()} threads) {bench.label} {bench.mode}: eager "
              f"{result['eager_ms']:.1f} ms, {name} {result['fastgan_ms']:.1f} ms; ratio wall "
              f"{result['wall_ratio']['median']:.2f}x (quartiles {result['wall_ratio']['p25']:.2f}-"
              f"{result['wall_ratio']['p75']:.2f}), cpu {result['cpu_ratio']['median']:.2f}x")
    return out


def _fastest(rows, device):
    fast = [r for name, r in rows.items() if name in suite.BACKEND_NAMES and r["status"] == "ok"
            and (device != "cpu" or name == "cpp")]
    return min(fast, key=lambda r: r["median_ms"]) if fast else None


def summary(report, device):
    lines = []
    label, mode, target = KERNEL_TARGET
    rows = {r["impl"]: r for r in report.results if (r["op"], r["label"], r["mode"]) == ("bias_act", label, mode)}
    eager, best = rows.get("eager"), _fastest(rows, device)
    if eager and eager["status"] == "ok" and best:
        ratio = eager["median_ms"] / best["median_ms"]
        verdict = "met" if ratio >= target else "MISSED"
        lines.append(f"bias_act {label} {mode} on {device}: eager {eager['median_ms']:.2f} ms, {best['impl']} "
                     f"{best['median_ms']:.2f} ms: {ratio:.2f}x (CPU target >= {target:.0f}x: {verdict})")
    step = {}
    for r in report.results:
        if r["op"] == "bias_act" and r["mode"] == "d_step":
            step[r["impl"]] = r
    eager, best = step.get("eager"), _fastest(step, device)
    if eager and eager["status"] == "ok" and best:
        ratio = eager["median_ms"] / best["median_ms"]
        speed_target, mem_target = STEP_TARGET
        text = (f"WGAN-GP critic D-step ({eager['label']}): original {eager['median_ms']:.1f} ms, fused "
                f"({best['impl']}) {best['median_ms']:.1f} ms: {ratio:.2f}x (CPU target >= {speed_target}x: "
                f"{'met' if ratio >= speed_target else 'MISSED'})")
        if eager.get("peak_mem_mb") and best.get("peak_mem_mb"):
            mem = best["peak_mem_mb"] / eager["peak_mem_mb"]
            text += (f"; peak memory {best['peak_mem_mb']:.0f} / {eager['peak_mem_mb']:.0f} MB = {mem:.2f}x "
                     f"(target <= {mem_target}x: {'met' if mem <= mem_target else 'MISSED'})")
        lines.append(text)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
