#!/usr/bin/env python
"""Issue 4's benchmark: WGAN weight clipping, RMSprop/Adam with the fused clamp, and spectral normalisation, on
every available backend against eager PyTorch (per-parameter loops, torch.optim, torch's parametrization), torch's
foreach ops and torch.compile.

    python bench/bench_clip_sn.py [--device cpu|cuda] [--preset small|medium|large] [--threads N] [--rounds R]
                                  [--out DIR] [--quick]

Cases come from fastgan/benchmark/cases/clip_sn.py (the registry `fastgan bench` uses), timed with
fastgan.benchmark.timing.measure for the table. The issue's targets are then checked with interleaved, paired
timings (round after round of every implementation, medians over rounds), which resist the drift of a shared
machine far better than one implementation timed after another:
  CPU: clipping at least as fast as the per-parameter loop; RMSprop+clip >= 1.3x torch RMSprop + the clip loop;
       the time spectral normalisation adds to the critic's forward+backward (B = 64) at most half of what torch's
       parametrization adds.
  GPU: clipping >= 10x the loop and >= 1.5x foreach; SN overhead at most a third of torch's.
Triton is never timed on CPU (the interpreter is not a benchmark). Writes bench/results/<device>/clip_sn.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import fastgan  # noqa: E402
from fastgan.benchmark import registry, timing  # noqa: E402
from fastgan.benchmark.cases import clip_sn  # noqa: E402,F401  (registers the cases)

OPS = ("clip_weights", "fused_optim", "spectral_norm")
TARGET_CRITIC = "dcgan32-w64"


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def interleaved(fns, device, rounds, min_ms=20.0):
    """{name: median ms per call} over `rounds` rounds, each timing every fn back to back (a block of calls
    lasting about min_ms), so that slow drifts of the machine hit every implementation alike. With --clock cpu
    (CPU only) the clock is the process's CPU time: on a shared machine it leaves out the time other processes
    hold the cores (meaningful with --threads 1; with more threads it also counts OpenMP's spinning)."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = _clock if device.type == "cpu" else time.perf_counter
    counts = {}
    for name, fn in fns.items():  # warm up, and size each block
        for _ in range(3):
            fn()
        sync()
        start = clock()
        fn()
        sync()
        one = max(clock() - start, 1e-6) * 1e3
        counts[name] = max(1, int(min_ms / one))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            start = clock()
            for _ in range(counts[name]):
                fn()
            sync()
            samples[name].append((clock() - start) * 1e3 / counts[name])
    return {name: statistics.median(values) for name, values in samples.items()}, samples


def table(device, dtype, preset, quick, rounds):
    """Every case of the three ops: with the wall clock, fastgan.benchmark.timing.measure (as `fastgan bench`);
    with --clock cpu, interleaved rounds on the CPU-time clock."""
    rows = []
    for op in OPS:
        for bench in registry.CASES[op](device, dtype, preset, ("fwd", "fwd_bwd")):
            fns = {impl: fn for impl, fn in bench.run.items()
                   if not (torch.device(device).type == "cpu" and impl == "triton")}
            times = {}
            if _clock is time.process_time and torch.device(device).type == "cpu":
                try:
                    times, _ = interleaved(fns, device, rounds)
                except Exception as error:  # noqa: BLE001 - reported, not fatal
                    times = {impl: f"error: {registry.one_line(error)}" for impl in fns}
            else:
                for impl, fn in fns.items():
                    try:
                        times[impl] = timing.measure(fn, device, min_run_time=0.1 if quick else 0.3)["median_ms"]
                    except Exception as error:  # noqa: BLE001 - reported, not fatal
                        times[impl] = f"error: {registry.one_line(error)}"
            rows.append({"op": bench.op, "label": bench.label, "mode": bench.mode, "bytes": bench.bytes,
                         "median_ms": times, "skipped": bench.skipped, "note": bench.note})
    return rows


def print_table(rows):
    impls = []
    for row in rows:
        for impl in row["median_ms"]:
            if impl not in impls:
                impls.append(impl)
    order = [i for i in ("eager", "compile", "foreach", "no_sn", "cpp", "cuda", "triton") if i in impls]
    order += [i for i in impls if i not in order]
    header = ["op", "case", "mode"] + [f"{i} ms" for i in order] + ["best fastgan", "vs eager", "GB/s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        t = row["median_ms"]
        cells = [row["op"], row["label"], row["mode"]]
        for impl in order:
            value = t.get(impl)
            cells.append("" if value is None else (f"{value:.3f}" if isinstance(value, float) else "err"))
        ours = {i: v for i, v in t.items() if i in ("cpp", "cuda", "triton") and isinstance(v, float)}
        if ours:
            best = min(ours, key=ours.get)
            eager = t.get("eager")
            cells += [best, f"{eager / ours[best]:.2f}x" if isinstance(eager, float) else "-",
                      f"{row['bytes'] / ours[best] / 1e6:.1f}" if row["bytes"] else "-"]
        else:
            cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |")


def targets(device, dtype, rounds):
    """The issue's targets on the DCGAN 32x32 critic, from interleaved paired timings."""
    dev = torch.device(device)
    fast = "cpp" if dev.type == "cpu" else "cuda"
    out = {}
    name, size, channels, width = next(c for c in clip_sn.CRITICS["small"] if c[0] == TARGET_CRITIC)

    clip_case = next(b for b in registry.CASES["clip_weights"](device, dtype, "small", ("fwd",)))
    fns = {k: clip_case.run[k] for k in ("eager", "foreach", fast) if k in clip_case.run}
    medians, _ = interleaved(fns, device, rounds)
    goal = 1.0 if dev.type == "cpu" else 10.0
    out["clip_weights"] = {"median_ms": medians, "vs_loop": medians["eager"] / medians[fast],
                           "vs_foreach": medians["foreach"] / medians[fast], "target_vs_loop": goal,
                           "met": medians["eager"] / medians[fast] >= goal
                           and (dev.type == "cpu" or medians["foreach"] / medians[fast] >= 1.5)}

    optim_case = next(b for b in registry.CASES["fused_optim"](device, dtype, "small", ("fwd",))
                      if b.label.startswith("rmsprop+clip"))
    fns = {k: optim_case.run[k] for k in ("eager", "foreach", fast) if k in optim_case.run}
    medians, _ = interleaved(fns, device, rounds)
    out["rmsprop_clip"] = {"median_ms": medians, "vs_torch_loop": medians["eager"] / medians[fast],
                           "vs_torch_foreach": medians["foreach"] / medians[fast], "target": 1.3,
                           "met": medians["eager"] / medians[fast] >= 1.3}

    plain, theirs, ours = clip_sn.spectral_norm_critics(size, channels, width, device, dtype)
    x = torch.randn(clip_sn.BATCH, channels, size, size, device=device, dtype=dtype)
    fns = {"no_sn": clip_sn.forward_backward(plain, x), "torch_sn": clip_sn.forward_backward(theirs, x),
           "fastgan_sn": clip_sn.forward_backward(ours, x)}
    medians, samples = interleaved(fns, device, rounds, min_ms=60.0)
    # Paired per round: each round's overheads against that round's plain critic.
    torch_over = statistics.median(t - p for t, p in zip(samples["torch_sn"], samples["no_sn"]))
    ours_over = statistics.median(f - p for f, p in zip(samples["fastgan_sn"], samples["no_sn"]))
    # The same overhead measured directly: everything spectral normalisation adds to a forward+backward, and only
    # that (the convolutions see a W-shaped tensor either way): the power iterations, W / sigma, and their backward
    # for an upstream gradient per layer. A few ms instead of a difference of two ~100 ms timings, so it stays
    # readable on a busy machine.
    convs_t = [m for m in theirs.modules() if isinstance(m, torch.nn.Conv2d)]
    convs_o = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    upstream = [torch.randn_like(m.parametrizations.weight.original) for m in convs_o]

    def torch_parts():
        theirs.zero_grad(set_to_none=True)
        torch.autograd.backward([m.weight for m in convs_t], upstream)

    def fastgan_parts():
        ours.zero_grad(set_to_none=True)
        fastgan.nn.utils._batched_update(ours, ())  # spectral_norm_all's pre-hook: all power iterations at once
        torch.autograd.backward([m.weight for m in convs_o], upstream)

    parts, _ = interleaved({"torch_sn": torch_parts, "fastgan_sn": fastgan_parts}, device, rounds)
    limit = 0.5 if dev.type == "cpu" else 1 / 3
    out["spectral_norm_overhead"] = {
        "median_ms": medians, "torch_overhead_ms": torch_over, "fastgan_overhead_ms": ours_over,
        "ratio": ours_over / torch_over if torch_over > 0 else float("nan"),
        "direct_ms": parts, "direct_ratio": parts["fastgan_sn"] / parts["torch_sn"], "target_ratio_at_most": limit,
        "met": parts["fastgan_sn"] <= limit * parts["torch_sn"],
        "met_end_to_end": torch_over > 0 and ours_over <= limit * torch_over}
    return out


def print_targets(out, device):
    c, r, s = out["clip_weights"], out["rmsprop_clip"], out["spectral_norm_overhead"]
    fmt = lambda d: ", ".join(f"{k} {v:.3f} ms" for k, v in d.items())  # noqa: E731
    print(f"clip_weights ({TARGET_CRITIC}, 663k parameters): {fmt(c['median_ms'])}: {c['vs_loop']:.2f}x the loop, "
          f"{c['vs_foreach']:.2f}x foreach (target >= {c['target_vs_loop']:.0f}x the loop"
          + ("" if device == "cpu" else ", >= 1.5x foreach") + f"): {'met' if c['met'] else 'MISSED'}")
    print(f"RMSprop+clip ({TARGET_CRITIC}): {fmt(r['median_ms'])}: {r['vs_torch_loop']:.2f}x torch RMSprop + clip "
          f"loop, {r['vs_torch_foreach']:.2f}x torch foreach (target >= 1.3x): {'met' if r['met'] else 'MISSED'}")
    print(f"SN critic fwd+bwd ({TARGET_CRITIC}, B={clip_sn.BATCH}): {fmt(s['median_ms'])}; overhead (paired "
          f"differences): torch {s['torch_overhead_ms']:.2f} ms, fastgan {s['fastgan_overhead_ms']:.2f} ms = "
          f"{s['ratio']:.2f} of torch's")
    print(f"SN overhead measured directly (power iterations, W / sigma and their backward): torch "
          f"{s['direct_ms']['torch_sn']:.3f} ms, fastgan {s['direct_ms']['fastgan_sn']:.3f} ms = "
          f"{s['direct_ratio']:.2f} of torch's (target <= {s['target_ratio_at_most']:.2f}): "
          f"{'met' if s['met'] else 'MISSED'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=registry.PRESETS, default="small")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the interleaved target timings")
    parser.add_argument("--out", default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="shorter timings, no table (targets only)")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="clock of the target timings on CPU: wall (default) or cpu (process CPU time)")
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
           "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(), "clock": args.clock,
           "cpu": platform.processor() or platform.machine(),
           "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    print(f"torch {env['torch']}, {args.device}, {args.dtype}, {env['threads']} threads, {args.clock} clock for the "
          f"targets, load average {env['load_average']}")
    rows = []
    if not args.quick:
        rows = table(args.device, dtype, args.preset, args.quick, max(5, args.rounds // 3))
        print_table(rows)
    out = targets(args.device, dtype, args.rounds)
    print_targets(out, args.device)
    folder = os.path.join(args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                          args.device)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"clip_sn_{args.threads or 'default'}threads_{args.clock}.json")
    with open(path, "w") as handle:
        json.dump({"environment": env, "table": rows, "targets": out}, handle, indent=1, default=str)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
