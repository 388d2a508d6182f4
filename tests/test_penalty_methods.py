"""Penalties without double backward: method="jvp" (exact, forward-mode directional derivative) and
method="finite_difference" (central difference) against the default double backward, for MLP and conv critics and
every penalty kind; compiled critics; argument checks and the errors/warnings the methods promise."""
import warnings

import pytest
import torch
from conftest import rel_error
from torch import nn

import fastgan
from fastgan import penalties

METHODS = ("double_backward", "jvp", "finite_difference")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These tensors are tiny: intra-op threads only add barrier latency (tens of ms per conv on a loaded 2-core box).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
KINDS = ("wgan-gp", "wgan-lp", "r1", "r2", "dragan")


def mlp_critic(act=nn.Softplus, dim=5, hidden=24, dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(dim, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 1),
                         nn.Flatten(0)).to(dtype)


def conv_critic(act=nn.Softplus, dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), act(), nn.Conv2d(8, 16, 4, 2, 1), act(),
                         nn.Conv2d(16, 1, 3, 1, 0), nn.Flatten(0)).to(dtype)


CRITICS = {
    "mlp-softplus": (lambda: mlp_critic(nn.Softplus), (6, 5)),
    "mlp-tanh": (lambda: mlp_critic(nn.Tanh), (5, 5)),
    "conv-softplus": (lambda: conv_critic(nn.Softplus), (4, 3, 12, 12)),
    "conv-tanh": (lambda: conv_critic(nn.Tanh), (3, 3, 12, 12)),
}


def samples(shape, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype),
            torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype))


def call_penalty(kind, critic, real, fake, method, **kw):
    torch.manual_seed(123)  # dragan's perturbation and the interpolation weights: the same draw for every method
    if kind == "wgan-gp":
        return fastgan.gradient_penalty(critic, real, fake, method=method, **kw)
    if kind == "wgan-lp":
        # target = the median gradient norm: some samples inside the ball, some outside (the one-sided kink)
        alpha = torch.rand(real.shape[0], dtype=torch.float64).to(real.dtype)
        a = alpha.view(-1, *([1] * (real.dim() - 1)))
        points = (a * real + (1 - a) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(points).sum(), points)
        target = grad.flatten(1).norm(dim=1).median().item()
        return fastgan.gradient_penalty(critic, real, fake, target=target, mode="one_sided", alpha=alpha,
                                        method=method, **kw)
    if kind == "r1":
        return fastgan.r1_penalty(critic, real, method=method, **kw)
    if kind == "r2":
        return fastgan.r2_penalty(critic, fake, method=method, **kw)
    return fastgan.dragan_penalty(critic, real, method=method, **kw)


def penalty_and_grads(kind, critic, real, fake, method, **kw):
    params = [p for p in critic.parameters()]
    for p in params:
        p.grad = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = call_penalty(kind, critic, real, fake, method, **kw)
    value.backward()
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    return value.detach(), grads


@pytest.mark.parametrize("critic_name", list(CRITICS))
@pytest.mark.parametrize("kind", KINDS)
def test_methods_match_double_backward_fp64(critic_name, kind):
    make, shape = CRITICS[critic_name]
    critic = make()
    real, fake = samples(shape)
    value, exact = penalty_and_grads(kind, critic, real, fake, "double_backward")
    assert exact.norm() > 0
    value_jvp, grads_jvp = penalty_and_grads(kind, critic, real, fake, "jvp")
    value_fd, grads_fd = penalty_and_grads(kind, critic, real, fake, "finite_difference")
    # The value is exact in every method (the same kernel on the same input gradient).
    assert rel_error(value_jvp, value) <= 1e-14 and rel_error(value_fd, value) <= 1e-14
    assert rel_error(grads_jvp, exact) <= 1e-10
    assert rel_error(grads_fd, exact) <= 1e-6


@pytest.mark.parametrize("act", [nn.LeakyReLU, nn.ReLU])
def test_jvp_is_exact_for_piecewise_linear_critics(act):
    critic = mlp_critic(act)
    real, fake = samples((7, 5))
    for kind in ("wgan-gp", "r1"):
        _, exact = penalty_and_grads(kind, critic, real, fake, "double_backward")
        _, grads = penalty_and_grads(kind, critic, real, fake, "jvp")
        assert rel_error(grads, exact) <= 1e-10


