"""Mixed precision: the penalties under torch.autocast (bf16, fp16 on CPU) with a GradScaler match fp64 as closely as
PyTorch's own AMP gradient-penalty recipe does (CONVENTIONS: at most twice its error), and an overflow of the inner
gradient is caught by the scaler (the step is skipped) instead of turning parameters into NaN."""
import pytest
import torch
from conftest import rel_error
from torch import nn

import fastgan

LOW = (torch.bfloat16, torch.float16)
# bf16 has fp32's range, so the default scale is harmless; fp16 gradients of this critic overflow at 2^16 (the
# overflow test below relies on that), so the accuracy test starts where AMP's scaler would settle.
INIT_SCALE = {torch.bfloat16: 2.0 ** 16, torch.float16: 2.0 ** 8}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: intra-op threads only add latency on a loaded 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_critic(dtype=torch.float32, act=nn.Softplus):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), act(), nn.Conv2d(16, 32, 4, 2, 1), act(),
                         nn.Conv2d(32, 1, 4, 1, 0), nn.Flatten(0)).to(dtype)


def data(batch=6):
    gen = torch.Generator().manual_seed(3)
    real = torch.randn(batch, 3, 16, 16, generator=gen)
    fake = torch.randn(batch, 3, 16, 16, generator=gen)
    alpha = torch.rand(batch, generator=gen)
    return real, fake, alpha


def grads_of(critic):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().double()
                      for p in critic.parameters()])


def penalty(kind, critic, real, fake, alpha, **kw):
    if kind == "wgan-gp":
        return fastgan.gradient_penalty(critic, real, fake, alpha=alpha, **kw)
    return fastgan.r1_penalty(critic, real, **kw)


def reference64(kind, real, fake, alpha):
    critic = make_critic(torch.float64)
    value = penalty(kind, critic, real.double(), fake.double(), alpha.double())
    value.backward()
    return value.detach(), grads_of(critic)


def ours(kind, dtype, method, real, fake, alpha):
    critic = make_critic()
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE[dtype])
    with torch.autocast("cpu", dtype=dtype):
        value = penalty(kind, critic, real, fake, alpha, scaler=scaler, method=method)
    assert value.dtype == torch.float32  # the norm and the penalty in fp32
    scaler.scale(value).backward()
    assert scaler.get_scale() == INIT_SCALE[dtype]  # the penalty reads the scale, never changes it
    return value.detach(), grads_of(critic) / scaler.get_scale()


def plain_recipe(kind, dtype, real, fake, alpha):
    """The AMP documentation's gradient-penalty recipe, written out in plain PyTorch."""
    critic = make_critic()
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE[dtype])
    if kind == "wgan-gp":
        a = alpha.view(-1, 1, 1, 1)
        points, weight, target = (a * real + (1 - a) * fake).requires_grad_(True), 10.0, 1.0
    else:
        points, weight, target = real.clone().requires_grad_(True), 5.0, None
    with torch.autocast("cpu", dtype=dtype):
        scores = critic(points)
    (scaled,) = torch.autograd.grad(scaler.scale(scores.sum()), points, create_graph=True)
    grad = scaled / scaler.get_scale()
    with torch.autocast("cpu", dtype=dtype):
        norm = grad.flatten(1).norm(dim=1)
        value = weight * ((norm - target) ** 2 if target else norm ** 2).mean()
    scaler.scale(value).backward()
    return value.detach(), grads_of(critic) / scaler.get_scale()


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_autocast_matches_fp64_like_the_amp_recipe(dtype, kind):
    real, fake, alpha = data()
    value64, grads64 = reference64(kind, real, fake, alpha)
    plain_value, plain_grads = plain_recipe(kind, dtype, real, fake, alpha)
    value_bound = 2 * rel_error(plain_value, value64) + 1e-3
    grad_bound = 2 * rel_error(plain_grads, grads64) + 1e-3
    assert grad_bound < 0.1  # the yardstick itself is sane
    for method in ("double_backward", "jvp"):
        value, grads = ours(kind, dtype, method, real, fake, alpha)
        assert rel_error(value, value64) <= value_bound, method
        assert rel_error(grads, grads64) <= grad_bound, method
    # Finite differences in a 7- or 10-bit mantissa are dominated by rounding (measured: 6% in fp16, 25% in bf16
    # for this critic): the value stays exact, the gradient is a rough estimate. jvp is the method for AMP.
    value, grads = ours(kind, dtype, "finite_difference", real, fake, alpha)
    assert rel_error(value, value64) <= value_bound
    assert rel_error(grads, grads64) <= 0.5


