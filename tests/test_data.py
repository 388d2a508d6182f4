"""fastgan.data: the built-in sets, folders and .npy files, sampling, and the errors."""

import math

import numpy as np
import pytest
import torch

from fastgan.data import load_dataset
from fastgan.data import toy


@pytest.mark.parametrize("name", ["ring8", "grid25", "swissroll"])
def test_toy_shapes_and_determinism(name):
    a = load_dataset(name, n=3000, seed=1)
    b = load_dataset(name, n=3000, seed=1)
    c = load_dataset(name, n=3000, seed=2)
    assert a.kind == "2d" and a.shape == (2,) and a.name == name
    assert a.tensor.shape == (3000, 2) and a.tensor.dtype == torch.float32
    assert torch.equal(a.tensor, b.tensor)
    assert not torch.equal(a.tensor, c.tensor)
    assert torch.isfinite(a.tensor).all()
    # gan_toy.py divides each set by roughly its standard deviation
    assert 0.7 < float(a.tensor.std(0).mean()) < 1.3
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(a.sample(7, g1), b.sample(7, g2))
    it1, it2 = a.batches(33), b.batches(33)
    for _ in range(3):
        x = next(it1)
        assert x.shape == (33, 2)
        assert torch.equal(x, next(it2))


def test_ring8_geometry():
    d = load_dataset("ring8", n=4000)
    assert d.centres.shape == (8, 2)
    # centres at radius 2 / 1.414, including the diagonals
    assert torch.allclose(d.centres.norm(dim=1), torch.full((8,), 2 / 1.414))
    assert torch.allclose(d.centres[4], torch.full((2,), 2 / math.sqrt(2) / 1.414), atol=1e-6)
    assert d.sigma == pytest.approx(0.02 / 1.414)
    dist = torch.cdist(d.tensor, d.centres).min(1).values
    # 2D Gaussian: |x - mu| / sigma is Rayleigh distributed, mean sigma * sqrt(pi / 2)
    assert float(dist.mean()) == pytest.approx(d.sigma * math.sqrt(math.pi / 2), rel=0.05)


def test_grid25_geometry():
    d = load_dataset("25gaussians", n=5000)  # gan_toy.py's name is an alias
    assert d.name == "grid25"
    assert d.centres.shape == (25, 2)
    xs = torch.unique(d.centres[:, 0])
    assert torch.allclose(xs, torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0]) / 2.828)
    assert d.sigma == pytest.approx(0.05 / 2.828)
    nearest = torch.cdist(d.tensor, d.centres).argmin(1)
    counts = torch.bincount(nearest, minlength=25).float()
    assert counts.min() > 0.5 * counts.mean()


def test_swissroll_range():
    d = load_dataset("swissroll", n=2000)
    assert d.centres is None and d.sigma is None
    r = d.tensor.norm(dim=1)
    # make_swiss_roll's radius t lies in [1.5 pi, 4.5 pi]; divided by 7.5, noise 0.25 aside
    assert float(r.max()) < 4.5 * math.pi / 7.5 + 0.2
    assert float(r.min()) > 1.5 * math.pi / 7.5 - 0.2


@pytest.mark.parametrize("size", [None, 16, 32])
def test_digits(size):
    d = load_dataset("digits", image_size=size)
    s = size or 8
    assert d.kind == "image" and d.shape == (1, s, s)
    assert d.tensor.shape == (1797, 1, s, s) and d.tensor.dtype == torch.float32
    assert float(d.tensor.min()) == -1.0 and float(d.tensor.max()) == 1.0
    assert d.labels.shape == (1797,) and set(d.labels.tolist()) == set(range(10))
    x = next(d.batches(10))
    assert x.shape == (10, 1, s, s)


def test_digits_subset_and_epochs():
    d = load_dataset("digits", n=50, seed=3)
    assert len(d) == 50 and d.labels.shape == (50,)
    assert torch.equal(d.tensor, load_dataset("digits", n=50, seed=3).tensor)
    # one epoch of batches visits every sample exactly once
    seen = torch.cat([next(it) for it in [d.batches(10, torch.Generator().manual_seed(0))] for _ in range(5)])
    assert torch.equal(seen.flatten(1).unique(dim=0), d.tensor.flatten(1).unique(dim=0))


