"""fused_optim: one RMSprop or Adam step over every parameter, followed by the WGAN clamp, in one pass over memory.

Maths (per element, g the gradient, p the parameter; torch.optim's single-tensor step, then the clamp):

RMSprop (Tieleman & Hinton 2012; torch.optim.RMSprop):
    g <- -g if maximize;   g <- g + wd p if wd != 0
    s <- alpha s + (1 - alpha) g^2                                   (square_avg)
    centered: a <- lerp(a, g, 1 - alpha);  d = sqrt(s - a^2) + eps   (grad_avg)
    else:     d = sqrt(s) + eps
    momentum > 0: b <- momentum b + g / d;  p <- p - lr b            (momentum_buffer)
    else:         p <- p - lr g / d
Adam (Kingma & Ba 2015; torch.optim.Adam), t the parameter's step count after the increment:
    g <- -g if maximize;   p <- (1 - lr wd) p if decoupled (AdamW) else g <- g + wd p   (wd != 0)
    m <- lerp(m, g, 1 - beta1);   v <- beta2 v + (1 - beta2) g^2;   amsgrad: v_max <- max(v_max, v), use v_max
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
Then, with a clip c:  p <- min(max(p, -c), c)   (WGAN, Arjovsky et al. 2017), c rounded to p's dtype first.

The kernels compute in fp32 (fp64 for fp64 parameters) in torch's operation order with the scalars rounded as
torch rounds them, and round to the storage dtype wherever torch's step writes a tensor, so fp32 results agree
with torch.optim to fp32 rounding and fp16/bf16 parameters follow torch's own trajectory. No gradient (an in-place
update under no_grad); nothing is saved.

Shapes: lists of equal length; each parameter's grad and states have its shape, dtype, device and strides (any
dense layout). Parameters on several devices, mixed dtypes and empty tensors are allowed. A parameter whose
tensors do not share one dense layout is updated by the reference (same maths in PyTorch ops).

Kernels: CPU, one at::parallel_for over the chunks of all parameters (two vectorised loops per L1 tile); CUDA,
one multi-tensor launch per 40 parameters (pointer table passed by value); Triton, one launch per dtype over a
table of addresses.
"""
import math

import torch

from fastgan import _ext, backends
from fastgan.ops._common import FLOATING

CUDA_ORDER = ("cuda", "triton")


def rmsprop_step_(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha=0.99, eps=1e-8,
                  weight_decay=0.0, momentum=0.0, centered=False, maximize=False, clip=None):
    """One fused RMSprop step (plus the clamp when `clip` is set) over lists of tensors, in place.

    `grad_avgs` is used when `centered`, `momentum_buffers` when `momentum > 0` (pass [] otherwise). The step
    counts are the caller's business (RMSprop's maths does not use them).
    """
    clip = _check_clip(clip)
    _check_lists(params, grads, [("square_avgs", square_avgs, True), ("grad_avgs", grad_avgs, centered),
                                 ("momentum_buffers", momentum_buffers, momentum > 0)])
    hyper = dict(lr=float(lr), alpha=float(alpha), eps=float(eps), weight_decay=float(weight_decay),
                 momentum=float(momentum), centered=bool(centered), maximize=bool(maximize))
    for device, idx in _by_device(params).items():
        backend = backends.select_cached("fused_optim", device, CUDA_ORDER)
        fused, rest = _split(idx, params, [grads, square_avgs] + ([grad_avgs] if centered else [])
                             + ([momentum_buffers] if momentum > 0 else []), backend)
        if fused:
            pick = lambda lst, use=True: [lst[i] for i in fused] if use else []  # noqa: E731
            _kernels(backend).rmsprop(pick(params), pick(grads), pick(square_avgs), pick(grad_avgs, centered),
                                      pick(momentum_buffers, momentum > 0), clip=clip, **hyper)
        for i in rest:
            rmsprop_step_reference([params[i]], [grads[i]], [square_avgs[i]],
                                   [grad_avgs[i]] if centered else [],
                                   [momentum_buffers[i]] if momentum > 0 else [], clip=clip, **hyper)


def adam_step_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1=0.9, beta2=0.999,
               eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False, clip=None):
    """One fused Adam (AdamW with decoupled_weight_decay) step plus the optional clamp, in place.

    `steps` are the parameters' step counts after this step's increment (numbers), `max_exp_avg_sqs` is used
    when `amsgrad` (pass [] otherwise).
    """
    clip = _check_clip(clip)
    _check_lists(params, grads, [("exp_avgs", exp_avgs, True), ("exp_avg_sqs", exp_avg_sqs, True),
                                 ("max_exp_avg_sqs", max_exp_avg_sqs, amsgrad)])
    if len(steps) != len(params):
        raise ValueError(f"steps must have one count per parameter ({len(params)}), got {len(steps)}")
    hyper = dict(lr=float(lr), beta1=float(beta1), beta2=float(beta2), eps=float(eps),
                 weight_decay=float(weight_decay), amsgrad=bool(amsgrad), maximize=bool(maximize),
                 decoupled_weight_decay=bool(decoupled_weight_decay))
    for device, idx in _by_device(params).items():
        backend = backends.select_cached("fused_optim", device, CUDA_ORDER)
        fused, rest = _split(idx, params, [grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if amsgrad else []),
                             backend)
        if fused:
            pick = lambda lst, use=True: [lst[i] for i in fused] if use else []  # noqa: E731
            neg_step, bc2_sqrt = adam_step_scalars([float(steps[i]) for i in fused], hyper["lr"], hyper["beta1"],
                                                   hyper["beta2"])
            _kernels(backend).adam(pick(params), pick(grads), pick(exp_avgs), pick(exp_avg_sqs),
                                   pick(max_exp_avg_sqs, amsgrad), neg_step, bc2_sqrt, clip=clip, **hyper)
        for i in rest:
            adam_step_reference([params[i]], [grads[i]], [exp_avgs[i]], [exp_avg_sqs[i]],
                                [max_exp_avg_sqs[i]] if amsgrad else [], [steps[i]], clip=clip, **hyper)


