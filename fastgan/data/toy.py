"""The 2D toy distributions of the WGAN-GP paper (Gulrajani et al., 2017).

The constants reproduce ``inf_train_gen`` in the paper's reference code, ``gan_toy.py``
(github.com/igul222/improved_wgan_training), as we read it:

* ``8gaussians`` (our ``ring8``): centres ``scale * d`` with ``scale = 2`` and ``d`` the eight unit directions
  (1,0), (-1,0), (0,1), (0,-1) and the four diagonals (±1/sqrt(2), ±1/sqrt(2)); each point is a centre plus
  ``0.02 * randn(2)``; the whole set is then divided by ``1.414`` ("stdev" in the reference's comment).
* ``25gaussians`` (our ``grid25``): centres ``(2x, 2y)`` for ``x, y in range(-2, 3)``, noise ``0.05 * randn(2)``,
  then divided by ``2.828``. The reference builds a fixed set of 100,000 points (4,000 per mode) and cycles through
  it; we draw from the same mixture, which has the same distribution.
* ``swissroll``: ``sklearn.datasets.make_swiss_roll(n, noise=0.25)``, columns ``[0, 2]``, divided by ``7.5``
  ("stdev plus a little").

The mode centres and the per-mode standard deviation are exposed *after* the division, in the units the samples
have, because that is what the mode-coverage metrics (``fastgan.metrics.mode_metrics``) need.
"""

from __future__ import annotations

import math

import torch

# --- constants from gan_toy.py ------------------------------------------------------------------------------------
RING8_RADIUS = 2.0  # ``scale = 2.`` in gan_toy.py
RING8_NOISE = 0.02  # ``np.random.randn(2) * .02``
RING8_DIVISOR = 1.414  # ``dataset /= 1.414  # stdev``

GRID25_SPACING = 2.0  # ``point[0] += 2*x`` for x in range(-2, 3)
GRID25_NOISE = 0.05  # ``np.random.randn(2) * 0.05``
GRID25_DIVISOR = 2.828  # ``dataset /= 2.828  # stdev``

SWISSROLL_NOISE = 0.25  # ``make_swiss_roll(n_samples=BATCH_SIZE, noise=0.25)``
SWISSROLL_DIVISOR = 7.5  # ``data /= 7.5  # stdev plus a little``

# --- the same, in sample units (after the division) -------------------------------------------------------------
RING8_SIGMA = RING8_NOISE / RING8_DIVISOR
GRID25_SIGMA = GRID25_NOISE / GRID25_DIVISOR


def ring8_centres() -> torch.Tensor:
    """The 8 mode centres of ``ring8`` in sample units, shape [8, 2] (float32)."""
    d = 1.0 / math.sqrt(2.0)
    dirs = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0), (d, d), (d, -d), (-d, d), (-d, -d)]
    return torch.tensor(dirs, dtype=torch.float64).mul(RING8_RADIUS / RING8_DIVISOR).float()


def grid25_centres() -> torch.Tensor:
    """The 25 mode centres of ``grid25`` in sample units, shape [25, 2] (float32)."""
    pts = [(GRID25_SPACING * x, GRID25_SPACING * y) for x in range(-2, 3) for y in range(-2, 3)]
    return torch.tensor(pts, dtype=torch.float64).div(GRID25_DIVISOR).float()


def _mixture(centres: torch.Tensor, sigma: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    # Uniform choice of a centre, then isotropic Gaussian noise: what gan_toy.py does with random.choice + randn.
    idx = torch.randint(len(centres), (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    return centres[idx] + sigma * noise


def sample_ring8(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` fresh samples of ``ring8``, shape [n, 2] float32."""
    return _mixture(ring8_centres(), RING8_SIGMA, n, generator)


def sample_grid25(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` fresh samples of ``grid25``, shape [n, 2] float32."""
    return _mixture(grid25_centres(), GRID25_SIGMA, n, generator)


def sample_swissroll(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` fresh samples of ``swissroll``, shape [n, 2] float32.

    Drawn by scikit-learn exactly as gan_toy.py does; its ``random_state`` is taken from ``generator`` so that a
    seeded torch generator makes the stream reproducible.
    """
    from sklearn.datasets import make_swiss_roll

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    pts, _ = make_swiss_roll(n_samples=n, noise=SWISSROLL_NOISE, random_state=seed)
    return torch.from_numpy(pts[:, [0, 2]] / SWISSROLL_DIVISOR).float()


#: name -> (sampler, centres or None, sigma or None)
TOY_SETS = {
    "ring8": (sample_ring8, ring8_centres, RING8_SIGMA),
    "grid25": (sample_grid25, grid25_centres, GRID25_SIGMA),
    "swissroll": (sample_swissroll, None, None),
}
