"""The trainer: every recipe on every kind of data, run folders, metrics on known inputs, bit-exact resume,
weights_only checkpoints, sample/eval commands, and DDP on two CPU processes (gloo).

Everything is tiny (width-8 models, batch 16, 2-3 steps) so the file runs in well under a minute on 2 cores.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.cli import main
from fastgan.data import load_dataset
from fastgan.train.recipes import RECIPES, get_recipe
from fastgan.train.trainer import CHECKPOINT, build_models, evaluate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "16", "--width", "8", "--quiet", "--eval-samples", "200"]
# evaluate and draw only at the last step (the trainer always does then): pictures cost more than tiny steps
ONCE = ["--eval-every", "1000", "--sample-every", "1000"]


def train(tmp_path, recipe, data, steps=2, *extra, name="run"):
    out = tmp_path / name
    args = ["train", recipe, "--data", str(data), "--steps", str(steps), "--out", str(out), *TINY, *ONCE, *extra]
    if recipe == "wgan":
        args += ["--critic-burst", "2"]  # exercise the reference code's burst without its 100 critic steps
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Six small RGB images of 12x12 pixels: the trainer resizes them to 16x16."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def npy_points(tmp_path_factory):
    path = tmp_path_factory.mktemp("npy") / "points.npy"
    np.save(path, np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    return path


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("data", ["ring8", "digits"])
def test_every_recipe_on_builtin_data(tmp_path, recipe, data):
    out = train(tmp_path, recipe, data)
    for name in ("config.json", "metrics.jsonl", "curves.png", "samples.png", CHECKPOINT):
        assert (out / name).is_file(), name
    assert list((out / "samples").glob("step_*.png"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss_d" in r]
    assert [r["step"] for r in losses] == [1, 2]  # every step logged (log_every = 1 for short runs)
    assert all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) for r in losses)
    evals = [r["eval"] for r in records if "eval" in r]
    assert evals, "no evaluation record"
    key = "modes_covered" if data == "ring8" else "classes_covered"
    assert key in evals[-1]
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == recipe and config["steps"] == 2 and config["batch_size"] == 16


def test_mixgan_logs_every_mixture_weight(tmp_path, capsys):
    out = train(tmp_path, "mixgan", "ring8", 2, "--mixtures", "3")
    summary = capsys.readouterr().out
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if "loss_d" in line][-1]
    for player in ("g", "d"):
        weights = [last[f"{player}_weight.{i}"] for i in range(3)]
        assert f"{player}_weight.3" not in last
        assert abs(sum(weights) - 1) < 1e-4 and all(0 < w < 1 for w in weights)  # a softmax, rounded to 6 digits
        assert f"{player}_weight [" in summary  # the summary lists them together
    assert "g_weight.0" not in summary


def test_mixgan_image_samples_take_one_row_per_generator(tmp_path):
    from PIL import Image

    out = train(tmp_path, "mixgan", "digits", 1, "--mixtures", "3")
    side = json.loads((out / "config.json").read_text())["data_shape"][-1]
    scale = max(1, -(-32 // side))  # save_image_grid's enlargement of small images
    with Image.open(out / "samples.png") as img:
        assert img.size == ((8 * (side + 2) + 2) * scale, (3 * (side + 2) + 2) * scale)  # 8 columns, 3 rows


def test_mixgan_sample_groups_name_the_generator_of_each_row():
    from torch import nn

    mixgan = get_recipe("mixgan")

    class Constant(nn.Module):  # a generator whose samples say which member drew them
        def __init__(self, index):
            super().__init__()
            self.index = index

        def forward(self, z):
            return torch.full((len(z), 2), float(self.index))

    G = mixgan.module.Mixture([Constant(i) for i in range(4)])
    with torch.no_grad():
        G.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    for n in (1, 7, 100):
        groups, labels = mixgan.sample_groups(G, n)
        assert torch.equal(groups, G(torch.zeros(n, 3))[:, 0].long())
        assert len(labels) == 4 and labels[1].startswith("G1")


@pytest.mark.parametrize("recipe", ["wgan-gp", "dcgan", "mixgan"])
def test_recipes_on_folder_and_npy_data(tmp_path, image_folder, npy_points, recipe):
    out = train(tmp_path, recipe, image_folder, name="folder")
    config = json.loads((out / "config.json").read_text())
    assert config["data_kind"] == "image" and config["data_shape"] == [3, 16, 16]
    out = train(tmp_path, recipe, npy_points, name="npy")
    assert json.loads((out / "config.json").read_text())["data_kind"] == "2d"


def test_swissroll_and_resized_digits(tmp_path):
    train(tmp_path, "wgan-gp", "swissroll", name="swiss")
    out = train(tmp_path, "sngan", "digits", 2, "--image-size", "16", name="digits16")
    assert json.loads((out / "config.json").read_text())["model"]["image_size"] == 16


def test_defaults_follow_the_papers():
    gp = get_recipe("wgan-gp")
    # gan_toy.py's LAMBDA, CRITIC_ITERS and Adam betas; 10x its lr, annealed (see the recipe's docstring)
    assert gp.defaults("2d", None) == {"lr": 1e-3, "betas": (0.5, 0.9), "n_critic": 5, "gp_weight": 0.1,
                                       "lr_decay": "linear"}
    assert gp.defaults("image", 32) == {"lr": 1e-4, "betas": (0.5, 0.9), "n_critic": 5, "gp_weight": 10.0,
                                        "lr_decay": "none"}
    assert gp.defaults("image", 64)["betas"] == (0.0, 0.9)
    wgan = get_recipe("wgan").defaults("image", 32)
    assert (wgan["lr"], wgan["clip"], wgan["n_critic"]) == (5e-5, 0.01, 5)
    assert get_recipe("mixgan").defaults("2d", None)["mixtures"] == 5
    for name in RECIPES:  # every recipe documents its defaults and their sources
        doc = get_recipe(name).module.__doc__
        assert "Defaults and their sources" in doc, name


def test_generator_and_critic_widths():
    """2D default: gan_toy.py's generator width 512 with a 128-wide critic; --width alone sizes both networks;
    --g-width sizes the generator only."""
    from fastgan.train.config import make_config

    data = load_dataset("ring8")

    def hidden(model):
        return {m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)} - {1, 2}

    for widths, g, d in (({}, 512, 128), ({"width": 8}, 8, 8), ({"width": 8, "g_width": 16}, 16, 8)):
        G, D = build_models(make_config("wgan-gp", "ring8", data, model=widths))
        assert hidden(G) == {g} and hidden(D) == {d}, widths


class _Constant(torch.nn.Module):
    """A 'generator' that ignores its latents and returns fixed samples (for metrics on known inputs)."""

    def __init__(self, samples):
        super().__init__()
        self.register_buffer("samples", samples)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z):
        idx = torch.arange(len(z)) % len(self.samples)
        return self.samples[idx]


def test_metrics_on_known_inputs():
    data = load_dataset("ring8")
    config = {"recipe": "wgan-gp", "seed": 0, "eval_samples": 10_000, "model": {"z_dim": 2}}
    real = evaluate(_Constant(data.sample(10_000, torch.Generator().manual_seed(1))), config, data, torch.device("cpu"))
    assert real["modes_covered"] == 8 and 0.98 <= real["high_quality_fraction"] <= 1.0
    one = evaluate(_Constant(data.centres[:1].clone()), config, data, torch.device("cpu"))
    assert one["modes_covered"] == 1 and one["high_quality_fraction"] == 1.0
    grid = load_dataset("grid25")
    real = evaluate(_Constant(grid.sample(10_000, torch.Generator().manual_seed(1))), config, grid,
                    torch.device("cpu"))
    assert real["modes_covered"] == 25 and real["high_quality_fraction"] >= 0.98
    far = evaluate(_Constant(grid.centres + 0.2), config, grid, torch.device("cpu"))
    assert far["high_quality_fraction"] == 0.0 and far["modes_covered"] == 0


def _params(run_dir):
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)["state"]
    return state


@pytest.mark.parametrize("recipe,data", [("wgan-gp", "ring8"), ("dcgan", "digits")])
def test_resume_is_bit_exact(tmp_path, monkeypatch, recipe, data):
    """A run of 6 steps killed right after its step-3 checkpoint, then resumed, ends with the same parameters and
    optimizer state as an uninterrupted one (CPU, fixed seed). wgan-gp on ring8: Adam, the penalty's random
    interpolates and the linear lr decay over the run's 6 steps; dcgan: batch-norm buffers."""
    from fastgan.train.trainer import Trainer

    extra = ["--checkpoint-every", "3", "--seed", "7"]
    full = train(tmp_path, recipe, data, 6, *extra, name="full")

    checkpoint = Trainer._checkpoint

    def killed_after_first_checkpoint(self, step):
        checkpoint(self, step)
        raise KeyboardInterrupt  # what Ctrl-C (or a preempted job) does between two steps

    monkeypatch.setattr(Trainer, "_checkpoint", killed_after_first_checkpoint)
    part = tmp_path / "part"
    args = ["train", recipe, "--data", data, "--steps", "6", "--out", str(part), *TINY, *ONCE, *extra]
    assert main(args) == 130  # the shell's code for SIGINT
    monkeypatch.undo()
    assert _params(part)["step"] == 3
    assert main(["train", "--resume", str(part), "--quiet"]) == 0
    a, b = _params(full), _params(part)
    assert a["step"] == b["step"] == 6
    for net in ("G", "D"):
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    for name, opt in a["optimizers"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b["optimizers"][name]["state"][pid][k]), (name, pid, k)
        assert opt["param_groups"] == b["optimizers"][name]["param_groups"], name  # the lr schedule too
    # the resumed run's log continues where the checkpoint was (no duplicated steps)
    steps = [json.loads(line)["step"] for line in (part / "metrics.jsonl").read_text().splitlines()
             if "loss_d" in line]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_checkpoint_is_weights_only_and_rebuilds_the_models(tmp_path):
    """Trained with fastgan.nn's fused blocks (--fuse on), loaded into plain models (and fused ones)."""
    out = train(tmp_path, "sngan", "digits", 2, "--fuse", "on")
    obj = torch.load(out / CHECKPOINT, weights_only=True)  # must not need pickled code
    state = obj["state"]
    for fuse in (False, True):
        G, D = build_models(state["config"], fuse=fuse)
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])


