"""Finds and loads the compiled extension (fastgan._C): prebuilt if it matches this torch and these sources,
otherwise JIT-built with ninja into a cache keyed by the sources' hash and the torch version.

Nothing here runs at import: the first op that needs the cpp or cuda backend calls `load()`.
"""
import glob
import importlib.util
import os
import re
import threading
import warnings

import torch

from fastgan import _build

_lock = threading.Lock()
_state = {"tried": False, "ok": False, "reason": "not loaded yet", "path": None, "stamp": {}, "how": None}
_on_load = []

_STAMP = re.compile(rb"FASTGAN_BUILD_STAMP\{torch=([^;]*);src=([^;]*);cuda=([01])\}")


def on_load(callback):
    """Run `callback()` once the library is loaded (op modules register their fake kernels this way)."""
    _on_load.append(callback)
    if _state["ok"]:
        callback()
    return callback


def read_stamp(path):
    """The build stamp of a compiled library: {'torch': ..., 'src': ..., 'cuda': bool}, or {} if it has none."""
    try:
        with open(path, "rb") as handle:
            match = _STAMP.search(handle.read())
    except OSError:
        return {}
    if not match:
        return {}
    return {"torch": match.group(1).decode(), "src": match.group(2).decode(), "cuda": match.group(3) == b"1"}


def _prebuilt_path():
    spec = importlib.util.find_spec("fastgan._C")
    if spec is not None and spec.origin and os.path.exists(spec.origin):
        return spec.origin
    here = os.path.dirname(os.path.abspath(__file__))
    found = glob.glob(os.path.join(here, "_C*.so"))
    return found[0] if found else None


def cache_dir():
    """Where JIT builds go: $FASTGAN_CACHE or ~/.cache/fastgan."""
    return os.environ.get("FASTGAN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fastgan"))


def _prebuilt_problem(path, stamp):
    if not stamp:
        return f"{path} carries no build stamp"
    if stamp["torch"] != torch.__version__:
        return f"{path} was built against torch {stamp['torch']}, this is torch {torch.__version__}"
    if _build.csrc_dir() is not None and stamp["src"] != _build.source_hash():
        return f"{path} was built from other sources than the ones beside it (rebuild: see README, Building)"
    if torch.cuda.is_available() and torch.version.cuda and not stamp["cuda"]:
        return f"{path} was built without CUDA kernels and a GPU is present"
    return None


def _jit_build():
    """Build with ninja and load; returns the cached library's path.

    Objects live in one build folder per torch version and CUDA flag, so an edit recompiles only what changed;
    each finished library is kept as fastgan_C-<source hash>.so, and a later process with the same sources and
    torch loads that file without running the compiler. A file lock keeps concurrent processes from building
    into one folder at once.
    """
    import fcntl
    import shutil as _shutil

    root = _build.csrc_dir()
    if root is None:
        raise RuntimeError("the C++ sources did not ship with this installation")
    cuda_home = _build.find_cuda_home()

    with_cuda = (cuda_home is not None and torch.version.cuda is not None
                 and os.environ.get("FASTGAN_BUILD_CUDA", "1" if torch.cuda.is_available() else "0") == "1")
    src_hash = _build.source_hash(root)
    tag = f"torch{torch.__version__}-{'cuda' if with_cuda else 'cpu'}".replace("+", "_")
    folder = os.path.join(cache_dir(), tag)
    os.makedirs(folder, exist_ok=True)
    cached = os.path.join(folder, f"fastgan_C-{src_hash}.so")
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(cached):
            torch.ops.load_library(cached)
            return cached, cached
        if cuda_home is not None:
            os.environ.setdefault("CUDA_HOME", cuda_home)  # before torch's helpers guess it from a wrapper's folder
        from torch.utils import cpp_extension

        if with_cuda:
            os.environ["CUDA_HOME"] = cuda_home
            cpp_extension.CUDA_HOME = cuda_home
            if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
                os.environ["TORCH_CUDA_ARCH_LIST"] = _build.CUDA_ARCHS
        build_dir = os.path.join(folder, "build")
        os.makedirs(build_dir, exist_ok=True)
        warnings.warn(f"fastgan: building the C++{'/CUDA' if with_cuda else ''} extension for torch "
                      f"{torch.__version__} in {build_dir} (first use of these sources; up to a few minutes)",
                      stacklevel=4)

        # The stamp (torch version, source hash) goes into a generated header rather than -D flags: flags that
        # changed with every edit would make ninja rebuild every object.
        stamp_header = os.path.join(build_dir, "fastgan_stamp.h")
        stamp = (f'#define FASTGAN_TORCH_VERSION "{torch.__version__}"\n'
                 f'#define FASTGAN_SOURCE_HASH "{src_hash}"\n')
        if not os.path.exists(stamp_header) or open(stamp_header).read() != stamp:
            with open(stamp_header, "w") as handle:
                handle.write(stamp)
        flags = ["-DFASTGAN_STAMP_HEADER"] + (["-DFASTGAN_WITH_CUDA=1"] if with_cuda else [])
        cpp_extension.load(
            name="fastgan_C",
            sources=_build.sources(with_cuda, root),
            extra_include_paths=[root, build_dir],
            extra_cflags=_build.CXX_FLAGS + flags,
            extra_cuda_cflags=_build.NVCC_FLAGS + flags,
            extra_ldflags=["-fopenmp"],
            build_directory=build_dir,
            with_cuda=with_cuda,
            is_python_module=False,
            verbose=os.environ.get("FASTGAN_VERBOSE_BUILD") == "1",
        )
        built = max((os.path.join(build_dir, f) for f in os.listdir(build_dir) if f.endswith(".so")),
                    key=os.path.getmtime)
        _shutil.copyfile(built, cached + ".tmp")
        os.replace(cached + ".tmp", cached)
    return cached, built  # torch loaded the build folder's copy


