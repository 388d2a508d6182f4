"""The gradient-penalty family: interpolate and grad_norm_penalty on every backend against the reference, their
gradients to second order, and the drop-in penalties against textbook critic steps."""
import warnings

import pytest
import torch
from conftest import CPU_BACKENDS, assert_close_to_reference, device_backends, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan
from fastgan import ops
from fastgan.ops.grad_norm_penalty import MODES

# Odd sizes, batch 1, one-element rows, and rows longer than one CPU chunk (16384) and one Triton program (4096).
SHAPES = [(1, 3, 5, 5), (7, 3, 17, 13), (3, 1), (2, 16411)]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def random_grad(shape, dtype, device="cpu", scale=0.3):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(device=device, dtype=dtype)


# ---------------------------------------------------------------- grad_norm_penalty

@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_penalty_matches_reference(device, backend, shape, dtype):
    for mode in MODES:
        check_grad_norm_penalty(device, backend, shape, dtype, mode)


def check_grad_norm_penalty(device, backend, shape, dtype, mode):
    grad = random_grad(shape, dtype, device).requires_grad_(True)
    upstream = torch.rand(shape[0], dtype=torch.float64, device=device) + 0.5
    with fastgan.backend(backend):
        penalty = ops.grad_norm_penalty(grad, target=1.0, mode=mode)
    (dgrad,) = torch.autograd.grad(penalty, grad, upstream.to(penalty.dtype))
    assert penalty.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)

    grad64 = grad.detach().double().requires_grad_(True)
    ref = ops.grad_norm_penalty_reference(grad64, 1.0, mode)
    (dref,) = torch.autograd.grad(ref, grad64, upstream)
    torch_lowp = None
    if dtype in (torch.bfloat16, torch.float16):
        # PyTorch's own low-precision computation of the same thing: the error budget's yardstick.
        g = grad.detach().requires_grad_(True)
        norm = g.flatten(1).norm(dim=1)
        excess = norm if mode == "squared" else (norm - 1.0).clamp(min=0) if mode == "one_sided" else norm - 1.0
        (torch_lowp,) = torch.autograd.grad(excess * excess, g, upstream.to(dtype))
    assert_close_to_reference(penalty, ref, torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close_to_reference(dgrad, dref, dtype, torch_lowp, backend)
    assert dgrad.dtype == dtype


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_grad_norm_penalty_layouts(backend, layout):
    base = random_grad((6, 4, 9, 7), torch.float32)
    if layout == "channels_last":
        grad = base.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        grad = base.transpose(2, 3)
    else:
        grad = random_grad((6, 8, 9, 7), torch.float32)[:, ::2]
    grad.requires_grad_(True)
    with fastgan.backend(backend):
        penalty = ops.grad_norm_penalty(grad, 1.0, "two_sided")
    (dgrad,) = torch.autograd.grad(penalty.sum(), grad)
    ref_in = grad.detach().double().requires_grad_(True)
    ref = ops.grad_norm_penalty_reference(ref_in, 1.0, "two_sided")
    (dref,) = torch.autograd.grad(ref.sum(), ref_in)
    assert rel_error(penalty, ref) < 1e-5 and rel_error(dgrad, dref) < 1e-5
    if layout == "channels_last" and backend != "reference":
        assert dgrad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_grad_norm_penalty_zero_rows_are_finite(backend, mode):
    grad = random_grad((4, 3, 5), torch.float32)
    grad[1] = 0
    grad.requires_grad_(True)
    with fastgan.backend(backend):
        penalty = ops.grad_norm_penalty(grad, 1.0, mode)
    (dgrad,) = torch.autograd.grad(penalty.sum(), grad)
    assert torch.isfinite(penalty).all() and torch.isfinite(dgrad).all()
    assert torch.equal(dgrad[1], torch.zeros_like(dgrad[1]))
    expected = 1.0 if mode == "two_sided" else 0.0  # (0 - t)^2, max(0, 0 - t)^2, 0^2
    assert penalty[1].item() == pytest.approx(expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_grad_norm_penalty_gradcheck(backend, mode):
    # one_sided: targets between the rows' norms, so both branches are exercised away from the kink.
    # Tiny on purpose: gradcheck runs the op once per element, and Triton's interpreter is slow per launch.
    grad = random_grad((3, 2, 2), torch.float64, scale=0.5).requires_grad_(True)
    target = grad.detach().flatten(1).norm(dim=1).median().item() + 1e-3

    def fn(g):
        with fastgan.backend(backend):
            return ops.grad_norm_penalty(g, target, mode)

    assert torch.autograd.gradcheck(fn, (grad,))
    assert torch.autograd.gradgradcheck(fn, (grad,))


@pytest.mark.parametrize("backend", ["cpp"])
def test_grad_norm_penalty_third_order(backend):
    grad = random_grad((3, 4), torch.float64).requires_grad_(True)

    def second(g):
        with fastgan.backend(backend):
            p = ops.grad_norm_penalty(g, 0.5, "two_sided").sum()
        (d,) = torch.autograd.grad(p, g, create_graph=True)
        return d

    assert torch.autograd.gradgradcheck(second, (grad,))


# ---------------------------------------------------------------- interpolate

@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_interpolate_matches_reference(device, backend, shape, dtype):
    real = random_grad(shape, dtype, device, 1.0).requires_grad_(True)
    fake = random_grad(shape, dtype, device, 1.0).requires_grad_(True)
    alpha = torch.rand(shape[0], device=device, dtype=torch.float32).requires_grad_(True)
    upstream = random_grad(shape, dtype, device, 1.0)
    with fastgan.backend(backend):
        out = ops.interpolate(real, fake, alpha)
    grads = torch.autograd.grad(out, (real, fake, alpha), upstream)
    leaves64 = [t.detach().double().requires_grad_(True) for t in (real, fake, alpha)]
    ref = ops.interpolate_reference(*leaves64)
    refs = torch.autograd.grad(ref, leaves64, upstream.double())
    lowp = None
    if dtype in (torch.bfloat16, torch.float16):
        lowp_leaves = [t.detach().requires_grad_(True) for t in (real, fake)]
        a = alpha.detach().to(dtype).view(-1, *([1] * (len(shape) - 1)))
        lowp_out = a * lowp_leaves[0] + (1 - a) * lowp_leaves[1]
        lowp = [lowp_out, *torch.autograd.grad(lowp_out, lowp_leaves, upstream)]
    assert out.dtype == dtype and out.shape == real.shape
    assert_close_to_reference(out, ref, dtype, lowp and lowp[0], backend)
    assert_close_to_reference(grads[0], refs[0], dtype, lowp and lowp[1], backend)
    assert_close_to_reference(grads[1], refs[1], dtype, lowp and lowp[2], backend)
    # alpha's gradient is a per-sample dot product accumulated in fp32: bound it by the inputs' rounding.
    bound = 1e-5 if dtype in (torch.float64, torch.float32) else 2e-2  # alpha is float32 here
    assert rel_error(grads[2], refs[2]) <= bound


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_interpolate_gradcheck(backend):
    real, fake = (random_grad((3, 2, 2), torch.float64, scale=1.0).requires_grad_(True) for _ in range(2))
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def fn(r, f, a):
        with fastgan.backend(backend):
            return ops.interpolate(r, f, a)

    assert torch.autograd.gradcheck(fn, (real, fake, alpha))
    assert torch.autograd.gradgradcheck(fn, (real, fake, alpha))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_interpolate_layouts_and_partial_grads(backend):
    real = random_grad((5, 3, 6, 4), torch.float32, scale=1.0).to(memory_format=torch.channels_last)
    fake = random_grad((5, 3, 6, 4), torch.float32, scale=1.0).transpose(2, 3).contiguous().transpose(2, 3)
    alpha = torch.rand(5, 1, 1, 1)
    real.requires_grad_(True)
    with fastgan.backend(backend):
        out = ops.interpolate(real, fake, alpha)
    (d_real,) = torch.autograd.grad(out.square().sum(), real)
    ref = ops.interpolate_reference(real.detach().double(), fake.double(), alpha.double())
    assert rel_error(out, ref) < 1e-6
    assert rel_error(d_real, 2 * ref * alpha.double()) < 1e-6


# ---------------------------------------------------------------- dispatch

def test_backend_selection_and_errors(monkeypatch):
    assert fastgan.get_backend() in ("auto",) + fastgan.backends.BACKENDS
    with pytest.raises(ValueError, match="backend"):
        fastgan.set_backend("fastest")
    with pytest.raises(TypeError, match="backend"):
        fastgan.set_backend(3)
    with pytest.raises(fastgan.BackendUnavailableError, match="cuda"):
        with fastgan.backend("cuda"):
            ops.grad_norm_penalty(torch.randn(2, 3))
    monkeypatch.setenv("FASTGAN_BACKEND", "reference")
    assert fastgan.get_backend() == "reference"
    with fastgan.backend("cpp"):
        assert fastgan.get_backend() == "cpp"
    monkeypatch.setenv("FASTGAN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTGAN_BACKEND"):
        fastgan.get_backend()
    # Read on every call (from os.environ's own dict): unset or empty means auto again.
    monkeypatch.setenv("FASTGAN_BACKEND", "")
    assert fastgan.get_backend() == "auto"
    monkeypatch.delenv("FASTGAN_BACKEND")
    assert fastgan.get_backend() == "auto"


def test_auto_picks_cpp_on_cpu():
    assert fastgan.backends.select("grad_norm_penalty", "cpu") == "cpp"


def test_auto_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(fastgan.backends, "availability", lambda name, device: (name == "reference", "broken"))
    monkeypatch.setattr(fastgan.backends, "_warned", set())
    with pytest.warns(RuntimeWarning, match="falls back to the reference"):
        assert fastgan.backends.select("grad_norm_penalty", "cpu") == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastgan.backends.select("grad_norm_penalty", "cpu") == "reference"


def test_torch_compile_traces_the_ops():
    def step(real, fake, alpha):
        mixed = ops.interpolate(real, fake, alpha)
        return ops.grad_norm_penalty(mixed * 2.0).mean()

    real, fake, alpha = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.rand(4)
    with fastgan.backend("cpp"):
        compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
        assert torch.allclose(compiled(real, fake, alpha), step(real, fake, alpha))


# ---------------------------------------------------------------- drop-in penalties vs textbook code

class MLPCritic(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(dim, 32), torch.nn.LeakyReLU(0.2),
                                       torch.nn.Linear(32, 32), torch.nn.Softplus(), torch.nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x)


def conv_critic():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 16, 3, 2, 1),
        torch.nn.Softplus(), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 1), torch.nn.Flatten(0))


