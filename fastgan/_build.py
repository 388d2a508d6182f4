"""What the C++/CUDA extension is built from and how; shared by setup.py and the JIT loader.

This module must not import torch or fastgan: setup.py loads it by file path before torch's build helpers run.
"""
import glob
import hashlib
import os
import re
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Installed packages carry the sources under fastgan/_csrc (setup.py maps them there); a checkout has csrc/.
CSRC_CANDIDATES = (os.path.join(ROOT, "csrc"), os.path.join(os.path.dirname(os.path.abspath(__file__)), "_csrc"))

CUDA_ARCHS = "8.0;8.6;9.0+PTX"
# No -std flag: torch's build helpers pick the standard its headers need (C++17 up to 2.9, C++20 after).
CXX_FLAGS = ["-O3", "-fopenmp"]
NVCC_FLAGS = ["-O3", "--use_fast_math", "-lineinfo"]


def csrc_dir():
    """The folder holding the extension's sources, or None when they did not ship."""
    for path in CSRC_CANDIDATES:
        if os.path.isdir(path):
            return path
    return None


def sources(with_cuda, root=None):
    """Sorted source files: every .cpp always, every .cu when building CUDA kernels."""
    root = root or csrc_dir()
    if root is None:
        return []
    files = sorted(glob.glob(os.path.join(root, "**", "*.cpp"), recursive=True))
    if with_cuda:
        files += sorted(glob.glob(os.path.join(root, "**", "*.cu"), recursive=True))
    # torch's JIT build names objects by file stem: csrc/<op>/<op>_cpu.cpp, <op>_cuda.cu, <op>_binding.cpp.
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise RuntimeError(f"fastgan: source file names must be unique across csrc/ (prefix them with the op): {clashes}")
    return files


def source_hash(root=None):
    """Hash of every file under csrc (headers too), so any edit gives a new JIT cache entry."""
    root = root or csrc_dir()
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def find_cuda_home():
    """The CUDA toolkit folder, or None.

    CUDA_HOME/CUDA_PATH win. Otherwise follow the `nvcc` on PATH; where it is a wrapper script that execs the real
    compiler (as on our build machines), read the script for the real path, since `dirname(dirname(nvcc))` of the
    wrapper is not a toolkit and torch would then fail to find the CUDA libraries.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and os.path.isdir(os.environ[var]):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "/usr/local/cuda" if os.path.exists("/usr/local/cuda/bin/nvcc") else None
    real = os.path.realpath(nvcc)
    try:
        with open(real, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        match = re.search(rb"(/\S+)/bin/nvcc\b", head)
        if match and os.path.isdir(match.group(1).decode()):
            return match.group(1).decode()
    home = os.path.dirname(os.path.dirname(real))
    return home if os.path.isdir(os.path.join(home, "include")) else None