def load():
    """Load the extension once; returns True when its ops are registered under torch.ops.fastgan."""
    if _state["tried"]:
        return _state["ok"]
    _check_cache_env()
    with _lock:
        if _state["tried"]:
            return _state["ok"]
        try:
            _load_locked()
        finally:
            _state["tried"] = True
        if _state["ok"]:
            for callback in _on_load:
                callback()
    return _state["ok"]


def _load_locked():
    if os.environ.get("FASTGAN_NO_EXT") == "1":
        _state["reason"] = "disabled by FASTGAN_NO_EXT=1"
        return
    path = _prebuilt_path()
    problem = "no prebuilt extension" if path is None else _prebuilt_problem(path, read_stamp(path))
    if problem is None:
        try:
            torch.ops.load_library(path)
            _state.update(ok=True, reason="", path=path, loaded=path, stamp=read_stamp(path), how="prebuilt")
            return
        except OSError as error:
            problem = f"{path} failed to load: {error}"
    if os.environ.get("FASTGAN_NO_JIT") == "1":
        _state["reason"] = f"{problem}; JIT build disabled by FASTGAN_NO_JIT=1"
        return
    try:
        path, loaded = _jit_build()
        _state.update(ok=True, reason="", path=path, loaded=loaded, stamp=read_stamp(path), how=f"JIT build ({problem})")
    except Exception as error:  # a failed build must not take the user's training down: fall back to the reference
        _state["reason"] = f"{problem}; JIT build failed: {_first_error_line(error)}"
        warnings.warn(f"fastgan: the C++/CUDA extension is unavailable ({_state['reason']}); "
                      "the reference and Triton backends still work", stacklevel=3)


def _first_error_line(error):
    """The compiler's first `error:` line (what a user needs to see), else the exception's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "Error:" in line:
            return line[:300]
    return lines[-1][:300] if lines else repr(error)


def status():
    """(ok, reason, details) without triggering a build."""
    return _state["ok"], _state["reason"], dict(_state)


def has_cuda_kernels():
    return bool(_state["ok"] and _state["stamp"].get("cuda"))


def _library():
    """ctypes handle of the loaded extension, or None. It must be the very file torch loaded: another copy of the
    library would be a second mapping that registers every op again."""
    if not load() or not _state.get("loaded"):
        return None
    if _state.get("ctypes") is None:
        import ctypes
        handle = ctypes.CDLL(_state["loaded"])
        for name in ("fastgan_cpu_cache_clear", "fastgan_cpu_cache_idle_bytes", "fastgan_cpu_cache_limit"):
            getattr(handle, name).restype = ctypes.c_ulonglong
        _state["ctypes"] = handle
    return _state["ctypes"]


def _check_cache_env():
    text = os.environ.get("FASTGAN_CPU_CACHE_MB")
    if text not in (None, "") and not text.isdigit():
        raise ValueError(f"FASTGAN_CPU_CACHE_MB must be a whole number of megabytes (0 turns the cache off), got {text!r}")


def cpu_cache_info():
    """{'idle_bytes': held for reuse now, 'limit_bytes': FASTGAN_CPU_CACHE_MB} of the CPU output block cache."""
    lib = _library()
    if lib is None:
        return {"idle_bytes": 0, "limit_bytes": 0}
    return {"idle_bytes": int(lib.fastgan_cpu_cache_idle_bytes()), "limit_bytes": int(lib.fastgan_cpu_cache_limit())}


def empty_cpu_cache():
    """Frees the idle blocks of the CPU output cache (as torch.cuda.empty_cache does for CUDA); returns bytes freed.

    fastgan's C++ CPU kernels take outputs of 4 MB or more from a cache of blocks that dead tensors return, so a
    training loop's repeated outputs skip the OS's page faulting; idle blocks stay under FASTGAN_CPU_CACHE_MB
    (default 512; 0 turns the cache off)."""
    lib = _library()
    return int(lib.fastgan_cpu_cache_clear()) if lib is not None else 0
