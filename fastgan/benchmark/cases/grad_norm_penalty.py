"""Benchmark cases for fastgan.ops.grad_norm_penalty (issue 2's sizes: 64x3x32x32 to 256x3x128x128).

Bytes and FLOPs (n elements of the gradient g, B samples, s bytes per element, acc = 4 bytes, fp64: 8):
  fwd      read g once, write B penalties:                          n s + B acc bytes,  2n FLOPs (square, add)
  fwd_bwd  + backward: read g, write dL/dg (norms are saved):       3 n s + 2 B acc,    3n FLOPs
  full     + the second order: read g and the upstream v of dL/dg
           (dot <v, g>), write d/dg:                                6 n s + 4 B acc,    8n FLOPs
"""
import torch

from fastgan.benchmark.registry import Bench, add_compiled, backend_runs, case, numel, shape_label, sizes_for
from fastgan.ops import grad_norm_penalty, grad_norm_penalty_reference
from fastgan.ops._common import acc_dtype

OP = "grad_norm_penalty"
SIZES = {
    "small": [(4, 3, 8, 8), (8, 3, 16, 16)],
    "medium": [(64, 3, 32, 32), (128, 3, 64, 64), (256, 3, 64, 64), (256, 3, 128, 128)],
    "large": [(64, 3, 32, 32), (256, 3, 64, 64), (256, 3, 128, 128), (512, 3, 128, 128)],
}

# On a GPU the large preset adds a size far above L2 (805 MB in fp32), where bandwidth, not launches, decides.
GPU_LARGE_EXTRA = [(1024, 3, 256, 256)]


def _fwd(op, grad):
    return op(grad)


def _fwd_bwd(op, grad, upstream):
    return torch.autograd.grad(op(grad), grad, upstream)


def _full(op, grad, upstream, v):
    (first,) = torch.autograd.grad(op(grad), grad, upstream, create_graph=True)
    return torch.autograd.grad(first, grad, v)


DRIVERS = {"fwd": _fwd, "fwd_bwd": _fwd_bwd, "full": _full}


@case(OP)
def grad_norm_penalty_cases(device, dtype, preset, modes):
    for shape in sizes_for(device, preset, SIZES, GPU_LARGE_EXTRA):
        n, batch = numel(shape), shape[0]
        item, acc = torch.empty((), dtype=dtype).element_size(), torch.empty((), dtype=acc_dtype(dtype)).element_size()
        grad = torch.randn(shape, device=device, dtype=dtype)
        for mode in modes:
            if mode == "fwd":
                args, nbytes, flops = (grad,), n * item + batch * acc, 2 * n
            else:
                leaf = grad.detach().clone().requires_grad_(True)
                upstream = torch.rand(batch, device=device, dtype=acc_dtype(dtype)) + 0.5
                if mode == "fwd_bwd":
                    args, nbytes, flops = (leaf, upstream), 3 * n * item + 2 * batch * acc, 3 * n
                else:
                    v = torch.randn_like(grad)
                    args, nbytes, flops = (leaf, upstream, v), 6 * n * item + 4 * batch * acc, 8 * n
            driver = DRIVERS[mode]
            runs, skipped = backend_runs(OP, device, lambda d=driver, a=args: d(grad_norm_penalty, *a))
            runs["eager"] = lambda d=driver, a=args: d(grad_norm_penalty_reference, *a)
            add_compiled(runs, skipped, grad_norm_penalty_reference, lambda f, d=driver, a=args: d(f, *a),
                         double_backward=mode == "full")
            yield Bench(op=OP, label=shape_label(shape), mode=mode, run=runs, bytes=nbytes, flops=flops,
                        skipped=skipped, size=n)
