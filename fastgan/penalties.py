"""Drop-in gradient penalties: one call replaces the hand-written penalty of a WGAN-GP, WGAN-LP, R1, R2 or DRAGAN
critic step. Each returns a scalar to add to the critic loss; its .backward() runs the double backward through
the critic. The critic may return [B] or [B, 1]; `critic_kwargs` passes labels etc. to conditional critics.

The penalties train the critic only: real and fake are detached, as in the papers' reference code.
"""
import numbers

import torch

from fastgan.ops import grad_norm_penalty, interpolate
from fastgan.ops._common import acc_dtype, check_same_device, check_tensor


def gradient_penalty(critic, real, fake, weight=10.0, target=1.0, mode="two_sided", alpha=None,
                     critic_kwargs=None):
    """WGAN-GP penalty (Gulrajani et al. 2017): weight * mean_b (||grad_x D(x_b)|| - target)^2 at interpolates
    x_b = alpha_b * real_b + (1 - alpha_b) * fake_b, alpha_b ~ U[0, 1) unless given.

    Args:
        critic: callable [B, *] -> [B] or [B, 1].
        real, fake: [B, *] samples of one shape, dtype and device.
        weight: lambda (>= 0). target: the norm the penalty pulls to.
        mode: "two_sided" (WGAN-GP), "one_sided" (WGAN-LP) or "squared".
        alpha: optional [B] mixing weights.
    Returns:
        scalar tensor.
    """
    _check_critic(critic)
    _check_pair(real, fake)
    _check_weight(weight)
    batch = real.shape[0]
    if alpha is None:
        alpha = torch.rand(batch, device=real.device, dtype=acc_dtype(real.dtype))
    else:
        check_tensor(alpha, "alpha")
    points = interpolate(real.detach(), fake.detach(), alpha.detach()).requires_grad_(True)
    return weight * _penalty(critic, points, None, critic_kwargs, target, mode)


def r1_penalty(critic, real, weight=5.0, outputs=None, critic_kwargs=None):
    """R1 (Mescheder et al. 2018): weight * mean_b ||grad_x D(real_b)||^2 (StyleGAN's gamma/2 is this weight).

    `outputs`: the critic's [B] or [B, 1] output on `real`, already computed by the caller with
    real.requires_grad_(True) — reuses that forward instead of running the critic again.
    """
    return _zero_centred("real", critic, real, weight, outputs, critic_kwargs)


def r2_penalty(critic, fake, weight=5.0, outputs=None, critic_kwargs=None):
    """R2: as r1_penalty, at the fake samples."""
    return _zero_centred("fake", critic, fake, weight, outputs, critic_kwargs)


def dragan_penalty(critic, real, weight=10.0, c=0.5, target=1.0, critic_kwargs=None):
    """DRAGAN (Kodali et al. 2017): the two-sided penalty at points between real samples and real samples perturbed
    by c * std(real) * U[0, 1) noise, as in the authors' reference code."""
    _check_critic(critic)
    check_tensor(real, "real")
    _check_batch(real, "real")
    _check_weight(weight)
    if not isinstance(c, numbers.Real) or c < 0:
        raise ValueError(f"c must be a number >= 0, got {c!r}")
    real = real.detach()
    perturbed = real + c * real.std() * torch.rand_like(real)
    alpha = torch.rand(real.shape[0], device=real.device, dtype=acc_dtype(real.dtype))
    points = interpolate(real, perturbed, alpha).requires_grad_(True)
    return weight * _penalty(critic, points, None, critic_kwargs, target, "two_sided")


def _zero_centred(name, critic, samples, weight, outputs, critic_kwargs):
    _check_critic(critic)
    check_tensor(samples, name)
    _check_batch(samples, name)
    _check_weight(weight)
    if outputs is None:
        samples = samples.detach().requires_grad_(True)
    elif not samples.requires_grad:
        raise ValueError(f"outputs= reuses a critic forward, so {name} must be the tensor that forward ran on, "
                         f"with requires_grad=True")
    return weight * _penalty(critic, samples, outputs, critic_kwargs, 1.0, "squared")


def _penalty(critic, points, outputs, critic_kwargs, target, mode):
    if outputs is None:
        outputs = critic(points, **(critic_kwargs or {}))
    scores = _check_outputs(outputs, points.shape[0])
    (grad,) = torch.autograd.grad(scores.sum(), points, create_graph=True)
    return grad_norm_penalty(grad, target=target, mode=mode).mean()


def _check_outputs(outputs, batch):
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"the critic must return a tensor, got {type(outputs).__name__}")
    if outputs.shape == (batch, 1):
        outputs = outputs[:, 0]
    if outputs.shape != (batch,):
        raise ValueError(f"the critic's output must have shape [B] or [B, 1] with B = {batch}, "
                         f"got {tuple(outputs.shape)}")
    if not outputs.requires_grad:
        raise ValueError("the critic's output does not depend on its input (requires_grad is False)")
    return outputs


def _check_critic(critic):
    if not callable(critic):
        raise TypeError(f"critic must be callable (an nn.Module or function), got {type(critic).__name__}")


def _check_batch(tensor, name):
    if tensor.dim() < 1 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension, got shape {tuple(tensor.shape)}")


def _check_pair(real, fake):
    check_tensor(real, "real")
    check_tensor(fake, "fake")
    check_same_device([("real", real), ("fake", fake)])
    if real.dtype != fake.dtype:
        raise TypeError(f"real and fake must have the same dtype, got {real.dtype} and {fake.dtype}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    _check_batch(real, "real")


def _check_weight(weight):
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a number, got {type(weight).__name__}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
