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

from . import dcgan
from .dcgan import setup  # noqa: F401  (Adam for both players, as DCGAN)

NAME = "lsgan"
MODEL_OPTIONS = {"image": {"critic_batch_norm": True}}


def defaults(kind, image_size):
    return {"lr": 2e-4, "betas": (0.5, 0.999), "n_critic": 1, "lr_decay": "none"}


def train_step(run):
    # DCGAN's loop with the lsgan loss
    return dcgan.train_step(run, loss="lsgan")
