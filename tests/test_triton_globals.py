"""The Triton compiler's rule that the CPU interpreter does not enforce: a @triton.jit function may read a module
global only if it is a tl.constexpr, another jit function or a module. A plain float (say a GELU constant) runs fine
under TRITON_INTERPRET=1 and then fails to compile on every GPU, so check every kernel's globals here."""
import importlib
import pkgutil
import types

import pytest
import triton
import triton.language as tl

import kernels

MODULES = sorted(info.name for info in pkgutil.iter_modules(kernels.__path__) if not info.name.startswith("_"))


def _jit_functions(module):
    """(name, python function) of every @triton.jit function in `module`, interpreted or compiled."""
    found = []
    for name, value in vars(module).items():
        fn = getattr(value, "fn", None)
        if isinstance(fn, types.FunctionType) and type(value).__module__.startswith("triton."):
            found.append((name, fn))
    return found


def _allowed(value):
    return (isinstance(value, (tl.constexpr, types.ModuleType)) or type(value).__module__.startswith("triton.")
            or value is triton.language or getattr(value, "__module__", "").startswith("triton"))


@pytest.mark.parametrize("module_name", MODULES)
def test_jit_functions_read_only_constexpr_globals(module_name):
    module = importlib.import_module(f"kernels.{module_name}")
    functions = _jit_functions(module)
    assert functions, f"kernels.{module_name} has no @triton.jit function"
    bad = []
    for name, fn in functions:
        for global_name in fn.__code__.co_names:
            if global_name in fn.__globals__ and not _allowed(fn.__globals__[global_name]):
                bad.append(f"{name} reads {global_name} = {fn.__globals__[global_name]!r}")
    assert not bad, f"kernels.{module_name}: wrap these in tl.constexpr(...): {bad}"


def test_the_check_catches_a_plain_float():
    plain = types.ModuleType("plain")
    exec("import triton\nimport triton.language as tl\nK = 0.5\n"
         "@triton.jit\ndef kernel(p):\n    tl.store(p, K)\n", plain.__dict__)
    name, fn = _jit_functions(plain)[0]
    assert name == "kernel" and not _allowed(fn.__globals__["K"])
