"""Triton kernels of bias_act (see fastgan/ops/bias_act.py for the maths and what is saved).

Memory is read as [outer, channels, inner] (inner = the stride of the bias dimension: any dense layout, channels_last
included). Each program owns a block of channels (BLOCK_C) and a range of outer rows, and walks them in 3-D tiles
[BLOCK_R, BLOCK_C, BLOCK_K] of about TILE elements whatever the layout (NCHW: one row, one channel, 1024 pixels;
channels_last: many rows of all channels), so the bias is loaded once per program and no index is divided per
element. Bias sums: each program
writes per-channel partial sums; a second kernel adds them per channel in a fixed order (deterministic, no atomics).
Only exp, erf and arithmetic: the kernels run under TRITON_INTERPRET=1.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from fastgan.kernels._compat import acc_dtype, cdiv, triton_op, wrap_triton

TILE = 1024          # elements per tile (BLOCK_C * BLOCK_K)
ELEMS_PER_PROGRAM = 8192

# Activation codes: fastgan/ops/bias_act.py's ACTIVATIONS order.
LINEAR, RELU, LRELU, TANH, SIGMOID, ELU, SELU, SOFTPLUS, SILU, GELU, GELU_TANH = range(11)
SAVED_Y, SAVED_X = 0, 1
# Globals a compiled kernel reads must be constexpr (the CPU interpreter does not enforce it); in jit code keep them
# right of a tensor operand (`z * C`): the interpreter cannot evaluate `C * z` for a constexpr C.
SELU_ALPHA = tl.constexpr(1.6732632423543772848170429916717)
SELU_SCALE = tl.constexpr(1.0507009873554804934193349852946)
SQRT_2_OVER_PI = tl.constexpr(0.79788456080286535587989211986876)
GELU_CUBIC = tl.constexpr(0.044715)
INV_SQRT2 = tl.constexpr(0.70710678118654752440084436210485)
INV_SQRT_2PI = tl.constexpr(0.39894228040143267793994605993438)


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _tanh(z):
    # exp of a non-positive argument only: no overflow.
    e = tl.exp(-2.0 * tl.abs(z))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0.0, -t, t)


@triton.jit
def _value(z, alpha, ACT: tl.constexpr):
    if ACT == 0:
        v = z
    elif ACT == 1:
        v = tl.where(z < 0.0, 0.0, z)
    elif ACT == 2:
        v = tl.where(z > 0.0, z, z * alpha)
    elif ACT == 3:
        v = _tanh(z)
    elif ACT == 4:
        v = _sigmoid(z)
    elif ACT == 5:
        v = tl.where(z > 0.0, z, alpha * (tl.exp(tl.minimum(z, 0.0)) - 1.0))
    elif ACT == 6:
        v = tl.where(z > 0.0, z * SELU_SCALE, (tl.exp(tl.minimum(z, 0.0)) - 1.0) * (SELU_SCALE * SELU_ALPHA))
    elif ACT == 7:
        bz = alpha * z
        # log(1 + e^bz) = max(bz, 0) + log(1 + e^-|bz|): no overflow below the threshold either.
        soft = (tl.maximum(bz, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(bz)))) / alpha
        v = tl.where(bz > 20.0, z, soft)
    elif ACT == 8:
        v = z * _sigmoid(z)
    elif ACT == 9:
        v = 0.5 * z * (1.0 + tl.math.erf(z * INV_SQRT2))
    else:
        v = 0.5 * z * (1.0 + _tanh((z + z * z * z * GELU_CUBIC) * SQRT_2_OVER_PI))
    return v


@triton.jit
def _deriv1(z, alpha, ACT: tl.constexpr):
    if ACT == 0:
        d = z * 0.0 + 1.0
    elif ACT == 1:
        d = tl.where(z > 0.0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(z > 0.0, 1.0, alpha)
    elif ACT == 3:
        t = _tanh(z)
        d = 1.0 - t * t
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif ACT == 5:
        d = tl.where(z > 0.0, 1.0, alpha * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 6:
        d = tl.where(z > 0.0, SELU_SCALE, tl.exp(tl.minimum(z, 0.0)) * (SELU_SCALE * SELU_ALPHA))
    elif ACT == 7:
        d = tl.where(alpha * z > 20.0, 1.0, _sigmoid(alpha * z))
    elif ACT == 8:
        s = _sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    elif ACT == 9:
        cdf = 0.5 * (1.0 + tl.math.erf(z * INV_SQRT2))
        d = cdf + z * (tl.exp(-0.5 * z * z) * INV_SQRT_2PI)
    else:
        z2 = z * z
        t = _tanh((z + z2 * z * GELU_CUBIC) * SQRT_2_OVER_PI)
        du = (z2 * (3.0 * GELU_CUBIC) + 1.0) * SQRT_2_OVER_PI
        d = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
    return d


@triton.jit
def _deriv2(z, alpha, ACT: tl.constexpr):
    if ACT <= 2:
        d = z * 0.0
    elif ACT == 3:
        t = _tanh(z)
        d = -2.0 * t * (1.0 - t * t)
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s) * (1.0 - 2.0 * s)
    elif ACT == 5:
        d = tl.where(z > 0.0, 0.0, alpha * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 6:
        d = tl.where(z > 0.0, 0.0, tl.exp(tl.minimum(z, 0.0)) * (SELU_SCALE * SELU_ALPHA))
    elif ACT == 7:
        s = _sigmoid(alpha * z)
        d = tl.where(alpha * z > 20.0, 0.0, alpha * s * (1.0 - s))
    elif ACT == 8:
        s = _sigmoid(z)
        d = s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    elif ACT == 9:
        d = tl.exp(-0.5 * z * z) * (2.0 - z * z) * INV_SQRT_2PI
    else:
        z2 = z * z
        t = _tanh((z + z2 * z * GELU_CUBIC) * SQRT_2_OVER_PI)
        s = 1.0 - t * t
        du = (z2 * (3.0 * GELU_CUBIC) + 1.0) * SQRT_2_OVER_PI
        ddu = z * (6.0 * SQRT_2_OVER_PI * GELU_CUBIC)
        d = s * du - z * t * s * du * du + 0.5 * z * s * ddu
    return d


@triton.jit
def _ydiff1(r, alpha, ACT: tl.constexpr):
    # act'(z) from r = y / gain (the activations that save y only).
    if ACT == 0:
        d = r * 0.0 + 1.0
    elif ACT == 1:
        d = tl.where(r > 0.0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(r > 0.0, 1.0, alpha)
    elif ACT == 3:
        d = 1.0 - r * r
    elif ACT == 4:
        d = r * (1.0 - r)
    elif ACT == 5:
        d = tl.where(r > 0.0, 1.0, r + alpha)
    else:
        d = tl.where(r > 0.0, SELU_SCALE, r + SELU_SCALE * SELU_ALPHA)
    return d


@triton.jit
def _ydiff2(r, alpha, ACT: tl.constexpr):
    # d/dy of gain * act'(z), as a function of r = y / gain.
    if ACT == 3:
        d = -2.0 * r
    elif ACT == 4:
        d = 1.0 - 2.0 * r
    elif ACT >= 5:
        d = tl.where(r > 0.0, 0.0, 1.0)
    else:
        d = r * 0.0
    return d


@triton.jit
def _factor(s, alpha, gain, inv_gain, clamp, ACT: tl.constexpr, SAVED: tl.constexpr, HAS_CLAMP: tl.constexpr):
    if SAVED == 0:
        f = gain * _ydiff1(s * inv_gain, alpha, ACT)
    else:
        f = gain * _deriv1(s, alpha, ACT)
        if HAS_CLAMP:
            f = tl.where(tl.abs(_value(s, alpha, ACT) * gain) > clamp, 0.0, f)
    return f


@triton.jit
def _factor_slope(s, alpha, gain, inv_gain, clamp, ACT: tl.constexpr, SAVED: tl.constexpr,
                  HAS_CLAMP: tl.constexpr):
    if SAVED == 0:
        f = _ydiff2(s * inv_gain, alpha, ACT)
    else:
        f = gain * _deriv2(s, alpha, ACT)
        if HAS_CLAMP:
            f = tl.where(tl.abs(_value(s, alpha, ACT) * gain) > clamp, 0.0, f)
    return f


@triton.jit
def _forward_kernel(x_ptr, b_ptr, y_ptr, p_ptr, C, inner, outer, rows_per_program, alpha, gain, clamp,
                    ACT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK_R: tl.constexpr,
                    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, ACC_FP64: tl.constexpr):
    acc_type = tl.float64 if ACC_FP64 else tl.float32
    if ACC_FP64:
        # fp64 parameters come from memory: scalar kernel arguments are fp32 (alpha = 0.2 would be rounded).
        alpha = tl.load(p_ptr)
        gain = tl.load(p_ptr + 1)
        inv_gain = tl.load(p_ptr + 2)
        clamp = tl.load(p_ptr + 3)
    pid_c = tl.program_id(0)
    pid_r = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    if HAS_BIAS:
        b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(acc_type)[None, :, None]
    for r0 in range(0, rows_per_program, BLOCK_R):
        row = pid_r * rows_per_program + r0 + tl.arange(0, BLOCK_R)
        for k0 in range(0, inner, BLOCK_K):
            # [BLOCK_R, BLOCK_C, BLOCK_K] tile (inlined: nested jit calls are slow under the interpreter)
            k = k0 + tl.arange(0, BLOCK_K)
            offs = ((row.to(tl.int64)[:, None] * C + c.to(tl.int64)[None, :]) * inner)[:, :, None] + k[None, None, :]
            mask = ((row < outer)[:, None] & (c < C)[None, :])[:, :, None] & (k < inner)[None, None, :]
            z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(acc_type)
            if HAS_BIAS:
                z = z + b
            v = _value(z, alpha, ACT) * gain
            if HAS_CLAMP:
                v = tl.minimum(tl.maximum(v, -clamp), clamp)
            tl.store(y_ptr + offs, v.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(dy_ptr, s_ptr, b_ptr, dx_ptr, partial_ptr, p_ptr, C, inner, outer, rows_per_program, alpha, gain,
                     inv_gain, clamp, ACT: tl.constexpr, SAVED: tl.constexpr, HAS_BIAS: tl.constexpr,
                     HAS_CLAMP: tl.constexpr, NEED_DB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_K: tl.constexpr, ACC_FP64: tl.constexpr):
    acc_type = tl.float64 if ACC_FP64 else tl.float32
    if ACC_FP64:
        # fp64 parameters come from memory: scalar kernel arguments are fp32 (alpha = 0.2 would be rounded).
        alpha = tl.load(p_ptr)
        gain = tl.load(p_ptr + 1)
        inv_gain = tl.load(p_ptr + 2)
        clamp = tl.load(p_ptr + 3)
    pid_c = tl.program_id(0)
    pid_r = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    if HAS_BIAS:
        b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(acc_type)[None, :, None]
    total = tl.zeros([BLOCK_R, BLOCK_C, BLOCK_K], dtype=acc_type)
    for r0 in range(0, rows_per_program, BLOCK_R):
        row = pid_r * rows_per_program + r0 + tl.arange(0, BLOCK_R)
        for k0 in range(0, inner, BLOCK_K):
            # [BLOCK_R, BLOCK_C, BLOCK_K] tile (inlined: nested jit calls are slow under the interpreter)
            k = k0 + tl.arange(0, BLOCK_K)
            offs = ((row.to(tl.int64)[:, None] * C + c.to(tl.int64)[None, :]) * inner)[:, :, None] + k[None, None, :]
            mask = ((row < outer)[:, None] & (c < C)[None, :])[:, :, None] & (k < inner)[None, None, :]
            dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(acc_type)
            if SAVED == 0 and ACT == 0:
                d = dy * gain
            else:
                s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(acc_type)
                if SAVED == 1 and HAS_BIAS:
                    s = s + b
                d = dy * _factor(s, alpha, gain, inv_gain, clamp, ACT, SAVED, HAS_CLAMP)
            tl.store(dx_ptr + offs, d.to(dx_ptr.dtype.element_ty), mask=mask)
            if NEED_DB:
                total += tl.where(mask, d, 0.0)
    if NEED_DB:
        tl.store(partial_ptr + pid_r.to(tl.int64) * C + c, tl.sum(tl.sum(total, axis=2), axis=0), mask=c < C)


@triton.jit
def _grad2_kernel(u_ptr, dy_ptr, s_ptr, b_ptr, gdy_ptr, gs_ptr, partial_ptr, p_ptr, C, inner, outer, rows_per_program,
                  alpha, gain, inv_gain, clamp, ACT: tl.constexpr, SAVED: tl.constexpr, HAS_BIAS: tl.constexpr,
                  HAS_CLAMP: tl.constexpr, NEED_GDY: tl.constexpr, NEED_GS: tl.constexpr, NEED_GB: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, ACC_FP64: tl.constexpr):
    acc_type = tl.float64 if ACC_FP64 else tl.float32
    if ACC_FP64:
        # fp64 parameters come from memory: scalar kernel arguments are fp32 (alpha = 0.2 would be rounded).
        alpha = tl.load(p_ptr)
        gain = tl.load(p_ptr + 1)
        inv_gain = tl.load(p_ptr + 2)
        clamp = tl.load(p_ptr + 3)
    pid_c = tl.program_id(0)
    pid_r = tl.program_id(1)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    if HAS_BIAS:
        b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(acc_type)[None, :, None]
    total = tl.zeros([BLOCK_R, BLOCK_C, BLOCK_K], dtype=acc_type)
    for r0 in range(0, rows_per_program, BLOCK_R):
        row = pid_r * rows_per_program + r0 + tl.arange(0, BLOCK_R)
        for k0 in range(0, inner, BLOCK_K):
            # [BLOCK_R, BLOCK_C, BLOCK_K] tile (inlined: nested jit calls are slow under the interpreter)
            k = k0 + tl.arange(0, BLOCK_K)
            offs = ((row.to(tl.int64)[:, None] * C + c.to(tl.int64)[None, :]) * inner)[:, :, None] + k[None, None, :]
            mask = ((row < outer)[:, None] & (c < C)[None, :])[:, :, None] & (k < inner)[None, None, :]
            u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(acc_type)
            if SAVED == 0 and ACT == 0:
                s = u * 0.0
            else:
                s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(acc_type)
                if SAVED == 1 and HAS_BIAS:
                    s = s + b
            if NEED_GDY:
                g = u * _factor(s, alpha, gain, inv_gain, clamp, ACT, SAVED, HAS_CLAMP)
                tl.store(gdy_ptr + offs, g.to(gdy_ptr.dtype.element_ty), mask=mask)
            if NEED_GS or NEED_GB:
                dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(acc_type)
                g = u * dy * _factor_slope(s, alpha, gain, inv_gain, clamp, ACT, SAVED, HAS_CLAMP)
                if NEED_GS:
                    tl.store(gs_ptr + offs, g.to(gs_ptr.dtype.element_ty), mask=mask)
                if NEED_GB:
                    total += tl.where(mask, g, 0.0)
    if NEED_GB:
        tl.store(partial_ptr + pid_r.to(tl.int64) * C + c, tl.sum(tl.sum(total, axis=2), axis=0), mask=c < C)


@triton.jit
def _sum_partials(partial_ptr, out_ptr, C, programs, BLOCK: tl.constexpr):
    c = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = c < C
    total = tl.load(partial_ptr + c, mask=mask, other=0.0)
    for p in range(1, programs):
        total += tl.load(partial_ptr + p * C + c, mask=mask, other=0.0)
    tl.store(out_ptr + c, total.to(out_ptr.dtype.element_ty), mask=mask)


def _layout(t: torch.Tensor, dim: int):
    """(outer, channels, inner) of a dense tensor for the bias dimension `dim`."""
    n = t.numel()
    if t.dim() == 0:
        return 1, 1, n
    channels = t.shape[dim]
    if channels <= 1 or n == 0:
        return 1, channels, (n if channels else 0)
    inner = t.stride(dim)
    return n // (channels * inner), channels, inner


def _grid(outer: int, channels: int, inner: int):
    """(BLOCK_R, BLOCK_C, BLOCK_K, rows per program, grid over channel blocks, grid over row ranges)."""
    block_k = min(triton.next_power_of_2(max(inner, 1)), TILE)
    block_c = min(triton.next_power_of_2(max(channels, 1)), max(1, TILE // block_k))
    block_r = min(triton.next_power_of_2(max(outer, 1)), max(1, TILE // (block_c * block_k)))
    # Whole tiles of rows per program, about ELEMS_PER_PROGRAM elements each.
    tiles = max(1, ELEMS_PER_PROGRAM // (block_r * block_c * max(inner, 1)))
    rows = block_r * min(tiles, cdiv(outer, block_r))
    return block_r, block_c, block_k, rows, cdiv(channels, block_c), cdiv(outer, rows)


def _params(like: torch.Tensor, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    """The fp64 parameters as a tensor (read by fp64 kernels only; others get a dummy)."""
    if like.dtype != torch.float64:
        return like
    # non_blocking: a blocking copy from pageable memory would synchronise the device at every launch.
    return torch.tensor([alpha, gain, 1.0 / gain if gain != 0 else 0.0, clamp],
                        dtype=torch.float64).to(like.device, non_blocking=True)


def _finish(partial: torch.Tensor, out: torch.Tensor, channels: int, programs: int):
    block = min(1024, triton.next_power_of_2(max(channels, 1)))
    wrap_triton(_sum_partials)[(cdiv(channels, block),)](partial, out, channels, programs, BLOCK=block)


@triton_op("bias_act_forward_triton")
def forward(x: torch.Tensor, bias: Optional[torch.Tensor], act: int, alpha: float, gain: float, clamp: float,
            dim: int) -> torch.Tensor:
    """x: dense, any layout -> y like x."""
    y = torch.empty_like(x)
    outer, channels, inner = _layout(x, dim)
    if x.numel() == 0:
        return y
    block_r, block_c, block_k, rows, grid_c, grid_r = _grid(outer, channels, inner)
    wrap_triton(_forward_kernel)[(grid_c, grid_r)](
        x, bias if bias is not None else x, y, _params(x, alpha, gain, clamp), channels, inner, outer, rows, alpha,
        gain, clamp, ACT=act, HAS_BIAS=bias is not None, HAS_CLAMP=clamp >= 0, BLOCK_R=block_r, BLOCK_C=block_c,
        BLOCK_K=block_k, ACC_FP64=x.dtype == torch.float64)
    return y


@triton_op("bias_act_backward_triton")
def backward(dy: torch.Tensor, x: Optional[torch.Tensor], bias: Optional[torch.Tensor], y: Optional[torch.Tensor],
             act: int, saved: int, alpha: float, gain: float, clamp: float, dim: int,
             need_db: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """dy, and x (saved == 1) or y (saved == 0; None for linear), all of one layout -> (dx, db)."""
    ref = x if saved == SAVED_X else (y if y is not None else dy)
    s = x if saved == SAVED_X else y
    dx = torch.empty_like(ref)
    outer, channels, inner = _layout(ref, dim)
    db = torch.empty(channels if need_db else 0, dtype=dy.dtype, device=dy.device)
    if ref.numel() == 0:
        if need_db:
            db.zero_()
        return dx, db
    block_r, block_c, block_k, rows, grid_c, grid_r = _grid(outer, channels, inner)
    has_bias = saved == SAVED_X and bias is not None
    partial = torch.empty(grid_r * channels if need_db else 1, dtype=acc_dtype(dy.dtype), device=dy.device)
    wrap_triton(_backward_kernel)[(grid_c, grid_r)](
        dy, s if s is not None else dy, bias if has_bias else dy, dx, partial, _params(dy, alpha, gain, clamp),
        channels, inner, outer, rows, alpha, gain, 1.0 / gain if gain != 0 else 0.0, clamp, ACT=act, SAVED=saved,
        HAS_BIAS=has_bias, HAS_CLAMP=clamp >= 0 and saved == SAVED_X, NEED_DB=need_db, BLOCK_R=block_r,
        BLOCK_C=block_c, BLOCK_K=block_k, ACC_FP64=dy.dtype == torch.float64)
    if need_db:
        _finish(partial, db, channels, grid_r)
    return dx, db


@triton_op("bias_act_grad2_triton")
def grad2(u: torch.Tensor, dy: torch.Tensor, x: Optional[torch.Tensor], bias: Optional[torch.Tensor],
          y: Optional[torch.Tensor], act: int, saved: int, alpha: float, gain: float, clamp: float, dim: int,
          need_gdy: bool, need_gs: bool, need_gb: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (g_dy, g_s, g_b); the ones not needed (and g_s, g_b of linear/relu/lrelu: zero) are empty [0]."""
    ref = x if saved == SAVED_X else (y if y is not None else u)
    s = x if saved == SAVED_X else y
    smooth = act > LRELU
    need_gs = need_gs and smooth
    need_gb = need_gb and smooth and saved == SAVED_X and bias is not None
    g_dy = torch.empty_like(ref) if need_gdy else u.new_empty(0)
    g_s = torch.empty_like(ref) if need_gs else u.new_empty(0)
    outer, channels, inner = _layout(ref, dim)
    g_b = u.new_empty(channels if need_gb else 0)
    if ref.numel() == 0 or not (need_gdy or need_gs or need_gb):
        if need_gb:
            g_b.zero_()
        return g_dy, g_s, g_b
    block_r, block_c, block_k, rows, grid_c, grid_r = _grid(outer, channels, inner)
    has_bias = saved == SAVED_X and bias is not None
    partial = torch.empty(grid_r * channels if need_gb else 1, dtype=acc_dtype(u.dtype), device=u.device)
    wrap_triton(_grad2_kernel)[(grid_c, grid_r)](
        u, dy, s if s is not None else u, bias if has_bias else u, g_dy if need_gdy else u, g_s if need_gs else u,
        partial, _params(u, alpha, gain, clamp), channels, inner, outer, rows, alpha, gain,
        1.0 / gain if gain != 0 else 0.0, clamp, ACT=act, SAVED=saved, HAS_BIAS=has_bias,
        HAS_CLAMP=clamp >= 0 and saved == SAVED_X, NEED_GDY=need_gdy, NEED_GS=need_gs, NEED_GB=need_gb,
        BLOCK_R=block_r, BLOCK_C=block_c, BLOCK_K=block_k, ACC_FP64=u.dtype == torch.float64)
    if need_gb:
        _finish(partial, g_b, channels, grid_r)
    return g_dy, g_s, g_b
