"""Small helpers the recipes share: freezing the critic for the generator step and spectral norm. Each is a few
lines of standard PyTorch, written out in its docstring, so that a recipe copied into user code needs nothing from
fastgan but its ops.
"""

from __future__ import annotations

import contextlib
import importlib

import torch
from torch import nn


def _optional(module: str, name: str):
    """``module.name`` if this installation has it, else None (the ops are added by separate work items)."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            module = module._orig_mod
        else:
            return module


@contextlib.contextmanager
def frozen(critic: nn.Module):
    """For the generator step: the critic without its parameter gradients (no wasted backward into it).

    Equivalent to ``for p in critic.parameters(): p.requires_grad_(False)`` before and ``True`` after. Yields the
    unwrapped critic: under DistributedDataParallel the generator's loss must not go through the critic's
    gradient-synchronising wrapper, whose reducer would wait for critic gradients that never come.
    """
    inner = unwrap(critic)
    params = [p for p in inner.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield inner
    finally:
        for p in params:
            p.requires_grad_(True)


# --- critic constraints ------------------------------------------------------------------------------------------

def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al., 2018) on every Linear/Conv layer of ``module``, in place.

    fastgan.nn.utils.spectral_norm_all when present, else ``torch.nn.utils.parametrizations.spectral_norm`` on
    each layer (one power iteration per forward, as in the paper).
    """
    fused = _optional("fastgan.nn.utils", "spectral_norm_all")
    if fused is not None:
        out = fused(module)
        return module if out is None else out
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            spectral_norm(m)
    return module
