"""fastgan.metrics (mode coverage, Frechet distance, digits scores) and fastgan.train.plots."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

from fastgan.data import load_dataset
from fastgan.metrics import digits as digits_mod
from fastgan.metrics import digits_metrics, frechet_distance, gaussian_stats, mode_metrics
from fastgan.train.plots import component_series, save_image_grid, save_loss_curves, save_scatter


# ---- 2D mode coverage --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_real_samples_cover_all_modes(name):
    d = load_dataset(name, n=10_000, seed=3)
    m = mode_metrics(d.tensor, d.centres, d.sigma)
    assert m["n_modes"] == len(d.centres)
    assert m["modes_covered"] == len(d.centres)
    # within 3 sigma of a 2D Gaussian: 1 - exp(-4.5) = 98.9%
    assert m["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)


def test_collapse_to_one_centre():
    d = load_dataset("grid25", n=100)
    x = d.centres[7] + d.sigma * torch.randn(10_000, 2, generator=torch.Generator().manual_seed(0))
    m = mode_metrics(x, d.centres, d.sigma)
    assert m["modes_covered"] == 1
    assert m["high_quality_fraction"] > 0.95


def test_half_the_modes_and_min_count():
    d = load_dataset("ring8", n=100)
    g = torch.Generator().manual_seed(1)
    x = d.centres[torch.randint(4, (4000,), generator=g)] + d.sigma * torch.randn(4000, 2, generator=g)
    assert mode_metrics(x, d.centres, d.sigma)["modes_covered"] == 4
    # 9 stray samples at a fifth mode do not cover it under the default (ceil(4009 / 8 / 5) = 101), but do with 5
    x = torch.cat([x, d.centres[5].expand(9, 2)])
    assert mode_metrics(x, d.centres, d.sigma)["modes_covered"] == 4
    assert mode_metrics(x, d.centres, d.sigma, min_count=5)["modes_covered"] == 5


def test_far_and_non_finite_samples_are_low_quality():
    d = load_dataset("ring8", n=100)
    x = torch.cat([torch.full((50, 2), 10.0), torch.full((50, 2), float("nan")), d.centres.repeat(25, 1)])
    m = mode_metrics(x.numpy(), d.centres.numpy(), d.sigma, min_count=1)
    assert m["high_quality_fraction"] == pytest.approx(200 / 300)
    assert m["modes_covered"] == 8


def test_mode_metrics_bad_inputs():
    c = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="samples"):
        mode_metrics(torch.zeros(5, 3), c, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        mode_metrics(torch.zeros(5, 2), c, 0.0)
    with pytest.raises(ValueError, match="min_count"):
        mode_metrics(torch.zeros(5, 2), c, 0.1, min_count=0)


# ---- Frechet distance --------------------------------------------------------------------------------------------

def test_frechet_distance_closed_form():
    # diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    rng = np.random.default_rng(0)
    a, b = rng.random(6) + 0.1, rng.random(6) + 0.1
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_frechet_distance_general_and_singular():
    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(400, 5))
    f2 = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    mu1, c1 = gaussian_stats(f1)
    mu2, c2 = gaussian_stats(f2)
    try:
        from scipy import linalg
    except ImportError:
        pytest.skip("scipy not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-8)
    # fewer samples than dimensions: singular covariance, still finite
    mu3, c3 = gaussian_stats(rng.normal(size=(3, 5)))
    assert math.isfinite(frechet_distance(mu1, c1, mu3, c3))


# ---- digits ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fastgan_cache")


def test_digits_real_vs_collapsed(cache_dir):
    real = load_dataset("digits").tensor
    m = digits_metrics(real, cache_dir=cache_dir)
    assert m["classes_covered"] == 10
    assert m["class_kl"] < 0.01
    assert m["frechet_distance"] < 1e-6  # the very set the reference statistics come from
    half = digits_metrics(real[1::2], cache_dir=cache_dir)
    assert half["classes_covered"] == 10 and half["class_kl"] < 0.01
    one = digits_metrics(real[:1].repeat(400, 1, 1, 1), cache_dir=cache_dir)
    assert one["classes_covered"] == 1
    assert one["class_kl"] == pytest.approx(math.log(10))
    assert one["frechet_distance"] > 100 * max(half["frechet_distance"], 1.0)
    noise = digits_metrics(torch.rand(500, 1, 8, 8) * 2 - 1, cache_dir=cache_dir)
    assert noise["frechet_distance"] > 100 * max(half["frechet_distance"], 1.0)
    assert (cache_dir / f"digits_classifier_8px_{digits_mod.CLASSIFIER_VERSION}.pt").is_file()


def test_digits_other_resolution_and_cache(cache_dir, monkeypatch):
    real = load_dataset("digits", image_size=16).tensor
    m = digits_metrics(real[::3], cache_dir=cache_dir)
    assert m["classes_covered"] == 10 and m["class_kl"] < 0.02
    path = cache_dir / f"digits_classifier_16px_{digits_mod.CLASSIFIER_VERSION}.pt"
    assert path.is_file()
    # from disk (in-process cache cleared) the scores are identical
    digits_mod._memory_cache.clear()
    assert digits_metrics(real[::3], cache_dir=cache_dir) == m
    # a corrupt cache file is retrained over, with a warning (training stubbed out: only the recovery is tested)
    digits_mod._memory_cache.clear()
    path.write_bytes(path.read_bytes()[:100])
    with monkeypatch.context() as mp:
        mp.setattr(digits_mod, "train_digits_classifier", lambda size: digits_mod.DigitsClassifier())
        with pytest.warns(UserWarning, match="retraining"):
            digits_metrics(real[::3], cache_dir=cache_dir)
    digits_mod._memory_cache.clear()
    from fastgan.train.checkpoint import load_checkpoint

    assert load_checkpoint(path)["image_size"] == 16  # rewritten whole


def test_digits_metrics_bad_inputs(cache_dir):
    with pytest.raises(ValueError, match="samples"):
        digits_metrics(torch.zeros(10, 3, 8, 8), cache_dir=cache_dir)
    with pytest.raises(ValueError, match="samples"):
        digits_metrics(torch.zeros(1, 1, 8, 8), cache_dir=cache_dir)


# ---- plots -------------------------------------------------------------------------------------------------------

def _is_png(path):
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_scatter(tmp_path):
    d = load_dataset("ring8", n=500)
    out = save_scatter(torch.randn(300, 2), d.tensor, tmp_path / "sub" / "scatter.png", title="step 0")
    assert _is_png(out)


def test_save_scatter_colours_groups(tmp_path):
    from PIL import Image

    d = load_dataset("ring8", n=500)
    samples, groups = torch.randn(300, 2), torch.arange(300) % 3
    plain = save_scatter(samples, d.tensor, tmp_path / "plain.png")
    coloured = save_scatter(samples, d.tensor, tmp_path / "groups.png", groups=groups, group_labels=["a", "b", "c"])
    with Image.open(plain) as a, Image.open(coloured) as b:
        assert a.size == b.size and a.tobytes() != b.tobytes()
    with pytest.raises(ValueError, match="groups must have one entry per sample"):
        save_scatter(samples, d.tensor, tmp_path / "bad.png", groups=groups[:10])


@pytest.mark.parametrize("shape", [(10, 1, 8, 8), (5, 3, 16, 16), (4, 12, 12)])
def test_save_image_grid(tmp_path, shape):
    from PIL import Image

    out = save_image_grid(torch.rand(shape) * 2 - 1, tmp_path / "grid.png", nrow=3)
    assert _is_png(out)
    with Image.open(out) as img:
        assert img.mode == ("RGB" if len(shape) == 4 and shape[1] == 3 else "L")
        assert img.width >= 3 * shape[-1]


def test_save_loss_curves(tmp_path):
    records = [{"step": i, "loss_d": -i * 0.1, "loss_g": i * 0.2, "time": 0.01 * i} for i in range(20)]
    records += [{"step": 19, "eval": {"modes_covered": 8, "high_quality_fraction": 0.9}}]
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + '\n{"step": 20, "loss_d"')  # torn last line
    assert _is_png(save_loss_curves(jsonl, tmp_path / "a.png"))
    assert _is_png(save_loss_curves(records, tmp_path / "b.png"))
    with pytest.raises(ValueError, match="no numeric"):
        save_loss_curves([{"step": 1, "note": "x"}], tmp_path / "c.png")


def test_loss_curves_draw_per_component_series_in_one_panel(tmp_path):
    # MIX+GAN logs each mixture weight as its own series (g_weight.0, ...): one panel per player, not per weight.
    from PIL import Image

    records = [{"step": i, "loss_d": 0.5, **{f"g_weight.{k}": 0.2 + 0.01 * k * i for k in range(5)},
                **{f"d_weight.{k}": 0.2 for k in range(5)}} for i in range(10)]
    grouped = save_loss_curves(records, tmp_path / "grouped.png")
    apart = save_loss_curves([{"step": r["step"], **{k.replace(".", "_"): v for k, v in r.items() if k != "step"}}
                              for r in records], tmp_path / "apart.png")
    with Image.open(grouped) as one_row, Image.open(apart) as four_rows:
        assert one_row.height < four_rows.height / 2  # 3 panels in one row vs 11 panels in four
    assert component_series("g_weight.3") == ("g_weight", 3)
    assert component_series("eval.modes_covered") is None and component_series("loss_d") is None