def param_grads(critic, loss):
    critic.zero_grad()
    loss.backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in critic.parameters()]


def textbook_penalty(critic, points, target, mode):
    points = points.detach().requires_grad_(True)
    out = critic(points)
    (grad,) = torch.autograd.grad(out, points, torch.ones_like(out), create_graph=True)
    norm = grad.view(grad.shape[0], -1).norm(2, dim=1)
    if mode == "squared":
        return (norm ** 2).mean()
    excess = norm - target if mode == "two_sided" else torch.relu(norm - target)
    return (excess ** 2).mean()


CRITICS = {"mlp": lambda: MLPCritic(3 * 16 * 16), "conv": conv_critic}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("critic_kind", list(CRITICS))
@pytest.mark.parametrize("penalty_kind", ["wgan-gp", "wgan-lp", "r1", "r2", "dragan"])
def test_penalties_match_textbook_critic_step(backend, critic_kind, penalty_kind):
    torch.manual_seed(0)
    critic = CRITICS[critic_kind]().double()
    real, fake = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.randn(6, 3, 16, 16, dtype=torch.float64)
    alpha = torch.rand(6, dtype=torch.float64)
    mixed = alpha.view(-1, 1, 1, 1) * real + (1 - alpha.view(-1, 1, 1, 1)) * fake
    with fastgan.backend(backend):
        if penalty_kind in ("wgan-gp", "wgan-lp"):
            mode = "two_sided" if penalty_kind == "wgan-gp" else "one_sided"
            ours = fastgan.gradient_penalty(critic, real, fake, weight=10.0, mode=mode, alpha=alpha)
            theirs = 10.0 * textbook_penalty(critic, mixed, 1.0, mode)
        elif penalty_kind == "r1":
            ours = fastgan.r1_penalty(critic, real, weight=5.0)
            theirs = 5.0 * textbook_penalty(critic, real, 1.0, "squared")
        elif penalty_kind == "r2":
            ours = fastgan.r2_penalty(critic, fake, weight=5.0)
            theirs = 5.0 * textbook_penalty(critic, fake, 1.0, "squared")
        else:
            torch.manual_seed(1)
            ours = fastgan.dragan_penalty(critic, real, weight=10.0, c=0.5)
            torch.manual_seed(1)
            perturbed = real + 0.5 * real.std() * torch.rand_like(real)
            a = torch.rand(6, dtype=torch.float64).view(-1, 1, 1, 1)
            theirs = 10.0 * textbook_penalty(critic, a * real + (1 - a) * perturbed, 1.0, "two_sided")
        ours_grads = param_grads(critic, ours)
    theirs_grads = param_grads(critic, theirs)
    assert rel_error(ours, theirs) <= 1e-6
    for mine, reference in zip(ours_grads, theirs_grads):
        assert rel_error(mine, reference) <= 1e-6


