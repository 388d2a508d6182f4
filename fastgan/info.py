"""`fastgan info`: versions, what the extension was built against, and which backends run where (and why not)."""
import platform

import torch

import fastgan
from fastgan import _ext, backends


def report():
    """The text `fastgan info` prints."""
    lines = [f"fastgan {fastgan.__version__}", f"python  {platform.python_version()} ({platform.machine()})",
             f"torch   {torch.__version__} (CUDA {torch.version.cuda or 'none: CPU build'})"]
    try:
        import triton
        lines.append(f"triton  {triton.__version__}{' (interpreter: TRITON_INTERPRET=1)' if backends.triton_interpreting() else ''}")
    except ImportError:
        lines.append("triton  not installed")
    if torch.cuda.is_available():
        lines.append(f"GPU     {torch.cuda.get_device_name(0)} (capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))})")
    else:
        lines.append("GPU     none")
    ok = _ext.load()
    _, reason, state = _ext.status()
    if ok:
        stamp = state["stamp"]
        lines.append(f"extension {state['path']}")
        lines.append(f"          loaded from {state['how']}; built against torch {stamp.get('torch')}, "
                     f"CUDA kernels {'yes' if stamp.get('cuda') else 'no'}, sources {stamp.get('src')}")
    else:
        lines.append(f"extension unavailable: {reason}")
    lines.append(f"backend in force: {backends.get_backend()}")
    for device in ("cpu", "cuda"):
        lines.append(f"backends on {device}:")
        lines.extend("  " + line for line in backends.explain(device).splitlines())
    return "\n".join(lines)


def add_arguments(parser):
    del parser  # no options


def run(args):
    del args
    print(report())
    return 0
