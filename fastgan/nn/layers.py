"""Critic building blocks on the fused bias_act op: BiasAct, FusedLeakyReLU, Conv2dAct, LinearAct.

Conv2dAct and LinearAct subclass nn.Conv2d and nn.Linear: same constructor arguments, same parameters (`weight`,
`bias`), same initialisation and state_dict keys, so checkpoints of the plain layers load into them. Their forward
runs the convolution (or matmul) without bias, then one fused bias + activation whose backward and double backward
are fused too (see fastgan.ops.bias_act).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.ops.bias_act import _check_act, _check_alpha, _check_real, bias_act


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _act_config(act, alpha, gain, clamp):
    """Validated (act, alpha, gain, clamp); alpha None keeps the activation's default."""
    act = _check_act(act)
    _check_alpha(act, alpha)
    gain = _check_real(gain, "gain")
    if clamp is not None:
        clamp = _check_real(clamp, "clamp")
        if clamp < 0:
            raise ValueError(f"clamp must be None or >= 0, got {clamp}")
    return act, alpha, gain, clamp


def _act_repr(module):
    parts = [f"act={module.act!r}"]
    if module.alpha is not None:
        parts.append(f"alpha={module.alpha}")
    if module.gain != 1.0:
        parts.append(f"gain={module.gain}")
    if module.clamp is not None:
        parts.append(f"clamp={module.clamp}")
    return ", ".join(parts)


class BiasAct(nn.Module):
    """Learnable bias + activation, fused: y = clamp(act(x + bias) * gain), bias along `dim` (channels of NCHW).

    Args:
        channels: length of the bias (x.shape[dim]).
        act, alpha, gain, clamp: see fastgan.ops.bias_act.
        dim: the dimension the bias runs along (1 for NCHW, -1 for [B, F]).
        bias: False for the activation alone (no parameter).
        bias_init: initial value of the bias.
    """

    def __init__(self, channels: int, act: str = "lrelu", alpha: float | None = None, gain: float = 1.0,
                 clamp: float | None = None, dim: int = 1, bias: bool = True, bias_init: float = 0.0,
                 device=None, dtype=None):
        super().__init__()
        self.channels = _check_positive_int(channels, "channels")
        self.act, self.alpha, self.gain, self.clamp = _act_config(act, alpha, gain, clamp)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        self.dim = dim
        if bias:
            self.bias = nn.Parameter(torch.full((channels,), float(bias_init), device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, self.act, self.alpha, self.gain, self.clamp, self.dim)

    def extra_repr(self) -> str:
        return f"{self.channels}, {_act_repr(self)}, dim={self.dim}" + ("" if self.bias is not None else ", bias=False")


class FusedLeakyReLU(BiasAct):
    """LeakyReLU with an optional learnable bias (channels=None: no bias), fused with its gradients."""

    def __init__(self, channels: int | None = None, alpha: float = 0.2, gain: float = 1.0, dim: int = 1,
                 device=None, dtype=None):
        super().__init__(channels if channels is not None else 1, "lrelu", alpha, gain, None, dim,
                         bias=channels is not None, device=device, dtype=dtype)
        if channels is None:
            self.channels = None

    def extra_repr(self) -> str:
        return (f"{self.channels}, " if self.channels is not None else "") + f"alpha={self.alpha}, gain={self.gain}"


class Conv2dAct(nn.Conv2d):
    """nn.Conv2d (same arguments, parameters and initialisation) followed by a fused bias + activation.

    Extra keyword arguments: act (default "lrelu"), alpha, gain, clamp (see fastgan.ops.bias_act).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, act="lrelu", alpha=None, gain=1.0,
                 clamp=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.act, self.alpha, self.gain, self.clamp = _act_config(act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(x, self.weight, None)
        return bias_act(y, self.bias, self.act, self.alpha, self.gain, self.clamp, dim=1 if y.dim() == 4 else 0)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + _act_repr(self)


class LinearAct(nn.Linear):
    """nn.Linear (same arguments, parameters and initialisation) followed by a fused bias + activation.

    Extra keyword arguments: act (default "lrelu"), alpha, gain, clamp (see fastgan.ops.bias_act).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, act="lrelu", alpha=None,
                 gain=1.0, clamp=None):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.act, self.alpha, self.gain, self.clamp = _act_config(act, alpha, gain, clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        return bias_act(y, self.bias, self.act, self.alpha, self.gain, self.clamp, dim=-1)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", " + _act_repr(self)
