"""DCGAN generator and critic (Radford et al., 2016) for square images of 8x8 to 128x128.

Both are ``nn.Sequential`` so that every ``Conv2d`` directly followed by its activation is visible to a converter.
The critic has no batch norm by default: a gradient penalty (WGAN-GP) differentiates the critic per sample, which
batch norm breaks by mixing samples (Gulrajani et al., 2017, section 4).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import check_positive_int, make_activation, sample_latent

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 128


def _check_geometry(image_size, depth):
    """Validate ``image_size`` and ``depth``; return (depth, start resolution)."""
    ok = (isinstance(image_size, int) and not isinstance(image_size, bool)
          and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE and image_size & (image_size - 1) == 0)
    if not ok:
        raise ValueError(f"image_size must be a power of two from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, "
                         f"got {image_size!r}")
    max_depth = int(math.log2(image_size)) - 2  # stride-2 stages between 4x4 and image_size
    if depth is None:
        depth = max_depth
    elif isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= max_depth:
        raise ValueError(f"depth must be None or an int from 1 to {max_depth} for image_size {image_size}, "
                         f"got {depth!r}")
    return depth, image_size >> depth


class DCGANGenerator(nn.Sequential):
    """DCGAN generator: z [B, z_dim] -> images [B, channels, image_size, image_size] in [-1, 1].

    z is projected by a transposed convolution to ``width * 2**(depth-1)`` channels at ``image_size / 2**depth``
    (4x4 for the default ``depth = log2(image_size) - 2``), then ``depth`` stride-2 transposed convolutions
    (kernel 4) halve the channels and double the resolution; every hidden layer is BatchNorm + ReLU, the last is
    tanh. ``image_size=64, width=64`` is the DCGAN paper's 4x4x512 -> 64x64x3 network.
    """

    def __init__(self, z_dim: int = 128, image_size: int = 32, channels: int = 1, width: int = 64,
                 depth: int | None = None):
        for v, nm in ((z_dim, "z_dim"), (channels, "channels"), (width, "width")):
            check_positive_int(v, nm)
        depth, start = _check_geometry(image_size, depth)
        ch = width * 2 ** (depth - 1)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (z_dim, 1, 1)),
            nn.ConvTranspose2d(z_dim, ch, start, 1, 0, bias=False),  # 1x1 -> start x start
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        ]
        for _ in range(depth - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        super().__init__(*layers)
        self.z_dim, self.image_size, self.channels = z_dim, image_size, channels

    def sample_z(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Standard normal latents [n, z_dim]."""
        return sample_latent((n, self.z_dim), generator, device)


class DCGANCritic(nn.Sequential):
    """DCGAN critic: images [B, channels, image_size, image_size] -> scores [B].

    ``depth`` stride-2 convolutions (kernel 4) from ``width`` channels, doubling the channels and halving the
    resolution down to ``image_size / 2**depth`` (4x4 by default), each followed by the activation (``lrelu`` =
    LeakyReLU(0.2)); with ``batch_norm=True`` the hidden layers after the first get BatchNorm (for non-penalised
    losses only). A final convolution covering the remaining map gives one score per image.
    """

    def __init__(self, image_size: int = 32, channels: int = 1, width: int = 64, batch_norm: bool = False,
                 act: str = "lrelu", depth: int | None = None):
        for v, nm in ((channels, "channels"), (width, "width")):
            check_positive_int(v, nm)
        depth, end = _check_geometry(image_size, depth)
        make_activation(act)  # validate before building
        ch = width
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1), make_activation(act)]
        for _ in range(depth - 1):
            if batch_norm:
                layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ch)]
            else:
                layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1)]
            layers.append(make_activation(act))
            ch *= 2
        layers += [nn.Conv2d(ch, 1, end, 1, 0), nn.Flatten(0)]  # [B, 1, 1, 1] -> [B]
        super().__init__(*layers)
        self.image_size, self.channels = image_size, channels
