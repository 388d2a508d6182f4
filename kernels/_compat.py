"""Registers Triton launchers as torch.library ops where the installed torch can (torch >= 2.6), so that
torch.compile sees them as ops with known outputs; on older torch they stay plain Python functions."""
import torch

try:
    from torch.library import triton_op as _triton_op
    from torch.library import wrap_triton
except ImportError:  # torch < 2.6
    _triton_op = None

    def wrap_triton(kernel):
        return kernel


def triton_op(name):
    """Decorator: `fastgan::<name>` as a triton_op where available, else the function unchanged."""
    def register(fn):
        if _triton_op is None:
            return fn
        return _triton_op(f"fastgan::{name}", mutates_args=())(fn)
    return register


def cdiv(a, b):
    return (a + b - 1) // b


def acc_dtype(dtype):
    """Accumulation dtype for a storage dtype: fp64 stays fp64, everything else is fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
