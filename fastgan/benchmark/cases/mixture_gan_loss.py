"""Benchmark cases for issue 5's MIX+GAN: fastgan.ops.mixture_gan_loss, and MixtureGAN's D and G steps batched vs
looped.

mixture_gan_loss, sizes T_g x T_d x B (label "5x5x64" is T = 5, B = 64, the issue's target size):
  eager     the vectorised eager version: one broadcasted expression over the T_g x T_d pairs (the reference;
            what a competent user writes), the baseline
  loop      the naive double loop over (i, j) with the plain losses (how MIX+GAN's reference code computes it)
  compile   torch.compile of the vectorised version
  cpp/cuda/triton  fastgan's fused kernels (one per direction)
Both losses (D and G) are computed together and their gradients for the logits and both weight vectors taken at
once (fwd_bwd); fwd computes the two losses without gradient.
Bytes: the logits read once, 4 + 2 weights per pair; fwd_bwd also writes the logits' gradients and reads/writes the
saved Jacobian (2 x the logits in fp32). FLOPs: ~30 per pair of logits (exp, log1p, both players' terms).

mixture_gan_step, sizes T x B x C x H (T DCGAN-style components at H x H, width 32, 8 for H <= 16):
  looped    MixtureGAN(batched=False): a Python loop over the components (the baseline)
  batched   MixtureGAN: the components run as one grouped model (fastgan.nn.grouped)
  vmap      MixtureGAN(batched="vmap"): the components stacked and run under torch.vmap
Modes d_step (the discriminators' loss and backward) and g_step (the generators').
"""
import torch

import torch.nn.functional as F

from fastgan import losses
from fastgan.benchmark.registry import Bench, add_compiled, backend_runs, case, numel, shape_label, sizes
from fastgan.ops import mixture_gan_loss
from fastgan.ops._common import acc_dtype

OP = "mixture_gan_loss"
STEP_OP = "mixture_gan_step"
SIZES = {
    "small": [(5, 5, 64)],
    "medium": [(5, 5, 64), (8, 8, 256)],
    "large": [(5, 5, 64), (8, 8, 256), (10, 10, 1024)],
}
STEP_SIZES = {
    "small": [(3, 8, 1, 8)],  # a smoke-test size
    "medium": [(5, 32, 3, 32)],
    "large": [(5, 64, 3, 32), (5, 128, 3, 32)],
}
REG = 0.1


def vectorised(real, fake, g_logits, d_logits):
    """MIX+GAN's losses in one broadcasted expression (nonsaturating, mean(-log w) regulariser)."""
    p, q = torch.softmax(g_logits, 0), torch.softmax(d_logits, 0)
    phi_d = (F.softplus(-real).unsqueeze(0) + F.softplus(fake)).mean(-1)
    phi_g = F.softplus(-fake).mean(-1)
    w = p[:, None] * q[None, :]
    d_loss = (w * phi_d).sum() - REG * torch.log_softmax(d_logits, 0).mean()
    g_loss = (w * phi_g).sum() - REG * torch.log_softmax(g_logits, 0).mean()
    return d_loss, g_loss


def naive_loop(real, fake, g_logits, d_logits):
    """The reference code's double loop over (generator i, discriminator j), plain PyTorch losses."""
    p, q = torch.softmax(g_logits, 0), torch.softmax(d_logits, 0)
    d_loss = g_loss = 0.0
    for i in range(fake.shape[0]):
        for j in range(fake.shape[1]):
            w = p[i] * q[j]
            d_loss = d_loss + w * (F.softplus(-real[j]).mean() + F.softplus(fake[i, j]).mean())
            g_loss = g_loss + w * F.softplus(-fake[i, j]).mean()
    return (d_loss - REG * torch.log(q).mean(), g_loss - REG * torch.log(p).mean())


def fused(real, fake, g_logits, d_logits):
    return mixture_gan_loss(real, fake, g_logits, d_logits, "nonsaturating", "mean_neg_log", REG)


def make_inputs(shape, device, dtype, requires_grad):
    tg, td, batch = shape
    gen = torch.Generator().manual_seed(0)
    acc = acc_dtype(dtype)
    tensors = [torch.randn(td, batch, generator=gen).to(device, dtype),
               torch.randn(tg, td, batch, generator=gen).to(device, dtype),
               torch.randn(tg, generator=gen).to(device, acc), torch.randn(td, generator=gen).to(device, acc)]
    return [t.requires_grad_(requires_grad) for t in tensors]