def test_fp32_methods_agree():
    critic = conv_critic(nn.Softplus, torch.float32)
    real, fake = samples((5, 3, 12, 12), torch.float32)
    ref = conv_critic(nn.Softplus, torch.float64)
    alpha = torch.rand(5, dtype=torch.float64)
    _, exact = penalty_and_grads("wgan-gp", ref, real.double(), fake.double(), "double_backward", alpha=alpha)
    for method, bound in (("double_backward", 1e-5), ("jvp", 1e-5), ("finite_difference", 2e-3)):
        _, grads = penalty_and_grads("wgan-gp", critic, real, fake, method, alpha=alpha.float())
        assert grads.dtype == torch.float32
        assert rel_error(grads, exact) <= bound, method


def test_input_gradients_through_the_points_are_exact():
    """r1 with outputs= on samples that have a history (here a small generator): the penalty's gradient reaches
    the generator too, and jvp gets it exactly."""
    critic = mlp_critic(nn.Tanh, dim=4)
    torch.manual_seed(5)
    gen = nn.Linear(3, 4).double()
    z = torch.randn(6, 3, dtype=torch.float64)
    results = {}
    for method in ("double_backward", "jvp", "finite_difference"):
        for p in list(critic.parameters()) + list(gen.parameters()):
            p.grad = None
        x = gen(z)
        outputs = critic(x)
        penalty = fastgan.r1_penalty(critic, x, outputs=outputs, method=method)
        (penalty + outputs.mean()).backward()
        results[method] = torch.cat([p.grad.flatten() for p in list(critic.parameters()) + list(gen.parameters())])
    assert rel_error(results["jvp"], results["double_backward"]) <= 1e-10
    assert rel_error(results["finite_difference"], results["double_backward"]) <= 1e-6


def test_outputs_reuse_keeps_the_callers_graph():
    critic = mlp_critic()
    real, _ = samples((4, 5))
    for method in METHODS:
        x = real.clone().requires_grad_(True)
        outputs = critic(x)
        penalty = fastgan.r1_penalty(critic, x, outputs=outputs, method=method)
        (penalty + nn.functional.softplus(-outputs).mean()).backward()  # the caller's graph is still there


def test_finite_difference_warns_for_piecewise_linear_critics():
    real, fake = samples((4, 5))
    with pytest.warns(UserWarning, match="piecewise-linear"):
        fastgan.gradient_penalty(mlp_critic(nn.LeakyReLU), real, fake, method="finite_difference")
    assert penalties.piecewise_linear_layers(mlp_critic(nn.ReLU)) == ["1 (ReLU)", "3 (ReLU)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastgan.gradient_penalty(mlp_critic(nn.Softplus), real, fake, method="finite_difference")
        fastgan.gradient_penalty(mlp_critic(nn.LeakyReLU), real, fake, method="jvp")


def test_finite_difference_step():
    critic = mlp_critic(nn.Tanh)
    real, fake = samples((4, 5))
    _, exact = penalty_and_grads("wgan-gp", critic, real, fake, "double_backward")
    _, coarse = penalty_and_grads("wgan-gp", critic, real, fake, "finite_difference", step=0.3)
    _, fine = penalty_and_grads("wgan-gp", critic, real, fake, "finite_difference", step=1e-4)
    # O(h^2): a step 3000x larger is visibly worse, yet both estimate the same gradient.
    assert rel_error(fine, exact) < 1e-7 < rel_error(coarse, exact) < 0.2


@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_batch_one_and_zero_weight(kind):
    critic = mlp_critic()
    real, fake = samples((1, 5))
    _, exact = penalty_and_grads(kind, critic, real, fake, "double_backward")
    for method in ("jvp", "finite_difference"):
        _, grads = penalty_and_grads(kind, critic, real, fake, method)
        assert rel_error(grads, exact) <= 1e-6
        value, grads = penalty_and_grads(kind, critic, real, fake, method, weight=0.0)
        assert value == 0 and torch.count_nonzero(grads) == 0


def test_one_sided_with_every_sample_inside_gives_zero_gradient():
    critic = mlp_critic()
    real, fake = samples((4, 5))
    for method in METHODS:
        value, grads = penalty_and_grads("wgan-gp", critic, real, fake, method, target=1e6, mode="one_sided")
        assert value == 0 and torch.isfinite(grads).all() and torch.count_nonzero(grads) == 0


def test_conditional_critic_and_channels_last():
    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = conv_critic(nn.Softplus)
            self.embed = nn.Embedding(3, 3 * 12 * 12).double()

        def forward(self, x, labels):
            return self.body(x * (1 + 0.1 * self.embed(labels).view_as(x)))

    critic = Conditional()
    real, fake = samples((4, 3, 12, 12))
    real = real.to(memory_format=torch.channels_last)
    fake = fake.to(memory_format=torch.channels_last)
    labels = torch.tensor([0, 2, 1, 2])
    kw = {"critic_kwargs": {"labels": labels}}
    _, exact = penalty_and_grads("wgan-gp", critic, real, fake, "double_backward", **kw)
    _, grads = penalty_and_grads("wgan-gp", critic, real, fake, "jvp", **kw)
    assert rel_error(grads, exact) <= 1e-10
    _, grads = penalty_and_grads("wgan-gp", critic, real, fake, "finite_difference", **kw)
    assert rel_error(grads, exact) <= 1e-6


def test_penalty_at():
    critic = mlp_critic()
    real, _ = samples((4, 5))
    points = real.clone().requires_grad_(True)
    value, exact = None, None
    for method in METHODS:
        for p in critic.parameters():
            p.grad = None
        penalty = penalties.penalty_at(critic, points, weight=2.0, mode="squared", method=method)
        penalty.backward()
        grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                           for p in critic.parameters()])
        if method == "double_backward":
            value, exact = penalty.detach(), grads
        assert rel_error(penalty, value) <= 1e-14 and rel_error(grads, exact) <= 1e-6
    with pytest.raises(ValueError, match="points"):
        penalties.penalty_at(critic, real)


