"""Gradient penalties under DistributedDataParallel: the critic's scores and its penalty computed so that DDP's
reducer sees every parameter exactly once per backward.

Why a helper. DDP averages gradients with hooks that fire when a parameter's gradient is accumulated in a backward
pass, and supports neither `backward(create_graph=True)` nor double backward through its reducer (pytorch issues
#47562, #63812, #63929). What does work, as the DDP maintainers advise, is to take the penalty's inner gradient *out of
place* (torch.autograd.grad with respect to the inputs only: no parameter's .grad is touched and no hook fires, so
each process keeps its own input gradients, which is what a per-sample penalty needs) and then run ONE ordinary
backward of the whole loss: autograd sums every contribution to a parameter (the scores, the penalty's double-
backward or forward-mode graph) before accumulating it once, so each hook fires once and the all-reduce averages the
complete gradient. Each process's loss is a mean over its share of the global batch, so the average over processes is
the gradient of the same loss on the global batch.

Two traps this helper avoids:
- A penalty alone does not reach every parameter (the output bias never affects an input gradient). In a step whose
  loss is only the penalty (lazy regularisation's separate R1 step, say) DDP would then wait for hooks that never
  fire (an error at the next iteration with find_unused_parameters=False). The helper runs that step's critic
  forward through DDP and adds 0 * (one element of every parameter) to the penalty: the value and the gradients are
  unchanged, every parameter is reached (a zero gradient where the penalty does not reach it), as StyleGAN2's PyTorch
  ports do with 0 * D(x). It does so without DDP too, so that one process and DDP give Adam the same zero gradients.
- The penalty's own passes (the double-backward forward, the jvp forward, the finite-difference forwards) run on the
  module inside DDP, not through DDP's forward, so DDP never sees an extra forward whose outputs are not in the loss,
  and a compiled module inside DDP works with every method (double backward and forward mode use the uncompiled
  module, see fastgan.penalties).

Usage, one critic step on each process (real and fake are this process's share of the global batch):

    critic = DistributedDataParallel(model)
    out = fastgan.distributed.critic_outputs(critic, real, fake, penalty="wgan-gp", method="jvp")
    loss = out.fake.mean() - out.real.mean() + out.penalty
    loss.backward()                      # the one backward: DDP averages every gradient once
    optimizer.step()

The same call works on a plain (non-DDP) critic, where it is simply the textbook critic step.
"""
from typing import NamedTuple, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from fastgan import penalties
from fastgan.ops._common import check_choice, check_tensor

PENALTIES = ("wgan-gp", "wgan-lp", "r1", "r2", "dragan")
# The defaults of fastgan.gradient_penalty, r1_penalty, r2_penalty and dragan_penalty.
DEFAULT_WEIGHTS = {"wgan-gp": 10.0, "wgan-lp": 10.0, "r1": 5.0, "r2": 5.0, "dragan": 10.0}


class CriticOutputs(NamedTuple):
    """The critic's scores on real and fake ([B], None where not asked for) and the penalty (scalar, or None)."""
    real: Optional[torch.Tensor]
    fake: Optional[torch.Tensor]
    penalty: Optional[torch.Tensor]


def unwrap(critic):
    """The module inside a DistributedDataParallel wrapper (the critic itself otherwise). Compiled modules stay
    compiled: fastgan.penalties takes the uncompiled one where it must."""
    return critic.module if isinstance(critic, DistributedDataParallel) else critic


