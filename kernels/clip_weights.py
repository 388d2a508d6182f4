"""Triton kernel of clip_weights (see fastgan/ops/clip_weights.py for the maths).

A multi-tensor launch per dtype: the host builds a table of the tensors' addresses and sizes and, per program, the
tensor it clamps and the chunk's first element; each program loads its tensor's address from the table and casts it
to a pointer. The tables live on the tensors' device and are cached by (addresses, sizes), so a training loop
that clips the same parameters every step copies them to the GPU once.
"""
from typing import List

import torch
import triton
import triton.language as tl

BLOCK = 2048
_TABLES = {}
_MAX_TABLES = 32


@triton.jit
def _clip_multi_tensor(addr_ptr, numel_ptr, program_tensor_ptr, program_start_ptr, bounds_ptr,
                       ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    t = tl.load(program_tensor_ptr + pid)
    start = tl.load(program_start_ptr + pid)
    n = tl.load(numel_ptr + t)
    # bounds_ptr has the tensors' dtype: its pointer type is the one to give the loaded address.
    base = tl.load(addr_ptr + t).to(bounds_ptr.dtype)
    acc = tl.float64 if ACC_FP64 else tl.float32
    lo = tl.load(bounds_ptr).to(acc)
    hi = tl.load(bounds_ptr + 1).to(acc)
    idx = start + tl.arange(0, BLOCK)
    mask = idx < n
    x = tl.load(base + idx, mask=mask)
    xa = x.to(acc)
    # NaN stays NaN: both comparisons are false for it, as in torch.clamp.
    y = tl.where(xa < lo, lo, tl.where(xa > hi, hi, xa))
    tl.store(base + idx, y.to(x.dtype), mask=mask)


def _tables(tensors, device):
    key = (device, tuple((t.data_ptr(), t.numel()) for t in tensors))
    cached = _TABLES.get(key)
    if cached is not None:
        return cached
    program_tensor, program_start = [], []
    for i, t in enumerate(tensors):
        for start in range(0, t.numel(), BLOCK):
            program_tensor.append(i)
            program_start.append(start)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.int64).to(device, non_blocking=True)  # noqa: E731
    cached = (as_tensor([t.data_ptr() for t in tensors]), as_tensor([t.numel() for t in tensors]),
              as_tensor(program_tensor), as_tensor(program_start))
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.clear()
    _TABLES[key] = cached
    return cached


def _clip(params, clip):
    by_dtype = {}
    for p in params:
        if p.numel():
            by_dtype.setdefault(p.dtype, []).append(p)
    for dtype, tensors in by_dtype.items():
        device = tensors[0].device
        addrs, numels, program_tensor, program_start = _tables(tensors, device)
        # The bound in the storage dtype, as torch's clamp_ rounds its scalars.
        bounds = torch.tensor([-clip, clip], dtype=dtype).to(device, non_blocking=True)
        _clip_multi_tensor[(program_tensor.numel(),)](addrs, numels, program_tensor, program_start, bounds,
                                                      ACC_FP64=dtype == torch.float64, BLOCK=BLOCK)


def _clip_impl(params: List[torch.Tensor], clip: float) -> None:
    _clip(params, clip)


try:  # an opaque op that declares its in-place writes, so torch.compile neither traces nor reorders it
    _clip_op = torch.library.custom_op("fastgan::clip_weights_triton", mutates_args=("params",))(_clip_impl)
except (AttributeError, TypeError, RuntimeError, ValueError):  # torch without custom_op: a plain function
    _clip_op = None


def clip(params: list, clip: float) -> None:
    """Clamp every dense tensor of `params` (one device) to [-clip, clip] in place."""
    if _clip_op is not None:
        _clip_op(params, clip)
    else:
        _clip(params, clip)
