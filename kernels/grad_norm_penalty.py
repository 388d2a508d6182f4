"""Triton kernels of grad_norm_penalty (see fastgan/ops/grad_norm_penalty.py for the maths).

Forward: a (split, row) grid writes partial sums of squares (deterministic, no atomics), then one program per row
finishes the norm and the penalty. Backward: one elementwise pass dgrad = upstream[b] * phi'(n_b) / n_b * grad.
"""
import torch
import triton
import triton.language as tl

from fastgan.kernels._compat import acc_dtype, cdiv, triton_op, wrap_triton

ELEMS_PER_PROGRAM = 4096
BLOCK = 1024


@triton.jit
def _partial_sum_squares(grad_ptr, partial_ptr, n, splits, ELEMS: tl.constexpr, BLOCK: tl.constexpr,
                         ACC_FP64: tl.constexpr):
    split = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    acc_type = tl.float64 if ACC_FP64 else tl.float32
    acc = tl.zeros([BLOCK], dtype=acc_type)
    start = split * ELEMS
    for offset in range(0, ELEMS, BLOCK):
        idx = start + offset + tl.arange(0, BLOCK)
        x = tl.load(grad_ptr + row * n + idx, mask=idx < n, other=0.0).to(acc_type)
        acc += x * x
    tl.store(partial_ptr + row * splits + split, tl.sum(acc, axis=0))


@triton.jit
def _finish_penalty(partial_ptr, penalty_ptr, norm_ptr, splits, target, MODE: tl.constexpr, BLOCK_S: tl.constexpr,
                    ACC_FP64: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    acc_type = tl.float64 if ACC_FP64 else tl.float32
    total = tl.zeros([BLOCK_S], dtype=acc_type)
    for offset in range(0, splits, BLOCK_S):
        idx = offset + tl.arange(0, BLOCK_S)
        total += tl.load(partial_ptr + row * splits + idx, mask=idx < splits, other=0.0)
    norm = tl.sqrt(tl.sum(total, axis=0))
    if MODE == 2:
        penalty = norm * norm
    else:
        excess = norm - target
        if MODE == 1:
            excess = tl.maximum(excess, 0.0)
        penalty = excess * excess
    tl.store(norm_ptr + row, norm)
    tl.store(penalty_ptr + row, penalty)


@triton.jit
def _scale_rows(grad_ptr, norm_ptr, up_ptr, out_ptr, total, n, target, MODE: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < total
    row = idx // n
    norm = tl.load(norm_ptr + row, mask=mask, other=1.0)
    up = tl.load(up_ptr + row, mask=mask, other=0.0)
    if MODE == 2:
        factor = up * 2.0
    else:
        safe = tl.where(norm > 0.0, norm, 1.0)
        excess = norm - target
        if MODE == 1:
            excess = tl.maximum(excess, 0.0)
        factor = tl.where(norm > 0.0, up * 2.0 * excess / safe, 0.0)
    x = tl.load(grad_ptr + idx, mask=mask, other=0.0)
    tl.store(out_ptr + idx, (factor * x.to(factor.dtype)).to(x.dtype), mask=mask)


@triton_op("grad_norm_penalty_forward_triton")
def forward(grad: torch.Tensor, target: float, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """grad: batch-major dense [B, *] → (penalty [B], norm [B]) in the accumulation dtype."""
    batch = grad.shape[0]
    n = grad.numel() // batch if batch else 0
    acc = acc_dtype(grad.dtype)
    penalty = torch.empty(batch, dtype=acc, device=grad.device)
    norm = torch.empty(batch, dtype=acc, device=grad.device)
    if batch == 0:
        return penalty, norm
    splits = max(1, cdiv(n, ELEMS_PER_PROGRAM))
    partial = torch.empty(batch * splits, dtype=acc, device=grad.device)
    fp64 = acc == torch.float64
    wrap_triton(_partial_sum_squares)[(splits, batch)](grad, partial, n, splits, ELEMS=ELEMS_PER_PROGRAM,
                                                       BLOCK=min(BLOCK, ELEMS_PER_PROGRAM), ACC_FP64=fp64)
    wrap_triton(_finish_penalty)[(batch,)](partial, penalty, norm, splits, target, MODE=mode,
                                           BLOCK_S=min(1024, triton.next_power_of_2(splits)), ACC_FP64=fp64)
    return penalty, norm


@triton_op("grad_norm_penalty_backward_triton")
def backward(grad: torch.Tensor, norm: torch.Tensor, upstream: torch.Tensor, target: float,
             mode: int) -> torch.Tensor:
    """dgrad = upstream[b] * phi'(norm[b]) / norm[b] * grad, same shape and layout as grad."""
    out = torch.empty_like(grad)
    total = grad.numel()
    if total == 0:
        return out
    n = total // grad.shape[0]
    wrap_triton(_scale_rows)[(cdiv(total, BLOCK),)](grad, norm, upstream, out, total, n, target, MODE=mode,
                                                    BLOCK=BLOCK)
    return out