def test_r1_reuses_outputs_and_accepts_column_outputs():
    critic = MLPCritic(12).double()
    real = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    outputs = critic(real)  # [B, 1]
    reused = fastgan.r1_penalty(critic, real, outputs=outputs)
    fresh = fastgan.r1_penalty(critic, real.detach())
    assert torch.allclose(reused, fresh)


def test_conditional_critic_kwargs():
    class Conditional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(3, 4)
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x, labels):
            return self.lin(torch.tanh(x * self.embed(labels)))[:, 0]

    critic = Conditional()
    real, fake, labels = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 3, (5,))
    penalty = fastgan.gradient_penalty(critic, real, fake, critic_kwargs={"labels": labels})
    penalty.backward()
    assert critic.embed.weight.grad is not None and torch.isfinite(penalty)


# ---------------------------------------------------------------- bad input

def test_bad_inputs_name_the_argument():
    critic = MLPCritic(12)
    real, fake = torch.randn(4, 12), torch.randn(4, 12)
    cases = [
        (ValueError, "real and fake", lambda: fastgan.gradient_penalty(critic, real, torch.randn(3, 12))),
        (TypeError, "dtype", lambda: fastgan.gradient_penalty(critic, real, fake.double())),
        (TypeError, "real", lambda: fastgan.gradient_penalty(critic, real.long(), fake.long())),
        (ValueError, "batch", lambda: fastgan.gradient_penalty(critic, real[:0], fake[:0])),
        (ValueError, "weight", lambda: fastgan.gradient_penalty(critic, real, fake, weight=-1.0)),
        (TypeError, "weight", lambda: fastgan.gradient_penalty(critic, real, fake, weight="10")),
        (ValueError, "mode", lambda: fastgan.gradient_penalty(critic, real, fake, mode="both")),
        (ValueError, r"critic's output", lambda: fastgan.gradient_penalty(lambda x: x, real, fake)),
        (TypeError, "critic", lambda: fastgan.gradient_penalty("critic", real, fake)),
        (TypeError, "grad", lambda: ops.grad_norm_penalty([1.0, 2.0])),
        (TypeError, "grad", lambda: ops.grad_norm_penalty(torch.ones(3, 2, dtype=torch.int32))),
        (ValueError, "mode", lambda: ops.grad_norm_penalty(torch.randn(3, 2), mode="l1")),
        (ValueError, "grad", lambda: ops.grad_norm_penalty(torch.randn(0, 2))),
        (ValueError, "alpha", lambda: ops.interpolate(real, fake, torch.rand(3))),
        (TypeError, "alpha", lambda: ops.interpolate(real, fake, torch.ones(4, dtype=torch.int64))),
        (ValueError, "outputs=", lambda: fastgan.r1_penalty(critic, real, outputs=critic(real))),
        (ValueError, "c", lambda: fastgan.dragan_penalty(critic, real, c=-1.0)),
    ]
    for error, pattern, call in cases:
        with pytest.raises(error, match=pattern):
            call()


def test_interpolate_device_mismatch_is_a_value_error():
    meta = torch.empty(4, 12, device="meta")
    with pytest.raises(ValueError, match="fake"):
        ops.interpolate(torch.randn(4, 12), meta, torch.rand(4))


# ---------------------------------------------------------------- fuzzing

@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 6), rest=st.lists(st.integers(1, 7), min_size=0, max_size=3),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
       mode=st.sampled_from(list(MODES)), target=st.floats(0.0, 3.0))
def test_fuzz_cpp_against_reference(batch, rest, dtype, mode, target):
    grad = random_grad((batch, *rest), dtype).requires_grad_(True)
    with fastgan.backend("cpp"):
        penalty = ops.grad_norm_penalty(grad, target, mode)
        mixed = ops.interpolate(grad, grad.detach() * 0.5 + 0.1, torch.rand(batch))
    ref = ops.grad_norm_penalty_reference(grad.detach().double(), target, mode)
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5 if dtype == torch.float32 else 1e-2
    assert torch.allclose(penalty.double(), ref, rtol=tolerance, atol=tolerance)
    (dgrad,) = torch.autograd.grad(penalty.sum() + mixed.float().sum(), grad)
    assert torch.isfinite(dgrad.float()).all()