def driver(fn, inputs, mode):
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(*inputs)
    else:
        def run():
            d_loss, g_loss = fn(*inputs)
            return torch.autograd.grad((d_loss, g_loss), inputs)
    return run


def _mixture_sizes(preset):
    # Explicit --sizes lists hold other ops' shapes too: keep those that read as T_g x T_d x B.
    return [s for s in sizes(preset, SIZES) if s[0] <= 64 and s[1] <= 64]


def _step_sizes(preset):
    # ... and as T x B x C x H: a few components of 1- or 3-channel square images a DCGAN can make.
    return [s for s in sizes(preset, STEP_SIZES)
            if s[0] <= 16 and s[2] in (1, 3) and s[3] in (8, 16, 32, 64, 128)]


@case(OP)
def mixture_gan_loss_cases(device, dtype, preset, modes):
    for shape in _mixture_sizes(preset):
        tg, td, batch = shape
        pairs, item = tg * td * batch, torch.empty((), dtype=dtype).element_size()
        for mode in modes:
            if mode == "full":
                continue  # the loss's second order is rarely needed; its backward's backward is PyTorch ops
            inputs = make_inputs(shape, device, dtype, mode != "fwd")
            runs, skipped = backend_runs(OP, device, driver(fused, inputs, mode))
            runs["eager"] = driver(vectorised, inputs, mode)
            runs["loop"] = driver(naive_loop, inputs, mode)
            add_compiled(runs, skipped, vectorised, lambda f, i=inputs, m=mode: driver(f, i, m)())
            logits = (pairs + td * batch) * item
            nbytes = logits if mode == "fwd" else 2 * logits + 4 * 4 * (pairs + td * batch)
            yield Bench(op=OP, label=shape_label(shape), mode=mode, run=runs, bytes=nbytes,
                        flops=30 * pairs * (1 if mode == "fwd" else 2), skipped=skipped, size=numel(shape))


def _components(shape, device, dtype):
    from fastgan.models import DCGANCritic, DCGANGenerator

    t, batch, channels, image = shape
    width = 8 if image <= 16 else 32
    torch.manual_seed(0)
    gens = [DCGANGenerator(z_dim=64, image_size=image, channels=channels, width=width) for _ in range(t)]
    crits = [DCGANCritic(image_size=image, channels=channels, width=width) for _ in range(t)]
    return [m.to(device, dtype) for m in gens], [m.to(device, dtype) for m in crits]


STEP_VARIANTS = {"looped": False, "batched": None, "vmap": "vmap", "batched_cl": None}


def step_runs(shape, device, dtype, mode, variants=("looped", "batched", "vmap"), channels_last=False):
    """{variant: callable doing one D or G step (loss and backward) of a MixtureGAN} for variants of
    STEP_VARIANTS (looped, batched = grouped, vmap, and batched_cl: grouped with channels_last convolutions forced
    on). channels_last: the models and the real batch in that layout."""
    from fastgan.mix import MixtureGAN

    t, batch, channels, image = shape
    gens, crits = _components(shape, device, dtype)
    real = torch.rand(batch, channels, image, image, device=device, dtype=dtype) * 2 - 1
    if channels_last:
        gens = [g.to(memory_format=torch.channels_last) for g in gens]
        crits = [c.to(memory_format=torch.channels_last) for c in crits]
        real = real.contiguous(memory_format=torch.channels_last)
    z = torch.randn(batch, 64, device=device, dtype=dtype)
    runs = {}
    for name in variants:
        layout = True if name == "batched_cl" else None
        mix = MixtureGAN(gens, crits, batched=STEP_VARIANTS[name], channels_last=layout).to(device)

        def run(mix=mix):
            mix.zero_grad(set_to_none=True)
            loss = mix.d_loss(real, z) if mode == "d_step" else mix.g_loss(z)
            loss.backward()
            return loss
        runs[name] = run
    return runs


@case(STEP_OP)
def mixture_gan_step_cases(device, dtype, preset, modes):
    for shape in _step_sizes(preset):
        for mode in ("d_step", "g_step"):
            yield Bench(op=STEP_OP, label=shape_label(shape), mode=mode, run=step_runs(shape, device, dtype, mode),
                        baseline="looped", size=shape[1])
