"""Activation modules by name, shared by the MLP and DCGAN models."""

from __future__ import annotations

from torch import nn

#: The activations a model accepts, by name. Kept as plain ``nn`` modules right after ``nn.Linear``/``nn.Conv2d``
#: so that a converter (``fastgan.nn.fuse_activations``) can recognise the pairs and fuse them.
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "lrelu": lambda: nn.LeakyReLU(0.2),
    "elu": lambda: nn.ELU(),
    "silu": lambda: nn.SiLU(),
    "tanh": lambda: nn.Tanh(),
}


def make_activation(act: str) -> nn.Module:
    """``nn.Module`` for the activation ``act`` (``relu``, ``lrelu`` = LeakyReLU(0.2), ``elu``, ``silu``, ``tanh``)."""
    try:
        return ACTIVATIONS[act]()
    except (KeyError, TypeError):
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}; got {act!r}") from None


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def sample_latent(shape, generator=None, device=None):
    """Standard normal tensor of ``shape``, drawn on the generator's device (a CUDA generator needs CUDA), then
    moved to ``device``."""
    import torch

    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)
