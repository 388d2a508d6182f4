"""fastgan.nn.grouped.GroupedSequential: T same-architecture models run as one grouped model give each model's own
outputs, parameter gradients, input gradients and batch-norm statistics (fp64, both memory formats, shared and
per-model inputs); what it refuses, and MixtureGAN's fallback when a layer turns out unsupported at call time."""
import copy

import pytest
import torch
from torch import nn

from fastgan.mix import MixtureGAN
from fastgan.models import DCGANCritic, DCGANGenerator
from fastgan.nn import Conv2dAct, LinearAct, fuse_activations
from fastgan.nn import grouped as grouped_module
from fastgan.nn.grouped import GroupedSequential, GroupingUnsupported
from fastgan.nn.layers import BiasAct

T = 3


def conv_stack():
    return nn.Sequential(nn.Conv2d(2, 6, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(6, 4, 3, 2, 1, groups=2),
                         nn.BatchNorm2d(4), nn.ReLU(), nn.Upsample(scale_factor=2), nn.PixelUnshuffle(2),
                         nn.PixelShuffle(2), nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1), nn.Dropout(0.0),
                         nn.Sequential(nn.Conv2d(4, 5, 1), nn.SiLU()), nn.Flatten(), nn.Linear(5 * 9, 3), nn.Tanh())


def transposed_stack():
    return nn.Sequential(nn.Unflatten(1, (4, 1, 1)), nn.ConvTranspose2d(4, 6, 3, 1, 0), nn.BatchNorm2d(6), nn.ELU(),
                         nn.ConvTranspose2d(6, 4, 4, 2, 1, groups=2), nn.GELU(), nn.ConvTranspose2d(4, 2, 3, 1, 1),
                         nn.Sigmoid())


def mlp():
    return nn.Sequential(nn.Linear(7, 9), nn.BatchNorm1d(9), nn.SELU(), LinearAct(9, 5, act="elu"),
                         BiasAct(5, "tanh", dim=-1), nn.Linear(5, 1), nn.Flatten(0))


def one_d():
    return nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.GELU(approximate="tanh"), nn.BatchNorm1d(4),
                         nn.ConvTranspose1d(4, 2, 2, 2), nn.AdaptiveAvgPool1d(3), nn.Flatten(1, 2), nn.Sigmoid())


def fused_critic():
    return nn.Sequential(Conv2dAct(2, 4, 3, 2, 1, act="lrelu"), BiasAct(4, "relu"), Conv2dAct(4, 3, 4, act="silu"),
                         nn.Flatten(1), nn.Linear(3, 1))


# (builder, input shape of one model, whether the first layer accepts an input shared by all models)
CASES = {
    "conv": (conv_stack, (5, 2, 6, 6)),
    "transposed": (transposed_stack, (4, 4)),
    "mlp": (mlp, (6, 7)),
    "conv1d": (one_d, (3, 3, 8)),
    "fused": (fused_critic, (2, 2, 8, 8)),
    "dcgan_g": (lambda: DCGANGenerator(z_dim=5, image_size=8, channels=2, width=4), (4, 5)),
    "dcgan_d": (lambda: DCGANCritic(image_size=8, channels=2, width=4, batch_norm=True), (3, 2, 8, 8)),
}


def models(builder):
    torch.manual_seed(0)
    out = [builder().double() for _ in range(T)]
    with torch.no_grad():  # random batch-norm affine parameters and statistics, so that mix-ups show
        for m in out:
            for module in m.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
                    module.running_mean.uniform_(-1, 1)
                    module.running_var.uniform_(0.5, 2)
    return out


