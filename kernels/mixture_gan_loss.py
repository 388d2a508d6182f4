"""Triton kernels of mixture_gan_loss (maths in fastgan/ops/mixture_gan_loss.py).

Forward: a (discriminator j, batch chunk) grid; each program loops over the generators i, computes both players'
per-sample losses and gradients of its logits (pair_term from kernels/gan_loss.py), accumulates d/d real over i and
stores one partial sum per (i, j, chunk). A one-program epilogue adds the partials in a fixed order into the
per-pair means as a [T_g, T_d] tile and forms the losses, the regulariser and the weight-logit gradients.
Backward: one elementwise pass, grad = up_d * J_d + up_g * J_g. No atomics: deterministic.
"""
import torch
import triton
import triton.language as tl

from fastgan.kernels._compat import acc_dtype, cdiv, triton_op, wrap_triton
from fastgan.kernels.gan_loss import interpreter_rounds_bf16, rne_bf16, split_double, terms

BLOCK_B = 256
BLOCK = 1024


@triton.jit
def _items(real_ptr, fake_ptr, gw_ptr, dw_ptr, jac_ptr, part_d_ptr, part_g_ptr, tg, td, batch, chunks, n_r, section,
           a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, KIND: tl.constexpr, NEED_GRAD: tl.constexpr, ACC_FP64: tl.constexpr,
           BLOCK_B: tl.constexpr, BLOCK_TG: tl.constexpr, BLOCK_TD: tl.constexpr):
    j = tl.program_id(0)
    k = tl.program_id(1)
    acc = tl.float64 if ACC_FP64 else tl.float32
    ta = tl.cast(a_hi, acc) + tl.cast(a_lo, acc)  # doubles as float32 (hi, lo) pairs: see split_double
    tb = tl.cast(b_hi, acc) + tl.cast(b_lo, acc)
    tc = tl.cast(c_hi, acc) + tl.cast(c_lo, acc)
    b = k * BLOCK_B + tl.arange(0, BLOCK_B)
    mask = b < batch
    # Softmax statistics of the weight logits (tiny: every program recomputes them). Inline, not a jit helper:
    # the interpreter re-patches triton.language on every jit call.
    gw = tl.load(gw_ptr + tl.arange(0, BLOCK_TG), mask=tl.arange(0, BLOCK_TG) < tg, other=float("-inf"))
    p_top = tl.max(gw, axis=0)
    p_log_sum = tl.log(tl.sum(tl.exp(gw - p_top), axis=0))
    dw = tl.load(dw_ptr + tl.arange(0, BLOCK_TD), mask=tl.arange(0, BLOCK_TD) < td, other=float("-inf"))
    q_top = tl.max(dw, axis=0)
    q_log_sum = tl.log(tl.sum(tl.exp(dw - q_top), axis=0))
    qj = tl.exp(tl.load(dw_ptr + j) - q_top - q_log_sum)
    r = tl.load(real_ptr + j.to(tl.int64) * batch + b, mask=mask, other=0.0).to(acc)
    acc_d = tl.zeros([BLOCK_B], dtype=acc)
    acc_g = tl.zeros([BLOCK_B], dtype=acc)
    for i in range(tg):
        pi = tl.exp(tl.load(gw_ptr + i) - p_top - p_log_sum)
        pair = i * td + j
        at = pair.to(tl.int64) * batch + b
        f = tl.load(fake_ptr + at, mask=mask, other=0.0).to(acc)
        lrd, lfd, drd, dfd = terms(r, f, ta, tb, tc, KIND, 0)
        lrg, lfg, drg, dfg = terms(r, f, ta, tb, tc, KIND, 1)
        ld = lrd + lfd
        lg = lrg + lfg
        tl.store(part_d_ptr + pair * chunks + k, tl.sum(tl.where(mask, ld, 0.0), axis=0))
        tl.store(part_g_ptr + pair * chunks + k, tl.sum(tl.where(mask, lg, 0.0), axis=0))
        if NEED_GRAD:
            w = pi * qj / batch  # fp64 / int stays fp64 (a float argument would be float32)
            tl.store(jac_ptr + n_r + at, w * dfd, mask=mask)
            tl.store(jac_ptr + section + n_r + at, w * dfg, mask=mask)
            acc_d += pi * drd
            acc_g += pi * drg
    if NEED_GRAD:
        at_r = j.to(tl.int64) * batch + b
        tl.store(jac_ptr + at_r, qj * acc_d / batch, mask=mask)
        tl.store(jac_ptr + section + at_r, qj * acc_g / batch, mask=mask)