def test_sample_and_eval_commands(tmp_path, capsys):
    ring = train(tmp_path, "wgan-gp", "ring8", name="ring")
    assert main(["sample", str(ring), "-n", "50", "--out", str(tmp_path / "pts.npy")]) == 0
    assert np.load(tmp_path / "pts.npy").shape == (50, 2)
    digits = train(tmp_path, "dcgan", "digits", name="digits")
    assert main(["sample", str(digits), "-n", "20", "--out", str(tmp_path / "imgs")]) == 0
    assert np.load(tmp_path / "imgs.npy").shape == (20, 1, 8, 8)
    assert (tmp_path / "imgs.png").is_file()
    capsys.readouterr()
    assert main(["eval", str(ring), "--json", "-n", "500"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 2 and result["n_modes"] == 8 and "high_quality_fraction" in result
    # the default evaluation reproduces the last metrics.jsonl record
    assert main(["eval", str(ring), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    last = [json.loads(line) for line in (ring / "metrics.jsonl").read_text().splitlines() if "eval" in line][-1]
    assert result["high_quality_fraction"] == last["eval"]["high_quality_fraction"]


def test_lazy_regularisation_and_penalty_methods_run(tmp_path):
    train(tmp_path, "wgan-gp", "ring8", 2, "--reg-every", "4", name="lazy")
    train(tmp_path, "r1", "ring8", 2, "--gp-method", "jvp", name="jvp")
    train(tmp_path, "wgan-lp", "ring8", 2, "--gp-method", "finite_difference", name="fd")


def test_amp_bf16_runs_on_cpu(tmp_path):
    out = train(tmp_path, "wgan-gp", "ring8", 2, "--amp", "bf16", name="bf16")
    assert json.loads((out / "config.json").read_text())["amp"] == "bf16"


def test_torchrun_two_processes_match_one(tmp_path):
    """DDP over 2 CPU processes (gloo), each with half of every global batch, ends where 1 process does."""
    args = ["wgan-gp", "--data", "ring8", "--steps", "3", "--device", "cpu", *TINY, *ONCE]
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fastgan", "train", *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = torch.load(tmp_path / "one" / CHECKPOINT, weights_only=True)["state"]
    two = torch.load(tmp_path / "two" / CHECKPOINT, weights_only=True)["state"]
    assert two["step"] == 3
    for net in ("G", "D"):
        for k, v in one[net].items():
            torch.testing.assert_close(two[net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")