def compare(builder, shape, shared, channels_last, train=True, frozen=False):
    grouped_models = models(builder)
    looped = copy.deepcopy(grouped_models)
    for m in grouped_models + looped:
        m.train(train)
    assert GroupedSequential.supports(grouped_models)
    torch.manual_seed(1)
    x = torch.randn(shape if shared else (T,) + shape, dtype=torch.float64)
    xg, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    grouped = GroupedSequential(grouped_models, channels_last=channels_last)
    out = grouped(xg, shared=shared, frozen=frozen)
    want = torch.stack([m(xl if shared else xl[i]) for i, m in enumerate(looped)])
    assert out.shape == want.shape
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    upstream = torch.randn_like(want)
    (out * upstream).sum().backward()
    if frozen:
        torch.autograd.backward(want, upstream, inputs=[xl])
    else:
        (want * upstream).sum().backward()
    torch.testing.assert_close(xg.grad, xl.grad, rtol=1e-10, atol=1e-12)
    for mg, ml in zip(grouped_models, looped):
        for (name, pg), (_, pl) in zip(mg.named_parameters(), ml.named_parameters()):
            if frozen:
                assert pg.grad is None and pl.grad is None, name
            else:
                torch.testing.assert_close(pg.grad, pl.grad, rtol=1e-10, atol=1e-12, msg=name)
        for (name, bg), (_, bl) in zip(mg.named_buffers(), ml.named_buffers()):
            torch.testing.assert_close(bg, bl, rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_each_model(name, shared, channels_last):
    builder, shape = CASES[name]
    compare(builder, shape, shared, channels_last)


@pytest.mark.parametrize("shared", [True, False])
def test_linear_layers_as_one_bmm(monkeypatch, shared):
    """The GPU's form of a per-model linear layer (one bmm), checked here by turning the CPU's GEMM loop off."""
    monkeypatch.setattr(grouped_module, "_GEMM_LOOP_DEVICES", set())
    compare(mlp, (6, 7), shared=shared, channels_last=None)
    compare(mlp, (6, 7), shared=shared, channels_last=None, frozen=True)


@pytest.mark.parametrize("name", ["conv", "mlp", "dcgan_g"])
def test_eval_mode_and_frozen_parameters(name):
    builder, shape = CASES[name]
    compare(builder, shape, shared=True, channels_last=None, train=False)
    compare(builder, shape, shared=False, channels_last=None, frozen=True)


def test_fused_critic_converter_output_is_grouped():
    critics = [fuse_activations(DCGANCritic(image_size=8, channels=1, width=4)).double() for _ in range(T)]
    assert GroupedSequential.supports(critics)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    out = GroupedSequential(critics)(x)
    torch.testing.assert_close(out, torch.stack([c(x) for c in critics]), rtol=1e-10, atol=1e-12)


def test_batch_one_and_non_contiguous_input():
    builder, shape = CASES["conv"]
    compare(builder, (1,) + shape[1:], shared=True, channels_last=True)
    grouped_models = models(builder)
    x = torch.randn(T, 6, 6, 2, 5, dtype=torch.float64).permute(0, 4, 3, 1, 2)  # [T, B, C, H, W], strided
    out = GroupedSequential(grouped_models)(x, shared=False)
    torch.testing.assert_close(out, torch.stack([m(x[i]) for i, m in enumerate(grouped_models)]),
                               rtol=1e-10, atol=1e-12)


class Custom(nn.Module):
    def forward(self, x):
        return x * 2


@pytest.mark.parametrize("model", [
    lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
    lambda: nn.Sequential(nn.Linear(2, 2), Custom()),
    lambda: nn.Sequential(nn.BatchNorm1d(2, momentum=None)),
    lambda: nn.Sequential(nn.MaxPool2d(2, return_indices=True)),
    lambda: BiasAct(3, dim=2),
    lambda: DCGANCritic,  # a class, not a module
], ids=["reflect-padding", "custom-layer", "cumulative-batch-norm", "pool-indices", "not-sequential", "class"])
def test_supports_refuses_what_it_cannot_group(model):
    m = model()
    assert not GroupedSequential.supports([m, m] if isinstance(m, nn.Module) else [m])


class Forwarded(nn.Sequential):
    def forward(self, x):
        return super().forward(x) + 1


def test_overridden_forward_is_not_grouped():
    assert not GroupedSequential.supports([Forwarded(nn.Linear(2, 2))] * 2)


def test_call_time_refusal_and_bad_input():
    group = GroupedSequential([nn.Sequential(nn.Linear(4, 2)) for _ in range(T)])
    with pytest.raises(GroupingUnsupported, match="Linear on a rank-3 input"):
        group(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"x must be \[T, B, \.\.\.\] with T = 3"):
        group(torch.randn(2, 5, 4), shared=False)
    # A refusal after a batch norm leaves the models' statistics untouched (callers then rerun the models).
    models = [nn.Sequential(nn.BatchNorm1d(3), nn.Linear(4, 2)) for _ in range(T)]
    before = [copy.deepcopy(m.state_dict()) for m in models]
    with pytest.raises(GroupingUnsupported, match="Linear on a rank-3 input"):
        GroupedSequential(models)(torch.randn(2, 3, 4))
    for m, state in zip(models, before):
        for name, value in m.state_dict().items():
            assert torch.equal(value, state[name]), name


def test_mixture_gan_falls_back_to_vmap_when_grouping_fails_at_call_time():
    torch.manual_seed(2)
    # Generators whose Linear meets a rank-3 input: supported on paper, refused at call time.
    gens = [nn.Sequential(nn.Unflatten(1, (2, 3)), nn.Linear(3, 8), nn.Flatten(1), nn.Unflatten(1, (1, 4, 4)))
            for _ in range(T)]
    crits = [nn.Sequential(nn.Flatten(), nn.Linear(16, 1)) for _ in range(2)]
    grouped = MixtureGAN(copy.deepcopy(gens), copy.deepcopy(crits))
    looped = MixtureGAN(copy.deepcopy(gens), copy.deepcopy(crits), batched=False)
    assert grouped.execution == ("grouped", "grouped") and looped.execution == ("loop", "loop")
    z, real = torch.randn(5, 6), torch.randn(5, 1, 4, 4)
    torch.testing.assert_close(grouped.g_loss(z), looped.g_loss(z))
    assert grouped.execution == ("vmap", "grouped")
    torch.testing.assert_close(grouped.d_loss(real, z), looped.d_loss(real, z))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["dcgan_g", "dcgan_d", "fused", "mlp"])
def test_matches_each_model_on_cuda(name):
    builder, shape = CASES[name]
    torch.manual_seed(5)
    grouped_models = [builder().float().cuda() for _ in range(T)]
    looped = copy.deepcopy(grouped_models)
    x = torch.randn(shape, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        out = GroupedSequential(grouped_models)(x)
        want = torch.stack([m(x) for m in looped])
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
        upstream = torch.randn_like(want)
        (out * upstream).sum().backward()
        (want * upstream).sum().backward()
    for mg, ml in zip(grouped_models, looped):
        for (pname, pg), (_, pl) in zip(mg.named_parameters(), ml.named_parameters()):
            torch.testing.assert_close(pg.grad, pl.grad, rtol=1e-3, atol=1e-4, msg=pname)
