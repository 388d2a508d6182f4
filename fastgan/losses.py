"""GAN losses on discriminator logits: one fused kernel per loss, forward and gradient in one pass over the logits.

    import fastgan
    loss_d = fastgan.losses.d_loss("hinge", critic(real), critic(fake.detach()))
    loss_g = fastgan.losses.g_loss("hinge", critic(fake))

    criterion = fastgan.losses.GANLoss("relativistic")
    loss_d = criterion.d(real_logits, fake_logits)
    loss_g = criterion.g(fake_logits, real_logits)

Kinds (formulas in fastgan/ops/gan_loss.py, each numerically stable on raw logits: finite values and gradients for
logits of +-1e4 in fp32):

    nonsaturating   D: softplus(-r) + softplus(f)       G: softplus(-f)        ("logistic"; the default)
    minimax         D: softplus(-r) + softplus(f)       G: -softplus(f)
    hinge           D: relu(1 - r) + relu(1 + f)        G: -f
    wasserstein     D: f - r                            G: -f
    lsgan           D: (r - b)^2/2 + (f - a)^2/2        G: (f - c)^2/2         (a=0, b=1, c=1 by default)
    relativistic    D: softplus(f - r) per pair         G: softplus(r - f)     (RpGAN: needs real logits for G too)

reduction: "mean" (default; real and fake terms averaged separately), "sum", or "none" (per-sample losses).
Every loss is twice differentiable (and more): its backward is itself differentiable.
"""
import torch

from fastgan.ops._common import check_choice
from fastgan.ops.gan_loss import KINDS as _KIND_CODES
from fastgan.ops.gan_loss import REDUCTIONS as _REDUCTIONS
from fastgan.ops.gan_loss import gan_loss

KINDS = tuple(_KIND_CODES)
REDUCTIONS = tuple(_REDUCTIONS)
ALIASES = {"logistic": "nonsaturating"}

__all__ = ["KINDS", "REDUCTIONS", "GANLoss", "d_loss", "g_loss"]


def _kind(kind):
    if isinstance(kind, str):
        kind = ALIASES.get(kind, kind)
    return check_choice(kind, "kind", KINDS)


def d_loss(kind, real_logits, fake_logits, reduction="mean", a=0.0, b=1.0, c=1.0):
    """The discriminator's loss of `kind` on its logits for real and generated samples.

    Args:
        kind: one of KINDS ("logistic" is an alias of "nonsaturating").
        real_logits, fake_logits: the discriminator's raw outputs (any shape; for "relativistic" and
            reduction="none" they must have the same shape).
        reduction: "mean", "sum" or "none".
        a, b: lsgan targets for fake and real samples.
    Returns:
        A 0-dim tensor (the fake logits' shape for "none"), float32 (float64 for float64 logits).
    """
    return gan_loss(real_logits, fake_logits, _kind(kind), "d", reduction, a, b, c)


def g_loss(kind, fake_logits, real_logits=None, reduction="mean", a=0.0, b=1.0, c=1.0):
    """The generator's loss of `kind` on the discriminator's logits for generated samples.

    Args:
        kind: one of KINDS.
        fake_logits: the discriminator's raw outputs on generated samples.
        real_logits: its outputs on real samples; needed only by "relativistic" (ignored otherwise).
        reduction: "mean", "sum" or "none".
        c: lsgan target of the generator.
    """
    return gan_loss(real_logits, fake_logits, _kind(kind), "g", reduction, a, b, c)


class GANLoss(torch.nn.Module):
    """A GAN loss as a module: ``.d(real_logits, fake_logits)`` and ``.g(fake_logits, real_logits=None)``.

    Calling the module computes ``.d`` (``player="d"``) or ``.g`` (``player="g"``) with the same arguments.
    """

    def __init__(self, kind="nonsaturating", reduction="mean", a=0.0, b=1.0, c=1.0):
        super().__init__()
        self.kind = _kind(kind)
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        for value, name in ((a, "a"), (b, "b"), (c, "c")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        self.a, self.b, self.c = float(a), float(b), float(c)

    def d(self, real_logits, fake_logits):
        """The discriminator's loss."""
        return gan_loss(real_logits, fake_logits, self.kind, "d", self.reduction, self.a, self.b, self.c)

    def g(self, fake_logits, real_logits=None):
        """The generator's loss (real_logits only for kind="relativistic")."""
        return gan_loss(real_logits, fake_logits, self.kind, "g", self.reduction, self.a, self.b, self.c)

    def forward(self, *args, player="d"):
        check_choice(player, "player", ("d", "g"))
        return self.d(*args) if player == "d" else self.g(*args)

    def extra_repr(self):
        extra = f", a={self.a}, b={self.b}, c={self.c}" if self.kind == "lsgan" else ""
        return f"kind={self.kind!r}, reduction={self.reduction!r}{extra}"
