"""The harness behind `fastgan bench`: runs registered cases, measures the device's ceilings, writes the reports.

    from fastgan.benchmark import suite
    report = suite.run_suite(ops=["grad_norm_penalty"], device="cpu", sizes="small")
    print(report.markdown)

Every implementation of every case is timed with fastgan.benchmark.timing.measure (or reported with the reason it
cannot run); nothing here raises because one op or backend fails: the failure becomes a row with its reason.
Outputs (under OUT/<device-name>/, OUT defaulting to bench/results in a source checkout): <stamp>_<dtype>_<sizes>
.json (meta: commit, versions, date, ceilings; one record per case and implementation), .csv (the same records,
one per line, with the meta columns), .md (the tables), _time.png (time vs size per backend) and _speedup.png
(speed-up over eager per op).

Environment knobs (not command-line options): FASTGAN_BENCH_QUICK=1 times with the quick profile (smoke tests),
FASTGAN_BENCH_DEADLINE=<seconds> bounds the run (the GPU check's budget): each op gets a fair share of the time left
and its cases that would start after that share are skipped (and reported).
"""
import csv
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import math
import os
import pkgutil
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

import fastgan
from fastgan.benchmark import registry, timing
from fastgan.benchmark.registry import (BACKEND_NAMES, E2E_IMPLEMENTATIONS, IMPLEMENTATIONS, INTERPRETER_REASON,
                                        MODES, PRESETS, Bench, one_line)

SCHEMA = "fastgan-bench/1"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
E2E_OP = "end_to_end"
OP_ALIASES = {"e2e": E2E_OP, "end-to-end": E2E_OP}
BUDGET_REASON = ("later cases not run: this op's share of the time budget (FASTGAN_BENCH_DEADLINE) was used up; "
                 "the rows above are what it measured")


@dataclasses.dataclass
class Report:
    meta: dict
    ceilings: dict
    results: list
    notes: list
    markdown: str = ""
    files: dict = dataclasses.field(default_factory=dict)

    @property
    def errors(self):
        return [r for r in self.results if r["status"] == "error"]

    def to_json(self):
        return {"schema": SCHEMA, "meta": self.meta, "ceilings": self.ceilings, "notes": self.notes,
                "results": self.results}


# ----------------------------------------------------------------------------------------------- environment


def repo_root():
    """The source checkout fastgan runs from (holding bench/), or None for an installed package."""
    root = Path(fastgan.__file__).resolve().parent.parent
    return root if (root / "bench").is_dir() and (root / "fastgan").is_dir() else None


def default_out():
    root = repo_root()
    return (root / "bench" / "results") if root is not None else Path.cwd() / "bench-results"


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_level_cache_mb():
    """The CPU's largest cache in MB (from sysfs), or None."""
    sizes = []
    for index in range(8):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size") as handle:
                text = handle.read().strip()
        except OSError:
            continue
        scale = {"K": 1 / 1024, "M": 1, "G": 1024}.get(text[-1:].upper())
        try:
            sizes.append(float(text[:-1]) * scale if scale else float(text) / 2**20)
        except ValueError:
            continue
    return max(sizes) if sizes else None


def device_name(device):
    """The folder name of a device's results: the GPU's name ('nvidia-h200'), or 'cpu-<model>-<threads>t'."""
    device = torch.device(device)
    if device.type == "cuda":
        return _slug(torch.cuda.get_device_name(device)) or "cuda"
    model = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\bcore\b", " ", cpu_model(), flags=re.I)
    model = _slug(model)
    return f"cpu-{model}-{torch.get_num_threads()}t" if model else f"cpu-{torch.get_num_threads()}t"


