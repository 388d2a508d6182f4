"""MIX+GAN (Arora et al. 2017, "Generalization and Equilibrium in GANs"): a mixture of T_g generators against a
mixture of T_d discriminators with learnable softmax weights, trained on the weighted loss over all T_g x T_d pairs
(fastgan.ops.mixture_gan_loss: one fused kernel per direction).

    mix = fastgan.mix.MixtureGAN([DCGANGenerator() for _ in range(5)], [DCGANCritic() for _ in range(5)])
    opt_d = torch.optim.Adam(mix.discriminator_parameters(), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(mix.generator_parameters(), 2e-4, betas=(0.5, 0.999))
    for real in loader:
        z = torch.randn(len(real), 128)
        opt_d.zero_grad(); mix.d_loss(real, z).backward(); opt_d.step()
        opt_g.zero_grad(); mix.g_loss(z).backward(); opt_g.step()
    images = mix.sample(64)                       # each from a generator drawn with probability w_G
    print(mix.g_weights, mix.d_weights)

Batched execution. When the components of a player share an architecture (same class, same printed structure,
same parameter and buffer shapes, same train/eval flags), they run as one batched model, so the T generators make
their samples in one call and the T discriminators score all T_g x B samples (and the real batch) in one call.
``MixtureGAN.execution`` says how each player runs:
- "grouped" (nn.Sequential models of common layers, fastgan.nn.grouped.GroupedSequential): one model whose
  activations hold all T components side by side as channels; each convolution is one grouped convolution, each
  linear layer one batched matmul, a convolution followed by its activation one convolution plus one fused
  bias_act, and on CPU the convolutions run channels_last (where oneDNN's grouped convolutions run faster). When
  no layer computes batch statistics, the fakes and the real batch share one discriminator call.
- "vmap" (any other shared architecture): the parameters are stacked and the first component's forward runs under
  ``torch.vmap`` with ``torch.func.functional_call`` (convolutions become grouped convolutions plus layout copies).
  Random layers (dropout) draw independent randomness per component, so they do not reproduce the loop's draws.
- "loop": components that differ, or ``batched=False``; same results. ``batched=True`` raises if batching is
  impossible; ``batched="vmap"`` uses vmap even where the grouped model applies.
Parameters are stacked with ``torch.stack`` on every call rather than once with ``torch.func.stack_module_state``:
that function returns detached copies, which would leave the components' own parameters without gradients;
stacking per call costs one parameter copy and keeps each component the owner of its parameters (optimisers,
checkpoints and ``.grad`` work as without batching). Batch-norm running statistics updated in the batched call are
copied back into each component.

Where batching pays. On a GPU it replaces T small launches per layer by one (the steps of small GANs are bound by
launch and host time). On a CPU the convolutions cost the same arithmetic batched or not, and they dominate at
32x32: the grouped model gains from fewer, larger calls, the fused activations and the channels_last layout, 1.12x
(D step) and 1.13x (G step) over the loop in one run of bench/bench_mixgan.py (5 DCGANs at 32x32, width 32,
B = 64, fp32, 2 Xeon cores), where a loop over channels_last copies of the models was faster than either.

Gradients. ``d_loss`` scores detached samples and holds the generator weights fixed: it gives gradients to the
discriminators and ``d_weight_logits`` only. ``g_loss`` runs the discriminators with detached parameters and holds
their weights fixed: it gives gradients to the generators and ``g_weight_logits`` only (and skips the work of
computing discriminator weight gradients nobody uses).
"""
import torch
from torch import nn
from torch.func import functional_call

from fastgan.losses import _kind
from fastgan.nn.grouped import GroupedSequential, GroupingUnsupported
from fastgan.ops.mixture_gan_loss import _config, mixture_gan_loss

__all__ = ["MixtureGAN", "same_architecture"]


def _signature(module):
    return (type(module), repr(module),
            tuple((name, tuple(p.shape), p.dtype, p.device) for name, p in module.named_parameters()),
            tuple((name, tuple(b.shape), b.dtype, b.device) for name, b in module.named_buffers()))


def same_architecture(modules):
    """True when every module has the first one's class, printed structure, parameter and buffer shapes, dtypes
    and devices, so that the first one's forward can run any of them with its parameters swapped in."""
    modules = list(modules)
    first = _signature(modules[0])
    return all(_signature(m) == first for m in modules[1:])