# ------------------------------------------------------------------------------------------------ compiled critics

@pytest.mark.parametrize("method", METHODS)
def test_compiled_critic(method):
    torch._dynamo.reset()
    critic = mlp_critic(nn.Tanh, dtype=torch.float32)
    compiled = torch.compile(critic, backend="aot_eager")
    real, fake = samples((6, 5), torch.float32)
    _, exact = penalty_and_grads("wgan-gp", critic, real, fake, "double_backward")
    value, grads = penalty_and_grads("wgan-gp", compiled, real, fake, method)
    bound = 2e-3 if method == "finite_difference" else 1e-5
    assert rel_error(grads, exact) <= bound
    # R1 reusing a compiled forward's outputs: the compiled graph goes to the caller's loss, the penalty runs its
    # own forward (a compiled graph cannot be differentiated twice).
    for p in critic.parameters():
        p.grad = None
    x = real.clone().requires_grad_(True)
    outputs = compiled(x)
    penalty = fastgan.r1_penalty(compiled, x, outputs=outputs, method=method)
    (penalty + outputs.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters())


def test_compiled_function_and_in_place_compiled_module():
    critic = mlp_critic(nn.Tanh)
    real, fake = samples((4, 5))
    _, exact = penalty_and_grads("wgan-gp", critic, real, fake, "double_backward")
    function = torch.compile(lambda x: critic(x), backend="eager")
    assert penalties._uncompiled(function) is not function
    alpha = torch.full((4,), 0.3, dtype=torch.float64)

    def grads_of(critic_fn, method):
        for p in critic.parameters():
            p.grad = None
        fastgan.gradient_penalty(critic_fn, real, fake, alpha=alpha, method=method).backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                          for p in critic.parameters()])

    ref = grads_of(critic, "double_backward")
    for method in ("double_backward", "jvp"):
        assert rel_error(grads_of(function, method), ref) <= 1e-10
    inplace = mlp_critic(nn.Tanh)
    inplace.compile(backend="eager")
    assert penalties._uncompiled(inplace) == inplace._call_impl
    _, grads = penalty_and_grads("wgan-gp", inplace, real, fake, "jvp")
    assert rel_error(grads, exact) <= 1e-10


# ------------------------------------------------------------------------------------------------ errors

class _NoJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


class _NoJvpLayer(nn.Module):
    def forward(self, x):
        return _NoJvp.apply(x)


def test_jvp_names_an_op_without_forward_mode():
    critic = nn.Sequential(nn.Linear(5, 8), _NoJvpLayer(), nn.Tanh(), nn.Linear(8, 1)).double()
    real, fake = samples((3, 5))
    with pytest.raises(NotImplementedError, match=r"_NoJvp\b.*no jvp.*_NoJvpLayer"):
        fastgan.gradient_penalty(critic, real, fake, method="jvp")
    # the other methods do not need forward mode
    fastgan.gradient_penalty(critic, real, fake, method="double_backward").backward()
    fastgan.gradient_penalty(critic, real, fake, method="finite_difference").backward()