def _write_images(folder, sizes, mode):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        shape = (h, w) if mode == "L" else (h, w, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_rgb(tmp_path):
    (tmp_path / "sub").mkdir()
    _write_images(tmp_path, [(20, 20), (30, 24)], "RGB")
    _write_images(tmp_path / "sub", [(16, 40)], "L")  # grey images join an RGB set as RGB
    (tmp_path / "notes.txt").write_text("not an image")
    d = load_dataset(str(tmp_path), image_size=16)
    assert d.kind == "image" and d.shape == (3, 16, 16) and len(d) == 3
    assert d.tensor.dtype == torch.float32
    assert -1.0 <= float(d.tensor.min()) and float(d.tensor.max()) <= 1.0
    assert next(d.batches(5)).shape == (5, 3, 16, 16)


def test_image_folder_grey_default_size(tmp_path):
    _write_images(tmp_path, [(12, 12), (12, 12), (12, 12)], "L")
    d = load_dataset(tmp_path)
    assert d.shape == (1, 12, 12) and len(d) == 3
    assert d.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 12, 12)


def test_npy_points(tmp_path):
    p = tmp_path / "pts.npy"
    pts = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float64)
    np.save(p, pts)
    d = load_dataset(str(p))
    assert d.kind == "2d" and d.shape == (2,) and d.centres is None
    assert torch.allclose(d.tensor, torch.from_numpy(pts).float())
    assert next(d.batches(8)).shape == (8, 2)


@pytest.mark.parametrize("layout", ["nchw", "nhw", "nhwc"])
def test_npy_images(tmp_path, layout):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (6, 3, 10, 10), dtype=np.uint8)
    if layout == "nhw":
        a = a[:, 0]
    elif layout == "nhwc":
        a = a.transpose(0, 2, 3, 1)
    p = tmp_path / "imgs.npy"
    np.save(p, a)
    d = load_dataset(p)
    c = 1 if layout == "nhw" else 3
    assert d.kind == "image" and d.shape == (c, 10, 10)
    assert float(d.tensor.min()) >= -1.0 and float(d.tensor.max()) <= 1.0
    d16 = load_dataset(p, image_size=16)
    assert d16.shape == (c, 16, 16)


def test_npy_float_ranges(tmp_path):
    p = tmp_path / "f.npy"
    np.save(p, np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32))  # [0, 1] -> [-1, 1]
    t = load_dataset(p).tensor
    assert float(t.min()) < -0.9 and float(t.max()) > 0.9
    np.save(p, np.full((4, 1, 8, 8), 3.0, np.float32))
    with pytest.raises(ValueError, match="must lie in"):
        load_dataset(p)


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(ValueError, match="ring8.*grid25.*swissroll.*digits"):
        load_dataset("mnist")
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="nope"):
        load_dataset(str(missing))
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(str(tmp_path / "x.npy"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset(str(empty))
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        load_dataset(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "p3.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        load_dataset(str(tmp_path / "p3.npy"))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_dataset(str(tmp_path))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        next(load_dataset("ring8", n=10).batches(0))


def test_toy_constants_match_gan_toy():
    assert (toy.RING8_RADIUS, toy.RING8_NOISE, toy.RING8_DIVISOR) == (2.0, 0.02, 1.414)
    assert (toy.GRID25_SPACING, toy.GRID25_NOISE, toy.GRID25_DIVISOR) == (2.0, 0.05, 2.828)
    assert (toy.SWISSROLL_NOISE, toy.SWISSROLL_DIVISOR) == (0.25, 7.5)


def test_builtin_name_wins_over_local_file(tmp_path, monkeypatch):
    (tmp_path / "digits").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_dataset("digits").name == "digits" and len(load_dataset("digits")) == 1797
    with pytest.raises(ValueError, match="no images"):
        load_dataset("./digits")
