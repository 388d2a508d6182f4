"""fastgan.optim.RMSprop / Adam (fused step + clamp) against torch.optim followed by a clamp loop, over 100 steps."""
import copy
import math

import pytest
import torch

import fastgan
from conftest import device_backends
from fastgan.optim import Adam, RMSprop
from fastgan.ops import fused_optim



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny parameter sets: one thread keeps OpenMP's barriers from dominating on a loaded 2-core machine (the
    kernels' chunking is the same whatever the thread count; test_many_chunks_two_threads covers two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


RMSPROP_CONFIGS = [dict(lr=1e-3), dict(lr=1e-3, weight_decay=0.1, maximize=True),
                   dict(lr=1e-3, centered=True, momentum=0.9), dict(lr=5e-4, alpha=0.9, momentum=0.5, eps=1e-6)]
ADAM_CONFIGS = [dict(lr=1e-3), dict(lr=1e-3, betas=(0.0, 0.9), weight_decay=0.1, amsgrad=True),
                dict(lr=1e-3, weight_decay=0.05, decoupled_weight_decay=True, maximize=True)]


def _model(dtype=torch.float32, device="cpu"):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 1)).to(dtype).to(device)


def _train(model, opt, steps, clip=None, scheduler=None, seed=1):
    """A WGAN-critic-like objective on fixed data: smooth, so 1-ulp differences stay small over the steps."""
    g = torch.Generator().manual_seed(seed)
    p0 = next(model.parameters())
    real = torch.randn(16, 6, generator=g).to(p0)
    fake = (torch.randn(16, 6, generator=g) * 0.5 + 0.3).to(p0)
    for _ in range(steps):
        opt.zero_grad()
        loss = model(fake).mean() - model(real).mean() + 0.1 * (model(real) ** 2).mean()
        loss.backward()
        opt.step()
        if clip is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.clamp_(-clip, clip)
        if scheduler is not None:
            scheduler.step()
    return model


def _assert_params_close(a, b, dtype, rtol=None):
    """Relative to the model's largest weight: a parameter that sits near zero (a bias under the clamp) would turn
    the few-ulp-per-step drift that separates any two correct float32 implementations (seen on CUDA, centered RMSprop,
    1.6e-5 of a 0.008-sized bias after 100 steps) into a failure, while a wrong update moves weights by ~lr = 1e-3."""
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2) if rtol is None else rtol
    scale = max(q.detach().abs().max().item() for q in b.parameters()) or 1.0
    for p, q in zip(a.parameters(), b.parameters()):
        err = (p.detach().double() - q.detach().double()).abs().max().item()
        assert err <= tol * scale, (err, scale)


def _compare(torch_cls, fused_cls, config, clip, backend, device="cpu", steps=100, dtype=torch.float32, rtol=None):
    ref, ours = _model(dtype, device), _model(dtype, device)
    _train(ref, torch_cls(ref.parameters(), foreach=False, **config), steps, clip=clip)
    with fastgan.backend(backend):
        _train(ours, fused_cls(ours.parameters(), clip=clip, **config), steps)
    _assert_params_close(ours, ref, dtype, rtol)


@pytest.mark.parametrize("device,backend", [p for p in device_backends() if "triton" not in p.id])
@pytest.mark.parametrize("config", RMSPROP_CONFIGS)
@pytest.mark.parametrize("clip", [None, 0.05])
def test_rmsprop_matches_torch(device, backend, config, clip):
    _compare(torch.optim.RMSprop, RMSprop, config, clip, backend, device)


@pytest.mark.parametrize("device,backend", [p for p in device_backends() if "triton" not in p.id])
@pytest.mark.parametrize("config", ADAM_CONFIGS)
@pytest.mark.parametrize("clip", [None, 0.05])
def test_adam_matches_torch(device, backend, config, clip):
    _compare(torch.optim.Adam, Adam, config, clip, backend, device)