def _training_flags(submodules):
    return [m.training for m in submodules]


class _Player:
    """The components of one player and how to call them all: grouped, vmap-batched or in a loop."""

    def __init__(self, modules, batched, name, channels_last=None):
        self.modules = modules
        self.homogeneous = len(modules) > 1 and same_architecture(modules)
        if batched in (True, "vmap") and not self.homogeneous and len(modules) > 1:
            raise ValueError(f"batched={batched!r} but the {name} do not share an architecture (class, structure, "
                             "parameter shapes): use batched=None or False to run them in a loop")
        self.batched = self.homogeneous and batched is not False
        groupable = self.batched and batched != "vmap" and GroupedSequential.supports(modules)
        self.grouped = GroupedSequential(modules, channels_last) if groupable else None
        # Every component's modules, listed once: train/eval flags are compared on each call (a module tree walk
        # per call costs more host time than the grouped layers themselves at small sizes).
        self.submodules = [list(m.modules()) for m in modules]
        self.param_names = [n for n, _ in modules[0].named_parameters()]
        self.buffer_names = [n for n, _ in modules[0].named_buffers()]

    def can_batch(self):
        if not self.batched:
            return False
        flags = _training_flags(self.submodules[0])
        return all(_training_flags(subs) == flags for subs in self.submodules[1:])

    @property
    def mode(self):
        """"grouped", "vmap" or "loop": how the next call runs."""
        if not self.can_batch():
            return "loop"
        return "grouped" if self.grouped is not None else "vmap"

    def one_call_for_all_batches(self):
        """Whether separate input batches may share one call (no layer computes batch statistics)."""
        return self.mode == "grouped" and not self.grouped.uses_batch_statistics

    def stacked(self, frozen):
        """Stacked parameters (gradients flow back into each component unless frozen) and buffers."""
        per_module = [dict(m.named_parameters()) for m in self.modules]
        params = {}
        for name in self.param_names:
            tensors = [p[name] for p in per_module]
            params[name] = torch.stack([t.detach() for t in tensors] if frozen else tensors)
        buffers = {}
        if self.buffer_names:
            per_module = [dict(m.named_buffers()) for m in self.modules]
            buffers = {name: torch.stack([b[name] for b in per_module]) for name in self.buffer_names}
        return params, buffers

    def write_back(self, buffers):
        """Copies buffers the batched call updated (batch-norm running statistics) into the components."""
        if not buffers:
            return
        with torch.no_grad():
            for i, module in enumerate(self.modules):
                own = dict(module.named_buffers())
                for name, stacked in buffers.items():
                    own[name].copy_(stacked[i])

    def call(self, x, shared, frozen=False):
        """Outputs of every component stacked on dim 0. x: one input for all (shared) or [T, ...] per component."""
        mode = self.mode
        if mode == "grouped":
            try:
                return self.grouped(x, shared, frozen)
            except GroupingUnsupported:
                self.grouped = None  # e.g. a Linear met a rank-3 input: vmap handles it from now on
                mode = "vmap"
        if mode == "loop":
            outs = []
            for i, module in enumerate(self.modules):
                xi = x if shared else x[i]
                if frozen:
                    params = {n: p.detach() for n, p in module.named_parameters()}
                    outs.append(functional_call(module, params, (xi,)))
                else:
                    outs.append(module(xi))
            return torch.stack(outs)
        params, buffers = self.stacked(frozen)
        base = self.modules[0]

        def run(p, b, xi):
            return functional_call(base, (p, b), (xi,))

        out = torch.vmap(run, in_dims=(0, 0, None if shared else 0), randomness="different")(params, buffers, x)
        self.write_back(buffers)
        return out


