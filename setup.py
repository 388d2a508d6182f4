"""Builds fastgan and its extension fastgan._C (C++ CPU kernels always, CUDA kernels when a toolkit is found).

Switches: FASTGAN_BUILD_CUDA=0|1 (default: build CUDA kernels when a CUDA toolkit and a CUDA build of torch are
found), FASTGAN_NO_EXT=1 (pure Python install: reference and Triton backends; the C++ extension is then
JIT-built on first use if a compiler is present). Install with `pip install --no-build-isolation .` so the extension
is compiled against the torch you run.
"""
import importlib.util
import os
import sys

from setuptools import find_packages, setup

_spec = importlib.util.spec_from_file_location("fastgan_build", os.path.join("fastgan", "_build.py"))
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

PACKAGES = find_packages(include=["fastgan", "fastgan.*"]) + ["fastgan.kernels", "fastgan._csrc"]
# Top-level kernels/ and csrc/ ship inside the package (csrc so that the JIT loader can rebuild the extension).
PACKAGE_DIR = {"fastgan.kernels": "kernels", "fastgan._csrc": "csrc"}


def extension_modules():
    if os.environ.get("FASTGAN_NO_EXT") == "1":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("fastgan: torch is not importable in the build environment; skipping the extension "
              "(use pip install --no-build-isolation)", file=sys.stderr)
        return [], {}
    cuda_home = build.find_cuda_home()
    want_cuda = os.environ.get("FASTGAN_BUILD_CUDA")
    with_cuda = cuda_home is not None and torch.version.cuda is not None
    if want_cuda == "1" and not with_cuda:
        raise RuntimeError(f"FASTGAN_BUILD_CUDA=1 but no usable CUDA toolkit (found: {cuda_home}) "
                           f"or torch is a CPU build (torch.version.cuda={torch.version.cuda})")
    if want_cuda == "0":
        with_cuda = False
    if with_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        cpp_extension.CUDA_HOME = cuda_home
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", build.CUDA_ARCHS)
    extension_cls = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    defines = [("FASTGAN_TORCH_VERSION", f'"{torch.__version__}"'), ("FASTGAN_SOURCE_HASH", f'"{build.source_hash()}"')]
    if with_cuda:
        defines.append(("FASTGAN_WITH_CUDA", "1"))
    ext = extension_cls(
        name="fastgan._C",
        sources=[os.path.relpath(p) for p in build.sources(with_cuda)],
        include_dirs=[os.path.abspath("csrc")],
        define_macros=defines,
        extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS},
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"fastgan._csrc": ["**/*.cpp", "**/*.cu", "**/*.h", "**/*.cuh"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
