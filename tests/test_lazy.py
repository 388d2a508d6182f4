"""Lazy regularisation: schedule, weight * k, and StyleGAN2's optimizer correction c = k / (k + 1)."""
import math

import pytest
import torch
from torch import nn

from fastgan import lazy
from fastgan.lazy import LazyRegularization


def test_ratio_weight_and_schedule():
    assert lazy.lazy_ratio(1) == 1.0
    assert lazy.lazy_ratio(4) == pytest.approx(0.8)
    assert lazy.lazy_ratio(16) == pytest.approx(16 / 17)
    assert lazy.lazy_weight(5.0, 16) == 80.0
    reg = LazyRegularization(4)
    assert [s for s in range(13) if reg.due(s)] == [0, 4, 8, 12]
    assert all(LazyRegularization(1).due(s) for s in range(5))
    assert reg.weight(10.0) == 40.0 and reg.ratio == pytest.approx(0.8)
    assert repr(reg) == "LazyRegularization(every=4)"


def test_adam_hyperparameters_match_stylegan2():
    # StyleGAN2 (config f): D_reg_interval 16, lr 0.002, betas (0, 0.99).
    hp = lazy.adam_hyperparameters(0.002, (0.0, 0.99), 16)
    c = 16 / 17
    assert hp["lr"] == pytest.approx(0.002 * c)
    assert hp["betas"] == pytest.approx((0.0, 0.99 ** c))
    assert lazy.adam_hyperparameters(1e-4, (0.5, 0.9), 1) == {"lr": 1e-4, "betas": (0.5, 0.9)}


def test_correct_optimizer_in_place_once():
    model = nn.Linear(2, 1)
    adam = torch.optim.Adam([{"params": [model.weight]}, {"params": [model.bias], "lr": 1e-2}],
                            lr=2e-3, betas=(0.0, 0.99))
    c = LazyRegularization(4).correct_optimizer(adam)
    assert c == pytest.approx(0.8)
    assert adam.param_groups[0]["lr"] == pytest.approx(1.6e-3)
    assert adam.param_groups[1]["lr"] == pytest.approx(8e-3)
    assert adam.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** 0.8))
    with pytest.raises(RuntimeError, match="already"):
        lazy.correct_optimizer(adam, 4)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)  # no betas: lr only
    lazy.correct_optimizer(sgd, 9)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.09)
    adam.step()  # the corrected groups are valid for the optimizer


def test_lazy_weight_keeps_the_average_penalty_gradient():
    """k steps with one penalty of weight w*k give the same summed penalty gradient as k penalties of weight w."""
    import fastgan

    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    real = torch.randn(5, 3, dtype=torch.float64)
    k = 4
    every = [fastgan.r1_penalty(critic, real, weight=2.0) for _ in range(k)]
    total = torch.autograd.grad(sum(every), critic[0].weight)[0]
    lazy_total = torch.autograd.grad(fastgan.r1_penalty(critic, real, weight=lazy.lazy_weight(2.0, k)),
                                     critic[0].weight)[0]
    assert torch.allclose(total, lazy_total, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                       ("4", TypeError)])
def test_bad_every(bad, error):
    with pytest.raises(error, match="every"):
        LazyRegularization(bad)
    with pytest.raises(error, match="every"):
        lazy.lazy_ratio(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="betas"):
        lazy.adam_hyperparameters(1e-3, (0.9,), 4)
    with pytest.raises(ValueError, match="betas"):
        lazy.adam_hyperparameters(1e-3, (0.9, 1.0), 4)
    with pytest.raises(ValueError, match="lr"):
        lazy.adam_hyperparameters(-1e-3, (0.0, 0.9), 4)
    with pytest.raises(ValueError, match="step"):
        lazy.is_regularization_step(-1, 4)
    with pytest.raises(ValueError, match="weight"):
        lazy.lazy_weight(-1.0, 4)
    with pytest.raises(TypeError, match="weight"):
        lazy.lazy_weight(None, 4)
    assert math.isclose(lazy.lazy_weight(0.0, 3), 0.0)
