#!/usr/bin/env python
"""Issue 3's benchmark: fastgan.ops.bias_act against eager PyTorch (and torch.compile), and a WGAN-GP critic step on
a DCGAN-style critic, original vs fastgan.nn.fuse_activations.

    python bench/bench_bias_act.py [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--modes fwd,fwd_bwd,full]
                                   [--sizes 64x128x32x32,...] [--preset small|medium|large] [--out DIR] [--quick]

- bias_act forward, forward+backward and forward+backward+double backward for lrelu and silu (the registered
  cases of fastgan/benchmark/cases/bias_act.py, so the numbers agree with `fastgan bench bias_act`); default sizes:
  64x128x32x32 and 64x256x32x32 on CPU, up to 256x256x64x64 on a GPU;
- the WGAN-GP critic D-step (forward on real, fake and interpolates, penalty, double backward) of a DCGAN critic
  (32x32, width 64, B = 64), original vs fused, with the time ratio and peak memory.
Prints the table and the issue's CPU targets: bias_act with double backward >= 4x eager at 64x128x32x32; the D-step
>= 1.15x eager with peak memory <= 0.85x. Writes JSON, CSV, markdown and plots under bench/results/<device-name>/
bias_act_*. Triton is never timed on CPU (the interpreter is not a benchmark).
"""
import argparse
import os
import sys

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
    args = parser.parse_args(argv)

    sizes = args.preset or args.sizes or (GPU_SIZES if args.device == "cuda" else CPU_SIZES)
    modes = tuple(m for m in args.modes.split(",") if m)
    report = suite.run_suite(ops=["bias_act"], device=args.device, dtype=args.dtype, sizes=sizes, modes=modes,
                             out=args.out, quick=args.quick or None, name="bias_act")
    print()
    print(report.markdown)
    print(summary(report, args.device))
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 1 if report.errors else 0


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
