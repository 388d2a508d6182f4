"""Benchmark cases: what each op's benchmark runs, and the bytes and FLOPs it must move and do.

An op's module in fastgan/benchmark/cases/ registers one factory:

    @case("grad_norm_penalty")
    def grad_norm_penalty_cases(device, dtype, preset, modes):
        for shape in SIZES[preset]:
            inputs = ...                               # random inputs, never zeros
            yield Bench(op="grad_norm_penalty", label="x".join(map(str, shape)), mode="fwd_bwd",
                        run={"eager": ..., "compile": ..., **backend_runs(...)},
                        bytes=..., flops=...)

`run` maps an implementation name to a zero-argument callable doing one iteration: "eager" (the reference in
plain PyTorch: the baseline), "compile" (torch.compile of the reference, where it compiles), and one entry per
fastgan backend ("cpp", "cuda", "triton"); end-to-end cases use "plain" and "fastgan". `skipped` maps an
implementation to the reason it cannot run (torch.compile and double backward, say): reports show the reason.
"""
import dataclasses
import importlib
import pkgutil
from typing import Callable, Dict, Iterable

import torch

import fastgan
from fastgan import backends

PRESETS = ("small", "medium", "large")
MODES = ("fwd", "fwd_bwd", "full")


@dataclasses.dataclass
class Bench:
    op: str
    label: str
    mode: str
    run: Dict[str, Callable[[], object]]
    bytes: int = 0
    flops: int = 0
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)
    baseline: str = "eager"


CASES: Dict[str, Callable[..., Iterable[Bench]]] = {}


def case(op):
    """Register `factory(device, dtype, preset, modes) -> iterable of Bench` as op's benchmark."""
    def register(factory):
        CASES[op] = factory
        return factory
    return register


def load_cases():
    """Import every module of fastgan.benchmark.cases so that they register; returns CASES."""
    from fastgan.benchmark import cases
    for info in pkgutil.iter_modules(cases.__path__):
        importlib.import_module(f"fastgan.benchmark.cases.{info.name}")
    return CASES


def runnable_backends(op, device):
    """The fastgan backends (other than reference) that can run on `device` here, with reasons for the rest."""
    ok, refused = [], {}
    for name in backends.BACKENDS[1:]:
        available, why = backends.availability(name, device)
        if available:
            ok.append(name)
        else:
            refused[name] = why
    return ok, refused


def with_backend(name, fn):
    """A callable that runs fn() with fastgan backend `name` forced."""
    def run():
        with fastgan.backend(name):
            return fn()
    return run


def compiled(fn, reason_if_fails="torch.compile failed"):
    """(callable, None) running torch.compile(fn), or (None, reason) if it cannot compile here."""
    try:
        compiled_fn = torch.compile(fn)
        compiled_fn()
        return compiled_fn, None
    except Exception as error:  # report, never crash the suite: the reason goes into the table
        return None, f"{reason_if_fails}: {type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
