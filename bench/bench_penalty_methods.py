#!/usr/bin/env python
"""Issue 7's benchmark: a WGAN-GP critic step per penalty method (double_backward, jvp, finite_difference), eager and
with a torch.compile'd critic, against the textbook penalty; the cost per step of lazy R1 for k = 1, 4, 16; and the
gradient differences of each method against double backward.

    python bench/bench_penalty_methods.py [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--sizes medium|64x3x32x32,...]
                                          [--out DIR] [--quick] [--no-accuracy]

Timing: the registered cases of fastgan/benchmark/cases/penalty_methods.py through the fastgan bench harness
(fastgan.benchmark.suite), so the numbers agree with `fastgan bench --ops penalty_methods`. Default size: B = 64,
3 x 32 x 32, DCGAN critic of width 64. Writes JSON, CSV and markdown under bench/results/<device-name>/.
"""
import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from fastgan.benchmark import suite  # noqa: E402
from fastgan.benchmark.cases import penalty_methods as cases  # noqa: E402

METHOD_COLUMNS = ("plain", "fastgan", "jvp", "finite_difference")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(suite.DTYPES), default="fp32")
    parser.add_argument("--sizes", default="medium")
    parser.add_argument("--out", default=None, help="results folder (default: bench/results)")
    parser.add_argument("--quick", action="store_true", help="the quick timing profile, no torch.compile")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the gradient-difference table")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the same cases by the CPU time of one thread (torch.set_num_threads(1)) instead "
                             "of wall-clock through the harness: steadier on a machine other jobs share")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 gives steadier numbers on a busy machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.cpu_time:
        if args.device != "cpu":
            parser.error("--cpu-time measures CPU runs only")
        torch.set_num_threads(1)
        results = cpu_time_results(args.sizes, suite.DTYPES[args.dtype], args.quick)
        text = summary(results, "CPU time of the calling thread, 1 torch thread")
        if not args.no_accuracy:
            text += "\n" + accuracy_table(torch.device(args.device))
        print(text)
        path = write_cpu_time_json(results, text, args)
        print(f"wrote json: {path}")
        return 0
    report = suite.run_suite(ops=[cases.OP], device=args.device, dtype=args.dtype, sizes=args.sizes,
                             out=args.out, quick=args.quick or None, name="penalty_methods")
    print()
    print(report.markdown)
    print(summary(report.results))
    if not args.no_accuracy:
        print(accuracy_table(torch.device(args.device)))
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 1 if report.errors else 0


def cpu_time_results(sizes, dtype, quick, repeats=7, warmup=2, min_seconds=2.0, max_repeats=40):
    """The registered cases timed by time.thread_time(): with one torch thread every kernel runs on the calling
    thread, so this is the work done, whatever else the machine runs. The implementations of a case are timed
    round-robin (warm-up first, then at least `repeats` rounds, more until each has `min_seconds`), so a drifting
    machine load shifts them alike; medians are reported."""
    import statistics
    import time

    from fastgan.benchmark import registry

    if quick:
        registry.set_compile(False, "torch.compile not run in quick mode")
    preset = registry.parse_sizes(sizes)
    results = []
    for bench in cases.penalty_methods_cases(torch.device("cpu"), dtype, preset, None):
        for fn in bench.run.values():
            for _ in range(warmup):
                fn()
        times = {impl: [] for impl in bench.run}
        while True:
            for impl, fn in bench.run.items():
                start = time.thread_time()
                fn()
                times[impl].append((time.thread_time() - start) * 1e3)
            rounds = len(next(iter(times.values())))
            enough = rounds >= repeats and min(sum(t) for t in times.values()) >= 1e3 * min_seconds
            if enough or rounds >= max_repeats:
                break
        parts = []
        for impl, values in times.items():
            row = {"op": bench.op, "label": bench.label, "mode": bench.mode, "impl": impl, "status": "ok",
                   "median_ms": statistics.median(values), "reason": "", "n": len(values)}
            results.append(row)
            parts.append(f"{impl} {row['median_ms']:.1f}")
        print(f"  {bench.label} {bench.mode} ({rounds} rounds): " + ", ".join(parts), flush=True)
        for impl, reason in bench.skipped.items():
            results.append({"op": bench.op, "label": bench.label, "mode": bench.mode, "impl": impl,
                            "status": "skipped", "median_ms": None, "reason": reason})
    return results


