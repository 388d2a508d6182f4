"""clip_weights: WGAN weight clipping (Arjovsky et al. 2017) of every parameter of a critic, in place, in one call.

Maths.  p <- min(max(p, -c), c) elementwise for every tensor p of the list, with the bound c rounded to p's dtype
first and NaN kept, exactly as ``p.clamp_(-c, c)``. No gradient: this is an in-place update of parameters after
the optimizer step, through their storage like the ``p.data.clamp_`` idiom (autograd neither records it nor bumps
version counters), so there is no backward and nothing is saved.

Shapes: any list of floating tensors of any shapes and dtypes (float32, float64, float16, bfloat16), on one
device or several (one call per device). Dense tensors (contiguous, channels_last, any permutation) are clamped in
place by the kernel; strided views that are not dense are clamped with ``clamp_`` (rare for parameters).

Kernels: CPU, one ``at::parallel_for`` over the fixed-size chunks of all tensors; CUDA, one multi-tensor launch per
96 tensors (pointers, sizes and dtypes passed by value in the kernel argument, mixed dtypes in one launch);
Triton, one launch per dtype over a table of pointers.
"""
import math

import torch

from fastgan import _ext, backends
from fastgan.ops._common import FLOATING

CUDA_ORDER = ("cuda", "triton")


def clip_weights_(params, clip=0.01):
    """Clamp every tensor of `params` to [-clip, clip] in place, in one fused call per device.

    Args:
        params: an ``nn.Module`` (all its parameters), one tensor, or an iterable of tensors.
        clip: the bound c > 0 (WGAN: 0.01).
    Raises:
        TypeError: a parameter is not a floating tensor (the message names it), or clip is not a number.
        ValueError: clip <= 0 or not finite.
    """
    clip = _check_clip(clip)
    tensors = _tensors(params)
    if not tensors:
        return
    device = tensors[0].get_device() if isinstance(tensors[0], torch.Tensor) else None
    one_device = True
    for i, p in enumerate(tensors):
        if not isinstance(p, torch.Tensor) or p.dtype not in FLOATING:
            _refuse(params, i, p)
        if one_device and p.get_device() != device:
            one_device = False
    if one_device:
        _clip_on_device(tensors, clip)
    else:
        groups = {}
        for p in tensors:
            groups.setdefault(p.get_device(), []).append(p)  # an int: cheaper than a torch.device
        for group in groups.values():
            _clip_on_device(group, clip)


def _clip_on_device(tensors, clip):
    backend = backends.select_cached("clip_weights", tensors[0].device, CUDA_ORDER)
    if backend == "reference":
        clip_weights_reference(tensors, clip)
        return
    dense = [p for p in tensors if p.is_contiguous()]
    if len(dense) != len(tensors):
        dense = [p for p in tensors if p.is_contiguous() or _dense_strides(p)]
        with torch.no_grad():
            for p in tensors:
                if not (p.is_contiguous() or _dense_strides(p)):
                    p.clamp_(-clip, clip)  # not one block of memory: torch's own clamp handles the strides
    if dense:
        # The kernel writes through the tensors' storage like the `p.data.clamp_` idiom: no autograd, no grad
        # mode needed, version counters untouched.
        _kernels(backend).clip(dense, clip)


def clip_weights_reference(params, clip=0.01):
    """The specification: a per-parameter ``clamp_`` loop (what StudioGAN and torchgan do), in place."""
    with torch.no_grad():
        for p in _tensors(params):
            p.clamp_(-clip, clip)


def _check_clip(clip):
    if isinstance(clip, bool) or not isinstance(clip, (int, float)):
        if isinstance(clip, torch.Tensor) and clip.numel() == 1 and not clip.dtype.is_complex:
            clip = clip.item()
        else:
            raise TypeError(f"clip must be a number, got {type(clip).__name__}")
    clip = float(clip)
    if not (clip > 0) or not math.isfinite(clip):
        raise ValueError(f"clip must be a finite number > 0, got {clip}")
    return clip


def _tensors(params):
    if isinstance(params, torch.nn.Module):
        return _module_parameters(params)
    if isinstance(params, torch.Tensor):
        return [params]
    try:
        return list(params)
    except TypeError:
        raise TypeError(f"params must be an nn.Module, a tensor or an iterable of tensors, "
                        f"got {type(params).__name__}") from None


def _module_parameters(module):
    """module.parameters() as a list, without its per-call name strings and generator layers (the set is the same:
    every parameter of every submodule once). Clipping runs every step, and for a small critic walking the module
    tree with parameters() costs a tenth of the clip itself."""
    out, seen_params, seen_modules, stack = [], set(), set(), [module]
    while stack:
        m = stack.pop()
        if m is None or id(m) in seen_modules:
            continue
        seen_modules.add(id(m))
        for p in m._parameters.values():
            if p is not None and id(p) not in seen_params:
                seen_params.add(id(p))
                out.append(p)
        stack.extend(m._modules.values())
    return out


def _refuse(params, index, p):
    """The TypeError for element `index`, named as the user knows it (a module's parameter by its name)."""
    if isinstance(params, torch.nn.Module):
        # by identity: _module_parameters walks the modules in another order than named_parameters()
        name = next(n for n, q in params.named_parameters() if q is p)
    else:
        name = f"params[{index}]"
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"params: {name} must be a torch.Tensor, got {type(p).__name__}")
    raise TypeError(f"params: {name} must be float32, float64, float16 or bfloat16 to be clipped, got {p.dtype}")


def _dense_strides(p):
    expected = 1
    for size, stride in sorted(zip(p.shape, p.stride()), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


class _ExtensionKernels:
    @staticmethod
    def clip(tensors, clip):
        torch.ops.fastgan.clip_weights_(tensors, clip)


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import clip_weights as triton_kernels
        return triton_kernels
    return _ExtensionKernels


@_ext.on_load
def _register_fakes():
    @torch.library.register_fake("fastgan::clip_weights_")
    def _clip_fake(params, clip):
        return None