def test_autocast_without_scaler_and_disabled_scaler():
    real, fake, alpha = data()
    critic = make_critic()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = fastgan.gradient_penalty(critic, real, fake, alpha=alpha)
        b = fastgan.gradient_penalty(critic, real, fake, alpha=alpha,
                                     scaler=torch.amp.GradScaler("cpu", enabled=False))
        c = fastgan.gradient_penalty(critic, real, fake, alpha=alpha, method="jvp")
    assert a.dtype == torch.float32 and torch.equal(a, b) and torch.equal(a, c)
    value64, _ = reference64("wgan-gp", real, fake, alpha)
    assert rel_error(a, value64) < 1e-2


def train(method, dtype, init_scale, steps):
    """WGAN-GP critic steps under autocast + GradScaler; returns (skipped flags, scales, parameter snapshots)."""
    real, fake, alpha = data()
    critic = make_critic()
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.0, 0.9))
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    skipped, scales = [], []
    for _ in range(steps):
        before = [p.detach().clone() for p in critic.parameters()]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype):
            loss = critic(fake).float().mean() - critic(real).float().mean()
            loss = loss + fastgan.gradient_penalty(critic, real, fake, alpha=alpha, scaler=scaler, method=method)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scales.append(scale)
        unchanged = all(torch.equal(b, p) for b, p in zip(before, critic.parameters()))
        skipped.append(scaler.get_scale() < scale)
        assert unchanged == skipped[-1], "a step is skipped exactly when the scaler backs off"
        assert all(torch.isfinite(p).all() for p in critic.parameters())
    return skipped, scales


@pytest.mark.parametrize("method", ["double_backward", "jvp", "finite_difference"])
def test_fp16_overflow_is_caught_by_the_scaler(method):
    # fp16 inner gradients of this critic overflow at the default scale 2^16: the scaler must skip those steps and
    # back off, then train normally; parameters never become inf/NaN.
    skipped, scales = train(method, torch.float16, 2.0 ** 16, steps=8)
    assert skipped[0], "the first step at scale 2^16 overflows in fp16"
    assert not all(skipped), f"the scaler never recovered: scales {scales}"


@pytest.mark.parametrize("method", ["double_backward", "jvp", "finite_difference"])
def test_inner_gradient_overflow_alone_skips_the_step(method):
    """A scale that overflows only the inner gradient (fp32, scale 2^126): the penalty is non-finite, the critic's
    first parameter gets a NaN gradient, the scaler skips the step."""
    real, fake, alpha = data()
    critic = make_critic()
    with torch.no_grad():
        critic[0].weight.mul_(30.0)  # input gradients > 4, so scale * grad > fp32's max
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 126)
    value = fastgan.gradient_penalty(critic, real, fake, alpha=alpha, scaler=scaler, method=method)
    assert not torch.isfinite(value)
    value.backward()  # even unscaled, the flag reaches the parameters
    assert torch.isnan(critic[0].weight.grad).any()
    optimizer = torch.optim.SGD(critic.parameters(), lr=0.1)
    before = [p.detach().clone() for p in critic.parameters()]
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0 ** 125
    assert all(torch.equal(b, p) for b, p in zip(before, critic.parameters()))


def test_finite_penalty_is_not_changed_by_the_overflow_flag():
    real, fake, alpha = data()
    critic = make_critic(torch.float64)
    real, fake, alpha = real.double(), fake.double(), alpha.double()
    a = fastgan.gradient_penalty(critic, real, fake, alpha=alpha)
    a.backward()
    ga = grads_of(critic)
    critic.zero_grad()
    b = fastgan.gradient_penalty(critic, real, fake, alpha=alpha, scaler=torch.amp.GradScaler("cpu"))
    b.backward()
    assert torch.equal(a, b)
    assert rel_error(grads_of(critic), ga) < 1e-12