def test_bad_arguments_name_themselves():
    critic = mlp_critic()
    real, fake = samples((3, 5))
    cases = [
        (ValueError, "method", lambda: fastgan.gradient_penalty(critic, real, fake, method="forward")),
        (TypeError, "method", lambda: fastgan.r1_penalty(critic, real, method=1)),
        (ValueError, "step", lambda: fastgan.gradient_penalty(critic, real, fake, step=1e-3)),
        (ValueError, "step", lambda: fastgan.r2_penalty(critic, fake, method="finite_difference", step=-1.0)),
        (ValueError, "step", lambda: fastgan.r2_penalty(critic, fake, method="finite_difference",
                                                        step=float("nan"))),
        (TypeError, "step", lambda: fastgan.dragan_penalty(critic, real, method="finite_difference", step="1")),
        (TypeError, "scaler", lambda: fastgan.gradient_penalty(critic, real, fake, scaler=2.0)),
        (ValueError, "mode", lambda: penalties.penalty_at(critic, real.requires_grad_(True), mode="x")),
    ]
    for error, name, call in cases:
        with pytest.raises(error, match=name):
            call()


def test_existing_positional_order_is_kept():
    critic = mlp_critic()
    real, fake = samples((3, 5))
    alpha = torch.full((3,), 0.25, dtype=torch.float64)
    a = fastgan.gradient_penalty(critic, real, fake, 10.0, 1.0, "two_sided", alpha, None)
    b = fastgan.gradient_penalty(critic, real, fake, alpha=alpha)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    c = fastgan.dragan_penalty(critic, real, 10.0, 0.5, 1.0, None)
    torch.manual_seed(0)
    d = fastgan.dragan_penalty(critic, real)
    assert torch.equal(c, d)
    assert torch.equal(fastgan.r1_penalty(critic, real, 5.0, None, None), fastgan.r1_penalty(critic, real))


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_fastgan_nn_fused_critic(backend):
    """fastgan.nn's fused blocks (bias_act) have forward-mode derivatives: jvp is exact through them on every
    backend, and their piecewise-linear activations are seen by the finite-difference warning."""
    from fastgan.models import DCGANCritic
    from fastgan.nn import fuse_activations

    torch.manual_seed(0)
    plain = DCGANCritic(image_size=16, channels=3, width=4, act="lrelu").double()
    fused = fuse_activations(plain)
    assert any("Conv2dAct" in name for name in penalties.piecewise_linear_layers(fused))
    real, fake = samples((3, 3, 16, 16))
    _, exact = penalty_and_grads("wgan-gp", plain, real, fake, "double_backward")
    with fastgan.backend(backend):
        _, grads = penalty_and_grads("wgan-gp", fused, real, fake, "jvp")
        _, grads_db = penalty_and_grads("r1", fused, real, fake, "double_backward")
        _, grads_r1 = penalty_and_grads("r1", fused, real, fake, "jvp")
    assert rel_error(grads, exact) <= 1e-10
    assert rel_error(grads_r1, grads_db) <= 1e-10


@pytest.mark.parametrize("flavour", ["parametrizations", "old-style", "fastgan"])
def test_spectral_norm_critics(flavour):
    """Spectral norm updates u and v in every training-mode forward: the extra forwards of jvp and finite
    differences must not, or they would differentiate other weights. Exact gradients, and the same buffers after
    the penalty as with double backward (one power iteration per penalty, as with one forward)."""
    import copy

    if flavour == "parametrizations":
        from torch.nn.utils.parametrizations import spectral_norm
    elif flavour == "old-style":
        from torch.nn.utils import spectral_norm
    else:
        from fastgan.nn.utils import spectral_norm
    torch.manual_seed(0)
    critic = nn.Sequential(spectral_norm(nn.Linear(5, 16)), nn.Tanh(), spectral_norm(nn.Linear(16, 1)),
                           nn.Flatten(0)).double()
    real, fake = samples((4, 5))
    grads, buffers = {}, {}
    for method in METHODS:
        copy_ = copy.deepcopy(critic)
        _, grads[method] = penalty_and_grads("wgan-gp", copy_, real, fake, method)
        buffers[method] = [b.clone() for b in copy_.buffers()]
        assert all(m.training for m in copy_.modules())
    assert rel_error(grads["jvp"], grads["double_backward"]) <= 1e-10
    assert rel_error(grads["finite_difference"], grads["double_backward"]) <= 1e-6
    for method in ("jvp", "finite_difference"):
        assert all(torch.equal(a, b) for a, b in zip(buffers[method], buffers["double_backward"]))