def adam_step_scalars(steps, lr, beta1, beta2):
    """Per-parameter (-lr / (1 - beta1^t), sqrt(1 - beta2^t)), in Python floats exactly as torch.optim.Adam."""
    cache, neg_step, bc2_sqrt = {}, [], []
    for step in steps:
        if step not in cache:
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            cache[step] = (-(lr / bias_correction1), bias_correction2 ** 0.5)
        a, b = cache[step]
        neg_step.append(a)
        bc2_sqrt.append(b)
    return neg_step, bc2_sqrt


def rmsprop_step_reference(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha=0.99, eps=1e-8,
                           weight_decay=0.0, momentum=0.0, centered=False, maximize=False, clip=None):
    """The specification: torch.optim.RMSprop's single-tensor step, then ``clamp_(-clip, clip)``."""
    with torch.no_grad():
        for i, param in enumerate(params):
            grad = grads[i] if not maximize else -grads[i]
            square_avg = square_avgs[i]
            if weight_decay != 0:
                grad = grad.add(param, alpha=weight_decay)
            square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            if centered:
                grad_avg = grad_avgs[i]
                grad_avg.lerp_(grad, 1 - alpha)
                avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
            else:
                avg = square_avg.sqrt()
            avg = avg.add_(eps)
            if momentum > 0:
                buf = momentum_buffers[i]
                buf.mul_(momentum).addcdiv_(grad, avg)
                param.add_(buf, alpha=-lr)
            else:
                param.addcdiv_(grad, avg, value=-lr)
            if clip is not None and math.isfinite(clip):
                param.clamp_(-clip, clip)


def adam_step_reference(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, *, lr, beta1=0.9,
                        beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                        decoupled_weight_decay=False, clip=None):
    """The specification: torch.optim.Adam's single-tensor step (steps already incremented), then the clamp."""
    with torch.no_grad():
        for i, param in enumerate(params):
            grad = grads[i] if not maximize else -grads[i]
            exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
            if weight_decay != 0:
                if decoupled_weight_decay:
                    param.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = float(steps[i])
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2 ** 0.5
            if amsgrad:
                torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
                denom = (max_exp_avg_sqs[i].sqrt() / bias_correction2_sqrt).add_(eps)
            else:
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
            if clip is not None and math.isfinite(clip):
                param.clamp_(-clip, clip)


def _check_clip(clip):
    """None (no clamp) or a finite number > 0; returned as a float, +inf for None."""
    if clip is None:
        return math.inf
    if isinstance(clip, bool) or not isinstance(clip, (int, float)):
        raise TypeError(f"clip must be None or a number, got {type(clip).__name__}")
    if not (clip > 0) or not math.isfinite(clip):
        raise ValueError(f"clip must be None or a finite number > 0, got {clip}")
    return float(clip)


def _check_lists(params, grads, states):
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"grads must have one tensor per parameter ({n}), got {len(grads)}")
    for name, lst, used in states:
        if used and len(lst) != n:
            raise ValueError(f"{name} must have one tensor per parameter ({n}), got {len(lst)}")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if p.dtype not in FLOATING:
            raise TypeError(f"params[{i}] must be float32, float64, float16 or bfloat16, got {p.dtype}")


def _by_device(params):
    groups = {}
    for i, p in enumerate(params):
        groups.setdefault(p.get_device(), []).append(i)  # an int: cheaper than building a torch.device
    return {params[idx[0]].device: idx for idx in groups.values()}


def _split(indices, params, lists, backend):
    """(indices the kernels take, indices left to the reference): a kernel needs every tensor of a parameter to
    share the parameter's dtype, device and dense layout."""
    if backend == "reference":
        return [], indices
    fused, rest = [], []
    for i in indices:
        p = params[i]
        stride = p.stride()
        ok = p.is_contiguous() or p.numel() == 0 or _dense(p)
        if ok:
            dtype, shape = p.dtype, p.shape
            for lst in lists:
                t = lst[i]
                if t.stride() != stride or t.dtype != dtype or t.shape != shape or t.get_device() != p.get_device():
                    ok = False
                    break
        (fused if ok else rest).append(i)
    return fused, rest


def _dense(p):
    expected = 1
    for size, stride in sorted(zip(p.shape, p.stride()), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


class _ExtensionKernels:
    @staticmethod
    def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha, eps, weight_decay, momentum,
                centered, maximize, clip):
        torch.ops.fastgan.fused_optim_rmsprop_(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha,
                                               eps, weight_decay, momentum, centered, maximize, clip)

    @staticmethod
    def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts, *, lr,
             beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip):
        torch.ops.fastgan.fused_optim_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes,
                                            bias_correction2_sqrts, lr, beta1, beta2, eps, weight_decay, amsgrad,
                                            maximize, decoupled_weight_decay, clip)


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import fused_optim as triton_kernels
        return triton_kernels
    return _ExtensionKernels


@_ext.on_load
def _register_fakes():
    @torch.library.register_fake("fastgan::fused_optim_rmsprop_")
    def _rmsprop_fake(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay,
                      momentum, centered, maximize, clip):
        return None

    @torch.library.register_fake("fastgan::fused_optim_adam_")
    def _adam_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts,
                   lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip):
        return None
