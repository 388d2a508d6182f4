"""fastgan.models: shapes, structure (Linear/Conv directly followed by the activation), bad arguments."""

import pytest
import torch
from torch import nn

from fastgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator


def test_mlp_gan_toy_defaults():
    g, d = MLPGenerator(), MLPCritic()
    assert [m.out_features for m in g if isinstance(m, nn.Linear)] == [512, 512, 512, 2]
    assert [m.out_features for m in d if isinstance(m, nn.Linear)] == [512, 512, 512, 1]
    z = g.sample_z(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, 2)
    x = g(z)
    assert x.shape == (5, 2)
    assert d(x).shape == (5,)
    assert d(x[:1]).shape == (1,)  # batch 1 stays a batch


def test_mlp_options():
    g = MLPGenerator(z_dim=7, hidden=16, depth=1, out_dim=3)
    assert g(torch.randn(4, 7)).shape == (4, 3)
    d = MLPCritic(in_dim=3, hidden=16, depth=5, act="lrelu")
    assert d(torch.randn(4, 3)).shape == (4,)
    assert sum(isinstance(m, nn.LeakyReLU) for m in d) == 5


def _pairs(model, layer_type, act_type):
    mods = list(model)
    return sum(isinstance(a, layer_type) and isinstance(b, act_type) for a, b in zip(mods, mods[1:]))


def test_critic_exposes_fusable_pairs():
    assert _pairs(MLPCritic(hidden=8), nn.Linear, nn.ReLU) == 3
    c = DCGANCritic(32, 3, width=4)
    assert _pairs(c, nn.Conv2d, nn.LeakyReLU) == 3
    assert all(m.negative_slope == 0.2 for m in c if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in c)


@pytest.mark.parametrize("size", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    g = DCGANGenerator(z_dim=8, image_size=size, channels=channels, width=4)
    d = DCGANCritic(image_size=size, channels=channels, width=4)
    z = g.sample_z(2)
    with torch.no_grad():
        x = g(z)
    assert x.shape == (2, channels, size, size)
    assert float(x.abs().max()) <= 1.0  # tanh output
    assert d(x).shape == (2,)
    n_up = sum(isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) for m in g)
    assert n_up == size.bit_length() - 3  # from 4x4 to size


def test_dcgan_depth_and_batchnorm():
    g = DCGANGenerator(z_dim=8, image_size=32, channels=1, width=4, depth=1)  # starts at 16x16
    assert g(torch.randn(3, 8)).shape == (3, 1, 32, 32)
    d = DCGANCritic(32, 1, width=4, depth=2, batch_norm=True, act="relu")
    assert d(torch.randn(3, 1, 32, 32)).shape == (3,)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d) == 1
    assert any(isinstance(m, nn.BatchNorm2d) for m in g)


def test_dcgan_gradient_penalty_runs():
    d = DCGANCritic(16, 1, width=4)
    x = torch.randn(3, 1, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert d[0].weight.grad is not None and float(d[0].weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("bad", [4, 12, 256, 0, 33.0, "32"])
def test_bad_image_size(bad):
    with pytest.raises(ValueError, match="image_size"):
        DCGANGenerator(image_size=bad)
    with pytest.raises(ValueError, match="image_size"):
        DCGANCritic(image_size=bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        DCGANGenerator(image_size=16, depth=3)
    with pytest.raises(ValueError, match="act"):
        DCGANCritic(16, act="gelu2")
    with pytest.raises(ValueError, match="width"):
        DCGANCritic(16, width=0)
    with pytest.raises(ValueError, match="hidden"):
        MLPCritic(hidden=-1)
    with pytest.raises(ValueError, match="z_dim"):
        MLPGenerator(z_dim=0)
