"""Triton kernels of fused_optim (see fastgan/ops/fused_optim.py for the maths).

A multi-tensor launch per dtype: the host builds tables of the parameters' addresses (param, grad, states), sizes
and per-parameter scalars, and, per program, the parameter it updates and the chunk's first element; a program
loads its addresses from the tables and casts them to pointers. The scalars travel in a float64 tensor (Triton
would pass Python floats as fp32) and are rounded to the accumulation type in the kernel, as torch rounds them.
Square roots and divisions are IEEE round-to-nearest (tl.sqrt_rn, tl.div_rn); values are rounded to the storage
dtype wherever torch's single-tensor step writes a tensor.
"""
import math
from typing import List

import torch
import triton
import triton.language as tl

BLOCK = 1024
_TABLES = {}
_MAX_TABLES = 16


@triton.jit
def _rnd(x, like_ptr):
    """x rounded to the storage dtype (the element type of like_ptr) and back."""
    return x.to(like_ptr.dtype.element_ty).to(x.dtype)


@triton.jit
def _sqrt(x, ACC_FP64: tl.constexpr):
    if ACC_FP64:
        return tl.sqrt(x)  # fp64 square roots are correctly rounded; sqrt_rn takes fp32 only
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _div(a, b, ACC_FP64: tl.constexpr):
    if ACC_FP64:
        return a / b
    else:
        return tl.div_rn(a, b)


@triton.jit
def _lerp(start, end, weight):
    diff = end - start
    small = (weight < 0.5) & (weight > -0.5)
    return tl.where(small, start + weight * diff, end - diff * (1.0 - weight))


