"""Training figures as PNG files: 2D scatter, image grid, loss curves.

Figures are drawn with ``matplotlib.figure.Figure`` and its Agg canvas directly, never through pyplot: no
``plt.show()``, no global backend switch, no figure left open in the caller's process.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _prepare(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def save_scatter(samples, real, path, title: str | None = None, max_points: int = 5000, groups=None,
                 group_labels=None) -> Path:
    """Scatter of generated 2D ``samples`` [N, 2] (green) over ``real`` [M, 2] (orange), as gan_toy.py draws them.

    The axes are fixed by the real data (plus a margin), so frames of a run line up; at most ``max_points`` of
    each set are drawn. ``groups`` ([N] integers, e.g. the MIX+GAN component that drew each sample) colours the
    generated points by group instead, with ``group_labels[g]`` in the legend.
    """
    s, r = _numpy(samples, "samples"), _numpy(real, "real")
    for a, nm in ((s, "samples"), (r, "real")):
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{nm} must have shape [N, 2], got {a.shape}")
    if groups is not None:
        groups = np.asarray(_numpy(groups, "groups") if isinstance(groups, torch.Tensor) else groups).astype(int)
        if groups.shape != (len(s),):
            raise ValueError(f"groups must have one entry per sample ({len(s)}), got shape {groups.shape}")
        groups = groups[:max_points]
    s, r = s[:max_points], r[:max_points]
    fig = _figure((5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(r[:, 0], r[:, 1], s=2, c="tab:orange", alpha=0.5, label="real", linewidths=0)
    if groups is None:
        ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:green", alpha=0.5, label="generated", linewidths=0)
    else:
        colours = ["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
                   "tab:olive", "tab:cyan", "black"]  # tab10 without the real points' orange
        for g in np.unique(groups):
            label = group_labels[g] if group_labels is not None and g < len(group_labels) else f"group {g}"
            pts = s[groups == g]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c=colours[g % len(colours)], alpha=0.6, label=label,
                       linewidths=0)
    if len(r):
        lo, hi = r.min(0), r.max(0)
        pad = 0.15 * float((hi - lo).max()) + 1e-3
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = _prepare(path)
    fig.savefig(path, format="png")
    return path


def image_grid(images, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile ``images`` [N, C, H, W] (or [N, H, W]) in [-1, 1] into a uint8 array [rows*H', cols*W', C]."""
    x = _numpy(images, "images")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"images must have shape [N, C, H, W] with C in (1, 3) and N > 0, got {x.shape}")
    n, c, h, w = x.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    elif nrow < 1:
        raise ValueError(f"nrow must be positive, got {nrow}")
    ncol, nrows = nrow, math.ceil(n / nrow)
    x = np.nan_to_num(x, nan=-1.0)
    x = ((np.clip(x, -1.0, 1.0) + 1.0) * 127.5 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, c), 255, np.uint8)
    for i in range(n):
        rr, cc = divmod(i, ncol)
        y0, x0 = padding + rr * (h + padding), padding + cc * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = x[i]
    return grid


def save_image_grid(images, path, nrow: int | None = None, padding: int = 2, scale: int | None = None) -> Path:
    """Save ``images`` [N, C, H, W] in [-1, 1] as one PNG grid of ``nrow`` images per row (default ~sqrt(N)).

    Small images are enlarged by an integer nearest-neighbour ``scale`` (default: enough to make each at least
    32 pixels) so that 8x8 digits stay legible.
    """
    from PIL import Image

    grid = image_grid(images, nrow, padding)
    h = _numpy(images, "images").shape[-2]
    if scale is None:
        scale = max(1, math.ceil(32 / h))
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)  # uint8 [H, W] -> L, [H, W, 3] -> RGB
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = _prepare(path)
    img.save(path, format="PNG")
    return path


_STEP_KEYS = ("step", "iteration", "iter", "it", "epoch")


def read_metrics(metrics: str | os.PathLike | Iterable[dict]) -> list[dict]:
    """Records from a JSON-lines file (lines that do not parse, such as a half-written last line, are skipped) or
    from an iterable of dicts."""
    if isinstance(metrics, (str, os.PathLike)):
        records = []
        with open(metrics, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
        return records
    return [r for r in metrics if isinstance(r, dict)]


def _flatten(rec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = float(v)
    return out


def component_series(key: str) -> tuple[str, int] | None:
    """(name, index) for a per-component series key ``name.<index>`` (e.g. ``g_weight.3``), else None."""
    name, dot, index = key.rpartition(".")
    return (name, int(index)) if dot and name and index.isdigit() else None


def component_groups(keys: Iterable[str]) -> dict[str, list[tuple[int | None, str]]]:
    """{name: [(index, key), ...]} gathering per-component keys ``name.0``, ``name.1``, ... under ``name``, sorted
    by index; any other key stands alone as {key: [(None, key)]}. Insertion order of first appearance."""
    groups: dict[str, list[tuple[int | None, str]]] = {}
    for key in keys:
        name, index = component_series(key) or (key, None)
        groups.setdefault(name, []).append((index, key))
    return {name: sorted(members, key=lambda m: -1 if m[0] is None else m[0]) for name, members in groups.items()}


def save_loss_curves(metrics, path, max_panels: int = 12) -> Path:
    """Plot every numeric series in ``metrics`` (a ``metrics.jsonl`` path or a list of dicts) against the step.

    The x axis is the first of ``step``/``iteration``/``iter``/``it``/``epoch`` present in a record, else its
    index. Each key gets a panel (nested dicts become ``a.b`` keys), except per-component series ``name.0``,
    ``name.1``, ... (MIX+GAN's mixture weights), which share one panel ``name`` with a line per component; keys
    with "loss" in their name come first. Series may be sparse (evaluation metrics every k steps). Raises
    ValueError if there is nothing to plot.
    """
    records = read_metrics(metrics)
    series: dict[str, tuple[list, list]] = {}
    for i, rec in enumerate(records):
        flat = _flatten(rec)
        x = next((flat[k] for k in _STEP_KEYS if k in flat), float(i))
        for k, v in flat.items():
            if k in _STEP_KEYS:
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(v)
    if not series:
        src = str(metrics) if isinstance(metrics, (str, os.PathLike)) else "the records"
        raise ValueError(f"no numeric metrics to plot in {src}")
    panels = component_groups(series)  # panel title -> [(component index, series key)]
    titles = sorted(panels, key=lambda k: ("loss" not in k.lower(), k))[:max_panels]
    ncols = min(3, len(titles))
    nrows = math.ceil(len(titles) / ncols)
    fig = _figure((4 * ncols, 2.6 * nrows))
    for j, title in enumerate(titles):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        members = panels[title]
        for index, k in members:
            xs, ys = series[k]
            ax.plot(xs, ys, lw=1, marker="." if len(xs) < 50 else None, label=None if index is None else str(index))
        if len(members) > 1 and len(members) <= 10:
            ax.legend(fontsize=6, ncol=min(5, len(members)), loc="best")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = _prepare(path)
    fig.savefig(path, format="png")
    return path
