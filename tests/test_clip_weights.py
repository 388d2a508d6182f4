"""clip_weights_: every backend against the per-parameter clamp loop (the reference), bit for bit."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan
from conftest import device_backends
from fastgan.ops.clip_weights import clip_weights_, clip_weights_reference

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _params(device, seed=0):
    """Random parameters of every dtype and awkward layouts: empty, 0-dim, odd sizes, multi-chunk, transposed
    (dense, not contiguous), channels_last, a strided slice (not dense), specials."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, dtype=torch.float32: (torch.randn(*shape, generator=g) * 0.05).to(dtype)  # noqa: E731
    params = [rand(17), rand(3, 5, dtype=torch.float64), rand(401, dtype=torch.float16),
              rand(7, 9, dtype=torch.bfloat16), rand(0), rand(()), rand(20000 + 3), rand(9, 7).t(),
              rand(2, 3, 4, 5).to(memory_format=torch.channels_last),
              rand(10, 12)[:, ::2], rand(33, dtype=torch.float64)[::3],
              torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, 0.03, -0.03])]
    return [p.to(device) for p in params]


def _assert_same(out, ref):
    for a, b in zip(out, ref):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("clip", [0.01, 0.037, 2.5])
def test_matches_clamp_loop(device, backend, clip):
    params, ref = _params(device), _params(device)
    with fastgan.backend(backend):
        clip_weights_(params, clip)
    clip_weights_reference(ref, clip)
    _assert_same(params, ref)


@pytest.mark.parametrize("device,backend", device_backends())
def test_module_and_single_tensor(device, backend):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(), torch.nn.Linear(8, 5)).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    expected = [p.detach().clamp(-0.02, 0.02) for p in model.parameters()]
    with fastgan.backend(backend):
        clip_weights_(model, clip=0.02)
        single = torch.randn(50, device=device)
        expected_single = single.clamp(-0.5, 0.5)
        clip_weights_(single, 0.5)
        gen = (torch.randn(6, device=device) for _ in range(2))
        clip_weights_(gen, 0.5)  # any iterable
    for p, e in zip(model.parameters(), expected):
        assert torch.equal(p.detach(), e)
        assert p.requires_grad and p.is_leaf
    assert torch.equal(single, expected_single)


@pytest.mark.parametrize("device,backend", device_backends())
def test_many_tensors_mixed_dtypes(device, backend):
    """More tensors than one CUDA launch takes (96), dtypes interleaved, int-free."""
    g = torch.Generator().manual_seed(1)
    params = [(torch.randn(1 + (i * 37) % 300, generator=g)).to(DTYPES[i % 4]).to(device) for i in range(130)]
    ref = [p.clone() for p in params]
    with fastgan.backend(backend):
        clip_weights_(params, 0.3)
    clip_weights_reference(ref, 0.3)
    _assert_same(params, ref)


@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6), clip=st.floats(1e-3, 3.0),
       dtype=st.sampled_from(DTYPES))
def test_fuzz_sizes_cpp(sizes, clip, dtype):
    params = [torch.randn(n).to(dtype) for n in sizes]
    ref = [p.clone() for p in params]
    with fastgan.backend("cpp"):
        clip_weights_(params, clip)
    clip_weights_reference(ref, clip)
    _assert_same(params, ref)


@pytest.mark.parametrize("clip", [0, -0.01, math.nan, math.inf])
def test_bad_clip_value(clip):
    with pytest.raises(ValueError, match="clip"):
        clip_weights_([torch.randn(3)], clip)


def test_bad_clip_type():
    with pytest.raises(TypeError, match="clip"):
        clip_weights_([torch.randn(3)], "0.01")
    with pytest.raises(TypeError, match="clip"):
        clip_weights_([torch.randn(3)], True)


def test_non_floating_refused_by_name():
    with pytest.raises(TypeError, match=r"params\[1\]"):
        clip_weights_([torch.randn(3), torch.arange(3)], 0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        clip_weights_([torch.zeros(2, dtype=torch.complex64)], 0.1)
    model = torch.nn.Linear(2, 2)
    model.register_parameter("counter", torch.nn.Parameter(torch.zeros(1, dtype=torch.int64), requires_grad=False))
    with pytest.raises(TypeError, match="counter"):
        clip_weights_(model, 0.1)
    nested = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    nested[0].register_parameter("steps", torch.nn.Parameter(torch.zeros(1, dtype=torch.int64), requires_grad=False))
    with pytest.raises(TypeError, match=r"params: 0\.steps "):  # the name of the offending one, in any module order
        clip_weights_(nested, 0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        clip_weights_([[1.0, 2.0]], 0.1)
    with pytest.raises(TypeError, match="params"):
        clip_weights_(3.0, 0.1)


def test_nothing_to_clip():
    clip_weights_([], 0.1)
    clip_weights_(torch.nn.ReLU(), 0.1)
