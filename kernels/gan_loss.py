"""Triton kernels of gan_loss (maths in fastgan/ops/gan_loss.py), and the per-element loss terms that
kernels/mixture_gan_loss.py shares.

Forward: each program takes BLOCK elements of the index space (paired, or real then fake), writes the loss or the
gradient and one (real, fake) partial sum; a one-program pass adds the partials in a fixed order (skipped when one
program covers everything). Backward: one elementwise pass, d logit = upstream * saved gradient.
No libdevice: log1p is built from log (Goldberg's trick) so the kernels also run under TRITON_INTERPRET=1.
"""
import os
import struct

import torch
import triton
import triton.language as tl

from fastgan.kernels._compat import acc_dtype, cdiv, triton_op, wrap_triton

BLOCK = 1024
RELATIVISTIC = 5


def split_double(x):
    """(hi, lo) float32 values with hi + lo == x to ~48 bits: Triton passes float arguments as float32, so the
    kernels take doubles as such pairs and add them back in the accumulation dtype."""
    hi = struct.unpack("f", struct.pack("f", x))[0]
    return hi, struct.unpack("f", struct.pack("f", x - hi))[0]


@triton.jit
def terms(r, f, ta, tb, tc, KIND: tl.constexpr, PLAYER: tl.constexpr):
    """Per-element loss terms and derivatives: (loss of r, loss of f, d/d r, d/d f). Separable kinds give the real
    and fake terms apart (the discriminator's pairs add them); relativistic puts the paired loss in the fake slot.

    Flat on purpose (no calls to other jit functions): the interpreter re-patches triton.language on every jit call.
    softplus(x) = max(x, 0) + log1p(e) and sigmoid(x) = [x >= 0 ? 1 : e] / (1 + e) with e = exp(-|x|) <= 1, so
    nothing overflows; log1p(e) = log(u) * e / (u - 1) with u = 1 + e (Goldberg), accurate without libdevice.
    """
    zero = f * 0.0
    if KIND == 5:  # relativistic (RpGAN): softplus(f - r) for D, softplus(r - f) for G
        if PLAYER == 0:
            x = f - r
        else:
            x = r - f
        e = tl.exp(-tl.abs(x))
        u = 1.0 + e
        exact = u == 1.0
        lf = tl.maximum(x, 0.0) + tl.where(exact, e, tl.log(u) * e / tl.where(exact, 1.0, u - 1.0))
        s = tl.where(x >= 0.0, 1.0, e) / u
        if PLAYER == 0:
            df = s
        else:
            df = -s
        dr = -df
        lr = zero
    elif PLAYER == 1:
        lr = zero
        dr = zero
        if KIND == 1:  # minimax: -softplus(f) = log(1 - sigmoid(f))
            e = tl.exp(-tl.abs(f))
            u = 1.0 + e
            exact = u == 1.0
            lf = -(tl.maximum(f, 0.0) + tl.where(exact, e, tl.log(u) * e / tl.where(exact, 1.0, u - 1.0)))
            df = -(tl.where(f >= 0.0, 1.0, e) / u)
        elif KIND == 2 or KIND == 3:  # hinge, wasserstein: -f
            lf = -f
            df = zero - 1.0
        elif KIND == 4:  # lsgan
            t = f - tc
            lf = 0.5 * t * t
            df = t
        else:  # nonsaturating: softplus(-f)
            e = tl.exp(-tl.abs(f))
            u = 1.0 + e
            exact = u == 1.0
            lf = tl.maximum(-f, 0.0) + tl.where(exact, e, tl.log(u) * e / tl.where(exact, 1.0, u - 1.0))
            df = -(tl.where(f <= 0.0, 1.0, e) / u)
    else:
        if KIND == 2:  # hinge: relu(1 - r) + relu(1 + f); gradient 0 at the kinks, like torch's relu
            tr = 1.0 - r
            tf = 1.0 + f
            lr = tl.maximum(tr, 0.0)
            lf = tl.maximum(tf, 0.0)
            dr = tl.where(tr > 0.0, zero - 1.0, zero)
            df = tl.where(tf > 0.0, zero + 1.0, zero)
        elif KIND == 3:  # wasserstein: -r + f
            lr = -r
            lf = f
            dr = zero - 1.0
            df = zero + 1.0
        elif KIND == 4:  # lsgan
            tr = r - tb
            tf = f - ta
            lr = 0.5 * tr * tr
            lf = 0.5 * tf * tf
            dr = tr
            df = tf
        else:  # nonsaturating, minimax: softplus(-r) + softplus(f)
            er = tl.exp(-tl.abs(r))
            ur = 1.0 + er
            exact_r = ur == 1.0
            lr = tl.maximum(-r, 0.0) + tl.where(exact_r, er, tl.log(ur) * er / tl.where(exact_r, 1.0, ur - 1.0))
            dr = -(tl.where(r <= 0.0, 1.0, er) / ur)
            ef = tl.exp(-tl.abs(f))
            uf = 1.0 + ef
            exact_f = uf == 1.0
            lf = tl.maximum(f, 0.0) + tl.where(exact_f, ef, tl.log(uf) * ef / tl.where(exact_f, 1.0, uf - 1.0))
            df = tl.where(f >= 0.0, 1.0, ef) / uf
    return lr, lf, dr, df


