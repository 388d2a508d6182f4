"""R1: the non-saturating GAN with the R1 gradient penalty on real data (Mescheder, Geiger and Nowozin, 2018,
"Which Training Methods for GANs do actually Converge?").

The discriminator minimises softplus(-D(x)) + softplus(D(G(z))) + gamma * ||grad_x D(x)||^2 on real x; the generator
softplus(-D(G(z))). The penalty makes the training converge locally where unregularised GANs oscillate.

Defaults and their sources (the authors' code, LMescheder/GAN_stability, configs/default.yaml and
gan_training/train.py):

* RMSprop, lr 1e-4 for both players (``optimizer: rmsprop``, ``lr_g``/``lr_d: 0.0001``), one discriminator update
  per generator update (``d_steps: 1``), batch 64 (``batch_size: 64``).
* gp_weight 10: ``reg_param: 10.``, applied as ``reg_param * mean ||grad||^2`` (train.py), which is this weight
  (the paper writes the same penalty as gamma / 2 * ||grad||^2 with gamma = 10 in several experiments; the code's
  factor is what we follow). 2D sets: 0.1, with gan_toy.py's batch 256 and MLPs, following gan_toy.py's view that
  toy data at this scale needs a much smaller penalty than images.

The penalty reuses the critic's forward on the real batch (fastgan.distributed.critic_outputs). With --reg-every k
it moves to a separate step every k updates with weight x k and the lr corrected by k / (k + 1) (fastgan.lazy).
"""

import torch

import fastgan.optim
from fastgan.distributed import critic_outputs
from fastgan.lazy import LazyRegularization
from fastgan.losses import d_loss, g_loss

from ._common import frozen

NAME = "r1"


def defaults(kind, image_size):
    return {"lr": 1e-4, "n_critic": 1, "gp_weight": 0.1 if kind == "2d" else 10.0, "lr_decay": "none"}


def setup(run):
    run.lazy = LazyRegularization(run.reg_every)
    run.opt_d = fastgan.optim.RMSprop(run.D.parameters(), lr=run.hp.lr)
    run.lazy.correct_optimizer(run.opt_d)  # lr x k/(k+1) for k > 1
    run.opt_g = fastgan.optim.RMSprop(run.G.parameters(), lr=run.hp.lr)


def train_step(run):
    G, D, hp, lazy = run.G, run.D, run.hp, run.lazy
    logs = {}
    for i in range(hp.n_critic):
        real, z = run.real(), run.z()
        with torch.no_grad(), run.autocast():
            fake = G(z)
        with run.autocast():
            out = critic_outputs(D, real, fake, penalty="r1" if lazy.every == 1 else None, weight=hp.gp_weight,
                                 **run.penalty_options(run.opt_d))
            loss_d = d_loss("nonsaturating", out.real, out.fake)
        run.update(run.opt_d, loss_d if out.penalty is None else loss_d + out.penalty)
        if out.penalty is not None:
            logs["r1"] = out.penalty
        elif lazy.due(run.step * hp.n_critic + i):  # --reg-every k: an R1-only step every k updates
            with run.autocast():
                out = critic_outputs(D, real, penalty="r1", scores=False, weight=lazy.weight(hp.gp_weight),
                                     **run.penalty_options(run.opt_d))
            run.update(run.opt_d, out.penalty)
            logs["r1"] = out.penalty

    with frozen(D) as critic, run.autocast():
        loss_g = g_loss("nonsaturating", critic(G(run.z())))
    run.update(run.opt_g, loss_g)
    return {"loss_d": loss_d, "loss_g": loss_g, **logs}
