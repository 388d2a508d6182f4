"""Small helpers the recipes share: unwrapping a model and freezing the critic for the generator step. Each is a few
lines of standard PyTorch, written out in its docstring, so that a recipe copied into user code needs nothing from
fastgan but its ops.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


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