@pytest.mark.parametrize("device,backend", [p for p in device_backends() if "triton" in p.id])
@pytest.mark.parametrize("which", ["rmsprop", "rmsprop_centered", "adam", "adam_amsgrad"])
def test_triton_matches_torch(device, backend, which):
    # The interpreter runs one program at a time: fewer steps, same tolerance.
    cls, torch_cls, config = {"rmsprop": (RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS[1]),
                              "rmsprop_centered": (RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS[2]),
                              "adam": (Adam, torch.optim.Adam, ADAM_CONFIGS[0]),
                              "adam_amsgrad": (Adam, torch.optim.Adam, ADAM_CONFIGS[1])}[which]
    _compare(torch_cls, cls, config, 0.05, backend, device, steps=20)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_fp64(backend):
    _compare(torch.optim.RMSprop, RMSprop, RMSPROP_CONFIGS[2], 0.05, backend, dtype=torch.float64)
    _compare(torch.optim.Adam, Adam, ADAM_CONFIGS[1], 0.05, backend, dtype=torch.float64)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_follows_torch(backend, dtype):
    """Rounded where torch's step rounds: close to torch's own low-precision trajectory (the Triton interpreter
    converts to bf16 by truncation, hence the looser bound there)."""
    steps = 15 if backend == "cpp" else 6
    rtol = 2e-2 if backend == "cpp" else 6e-2
    _compare(torch.optim.RMSprop, RMSprop, dict(lr=1e-3, eps=1e-4), 0.05, backend, dtype=dtype, steps=steps,
             rtol=rtol)
    _compare(torch.optim.Adam, Adam, dict(lr=1e-3, eps=1e-4), 0.05, backend, dtype=dtype, steps=steps, rtol=rtol)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_mixed_dtypes_and_layouts(backend):
    """One param group mixing fp32, fp64, bf16, channels_last, a transposed (dense) and an empty parameter."""
    torch.manual_seed(3)
    shapes = [((4, 3, 2, 2), torch.float32, "cl"), ((5, 7), torch.float64, "t"), ((9,), torch.bfloat16, None),
              ((0,), torch.float32, None), ((3, 3), torch.float32, None)]

    def make():
        torch.manual_seed(4)
        ps = []
        for shape, dtype, layout in shapes:
            p = torch.randn(shape).to(dtype)
            if layout == "cl":
                p = p.to(memory_format=torch.channels_last)
            if layout == "t":
                p = p.t().contiguous().t()
            ps.append(torch.nn.Parameter(p))
        return ps

    for torch_cls, cls, config in ((torch.optim.RMSprop, RMSprop, RMSPROP_CONFIGS[2]),
                                   (torch.optim.Adam, Adam, ADAM_CONFIGS[1])):
        ref, ours = make(), make()
        opt_ref, opt = torch_cls(ref, foreach=False, **config), cls(ours, clip=0.5, **config)
        for step in range(5):
            for ps in (ref, ours):
                for i, p in enumerate(ps):
                    g = torch.Generator().manual_seed(10 * step + i)
                    p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
                    if i == 0:
                        p.grad = p.grad.contiguous(memory_format=torch.channels_last)
            opt_ref.step()
            with torch.no_grad():
                for p in ref:
                    p.clamp_(-0.5, 0.5)
            with fastgan.backend(backend):
                opt.step()
        for p, q in zip(ours, ref):
            assert p.stride() == q.stride()
            tol = 1e-5 if p.dtype != torch.bfloat16 else 5e-2
            torch.testing.assert_close(p.detach().double(), q.detach().double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_many_chunks_two_threads(kind):
    """Parameters of several 16k-element chunks, updated by two threads: equal to the reference step."""
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(8)
    make = lambda: [torch.randn(n, generator=torch.Generator().manual_seed(n)) for n in (70001, 5, 40000)]  # noqa
    ours, ref = make(), make()
    grads = [torch.randn(p.shape, generator=g) for p in ours]
    states = [[torch.rand(p.shape, generator=g) + s for p in ours] for s in (1.0, -0.5, 0.0)]  # |grad_avg| < 1
    states_ref = [[t.clone() for t in s] for s in states]
    if kind == "rmsprop":
        kw = dict(lr=1e-2, centered=True, momentum=0.9, clip=0.5)
        with fastgan.backend("cpp"):
            fused_optim.rmsprop_step_(ours, grads, *states, **kw)
        fused_optim.rmsprop_step_reference(ref, grads, *states_ref, **kw)
    else:
        kw = dict(lr=1e-2, amsgrad=True, clip=0.5)
        with fastgan.backend("cpp"):
            fused_optim.adam_step_(ours, grads, *states, [3, 3, 3], **kw)
        fused_optim.adam_step_reference(ref, grads, *states_ref, [3, 3, 3], **kw)
    for a, b in zip(ours + sum(states, []), ref + sum(states_ref, [])):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_param_groups_and_scheduler():
    ref, ours = _model(), _model()
    groups = lambda m: [{"params": m[0].parameters(), "lr": 2e-3}, {"params": m[2].parameters()}]  # noqa: E731
    opt_ref = torch.optim.RMSprop(groups(ref), lr=1e-3, foreach=False)
    opt = RMSprop(groups(ours), lr=1e-3, clip=None)
    opt.param_groups[1]["clip"] = 0.05  # per-group clip
    sched_ref = torch.optim.lr_scheduler.StepLR(opt_ref, step_size=10, gamma=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 6, generator=g)
    for _ in range(40):
        for m, o, s in ((ref, opt_ref, sched_ref), (ours, opt, sched)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
            s.step()
        with torch.no_grad():
            for p in ref[2].parameters():
                p.clamp_(-0.05, 0.05)
    assert opt.param_groups[0]["lr"] == opt_ref.param_groups[0]["lr"]
    _assert_params_close(ours, ref, torch.float32)


@pytest.mark.parametrize("cls,torch_cls,config", [(RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS[2]),
                                                  (Adam, torch.optim.Adam, ADAM_CONFIGS[1])])
def test_state_dict_round_trip(cls, torch_cls, config):
    straight = _model()
    _train(straight, cls(straight.parameters(), clip=0.05, **config), 20)

    first = _model()
    opt = cls(first.parameters(), clip=0.05, **config)
    _train(first, opt, 10)
    saved_model, saved_opt = copy.deepcopy(first.state_dict()), copy.deepcopy(opt.state_dict())
    assert saved_opt["param_groups"][0]["clip"] == 0.05
    assert set(saved_opt["state"][0]) >= {"step", "square_avg" if cls is RMSprop else "exp_avg"}
    second = _model()
    second.load_state_dict(saved_model)
    opt2 = cls(second.parameters(), **config)
    opt2.load_state_dict(saved_opt)
    _train(second, opt2, 10, seed=1)
    # _train draws the same data every call, so 10 + 10 steps equal 20 straight ones.
    _assert_params_close(second, straight, torch.float32, rtol=0)


@pytest.mark.parametrize("cls,torch_cls,config", [(RMSprop, torch.optim.RMSprop, RMSPROP_CONFIGS[2]),
                                                  (Adam, torch.optim.Adam, ADAM_CONFIGS[0])])
def test_state_dicts_interchange_with_torch(cls, torch_cls, config):
    ref, ours = _model(), _model()
    opt_ref = torch_cls(ref.parameters(), foreach=False, **config)
    _train(ref, opt_ref, 10)
    ours.load_state_dict(ref.state_dict())
    opt = cls(ours.parameters(), **config)
    opt.load_state_dict(copy.deepcopy(opt_ref.state_dict()))  # torch's state into ours (no "clip": None)
    assert opt.param_groups[0]["clip"] is None
    _train(ref, opt_ref, 10)
    _train(ours, opt, 10)
    _assert_params_close(ours, ref, torch.float32)
    back = torch_cls(_model().parameters(), foreach=False, **config)
    back.load_state_dict(copy.deepcopy(opt.state_dict()))  # and ours into torch's
    assert back.state[back.param_groups[0]["params"][0]]["step"].item() == 20


def test_zero_grad_closure_and_missing_grads():
    model = _model()
    frozen = model[0].bias
    opt = Adam(model.parameters(), lr=1e-2, clip=0.1)
    before = frozen.detach().clone()

    def closure():
        opt.zero_grad()
        loss = model(torch.ones(2, 6)).sum()
        loss.backward()
        frozen.grad = None  # a parameter without a gradient is skipped (as torch does)
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert torch.equal(frozen.detach(), before) and len(opt.state[frozen]) == 0
    assert all(p.detach().abs().max() <= 0.1 for p in model.parameters() if p is not frozen)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_strided_parameter_uses_reference():
    """A parameter whose grad does not share its layout is still updated exactly (reference path)."""
    torch.manual_seed(0)
    p, q = torch.randn(4, 6), None
    q = p.clone()
    grads = torch.randn(6, 4).t()  # transposed: not p's layout
    sq_p, sq_q = torch.zeros_like(p), torch.zeros_like(q)
    with fastgan.backend("cpp"):
        fused_optim.rmsprop_step_([p], [grads], [sq_p], [], [], lr=1e-2, clip=0.3)
    fused_optim.rmsprop_step_reference([q], [grads], [sq_q], [], [], lr=1e-2, clip=0.3)
    assert torch.equal(p, q) and torch.equal(sq_p, sq_q)


@pytest.mark.parametrize("cls", [RMSprop, Adam])
def test_bad_arguments(cls):
    params = list(_model().parameters())
    for clip in (0, -0.01, math.inf, math.nan):
        with pytest.raises(ValueError, match="clip"):
            cls(params, clip=clip)
    with pytest.raises(TypeError, match="clip"):
        cls(params, clip="0.01")
    with pytest.raises(ValueError, match="learning rate"):
        cls(params, lr=-1.0)
    with pytest.raises(TypeError, match="parameter 0"):
        cls([torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)])
    with pytest.raises(TypeError, match=r"params\[1\]"):
        fused_optim.rmsprop_step_([torch.zeros(2), torch.zeros(2, dtype=torch.int32)], [torch.zeros(2)] * 2,
                                  [torch.zeros(2)] * 2, [], [], lr=0.1)
    with pytest.raises(ValueError, match="grads"):
        fused_optim.adam_step_([torch.zeros(2)], [], [torch.zeros(2)], [torch.zeros(2)], [], [1], lr=0.1)
    with pytest.raises(ValueError, match="clip"):
        fused_optim.adam_step_([torch.zeros(2)], [torch.zeros(2)], [torch.zeros(2)], [torch.zeros(2)], [], [1],
                               lr=0.1, clip=0.0)
