"""Mode coverage and sample quality on mixtures of Gaussians (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al.
2018).

A sample is *high quality* when it lies within 3 sigma of its nearest mode centre (VEEGAN's rule, kept by PacGAN).
A mode is *covered* when at least ``min_count`` high-quality samples are nearest to it. PacGAN evaluated 2,500
samples on 25 modes and counted a mode as lost below 20 samples, a fifth of the 100 a perfect generator puts there;
our default keeps that fraction for any sample count: ``min_count = ceil(N / K / 5)`` (80 for 10,000 samples on
``grid25``, 250 on ``ring8``). (PacGAN's threshold is quoted from memory of the paper's text, not from its code.)

For an isotropic 2D Gaussian, P(|x - mu| <= 3 sigma) = 1 - exp(-9/2) = 98.9%: real data scores about 0.99.
"""

from __future__ import annotations

import math

import numpy as np
import torch

HIGH_QUALITY_SIGMAS = 3.0
MIN_COUNT_FRACTION = 0.2  # of the expected per-mode count N / K


def _as_points(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.ndim != 2 or t.shape[1] != 2 or len(t) == 0:
        raise ValueError(f"{name} must have shape [N, 2] with N > 0, got {tuple(t.shape)}")
    return t.to(device="cpu", dtype=torch.float64)


def default_min_count(n_samples: int, n_modes: int) -> int:
    """PacGAN's threshold as a fraction: a fifth of the samples a perfect generator puts in each mode (>= 1)."""
    return max(1, math.ceil(MIN_COUNT_FRACTION * n_samples / n_modes))


def mode_metrics(samples, centres, sigma: float, min_count: int | None = None) -> dict:
    """Mode coverage of 2D ``samples`` [N, 2] on modes ``centres`` [K, 2] of stddev ``sigma``.

    Returns ``{"modes_covered": int, "n_modes": K, "high_quality_fraction": float}``. ``min_count`` defaults to
    ``ceil(N / K / 5)``. Non-finite samples count as low quality.
    """
    x = _as_points(samples, "samples")
    c = _as_points(centres, "centres")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if min_count is None:
        min_count = default_min_count(len(x), len(c))
    elif isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive int or None, got {min_count!r}")
    finite = torch.isfinite(x).all(1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))
    d = torch.cdist(x, c)  # [N, K]
    dmin, nearest = d.min(1)
    hq = (dmin <= HIGH_QUALITY_SIGMAS * sigma) & finite
    counts = torch.bincount(nearest[hq], minlength=len(c))
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "n_modes": int(len(c)),
        "high_quality_fraction": float(hq.double().mean()),
    }