@triton.jit
def _forward(real_ptr, fake_ptr, loss_ptr, grad_ptr, partial_ptr, n_real, total, a_hi, a_lo, b_hi, b_lo, c_hi,
             c_lo, den_r, den_f, KIND: tl.constexpr, PLAYER: tl.constexpr, PAIRED: tl.constexpr, NONE: tl.constexpr,
             NEED_GRAD: tl.constexpr, SINGLE: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < total
    acc = tl.float64 if ACC_FP64 else tl.float32
    # Doubles arrive as float32 (hi, lo) pairs (split_double); tl.cast also takes the interpreter's Python floats.
    ta = tl.cast(a_hi, acc) + tl.cast(a_lo, acc)
    tb = tl.cast(b_hi, acc) + tl.cast(b_lo, acc)
    tc = tl.cast(c_hi, acc) + tl.cast(c_lo, acc)
    # The reduction's scale is 1 / den (integer counts: exact in fp64, unlike a float32 argument).
    if PAIRED:
        r = tl.load(real_ptr + idx, mask=mask, other=0.0).to(acc)
        f = tl.load(fake_ptr + idx, mask=mask, other=0.0).to(acc)
        lr, lf, dr, df = terms(r, f, ta, tb, tc, KIND, PLAYER)
        loss = lr + lf
        if NEED_GRAD:
            tl.store(grad_ptr + idx, dr / den_r, mask=mask)
            tl.store(grad_ptr + n_real + idx, df / den_f, mask=mask)
        sum_f = tl.sum(tl.where(mask, loss, 0.0), axis=0)
        sum_r = sum_f * 0.0
    else:
        is_real = idx < n_real
        r = tl.load(real_ptr + idx, mask=mask & is_real, other=0.0).to(acc)
        f = tl.load(fake_ptr + tl.where(is_real, 0, idx - n_real), mask=mask & (idx >= n_real), other=0.0).to(acc)
        lr, lf, dr, df = terms(r, f, ta, tb, tc, KIND, PLAYER)
        loss = tl.where(is_real, lr, lf)
        if NEED_GRAD:
            tl.store(grad_ptr + idx, tl.where(is_real, dr / den_r, df / den_f), mask=mask)
        sum_r = tl.sum(tl.where(mask & is_real, lr, 0.0), axis=0)
        sum_f = tl.sum(tl.where(mask & (idx >= n_real), lf, 0.0), axis=0)
    if NONE:
        tl.store(loss_ptr + idx, loss, mask=mask)
    elif SINGLE:
        tl.store(loss_ptr, sum_r / den_r + sum_f / den_f)
    else:
        tl.store(partial_ptr + 2 * pid, sum_r)
        tl.store(partial_ptr + 2 * pid + 1, sum_f)


@triton.jit
def _finish(partial_ptr, loss_ptr, programs, den_r, den_f, ACC_FP64: tl.constexpr, BLOCK_P: tl.constexpr):
    acc = tl.float64 if ACC_FP64 else tl.float32
    sum_r = tl.zeros([BLOCK_P], dtype=acc)
    sum_f = tl.zeros([BLOCK_P], dtype=acc)
    for start in range(0, programs, BLOCK_P):
        k = start + tl.arange(0, BLOCK_P)
        sum_r += tl.load(partial_ptr + 2 * k, mask=k < programs, other=0.0)
        sum_f += tl.load(partial_ptr + 2 * k + 1, mask=k < programs, other=0.0)
    tl.store(loss_ptr, tl.sum(sum_r, axis=0) / den_r + tl.sum(sum_f, axis=0) / den_f)


def interpreter_rounds_bf16(dtype):
    """Triton's interpreter converts fp32 -> bf16 toward zero (seen with Triton 3.8); GPUs round to nearest even.
    Kernels then round by hand (rne_bf16) so that CPU runs see the GPU's results."""
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def rne_bf16(x):
    """fp32 -> bf16 rounded to nearest even through the bits (inf stays inf, quiet NaNs stay NaN)."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _scale(up_ptr, grad_ptr, out_ptr, m, n, RNE_BF16: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    up = tl.load(up_ptr + idx % m, mask=mask, other=0.0)
    g = tl.load(grad_ptr + idx, mask=mask, other=0.0)
    if RNE_BF16:
        tl.store(out_ptr + idx, rne_bf16(up * g), mask=mask)
    else:
        tl.store(out_ptr + idx, (up * g).to(out_ptr.dtype.element_ty), mask=mask)


@triton_op("gan_loss_forward_triton")
def forward(real: torch.Tensor, fake: torch.Tensor, kind: int, player: int, reduction: int, a: float, b: float,
            c: float, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as fastgan::gan_loss_forward: 1-D contiguous logits -> (loss, gradient buffer)."""
    reads_real = player == 0 or kind == RELATIVISTIC
    paired = kind == RELATIVISTIC or (player == 0 and reduction == 0)
    n_real = real.numel() if reads_real else 0
    n_fake = fake.numel()
    total = n_fake if paired else n_real + n_fake
    acc = acc_dtype(fake.dtype)
    loss = torch.empty(total if reduction == 0 else (), dtype=acc, device=fake.device)
    grad = torch.empty(n_real + n_fake if need_grad else 0, dtype=acc, device=fake.device)
    den_r = den_f = 1
    if reduction == 1:
        den_f = total if paired else n_fake
        den_r = (total if paired else n_real) if n_real else 1
    programs = cdiv(total, BLOCK)
    partial = torch.empty(2 * programs, dtype=acc, device=fake.device)
    fp64 = acc == torch.float64
    wrap_triton(_forward)[(programs,)](
        real, fake, loss, grad if need_grad else partial, partial, n_real, total, *split_double(a), *split_double(b),
        *split_double(c), den_r, den_f,
        KIND=kind, PLAYER=player, PAIRED=paired, NONE=reduction == 0, NEED_GRAD=need_grad, SINGLE=programs == 1,
        ACC_FP64=fp64, BLOCK=BLOCK)
    if reduction != 0 and programs > 1:
        wrap_triton(_finish)[(1,)](partial, loss, programs, den_r, den_f, ACC_FP64=fp64,
                                   BLOCK_P=min(1024, triton.next_power_of_2(programs)))
    return loss, grad


@triton_op("gan_loss_backward_triton")
def backward(upstream: torch.Tensor, grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """out[i] = upstream[i % m] * grad[i] in like's dtype (m = 1 for mean/sum)."""
    n = grad.numel()
    out = torch.empty(n, dtype=like.dtype, device=like.device)
    if n:
        wrap_triton(_scale)[(cdiv(n, BLOCK),)](upstream, grad, out, upstream.numel(), n,
                                               RNE_BF16=interpreter_rounds_bf16(out.dtype), BLOCK=BLOCK)
    return out
