"""The CPU output block cache (csrc/common/cpu_block_cache.h): large outputs of the C++ CPU kernels reuse the blocks
of dead outputs, stay correct when a block still holds an earlier result, and the cache obeys its controls."""
import os
import subprocess
import sys

import pytest
import torch

import fastgan
from fastgan import _ext
from fastgan.ops import bias_act
from fastgan.ops.bias_act import bias_act_reference

pytestmark = pytest.mark.skipif(not _ext.load(), reason="the C++ extension did not build here")

SHAPE = (3, 64, 83, 71)  # 1.1 M elements: 4.5 MB in fp32, over the cache's 4 MB floor; odd sizes


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE[1], generator=g)


def test_block_is_reused_and_fully_rewritten():
    fastgan.empty_cpu_cache()
    x1, b1 = _inputs(0)
    x2, b2 = _inputs(1)
    with fastgan.backend("cpp"):
        first = bias_act(x1, b1, "silu")
        address = first.data_ptr()
        del first  # its block returns to the cache, still holding silu(x1 + b1)
        assert fastgan.cpu_cache_info()["idle_bytes"] >= x1.numel() * 4
        second = bias_act(x2, b2, "tanh", gain=1.7)
    assert second.data_ptr() == address
    torch.testing.assert_close(second, bias_act_reference(x2, b2, "tanh", None, 1.7, None, 1), rtol=1e-5, atol=1e-6)


def test_channels_last_and_gradients_through_cached_blocks():
    x, b = _inputs(2)
    x = x.to(memory_format=torch.channels_last).requires_grad_(True)
    b.requires_grad_(True)
    dy = torch.randn(SHAPE).to(memory_format=torch.channels_last)
    for _ in range(2):  # the second round runs on reused blocks
        with fastgan.backend("cpp"):
            y = bias_act(x, b, "lrelu")
            dx, db = torch.autograd.grad(y, (x, b), dy)
        assert y.is_contiguous(memory_format=torch.channels_last)
        xr, br = x.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
        yr = bias_act_reference(xr, br, "lrelu", None, 1.0, None, 1)
        dxr, dbr = torch.autograd.grad(yr, (xr, br), dy.double())
        torch.testing.assert_close(y.double(), yr, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(dx.double(), dxr, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(db.double(), dbr, rtol=1e-5, atol=1e-4)


def test_empty_cpu_cache_frees_idle_blocks():
    with fastgan.backend("cpp"):
        y = bias_act(*_inputs(3), "relu")
    del y
    assert fastgan.cpu_cache_info()["idle_bytes"] > 0
    assert fastgan.empty_cpu_cache() > 0
    assert fastgan.cpu_cache_info()["idle_bytes"] == 0


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_limit_zero_turns_the_cache_off():
    code = ("import torch, fastgan\nfrom fastgan.ops import bias_act\n"
            "with fastgan.backend('cpp'):\n    y = bias_act(torch.randn(4, 64, 80, 80), torch.randn(64))\n"
            "del y\nprint(fastgan.cpu_cache_info())")
    result = _run(code, FASTGAN_CPU_CACHE_MB="0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "{'idle_bytes': 0, 'limit_bytes': 0}" in result.stdout


def test_malformed_limit_is_a_clear_error():
    result = _run("import fastgan\nfastgan.cpu_cache_info()", FASTGAN_CPU_CACHE_MB="lots")
    assert result.returncode != 0
    assert "FASTGAN_CPU_CACHE_MB must be a whole number" in result.stderr


def test_outputs_on_cached_blocks_behave_like_any_tensor():
    x, b = _inputs(4)
    with fastgan.backend("cpp"):
        y = bias_act(x, b, "lrelu")
    expected = bias_act_reference(x, b, "lrelu", None, 1.0, None, 1)
    grown = bias_act(x, b, "lrelu")
    grown.resize_(x.numel() + 1000)  # a resize past the block moves the data to torch's allocator
    torch.testing.assert_close(grown[: x.numel()].view_as(x), expected)
    y.share_memory_()
    assert y.is_shared()
    torch.testing.assert_close(y, expected)
