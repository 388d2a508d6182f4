"""The ReLU MLPs of the WGAN-GP 2D experiments (gan_toy.py: DIM = 512, three hidden layers)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import check_positive_int, make_activation, sample_latent


def _mlp(in_dim: int, hidden: int, depth: int, out_dim: int, act: str) -> list[nn.Module]:
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), make_activation(act)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return layers


class MLPGenerator(nn.Sequential):
    """MLP generator: z [B, z_dim] -> x [B, out_dim].

    ``depth`` hidden layers of width ``hidden``, each Linear + ReLU, then a linear output (gan_toy.py's Generator:
    2 -> 512 -> 512 -> 512 -> 2). ``sample_z(n)`` draws the standard normal latent it expects.
    """

    def __init__(self, z_dim: int = 2, hidden: int = 512, depth: int = 3, out_dim: int = 2, act: str = "relu"):
        for v, nm in ((z_dim, "z_dim"), (hidden, "hidden"), (depth, "depth"), (out_dim, "out_dim")):
            check_positive_int(v, nm)
        super().__init__(*_mlp(z_dim, hidden, depth, out_dim, act))
        self.z_dim = z_dim
        self.out_dim = out_dim

    def sample_z(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Standard normal latents [n, z_dim] (drawn on ``generator``'s device, then moved to ``device``)."""
        return sample_latent((n, self.z_dim), generator, device)


class MLPCritic(nn.Sequential):
    """MLP critic: x [B, in_dim] -> score [B].

    ``depth`` hidden Linear + activation layers of width ``hidden`` (gan_toy.py's Discriminator: ReLU,
    2 -> 512 -> 512 -> 512 -> 1), then a linear output flattened to [B]. No normalisation layers, so a gradient
    penalty sees each sample independently.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 512, depth: int = 3, act: str = "relu"):
        for v, nm in ((in_dim, "in_dim"), (hidden, "hidden"), (depth, "depth")):
            check_positive_int(v, nm)
        super().__init__(*_mlp(in_dim, hidden, depth, 1, act), nn.Flatten(0))
        self.in_dim = in_dim
