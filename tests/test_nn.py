"""fastgan.nn: the fused critic blocks (BiasAct, FusedLeakyReLU, Conv2dAct, LinearAct) and fuse_activations, against
the plain PyTorch layers they replace; a WGAN-GP critic step on a converted DCGAN critic; torch.compile."""
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_error
from torch import nn

import fastgan
from fastgan.models import DCGANCritic, MLPCritic
from fastgan.nn import BiasAct, Conv2dAct, FusedLeakyReLU, FusionReport, LinearAct, fuse_activations

ACT_MODULES = [
    (nn.LeakyReLU(0.1), "lrelu"), (nn.ReLU(), "relu"), (nn.Tanh(), "tanh"), (nn.Sigmoid(), "sigmoid"),
    (nn.ELU(0.7), "elu"), (nn.SELU(), "selu"), (nn.Softplus(beta=1.5), "softplus"), (nn.SiLU(), "silu"),
    (nn.GELU(), "gelu"), (nn.GELU(approximate="tanh"), "gelu_tanh"),
]


def outputs_and_grads(model, x):
    model.zero_grad()
    x = x.detach().requires_grad_(True)
    out = model(x)
    (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    (gx.square().sum() + out.sum()).backward()
    return [out.detach(), gx.detach()] + [p.grad.clone() for p in model.parameters()]


# ------------------------------------------------------------------------------ layers

@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_bias_act_module(backend):
    torch.manual_seed(0)
    m = BiasAct(5, act="elu", alpha=0.5, gain=1.2, bias_init=0.1)
    assert m.bias.shape == (5,) and torch.all(m.bias == 0.1)
    x = torch.randn(2, 5, 3, 3)
    with fastgan.backend(backend):
        y = m(x)
    assert torch.allclose(y, F.elu(x + 0.1, 0.5) * 1.2, atol=1e-6)
    feats = BiasAct(7, act="silu", dim=-1)
    with fastgan.backend(backend):
        assert torch.allclose(feats(x.flatten(1)[:, :7]), F.silu(x.flatten(1)[:, :7]), atol=1e-6)
    assert "elu" in repr(m) and "alpha=0.5" in repr(m)


def test_fused_leaky_relu():
    x = torch.randn(2, 4, 3, 3)
    plain = FusedLeakyReLU()
    assert plain.bias is None and len(list(plain.parameters())) == 0
    assert torch.allclose(plain(x), F.leaky_relu(x, 0.2))
    biased = FusedLeakyReLU(4, alpha=0.1, gain=2 ** 0.5)
    with torch.no_grad():
        biased.bias.copy_(torch.arange(4.0))
    assert torch.allclose(biased(x), F.leaky_relu(x + torch.arange(4.0).view(1, -1, 1, 1), 0.1) * 2 ** 0.5)


@pytest.mark.parametrize("module,act", ACT_MODULES, ids=[a for _, a in ACT_MODULES])
def test_conv2d_act_matches_conv_then_activation(module, act):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
    torch.manual_seed(0)
    alpha = {"lrelu": 0.1, "elu": 0.7, "softplus": 1.5}.get(act)
    fused = Conv2dAct(3, 6, 3, stride=2, padding=1, act=act, alpha=alpha)
    assert torch.equal(conv.weight, fused.weight) and torch.equal(conv.bias, fused.bias)  # same initialisation
    x = torch.randn(2, 3, 9, 9)
    for a, b in zip(outputs_and_grads(nn.Sequential(conv, module), x), outputs_and_grads(fused, x)):
        assert rel_error(b, a) <= 1e-5


def test_conv2d_act_loads_conv_state_dict_and_channels_last():
    conv = nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect")
    fused = Conv2dAct(4, 8, 3, padding=1, padding_mode="reflect", act="relu")
    fused.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last)
    y = fused(x)
    assert torch.allclose(y, F.relu(conv(x)), atol=1e-6)
    assert y.is_contiguous(memory_format=torch.channels_last)
    no_bias = Conv2dAct(4, 8, 3, bias=False, act="tanh")
    assert no_bias.bias is None and torch.allclose(no_bias(x), torch.tanh(F.conv2d(x, no_bias.weight)), atol=1e-6)
    unbatched = fused(x[0])
    assert torch.allclose(unbatched, y[0], atol=1e-6)


def test_linear_act():
    torch.manual_seed(1)
    lin = nn.Linear(7, 5)
    torch.manual_seed(1)
    fused = LinearAct(7, 5, act="gelu_tanh")
    x = torch.randn(3, 2, 7)  # extra leading dims: bias along the last one
    for a, b in zip(outputs_and_grads(nn.Sequential(lin, nn.GELU(approximate="tanh")), x),
                    outputs_and_grads(fused, x)):
        assert rel_error(b, a) <= 1e-5
    assert "gelu_tanh" in repr(fused)


@pytest.mark.parametrize("bad,error,match", [
    (dict(act="nope"), ValueError, "act"),
    (dict(act="relu", alpha=0.3), ValueError, "alpha"),
    (dict(gain="x"), TypeError, "gain"),
    (dict(clamp=-2), ValueError, "clamp"),
])
def test_layer_bad_arguments(bad, error, match):
    with pytest.raises(error, match=match):
        Conv2dAct(3, 4, 3, **bad)
    with pytest.raises(error, match=match):
        LinearAct(3, 4, **bad)
    with pytest.raises(error, match=match):
        BiasAct(4, **bad)
    with pytest.raises(ValueError, match="channels"):
        BiasAct(0)


