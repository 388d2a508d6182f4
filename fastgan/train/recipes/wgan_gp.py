"""WGAN-GP: the Wasserstein GAN with a gradient penalty (Gulrajani et al., 2017, "Improved Training of Wasserstein
GANs").

The critic minimises D(G(z)) - D(x) + lambda * (||grad D(x_hat)|| - 1)^2 at random interpolates x_hat between real
and generated samples; the generator minimises -D(G(z)). No batch norm in the critic (the penalty is per sample).

Defaults and their sources:

* Adam, lr 1e-4, betas (0.5, 0.9): the paper's Algorithm 1 (alpha = 0.0001, beta1 = 0.5, beta2 = 0.9) and the
  reference code (igul222/improved_wgan_training: gan_toy.py, gan_mnist.py, gan_cifar.py); betas (0.0, 0.9) for
  images of 64x64 and more, as gan_64x64.py uses.
* 2D sets: lr 1e-3 decayed linearly to 0 over the run (lr_decay linear, the schedule of the reference code's
  CIFAR-10 ResNet script, gan_cifar_resnet.py). gan_toy.py keeps 1e-4 for ITERS = 100,000 generator steps; ten
  times the rate, annealed, reaches the same sharp modes in a few thousand steps, minutes on a CPU (measured in
  docs/results.md). ``--lr 1e-4 --lr-decay none`` restores gan_toy.py's schedule.
* n_critic 5: Algorithm 1, gan_toy.py's CRITIC_ITERS = 5.
* gp_weight lambda 10 for images: Algorithm 1; 0.1 for the 2D sets: gan_toy.py's LAMBDA = .1 ("smaller lambda makes
  things faster for toy tasks").
* batch 64 for images (Algorithm 1, m = 64); 256 for the 2D sets (gan_toy.py's BATCH_SIZE).
* 2D models: gan_toy.py's ReLU MLPs (three hidden layers, noise dimension 2): the generator at its DIM = 512, the
  critic at 128, a sixteenth of the critic's compute per step, which a 2-core CPU needs
  (fastgan.train.config.model_defaults).
* images: lr_decay none, as the paper's Algorithm 1.

With --reg-every k > 1 the penalty moves to a separate step every k critic steps with weight x k and Adam's lr and
betas corrected by k / (k + 1) (lazy regularisation, StyleGAN2; fastgan.lazy).
"""

import torch

import fastgan.optim
from fastgan.distributed import critic_outputs
from fastgan.lazy import LazyRegularization
from fastgan.losses import d_loss, g_loss

from ._common import frozen

NAME = "wgan-gp"
PENALTY = "wgan-gp"


def defaults(kind, image_size):
    hp = {"lr": 1e-4, "betas": (0.5, 0.9), "n_critic": 5, "gp_weight": 10.0, "lr_decay": "none"}
    if kind == "2d":
        hp.update(gp_weight=0.1, lr=1e-3, lr_decay="linear")
    elif image_size is not None and image_size >= 64:
        hp["betas"] = (0.0, 0.9)
    return hp


def setup(run):
    hp = run.hp
    run.lazy = LazyRegularization(run.reg_every)
    run.opt_d = fastgan.optim.Adam(run.D.parameters(), **run.lazy.adam_hyperparameters(hp.lr, hp.betas))
    run.opt_g = fastgan.optim.Adam(run.G.parameters(), lr=hp.lr, betas=tuple(hp.betas))


def train_step(run, penalty=PENALTY):
    G, D, hp, lazy = run.G, run.D, run.hp, run.lazy
    logs = {}
    for i in range(hp.n_critic):
        real, z, alpha = run.real(), run.z(), run.uniform()
        with torch.no_grad(), run.autocast():
            fake = G(z).float()
        with run.autocast():
            # Scores and (every step unless lazy) the penalty at real-fake interpolates, computed so that the one
            # backward reaches each critic parameter once (DDP-safe).
            out = critic_outputs(D, real, fake, penalty=penalty if lazy.every == 1 else None, weight=hp.gp_weight,
                                 alpha=alpha, **run.penalty_options(run.opt_d))
            loss_d = d_loss("wasserstein", out.real, out.fake)
        run.update(run.opt_d, loss_d if out.penalty is None else loss_d + out.penalty)
        if out.penalty is not None:
            logs["gp"] = out.penalty
        elif lazy.due(run.step * hp.n_critic + i):  # --reg-every k: a penalty-only step every k critic steps
            with run.autocast():
                out = critic_outputs(D, real, fake, penalty=penalty, scores=False, weight=lazy.weight(hp.gp_weight),
                                     alpha=alpha, **run.penalty_options(run.opt_d))
            run.update(run.opt_d, out.penalty)
            logs["gp"] = out.penalty

    with frozen(D) as critic, run.autocast():
        loss_g = g_loss("wasserstein", critic(G(run.z())))
    run.update(run.opt_g, loss_g)
    return {"loss_d": loss_d, "loss_g": loss_g, **logs}
