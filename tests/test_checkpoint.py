"""fastgan.train.checkpoint: atomic save, weights_only load, clear errors, RNG state round trip."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from fastgan.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def _state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "step": 17,
        "metrics": {"loss": 0.5, "history": [1.0, 2.0], "name": "ring8", "none": None},
        "rng": torch.get_rng_state(),
        "shape": (1, 2),
    }


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_round_trip(tmp_path):
    state = _state()
    path = tmp_path / "deep" / "ckpt.pt"
    save_checkpoint(path, state)
    assert _equal(load_checkpoint(path), state)
    # overwrite in place; no temporary files left behind
    state["step"] = 18
    save_checkpoint(str(path), state)
    assert load_checkpoint(str(path))["step"] == 18
    assert os.listdir(path.parent) == ["ckpt.pt"]


def test_weights_only_compatible(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    torch.load(path, weights_only=True)  # what load_checkpoint relies on


@pytest.mark.parametrize("cut", [0, 10, 200, -20])
def test_truncated_file(tmp_path, cut):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state())
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(ValueError, match="c.pt"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)  # a torch file, but not ours
    with pytest.raises(ValueError, match="not a fastgan checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unsafe_state_rejected_before_writing(tmp_path):
    path = tmp_path / "c.pt"
    with pytest.raises(TypeError, match=r"state\['metrics'\]\['fd'\].*numpy"):
        save_checkpoint(path, {"metrics": {"fd": np.float64(1.0)}})
    with pytest.raises(TypeError, match="Linear"):
        save_checkpoint(path, {"model": nn.Linear(2, 2)})
    with pytest.raises(TypeError, match="state must be a dict"):
        save_checkpoint(path, [1, 2])
    assert not path.exists() and os.listdir(tmp_path) == []


def test_failed_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["c.pt"]


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": capture_rng_state()})
    want = (torch.rand(3), random.random(), np.random.randn(3))
    restore_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(3), random.random(), np.random.randn(3))
    assert torch.equal(want[0], got[0]) and want[1] == got[1] and np.array_equal(want[2], got[2])