def write_cpu_time_json(results, text, args):
    """bench/results/cpu/penalty_methods_cputime_<dtype>_<sizes>.json (or under --out): rows, tables, environment."""
    import datetime
    import json
    import platform
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(args.out or os.path.join(root, "bench", "results"), "cpu")
    os.makedirs(folder, exist_ok=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit, "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1,
            "clock": "time.thread_time, round-robin medians", "dtype": args.dtype, "sizes": args.sizes,
            "load_average": load}
    path = os.path.join(folder, f"penalty_methods_cputime_{args.dtype}_{args.sizes.replace(',', '_')}.json")
    with open(path, "w") as handle:
        json.dump({"schema": "fastgan-bench-cputime/1", "meta": meta, "results": results, "markdown": text}, handle,
                  indent=1)
    return path


def summary(results, clock="wall clock"):
    """Per size: D-step and penalty-only medians per method (eager | compiled critic), ratios vs the textbook
    penalty and vs fastgan's double backward; lazy R1 cost per step."""
    rows = {}
    for r in results:
        if r["op"] == cases.OP:
            rows.setdefault((r["label"], r["mode"]), {})[r["impl"]] = r

    def ms(row):
        return row["median_ms"] if row is not None and row["status"] == "ok" else None

    def fmt(value):
        return "-" if value is None else f"{value:.1f}"

    lines = ["", f"### Penalty methods (medians, ms, {clock})", "",
             "| size | mode | method | eager | compiled critic | vs plain (eager) | vs double_backward (eager) |",
             "|---|---|---|---|---|---|---|"]
    for (label, mode), by_impl in rows.items():
        if mode == "lazy":
            continue
        plain, db = ms(by_impl.get("plain")), ms(by_impl.get("fastgan"))
        for column in METHOD_COLUMNS:
            eager, comp = ms(by_impl.get(column)), ms(by_impl.get(f"{column}+compile"))
            comp_text = fmt(comp) if comp is not None else _why(by_impl.get(f"{column}+compile"))
            name = "double_backward" if column == "fastgan" else column
            lines.append(f"| {label} | {mode} | {name} | {fmt(eager)} | {comp_text} | "
                         f"{_ratio(plain, eager)} | {_ratio(db, eager)} |")
    lines += ["", f"### Lazy R1 (ms per critic step = median / k, {clock})", "",
              "| size | k | plain | plain+compile | fastgan (double_backward) | fastgan+compile | jvp | jvp+compile |",
              "|---|---|---|---|---|---|---|---|"]
    for (label, mode), by_impl in rows.items():
        if mode != "lazy":
            continue
        size, every = label.split(" reg_every=")
        k = int(every)
        cells = [_why(by_impl.get(c)) if ms(by_impl.get(c)) is None else fmt(ms(by_impl.get(c)) / k)
                 for c in ("plain", "plain+compile", "fastgan", "fastgan+compile", "jvp", "jvp+compile")]
        lines.append(f"| {size} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _why(row):
    if row is None:
        return "-"
    reason = row.get("reason") or ""
    if "double backward" in reason or "donated buffer" in reason:
        return "refused by torch.compile"
    if row["status"] == "skipped":
        return "not run"
    return "failed"


def _ratio(base, value):
    return "-" if base is None or value is None else f"{base / value:.2f}x"


def accuracy_table(device):
    """Relative difference of each method's parameter gradient from double backward (fp64 and fp32), for the
    benchmark's DCGAN critic with LeakyReLU (piecewise linear) and with softplus (smooth)."""
    import fastgan
    from fastgan.models import DCGANCritic

    lines = ["", "### Gradient differences vs double_backward (relative L2 over all parameters; B = 16, 32x32)", "",
             "| critic | dtype | jvp | finite_difference |", "|---|---|---|---|"]
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(16, 3, 32, 32, generator=gen) * 2 - 1
    fake = torch.rand(16, 3, 32, 32, generator=gen) * 2 - 1
    alpha = torch.rand(16, generator=gen)
    for act in ("lrelu", "softplus"):
        for dtype in (torch.float64, torch.float32):
            torch.manual_seed(0)
            critic = DCGANCritic(image_size=32, channels=3, width=64, act="lrelu").to(device, dtype)
            if act == "softplus":
                for i, layer in enumerate(critic):
                    if isinstance(layer, torch.nn.LeakyReLU):
                        critic[i] = torch.nn.Softplus()
            grads = {}
            for method in ("double_backward", "jvp", "finite_difference"):
                critic.zero_grad(set_to_none=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fastgan.gradient_penalty(critic, real.to(device, dtype), fake.to(device, dtype),
                                             alpha=alpha.to(device, dtype), method=method).backward()
                grads[method] = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                           for p in critic.parameters()]).double()
            exact = grads["double_backward"]
            diff = {m: ((grads[m] - exact).norm() / exact.norm()).item() for m in ("jvp", "finite_difference")}
            name = "LeakyReLU(0.2)" if act == "lrelu" else "softplus"
            lines.append(f"| DCGAN {name} | {str(dtype).replace('torch.', '')} | {diff['jvp']:.1e} | "
                         f"{diff['finite_difference']:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
