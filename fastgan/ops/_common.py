"""Argument checks and memory-layout handling shared by every op's Python front end."""
import torch
import torch.autograd.forward_ad as _forward_ad

_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)

FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensor(value, name, floating=True):
    """TypeError unless `value` is a tensor (of a floating dtype the kernels take, when `floating`)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and value.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {value.dtype}")
    return value


def check_same_device(pairs):
    """ValueError unless every (name, tensor) in `pairs` is on the first one's device."""
    (first_name, first), *rest = pairs
    for name, tensor in rest:
        if tensor.device != first.device:
            raise ValueError(f"{name} is on {tensor.device} but {first_name} is on {first.device}: "
                             "move them to one device")


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(map(repr, choices))}")
    return value


def acc_dtype(dtype):
    """Accumulation (and per-sample result) dtype: fp64 stays fp64, every other floating dtype gives fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def is_batch_major(tensor):
    """True when each sample is one dense block of memory (contiguous or channels_last), so kernels may treat the
    tensor as a flat [B, N] array without a copy."""
    if tensor.dim() == 0:
        return False
    batch = tensor.shape[0]
    if not tensor.is_contiguous() and not _dense(tensor):
        return False
    return batch <= 1 or tensor.numel() == 0 or tensor.stride(0) == tensor.numel() // batch


def _dense(tensor):
    # Non-overlapping and dense: the sorted strides are the running products of the sorted sizes.
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def batch_major(*tensors):
    """The tensors laid out so kernels can take them as flat [B, N] arrays of one common layout. Layouts that
    already qualify (channels_last included) are kept; others become contiguous."""
    first = tensors[0]
    if all(is_batch_major(t) and t.stride() == first.stride() for t in tensors):
        return tensors
    return tuple(t.contiguous() for t in tensors)


def match_layout(tensor, reference):
    """`tensor` with exactly `reference`'s strides (a copy only when they differ), for kernels that index both
    with one flat offset."""
    if tensor.stride() == reference.stride() and tensor.dtype == reference.dtype:
        return tensor
    return torch.empty_like(reference).copy_(tensor)


def compiling():
    """True while torch.compile (dynamo) traces the caller."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def functorch_active():
    """True inside a torch.func transform (or where torch cannot say)."""
    return _functorch_active is None or bool(_functorch_active())


def no_tangents():
    """True when no forward-mode AD can reach the caller: no forward-AD dual level and no torch.func transform. The
    C++ autograd nodes and the bare gradient kernels carry no tangents, so they may run only then."""
    return getattr(_forward_ad, "_current_level", 0) < 0 and not functorch_active()


def plain_backward():
    """True when an autograd.Function's backward may run its gradient kernel bare, without the differentiable
    backward Function around it (~15 us less per call): no graph to build (grad mode off, i.e. no create_graph) and
    no tangents to carry."""
    return not torch.is_grad_enabled() and no_tangents()
