"""Benchmark cases for fastgan.ops.gan_loss (issue 5): the discriminator's and the generator's losses on logits.

Sizes are numbers of logits per side: 64 (a batch of single logits, the usual case: launch-bound), 4096, and patch
logits of a 64 x 30 x 30 PatchGAN. Kinds: nonsaturating (the default: softplus terms) and hinge. Implementations:
eager (the losses as a user writes them in PyTorch: F.softplus / F.relu terms and means), compile (torch.compile
of that), and fastgan's fused kernel (forward and gradient in one pass; the backward is one scaling pass).
Modes: fwd (both losses without gradient), fwd_bwd (both losses and the logits' gradients), full (and the
backward of that backward, as a loss inside a gradient penalty would need; torch.compile refuses it).
Bytes: each logit read once (fwd); fwd_bwd adds the gradient written and read back (fp32) and the logits'
gradients written. FLOPs: ~20 per logit and loss.
"""
import torch
import torch.nn.functional as F

from fastgan.benchmark.registry import Bench, add_compiled, backend_runs, case, shape_label, sizes
from fastgan.ops import gan_loss

OP = "gan_loss"
SIZES = {
    "small": [(64,)],
    "medium": [(64,), (4096,), (64, 30, 30)],
    "large": [(64,), (4096,), (64, 30, 30), (256, 62, 62)],
}
KINDS = ("nonsaturating", "hinge")


def plain(real, fake, kind, player):
    """The textbook losses in stable PyTorch ops (what a user writes without fastgan)."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean() if player == "d" else -fake.mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean() if player == "d" else F.softplus(-fake).mean()


def both_losses(op, kind):
    def run(real, fake):
        return op(real, fake, kind, "d") + op(real, fake, kind, "g")
    return run


def driver(fn, real, fake, mode):
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(real, fake)
    elif mode == "fwd_bwd":
        def run():
            return torch.autograd.grad(fn(real, fake), (real, fake))
    else:
        def run():
            grads = torch.autograd.grad(fn(real, fake), (real, fake), create_graph=True)
            return torch.autograd.grad(sum((g * g).sum() for g in grads), (real, fake))
    return run


@case(OP)
def gan_loss_cases(device, dtype, preset, modes):
    for shape in sizes(preset, SIZES):
        gen = torch.Generator().manual_seed(0)
        n, item = int(torch.Size(shape).numel()), torch.empty((), dtype=dtype).element_size()
        for kind in KINDS:
            for mode in modes:
                grad = mode != "fwd"
                real = (torch.randn(shape, generator=gen) * 2).to(device, dtype).requires_grad_(grad)
                fake = (torch.randn(shape, generator=gen) * 2).to(device, dtype).requires_grad_(grad)
                runs, skipped = backend_runs(OP, device, driver(both_losses(gan_loss, kind), real, fake, mode))
                runs["eager"] = driver(both_losses(plain, kind), real, fake, mode)
                add_compiled(runs, skipped, both_losses(plain, kind),
                             lambda f, m=mode, r=real, x=fake: driver(f, r, x, m)(), double_backward=mode == "full")
                passes = {"fwd": 1, "fwd_bwd": 3, "full": 6}[mode]
                nbytes = 2 * n * item * passes
                yield Bench(op=OP, label=f"{kind} {shape_label(shape)}", mode=mode, run=runs, bytes=nbytes,
                            flops=40 * n * passes, skipped=skipped, size=2 * n)
