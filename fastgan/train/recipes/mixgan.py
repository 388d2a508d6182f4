"""MIX+GAN: a mixture of T generators against a mixture of T discriminators (Arora, Ge, Liang, Ma and Zhang, 2017,
"Generalization and Equilibrium in Generative Adversarial Nets (GANs)").

Each player is a mixture: generator i is drawn with weight p_i = softmax(g_logits)_i, discriminator j counts with
q_j = softmax(d_logits)_j, and both players play the mixture-weighted payoff over all T x T pairs,

    d_loss = sum_ij p_i q_j phi^D(D_j, G_i) + w * R(q),   g_loss = sum_ij p_i q_j phi^G(D_j, G_i) + w * R(p),

with the non-saturating DCGAN losses as phi (MIX+DCGAN, the paper's main experiments) and R the reference code's
regulariser mean_k(-log w_k), which keeps the weights from collapsing. The weight logits are trained with their
player's parameters. fastgan.mix.MixtureGAN runs each player's components as one batched model and computes the
losses over all pairs with one fused op (fastgan.ops.mixture_gan_loss).

Defaults and their sources:

* mixtures T = 5: the paper's experiments mix 5 components.
* Adam, lr 2e-4, betas (0.5, 0.999), one discriminator update per generator update, discriminator batch norm:
  DCGAN's settings (fastgan.train.recipes.dcgan), which MIX+DCGAN keeps.
* mix_weight 0.1: the weight of the mean(-log w) regulariser in the reference code (as documented in
  fastgan.ops.mixture_gan_loss).
* batch 64 per component for images (each generator draws a batch; DCGAN batch 128 halved so that 5 components
  fit); 256 for the 2D sets with gan_toy.py's MLPs.
"""

import torch
from torch import nn

import fastgan.mix
import fastgan.optim

NAME = "mixgan"
BATCH_SIZE = {"image": 64}
MODEL_OPTIONS = {"image": {"critic_batch_norm": True}}
DDP_WRAP = False  # the losses call the components directly; the trainer averages gradients over processes


def defaults(kind, image_size):
    return {"lr": 2e-4, "betas": (0.5, 0.999), "n_critic": 1, "mixtures": 5, "mix_weight": 0.1,
            "lr_decay": "none"}


class Mixture(nn.Module):
    """One player's T components and their mixture-weight logits (what the checkpoint stores as G or D).

    For the generators, ``G(z)`` samples the mixture: the batch is split among the generators in proportion to
    their weights (largest remainders: stratified, so that a picture shows each generator its share) and
    generator i turns its rows of z into samples.
    """

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.logits = nn.Parameter(torch.zeros(len(members)))

    def weights(self):
        """The members' mixture weights, softmax of the logits (detached, float64 on the CPU)."""
        return torch.softmax(self.logits.detach().double().cpu(), 0)

    def counts(self, n):
        """Rows of a batch of n that each member draws: n * weights, rounded by largest remainders."""
        share = self.weights() * n
        counts = share.floor().long()
        rest = n - int(counts.sum())
        if rest > 0:
            counts[torch.argsort(share - counts, descending=True)[:rest]] += 1
        return counts

    def forward(self, z):
        outs, start = [], 0
        for g, n in zip(self.members, self.counts(len(z)).tolist()):
            if n:
                outs.append(g(z[start:start + n]))
            start += n
        return torch.cat(outs)


def sample_groups(G, n):
    """Which generator draws each row of G(z) for a batch of n ([n] component indices), and legend labels."""
    counts = G.counts(n)
    labels = [f"G{i} (w {w:.2f})" for i, w in enumerate(G.weights().tolist())]
    return torch.repeat_interleave(torch.arange(len(counts)), counts), labels


def build_models(make_g, make_d, config):
    t = config["hp"]["mixtures"]
    return Mixture([make_g() for _ in range(t)]), Mixture([make_d() for _ in range(t)])


def setup(run):
    hp, G, D = run.hp, run.G, run.D
    run.mix = fastgan.mix.MixtureGAN(G.members, D.members, kind="nonsaturating", reg_weight=hp.mix_weight,
                                     regularizer="mean_neg_log")
    run.mix.g_weight_logits, run.mix.d_weight_logits = G.logits, D.logits  # one set of weights, owned by G and D
    run.opt_d = fastgan.optim.Adam(D.parameters(), lr=hp.lr, betas=tuple(hp.betas))
    run.opt_g = fastgan.optim.Adam(G.parameters(), lr=hp.lr, betas=tuple(hp.betas))


def train_step(run):
    mix, hp = run.mix, run.hp
    for _ in range(hp.n_critic):
        real, z = run.real(), run.z()
        with run.autocast():
            loss_d = mix.d_loss(real, z)  # every critic on the real batch and on every generator's samples
        run.update(run.opt_d, loss_d)

    with run.autocast():
        loss_g = mix.g_loss(run.z())  # critics held fixed
    run.update(run.opt_g, loss_g)
    # Every component's weight, one series each (g_weight.0, ...): the loss-curve figure draws each player's
    # weights in one panel, so a collapsing mixture shows.
    weights = {f"g_weight.{i}": w for i, w in enumerate(mix.g_weights.unbind())}
    weights.update({f"d_weight.{j}": w for j, w in enumerate(mix.d_weights.unbind())})
    return {"loss_d": loss_d, "loss_g": loss_g, "g_weight_min": mix.g_weights.min(), **weights}
