"""fastgan: fused CUDA, Triton and C++ kernels for GAN training, as drop-in PyTorch ops.

    import fastgan
    loss_d = critic(fake).mean() - critic(real).mean() + fastgan.gradient_penalty(critic, real, fake)

Backends: see fastgan.backends (``fastgan.set_backend``, ``with fastgan.backend(...)``, ``$FASTGAN_BACKEND``).
"""
import importlib.util as _importlib_util
import os as _os
import sys as _sys

__version__ = "0.1.0"


def _map_source_kernels():
    # setup.py installs the top-level kernels/ folder as fastgan.kernels; in a source checkout it sits beside
    # fastgan/, so make the same import name work there too.
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.isdir(_os.path.join(here, "kernels")) or "fastgan.kernels" in _sys.modules:
        return
    source = _os.path.join(_os.path.dirname(here), "kernels")
    if not _os.path.isfile(_os.path.join(source, "__init__.py")):
        return
    if _importlib_util.find_spec("fastgan.kernels") is not None:
        return  # an installed mapping exists
    spec = _importlib_util.spec_from_file_location("fastgan.kernels", _os.path.join(source, "__init__.py"),
                                                   submodule_search_locations=[source])
    module = _importlib_util.module_from_spec(spec)
    _sys.modules["fastgan.kernels"] = module
    spec.loader.exec_module(module)


_map_source_kernels()

from fastgan import ops  # noqa: E402
from fastgan import losses, mix  # noqa: E402
from fastgan import nn  # noqa: E402
from fastgan import optim  # noqa: E402
from fastgan._ext import cpu_cache_info, empty_cpu_cache  # noqa: E402
from fastgan.backends import BackendUnavailableError, backend, get_backend, set_backend  # noqa: E402
from fastgan.ops.clip_weights import clip_weights_  # noqa: E402
from fastgan.penalties import dragan_penalty, gradient_penalty, r1_penalty, r2_penalty  # noqa: E402

__all__ = [
    "__version__", "ops", "nn", "optim", "losses", "mix", "set_backend", "backend", "get_backend",
    "BackendUnavailableError", "gradient_penalty", "r1_penalty", "r2_penalty", "dragan_penalty", "clip_weights_",
    "empty_cpu_cache", "cpu_cache_info",
]
