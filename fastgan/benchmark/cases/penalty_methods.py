"""Benchmark cases for issue 7: the time of a WGAN-GP critic step per penalty method, eager and with a compiled
critic, and the cost per step of lazy regularisation.

Critic: fastgan.models.DCGANCritic (DCGAN-style, LeakyReLU 0.2, width 64, no batch norm) at the sizes' resolution;
random "real" and "fake" images in [-1, 1]. Implementations (columns):

  plain                     the textbook penalty: interpolate, autograd.grad(create_graph=True), norm (the baseline)
  fastgan                   fastgan.gradient_penalty(method="double_backward"), the default (fastgan's fused ops)
  jvp                       method="jvp": one backward, one forward-mode pass, one backward
  finite_difference         method="finite_difference": one backward, two forwards, one backward
  <any>+compile             the same with torch.compile(critic) (inductor) for the scores; the penalty runs the
                            compiled critic where it can (jvp's inner gradient, finite differences' forwards)
                            and the original module for double backward / forward mode. plain+compile is the
                            textbook penalty through the compiled critic: torch.compile refuses it.

Modes (custom, like the end-to-end cases): "d_step" = a whole critic step (scores on real and fake, the penalty, one
backward, Adam); "penalty" = the penalty and its backward only; "lazy" = k critic steps with the R1 penalty as a
separate step every k (StyleGAN2's lazy regularisation): plain = that loop in plain PyTorch (autograd.grad R1 +
0 * scores), fastgan / jvp = fastgan.distributed.critic_outputs(scores=False) with fastgan.lazy; the time per call is
for k steps (`samples` = k * B), so time / k is the cost per step.

Finite differences on a LeakyReLU critic estimate a smoothed gradient (see fastgan.penalties); its time is
representative, its gradient is not exact there, so the warning is silenced here.
"""
import contextlib
import warnings

import torch

from fastgan.benchmark.registry import (Bench, _raise_recompile_limit, case, compile_disabled_reason, one_line,
                                        shape_label, sizes)

OP = "penalty_methods"
METHODS = ("double_backward", "jvp", "finite_difference")
# Column names: the default method is the "fastgan" column of the end-to-end vocabulary.
COLUMN = {"plain": "plain", "double_backward": "fastgan", "jvp": "jvp", "finite_difference": "finite_difference"}
# Images B x C x H x W; the critic is DCGAN-style at H x W with width 64 (16 for the smoke-test preset).
SIZES = {
    "small": [(8, 3, 16, 16)],
    "medium": [(64, 3, 32, 32)],
    "large": [(64, 3, 32, 32), (128, 3, 64, 64)],
}
LAZY_EVERY = (1, 4, 16)
GP_WEIGHT, R1_WEIGHT = 10.0, 5.0


def _critic(shape, device, preset):
    from fastgan.models import DCGANCritic

    width = 16 if preset == "small" else 64
    torch.manual_seed(0)
    return DCGANCritic(image_size=shape[2], channels=shape[1], width=width, act="lrelu").to(device)


