"""Benchmark cases: what each op's benchmark runs, and the bytes and FLOPs it must move and do.

An op's module in fastgan/benchmark/cases/ registers one factory:

    @case("grad_norm_penalty")
    def grad_norm_penalty_cases(device, dtype, preset, modes):
        for shape in sizes(preset, SIZES):             # a preset name, or the shapes given by --sizes LIST
            inputs = ...                               # random inputs, never zeros
            runs, skipped = backend_runs("grad_norm_penalty", device, lambda: ...)
            yield Bench(op="grad_norm_penalty", label=shape_label(shape), mode="fwd_bwd",
                        run={"eager": ..., "compile": ..., **runs}, skipped=skipped,
                        bytes=..., flops=...)

`run` maps an implementation name to a zero-argument callable doing one iteration: "eager" (the reference in
plain PyTorch: the baseline), "compile" (torch.compile of the reference, where it compiles), and one entry per
fastgan backend ("cpp", "cuda", "triton"); end-to-end cases use "plain" and "fastgan". `skipped` maps an
implementation to the reason it cannot run (torch.compile and double backward, say): reports show the reason.

Modes: "fwd" (forward only), "fwd_bwd" (forward and the gradient of the inputs), "full" (the op's whole gradient
stack as a gradient penalty uses it: forward, backward with create_graph, and the backward of that backward).
`bytes` is the fewest bytes the mode must move through memory (each input read once, each output written once,
summed over the passes the mode needs); `flops` the floating-point operations it must do. The harness turns them
into achieved GB/s and percent of the copy bandwidth and matmul rate it measures in the same run.
"""
import dataclasses
import functools
import importlib
import pkgutil
import re
import traceback
from typing import Callable, Dict, Iterable, Optional

import torch

import fastgan
from fastgan import backends

PRESETS = ("small", "medium", "large")
MODES = ("fwd", "fwd_bwd", "full")
# Column order of the reports: the baselines, then fastgan's backends; end-to-end cases: plain PyTorch vs fastgan.
BASELINES = ("eager", "compile")
BACKEND_NAMES = tuple(b for b in backends.BACKENDS if b != "reference")
IMPLEMENTATIONS = BASELINES + BACKEND_NAMES
E2E_IMPLEMENTATIONS = ("plain", "fastgan")
INTERPRETER_REASON = "interpreter: not timed (Triton on CPU tensors runs only under TRITON_INTERPRET=1)"


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
    # Optional, for reports: the x coordinate of time-vs-size plots (default: number of elements in the label, or
    # bytes), samples processed per call (end-to-end cases report samples/s), and a note shown beside the row.
    size: Optional[float] = None
    samples: int = 0
    note: str = ""


CASES: Dict[str, Callable[..., Iterable[Bench]]] = {}
LOAD_ERRORS: Dict[str, str] = {}


def case(op):
    """Register `factory(device, dtype, preset, modes) -> iterable of Bench` as op's benchmark."""
    def register(factory):
        CASES[op] = factory
        return factory
    return register


def load_cases(strict=True):
    """Import every module of fastgan.benchmark.cases so that they register; returns CASES.

    With strict=False a module that fails to import is recorded in LOAD_ERRORS (module name -> one-line reason)
    instead of raising, so that one half-written case file cannot stop the whole suite.
    """
    from fastgan.benchmark import cases
    for info in pkgutil.iter_modules(cases.__path__):
        name = f"fastgan.benchmark.cases.{info.name}"
        try:
            importlib.import_module(name)
            LOAD_ERRORS.pop(info.name, None)
        except Exception as error:  # noqa: BLE001 - reported in the table, see docstring
            if strict:
                raise
            LOAD_ERRORS[info.name] = f"case module failed to import: {one_line(error)}"
    return CASES


def runnable_backends(op, device):
    """The fastgan backends (other than reference) that can run on `device` here, with reasons for the rest."""
    ok, refused = [], {}
    for name in BACKEND_NAMES:
        available, why = backends.availability(name, device)
        if available:
            ok.append(name)
        else:
            refused[name] = why
    return ok, refused


def timed_backends(op, device):
    """As runnable_backends, but Triton on CPU (the interpreter) goes to the refused side: never timed."""
    ok, refused = runnable_backends(op, device)
    if torch.device(device).type == "cpu" and "triton" in ok:
        ok.remove("triton")
        refused["triton"] = INTERPRETER_REASON
    return ok, refused


def backend_runs(op, device, fn):
    """({backend: callable running fn() on that backend}, {backend: reason}) for every fastgan backend."""
    ok, refused = timed_backends(op, device)
    return {name: with_backend(name, fn) for name in ok}, dict(refused)


def with_backend(name, fn):
    """A callable that runs fn() with fastgan backend `name` forced."""
    def run():
        with fastgan.backend(name):
            return fn()
    return run


# torch.compile policy for the whole run: the harness turns it off in quick (smoke) mode, where compiling every
# case would cost minutes, and the reason then appears in the reports.
_compile_policy = {"enabled": True, "reason": ""}


def set_compile(enabled, reason=""):
    _compile_policy.update(enabled=bool(enabled), reason=reason)


def compile_disabled_reason():
    """None when torch.compile may run, else why not."""
    return None if _compile_policy["enabled"] else (_compile_policy["reason"] or "torch.compile disabled")


