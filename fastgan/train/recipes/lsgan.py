"""LSGAN: least-squares GAN (Mao et al., 2017, "Least Squares Generative Adversarial Networks").

The discriminator minimises (D(x) - b)^2 / 2 + (D(G(z)) - a)^2 / 2, the generator (D(G(z)) - c)^2 / 2, with the
0-1 coding a = 0, b = c = 1 of the paper's experiments.

Defaults and their sources:

* Adam, lr 2e-4, beta1 0.5 (beta2 0.999): the paper trains with Adam and beta1 = 0.5 on DCGAN-style networks; its
  learning rates are 0.001 and 0.0002 depending on the data set (as we read section 4), and 2e-4 is the one that
  matches DCGAN, whose networks we use.
* one discriminator update per generator update; batch norm in the discriminator (the paper's networks follow
  DCGAN); batch 64 (images) / 256 (2D, gan_toy.py's MLPs).
"""

import torch

import fastgan.optim
from fastgan.losses import d_loss, g_loss

from ._common import frozen

NAME = "lsgan"
MODEL_OPTIONS = {"image": {"critic_batch_norm": True}}


def defaults(kind, image_size):
    return {"lr": 2e-4, "betas": (0.5, 0.999), "n_critic": 1, "lr_decay": "none"}


def setup(run):
    hp = run.hp
    run.opt_d = fastgan.optim.Adam(run.D.parameters(), lr=hp.lr, betas=tuple(hp.betas))
    run.opt_g = fastgan.optim.Adam(run.G.parameters(), lr=hp.lr, betas=tuple(hp.betas))


def train_step(run):
    G, D, hp = run.G, run.D, run.hp
    for _ in range(hp.n_critic):
        real, z = run.real(), run.z()
        with torch.no_grad(), run.autocast():
            fake = G(z)
        with run.autocast():
            loss_d = d_loss("lsgan", D(real), D(fake))
        run.update(run.opt_d, loss_d)

    with frozen(D) as critic, run.autocast():
        loss_g = g_loss("lsgan", critic(G(run.z())))
    run.update(run.opt_g, loss_g)
    return {"loss_d": loss_d, "loss_g": loss_g}
