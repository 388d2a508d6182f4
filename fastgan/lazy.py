"""Lazy regularisation (Karras et al. 2020, StyleGAN2 section 3.1): apply a penalty every k critic steps instead of
every step, with its weight multiplied by k so that its average strength is unchanged, and correct the optimizer for
the changed number of steps.

The correction. StyleGAN2 takes the regularisation as a separate optimizer step every k minibatches, so k minibatches
cost k + 1 optimizer steps. To keep Adam's dynamics per minibatch unchanged it scales the learning rate and the
moment decay rates by c = k / (k + 1):

    lr' = lr * c,    beta' = beta ** c   (for each of Adam's betas)

k = 1 is the ordinary penalty in every loss: no lazy step, no correction (c = 1).

    lazy = LazyRegularization(every=16)
    optimizer = torch.optim.Adam(critic.parameters(), **lazy.adam_hyperparameters(lr=2e-3, betas=(0.0, 0.99)))
    for step in range(steps):
        ...main critic step...
        if lazy.due(step):
            out = fastgan.distributed.critic_outputs(critic, real, penalty="r1", scores=False,
                                                     weight=lazy.weight(5.0))
            out.penalty.backward(); optimizer.step(); optimizer.zero_grad()
"""
import numbers


def _check_every(every):
    if isinstance(every, bool) or not isinstance(every, numbers.Integral):
        raise TypeError(f"every must be an int >= 1, got {type(every).__name__}")
    if every < 1:
        raise ValueError(f"every must be an int >= 1, got {every}")
    return int(every)


def lazy_ratio(every):
    """c = k / (k + 1) for k = every > 1; 1 for every = 1 (no lazy regularisation)."""
    every = _check_every(every)
    return 1.0 if every == 1 else every / (every + 1.0)


def lazy_weight(weight, every):
    """The penalty weight to use on a regularisation step: weight * every."""
    _check_every(every)
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a number, got {type(weight).__name__}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    return weight * every


def is_regularization_step(step, every):
    """True on the steps that carry the penalty: 0, k, 2k, ... (step counts critic steps from 0)."""
    every = _check_every(every)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return step % every == 0


def adam_hyperparameters(lr, betas, every):
    """{"lr": lr * c, "betas": (beta1 ** c, beta2 ** c)} for torch.optim.Adam/AdamW (c = lazy_ratio(every))."""
    c = lazy_ratio(every)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or lr < 0:
        raise ValueError(f"lr must be a number >= 0, got {lr!r}")
    betas = tuple(betas)
    if len(betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return {"lr": lr * c, "betas": tuple(b ** c for b in betas)}


def correct_optimizer(optimizer, every):
    """Apply the StyleGAN2 correction in place to every param group (lr, and betas where the optimizer has them).
    Applying it twice would compound it, so a second call raises; returns the ratio c."""
    c = lazy_ratio(every)
    for group in optimizer.param_groups:
        if "fastgan_lazy_ratio" in group:
            raise RuntimeError("correct_optimizer was already applied to this optimizer "
                               f"(ratio {group['fastgan_lazy_ratio']})")
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * c
        if "betas" in group:
            group["betas"] = tuple(b ** c for b in group["betas"])
        group["fastgan_lazy_ratio"] = c
    return c


class LazyRegularization:
    """The lazy-regularisation schedule for a penalty applied every `every` critic steps (see the module docstring)."""

    def __init__(self, every=1):
        self.every = _check_every(every)

    @property
    def ratio(self):
        return lazy_ratio(self.every)

    def due(self, step):
        """Whether critic step `step` (from 0) carries the penalty."""
        return is_regularization_step(step, self.every)

    def weight(self, weight):
        """The weight for a regularisation step: weight * every."""
        return lazy_weight(weight, self.every)

    def adam_hyperparameters(self, lr, betas):
        return adam_hyperparameters(lr, betas, self.every)

    def correct_optimizer(self, optimizer):
        return correct_optimizer(optimizer, self.every)

    def __repr__(self):
        return f"LazyRegularization(every={self.every})"
