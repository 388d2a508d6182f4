"""WGAN: the Wasserstein GAN with weight clipping (Arjovsky, Chintala and Bottou, 2017, "Wasserstein GAN").

The critic maximises D(x) - D(G(z)) with every weight clipped to [-c, c] after each update (a crude Lipschitz
constraint); the generator minimises -D(G(z)).

Defaults and their sources:

* RMSprop, lr 5e-5, clip c = 0.01, n_critic 5, batch 64: the paper's Algorithm 1 (alpha = 0.00005, c = 0.01,
  m = 64, n_critic = 5); RMSprop with PyTorch's defaults otherwise, as the reference code
  (martinarjovsky/WassersteinGAN, main.py) creates it. fastgan.optim.RMSprop(clip=c) clamps the weights in the
  update's own pass over memory.
* critic_burst 100 for images: the reference code trains the critic 100 times per generator step for the first
  25 generator steps and every 500th one (``Diters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0``).
  0 (off) for the 2D sets, whose reference (gan_toy.py, MODE = 'wgan') always uses CRITIC_ITERS = 5.
* critic with batch norm for images: the reference code's DCGAN critic has it (weight clipping does not need a
  per-sample critic); the 2D critic is gan_toy.py's plain MLP.
* 2D: batch 256 and the MLPs of gan_toy.py (see fastgan.train.recipes.wgan_gp).
"""

import torch

import fastgan.optim
from fastgan.losses import d_loss, g_loss

from ._common import frozen

NAME = "wgan"
MODEL_OPTIONS = {"image": {"critic_batch_norm": True}}


def defaults(kind, image_size):
    return {"lr": 5e-5, "n_critic": 5, "clip": 0.01, "critic_burst": 0 if kind == "2d" else 100,
            "lr_decay": "none"}


def setup(run):
    # clip=c: every critic weight is clamped to [-c, c] in the same pass as the update (Algorithm 1, line 7)
    run.opt_d = fastgan.optim.RMSprop(run.D.parameters(), lr=run.hp.lr, clip=run.hp.clip)
    run.opt_g = fastgan.optim.RMSprop(run.G.parameters(), lr=run.hp.lr)


def critic_iters(step, hp):
    """The reference code's schedule: a burst of critic updates early on and every 500 generator steps."""
    if hp.critic_burst and (step < 25 or step % 500 == 0):
        return hp.critic_burst
    return hp.n_critic


def train_step(run):
    G, D, hp = run.G, run.D, run.hp
    for _ in range(critic_iters(run.step, hp)):
        real, z = run.real(), run.z()
        with torch.no_grad(), run.autocast():
            fake = G(z)
        with run.autocast():
            loss_d = d_loss("wasserstein", D(real), D(fake))
        run.update(run.opt_d, loss_d)  # RMSprop step, then w <- clip(w, -c, c)

    with frozen(D) as critic, run.autocast():
        loss_g = g_loss("wasserstein", critic(G(run.z())))
    run.update(run.opt_g, loss_g)
    return {"loss_d": loss_d, "loss_g": loss_g}
