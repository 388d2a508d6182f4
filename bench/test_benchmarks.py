"""Every fastgan benchmark case through pytest-benchmark (see conftest.py): `pytest bench/ --benchmark-only`."""
import pytest
import torch


def test_case(benchmark, bench_item, bench_device):
    bench, impl, reason = bench_item
    if reason is not None:
        pytest.skip(reason)
    fn = bench.run[impl]
    if bench_device.type == "cuda":
        def timed():
            fn()
            torch.cuda.synchronize()
    else:
        timed = fn
    benchmark.group = f"{bench.op} {bench.label} {bench.mode}"
    benchmark.extra_info.update(op=bench.op, label=bench.label, mode=bench.mode, impl=impl, bytes=bench.bytes,
                                flops=bench.flops, samples=bench.samples, device=bench_device.type)
    benchmark(timed)
