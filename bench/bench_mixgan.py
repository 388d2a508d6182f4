#!/usr/bin/env python
"""Issue 5's benchmark: the GAN losses and MIX+GAN's mixture-weighted loss on every available backend against eager
PyTorch (the vectorised expression, the naive double loop, torch.compile), and MixtureGAN's D and G steps batched
(the grouped model; vmap for comparison) vs looped.

    python bench/bench_mixgan.py [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--sizes small|medium|large]
                                 [--step-sizes small|medium|large] [--rounds N] [--out DIR] [--quick]
                                 [--targets-only]

- fastgan.ops.gan_loss (cases of fastgan/benchmark/cases/gan_loss.py);
- fastgan.ops.mixture_gan_loss forward and forward+backward at T = 5, B = 64 (and larger T and B with --sizes
  medium/large) against the vectorised eager version and the naive loop (cases/mixture_gan_loss.py);
- MixtureGAN D-step and G-step, 5 DCGAN-style components at 32x32 (width 32, B = 64), batched vs looped.
All three are the registered cases, so the numbers agree with `fastgan bench` (the step cases at --step-sizes,
default medium: 5 components at 32x32, B = 32). The targets are then
re-timed interleaved (--rounds rounds of every implementation in turn, median of the rounds' medians; the steps one
call per round): on a shared, busy machine that keeps load changes from landing on one side of a ratio. On CPU the
CPU time of the calling thread with one intra-op thread is reported too (the work alone, without thread-pool waits).
On CUDA the steps are timed twice, with cuDNN's default algorithm choice and with torch.backends.cudnn.benchmark.
Targets: CPU loss >= 5x the vectorised eager version, batched step >= 1.3x looped; GPU >= 5x and >= 2x. Writes JSON,
CSV, markdown and plots under bench/results/<device-name>/mixgan_*. Triton is never timed on CPU (the interpreter is not a benchmark).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fastgan.benchmark import registry, suite, timing  # noqa: E402
from fastgan.benchmark.cases import mixture_gan_loss as mix_cases  # noqa: E402

LOSS_TARGET = ("mixture_gan_loss", "5x5x64", "fwd_bwd")
STEP_LABEL = "5x64x3x32"
TARGETS = {"cpu": (5.0, 1.3), "cuda": (5.0, 2.0)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(suite.DTYPES), default="fp32")
    parser.add_argument("--sizes", default="medium")
    parser.add_argument("--step-sizes", default="medium", help="sizes of the MixtureGAN step cases: a preset or a "
                        "list of T x B x C x H (default: medium)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the target ratios")
    parser.add_argument("--out", default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="the quick timing profile, no torch.compile")
    parser.add_argument("--targets-only", action="store_true", help="only the interleaved target ratios (no suite "
                        "run, nothing written): a short check")
    args = parser.parse_args(argv)
    if args.targets_only:
        targets(args.device, suite.DTYPES[args.dtype], args.rounds)
        return 0

    step_sizes = args.step_sizes
    steps = list(mix_cases.mixture_gan_step_cases(args.device, suite.DTYPES[args.dtype],
                                                  registry.parse_sizes(step_sizes), ()))
    report = suite.run_suite(ops=["gan_loss", "mixture_gan_loss"], device=args.device, dtype=args.dtype,
                             sizes=args.sizes, modes=("fwd", "fwd_bwd", "full"), out=args.out,
                             quick=args.quick or None, name="mixgan", extra={"mixture_gan_step": steps})
    print()
    print(report.markdown)
    lines = targets(args.device, suite.DTYPES[args.dtype], args.rounds)
    if "json" in report.files:
        path = os.path.join(os.path.dirname(report.files["json"]), "mixgan_targets.txt")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n" + json.dumps({"load_average": os.getloadavg()}) + "\n")
        report.files["targets"] = path
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 1 if report.errors else 0


def interleaved(runs, device, rounds, single=False):
    """{impl: median over rounds of each round's median ms}, the implementations timed in turn every round
    (single: one call per round after two warm-up calls, for steps that take seconds on a CPU)."""
    times = {name: [] for name in runs}
    if single:
        for fn in runs.values():
            fn()
            fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            if single:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                times[name].append((time.perf_counter() - start) * 1e3)
            else:
                times[name].append(timing.measure(fn, device, min_run_time=0.2)["median_ms"])
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_time(runs, rounds, number=300):
    """{impl: median over rounds of the calling thread's CPU time per call, in us}, one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    collecting = gc.isenabled()
    gc.disable()  # as timeit (and so the wall-clock timings) does: a collection is not the op's work
    try:
        times = {name: [] for name in runs}
        for fn in runs.values():
            for _ in range(10 if number > 1 else 1):
                fn()
        for _ in range(rounds):
            for name, fn in runs.items():
                start = time.thread_time()
                for _ in range(number):
                    fn()
                times[name].append((time.thread_time() - start) / number * 1e6)
    finally:
        torch.set_num_threads(threads)
        if collecting:
            gc.enable()
    return {name: statistics.median(values) for name, values in times.items()}


def targets(device, dtype, rounds, echo=print, steps=True):
    """The target ratios, re-timed interleaved; each line is echoed as soon as it is measured."""
    loss_target, step_target = TARGETS[device]
    fast = "cpp" if device == "cpu" else "cuda"
    lines = _Lines(echo)
    lines.append(f"Targets on {device} ({rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} "
                 f"on {os.cpu_count()} CPUs):")
    op, label, mode = LOSS_TARGET
    bench = next(b for b in mix_cases.mixture_gan_loss_cases(device, dtype, (tuple(map(int, label.split("x"))),),
                                                             (mode,)))
    runs = {name: bench.run[name] for name in ("eager", "loop", "compile", fast) if name in bench.run}
    if fast not in runs:
        lines.append(f"  {op}: the {fast} backend is unavailable here: {bench.skipped.get(fast, '?')}")
    else:
        t = interleaved(runs, device, rounds)
        ratio = t["eager"] / t[fast]
        cells = ", ".join(f"{name} {ms * 1e3:.0f} us" for name, ms in t.items())
        lines.append(f"  {op} {mode} T=5 B=64, wall clock: {cells}")
        lines.append(f"    {fast} vs vectorised eager: {ratio:.2f}x (target >= {loss_target:.0f}x: "
                     f"{'met' if ratio >= loss_target else 'MISSED'}); vs naive loop: {t['loop'] / t[fast]:.1f}x"
                     + (f"; vs compile: {t['compile'] / t[fast]:.2f}x" if "compile" in t else ""))
        if device == "cpu":
            # On a shared machine wall clock also counts the time a thread pool waits to be scheduled (PyTorch's
            # eager ops open OpenMP regions; fastgan's kernel stays on the calling thread at this size): CPU time
            # of the calling thread with one intra-op thread measures the work alone.
            c = cpu_time({name: runs[name] for name in ("eager", fast)}, rounds)
            ratio = c["eager"] / c[fast]
            lines.append(f"    CPU time, 1 thread: eager {c['eager']:.0f} us, {fast} {c[fast]:.0f} us: {ratio:.2f}x "
                         f"(target >= {loss_target:.0f}x: {'met' if ratio >= loss_target else 'MISSED'})")
    shape = tuple(map(int, STEP_LABEL.split("x")))
    # On CUDA the steps are timed twice: with cuDNN's default algorithm choice, and with torch.backends.cudnn.benchmark
    # (which GAN training scripts often set), because grouped convolutions can be slower than separate ones under
    # the default choice (pytorch/pytorch#73764) and the autotuner may pick differently.
    autotune_modes = (False, True) if device == "cuda" else (None,)
    step_cases = [(step, autotune) for autotune in autotune_modes for step in (("d_step", "g_step") if steps else ())]
    default_autotune = torch.backends.cudnn.benchmark
    try:
        for step, autotune in step_cases:
            if autotune is not None:
                torch.backends.cudnn.benchmark = autotune
            _time_step(lines, step, shape, device, dtype, rounds, step_target,
                       " [cudnn.benchmark]" if autotune else "")
    finally:
        torch.backends.cudnn.benchmark = default_autotune
    return list(lines)


def _time_step(lines, step, shape, device, dtype, rounds, step_target, tag):
    """One MixtureGAN step's target line (and on CPU its CPU-time line), batched vs looped, interleaved."""
    variants = ("looped", "batched", "vmap") + (("batched_cl",) if device == "cuda" else ())
    runs = mix_cases.step_runs(shape, device, dtype, step, variants)
    if device == "cpu":
        # The grouped model runs its convolutions channels_last on CPU; the user's own models converted to
        # channels_last and looped show how much of the gain is the layout alone.
        runs["looped_cl"] = mix_cases.step_runs(shape, device, dtype, step, ("looped",), channels_last=True)["looped"]
    t = interleaved(runs, device, rounds, single=device == "cpu")
    ratio = t["looped"] / t["batched"]
    count, batch, _, image = shape
    lines.append(f"  MixtureGAN {step}{tag} ({count} DCGANs {image}x{image}, B={batch}), wall clock: looped "
                 f"{t['looped']:.1f} ms, "
                 f"batched {t['batched']:.1f} ms: {ratio:.2f}x (target >= {step_target}x: "
                 f"{'met' if ratio >= step_target else 'MISSED'}); vmap {t['vmap']:.1f} ms "
                 f"({t['looped'] / t['vmap']:.2f}x)"
                 + (f"; batched channels_last {t['batched_cl']:.1f} ms ({t['looped'] / t['batched_cl']:.2f}x)"
                    if "batched_cl" in t else "")
                 + (f"; looped channels_last models {t['looped_cl']:.1f} ms (batched "
                    f"{t['looped_cl'] / t['batched']:.2f}x of it)" if "looped_cl" in t else ""))
    if device == "cpu":
        # The work alone, without thread-pool waits: the convolutions dominate and cost the same arithmetic
        # batched or looped.
        c = cpu_time({name: runs[name] for name in ("looped", "batched")}, max(1, rounds // 2), number=1)
        lines.append(f"    CPU time, 1 thread: looped {c['looped'] / 1e3:.1f} ms, batched {c['batched'] / 1e3:.1f} "
                     f"ms: {c['looped'] / c['batched']:.2f}x")


class _Lines(list):
    def __init__(self, echo):
        super().__init__()
        self.echo = echo

    def append(self, line):
        super().append(line)
        if self.echo:
            self.echo(line, flush=True) if self.echo is print else self.echo(line)


if __name__ == "__main__":
    sys.exit(main())