@triton.jit
def _locate(addr_tab, numel_ptr, program_tensor_ptr, program_start_ptr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    t = tl.load(program_tensor_ptr + pid)
    idx = tl.load(program_start_ptr + pid) + tl.arange(0, BLOCK)
    mask = idx < tl.load(numel_ptr + t)
    return t, idx, mask


@triton.jit
def _rmsprop_kernel(param_tab, grad_tab, s0_tab, s1_tab, s2_tab, numel_ptr, program_tensor_ptr, program_start_ptr,
                    hyper_ptr, like_ptr, CENTERED: tl.constexpr, MOMENTUM: tl.constexpr, WEIGHT_DECAY: tl.constexpr,
                    ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    acc = tl.float64 if ACC_FP64 else tl.float32
    t, idx, mask = _locate(param_tab, numel_ptr, program_tensor_ptr, program_start_ptr, BLOCK)
    ptype = like_ptr.dtype
    p_ptr = tl.load(param_tab + t).to(ptype)
    g_ptr = tl.load(grad_tab + t).to(ptype)
    sq_ptr = tl.load(s0_tab + t).to(ptype)
    neg_lr = tl.load(hyper_ptr + 0).to(acc)
    alpha = tl.load(hyper_ptr + 1).to(acc)
    one_minus_alpha = tl.load(hyper_ptr + 2).to(acc)
    eps = tl.load(hyper_ptr + 3).to(acc)
    wd = tl.load(hyper_ptr + 4).to(acc)
    momentum = tl.load(hyper_ptr + 5).to(acc)
    lo = tl.load(hyper_ptr + 6).to(acc)
    hi = tl.load(hyper_ptr + 7).to(acc)
    sign = tl.load(hyper_ptr + 8).to(acc)

    p = tl.load(p_ptr + idx, mask=mask, other=0.0).to(acc)
    g = sign * tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc)
    if WEIGHT_DECAY:
        g = _rnd(g + wd * p, like_ptr)
    s = _rnd(tl.load(sq_ptr + idx, mask=mask, other=0.0).to(acc) * alpha, like_ptr)
    s = _rnd(s + one_minus_alpha * g * g, like_ptr)
    tl.store(sq_ptr + idx, s.to(ptype.element_ty), mask=mask)
    if CENTERED:
        ga_ptr = tl.load(s1_tab + t).to(ptype)
        a = _rnd(_lerp(tl.load(ga_ptr + idx, mask=mask, other=0.0).to(acc), g, one_minus_alpha), like_ptr)
        tl.store(ga_ptr + idx, a.to(ptype.element_ty), mask=mask)
        s = _rnd(s - a * a, like_ptr)
    avg = _rnd(_rnd(_sqrt(s, ACC_FP64), like_ptr) + eps, like_ptr)
    if MOMENTUM:
        buf_ptr = tl.load(s2_tab + t).to(ptype)
        b = _rnd(tl.load(buf_ptr + idx, mask=mask, other=0.0).to(acc) * momentum, like_ptr)
        b = _rnd(b + _div(g, avg, ACC_FP64), like_ptr)
        tl.store(buf_ptr + idx, b.to(ptype.element_ty), mask=mask)
        out = p + neg_lr * b
    else:
        out = p + _div(neg_lr * g, avg, ACC_FP64)
    out = tl.where(out < lo, lo, tl.where(out > hi, hi, out))  # NaN stays NaN, as torch.clamp
    tl.store(p_ptr + idx, out.to(ptype.element_ty), mask=mask)


@triton.jit
def _adam_kernel(param_tab, grad_tab, s0_tab, s1_tab, s2_tab, numel_ptr, program_tensor_ptr, program_start_ptr,
                 hyper_ptr, neg_step_ptr, bc2_ptr, like_ptr, WEIGHT_DECAY: tl.constexpr, AMSGRAD: tl.constexpr,
                 ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    acc = tl.float64 if ACC_FP64 else tl.float32
    t, idx, mask = _locate(param_tab, numel_ptr, program_tensor_ptr, program_start_ptr, BLOCK)
    ptype = like_ptr.dtype
    p_ptr = tl.load(param_tab + t).to(ptype)
    g_ptr = tl.load(grad_tab + t).to(ptype)
    m_ptr = tl.load(s0_tab + t).to(ptype)
    v_ptr = tl.load(s1_tab + t).to(ptype)
    one_minus_beta1 = tl.load(hyper_ptr + 0).to(acc)
    beta2 = tl.load(hyper_ptr + 1).to(acc)
    one_minus_beta2 = tl.load(hyper_ptr + 2).to(acc)
    eps = tl.load(hyper_ptr + 3).to(acc)
    wd = tl.load(hyper_ptr + 4).to(acc)
    decay = tl.load(hyper_ptr + 5).to(acc)
    lo = tl.load(hyper_ptr + 6).to(acc)
    hi = tl.load(hyper_ptr + 7).to(acc)
    sign = tl.load(hyper_ptr + 8).to(acc)
    neg_step = tl.load(neg_step_ptr + t).to(acc)
    bc2 = tl.load(bc2_ptr + t).to(acc)

    p = tl.load(p_ptr + idx, mask=mask, other=0.0).to(acc)
    g = sign * tl.load(g_ptr + idx, mask=mask, other=0.0).to(acc)
    if WEIGHT_DECAY == 1:
        g = _rnd(g + wd * p, like_ptr)
    if WEIGHT_DECAY == 2:
        p = _rnd(p * decay, like_ptr)
    m = _rnd(_lerp(tl.load(m_ptr + idx, mask=mask, other=0.0).to(acc), g, one_minus_beta1), like_ptr)
    tl.store(m_ptr + idx, m.to(ptype.element_ty), mask=mask)
    v = _rnd(tl.load(v_ptr + idx, mask=mask, other=0.0).to(acc) * beta2, like_ptr)
    v = _rnd(v + one_minus_beta2 * g * g, like_ptr)
    tl.store(v_ptr + idx, v.to(ptype.element_ty), mask=mask)
    if AMSGRAD:
        vmax_ptr = tl.load(s2_tab + t).to(ptype)
        old = tl.load(vmax_ptr + idx, mask=mask, other=0.0).to(acc)
        v = tl.where((old > v) | (old != old), old, v)  # torch.maximum propagates NaN
        tl.store(vmax_ptr + idx, v.to(ptype.element_ty), mask=mask)
    denom = _rnd(_rnd(_div(_rnd(_sqrt(v, ACC_FP64), like_ptr), bc2, ACC_FP64), like_ptr) + eps, like_ptr)
    out = p + _div(neg_step * m, denom, ACC_FP64)
    out = tl.where(out < lo, lo, tl.where(out > hi, hi, out))
    tl.store(p_ptr + idx, out.to(ptype.element_ty), mask=mask)


def _programs(params, device):
    key = (device, tuple((p.data_ptr(), p.numel()) for p in params))
    cached = _TABLES.get(key)
    if cached is None:
        program_tensor, program_start = [], []
        for i, p in enumerate(params):
            for start in range(0, p.numel(), BLOCK):
                program_tensor.append(i)
                program_start.append(start)
        cached = (_int64([p.numel() for p in params], device), _int64(program_tensor, device),
                  _int64(program_start, device))
        if len(_TABLES) >= _MAX_TABLES:
            _TABLES.clear()
        _TABLES[key] = cached
    return cached


def _int64(values, device):
    return torch.tensor(values, dtype=torch.int64).to(device, non_blocking=True)


def _addresses(tensors, device, count):
    if not tensors:  # unused state: a table of the right length that the kernel never reads
        return _int64([0] * count, device)
    return _int64([t.data_ptr() for t in tensors], device)


def _bounds(clip, dtype):
    if math.isinf(clip):
        return -math.inf, math.inf
    hi = torch.tensor(clip, dtype=dtype).item()  # the bound in the storage dtype, as torch's clamp_
    return -hi, hi


def _groups(params):
    by_dtype = {}
    for i, p in enumerate(params):
        if p.numel():
            by_dtype.setdefault(p.dtype, []).append(i)
    return by_dtype


def _rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay, momentum,
             centered, maximize, clip):
    for dtype, idx in _groups(params).items():
        pick = lambda lst: [lst[i] for i in idx] if lst else []  # noqa: E731
        ps = pick(params)
        device = ps[0].device
        numels, program_tensor, program_start = _programs(ps, device)
        lo, hi = _bounds(clip, dtype)
        hyper = torch.tensor([-lr, alpha, 1 - alpha, eps, weight_decay, momentum, lo, hi,
                              -1.0 if maximize else 1.0], dtype=torch.float64).to(device, non_blocking=True)
        n = len(ps)
        _rmsprop_kernel[(program_tensor.numel(),)](
            _addresses(ps, device, n), _addresses(pick(grads), device, n), _addresses(pick(square_avgs), device, n),
            _addresses(pick(grad_avgs) if centered else [], device, n),
            _addresses(pick(momentum_buffers) if momentum > 0 else [], device, n), numels, program_tensor,
            program_start, hyper, ps[0], CENTERED=bool(centered), MOMENTUM=momentum > 0,
            WEIGHT_DECAY=weight_decay != 0, ACC_FP64=dtype == torch.float64, BLOCK=BLOCK)


def _adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts, lr, beta1,
          beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip):
    for dtype, idx in _groups(params).items():
        pick = lambda lst: [lst[i] for i in idx] if lst else []  # noqa: E731
        ps = pick(params)
        device = ps[0].device
        numels, program_tensor, program_start = _programs(ps, device)
        lo, hi = _bounds(clip, dtype)
        hyper = torch.tensor([1 - beta1, beta2, 1 - beta2, eps, weight_decay, 1 - lr * weight_decay, lo, hi,
                              -1.0 if maximize else 1.0], dtype=torch.float64).to(device, non_blocking=True)
        scalars = torch.tensor([pick(neg_step_sizes), pick(bias_correction2_sqrts)],
                               dtype=torch.float64).to(device, non_blocking=True)
        n = len(ps)
        wd_mode = 0 if weight_decay == 0 else (2 if decoupled_weight_decay else 1)
        _adam_kernel[(program_tensor.numel(),)](
            _addresses(ps, device, n), _addresses(pick(grads), device, n), _addresses(pick(exp_avgs), device, n),
            _addresses(pick(exp_avg_sqs), device, n), _addresses(pick(max_exp_avg_sqs) if amsgrad else [], device, n),
            numels, program_tensor, program_start, hyper, scalars[0], scalars[1], ps[0], WEIGHT_DECAY=wd_mode,
            AMSGRAD=bool(amsgrad), ACC_FP64=dtype == torch.float64, BLOCK=BLOCK)


