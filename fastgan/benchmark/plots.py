"""PNG plots of a benchmark report (matplotlib, headless): time vs size per backend, speed-up bars per op."""
import math

from fastgan.benchmark.registry import BACKEND_NAMES, IMPLEMENTATIONS
from fastgan.benchmark.suite import _threads

E2E_OP = "end_to_end"
COLORS = {"eager": "#555555", "compile": "#8c564b", "cpp": "#1f77b4", "cuda": "#2ca02c", "triton": "#d62728",
          "plain": "#555555", "fastgan": "#1f77b4"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _title(report):
    meta = report.meta
    device = meta.get("gpu") or f"{meta.get('cpu')} ({_threads(meta)})"
    return f"{device} · {meta.get('dtype')} · torch {meta.get('torch')} · {meta.get('date', '')[:10]}"


def plot_report(report, base):
    """Write <base>_time.png and <base>_speedup.png; returns {'time_png': path, 'speedup_png': path}."""
    files = {}
    path = plot_time_vs_size(report, f"{base}_time.png")
    if path:
        files["time_png"] = path
    path = plot_speedups(report, f"{base}_speedup.png")
    if path:
        files["speedup_png"] = path
    return files


def plot_time_vs_size(report, path):
    rows = [r for r in report.results if r["op"] != E2E_OP and r["status"] == "ok" and r.get("size")]
    panels = sorted({(r["op"], r["mode"]) for r in rows}, key=lambda p: (p[0], ("fwd", "fwd_bwd", "full").index(p[1])
                                                                           if p[1] in ("fwd", "fwd_bwd", "full") else 9))
    if not panels:
        return None
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, (op, mode) in zip(axes.flat, panels):
        sub = [r for r in rows if r["op"] == op and r["mode"] == mode]
        impls = [i for i in IMPLEMENTATIONS if any(r["impl"] == i for r in sub)]
        impls += sorted({r["impl"] for r in sub} - set(impls))
        for impl in impls:
            points = sorted((r["size"], r["median_ms"]) for r in sub if r["impl"] == impl)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=impl, color=COLORS.get(impl))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{op} · {mode}", fontsize=10)
        ax.set_xlabel("elements")
        ax.set_ylabel("median ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"time vs size · {_title(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def speedup_groups(results):
    """{op: [(category, {impl: speed-up over the baseline})]} for the bars."""
    groups = {}
    for row in results:
        if row["status"] != "ok" or row.get("speedup_vs_baseline") is None or row["impl"] in ("eager", "plain"):
            continue
        key = f"{row['label']}\n{row['mode']}".replace(" ", "\n") if row["op"] == E2E_OP else f"{row['label']}\n{row['mode']}"
        entries = groups.setdefault(row["op"], {})
        entries.setdefault(key, {})[row["impl"]] = row["speedup_vs_baseline"]
    return {op: list(entries.items()) for op, entries in groups.items()}


def plot_speedups(report, path, groups=None, title=None):
    groups = speedup_groups(report.results) if groups is None else groups
    if not groups:
        return None
    plt = _pyplot()
    ops = sorted(groups, key=lambda op: (op == E2E_OP, op))
    fig, axes = plt.subplots(len(ops), 1, figsize=(min(40, max(6, 0.8 * max(len(groups[o]) for o in ops) + 2)),
                                                   3.2 * len(ops)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops):
        cats = groups[op]
        impls = [i for i in ("compile",) + BACKEND_NAMES + ("fastgan",) if any(i in v for _, v in cats)]
        impls += sorted({i for _, v in cats for i in v} - set(impls))
        width = 0.8 / max(1, len(impls))
        for k, impl in enumerate(impls):
            xs = [i + (k - (len(impls) - 1) / 2) * width for i in range(len(cats))]
            ys = [v.get(impl, 0.0) for _, v in cats]
            ax.bar(xs, ys, width=width, label=impl, color=COLORS.get(impl))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c for c, _ in cats], fontsize=7 if len(cats) <= 12 else 6)
        ax.set_ylabel("speed-up vs " + ("plain" if op == E2E_OP else "eager"))
        ax.set_title(op, fontsize=10)
        ax.legend(fontsize=8, ncol=len(impls))
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title or f"speed-up over eager PyTorch · {_title(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