def _git(*args):
    root = repo_root() or Path.cwd()
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device, dtype, preset, modes, quick):
    """Everything a reader needs to trust (or discount) the numbers."""
    device = torch.device(device)
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short=12", "HEAD") or os.environ.get("FASTGAN_COMMIT", "unknown"),
        "dirty": bool(dirty) if dirty is not None else None,
        "fastgan": fastgan.__version__, "torch": torch.__version__, "triton": _version("triton"),
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "device": device.type, "device_name": device_name(device),
        "dtype": dtype, "sizes": preset if isinstance(preset, str) else getattr(preset, "spec", str(preset)),
        "modes": list(modes), "quick": bool(quick),
        "cpu": cpu_model(), "threads": torch.get_num_threads(), "llc_mb": last_level_cache_mb(),
    }
    try:
        meta["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(gpu=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                    gpu_memory_gb=round(props.total_memory / 2**30, 1), sm_count=props.multi_processor_count)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            meta["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
        except (OSError, subprocess.SubprocessError, IndexError):
            meta["driver"] = None
    from fastgan import _ext
    ok = _ext.load()
    meta["extension"] = "loaded" if ok else f"unavailable: {_ext.status()[1]}"
    if ok:
        stamp = _ext.status()[2].get("stamp", {})
        meta["extension_cuda_kernels"] = bool(stamp.get("cuda"))
    return meta


def measure_ceilings(device, dtype, echo=None):
    """Copy bandwidth and matmul rate, measured now on `device` (the roofline's ceilings)."""
    ceilings = {}
    try:
        copy = timing.copy_bandwidth(device)
        ceilings.update(copy_gbps=copy["gbps"], copy_bytes=copy["bytes"])
    except Exception as error:  # noqa: BLE001
        ceilings["copy_error"] = one_line(error)
    try:
        mm = timing.matmul_rate(device, dtype)
        ceilings.update(matmul_gflops=mm["gflops"], matmul_size=mm["size"], matmul_dtype=mm["dtype"])
    except Exception as error:  # noqa: BLE001
        ceilings["matmul_error"] = one_line(error)
    if echo:
        bw = ceilings.get("copy_gbps")
        mm = ceilings.get("matmul_gflops")
        echo(f"ceilings on {device}: copy {bw:.1f} GB/s, matmul {mm:.0f} GFLOP/s ({ceilings.get('matmul_dtype')})"
             if bw and mm else f"ceilings on {device}: {ceilings}")
    return ceilings


def _remeasure_ceilings(ceilings, device, dtype, results, echo):
    """Measure the ceilings again after the cases and keep the higher of the two readings: on a shared machine the
    first reading can catch a busy moment, which would put cases above 100% of the 'ceiling'."""
    again = measure_ceilings(device, dtype)
    ceilings["first"] = {k: ceilings.get(k) for k in ("copy_gbps", "matmul_gflops")}
    ceilings["last"] = {k: again.get(k) for k in ("copy_gbps", "matmul_gflops")}
    changed = False
    for key in ("copy_gbps", "matmul_gflops"):
        if again.get(key) and (not ceilings.get(key) or again[key] > ceilings[key]):
            ceilings[key] = again[key]
            changed = True
    if changed:
        for row in results:
            if row["impl"] != "-":
                _derive(row, ceilings)
    if echo:
        echo(f"ceilings used (higher of the readings before and after the cases): copy "
             f"{ceilings.get('copy_gbps') or 0:.1f} GB/s, matmul {ceilings.get('matmul_gflops') or 0:.0f} GFLOP/s")


# ------------------------------------------------------------------------------------------------ selection


def resolve_ops(names, cases):
    """The case names to run, in the order given (all registered ones when `names` is empty)."""
    available = list(cases) + [m for m in registry.LOAD_ERRORS if m not in cases]
    if not names:
        kernel = sorted(n for n in available if n != E2E_OP)
        return kernel + ([E2E_OP] if E2E_OP in available else [])
    chosen = []
    for name in names:
        name = OP_ALIASES.get(name, name)
        if name not in available:
            raise ValueError(f"unknown op {name!r}: choose from {', '.join(sorted(available))}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def ops_without_cases(seen):
    """Modules of fastgan.ops that no registered case benchmarks (by op name)."""
    try:
        import fastgan.ops as ops_pkg
        modules = [m.name for m in pkgutil.iter_modules(ops_pkg.__path__) if not m.name.startswith("_")]
    except Exception:  # noqa: BLE001
        return []
    return [m for m in modules if m not in seen]


def _iterate(op, factory, device, dtype, preset, modes):
    """Yield the factory's Bench objects; a factory that cannot take explicit sizes is run per preset and its
    cases kept where the label matches a requested size."""
    try:
        yield from factory(device, dtype, preset, modes)
        return
    except (KeyError, TypeError, IndexError):
        if isinstance(preset, str):
            raise
    wanted = {registry.shape_label(s) for s in preset}
    for name in PRESETS:
        for bench in factory(device, dtype, name, modes):
            if bench.label in wanted:
                wanted.discard(bench.label)
                yield bench
        if not wanted:
            return


# ------------------------------------------------------------------------------------------------- timing


def _row(bench, impl, device, dtype):
    return {"op": bench.op, "label": bench.label, "mode": bench.mode, "impl": impl, "baseline": bench.baseline,
            "device": torch.device(device).type, "dtype": dtype, "status": None, "reason": "",
            "median_ms": None, "p20_ms": None, "p80_ms": None, "peak_mem_mb": None, "n": None,
            "bytes": int(bench.bytes or 0), "flops": int(bench.flops or 0),
            "size": bench.size if bench.size is not None else _default_size(bench),
            "samples": int(bench.samples or 0), "note": bench.note or "",
            "gbps": None, "pct_bw": None, "gflops": None, "pct_flops": None, "pct_roofline": None,
            "samples_per_s": None, "speedup_vs_baseline": None, "speedup_vs_compile": None}


def _default_size(bench):
    if re.fullmatch(r"\d+(x\d+)*", bench.label or ""):
        return registry.numel(int(v) for v in bench.label.split("x"))
    return bench.bytes or None


def implementations_of(bench):
    base = E2E_IMPLEMENTATIONS if (bench.baseline == "plain" or "plain" in bench.run) else IMPLEMENTATIONS
    extra = [k for k in list(bench.run) + list(bench.skipped) if k not in base]
    return list(base) + list(dict.fromkeys(extra))


def time_bench(bench, device, dtype, ceilings, refused, echo=None):
    """One record per implementation of `bench`: timed, skipped (with the reason) or failed (with the error)."""
    device_type = torch.device(device).type
    impls = implementations_of(bench)
    timed = {i: bench.run[i] for i in impls if i in bench.run and not (device_type == "cpu" and i == "triton")}
    measured = timing.measure_interleaved(timed, device)
    rows = []
    for impl in impls:
        row = _row(bench, impl, device, dtype)
        if device_type == "cpu" and impl == "triton" and impl in bench.run:
            row.update(status="skipped", reason=INTERPRETER_REASON)  # never time the interpreter
        elif impl in timed:
            result = measured.get(impl)
            if isinstance(result, dict):
                result = {k: v for k, v in result.items() if k != "times_ms"}
                row.update(status="ok", **result)
            else:  # a failing implementation is a row, not a crash
                row.update(status="error", reason=one_line(result) if result is not None else "not measured")
                if device_type == "cuda":
                    try:
                        torch.cuda.synchronize()
                    except Exception as sticky:  # noqa: BLE001 - a sticky CUDA error: later cases will say so
                        row["reason"] += f" (then: {one_line(sticky)})"
        elif impl in bench.skipped:
            row.update(status="skipped", reason=bench.skipped[impl])
        elif impl in refused:
            row.update(status="skipped", reason=refused[impl])
        else:
            row.update(status="skipped", reason="not benchmarked by this case")
        _derive(row, ceilings)
        rows.append(row)
    by_impl = {r["impl"]: r for r in rows if r["status"] == "ok"}
    base = by_impl.get(bench.baseline)
    comp = by_impl.get("compile")
    for row in rows:
        if row["status"] != "ok":
            continue
        if base is not None:
            row["speedup_vs_baseline"] = base["median_ms"] / row["median_ms"]
        if comp is not None:
            row["speedup_vs_compile"] = comp["median_ms"] / row["median_ms"]
    if echo:
        echo("  " + _progress_line(bench, rows))
    return rows


def _derive(row, ceilings):
    t = row["median_ms"]
    if row["status"] != "ok" or not t or t <= 0:
        return
    seconds = t * 1e-3
    bw, rate = ceilings.get("copy_gbps"), ceilings.get("matmul_gflops")
    if row["bytes"]:
        row["gbps"] = row["bytes"] / seconds / 1e9
        if bw:
            row["pct_bw"] = 100 * row["gbps"] / bw
    if row["flops"]:
        row["gflops"] = row["flops"] / seconds / 1e9
        if rate:
            row["pct_flops"] = 100 * row["gflops"] / rate
    floors = []
    if row["bytes"] and bw:
        floors.append(row["bytes"] / (bw * 1e9))
    if row["flops"] and rate:
        floors.append(row["flops"] / (rate * 1e9))
    if floors:
        row["pct_roofline"] = 100 * max(floors) / seconds
    if row["samples"]:
        row["samples_per_s"] = row["samples"] / seconds


def _progress_line(bench, rows):
    parts = []
    for r in rows:
        if r["status"] == "ok":
            parts.append(f"{r['impl']} {fmt_ms(r['median_ms'])} ms")
        elif r["status"] == "error":
            parts.append(f"{r['impl']} ERROR")
    return f"{bench.op} {bench.label} {bench.mode}: " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------- the suite


def run_suite(ops=None, device=None, dtype="fp32", sizes="medium", modes=None, out=None, quick=None,
              deadline=None, echo=print, write=True, plots=True, extra=None, name=None):
    """Run the benchmark suite and return a Report (and write its files unless write=False).

    ops: case names (default: all registered, end-to-end last); device: "cpu" or "cuda" (default: cuda if
    present); dtype: "fp32", "bf16" or "fp16"; sizes: a preset name, a "AxBxC,..." list or a SizeList; modes:
    subset of MODES (default all); out: results folder (files go to OUT/<device-name>/); quick: the quick timing
    profile and no torch.compile (default: $FASTGAN_BENCH_QUICK); deadline: seconds after which no new case
    starts (default: $FASTGAN_BENCH_DEADLINE); extra: {op: iterable of Bench} run after the registered cases;
    name: a prefix for the output files.
    """
    started = time.monotonic()
    echo = echo or (lambda *_: None)
    if quick is None:
        quick = os.environ.get("FASTGAN_BENCH_QUICK") == "1"
    if deadline is None and os.environ.get("FASTGAN_BENCH_DEADLINE"):
        deadline = float(os.environ["FASTGAN_BENCH_DEADLINE"])
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    preset = registry.parse_sizes(sizes) if isinstance(sizes, str) else sizes
    modes = tuple(MODES if not modes else modes)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    cases = registry.load_cases(strict=False)
    chosen = resolve_ops(ops, cases) if ops is not None or extra is None else []

    previous_profile = timing.profile()
    timing.set_profile("quick" if quick else "normal")
    if quick:
        registry.set_compile(False, "torch.compile not run in quick (smoke) mode")
    else:
        registry.set_compile(True)
    try:
        meta = environment(device, dtype, preset, modes, quick)
        echo(f"fastgan bench on {meta['device_name']} ({dtype}, sizes {meta['sizes']}, modes {', '.join(modes)})"
             f"; torch {meta['torch']}, triton {meta['triton']}, commit {meta['commit']}")
        ceilings = measure_ceilings(device, DTYPES[dtype], echo)
        results, notes = [], []
        torch_dtype = DTYPES[dtype]
        jobs = [(op, None) for op in chosen] + [(op, list(benches)) for op, benches in (extra or {}).items()]
        for index, (op, benches) in enumerate(jobs):
            # With a deadline, each op gets a fair share of what is left (time a fast op leaves passes on), so
            # that a slow op cannot starve the ones after it; its remaining (larger) cases are then skipped.
            share_end = None
            if deadline is not None:
                share_end = time.monotonic() + max(0.0, deadline - (time.monotonic() - started)) / (len(jobs) - index)
            if op in registry.LOAD_ERRORS and op not in cases:
                results.append(_op_row(op, device, dtype, "error", registry.LOAD_ERRORS[op]))
                echo(f"{op}: {registry.LOAD_ERRORS[op]}")
                continue
            echo(f"{op}:")
            refused = registry.timed_backends(op, device)[1]
            source = benches if benches is not None else _iterate(op, cases[op], device, torch_dtype, preset, modes)
            produced = 0
            iterator = iter(source)
            while True:
                if share_end is not None and time.monotonic() > share_end:
                    results.append(_op_row(op, device, dtype, "skipped", BUDGET_REASON))
                    echo(f"  {BUDGET_REASON}")
                    break
                try:
                    bench = next(iterator)
                except StopIteration:
                    break
                except Exception as error:  # noqa: BLE001 - the factory itself failed
                    results.append(_op_row(op, device, dtype, "error", f"case factory failed: {one_line(error)}"))
                    echo(f"  case factory failed: {one_line(error)}")
                    break
                if bench.mode in MODES and bench.mode not in modes:
                    continue
                produced += 1
                results.extend(time_bench(bench, device, dtype, ceilings, refused, echo))
                del bench
                _free(device)
            if produced == 0 and not any(r["op"] == op for r in results):
                results.append(_op_row(op, device, dtype, "skipped", "no cases for these sizes and modes"))
        if ops is None and extra is None:
            missing = ops_without_cases({r["op"] for r in results} | set(cases))
            if missing:
                notes.append("modules of fastgan.ops without a benchmark case: " + ", ".join(missing))
        _remeasure_ceilings(ceilings, device, DTYPES[dtype], results, echo)
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        busy = _load_note(meta)
        if busy:
            notes.append(busy)
        report = Report(meta=meta, ceilings=ceilings, results=results, notes=notes)
        report.markdown = render_markdown(report)
        if write:
            report.files = write_report(report, out, name=name, plots=plots)
        return report
    finally:
        timing.set_profile("quick" if previous_profile["repeats"] < 10 else "normal")
        registry.set_compile(True)


def _load_note(meta):
    """A warning when other processes competed for the CPU during the run (timings then mean little)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    meta["load_average_end"] = round(load, 2)
    cores = os.cpu_count() or 1
    worst = max([load] + list(meta.get("load_average", [])[:1]))
    if worst > cores:
        return (f"the machine was busy: load average up to {worst:.1f} on {cores} cores during this run; CPU timings "
                f"(and GPU launch overheads) are inflated and noisy")
    return None


def _op_row(op, device, dtype, status, reason):
    bench = Bench(op=op, label="-", mode="-", run={})
    row = _row(bench, "-", device, dtype)
    row.update(status=status, reason=reason, size=None)
    return row


def _free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------- reports


def _threads(meta):
    n = meta.get("threads")
    return f"{n} thread{'' if n == 1 else 's'}"


def fmt_ms(value):
    if value is None or not math.isfinite(value):
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def fmt_num(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_mb(value):
    if value is None:
        return "-"
    if value < 0.01:
        return "<0.01"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


class _Footnotes:
    def __init__(self):
        self.reasons = {}

    def cell(self, reason, status):
        text = ("error: " if status == "error" else "") + (reason or "unknown")
        number = self.reasons.setdefault(text, len(self.reasons) + 1)
        return f"{'ERR' if status == 'error' else 'n/a'} [{number}]"

    def lines(self):
        return [f"[{n}] {text}" for text, n in self.reasons.items()]


def _group(results):
    groups = {}
    for row in results:
        groups.setdefault((row["op"], row["label"], row["mode"]), {})[row["impl"]] = row
    return groups


def _is_kernel(row):
    return row["op"] != E2E_OP and row.get("baseline", "eager") == "eager"


def kernel_table(results, footnotes, device_type):
    rows = [r for r in results if _is_kernel(r) and r["impl"] != "-"]
    if not rows:
        return []
    impls = list(IMPLEMENTATIONS) + sorted({r["impl"] for r in rows} - set(IMPLEMENTATIONS))
    header = (["op", "size", "mode"] + [f"{i} ms" for i in impls]
              + ["best", "vs eager", "vs compile", "GB/s", "% copy BW", "% roofline", "peak MB (best/eager)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (op, label, mode), by_impl in _group(rows).items():
        cells = [op, label, mode]
        for impl in impls:
            row = by_impl.get(impl)
            if row is None:
                cells.append("")
            elif row["status"] == "ok":
                cells.append(fmt_ms(row["median_ms"]))
            else:
                cells.append(footnotes.cell(row["reason"], row["status"]))
        fast = [r for i, r in by_impl.items() if i in BACKEND_NAMES and r["status"] == "ok"]
        best = min(fast, key=lambda r: r["median_ms"]) if fast else None
        eager = by_impl.get("eager")
        if best is None:
            cells += ["-"] * 7
        else:
            peak = (f"{fmt_mb(best['peak_mem_mb'])} / {fmt_mb(eager['peak_mem_mb'])}"
                    if eager is not None and eager["status"] == "ok" else fmt_mb(best["peak_mem_mb"]))
            cells += [best["impl"], fmt_ratio(best["speedup_vs_baseline"]), fmt_ratio(best["speedup_vs_compile"]),
                      fmt_num(best["gbps"], 1), fmt_num(best["pct_bw"], 0), fmt_num(best["pct_roofline"], 0), peak]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def e2e_table(results, footnotes):
    rows = [r for r in results if r["op"] == E2E_OP and r["impl"] != "-"]
    if not rows:
        return []
    header = ["recipe / model", "step", "plain samples/s", "fastgan samples/s", "fastgan vs plain", "plain ms",
              "fastgan ms", "peak MB (fastgan/plain)", "fastgan uses"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (op, label, mode), by_impl in _group(rows).items():
        plain, fast = by_impl.get("plain"), by_impl.get("fastgan")

        def rate(row):
            if row is None:
                return "-"
            return fmt_num(row["samples_per_s"], 0) if row["status"] == "ok" else footnotes.cell(row["reason"],
                                                                                                 row["status"])

        ok = fast is not None and fast["status"] == "ok"
        pl_ok = plain is not None and plain["status"] == "ok"
        lines.append("| " + " | ".join([
            label, mode, rate(plain), rate(fast), fmt_ratio(fast["speedup_vs_baseline"]) if ok else "-",
            fmt_ms(plain["median_ms"]) if pl_ok else "-", fmt_ms(fast["median_ms"]) if ok else "-",
            (f"{fmt_mb(fast['peak_mem_mb'])} / {fmt_mb(plain['peak_mem_mb'])}" if ok and pl_ok else "-"),
            (fast or plain or {}).get("note", "")]) + " |")
    return lines


def generic_table(rows, footnotes):
    """Cases with their own implementations and baseline (e.g. penalty_methods): one column per implementation."""
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    baseline = rows[0]["baseline"]
    with_samples = any(r["samples"] for r in rows)
    header = (["case", "mode"] + [f"{i} ms" for i in impls] + ["best", f"vs {baseline}"]
              + (["best samples/s"] if with_samples else []) + ["note"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (op, label, mode), by_impl in _group(rows).items():
        cells = [label, mode]
        for impl in impls:
            row = by_impl.get(impl)
            cells.append("" if row is None else fmt_ms(row["median_ms"]) if row["status"] == "ok"
                         else footnotes.cell(row["reason"], row["status"]))
        rivals = [r for i, r in by_impl.items() if i != baseline and r["status"] == "ok"]
        best = min(rivals, key=lambda r: r["median_ms"]) if rivals else None
        cells += [best["impl"] if best else "-", fmt_ratio(best["speedup_vs_baseline"]) if best else "-"]
        if with_samples:
            cells.append(fmt_num(best["samples_per_s"], 0) if best else "-")
        cells.append(next((r["note"] for r in by_impl.values() if r.get("note")), ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report):
    meta, ceilings = report.meta, report.ceilings
    footnotes = _Footnotes()
    device_text = meta.get("gpu") or f"{meta.get('cpu')} ({_threads(meta)})"
    lines = [f"## fastgan bench: {device_text}", "",
             f"{meta['date']} · commit {meta['commit']}{' (uncommitted changes)' if meta.get('dirty') else ''} · "
             f"fastgan {meta['fastgan']} · torch {meta['torch']} · triton {meta['triton']} · CUDA {meta['cuda']}"
             + (f" · driver {meta['driver']}" if meta.get("driver") else "")
             + f" · {meta['dtype']} · sizes {meta['sizes']}" + (" · quick profile" if meta.get("quick") else ""),
             ""]
    if ceilings.get("copy_gbps"):
        readings = ""
        if ceilings.get("first") and ceilings.get("last"):
            first, last = ceilings["first"], ceilings["last"]
            readings = (f" (the higher of the readings before and after the cases: copy {first.get('copy_gbps') or 0:.1f}"
                        f" / {last.get('copy_gbps') or 0:.1f} GB/s, matmul {first.get('matmul_gflops') or 0:,.0f} / "
                        f"{last.get('matmul_gflops') or 0:,.0f} GFLOP/s)")
        lines.append(f"Measured ceilings: copy {ceilings['copy_gbps']:.1f} GB/s (read + write), matmul "
                     f"{ceilings.get('matmul_gflops', float('nan')):,.0f} GFLOP/s ({ceilings.get('matmul_dtype')}, "
                     f"{ceilings.get('matmul_size')}^3){readings}. Times are medians in ms; 'vs eager' and 'vs "
                     f"compile' are the best fastgan backend's speed-ups; GB/s and % use the case's minimal bytes.")
        lines.append("")
    table = kernel_table(report.results, footnotes, meta["device"])
    if table:
        lines += ["### Ops", ""] + table + [""]
    others = {}
    for row in report.results:
        if not _is_kernel(row) and row["op"] != E2E_OP and row["impl"] != "-":
            others.setdefault(row["op"], []).append(row)
    for op, rows in others.items():
        lines += [f"### {op} (vs {rows[0]['baseline']})", ""] + generic_table(rows, footnotes) + [""]
    table = e2e_table(report.results, footnotes)
    if table:
        lines += ["### End to end (samples/s: real samples the critic sees per second)", ""] + table + [""]
    op_rows = [r for r in report.results if r["impl"] == "-"]
    if op_rows:
        lines += ["### Not run", ""] + [f"- {r['op']}: {footnotes.cell(r['reason'], r['status'])}"
                                        for r in op_rows] + [""]
    notes = footnotes.lines()
    if notes:
        lines += ["Reasons:", ""] + [f"- {n}" for n in notes] + [""]
    over = [r for r in report.results if (r.get("pct_bw") or 0) > 100]
    if over and meta.get("device") == "cpu":
        llc = meta.get("llc_mb")
        lines.append(f"Note: {len(over)} measurements exceed 100% of the copy bandwidth: the copy is measured far above "
                     f"the last-level cache{f' ({llc:.0f} MB here)' if llc else ''}, and cases whose data fit in it run "
                     f"from cache, not DRAM.")
    for note in report.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines).rstrip() + "\n"


CSV_FIELDS = ["op", "label", "mode", "impl", "baseline", "status", "reason", "median_ms", "p20_ms", "p80_ms",
              "peak_mem_mb", "n", "bytes", "flops", "size", "gbps", "pct_bw", "gflops", "pct_flops", "pct_roofline",
              "samples", "samples_per_s", "speedup_vs_baseline", "speedup_vs_compile", "note", "device", "dtype"]
CSV_META = ["date", "commit", "device_name", "fastgan", "torch", "triton", "cuda", "sizes"]


def write_report(report, out=None, name=None, plots=True):
    folder = Path(out) if out is not None else default_out()
    folder = folder / report.meta["device_name"]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    sizes_tag = _slug(str(report.meta["sizes"]))[:40] or "custom"
    base = f"{(name + '_') if name else ''}{stamp}_{report.meta['dtype']}_{sizes_tag}"
    files = {}
    path = folder / f"{base}.json"
    with open(path, "w") as handle:
        json.dump(report.to_json(), handle, indent=1, default=str)
    files["json"] = str(path)
    path = folder / f"{base}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS + CSV_META, extrasaction="ignore")
        writer.writeheader()
        for row in report.results:
            writer.writerow({**row, **{k: report.meta.get(k) for k in CSV_META}})
    files["csv"] = str(path)
    path = folder / f"{base}.md"
    path.write_text(report.markdown)
    files["md"] = str(path)
    if plots:
        try:
            from fastgan.benchmark import plots as plotting
            files.update(plotting.plot_report(report, folder / base))
        except Exception as error:  # noqa: BLE001 - a plotting problem must not lose the numbers
            report.notes.append(f"plots not written: {one_line(error)}")
    return files


def load_report(path):
    with open(path) as handle:
        data = json.load(handle)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a fastgan bench results file")
    return Report(meta=data["meta"], ceilings=data["ceilings"], results=data["results"], notes=data.get("notes", []))


def main(argv=None):
    """`python -m fastgan.benchmark.suite ...` is `fastgan bench ...`."""
    from fastgan.cli import main as cli_main
    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
