"""interpolate: per-sample mixing of real and fake samples, the first step of WGAN-GP's penalty.

Maths.  out_b = a_b * real_b + (1 - a_b) * fake_b, with a of shape [B] (or [B, 1, ..., 1]) broadcast per sample.
Gradient (one fused pass):  d real_b = a_b * g_b,  d fake_b = (1 - a_b) * g_b,  d a_b = <g_b, real_b - fake_b>
(computed in fp32, fp64 for fp64 inputs; only the gradients autograd asks for are written).
Second order (PyTorch ops, so every order is exact): with upstreams (r, f, s) of the three outputs above,
d g_b = a_b r_b + (1 - a_b) f_b + s_b (real_b - fake_b),  d real_b = s_b g_b,  d fake_b = -s_b g_b,
d a_b = <r_b - f_b, g_b>.

Shapes: real, fake [B, *] (same shape, dtype and device), alpha [B] -> out [B, *] with real's layout
(channels_last is kept). Saves real, fake and alpha for backward (no copies).
"""
import torch

from fastgan import _ext, backends
from fastgan.ops._common import (acc_dtype, batch_major, check_same_device, check_tensor, match_layout,
                                 plain_backward)

CUDA_ORDER = ("cuda", "triton")


class InterpolateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, alpha, backend):
        ctx.save_for_backward(real, fake, alpha)
        ctx.backend = backend
        return _kernels(backend).forward(real, fake, alpha)

    @staticmethod
    def backward(ctx, grad):
        real, fake, alpha = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if plain_backward():
            grad_real, grad_fake, grad_alpha = _kernels(ctx.backend).backward(match_layout(grad, real), real, fake,
                                                                              alpha, *need)
        else:
            grad_real, grad_fake, grad_alpha = InterpolateBackward.apply(grad, real, fake, alpha, need, ctx.backend)
        return (grad_real if need[0] else None, grad_fake if need[1] else None,
                grad_alpha if need[2] else None, None)


class InterpolateBackward(torch.autograd.Function):
    """The three input gradients in one fused pass; its own backward in PyTorch ops."""

    @staticmethod
    def forward(ctx, grad, real, fake, alpha, need, backend):
        ctx.save_for_backward(grad, real, fake, alpha)
        ctx.set_materialize_grads(False)
        grad = match_layout(grad, real)
        outs = _kernels(backend).backward(grad, real, fake, alpha, *need)
        # Gradients autograd did not ask for come back as empty [0] tensors and are never differentiated.
        ctx.mark_non_differentiable(*[out for out, needed in zip(outs, need) if not needed])
        return outs

    @staticmethod
    def backward(ctx, up_real, up_fake, up_alpha):
        grad, real, fake, alpha = ctx.saved_tensors
        acc = alpha.dtype
        a = alpha.view(-1, *([1] * (real.dim() - 1)))
        g = grad.to(acc)
        diff = real.to(acc) - fake.to(acc)
        d_grad = torch.zeros_like(g)
        d_alpha = torch.zeros_like(alpha)
        if up_real is not None and up_real.numel():
            d_grad = d_grad + a * up_real.to(acc)
            d_alpha = d_alpha + (up_real.to(acc) * g).reshape(g.shape[0], -1).sum(dim=1)
        if up_fake is not None and up_fake.numel():
            d_grad = d_grad + (1 - a) * up_fake.to(acc)
            d_alpha = d_alpha - (up_fake.to(acc) * g).reshape(g.shape[0], -1).sum(dim=1)
        d_real = None
        if up_alpha is not None and up_alpha.numel():
            s = up_alpha.view_as(a)
            d_grad = d_grad + s * diff
            d_real = s * g
        return (d_grad.to(grad.dtype), None if d_real is None else d_real.to(real.dtype),
                None if d_real is None else (-d_real).to(fake.dtype), d_alpha, None, None)


def interpolate(real, fake, alpha):
    """alpha * real + (1 - alpha) * fake, per sample.

    Args:
        real, fake: [B, *] floating tensors of one shape, dtype and device.
        alpha: [B] (or [B, 1, ..., 1]) mixing weights, usually U[0, 1).
    Returns:
        [B, *] interpolates, in real's dtype and layout.
    """
    check_tensor(real, "real")
    check_tensor(fake, "fake")
    check_tensor(alpha, "alpha")
    check_same_device([("real", real), ("fake", fake), ("alpha", alpha)])
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.dtype != fake.dtype:
        raise TypeError(f"real and fake must have the same dtype, got {real.dtype} and {fake.dtype}")
    if real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(f"real must have a non-empty batch dimension, got shape {tuple(real.shape)}")
    batch = real.shape[0]
    if alpha.numel() != batch or (alpha.dim() > 1 and alpha.shape[0] != batch):
        raise ValueError(f"alpha must have shape [B] = [{batch}] (one weight per sample), got {tuple(alpha.shape)}")
    backend = backends.select_cached("interpolate", real.device, cuda_order=CUDA_ORDER)
    if backend == "reference":
        return interpolate_reference(real, fake, alpha)
    real_k, fake_k = batch_major(real, fake)
    alpha_k = alpha.reshape(batch).to(acc_dtype(real.dtype)).contiguous()
    out = InterpolateFunction.apply(real_k, fake_k, alpha_k, backend)
    return out


def interpolate_reference(real, fake, alpha):
    """The specification in plain PyTorch (fp32 math for half inputs, like the kernels)."""
    acc = acc_dtype(real.dtype)
    a = alpha.reshape(-1, *([1] * (real.dim() - 1))).to(acc)
    return (a * real.to(acc) + (1 - a) * fake.to(acc)).to(real.dtype)


class _ExtensionKernels:
    forward = staticmethod(lambda real, fake, alpha: torch.ops.fastgan.interpolate_forward(real, fake, alpha))
    backward = staticmethod(lambda grad, real, fake, alpha, need_real, need_fake, need_alpha:
                            torch.ops.fastgan.interpolate_backward(grad, real, fake, alpha, need_real, need_fake,
                                                                   need_alpha))


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import interpolate as triton_kernels
        return triton_kernels
    return _ExtensionKernels


@_ext.on_load
def _register_fakes():
    @torch.library.register_fake("fastgan::interpolate_forward")
    def _forward_fake(real, fake, alpha):
        return torch.empty_like(real)

    @torch.library.register_fake("fastgan::interpolate_backward")
    def _backward_fake(grad, real, fake, alpha, need_real, need_fake, need_alpha):
        return (torch.empty_like(real) if need_real else real.new_empty(0),
                torch.empty_like(fake) if need_fake else fake.new_empty(0),
                torch.empty_like(alpha) if need_alpha else alpha.new_empty(0))