def _rmsprop_impl(params: List[torch.Tensor], grads: List[torch.Tensor], square_avgs: List[torch.Tensor],
                  grad_avgs: List[torch.Tensor], momentum_buffers: List[torch.Tensor], lr: float, alpha: float,
                  eps: float, weight_decay: float, momentum: float, centered: bool, maximize: bool,
                  clip: float) -> None:
    _rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay, momentum,
             centered, maximize, clip)


def _adam_impl(params: List[torch.Tensor], grads: List[torch.Tensor], exp_avgs: List[torch.Tensor],
               exp_avg_sqs: List[torch.Tensor], max_exp_avg_sqs: List[torch.Tensor], neg_step_sizes: List[float],
               bias_correction2_sqrts: List[float], lr: float, beta1: float, beta2: float, eps: float,
               weight_decay: float, amsgrad: bool, maximize: bool, decoupled_weight_decay: bool,
               clip: float) -> None:
    _adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts, lr, beta1,
          beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip)


try:  # opaque ops that declare their in-place writes, so torch.compile neither traces nor reorders them
    _rmsprop_op = torch.library.custom_op(
        "fastgan::fused_optim_rmsprop_triton",
        mutates_args=("params", "square_avgs", "grad_avgs", "momentum_buffers"))(_rmsprop_impl)
    _adam_op = torch.library.custom_op(
        "fastgan::fused_optim_adam_triton",
        mutates_args=("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"))(_adam_impl)
except (AttributeError, TypeError, RuntimeError, ValueError):  # torch without custom_op: plain functions
    _rmsprop_op, _adam_op = _rmsprop_impl, _adam_impl


def rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha, eps, weight_decay, momentum,
            centered, maximize, clip):
    """One RMSprop step (+ clamp; clip = inf: none) over dense tensors of one device, in place."""
    _rmsprop_op(params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay, momentum,
                centered, maximize, clip)


def adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts, *, lr,
         beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip):
    """One Adam step (+ clamp; clip = inf: none) over dense tensors of one device, in place."""
    _adam_op(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, neg_step_sizes, bias_correction2_sqrts, lr,
             beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, clip)
