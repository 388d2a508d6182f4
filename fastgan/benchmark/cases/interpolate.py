"""Benchmark cases for fastgan.ops.interpolate (issue 2's sizes: 64x3x32x32 to 256x3x128x128).

Bytes and FLOPs (n elements per tensor, B samples, s bytes per element; alpha and its gradient are B-sized):
  fwd      read real and fake, write out:                                         3 n s,   3n FLOPs
  fwd_bwd  + backward: read the upstream g, real and fake; write d real, d fake,
           d alpha (<g, real - fake>):                                            8 n s,   8n FLOPs
  full     + the second order with upstreams (r, f) of (d real, d fake) and s of
           d alpha: read r, f, real, fake, g; write d g, d real, d fake:          16 n s,  20n FLOPs
"""
import torch

from fastgan.benchmark.registry import Bench, add_compiled, backend_runs, case, numel, shape_label, sizes_for
from fastgan.ops import interpolate, interpolate_reference
from fastgan.ops._common import acc_dtype

OP = "interpolate"
SIZES = {
    "small": [(4, 3, 8, 8), (8, 3, 16, 16)],
    "medium": [(64, 3, 32, 32), (128, 3, 64, 64), (256, 3, 64, 64), (256, 3, 128, 128)],
    "large": [(64, 3, 32, 32), (256, 3, 64, 64), (256, 3, 128, 128), (512, 3, 128, 128)],
}

# On a GPU the large preset adds a size far above L2 (805 MB in fp32), where bandwidth, not launches, decides.
GPU_LARGE_EXTRA = [(1024, 3, 256, 256)]


def _fwd(op, real, fake, alpha):
    return op(real, fake, alpha)


def _fwd_bwd(op, real, fake, alpha, upstream):
    return torch.autograd.grad(op(real, fake, alpha), (real, fake, alpha), upstream)


def _full(op, real, fake, alpha, upstream, v_real, v_fake, v_alpha):
    grads = torch.autograd.grad(op(real, fake, alpha), (real, fake, alpha), upstream, create_graph=True)
    return torch.autograd.grad(grads, (upstream, real, fake, alpha), (v_real, v_fake, v_alpha))


DRIVERS = {"fwd": _fwd, "fwd_bwd": _fwd_bwd, "full": _full}


@case(OP)
def interpolate_cases(device, dtype, preset, modes):
    for shape in sizes_for(device, preset, SIZES, GPU_LARGE_EXTRA):
        n, batch = numel(shape), shape[0]
        item = torch.finfo(dtype).bits // 8
        real = torch.randn(shape, device=device, dtype=dtype)
        fake = torch.randn(shape, device=device, dtype=dtype)
        alpha = torch.rand(batch, device=device, dtype=acc_dtype(dtype))
        for mode in modes:
            if mode == "fwd":
                args, nbytes, flops = (real, fake, alpha), 3 * n * item, 3 * n
            else:
                leaves = [t.detach().clone().requires_grad_(True) for t in (real, fake, alpha)]
                upstream = torch.randn_like(real)
                if mode == "fwd_bwd":
                    args, nbytes, flops = (*leaves, upstream), 8 * n * item, 8 * n
                else:
                    upstream.requires_grad_(True)
                    extra = (torch.randn_like(real), torch.randn_like(fake), torch.randn_like(alpha))
                    args, nbytes, flops = (*leaves, upstream, *extra), 16 * n * item, 20 * n
            driver = DRIVERS[mode]
            runs, skipped = backend_runs(OP, device, lambda d=driver, a=args: d(interpolate, *a))
            runs["eager"] = lambda d=driver, a=args: d(interpolate_reference, *a)
            add_compiled(runs, skipped, interpolate_reference, lambda f, d=driver, a=args: d(f, *a),
                         double_backward=mode == "full")
            yield Bench(op=OP, label=shape_label(shape), mode=mode, run=runs, bytes=nbytes, flops=flops,
                        skipped=skipped, size=n)
