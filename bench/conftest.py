"""pytest-benchmark front end of the fastgan benchmark suite: `pytest bench/ --benchmark-only`.

Runs the cases registered in fastgan/benchmark/cases (the same ones `fastgan bench` times), one test per case and
implementation; implementations that cannot run skip with the suite's reason. Options (or environment variables):
  --fastgan-device cpu|cuda   ($FASTGAN_BENCH_DEVICE; default: cuda when present)
  --fastgan-dtype fp32|bf16|fp16   ($FASTGAN_BENCH_DTYPE; default fp32)
  --fastgan-sizes small|medium|large|LIST   ($FASTGAN_BENCH_SIZES; default small: every case is built at
                                             collection time and holds its tensors for the session)
  --fastgan-ops OP[,OP...]   ($FASTGAN_BENCH_OPS; default: all)
  --fastgan-mode fwd|fwd_bwd|full   ($FASTGAN_BENCH_MODE; default: all)
This folder is not collected by a plain `pytest` (pyproject's testpaths is tests/).
"""
import os

import pytest
import torch


def pytest_addoption(parser):
    group = parser.getgroup("fastgan", "fastgan benchmark cases")
    group.addoption("--fastgan-device", default=os.environ.get("FASTGAN_BENCH_DEVICE"))
    group.addoption("--fastgan-dtype", default=os.environ.get("FASTGAN_BENCH_DTYPE", "fp32"))
    group.addoption("--fastgan-sizes", default=os.environ.get("FASTGAN_BENCH_SIZES", "small"))
    group.addoption("--fastgan-ops", default=os.environ.get("FASTGAN_BENCH_OPS", ""))
    group.addoption("--fastgan-mode", default=os.environ.get("FASTGAN_BENCH_MODE", ""))


def _settings(config):
    device = config.getoption("--fastgan-device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"device": device, "dtype": config.getoption("--fastgan-dtype"),
            "sizes": config.getoption("--fastgan-sizes"),
            "ops": [o for o in config.getoption("--fastgan-ops").split(",") if o],
            "modes": [m for m in config.getoption("--fastgan-mode").split(",") if m]}


def _items(settings):
    """(id, (bench, impl, skip reason or None)) for every case and implementation."""
    from fastgan.benchmark import registry, suite

    cases = registry.load_cases(strict=False)
    device = torch.device(settings["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        return [pytest.param(None, id="no-cuda", marks=pytest.mark.skip(reason="no CUDA device here"))]
    dtype = suite.DTYPES[settings["dtype"]]
    preset = registry.parse_sizes(settings["sizes"])
    modes = tuple(settings["modes"] or registry.MODES)
    items = []
    for op in suite.resolve_ops(settings["ops"] or None, cases):
        if op not in cases:
            items.append(pytest.param((None, None, registry.LOAD_ERRORS.get(op, "no cases")), id=f"{op}"))
            continue
        refused = registry.timed_backends(op, device)[1]
        try:
            benches = list(suite._iterate(op, cases[op], device, dtype, preset, modes))
        except Exception as error:  # noqa: BLE001 - show it as a skipped test, not a collection error
            items.append(pytest.param((None, None, f"case factory failed: {registry.one_line(error)}"), id=op))
            continue
        for bench in benches:
            if bench.mode in registry.MODES and bench.mode not in modes:
                continue
            for impl in suite.implementations_of(bench):
                reason = None
                if impl in bench.run:
                    if device.type == "cpu" and impl == "triton":
                        reason = registry.INTERPRETER_REASON
                else:
                    reason = bench.skipped.get(impl) or refused.get(impl) or "not benchmarked by this case"
                items.append(pytest.param((bench, impl, reason),
                                          id=f"{bench.op}-{bench.label}-{bench.mode}-{impl}".replace(" ", "_")))
    return items


def pytest_generate_tests(metafunc):
    if "bench_item" in metafunc.fixturenames:
        settings = _settings(metafunc.config)
        metafunc.parametrize("bench_item", _items(settings))
        metafunc.config._fastgan_bench_device = settings["device"]


@pytest.fixture
def bench_device(request):
    return torch.device(getattr(request.config, "_fastgan_bench_device", "cpu"))
