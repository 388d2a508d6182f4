"""Triton kernels of spectral_norm (see fastgan/ops/spectral_norm.py and csrc/spectral_norm/spectral_norm.h for
the maths).

Per layer and power iteration, two launches: `_sn_rows` (one program per row chunk: s_r = W_r . v, then the
chunk's partial W^T s, reading the chunk's rows a second time while they are in cache) and `_sn_finish` (one
program: sums the partials in chunk order, normalises u and v, writes sigma). Deterministic: no atomics.
"""
from typing import List

import torch
import triton
import triton.language as tl

BLOCK_W = 1024
MAX_CHUNKS = 16
CHUNK_ELEMS = 16384


@triton.jit
def _w_offsets(r, j, H, K):
    # Element (r, j) of the [H, A*K] matrix view of a dense [A, H, K] weight.
    aa = j // K
    return (aa * H + r) * K + (j - aa * K)


@triton.jit
def _sn_rows(w_ptr, v_ptr, s_ptr, partial_ptr, H, K, W, chunks, UPDATE: tl.constexpr, ACC_FP64: tl.constexpr,
             BLOCK_W: tl.constexpr):
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    c = tl.program_id(0).to(tl.int64)
    row0 = c * H // chunks
    row1 = (c + 1) * H // chunks
    for r in range(row0, row1):
        acc = tl.zeros([BLOCK_W], dtype=acc_t)
        for j0 in range(0, W, BLOCK_W):
            j = j0 + tl.arange(0, BLOCK_W)
            mask = j < W
            x = tl.load(w_ptr + _w_offsets(r, j, H, K), mask=mask, other=0.0).to(acc_t)
            acc += x * tl.load(v_ptr + j, mask=mask, other=0.0).to(acc_t)
        tl.store(s_ptr + r, tl.sum(acc, axis=0))
    if UPDATE:
        tl.debug_barrier()  # the s_r stored above are read back by every thread below
        for j0 in range(0, W, BLOCK_W):
            j = j0 + tl.arange(0, BLOCK_W)
            mask = j < W
            acc = tl.zeros([BLOCK_W], dtype=acc_t)
            for r in range(row0, row1):
                x = tl.load(w_ptr + _w_offsets(r, j, H, K), mask=mask, other=0.0).to(acc_t)
                acc += tl.load(s_ptr + r) * x
            tl.store(partial_ptr + c * W + j, acc, mask=mask)


@triton.jit
def _sn_finish(u_ptr, v_ptr, s_ptr, t_ptr, partial_ptr, sigma_ptr, H, W, chunks, eps, UPDATE: tl.constexpr,
               ACC_FP64: tl.constexpr, BLOCK_W: tl.constexpr):
    acc_t = tl.float64 if ACC_FP64 else tl.float32
    if UPDATE:
        ss = tl.zeros([BLOCK_W], dtype=acc_t)
        for r0 in range(0, H, BLOCK_W):
            r = r0 + tl.arange(0, BLOCK_W)
            x = tl.load(s_ptr + r, mask=r < H, other=0.0)
            ss += x * x
        den_s = tl.maximum(tl.sqrt(tl.sum(ss, axis=0)), eps)
        for r0 in range(0, H, BLOCK_W):
            r = r0 + tl.arange(0, BLOCK_W)
            x = tl.load(s_ptr + r, mask=r < H, other=0.0)
            tl.store(u_ptr + r, (x / den_s).to(u_ptr.dtype.element_ty), mask=r < H)
        tt = tl.zeros([BLOCK_W], dtype=acc_t)
        for j0 in range(0, W, BLOCK_W):
            j = j0 + tl.arange(0, BLOCK_W)
            mask = j < W
            t = tl.zeros([BLOCK_W], dtype=acc_t)
            for c in range(0, chunks):
                t += tl.load(partial_ptr + c * W + j, mask=mask, other=0.0)
            t = t / den_s
            tl.store(t_ptr + j, t, mask=mask)
            tt += t * t
        den_t = tl.maximum(tl.sqrt(tl.sum(tt, axis=0)), eps)
        sig = tl.zeros([BLOCK_W], dtype=acc_t)
        for j0 in range(0, W, BLOCK_W):
            j = j0 + tl.arange(0, BLOCK_W)
            mask = j < W
            t = tl.load(t_ptr + j, mask=mask, other=0.0)
            v = t / den_t
            tl.store(v_ptr + j, v.to(v_ptr.dtype.element_ty), mask=mask)
            sig += t * v  # v before its rounding to the weight's dtype
        tl.store(sigma_ptr, tl.sum(sig, axis=0).to(tl.float64))
    else:
        sig = tl.zeros([BLOCK_W], dtype=acc_t)
        for r0 in range(0, H, BLOCK_W):
            r = r0 + tl.arange(0, BLOCK_W)
            mask = r < H
            sig += tl.load(u_ptr + r, mask=mask, other=0.0).to(acc_t) * tl.load(s_ptr + r, mask=mask, other=0.0)
        tl.store(sigma_ptr, tl.sum(sig, axis=0).to(tl.float64))


def _chunks(h, w):
    return max(1, min(h, -(-h * w // CHUNK_ELEMS), MAX_CHUNKS))


def _power_iteration(weights, us, vs, dims, n_power_iterations, eps, update):
    device = weights[0].device
    sigma = torch.empty(len(weights), dtype=torch.float64, device=device)
    for i, (weight, u, v, dim) in enumerate(zip(weights, us, vs, dims)):
        a = 1
        for size in weight.shape[:dim]:
            a *= size
        h = weight.shape[dim]
        w = weight.numel() // h if h else 0
        k = w // a if a else 0
        acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
        chunks = _chunks(h, w)
        s = torch.empty(h, dtype=acc, device=device)
        t = torch.empty(w, dtype=acc, device=device)
        partial = torch.empty(max(1, chunks * w), dtype=acc, device=device)
        fp64 = acc == torch.float64
        for _ in range(n_power_iterations if update else 1):
            _sn_rows[(chunks,)](weight, v, s, partial, h, k, w, chunks, UPDATE=update, ACC_FP64=fp64,
                                BLOCK_W=min(BLOCK_W, triton.next_power_of_2(max(w, 16))))
            _sn_finish[(1,)](u, v, s, t, partial, sigma[i:], h, w, chunks, eps, UPDATE=update, ACC_FP64=fp64,
                             BLOCK_W=min(BLOCK_W, triton.next_power_of_2(max(h, w, 16))))
    return sigma


def _power_iteration_impl(weights: List[torch.Tensor], us: List[torch.Tensor], vs: List[torch.Tensor],
                          dims: List[int], n_power_iterations: int, eps: float, update: bool) -> torch.Tensor:
    return _power_iteration(weights, us, vs, dims, n_power_iterations, eps, update)


try:  # an opaque op that declares its in-place writes to u and v
    _op = torch.library.custom_op("fastgan::spectral_norm_power_iteration_triton",
                                  mutates_args=("us", "vs"))(_power_iteration_impl)

    @_op.register_fake
    def _fake(weights, us, vs, dims, n_power_iterations, eps, update):
        return weights[0].new_empty(len(weights), dtype=torch.float64)
except (AttributeError, TypeError, RuntimeError, ValueError):  # torch without custom_op: a plain function
    _op = _power_iteration_impl


def power_iteration(weights, us, vs, dims, n_power_iterations, eps, update):
    """sigma (float64 [L]) of contiguous weights, after n_power_iterations in-place updates of u, v if `update`."""
    return _op(weights, us, vs, list(dims), n_power_iterations, eps, update)