def _plain_penalty(critic, real, fake, alpha):
    """The WGAN-GP penalty as the paper's reference code writes it."""
    a = alpha.view(-1, 1, 1, 1)
    points = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
    return GP_WEIGHT * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class _Setup:
    """One critic, its optimizer, fixed data, and the autocast/GradScaler context of the dtype."""

    def __init__(self, shape, device, dtype, preset):
        self.device = torch.device(device)
        self.module = _critic(shape, self.device, preset)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=1e-4, betas=(0.5, 0.9))
        gen = torch.Generator(device="cpu").manual_seed(1)
        self.real = (torch.rand(shape, generator=gen) * 2 - 1).to(self.device)
        self.fake = (torch.rand(shape, generator=gen) * 2 - 1).to(self.device)
        self.alpha = torch.rand(shape[0], generator=gen).to(self.device)
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None

    def autocast(self):
        if self.dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.dtype)
        return contextlib.nullcontext()

    def backward_and_step(self, loss, step=True):
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if step:
                self.scaler.step(self.optimizer)
                self.scaler.update()
        else:
            loss.backward()
            if step:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def penalty_fn(self, method, critic):
        import fastgan

        if method == "plain":
            return lambda: _plain_penalty(critic, self.real, self.fake, self.alpha)
        return lambda: fastgan.gradient_penalty(critic, self.real, self.fake, weight=GP_WEIGHT, alpha=self.alpha,
                                                method=method, scaler=self.scaler)

    def d_step(self, method, critic):
        penalty = self.penalty_fn(method, critic)

        def run():
            with self.autocast():
                loss = critic(self.fake).float().mean() - critic(self.real).float().mean() + penalty()
            self.backward_and_step(loss)
        return run

    def penalty_only(self, method, critic):
        penalty = self.penalty_fn(method, critic)

        def run():
            with self.autocast():
                loss = penalty()
            self.backward_and_step(loss, step=False)
        return run

    def lazy_cycle(self, every, critic, method="double_backward"):
        """`every` critic steps (non-saturating loss), the first followed by a separate R1 step of weight*every."""
        from fastgan.distributed import critic_outputs
        from fastgan.lazy import LazyRegularization

        lazy = LazyRegularization(every)
        softplus = torch.nn.functional.softplus

        def run():
            for step in range(every):
                with self.autocast():
                    out = critic_outputs(critic, self.real, self.fake)
                    loss = softplus(-out.real.float()).mean() + softplus(out.fake.float()).mean()
                self.backward_and_step(loss)
                if lazy.due(step):
                    with self.autocast():
                        out = critic_outputs(critic, self.real, penalty="r1", scores=False,
                                             weight=lazy.weight(R1_WEIGHT), method=method, scaler=self.scaler)
                    self.backward_and_step(out.penalty)
        return run

    def plain_lazy_cycle(self, every, critic):
        """The same loop as StyleGAN2's PyTorch ports write it."""
        softplus = torch.nn.functional.softplus

        def run():
            for step in range(every):
                with self.autocast():
                    loss = softplus(-critic(self.real).float()).mean() + softplus(critic(self.fake).float()).mean()
                self.backward_and_step(loss)
                if step % every == 0:
                    points = self.real.detach().requires_grad_(True)
                    with self.autocast():
                        scores = critic(points)
                    (grad,) = torch.autograd.grad(scores.float().sum(), points, create_graph=True)
                    penalty = R1_WEIGHT * every * grad.flatten(1).pow(2).sum(1).mean() + 0 * scores.float().sum()
                    self.backward_and_step(penalty)
        return run


def _quiet(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return run


def _try(fn):
    """fn after one warm-up call, or (None, reason) if it fails."""
    try:
        fn()
        return fn, None
    except Exception as error:  # noqa: BLE001 - the reason goes into the table
        return None, one_line(error)


def _compiled_critic(module):
    reason = compile_disabled_reason()
    if reason:
        return None, reason
    _raise_recompile_limit()
    return torch.compile(module, dynamic=False), None


@case(OP)
def penalty_methods_cases(device, dtype, preset, modes):
    for shape in sizes(preset, SIZES):
        setup = _Setup(shape, device, dtype, preset)
        compiled, compile_reason = _compiled_critic(setup.module)
        label = shape_label(shape)
        batch = shape[0]
        for mode, make in (("d_step", setup.d_step), ("penalty", setup.penalty_only)):
            run, skipped = {}, {}
            for method in ("plain",) + METHODS:
                column = COLUMN[method]
                run[column] = _quiet(make(method, setup.module))
                _add_compiled(run, skipped, f"{column}+compile", compiled, compile_reason,
                              lambda: _quiet(make(method, compiled)))
            yield Bench(op=OP, label=label, mode=mode, run=run, skipped=skipped, baseline="plain", samples=batch,
                        note='WGAN-GP, DCGAN critic; fastgan = method="double_backward"')
        for every in LAZY_EVERY:
            run, skipped = {"plain": _quiet(setup.plain_lazy_cycle(every, setup.module))}, {}
            _add_compiled(run, skipped, "plain+compile", compiled, compile_reason,
                          lambda: _quiet(setup.plain_lazy_cycle(every, compiled)))
            for method in ("double_backward", "jvp"):
                column = COLUMN[method]
                run[column] = _quiet(setup.lazy_cycle(every, setup.module, method))
                _add_compiled(run, skipped, f"{column}+compile", compiled, compile_reason,
                              lambda: _quiet(setup.lazy_cycle(every, compiled, method)))
            yield Bench(op=OP, label=f"{label} reg_every={every}", mode="lazy", run=run, skipped=skipped,
                        baseline="plain", samples=every * batch, note=f"R1, {every} critic steps per call")


def _add_compiled(run, skipped, name, compiled, compile_reason, make):
    if compiled is None:
        skipped[name] = compile_reason
        return
    fn, reason = _try(make())
    if fn is None:
        skipped[name] = f"torch.compile: {reason}"
    else:
        run[name] = fn