class MixtureGAN(nn.Module):
    """A MIX+GAN mixture: T_g generators, T_d discriminators and their mixture weight logits.

    Args:
        generators, discriminators: sequences of modules (a generator maps z [B, z_dim] to samples [B, ...];
            a discriminator maps samples to logits [B] or [B, 1], or patch logits [B, ...]).
        kind: the GAN loss (fastgan.losses.KINDS).
        reg_weight: weight of the mixture-weight regulariser (0.1, as in MIX+GAN's reference code).
        regularizer: "mean_neg_log" (the reference code's mean(-log w), which pushes the weights toward uniform;
            not Shannon entropy), "entropy" (-H(w)) or None.
        batched: None (batch each player whose components share an architecture), True (require it), False (loop)
            or "vmap" (require it, with torch.vmap even where the grouped model applies: for comparisons).
        z_dim: latent size for sample(); defaults to the first generator's ``z_dim`` attribute.
        a, b, c: lsgan targets.
        channels_last: the grouped model's 2-d convolutions on channels_last activations: None (on CPU only),
            True or False.

    Attributes:
        g_weight_logits, d_weight_logits: nn.Parameters [T_g], [T_d] (zeros: uniform weights at start).
        g_weights, d_weights: the current softmax weights (detached).
    """

    def __init__(self, generators, discriminators, kind="nonsaturating", reg_weight=0.1, regularizer="mean_neg_log",
                 batched=None, z_dim=None, a=0.0, b=1.0, c=1.0, channels_last=None):
        super().__init__()
        generators, discriminators = list(generators), list(discriminators)
        for modules, name in ((generators, "generators"), (discriminators, "discriminators")):
            if not modules:
                raise ValueError(f"{name} must hold at least one module")
            for m in modules:
                if not isinstance(m, nn.Module):
                    raise TypeError(f"{name} must be nn.Modules, got {type(m).__name__}")
        self.kind = _kind(kind)
        if not (batched is None or isinstance(batched, bool) or batched == "vmap"):
            raise ValueError(f"unknown batched {batched!r}: choose one of None, True, False, 'vmap'")
        _, a, b, c, _, reg_weight = _config(self.kind, regularizer, reg_weight, a, b, c)  # the loss's own checks
        self.reg_weight, self.regularizer = reg_weight, regularizer
        self.targets = (a, b, c)
        self.generators = nn.ModuleList(generators)
        self.discriminators = nn.ModuleList(discriminators)
        param = next(generators[0].parameters(), None)
        options = {"dtype": param.dtype, "device": param.device} if param is not None else {}
        self.g_weight_logits = nn.Parameter(torch.zeros(len(generators), **options))
        self.d_weight_logits = nn.Parameter(torch.zeros(len(discriminators), **options))
        self.z_dim = z_dim if z_dim is not None else getattr(generators[0], "z_dim", None)
        if channels_last not in (None, True, False):
            raise ValueError(f"channels_last must be None, True or False, got {channels_last!r}")
        self._g = _Player(generators, batched, "generators", channels_last)
        self._d = _Player(discriminators, batched, "discriminators", channels_last)

    @property
    def batched(self):
        """(generators, discriminators): whether each player runs as one batched model."""
        return self._g.can_batch(), self._d.can_batch()

    @property
    def execution(self):
        """(generators, discriminators): how each player runs now: "grouped" (one model of grouped layers),
        "vmap" (torch.vmap over stacked parameters) or "loop"."""
        return self._g.mode, self._d.mode

    @property
    def g_weights(self):
        return torch.softmax(self.g_weight_logits.detach(), dim=0)

    @property
    def d_weights(self):
        return torch.softmax(self.d_weight_logits.detach(), dim=0)

    def generator_parameters(self):
        """Every generator's parameters and g_weight_logits (what the generator's optimiser updates)."""
        return [p for g in self.generators for p in g.parameters()] + [self.g_weight_logits]

    def discriminator_parameters(self):
        """Every discriminator's parameters and d_weight_logits."""
        return [p for d in self.discriminators for p in d.parameters()] + [self.d_weight_logits]

    def generate(self, z):
        """Samples of every generator: z [B, z_dim] (shared) or [T_g, B, z_dim] -> [T_g, B, ...]."""
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        shared = z.dim() < 3
        if not shared and z.shape[0] != len(self.generators):
            raise ValueError(f"z must be [B, z_dim] or [T_g, B, z_dim] with T_g = {len(self.generators)}, "
                             f"got shape {tuple(z.shape)}")
        return self._g.call(z, shared)

    def logits(self, real, fakes, frozen=False):
        """(real logits [T_d, B] or None, fake logits [T_g, T_d, B]) of every discriminator."""
        tg, batch = fakes.shape[0], fakes.shape[1]
        count = len(self.discriminators)
        # Flatten the fakes sample-major when that is a view (the grouped generators' output is laid out so).
        sample_major = fakes.transpose(0, 1).is_contiguous()
        flat = fakes.transpose(0, 1).flatten(0, 1) if sample_major else fakes.flatten(0, 1)
        if real is not None and self._d.one_call_for_all_batches():
            # One call scores the fakes and the real batch: nothing in the model mixes samples.
            both = self._d.call(torch.cat([flat, real]), True, frozen).reshape(count, flat.shape[0] + len(real), -1)
            fake_logits, real_logits = both[:, :flat.shape[0]], both[:, flat.shape[0]:].reshape(count, -1)
        else:
            fake_logits = self._d.call(flat, True, frozen)
            real_logits = None
            if real is not None:
                real_logits = self._d.call(real, True, frozen).reshape(count, -1)
        fake_logits = fake_logits.reshape(count, flat.shape[0], -1)
        if sample_major:
            fake_logits = fake_logits.reshape(count, batch, tg, -1).permute(2, 0, 1, 3)
        else:
            fake_logits = fake_logits.reshape(count, tg, batch, -1).transpose(0, 1)
        # Contiguous (a copy of T_g x T_d x B logits at most), as mixture_gan_loss's fast path takes them.
        return (None if real_logits is None else real_logits.contiguous()), fake_logits.flatten(2).contiguous()

    def _loss(self, real_logits, fake_logits, g_logits, d_logits):
        a, b, c = self.targets
        return mixture_gan_loss(real_logits, fake_logits, g_logits, d_logits, self.kind, self.regularizer,
                                self.reg_weight, a, b, c)

    def d_loss(self, real, z):
        """The discriminators' MIX+GAN loss on a real batch and latents z (samples made without gradient)."""
        if not isinstance(real, torch.Tensor):
            raise TypeError(f"real must be a torch.Tensor, got {type(real).__name__}")
        with torch.no_grad():
            fakes = self.generate(z)
        real_logits, fake_logits = self.logits(real, fakes)
        d_loss, _ = self._loss(real_logits, fake_logits, self.g_weight_logits.detach(), self.d_weight_logits)
        return d_loss

    def g_loss(self, z, real=None):
        """The generators' MIX+GAN loss on latents z (real: the real batch, needed by kind="relativistic")."""
        if self.kind == "relativistic" and real is None:
            raise ValueError("real is required for kind='relativistic' (its generator loss pairs real and fake)")
        fakes = self.generate(z)
        real_logits, fake_logits = self.logits(real if self.kind == "relativistic" else None, fakes, frozen=True)
        _, g_loss = self._loss(real_logits, fake_logits, self.g_weight_logits, self.d_weight_logits.detach())
        return g_loss

    @torch.no_grad()
    def sample(self, n, z=None, generator=None, return_components=False):
        """n samples of the mixture: each from generator i with probability g_weights[i].

        Args:
            n: number of samples.
            z: optional latents [n, z_dim] (else standard normal, from `generator` if given).
            generator: optional torch.Generator for the component draw and the latents.
            return_components: also return the [n] component indices.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        device = self.g_weight_logits.device
        if z is None:
            if self.z_dim is None:
                raise ValueError("sample() needs z, or z_dim (given to MixtureGAN or as the generators' z_dim)")
            z = torch.randn(n, self.z_dim, generator=generator, device=device, dtype=self.g_weight_logits.dtype)
        elif z.shape[0] != n:
            raise ValueError(f"z must have n = {n} rows, got shape {tuple(z.shape)}")
        components = torch.multinomial(self.g_weights, n, replacement=True, generator=generator)
        out = None
        for i, module in enumerate(self.generators):
            index = (components == i).nonzero().squeeze(1)
            if index.numel() == 0:
                continue
            x = module(z[index])
            if out is None:
                out = x.new_empty((n,) + tuple(x.shape[1:]))
            out[index] = x
        return (out, components) if return_components else out

    def extra_repr(self):
        return (f"kind={self.kind!r}, T_g={len(self.generators)}, T_d={len(self.discriminators)}, "
                f"regularizer={self.regularizer!r}, reg_weight={self.reg_weight}, execution={self.execution}")
