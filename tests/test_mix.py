"""fastgan.mix.MixtureGAN: batched (vmap) and looped execution give the same losses, gradients and batch-norm
statistics for T = 5 DCGAN models; heterogeneous components fall back to the loop; gradient routing per player;
sampling from the mixture; bad arguments."""
import copy

import pytest
import torch
from torch import nn

import fastgan
from fastgan import ops
from fastgan.mix import MixtureGAN, same_architecture
from fastgan.models import DCGANCritic, DCGANGenerator

T = 5
Z_DIM = 8


def dcgan(t=T):
    """T small DCGANs (8x8; the generator has batch norm, so running statistics are compared too)."""
    torch.manual_seed(0)
    gens = [DCGANGenerator(z_dim=Z_DIM, image_size=8, channels=1, width=4).double() for _ in range(t)]
    crits = [DCGANCritic(image_size=8, channels=1, width=4).double() for _ in range(t)]
    return gens, crits


def pair(gens, crits, batched=None, **kw):
    """The same mixture twice: batched (auto: grouped where it applies) and looped, with random (equal) weight
    logits."""
    batched = MixtureGAN(copy.deepcopy(gens), copy.deepcopy(crits), batched=batched, **kw)
    looped = MixtureGAN(copy.deepcopy(gens), copy.deepcopy(crits), batched=False, **kw)
    with torch.no_grad():
        for m in (batched, looped):
            m.g_weight_logits.copy_(torch.linspace(-1, 1, len(gens), dtype=torch.float64))
            m.d_weight_logits.copy_(torch.linspace(0.5, -0.7, len(crits), dtype=torch.float64))
    return batched, looped


def grads(model):
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def assert_same_step(batched, looped, loss_fn):
    lb, ll = loss_fn(batched), loss_fn(looped)
    assert abs(lb.item() - ll.item()) <= 1e-12 * max(1.0, abs(ll.item()))
    lb.backward()
    ll.backward()
    gb, gl = grads(batched), grads(looped)
    assert gb.keys() == gl.keys()
    for name in gb:
        assert (gb[name] is None) == (gl[name] is None), name
        if gb[name] is not None:
            assert torch.allclose(gb[name], gl[name], rtol=1e-10, atol=1e-13), name
    for (name, b1), (_, b2) in zip(batched.named_buffers(), looped.named_buffers()):
        assert torch.allclose(b1.double(), b2.double(), rtol=1e-12, atol=1e-14), name
    batched.zero_grad(set_to_none=True)
    looped.zero_grad(set_to_none=True)
    return gb


@pytest.mark.parametrize("execution", ["grouped", "vmap"])
@pytest.mark.parametrize("kind", ["nonsaturating", "relativistic"])
def test_batched_matches_loop_for_five_dcgans(kind, execution):
    batched, looped = pair(*dcgan(), kind=kind, batched=None if execution == "grouped" else "vmap")
    assert batched.batched == (True, True) and looped.batched == (False, False)
    assert batched.execution == (execution, execution) and looped.execution == ("loop", "loop")
    torch.manual_seed(1)
    real = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    z = torch.randn(6, Z_DIM, dtype=torch.float64)
    d_grads = assert_same_step(batched, looped, lambda m: m.d_loss(real, z))  # also compares batch-norm buffers
    g_grads = assert_same_step(batched, looped, lambda m: m.g_loss(z, real))
    # Routing: the D step reaches every discriminator and d_weight_logits only; the G step the generators and
    # g_weight_logits only.
    for name, g in d_grads.items():
        assert (g is not None) == (name.startswith("discriminators") or name == "d_weight_logits"), name
    for name, g in g_grads.items():
        assert (g is not None) == (name.startswith("generators") or name == "g_weight_logits"), name


def test_per_generator_latents_and_loss_value():
    batched, looped = pair(*dcgan())
    torch.manual_seed(2)
    real = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    z = torch.randn(T, 4, Z_DIM, dtype=torch.float64)
    assert_same_step(batched, looped, lambda m: m.d_loss(real, z))
    assert_same_step(batched, looped, lambda m: m.g_loss(z))
    # The loss is mixture_gan_loss of the components' logits.
    with torch.no_grad():
        fakes = torch.stack([g(z[i]) for i, g in enumerate(looped.generators)])
        real_logits = torch.stack([d(real) for d in looped.discriminators])
        fake_logits = torch.stack([torch.stack([d(fakes[i]) for d in looped.discriminators]) for i in range(T)])
        want, _ = ops.mixture_gan_loss_reference(real_logits, fake_logits, looped.g_weight_logits,
                                                 looped.d_weight_logits)
        assert abs(batched.d_loss(real, z).item() - want.item()) <= 1e-12


def test_batch_norm_critics_score_real_and_fake_batches_separately():
    gens, _ = dcgan()
    torch.manual_seed(4)
    crits = [DCGANCritic(image_size=8, channels=1, width=4, batch_norm=True).double() for _ in range(T)]
    batched, looped = pair(gens, crits)
    assert batched.execution == ("grouped", "grouped")
    real = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    z = torch.randn(5, Z_DIM, dtype=torch.float64)
    assert_same_step(batched, looped, lambda m: m.d_loss(real, z))  # batch statistics of each batch alone
    assert_same_step(batched, looped, lambda m: m.g_loss(z))


