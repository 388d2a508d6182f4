#!/usr/bin/env python
"""Issue 2's benchmark: the gradient-penalty ops on every available backend against eager PyTorch (and
torch.compile), and a WGAN-GP critic step, textbook vs fastgan.

    python bench/bench_gradient_penalty.py [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--modes fwd,fwd_bwd,full]
                                           [--sizes 64x3x32x32,...] [--out DIR] [--quick]

- fastgan.ops.interpolate and fastgan.ops.grad_norm_penalty at 64x3x32x32 to 256x3x128x128 (the registered cases
  of fastgan/benchmark/cases/, so the numbers agree with `fastgan bench`);
- the critic step of WGAN-GP (DCGAN-style 32x32 critic, width 64, B = 64; forward on real and fake, the penalty
  with its double backward, the Adam step): the textbook loop vs fastgan.gradient_penalty
  (fastgan/benchmark/cases/end_to_end.py).
Prints the table (medians, ratios) and the issue's CPU target: grad_norm_penalty forward+backward at 256x3x64x64
at least 3x eager. Writes JSON, CSV, markdown and plots under bench/results/<device-name>/gradient_penalty_*.
Triton is never timed on CPU (the interpreter is not a benchmark).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fastgan.benchmark import suite  # noqa: E402
from fastgan.benchmark.cases.end_to_end import Model, recipe_benches  # noqa: E402

SIZES = "64x3x32x32,128x3x64x64,256x3x64x64,256x3x128x128"
TARGET = ("grad_norm_penalty", "256x3x64x64", "fwd_bwd", 3.0)
CRITIC = Model("32px-w64-B64", 32, 64, 64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(suite.DTYPES), default="fp32")
    parser.add_argument("--modes", default="fwd,fwd_bwd,full")
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--out", default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="the quick timing profile, no torch.compile")
    args = parser.parse_args(argv)

    modes = tuple(m for m in args.modes.split(",") if m)
    critic = recipe_benches("wgan-gp", CRITIC, torch.device(args.device), suite.DTYPES[args.dtype], ("d_step",))
    report = suite.run_suite(ops=["interpolate", "grad_norm_penalty"], device=args.device, dtype=args.dtype,
                             sizes=args.sizes, modes=modes, out=args.out, quick=args.quick or None,
                             extra={suite.E2E_OP: critic}, name="gradient_penalty")
    print()
    print(report.markdown)
    print(summary(report, args.device))
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 1 if report.errors else 0


def summary(report, device):
    lines = []
    op, label, mode, target = TARGET
    rows = {r["impl"]: r for r in report.results if (r["op"], r["label"], r["mode"]) == (op, label, mode)}
    eager = rows.get("eager")
    backend = "cpp" if device == "cpu" else None
    fast = [r for name, r in rows.items() if name in suite.BACKEND_NAMES and r["status"] == "ok"
            and (backend is None or name == backend)]
    if eager and eager["status"] == "ok" and fast:
        best = min(fast, key=lambda r: r["median_ms"])
        ratio = eager["median_ms"] / best["median_ms"]
        verdict = "met" if ratio >= target else "MISSED"
        lines.append(f"{op} {mode} at {label} on {device}: eager {eager['median_ms']:.2f} ms, {best['impl']} "
                     f"{best['median_ms']:.2f} ms: {ratio:.2f}x (target >= {target:.0f}x on CPU: {verdict})")
    step = {r["impl"]: r for r in report.results if r["op"] == suite.E2E_OP and r["mode"] == "d_step"}
    plain, fast = step.get("plain"), step.get("fastgan")
    if plain and fast and plain["status"] == "ok" and fast["status"] == "ok":
        lines.append(f"WGAN-GP critic step ({CRITIC.name}): textbook {plain['median_ms']:.1f} ms, fastgan "
                     f"{fast['median_ms']:.1f} ms: {plain['median_ms'] / fast['median_ms']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
