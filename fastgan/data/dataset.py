"""``Dataset``: one in-memory sample source with reproducible random batches, and ``load_dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch

from . import images as _images
from . import toy as _toy

#: Built-in names, and the aliases gan_toy.py uses for them.
KNOWN_DATASETS = ("ring8", "grid25", "swissroll", "digits")
ALIASES = {"8gaussians": "ring8", "25gaussians": "grid25"}

#: Size of ``.tensor`` for the 2D sets when ``n`` is not given (gan_toy.py's 25gaussians set has 100,000 points).
DEFAULT_TOY_SIZE = 100_000


class Dataset:
    """An in-memory dataset.

    Attributes:
        name: the built-in name or the path it was loaded from.
        kind: ``"2d"`` (points [N, 2]) or ``"image"`` (images [N, C, H, W] in [-1, 1]).
        tensor: all samples, float32 (for images stored as uint8 it is converted on first access and cached).
        shape: the shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        centres, sigma: mode centres [K, 2] and per-mode stddev of ``ring8``/``grid25`` (else None).
        labels: int64 class labels [N] for ``digits`` (else None).
        seed: the seed it was built with; ``batches`` without a generator derives its seed from it (``sample``
            without one uses torch's global RNG).

    ``sample(n, generator)`` draws ``n`` samples: fresh ones from the distribution for the built-in 2D sets (as
    gan_toy.py does), rows of ``tensor`` chosen uniformly with replacement otherwise. ``batches(batch_size,
    generator)`` yields random batches forever: fresh samples for the 2D sets, shuffled epochs otherwise.
    """

    def __init__(self, name: str, kind: str, data: torch.Tensor, *, labels: torch.Tensor | None = None,
                 centres: torch.Tensor | None = None, sigma: float | None = None,
                 sampler: Callable[[int, torch.Generator | None], torch.Tensor] | None = None, seed: int = 0):
        if kind not in ("2d", "image"):
            raise ValueError(f"kind must be '2d' or 'image', got {kind!r}")
        self.name = name
        self.kind = kind
        self._data = data  # float32, or uint8 images in 0..255
        self._tensor = data if data.dtype == torch.float32 else None
        self.labels = labels
        self.centres = centres
        self.sigma = sigma
        self._sampler = sampler
        self.seed = seed

    @property
    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            self._tensor = self._to_float(self._data)
        return self._tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape[1:])

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, kind={self.kind!r}, n={len(self)}, shape={self.shape})"

    @staticmethod
    def _to_float(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(127.5).sub_(1.0)
        return x

    def _default_generator(self) -> torch.Generator:
        # A stream distinct from the one that drew ``tensor`` (same seed would replay it for the 2D sets).
        return torch.Generator().manual_seed((self.seed * 6364136223846793005 + 1442695040888963407) % 2**63)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples, float32 [n, *shape], on the CPU."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        if self._sampler is not None:
            return self._sampler(n, generator)
        idx = torch.randint(len(self._data), (n,), generator=generator)
        return self._to_float(self._data[idx])

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
        """Random batches [batch_size, *shape] forever.

        ``generator`` defaults to a CPU generator seeded with ``self.seed``, so two calls give the same stream.
        Finite data is visited in shuffled epochs (every sample once per epoch, epochs run into each other).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if generator is None:
            generator = self._default_generator()
        if self._sampler is not None:
            while True:
                yield self._sampler(batch_size, generator).to(device)
        n = len(self._data)
        order = torch.empty(0, dtype=torch.long)
        while True:
            while len(order) < batch_size:
                order = torch.cat([order, torch.randperm(n, generator=generator)])
            idx, order = order[:batch_size], order[batch_size:]
            yield self._to_float(self._data[idx]).to(device)


def _subset(data: torch.Tensor, labels: torch.Tensor | None, n: int | None, seed: int):
    if n is None or n >= len(data):
        return data, labels
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data[idx], (labels[idx] if labels is not None else None)


def load_dataset(name_or_path: str | Path, image_size: int | None = None, n: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load a built-in dataset by name or a dataset from a path.

    Args:
        name_or_path: ``ring8`` (alias ``8gaussians``), ``grid25`` (``25gaussians``), ``swissroll``, ``digits``;
            or a folder of png/jpg images; or an ``.npy`` file ([N, 2] points or images).
        image_size: square side of image datasets (digits: None = 8, or e.g. 16/32 by bilinear resizing;
            folders: None = the short side of the first image). Ignored for 2D data.
        n: number of samples kept in ``.tensor`` (2D sets: default 100,000 drawn with ``seed``; others: a random
            subset of that size, default all).
        seed: seeds the 2D draws, the subset, and (through a derived seed) the default batch generator.

    Raises:
        ValueError: unknown name (the message lists the known ones), missing path, empty folder, unreadable file.
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if isinstance(name_or_path, Path):
        return _load_path(name_or_path, image_size, n, seed)
    if not isinstance(name_or_path, str):
        raise ValueError(f"name_or_path must be a dataset name or a path, got {type(name_or_path).__name__}")
    # A built-in name wins over a file of the same name in the working directory; write ./digits for the file.
    name = ALIASES.get(name_or_path.lower(), name_or_path.lower())
    if name in _toy.TOY_SETS:
        sampler, centres_fn, sigma = _toy.TOY_SETS[name]
        g = torch.Generator().manual_seed(seed)
        data = sampler(DEFAULT_TOY_SIZE if n is None else n, g)
        return Dataset(name, "2d", data, centres=centres_fn() if centres_fn else None, sigma=sigma,
                       sampler=sampler, seed=seed)
    if name == "digits":
        x, labels = _images.load_digits_images(image_size)
        x, labels = _subset(x, labels, n, seed)
        return Dataset("digits", "image", x, labels=labels, seed=seed)
    if _images.path_like(name_or_path):
        return _load_path(Path(name_or_path), image_size, n, seed)
    known = ", ".join(KNOWN_DATASETS + tuple(ALIASES))
    raise ValueError(f"unknown dataset {name_or_path!r}: known names are {known}, "
                     "or give a folder of images or an .npy file")


def _load_path(path: Path, image_size: int | None, n: int | None, seed: int) -> Dataset:
    if not path.exists():
        raise ValueError(f"dataset path {str(path)!r} does not exist")
    if path.is_dir():
        kind, data = "image", _images.load_image_folder(path, image_size)
    elif path.suffix.lower() == ".npy":
        kind, data = _images.load_npy(path, image_size)
    else:
        raise ValueError(f"dataset path {str(path)!r} is neither a folder of images nor an .npy file")
    data, _ = _subset(data, None, n, seed)
    return Dataset(str(path), kind, data, seed=seed)
