"""SNGAN: the hinge-loss GAN with a spectrally normalised critic (Miyato et al., 2018, "Spectral Normalization for
Generative Adversarial Networks").

Every linear and convolutional layer of the critic divides its weight by its largest singular value (one power
iteration per forward); the critic minimises relu(1 - D(x)) + relu(1 + D(G(z))), the generator -D(G(z)).

Defaults and their sources:

* Adam, lr 2e-4, betas (0.0, 0.9), n_critic 5: the setting of the authors' code for their ResNet experiments
  (pfnet-research/sngan_projection, as we recall it); the paper's Table 1 lists settings A-F for the standard CNN,
  and spectral normalisation is robust across them.
* hinge loss: the paper's best results (Table 2, "hinge loss").
* no batch norm in the critic (the paper's critics have none); batch 64 (images) / 256 (2D, gan_toy.py's MLPs).
"""

from . import dcgan
from .dcgan import setup  # noqa: F401  (Adam for both players, as DCGAN)

NAME = "sngan"
MODEL_OPTIONS = {"image": {"spectral_norm": True}, "2d": {"spectral_norm": True}}


def defaults(kind, image_size):
    return {"lr": 2e-4, "betas": (0.0, 0.9), "n_critic": 5, "lr_decay": "none"}


def train_step(run):
    # DCGAN's loop with the hinge loss
    return dcgan.train_step(run, loss="hinge")
