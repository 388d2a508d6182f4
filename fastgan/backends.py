"""Backend choice: which implementation of an op runs.

Four backends: ``reference`` (plain PyTorch, the specification), ``cpp`` (C++ on CPU tensors), ``cuda`` (CUDA C++ on
CUDA tensors) and ``triton`` (CUDA tensors; CPU tensors too under ``TRITON_INTERPRET=1``). ``auto`` (the default)
takes the best one available for the tensors' device; a backend requested by name that cannot run raises
:class:`BackendUnavailableError` with the reason, and an automatic fallback warns once.

Precedence: ``with fastgan.backend(name)`` > ``fastgan.set_backend(name)`` > ``$FASTGAN_BACKEND`` > ``auto``.
"""
import contextlib
import contextvars
import logging
import os
import warnings

import torch

BACKENDS = ("reference", "cpp", "cuda", "triton")
CHOICES = ("auto",) + BACKENDS

# On CUDA, the order `auto` tries per op; ops override it with what bench/ measured faster on a GPU.
DEFAULT_CUDA_ORDER = ("cuda", "triton")

log = logging.getLogger("fastgan")

_context = contextvars.ContextVar("fastgan_backend", default=None)
# Every op call reads $FASTGAN_BACKEND (so a change made while running takes effect). os.environ.get pays for key
# encoding and the Mapping protocol; CPython's os.environ keeps the encoded environment in a plain dict, which its
# setters update, so a lookup there reads the same value for a fraction of the cost.
if isinstance(getattr(os.environ, "_data", None), dict) and hasattr(os.environ, "encodekey"):
    _ENV_KEY = os.environ.encodekey("FASTGAN_BACKEND")

    def _backend_env():
        raw = os.environ._data.get(_ENV_KEY)
        return os.environ.decodevalue(raw) if raw else "auto"
else:
    def _backend_env():
        return os.environ.get("FASTGAN_BACKEND", "auto") or "auto"

_global = None
_warned = set()
_announced = set()


class BackendUnavailableError(RuntimeError):
    """A backend requested by name cannot run the op on these tensors."""


def _validate(name):
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {CHOICES}, got {type(name).__name__}")
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(CHOICES)}")
    return name


def set_backend(name):
    """Choose the backend for every fastgan op from now on (``"auto"`` restores the default)."""
    global _global
    _global = _validate(name)


@contextlib.contextmanager
def backend(name):
    """Context manager: ops inside the block run on backend `name` (thread- and task-local)."""
    token = _context.set(_validate(name))
    try:
        yield
    finally:
        _context.reset(token)


def get_backend():
    """The backend name in force here: a ``backend()`` block, ``set_backend``, ``$FASTGAN_BACKEND``, or auto."""
    name = _context.get() or _global
    if name is None:
        env = _backend_env()
        if env not in CHOICES:
            raise ValueError(f"FASTGAN_BACKEND={env!r} is not a backend: choose one of {', '.join(CHOICES)}")
        name = env
    return name


def triton_interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_status():
    try:
        import triton  # noqa: F401  (TRITON_INTERPRET must be set before this first import)
    except ImportError as error:
        return False, f"triton is not installed ({error})"
    return True, ""


def availability(name, device):
    """(available, reason) for running backend `name` on tensors of `device` (a torch.device or string)."""
    device_type = torch.device(device).type
    if name == "reference":
        return True, ""
    if name == "cpp":
        if device_type != "cpu":
            return False, f"cpp runs on CPU tensors, these are on {device_type}"
        from fastgan import _ext
        return (True, "") if _ext.load() else (False, _ext.status()[1])
    if name == "cuda":
        if device_type != "cuda":
            return False, f"cuda runs on CUDA tensors, these are on {device_type}"
        if not torch.cuda.is_available():
            return False, "no CUDA device (torch.cuda.is_available() is False)"
        from fastgan import _ext
        if not _ext.load():
            return False, _ext.status()[1]
        if not _ext.has_cuda_kernels():
            return False, "the extension was built without CUDA kernels (no CUDA toolkit at build time)"
        return True, ""
    if name == "triton":
        ok, why = _triton_status()
        if not ok:
            return False, why
        if device_type == "cuda":
            if not torch.cuda.is_available():
                return False, "no CUDA device (torch.cuda.is_available() is False)"
            return True, ""
        if device_type == "cpu":
            if triton_interpreting():
                return True, ""
            return False, "triton runs CPU tensors only under TRITON_INTERPRET=1"
        return False, f"triton does not run on {device_type}"
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(CHOICES)}")


def select(op, device, cuda_order=DEFAULT_CUDA_ORDER, supported=BACKENDS):
    """The backend that runs `op` on `device` now. Raises if a named backend cannot; warns once on fallback."""
    device = torch.device(device)
    name = get_backend()
    if name != "auto":
        if name not in supported:
            raise BackendUnavailableError(f"fastgan.{op} has no {name!r} backend (it has {', '.join(supported)})")
        ok, why = availability(name, device)
        if not ok:
            raise BackendUnavailableError(f"backend {name!r} cannot run fastgan.{op} on {device.type}: {why}")
        return name
    order = ("cpp",) if device.type == "cpu" else tuple(cuda_order) if device.type == "cuda" else ()
    refused = []
    for candidate in order:
        if candidate not in supported:
            continue
        ok, why = availability(candidate, device)
        if ok:
            _announce(op, device.type, candidate)
            return candidate
        refused.append(f"{candidate}: {why}")
    if refused and (op, device.type) not in _warned:
        _warned.add((op, device.type))
        warnings.warn(f"fastgan.{op} on {device.type} falls back to the reference implementation ("
                      + "; ".join(refused) + ")", RuntimeWarning, stacklevel=3)
    _announce(op, device.type, "reference")
    return "reference"


# (op, requested backend, device, cuda order) -> what select() chose, for ops that run every step on many small
# tensors (clipping, optimizer steps, spectral norm), where select() costs as much as the kernel.
_selected = {}


def select_cached(op, device, cuda_order=DEFAULT_CUDA_ORDER):
    """select() remembered per (op, backend in force, device): availability does not change within a process once
    the extension is loaded. A fallback to the reference is not remembered, so it is re-examined (and warned about)
    each time."""
    key = (op, get_backend(), device, cuda_order)
    backend = _selected.get(key)
    if backend is None:
        backend = select(op, device, cuda_order=cuda_order)
        if key[1] != "auto" or backend != "reference":
            _selected[key] = backend
    return backend


def _announce(op, device_type, name):
    if (op, device_type) not in _announced:
        _announced.add((op, device_type))
        log.info("fastgan.%s on %s runs on the %s backend", op, device_type, name)


def explain(device="cpu"):
    """One line per backend: whether it can run on `device`, and why not."""
    lines = []
    for name in BACKENDS:
        ok, why = availability(name, device)
        lines.append(f"{name:>9}: {'available' if ok else 'unavailable (' + why + ')'}")
    return "\n".join(lines)
