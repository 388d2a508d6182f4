"""Atomic, ``weights_only``-safe training checkpoints.

A checkpoint is a dict of tensors, dicts, lists, tuples, numbers, strings, None, ``torch.dtype``/``device``/
``Size``: exactly what ``torch.load(weights_only=True)`` accepts, so loading one never runs pickled code. Model and
optimizer ``state_dict()``s qualify; RNG states go in as tensors (``capture_rng_state``). ``save_checkpoint`` checks
the state before writing and names the first offending entry (a numpy scalar in a metrics dict is the usual one).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

FORMAT = "fastgan-checkpoint"
FORMAT_VERSION = 1

# Exact types: numpy scalars subclass float/int yet torch.load(weights_only=True) refuses them, and so does
# defaultdict although it subclasses dict.
_ATOMS = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)
_MAPPINGS = (dict, OrderedDict)
_SEQUENCES = (list, tuple, set)


def _check(obj, where: str) -> None:
    if isinstance(obj, torch.Tensor) or type(obj) in _ATOMS:
        return
    if type(obj) in _MAPPINGS:
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}: keys must be str or int")
            _check(v, f"{where}[{k!r}]")
        return
    if type(obj) in _SEQUENCES:
        for i, v in enumerate(obj):
            _check(v, f"{where}[{i}]")
        return
    hint = " (convert numpy values with float()/int() or torch.from_numpy)" if type(obj).__module__ == "numpy" else ""
    raise TypeError(f"checkpoint entry {where} is a {type(obj).__module__}.{type(obj).__name__}, which "
                    f"torch.load(weights_only=True) cannot read{hint}")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact. Parent folders are created. Raises TypeError naming
    the entry if ``state`` holds something ``weights_only`` loading would reject.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    _check(state, "state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": FORMAT_VERSION, "state": state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform/filesystem
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` with ``torch.load(weights_only=True)``; return its state.

    Raises FileNotFoundError if ``path`` does not exist, and ValueError naming the file if it is corrupt,
    truncated, or not a fastgan checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip/pickle/EOF/unpickling errors all mean the same thing to the caller
        raise ValueError(f"checkpoint {str(path)!r} is corrupt, truncated or not a torch file: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT and isinstance(obj.get("state"), dict)):
        raise ValueError(f"{str(path)!r} is a torch file but not a fastgan checkpoint (no '{FORMAT}' header)")
    if obj.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format version {obj['version']}, newer than this fastgan "
                         f"reads ({FORMAT_VERSION})")
    return obj["state"]


def capture_rng_state() -> dict:
    """The global RNG states (torch CPU, every initialised CUDA device, Python ``random``, numpy) as a
    checkpointable dict."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states are restored when present and CUDA is available)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
