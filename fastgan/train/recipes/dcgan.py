"""DCGAN: the non-saturating GAN (Goodfellow et al., 2014) with the deep convolutional networks of Radford, Metz
and Chintala (2016, "Unsupervised Representation Learning with Deep Convolutional GANs").

The discriminator minimises softplus(-D(x)) + softplus(D(G(z))) (binary cross-entropy on logits); the generator
minimises softplus(-D(G(z))), i.e. maximises log sigmoid(D(G(z))) (the non-saturating loss).

Defaults and their sources:

* Adam, lr 2e-4, beta1 0.5: the DCGAN paper, section 4 ("learning rate 0.0002", "beta1 ... 0.5"); beta2 0.999 is
  Adam's default, which the paper leaves unchanged.
* one discriminator update per generator update (n_critic 1), batch 128: the paper ("mini-batch SGD with a
  mini-batch size of 128").
* batch norm in the discriminator (all layers but the first), as in the paper; the 2D sets use gan_toy.py's MLPs
  (no batch norm) and its batch 256.
"""

import torch

import fastgan.optim
from fastgan.losses import d_loss, g_loss

from ._common import frozen

NAME = "dcgan"
BATCH_SIZE = {"image": 128}
MODEL_OPTIONS = {"image": {"critic_batch_norm": True}}


def defaults(kind, image_size):
    return {"lr": 2e-4, "betas": (0.5, 0.999), "n_critic": 1, "lr_decay": "none"}


def setup(run):
    hp = run.hp
    run.opt_d = fastgan.optim.Adam(run.D.parameters(), lr=hp.lr, betas=tuple(hp.betas))
    run.opt_g = fastgan.optim.Adam(run.G.parameters(), lr=hp.lr, betas=tuple(hp.betas))


def train_step(run, loss="nonsaturating"):
    """One generator step after n_critic discriminator steps, with the GAN loss ``loss`` (fastgan.losses kinds:
    lsgan and sngan run this loop with theirs)."""
    G, D, hp = run.G, run.D, run.hp
    for _ in range(hp.n_critic):
        real, z = run.real(), run.z()
        with torch.no_grad(), run.autocast():
            fake = G(z)
        with run.autocast():
            loss_d = d_loss(loss, D(real), D(fake))
        run.update(run.opt_d, loss_d)

    with frozen(D) as critic, run.autocast():
        loss_g = g_loss(loss, critic(G(run.z())))
    run.update(run.opt_g, loss_g)
    return {"loss_d": loss_d, "loss_g": loss_g}