@triton.jit
def _epilogue(gw_ptr, dw_ptr, part_d_ptr, part_g_ptr, jac_ptr, d_loss_ptr, g_loss_ptr, tg, td, batch, chunks, n_rf,
              section, reg_hi, reg_lo, REG: tl.constexpr, NEED_GRAD: tl.constexpr, ACC_FP64: tl.constexpr,
              BLOCK_TG: tl.constexpr, BLOCK_TD: tl.constexpr):
    acc = tl.float64 if ACC_FP64 else tl.float32
    oi = tl.arange(0, BLOCK_TG)
    oj = tl.arange(0, BLOCK_TD)
    mi = oi < tg
    mj = oj < td
    gw = tl.load(gw_ptr + oi, mask=mi, other=float("-inf"))
    dw = tl.load(dw_ptr + oj, mask=mj, other=float("-inf"))
    p_top = tl.max(gw, axis=0)
    q_top = tl.max(dw, axis=0)
    lp = tl.where(mi, gw - p_top - tl.log(tl.sum(tl.exp(gw - p_top), axis=0)), 0.0)
    lq = tl.where(mj, dw - q_top - tl.log(tl.sum(tl.exp(dw - q_top), axis=0)), 0.0)
    p = tl.where(mi, tl.exp(lp), 0.0)
    q = tl.where(mj, tl.exp(lq), 0.0)
    pairs = oi[:, None] * td + oj[None, :]
    m2 = mi[:, None] & mj[None, :]
    phi_d = tl.zeros([BLOCK_TG, BLOCK_TD], dtype=acc)
    phi_g = tl.zeros([BLOCK_TG, BLOCK_TD], dtype=acc)
    for k in range(chunks):
        phi_d += tl.load(part_d_ptr + pairs * chunks + k, mask=m2, other=0.0)
        phi_g += tl.load(part_g_ptr + pairs * chunks + k, mask=m2, other=0.0)
    phi_d = phi_d / batch
    phi_g = phi_g / batch
    reg_weight = tl.cast(reg_hi, acc) + tl.cast(reg_lo, acc)
    row_d = tl.sum(q[None, :] * phi_d, axis=1)
    row_g = tl.sum(q[None, :] * phi_g, axis=1)
    col_d = tl.sum(p[:, None] * phi_d, axis=0)
    col_g = tl.sum(p[:, None] * phi_g, axis=0)
    mean_d = tl.sum(p * row_d, axis=0)
    mean_g = tl.sum(p * row_g, axis=0)
    if REG == 1:  # mean(-log w)
        reg_d = -tl.sum(lq, axis=0) / td
        reg_g = -tl.sum(lp, axis=0) / tg
    elif REG == 2:  # sum w log w = -H(w)
        reg_d = tl.sum(q * lq, axis=0)
        reg_g = tl.sum(p * lp, axis=0)
    else:
        reg_d = mean_d * 0.0
        reg_g = mean_g * 0.0
    tl.store(d_loss_ptr, mean_d + reg_weight * reg_d)
    tl.store(g_loss_ptr, mean_g + reg_weight * reg_g)
    if NEED_GRAD:
        if REG == 1:
            dreg_p = (p * tg - 1.0) / tg
            dreg_q = (q * td - 1.0) / td
        elif REG == 2:
            dreg_p = p * (lp - reg_g)
            dreg_q = q * (lq - reg_d)
        else:
            dreg_p = p * 0.0
            dreg_q = q * 0.0
        tl.store(jac_ptr + n_rf + oi, p * (row_d - mean_d), mask=mi)
        tl.store(jac_ptr + section + n_rf + oi, p * (row_g - mean_g) + reg_weight * dreg_p, mask=mi)
        tl.store(jac_ptr + n_rf + tg + oj, q * (col_d - mean_d) + reg_weight * dreg_q, mask=mj)
        tl.store(jac_ptr + section + n_rf + tg + oj, q * (col_g - mean_g), mask=mj)


