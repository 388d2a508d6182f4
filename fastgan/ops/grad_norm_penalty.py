"""grad_norm_penalty: the per-sample penalty on the norm of a critic's input gradient (WGAN-GP, WGAN-LP, R1/R2).

Maths. For grad g of shape [B, *], n_b = ||g_b||_2 over every non-batch dimension, accumulated in fp32 (fp64 for
fp64 input), and target t:

    two_sided  p_b = (n_b - t)^2          WGAN-GP (Gulrajani et al. 2017)
    one_sided  p_b = max(0, n_b - t)^2    WGAN-LP (Petzka et al. 2018)
    squared    p_b = n_b^2                R1 / R2 (Mescheder et al. 2018)

Gradient:       dL/dg_b = u_b * h(n_b) * g_b with h(n) = phi'(n) / n, taken as 0 where n_b = 0 (no NaN; squared: 2).
Second order:   with v the upstream of dL/dg,
                d/du_b = h(n_b) <v_b, g_b>,   d/dg_b = u_b h(n_b) v_b + u_b h'(n_b) <v_b, g_b> / n_b * g_b,
                written in PyTorch ops, so every higher order is exact too.

Shapes: grad [B, *] -> penalty [B], float32 (float64 for float64 grad). Saved for backward: grad (no copy) and
the [B] norms. Layout: contiguous and channels_last grads are read in place; others are made contiguous.
"""
import torch

from fastgan import _ext, backends
from fastgan.ops._common import acc_dtype, batch_major, check_choice, check_tensor, plain_backward

MODES = {"two_sided": 0, "one_sided": 1, "squared": 2}
# `auto` on CUDA tries these in order (fastest first, per bench/bench_gradient_penalty.py).
CUDA_ORDER = ("cuda", "triton")


class GradNormPenaltyFunction(torch.autograd.Function):
    """Fused forward (one read of grad) whose backward is itself differentiable (GradNormPenaltyBackward)."""

    @staticmethod
    def forward(ctx, grad, target, mode, backend):
        penalty, norm = _kernels(backend).forward(grad, target, mode)
        ctx.save_for_backward(grad, norm)
        ctx.config = (target, mode, backend)
        return penalty

    @staticmethod
    def backward(ctx, upstream):
        grad, norm = ctx.saved_tensors
        target, mode, backend = ctx.config
        if plain_backward():
            grad_grad = _kernels(backend).backward(grad, norm, upstream.to(norm.dtype).contiguous(), target, mode)
        else:
            grad_grad = GradNormPenaltyBackward.apply(grad, norm, upstream, target, mode, backend)
        return grad_grad, None, None, None


class GradNormPenaltyBackward(torch.autograd.Function):
    """dL/dg in one fused pass; its own backward (the second order) in PyTorch ops."""

    @staticmethod
    def forward(ctx, grad, norm, upstream, target, mode, backend):
        upstream = upstream.to(norm.dtype).contiguous()
        ctx.save_for_backward(grad, upstream)
        ctx.config = (target, mode)
        return _kernels(backend).backward(grad, norm, upstream, target, mode)

    @staticmethod
    def backward(ctx, v):
        grad, upstream = ctx.saved_tensors
        target, mode = ctx.config
        g = grad.reshape(grad.shape[0], -1).to(upstream.dtype)
        v = v.reshape(grad.shape[0], -1).to(upstream.dtype)
        norm = torch.linalg.vector_norm(g, dim=1)
        factor, factor_slope = _grad_factor(norm, target, mode)
        dot = (v * g).sum(dim=1)
        grad_upstream = factor * dot
        safe_norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        coef_g = upstream * factor_slope * dot / safe_norm
        grad_grad = upstream[:, None] * factor[:, None] * v + coef_g[:, None] * g
        return grad_grad.to(grad.dtype).view_as(grad), None, grad_upstream, None, None, None


def grad_norm_penalty(grad, target=1.0, mode="two_sided"):
    """Per-sample gradient-norm penalty.

    Args:
        grad: [B, *] floating tensor (the critic's gradient with respect to its input).
        target: the norm the penalty pulls towards (two_sided, one_sided); ignored by squared.
        mode: "two_sided" (WGAN-GP), "one_sided" (WGAN-LP) or "squared" (R1/R2).
    Returns:
        [B] penalties, float32 (float64 for float64 grad).
    """
    check_tensor(grad, "grad")
    check_choice(mode, "mode", tuple(MODES))
    if grad.dim() < 1 or grad.shape[0] == 0:
        raise ValueError(f"grad must have a non-empty batch dimension, got shape {tuple(grad.shape)}")
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise TypeError(f"target must be a number, got {type(target).__name__}")
    backend = backends.select_cached("grad_norm_penalty", grad.device, cuda_order=CUDA_ORDER)
    if backend == "reference":
        return grad_norm_penalty_reference(grad, target, mode)
    (grad,) = batch_major(grad)
    return GradNormPenaltyFunction.apply(grad, float(target), MODES[mode], backend)


def grad_norm_penalty_reference(grad, target=1.0, mode="two_sided"):
    """The specification, in plain PyTorch: [B, *] -> [B] (see the module docstring)."""
    norm = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1).to(acc_dtype(grad.dtype)), dim=1)
    if mode == "squared":
        return norm * norm
    excess = norm - target
    if mode == "one_sided":
        excess = excess.clamp(min=0)
    return excess * excess


def _grad_factor(norm, target, mode):
    """h(n) = phi'(n) / n and its derivative h'(n), both 0 where they are undefined (n = 0)."""
    mode = mode if isinstance(mode, str) else {v: k for k, v in MODES.items()}[mode]
    if mode == "squared":
        return torch.full_like(norm, 2.0), torch.zeros_like(norm)
    positive = norm > 0
    safe = torch.where(positive, norm, torch.ones_like(norm))
    active = positive if mode == "two_sided" else positive & (norm > target)
    factor = torch.where(active, 2.0 * (norm - target) / safe, torch.zeros_like(norm))
    slope = torch.where(active, 2.0 * target / (safe * safe), torch.zeros_like(norm))
    return factor, slope


class _ExtensionKernels:
    """cpp and cuda: the C++ ops, dispatched on the tensors' device by torch."""

    @staticmethod
    def forward(grad, target, mode):
        return torch.ops.fastgan.grad_norm_penalty_forward(grad, target, mode)

    @staticmethod
    def backward(grad, norm, upstream, target, mode):
        return torch.ops.fastgan.grad_norm_penalty_backward(grad, norm, upstream, target, mode)


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import grad_norm_penalty as triton_kernels
        return triton_kernels
    return _ExtensionKernels


@_ext.on_load
def _register_fakes():
    @torch.library.register_fake("fastgan::grad_norm_penalty_forward")
    def _forward_fake(grad, target, mode):
        batch = grad.shape[0]
        acc = acc_dtype(grad.dtype)
        return grad.new_empty(batch, dtype=acc), grad.new_empty(batch, dtype=acc)

    @torch.library.register_fake("fastgan::grad_norm_penalty_backward")
    def _backward_fake(grad, norm, upstream, target, mode):
        return torch.empty_like(grad)
