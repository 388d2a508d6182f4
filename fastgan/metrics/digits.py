"""Sample quality for GANs trained on scikit-learn's digits, judged by a small classifier trained on the real ones.

The classifier (a few-layer conv net, ~0.1 M parameters) is trained once per resolution on all 1,797 real digits,
with a fixed seed, in a few seconds on a CPU, and cached as a state dict in ``cache_dir`` (default
``$FASTGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastgan``, else ``~/.cache/fastgan``), keyed by resolution and
``CLASSIFIER_VERSION``. Bump the version whenever the architecture or the training changes.

``digits_metrics`` reports, for generated digits:

* ``classes_covered``: classes (of 10) predicted for at least ``min_count`` samples; ``min_count`` defaults to a
  fifth of the per-class count of a uniform generator, ``ceil(N / 10 / 5)`` (the rule of ``mode_metrics``);
* ``class_kl``: KL(p || uniform) = log 10 - H(p) of the predicted class histogram p, in nats: 0 for a balanced
  generator, log 10 = 2.30 for one that makes a single class;
* ``frechet_distance``: Frechet distance between Gaussians fitted to the classifier's penultimate features of the
  samples and of all real digits (an FID with a digits classifier in place of Inception).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .frechet import frechet_distance, gaussian_stats

CLASSIFIER_VERSION = "v1"
N_CLASSES = 10
FEATURE_DIM = 128
_TRAIN_EPOCHS = 15  # ~98% held-out accuracy at 8x8 and 32x32 (30 epochs: 98.5%), 2-4 s on 2 CPU cores
_TRAIN_SEED = 0

_memory_cache: dict = {}


def default_cache_dir() -> Path:
    env = os.environ.get("FASTGAN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fastgan"


class DigitsClassifier(nn.Module):
    """images [B, 1, S, S] in [-1, 1] -> logits [B, 10]; ``features(x)`` gives the penultimate [B, 128].

    One full-resolution conv, then average pooling to 8x8 (digits hold no more detail than that, but artefacts at
    higher resolution still register through the conv and ReLU before the pooling), two convs to 4x4, a 128-wide
    fully connected layer (the feature space of the Frechet distance) and the class layer.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(8),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 8x8 -> 4x4
            nn.Flatten(),
            nn.Linear(64 * 16, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _real_digits(image_size: int):
    from ..data.images import load_digits_images

    return load_digits_images(None if image_size == 8 else image_size)


def train_digits_classifier(image_size: int) -> DigitsClassifier:
    """Train the classifier on all real digits at ``image_size`` (deterministic for a given torch build)."""
    x, y = _real_digits(image_size)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(_TRAIN_SEED)
        model = DigitsClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(_TRAIN_SEED)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, _TRAIN_EPOCHS * math.ceil(len(x) / 64))
        model.train()
        for _ in range(_TRAIN_EPOCHS):
            for idx in torch.randperm(len(x), generator=g).split(64):
                xb = x[idx]
                # Light noise keeps the classifier from relying on exact real pixel values, which generated digits
                # never have.
                xb = (xb + 0.1 * torch.randn(xb.shape, generator=g)).clamp(-1, 1)
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return model.eval()


def digits_classifier(image_size: int, cache_dir: str | Path | None = None) -> DigitsClassifier:
    """The classifier for ``image_size``, from the in-process cache, the disk cache, or trained (and cached)."""
    return _get(image_size, cache_dir)[0]


def _get(image_size: int, cache_dir):
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = (image_size, str(cache_dir.resolve()))
    if key in _memory_cache:
        return _memory_cache[key]
    from ..train.checkpoint import load_checkpoint, save_checkpoint  # lazy: fastgan.train may import metrics

    path = cache_dir / f"digits_classifier_{image_size}px_{CLASSIFIER_VERSION}.pt"
    model = None
    if path.exists():
        try:
            model = DigitsClassifier()
            model.load_state_dict(load_checkpoint(path)["model"])
        except (ValueError, KeyError, RuntimeError) as e:
            warnings.warn(f"ignoring unusable digits classifier cache {str(path)!r} ({e}); retraining",
                          stacklevel=3)
            model = None
    if model is None:
        model = train_digits_classifier(image_size)
        try:
            save_checkpoint(path, {"model": model.state_dict(), "version": CLASSIFIER_VERSION,
                                   "image_size": image_size})
        except OSError as e:  # a read-only cache only costs retraining next time
            warnings.warn(f"could not cache the digits classifier in {str(path)!r}: {e}", stacklevel=3)
    model.eval().requires_grad_(False)
    x, _ = _real_digits(image_size)
    with torch.no_grad():
        mu, cov = gaussian_stats(model.features(x).double().numpy())
    _memory_cache[key] = (model, mu, cov)
    return _memory_cache[key]


def digits_metrics(samples: torch.Tensor, cache_dir: str | Path | None = None, min_count: int | None = None,
                   batch_size: int = 1000) -> dict:
    """Class coverage, class balance and Frechet distance of generated digits ``samples`` [N, 1, S, S] in [-1, 1].

    Returns ``{"classes_covered": int (of 10), "class_kl": float, "frechet_distance": float}`` (see the module
    docstring). Runs on the samples' device; N >= 2.
    """
    x = torch.as_tensor(samples).detach()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3] or x.shape[2] < 4 or len(x) < 2:
        raise ValueError(f"samples must be greyscale digits [N, 1, S, S] (or [N, S, S]) with N >= 2 and S >= 4, "
                         f"got {tuple(x.shape)}")
    if min_count is None:
        min_count = max(1, math.ceil(0.2 * len(x) / N_CLASSES))
    elif isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive int or None, got {min_count!r}")
    model, mu_real, cov_real = _get(int(x.shape[-1]), cache_dir)
    model = model.to(x.device)
    feats, preds = [], []
    with torch.no_grad():
        for xb in x.float().nan_to_num(0.0).split(batch_size):
            f = model.features(xb)
            feats.append(f.double().cpu())
            preds.append(model.head(f).argmax(1).cpu())
    model.cpu()
    counts = torch.bincount(torch.cat(preds), minlength=N_CLASSES).double()
    p = counts / counts.sum()
    nz = p > 0
    kl = float((p[nz] * torch.log(p[nz] * N_CLASSES)).sum())
    mu, cov = gaussian_stats(torch.cat(feats).numpy())
    return {
        "classes_covered": int((counts >= min_count).sum()),
        "class_kl": max(kl, 0.0),
        "frechet_distance": frechet_distance(mu, cov, mu_real, cov_real),
    }