@triton.jit
def _backward(jac_ptr, up_d_ptr, up_g_ptr, real_out, fake_out, gw_out, dw_out, n_r, n_f, n_w, section,
              RNE_BF16: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = k < section
    v = tl.load(up_d_ptr) * tl.load(jac_ptr + k, mask=mask, other=0.0) \
        + tl.load(up_g_ptr) * tl.load(jac_ptr + section + k, mask=mask, other=0.0)
    if RNE_BF16:  # the interpreter truncates fp32 -> bf16: see interpreter_rounds_bf16
        v_out = rne_bf16(v)
    else:
        v_out = v.to(real_out.dtype.element_ty)
    tl.store(real_out + k, v_out, mask=mask & (k < n_r))
    in_fake = (k >= n_r) & (k < n_r + n_f)
    tl.store(fake_out + tl.where(in_fake, k - n_r, 0), v_out, mask=mask & in_fake)
    w = k - n_r - n_f
    in_g = (w >= 0) & (w < n_w)
    tl.store(gw_out + tl.where(in_g, w, 0), v, mask=mask & in_g)
    in_d = w >= n_w
    tl.store(dw_out + tl.where(in_d, w - n_w, 0), v, mask=mask & in_d)


def _sizes(fake):
    tg, td, batch = fake.shape
    n_r, n_f = td * batch, tg * td * batch
    return tg, td, batch, n_r, n_f, n_r + n_f + tg + td


@triton_op("mixture_gan_loss_forward_triton")
def forward(real: torch.Tensor, fake: torch.Tensor, g_weight_logits: torch.Tensor, d_weight_logits: torch.Tensor,
            kind: int, a: float, b: float, c: float, regularizer: int, reg_weight: float,
            need_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as fastgan::mixture_gan_loss_forward: (d_loss, g_loss, Jacobian buffer)."""
    tg, td, batch, n_r, n_f, section = _sizes(fake)
    acc = acc_dtype(fake.dtype)
    d_loss = torch.empty((), dtype=acc, device=fake.device)
    g_loss = torch.empty((), dtype=acc, device=fake.device)
    jac = torch.empty(2 * section if need_grad else 0, dtype=acc, device=fake.device)
    block_b = min(BLOCK_B, max(16, triton.next_power_of_2(batch)))
    chunks = cdiv(batch, block_b)
    partial = torch.empty(2 * tg * td * chunks, dtype=acc, device=fake.device)
    part_d, part_g = partial[: tg * td * chunks], partial[tg * td * chunks:]
    fp64 = acc == torch.float64
    block_tg = max(2, triton.next_power_of_2(tg))
    block_td = max(2, triton.next_power_of_2(td))
    wrap_triton(_items)[(td, chunks)](
        real, fake, g_weight_logits, d_weight_logits, jac if need_grad else partial, part_d, part_g, tg, td, batch,
        chunks, n_r, section, *split_double(a), *split_double(b), *split_double(c), KIND=kind, NEED_GRAD=need_grad,
        ACC_FP64=fp64, BLOCK_B=block_b, BLOCK_TG=block_tg, BLOCK_TD=block_td)
    wrap_triton(_epilogue)[(1,)](
        g_weight_logits, d_weight_logits, part_d, part_g, jac if need_grad else partial, d_loss, g_loss, tg, td,
        batch, chunks, n_r + n_f, section, *split_double(reg_weight), REG=regularizer, NEED_GRAD=need_grad,
        ACC_FP64=fp64, BLOCK_TG=block_tg, BLOCK_TD=block_td)
    return d_loss, g_loss, jac


@triton_op("mixture_gan_loss_backward_triton")
def backward(jac: torch.Tensor, up_d: torch.Tensor, up_g: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
             g_weight_logits: torch.Tensor,
             d_weight_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad = up_d * J_d + up_g * J_g for every input, in each input's dtype."""
    tg, td, batch, n_r, n_f, section = _sizes(fake)
    outs = (torch.empty_like(real), torch.empty_like(fake), torch.empty_like(g_weight_logits),
            torch.empty_like(d_weight_logits))
    wrap_triton(_backward)[(cdiv(section, BLOCK),)](jac, up_d, up_g, *outs, n_r, n_f, tg, section,
                                                    RNE_BF16=interpreter_rounds_bf16(fake.dtype), BLOCK=BLOCK)
    return outs
