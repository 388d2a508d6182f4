"""WGAN-LP: the Wasserstein GAN with a one-sided "Lipschitz penalty" (Petzka, Fischer and Lukovnikov, 2018, "On the
regularization of Wasserstein GANs").

As WGAN-GP, but the penalty lambda * max(0, ||grad D(x_hat)|| - 1)^2 only punishes slopes above 1, which is what the
Lipschitz constraint asks for; the points x_hat are the same real-fake interpolates.

Defaults and their sources: the paper trains with WGAN-GP's settings and reference code, so every default is
WGAN-GP's (see fastgan.train.recipes.wgan_gp): Adam lr 1e-4, betas (0.5, 0.9) ((0.0, 0.9) from 64x64), n_critic
5, lambda 10 for images and gan_toy.py's 0.1 for the 2D sets, batch 64 (images) / 256 (2D).
"""

from . import wgan_gp
from .wgan_gp import defaults, setup  # noqa: F401  (the same hyper-parameters and optimizers)

NAME = "wgan-lp"


def train_step(run):
    # WGAN-GP's loop with the one-sided penalty max(0, ||grad D|| - 1)^2 at the same interpolates
    logs = wgan_gp.train_step(run, penalty="wgan-lp")
    if "gp" in logs:
        logs["lp"] = logs.pop("gp")
    return logs