def critic_outputs(critic, real=None, fake=None, penalty=None, weight=None, *, scores=True,
                   method="double_backward", scaler=None, step=None, alpha=None, target=1.0, c=0.5,
                   critic_kwargs=None):
    """Scores and penalty for one critic step, safe under DDP (see the module docstring); call backward once on a
    loss built from them.

    Args:
        critic: the critic: a DistributedDataParallel, or a plain (possibly compiled) module.
        real, fake: this process's [B, *] samples (detached here: the penalty trains the critic only).
        penalty: None, "wgan-gp" (two-sided, at interpolates), "wgan-lp" (one-sided, at interpolates), "r1" (at
            real), "r2" (at fake) or "dragan" (around real).
        weight: the penalty weight (lambda, or gamma/2 for R1/R2); default as the fastgan penalty functions.
            Lazy regularisation passes weight * k here (fastgan.lazy).
        scores: False for a penalty-only step (lazy regularisation): no scores are returned, the penalty's points
            go through DDP's forward once and every parameter gets a gradient (zero where the penalty has none).
        method, scaler, step: as in fastgan.gradient_penalty.
        alpha: wgan-gp/wgan-lp interpolation weights [B] (default U[0, 1)). target: the norm for wgan-gp/lp.
        c: DRAGAN's perturbation size. critic_kwargs: passed to every critic call (conditional critics).
    Returns:
        CriticOutputs(real, fake, penalty).
    """
    if penalty is not None:
        check_choice(penalty, "penalty", PENALTIES)
    if not isinstance(scores, bool):
        raise TypeError(f"scores must be True or False, got {type(scores).__name__}")
    if real is not None:
        check_tensor(real, "real")
    if fake is not None:
        check_tensor(fake, "fake")
    needs = {"wgan-gp": ("real", "fake"), "wgan-lp": ("real", "fake"), "r1": ("real",), "r2": ("fake",),
             "dragan": ("real",)}.get(penalty, ())
    given = {"real": real, "fake": fake}
    for name in needs:
        if given[name] is None:
            raise ValueError(f"penalty={penalty!r} needs {name}")
    if not scores and penalty is None:
        raise ValueError("scores=False asks for a penalty-only step, so penalty must be given")
    if scores and real is None and fake is None:
        raise ValueError("real or fake is needed to compute scores")
    if weight is None:
        weight = DEFAULT_WEIGHTS.get(penalty, 0.0)
    kwargs = critic_kwargs or {}
    module = unwrap(critic)
    options = dict(weight=weight, critic_kwargs=critic_kwargs, scaler=scaler, method=method, step=step)

    real = None if real is None else real.detach()
    fake = None if fake is None else fake.detach()
    # R1/R2 reuse the forward on the samples they penalise (its input gradient needs them to require grad).
    reuse = {"r1": "real", "r2": "fake"}.get(penalty)
    if reuse == "real":
        real = real.requires_grad_(True)
    elif reuse == "fake":
        fake = fake.requires_grad_(True)

    if not scores:
        points = _points(penalty, real, fake, alpha, c)
        outputs = critic(points, **kwargs)  # through DDP: it prepares the reducer for this step's backward
        value = penalties.penalty_at(module, points, target=target, mode=_mode(penalty), outputs=outputs,
                                     retain_graph=False, **options)  # the outputs serve the penalty alone
        return CriticOutputs(None, None, value + _zero_on_every_parameter(module).to(value.dtype))

    scores_real = None if real is None else critic(real, **kwargs)
    scores_fake = None if fake is None else critic(fake, **kwargs)
    if penalty is None:
        return CriticOutputs(scores_real, scores_fake, None)
    if reuse is not None:
        points, outputs = (real, scores_real) if reuse == "real" else (fake, scores_fake)
    else:
        points, outputs = _points(penalty, real, fake, alpha, c), None
    value = penalties.penalty_at(module, points, target=target, mode=_mode(penalty), outputs=outputs,
                                 retain_graph=True, **options)
    return CriticOutputs(scores_real, scores_fake, value)


def _zero_on_every_parameter(module):
    """0, as a tensor whose backward gives every trainable parameter a zero gradient (one element read per
    parameter: no pass through the critic). Added to a penalty-only loss, it lets each DDP hook fire once, and
    makes a single process behave the same (zero gradients rather than none, which Adam treats differently)."""
    total = None
    for parameter in module.parameters():
        if parameter.requires_grad:
            term = parameter.reshape(-1)[:1].sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total * 0


def _mode(penalty):
    return {"wgan-lp": "one_sided", "r1": "squared", "r2": "squared"}.get(penalty, "two_sided")


def _points(penalty, real, fake, alpha, c):
    if penalty in ("wgan-gp", "wgan-lp"):
        penalties._check_pair(real, fake)
        return penalties._interpolates(real, fake, alpha)
    if penalty == "dragan":
        return penalties._dragan_points(real, c)
    samples = real if penalty == "r1" else fake
    return samples.detach().requires_grad_(True)
