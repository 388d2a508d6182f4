"""Triton kernels of interpolate (see fastgan/ops/interpolate.py for the maths).

Backward writes both input gradients and per-(split, row) partial dot products for alpha in one pass; the
partials are then summed per row in a fixed order (deterministic, no atomics).
"""
import torch
import triton
import triton.language as tl

from fastgan.kernels._compat import acc_dtype, cdiv, triton_op, wrap_triton

ELEMS_PER_PROGRAM = 4096
BLOCK = 1024


@triton.jit
def _interpolate_forward(real_ptr, fake_ptr, alpha_ptr, out_ptr, total, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < total
    w = tl.load(alpha_ptr + idx // n, mask=mask, other=0.0)
    r = tl.load(real_ptr + idx, mask=mask, other=0.0)
    f = tl.load(fake_ptr + idx, mask=mask, other=0.0)
    out = w * r.to(w.dtype) + (1.0 - w) * f.to(w.dtype)
    tl.store(out_ptr + idx, out.to(r.dtype), mask=mask)


@triton.jit
def _interpolate_backward(grad_ptr, real_ptr, fake_ptr, alpha_ptr, grad_real_ptr, grad_fake_ptr, partial_ptr, n,
                          splits, NEED_REAL: tl.constexpr, NEED_FAKE: tl.constexpr, NEED_ALPHA: tl.constexpr,
                          ELEMS: tl.constexpr, BLOCK: tl.constexpr):
    split = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    w = tl.load(alpha_ptr + row)
    dot = tl.zeros([BLOCK], dtype=w.dtype)
    for offset in range(0, ELEMS, BLOCK):
        col = split * ELEMS + offset + tl.arange(0, BLOCK)
        mask = col < n
        idx = row * n + col
        g = tl.load(grad_ptr + idx, mask=mask, other=0.0)
        ga = g.to(w.dtype)
        if NEED_REAL:
            tl.store(grad_real_ptr + idx, (w * ga).to(g.dtype), mask=mask)
        if NEED_FAKE:
            tl.store(grad_fake_ptr + idx, ((1.0 - w) * ga).to(g.dtype), mask=mask)
        if NEED_ALPHA:
            r = tl.load(real_ptr + idx, mask=mask, other=0.0).to(w.dtype)
            f = tl.load(fake_ptr + idx, mask=mask, other=0.0).to(w.dtype)
            dot += ga * (r - f)
    if NEED_ALPHA:
        tl.store(partial_ptr + row * splits + split, tl.sum(dot, axis=0))


@triton_op("interpolate_forward_triton")
def forward(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """real, fake: batch-major dense [B, *] of one layout; alpha: [B] accumulation dtype → out like real."""
    out = torch.empty_like(real)
    total = real.numel()
    if total == 0:
        return out
    wrap_triton(_interpolate_forward)[(cdiv(total, BLOCK),)](real, fake, alpha, out, total, total // real.shape[0],
                                                             BLOCK=BLOCK)
    return out


@triton_op("interpolate_backward_triton")
def backward(grad: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, need_real: bool,
             need_fake: bool, need_alpha: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """→ (grad_real, grad_fake, grad_alpha); the ones not needed come back as empty [0] tensors."""
    batch = real.shape[0]
    n = real.numel() // batch if batch else 0
    grad_real = torch.empty_like(real) if need_real else real.new_empty(0)
    grad_fake = torch.empty_like(fake) if need_fake else fake.new_empty(0)
    splits = max(1, cdiv(n, ELEMS_PER_PROGRAM))
    partial = torch.zeros(batch * splits if need_alpha else 0, dtype=acc_dtype(real.dtype), device=real.device)
    if batch and n:
        # Outputs that are not needed get a valid dummy pointer (never written: the flags are constexpr).
        wrap_triton(_interpolate_backward)[(splits, batch)](
            grad, real, fake, alpha, grad_real if need_real else grad, grad_fake if need_fake else grad,
            partial if need_alpha else alpha, n, splits, NEED_REAL=need_real,
            NEED_FAKE=need_fake, NEED_ALPHA=need_alpha, ELEMS=ELEMS_PER_PROGRAM, BLOCK=BLOCK)
    grad_alpha = partial.view(batch, splits).sum(dim=1) if need_alpha else alpha.new_empty(0)
    return grad_real, grad_fake, grad_alpha