# ------------------------------------------------------------------------------ converter

def test_fuse_activations_every_supported_activation():
    torch.manual_seed(0)
    layers = [nn.Linear(6, 6)]
    for module, _ in ACT_MODULES:
        layers += [copy.deepcopy(module), nn.Linear(6, 6)]
    model = nn.Sequential(*layers)
    fused, report = fuse_activations(model, return_report=True)
    assert isinstance(report, FusionReport) and len(report.replaced) == len(ACT_MODULES) and not report.skipped
    assert [type(m) for m in model] == [type(m) for m in layers]  # the original is left alone (deep copy)
    assert fused.state_dict().keys() == model.state_dict().keys()
    kinds = [type(m).__name__ for m in fused]
    assert kinds.count("LinearAct") == len(ACT_MODULES) and kinds.count("Identity") == len(ACT_MODULES)
    x = torch.randn(5, 6)
    for a, b in zip(outputs_and_grads(model, x), outputs_and_grads(fused, x)):
        assert rel_error(b, a) <= 1e-5
    assert "fused" in str(report)


def test_fuse_activations_leaves_what_it_cannot_convert():
    torch.manual_seed(0)
    hooked = nn.Conv2d(3, 3, 1)
    hooked.register_forward_hook(lambda *args: None)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 3, 1), nn.Hardtanh()),            # unsupported activation
        nn.Sequential(nn.Conv2d(3, 3, 1), nn.Softplus(threshold=5)),  # non-default threshold
        nn.Sequential(hooked, nn.ReLU()),                           # forward hook would see the activation
        nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU()),  # not directly followed: silently kept
        nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.ReLU())),  # nested container: not a direct pair
        nn.Flatten(), nn.Linear(75, 4), nn.SiLU(), shared, nn.Tanh(), shared,
    )
    fused, report = fuse_activations(model, return_report=True)
    reasons = " | ".join(reason for _, reason in report.skipped)
    assert "Hardtanh" in reasons and "threshold" in reasons and "hooks" in reasons and "shared" in reasons
    assert [path for path, _, _ in report.replaced] == ["6"]  # only the Linear + SiLU pair
    x = torch.randn(2, 3, 5, 5)
    model.eval()
    fused.eval()
    assert torch.allclose(model(x), fused(x), atol=1e-6)


def test_fuse_activations_inplace_keeps_parameters_and_optimizer():
    model = MLPCritic(in_dim=3, hidden=8, depth=2, act="lrelu")
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    same = fuse_activations(model, inplace=True)
    assert same is model and [p is q for p, q in zip(params, model.parameters())] == [True] * len(params)
    assert isinstance(model[0], LinearAct)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    with pytest.raises(TypeError, match="module"):
        fuse_activations("not a model")


def test_fuse_activations_spectral_norm():
    """Old-style (hook) and parametrization spectral norm both survive the conversion."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)), nn.LeakyReLU(0.2),
                          nn.utils.parametrizations.spectral_norm(nn.Conv2d(4, 4, 3)), nn.LeakyReLU(0.2))
    model.eval()  # no power iteration updates: both models see the same normalised weights
    fused, report = fuse_activations(model, return_report=True)
    assert len(report.replaced) == 2, report
    assert isinstance(fused[0], Conv2dAct) and isinstance(fused[2], Conv2dAct)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(model(x), fused(x), atol=1e-6)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_wgan_gp_critic_step_converted_matches(backend):
    """A full WGAN-GP critic step (fastgan.gradient_penalty) on a DCGAN critic gives the same parameter
    gradients after fuse_activations."""
    torch.manual_seed(0)
    critic = DCGANCritic(image_size=16, channels=3, width=8).double()
    fused = fuse_activations(critic)
    real, fake = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.randn(4, 3, 16, 16, dtype=torch.float64)
    alpha = torch.rand(4, dtype=torch.float64)

    def step(model):
        model.zero_grad()
        loss = model(fake).mean() - model(real).mean() + fastgan.gradient_penalty(model, real, fake, alpha=alpha)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    with fastgan.backend(backend):
        got = step(fused)
    ref = step(critic)
    for a, b in zip(got, ref):
        assert rel_error(a, b) <= 1e-12


def test_wgan_gp_critic_step_triton_fp32():
    torch.manual_seed(0)
    critic = DCGANCritic(image_size=8, channels=1, width=4, depth=1)
    fused = fuse_activations(critic)
    real, fake = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    alpha = torch.rand(2)
    grads = []
    for model, backend in ((critic, "reference"), (fused, "triton")):
        model.zero_grad()
        with fastgan.backend(backend):
            loss = model(fake).mean() - model(real).mean() + fastgan.gradient_penalty(model, real, fake, alpha=alpha)
            loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert rel_error(b, a) <= 1e-5


def test_torch_compile_forward_of_fused_critic():
    torch._dynamo.reset()
    # fastgan loads its extension on first use under a lock dynamo cannot trace: load it before a fullgraph compile
    fastgan._ext.load()
    torch.manual_seed(0)
    critic = fuse_activations(DCGANCritic(image_size=8, channels=1, width=4, depth=1))
    x = torch.randn(3, 1, 8, 8)
    with fastgan.backend("cpp"):
        expected = critic(x)
        out = torch.compile(critic, fullgraph=True, backend="aot_eager")(x)
    assert torch.allclose(out, expected, atol=1e-6)