def _raise_recompile_limit():
    # Every case compiles the same reference function for a new shape, dtype and mode: without a higher limit
    # dynamo would silently fall back to eager after 8 recompilations and the "compile" column would lie.
    try:
        import torch._dynamo as dynamo
        for key in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo.config, key):
                setattr(dynamo.config, key, max(getattr(dynamo.config, key), 512))
        if hasattr(dynamo.config, "accumulated_recompile_limit"):
            dynamo.config.accumulated_recompile_limit = max(dynamo.config.accumulated_recompile_limit, 4096)
        elif hasattr(dynamo.config, "accumulated_cache_size_limit"):
            dynamo.config.accumulated_cache_size_limit = max(dynamo.config.accumulated_cache_size_limit, 4096)
    except Exception:  # noqa: BLE001 - best effort on old torch
        pass


def compiled(fn, reason_if_fails="torch.compile failed"):
    """(callable, None) running torch.compile(fn), or (None, reason) if it cannot compile here."""
    disabled = compile_disabled_reason()
    if disabled:
        return None, disabled
    _raise_recompile_limit()
    try:
        compiled_fn = torch.compile(fn)
        compiled_fn()
        return compiled_fn, None
    except Exception as error:  # report, never crash the suite: the reason goes into the table
        return None, f"{reason_if_fails}: {one_line(error)}"


def add_compiled(runs, skipped, function, call, double_backward=False):
    """runs["compile"] = compiled_call(function, call), or skipped["compile"] = why not (double_backward: the mode
    takes a double backward, which torch.compile refuses up front)."""
    reason = compile_double_backward_reason() if double_backward else None
    if reason is None:
        compiled, reason = compiled_call(function, call)
        if compiled is not None:
            runs["compile"] = compiled
    if reason is not None:
        skipped["compile"] = reason


def compiled_call(function, call, reason_if_fails="torch.compile failed"):
    """(callable, None) running call(torch.compile(function)), or (None, reason).

    Compiles the op itself (static shapes) and runs the caller's driver around it, so a backward taken outside
    the compiled function goes through AOTAutograd's compiled backward, as in a user's training loop. A double
    backward is refused up front with the reason torch gives (see double_backward_reason)."""
    disabled = compile_disabled_reason()
    if disabled:
        return None, disabled
    _raise_recompile_limit()
    try:
        compiled_fn = torch.compile(function, dynamic=False)
        run = functools.partial(call, compiled_fn)
        run()
        return run, None
    except Exception as error:  # noqa: BLE001
        return None, f"{reason_if_fails}: {one_line(error)}"


def compile_double_backward_reason():
    """Why torch.compile cannot run a double backward in this torch (None if it can), probed once on a tiny function."""
    return compile_disabled_reason() or _probe_double_backward()


@functools.lru_cache(maxsize=None)
def _probe_double_backward():
    _raise_recompile_limit()
    try:
        def square_norm(x):
            return (x * x).sum(dim=1)

        x = torch.randn(2, 3, requires_grad=True)
        y = torch.compile(square_norm, dynamic=False)(x)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        g.sum().backward()
        return None
    except Exception as error:  # noqa: BLE001
        return f"torch.compile cannot do double backward: {one_line(error)}"


class SizeList(tuple):
    """Explicit sizes given on the command line (--sizes 64x3x32x32,256x3x64x64): a tuple of int tuples."""

    def __new__(cls, shapes, spec=""):
        self = super().__new__(cls, tuple(tuple(int(v) for v in s) for s in shapes))
        self.spec = spec
        return self


def parse_sizes(text):
    """A preset name, or a SizeList from 'AxBxC,DxE,...'. Raises ValueError naming what is wrong."""
    text = text.strip()
    if text in PRESETS:
        return text
    shapes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if not re.fullmatch(r"\d+(x\d+)*", item):
            raise ValueError(f"sizes: {item!r} is neither a preset ({', '.join(PRESETS)}) nor a shape like 64x3x32x32")
        shape = tuple(int(v) for v in item.split("x"))
        if any(v <= 0 for v in shape):
            raise ValueError(f"sizes: every dimension of {item!r} must be positive")
        shapes.append(shape)
    if not shapes:
        raise ValueError(f"sizes: give a preset ({', '.join(PRESETS)}) or a comma-separated list of shapes")
    return SizeList(shapes, text)


def sizes(preset, table):
    """The shapes to run: table[preset] for a preset name; for explicit sizes, those of the table's rank."""
    if isinstance(preset, str):
        return list(table[preset])
    ranks = {len(shape) for shapes in table.values() for shape in shapes}
    return [shape for shape in preset if not ranks or len(shape) in ranks]


def sizes_for(device, preset, table, gpu_large_extra=()):
    """sizes(preset, table), plus `gpu_large_extra` for the large preset on CUDA (sizes far above L2, where
    bandwidth, not launches, decides)."""
    shapes = sizes(preset, table)
    if preset == "large" and torch.device(device).type == "cuda":
        shapes += list(gpu_large_extra)
    return shapes


def shape_label(shape):
    return "x".join(str(v) for v in shape)


def numel(shape):
    n = 1
    for v in shape:
        n *= int(v)
    return n


def rotating(make, count):
    """A callable cycling through `count` calls of make() (e.g. closures over separate input sets).

    Use it where one input set fits in the GPU's L2 and the timing loop would otherwise measure the cache; the
    harness's CUDA timer also flushes L2 between repeats (triton.testing.do_bench), so this is for cases that
    want warm-but-not-resident inputs."""
    runs = [make() for _ in range(max(1, count))]
    state = {"i": 0}

    def run():
        fn = runs[state["i"]]
        state["i"] = (state["i"] + 1) % len(runs)
        return fn()
    return run


def one_line(error):
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def format_exception(error):
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