class SmallG(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.z_dim = Z_DIM
        self.net = nn.Sequential(nn.Linear(Z_DIM, hidden), nn.ReLU(), nn.Linear(hidden, 16), nn.Unflatten(1, (1, 4, 4)))

    def forward(self, z):
        return self.net(z)


def small_d(hidden):
    return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


def test_heterogeneous_components_fall_back_to_the_loop():
    torch.manual_seed(3)
    gens = [SmallG(h).double() for h in (5, 7, 5)]
    crits = [small_d(h).double() for h in (6, 6)]
    assert not same_architecture(gens) and same_architecture(crits)
    mixed, looped = pair(gens, crits)
    assert mixed.batched == (False, True)
    real = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    z = torch.randn(5, Z_DIM, dtype=torch.float64)
    assert_same_step(mixed, looped, lambda m: m.d_loss(real, z))
    assert_same_step(mixed, looped, lambda m: m.g_loss(z))
    with pytest.raises(ValueError, match="batched=True but the generators"):
        MixtureGAN(gens, crits, batched=True)
    # Components that differ only in structure (an activation) are not batched either.
    acts = [nn.Sequential(nn.Flatten(), nn.Linear(16, 1), act) for act in (nn.ReLU(), nn.Tanh())]
    assert not same_architecture(acts)


def test_train_eval_mismatch_runs_the_loop():
    batched, looped = pair(*dcgan())
    batched.generators[2].eval()
    looped.generators[2].eval()
    assert batched.batched == (False, True)
    real, z = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, Z_DIM, dtype=torch.float64)
    assert_same_step(batched, looped, lambda m: m.g_loss(z))
    batched.generators[2].train()
    looped.generators[2].train()
    assert batched.batched == (True, True)
    assert_same_step(batched, looped, lambda m: m.d_loss(real, z))


def test_sample_and_weights():
    mix = MixtureGAN(*dcgan())
    assert torch.allclose(mix.g_weights, torch.full((T,), 1.0 / T, dtype=torch.float64))
    assert not mix.g_weights.requires_grad and mix.d_weights.shape == (T,)
    mix.eval()
    gen = torch.Generator().manual_seed(4)
    x, comps = mix.sample(10, generator=gen, return_components=True)
    assert x.shape == (10, 1, 8, 8) and comps.shape == (10,) and not x.requires_grad
    # A weight near 1 makes every sample come from that component, exactly G_k(z).
    with torch.no_grad():
        mix.g_weight_logits.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
    z = torch.randn(7, Z_DIM, dtype=torch.float64)
    x, comps = mix.sample(7, z=z, return_components=True)
    assert (comps == 2).all()
    assert torch.allclose(x, mix.generators[2](z))
    counts = torch.bincount(mix.sample(400, return_components=True)[1], minlength=T)
    assert counts[2] == 400
    assert "T_g=5" in repr(mix)
    assert len(mix.generator_parameters()) == sum(1 for g in mix.generators for _ in g.parameters()) + 1


def test_bad_arguments():
    gens, crits = dcgan(t=2)
    with pytest.raises(ValueError, match="generators must hold at least one module"):
        MixtureGAN([], crits)
    with pytest.raises(TypeError, match="discriminators must be nn.Modules"):
        MixtureGAN(gens, [lambda x: x])
    with pytest.raises(ValueError, match="unknown kind"):
        MixtureGAN(gens, crits, kind="mix")
    with pytest.raises(ValueError, match="unknown batched 'fast'"):
        MixtureGAN(gens, crits, batched="fast")
    with pytest.raises(ValueError, match="channels_last must be None, True or False"):
        MixtureGAN(gens, crits, channels_last="yes")
    with pytest.raises(ValueError, match="unknown regularizer"):
        MixtureGAN(gens, crits, regularizer="shannon")
    with pytest.raises(TypeError, match="reg_weight must be a number"):
        MixtureGAN(gens, crits, reg_weight="0.1")
    mix = MixtureGAN(gens, crits, kind="relativistic")
    with pytest.raises(ValueError, match="real is required"):
        mix.g_loss(torch.randn(2, Z_DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match="z must be"):
        mix.generate(torch.randn(3, 2, Z_DIM, dtype=torch.float64))
    with pytest.raises(TypeError, match="real must be a torch.Tensor"):
        mix.d_loss(None, torch.randn(2, Z_DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match="n must be a positive int"):
        mix.sample(0)
    with pytest.raises(ValueError, match="z_dim"):
        MixtureGAN([nn.Linear(Z_DIM, 16)], [small_d(3)]).sample(2)  # no z_dim attribute, none given


def test_training_moves_the_weights():
    torch.manual_seed(5)
    gens = [SmallG(8) for _ in range(3)]
    crits = [small_d(8) for _ in range(2)]
    mix = MixtureGAN(gens, crits)
    opt_d = torch.optim.SGD(mix.discriminator_parameters(), lr=0.5)
    opt_g = torch.optim.SGD(mix.generator_parameters(), lr=0.5)
    real = torch.randn(16, 1, 4, 4)
    with fastgan.backend("cpp"):
        for _ in range(3):
            z = torch.randn(16, Z_DIM)
            opt_d.zero_grad()
            mix.d_loss(real, z).backward()
            opt_d.step()
            opt_g.zero_grad()
            mix.g_loss(z).backward()
            opt_g.step()
    assert not torch.allclose(mix.d_weights, torch.full((2,), 0.5))
    assert not torch.allclose(mix.g_weights, torch.full((3,), 1 / 3))
    assert torch.isclose(mix.g_weights.sum(), torch.tensor(1.0))
