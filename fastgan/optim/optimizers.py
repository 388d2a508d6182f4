"""RMSprop and Adam as torch.optim.Optimizer subclasses whose step is one fused kernel per device (and dtype mix),
with an extra `clip` that clamps every parameter to [-clip, clip] in the same pass (WGAN weight clipping).

State and state_dict follow torch.optim's layout (``step`` as a CPU float32 scalar tensor, ``square_avg``,
``grad_avg``, ``momentum_buffer``; ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``), so a state_dict saved by
torch.optim.RMSprop/Adam loads here and the other way round; param groups (each may set its own ``clip``),
``zero_grad`` and lr schedulers work as with torch's. The maths is in fastgan/ops/fused_optim.py.
"""
import math

import torch

from fastgan.ops import fused_optim
from fastgan.ops._common import FLOATING


def _scalar(value):
    return value.item() if isinstance(value, torch.Tensor) else value


def _check_clip(clip):
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float)):
        raise TypeError(f"clip must be None or a number, got {type(clip).__name__}")
    if not (clip > 0) or not math.isfinite(clip):
        raise ValueError(f"clip must be None or a finite number > 0, got {clip}")
    return float(clip)


class _FusedOptimizer(torch.optim.Optimizer):
    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["clip"] = _check_clip(group.get("clip"))
        for i, p in enumerate(group["params"]):
            if p.dtype not in FLOATING:
                raise TypeError(f"params: parameter {i} of group {len(self.param_groups) - 1} has dtype {p.dtype}; "
                                "the fused step takes float32, float64, float16 or bfloat16 parameters")

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("clip", None)
            group.setdefault("maximize", False)
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if len(p_state) != 0 and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(float(p_state["step"]), dtype=torch.float32)

    @staticmethod
    def _grad(p):
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError(f"fastgan.optim does not support sparse gradients")
        return grad


class RMSprop(_FusedOptimizer):
    """torch.optim.RMSprop with `clip`: after the update every parameter is clamped to [-clip, clip] in the same
    pass (``clip=None``: plain RMSprop). WGAN's critic optimizer: ``RMSprop(critic.parameters(), lr=5e-5,
    clip=0.01)``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False, clip=None):
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize, clip=_check_clip(clip))
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum", 0)
            group.setdefault("centered", False)

    @torch.no_grad()
    def step(self, closure=None):
        """One fused RMSprop (+ clamp) step. `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            centered, use_momentum = group["centered"], group["momentum"] > 0
            params, grads, square_avgs, grad_avgs, buffers, steps = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                params.append(p)
                grads.append(self._grad(p))
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if use_momentum:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if centered:
                        state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                steps.append(state["step"])
                square_avgs.append(state["square_avg"])
                if use_momentum:
                    buffers.append(state["momentum_buffer"])
                if centered:
                    grad_avgs.append(state["grad_avg"])
            if not params:
                continue
            torch._foreach_add_(steps, 1.0)
            fused_optim.rmsprop_step_(params, grads, square_avgs, grad_avgs, buffers, lr=_scalar(group["lr"]),
                                      alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                                      momentum=group["momentum"], centered=centered, maximize=group["maximize"],
                                      clip=group["clip"])
        return loss


class Adam(_FusedOptimizer):
    """torch.optim.Adam (AdamW with ``decoupled_weight_decay=True``) with `clip`: after the update every parameter
    is clamped to [-clip, clip] in the same pass (``clip=None``: plain Adam)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, clip=None):
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        betas = (_scalar(betas[0]), _scalar(betas[1]))
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay, clip=_check_clip(clip))
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("decoupled_weight_decay", False)

    @torch.no_grad()
    def step(self, closure=None):
        """One fused Adam (+ clamp) step. `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            amsgrad = group["amsgrad"]
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                params.append(p)
                grads.append(self._grad(p))
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if amsgrad:
                        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                steps.append(state["step"])
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if amsgrad:
                    max_sqs.append(state["max_exp_avg_sq"])
            if not params:
                continue
            torch._foreach_add_(steps, 1.0)
            beta1, beta2 = group["betas"]
            fused_optim.adam_step_(params, grads, exp_avgs, exp_avg_sqs, max_sqs, [s.item() for s in steps],
                                   lr=_scalar(group["lr"]), beta1=_scalar(beta1), beta2=_scalar(beta2),
                                   eps=group["eps"], weight_decay=group["weight_decay"], amsgrad=amsgrad,
                                   maximize=group["maximize"],
                                   decoupled_weight_decay=group["decoupled_weight_decay"], clip=group["clip"])
        return loss
