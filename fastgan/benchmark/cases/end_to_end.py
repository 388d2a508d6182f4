"""End-to-end benchmark cases: a critic step (D-step) and a full training iteration (n_critic D-steps + one G-step)
of the wgan, wgan-gp, r1, sngan and mixgan recipes, fastgan vs the same loop in plain PyTorch, in samples/s.

Each loop is written out here (not taken from fastgan.train) so that this benchmark does not depend on the trainer:
DCGAN-style generator and critic (fastgan.models; tiny stand-ins if that package is missing), random "real"
images in [-1, 1], fresh latents every step, optimizer steps included. The plain loop is the textbook PyTorch
code of each paper's reference implementation; the fastgan loop swaps in whatever fastgan provides in this build
(each part is optional: what is missing is named in the table, and where a recipe's defining op is missing the
fastgan column says so instead of timing a plain loop under a fastgan label):

  recipe   n_critic  loss           plain PyTorch                                   fastgan
  wgan     5         wasserstein    RMSprop 5e-5 + p.data.clamp_ loop (clip 0.01)   optim.RMSprop(clip=) or clip_weights_
  wgan-gp  5         wasserstein    interpolate, autograd.grad(create_graph), norm  gradient_penalty
  r1       1         nonsaturating  autograd.grad on real, squared norm (gamma 10)  r1_penalty(outputs=)
  sngan    1         hinge          torch parametrizations.spectral_norm            nn.utils.spectral_norm(_all)
  mixgan   1         nonsaturating  loop over T x T (G_i, D_j) pairs, softmax w     mix.MixtureGAN (batched)
                     (T = 5 components of a quarter of the model's width; T = 2 in the smoke preset)

plus, where available, fastgan.nn.fuse_activations on the critic and fastgan.losses for the loss. Samples/s
counts the real samples the critic sees: B per D-step, n_critic * B per iteration. Mixed precision: bf16 runs
both loops under torch.autocast; fp16 is skipped (it needs a GradScaler, which these loops do not model).
"""
import copy
import dataclasses
import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.benchmark.registry import Bench, case, one_line

OP = "end_to_end"
Z_DIM = 128


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    image: int
    width: int
    batch: int
    mix_components: int = 5


# Two model sizes per preset; "small" is the smoke test's: one tiny model, a step takes milliseconds.
MODELS = {
    "small": [Model("16px-w8-B8", 16, 8, 8, 2)],
    "medium": [Model("32px-w16-B64", 32, 16, 64), Model("32px-w64-B64", 32, 64, 64)],
    "large": [Model("32px-w64-B64", 32, 64, 64), Model("64px-w64-B64", 64, 64, 64)],
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    n_critic: int
    loss: str
    optimizer: str
    lr: float
    betas: tuple = (0.5, 0.999)


RECIPES = {
    "wgan": Recipe(5, "wasserstein", "rmsprop", 5e-5),
    "wgan-gp": Recipe(5, "wasserstein", "adam", 1e-4, (0.5, 0.9)),
    "r1": Recipe(1, "nonsaturating", "adam", 2e-4, (0.0, 0.99)),
    "sngan": Recipe(1, "hinge", "adam", 2e-4, (0.0, 0.9)),
    "mixgan": Recipe(1, "nonsaturating", "adam", 2e-4, (0.5, 0.999)),
}
CLIP, GP_WEIGHT, R1_WEIGHT, MIX_REG = 0.01, 10.0, 5.0, 0.1  # R1: gamma = 10, weight = gamma / 2


class Unavailable(Exception):
    """The fastgan part a recipe is about is not in this build."""


def component(path):
    """(object, None) for a dotted name like 'fastgan.nn.fuse_activations', or (None, why not)."""
    module_name, attr = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None, f"{module_name} is not available in this build"
    except Exception as error:  # noqa: BLE001 - a half-written module: say so
        return None, f"{module_name} failed to import ({one_line(error)})"
    obj = getattr(module, attr, None)
    return (obj, None) if obj is not None else (None, f"{path} is not available in this build")


# ------------------------------------------------------------------------------------------------- models


class _TinyCritic(nn.Sequential):
    def __init__(self, image_size, channels, width):
        layers, ch, size = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)], width, image_size // 2
        while size > 4:
            layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch, size = 2 * ch, size // 2
        layers += [nn.Conv2d(ch, 1, size), nn.Flatten(0)]
        super().__init__(*layers)


class _TinyGenerator(nn.Sequential):
    def __init__(self, z_dim, image_size, channels, width):
        depth = int(math.log2(image_size)) - 2
        ch = width * 2 ** (depth - 1)
        layers = [nn.Unflatten(1, (z_dim, 1, 1)), nn.ConvTranspose2d(z_dim, ch, 4, 1, 0), nn.BatchNorm2d(ch), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        super().__init__(*layers)


def make_models(model, device):
    """(generator, critic) for a Model: fastgan.models' DCGAN pair, or stand-ins if that is not importable."""
    try:
        from fastgan.models import DCGANCritic, DCGANGenerator
        critic = DCGANCritic(image_size=model.image, channels=3, width=model.width)
        generator = DCGANGenerator(z_dim=Z_DIM, image_size=model.image, channels=3, width=model.width)
    except Exception:  # noqa: BLE001 - the models package is optional here
        critic = _TinyCritic(model.image, 3, model.width)
        generator = _TinyGenerator(Z_DIM, model.image, 3, model.width)
    return generator.to(device), critic.to(device)


def _optimizer(recipe, params, lr=None):
    params = list(params)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr or recipe.lr)
    return torch.optim.Adam(params, lr=lr or recipe.lr, betas=recipe.betas)


# -------------------------------------------------------------------------------------------------- loops


class Loop:
    """One implementation of a recipe: d_step() and iteration() are what the benchmark times."""

    def __init__(self, recipe, model, device, dtype, d_loss, g_loss, opt_d, opt_g, after_d=None, note=""):
        self.recipe, self.model, self.device = recipe, model, torch.device(device)
        self.d_loss, self.g_loss, self.opt_d, self.opt_g, self.after_d = d_loss, g_loss, opt_d, opt_g, after_d
        self.autocast = dtype if dtype in (torch.bfloat16, torch.float16) else None
        self.real = torch.rand(model.batch, 3, model.image, model.image, device=device) * 2 - 1
        self.note = note

    def _z(self):
        return torch.randn(self.model.batch, Z_DIM, device=self.device)

    def _context(self):
        if self.autocast is None:
            return _Null()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def d_step(self):
        with self._context():
            loss = self.d_loss(self.real, self._z())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        if self.after_d is not None:
            self.after_d()
        return loss

    def g_step(self):
        with self._context():
            loss = self.g_loss(self._z())
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss

    def iteration(self):
        for _ in range(self.recipe.n_critic):
            self.d_step()
        return self.g_step()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _plain_losses(kind):
    if kind == "wasserstein":
        return (lambda real_out, fake_out: fake_out.mean() - real_out.mean()), (lambda fake_out: -fake_out.mean())
    if kind == "nonsaturating":
        return ((lambda real_out, fake_out: F.softplus(-real_out).mean() + F.softplus(fake_out).mean()),
                (lambda fake_out: F.softplus(-fake_out).mean()))
    if kind == "hinge":
        return ((lambda real_out, fake_out: F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()),
                (lambda fake_out: -fake_out.mean()))
    raise ValueError(kind)


def textbook_gradient_penalty(critic, real, fake, weight=GP_WEIGHT):
    """WGAN-GP's penalty as the reference code writes it."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    points = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
    return weight * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def plain_loop(name, model, device, dtype, generator, critic):
    recipe = RECIPES[name]
    if name == "mixgan":
        return _plain_mixgan(recipe, model, device, dtype, generator, critic)
    if name == "sngan":
        from torch.nn.utils.parametrizations import spectral_norm
        for module in list(critic.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                spectral_norm(module)
    d_formula, g_formula = _plain_losses(recipe.loss)
    G, D = generator, critic

    def d_loss(real, z):
        with torch.no_grad():
            fake = G(z)
        if name == "r1":
            real = real.detach().requires_grad_(True)
            real_out = D(real)
            (grad,) = torch.autograd.grad(real_out.sum(), real, create_graph=True)
            return d_formula(real_out, D(fake)) + R1_WEIGHT * grad.pow(2).flatten(1).sum(1).mean()
        loss = d_formula(D(real), D(fake))
        if name == "wgan-gp":
            loss = loss + textbook_gradient_penalty(D, real, fake)
        return loss

    def g_loss(z):
        return g_formula(D(G(z)))

    after = None
    if name == "wgan":
        def after():
            for p in D.parameters():
                p.data.clamp_(-CLIP, CLIP)
    return Loop(recipe, model, device, dtype, d_loss, g_loss, _optimizer(recipe, D.parameters()),
                _optimizer(recipe, G.parameters()), after)


def _mix_components(model, device, generator, critic):
    gens = [generator] + [copy.deepcopy(generator) for _ in range(model.mix_components - 1)]
    crits = [critic] + [copy.deepcopy(critic) for _ in range(model.mix_components - 1)]
    for module in gens[1:] + crits[1:]:  # distinct components, as in MIX+GAN
        for p in module.parameters():
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.02)
    return nn.ModuleList(gens).to(device), nn.ModuleList(crits).to(device)


def _plain_mixgan(recipe, model, device, dtype, generator, critic):
    """MIX+GAN as its reference code runs it: every (G_i, D_j) pair, weighted by softmax mixture weights, plus the
    reference regulariser mean(-log w) on each player's weights."""
    gens, crits = _mix_components(model, device, generator, critic)
    g_logits = nn.Parameter(torch.zeros(len(gens), device=device))
    d_logits = nn.Parameter(torch.zeros(len(crits), device=device))

    def d_loss(real, z):
        with torch.no_grad():
            fakes = [G(z) for G in gens]
            w_g = torch.softmax(g_logits, 0)
        w_d = torch.softmax(d_logits, 0)
        total = 0.0
        for j, D in enumerate(crits):
            real_term = F.softplus(-D(real)).mean()
            for i, fake in enumerate(fakes):
                total = total + w_g[i] * w_d[j] * (real_term + F.softplus(D(fake)).mean())
        return total + MIX_REG * (-torch.log(w_d)).mean()

    def g_loss(z):
        w_g = torch.softmax(g_logits, 0)
        w_d = torch.softmax(d_logits, 0).detach()
        total = 0.0
        for i, G in enumerate(gens):
            fake = G(z)
            for j, D in enumerate(crits):
                total = total + w_g[i] * w_d[j] * F.softplus(-D(fake)).mean()
        return total + MIX_REG * (-torch.log(w_g)).mean()

    return Loop(recipe, model, device, dtype, d_loss, g_loss,
                _optimizer(recipe, list(crits.parameters()) + [d_logits]),
                _optimizer(recipe, list(gens.parameters()) + [g_logits]))


def fastgan_loop(name, model, device, dtype, generator, critic):
    """The recipe with fastgan's parts; raises Unavailable when the recipe's own fastgan op is missing."""
    recipe = RECIPES[name]
    uses, missing = [], []
    if name == "mixgan":
        return _fastgan_mixgan(recipe, model, device, dtype, generator, critic)

    def optional(path):
        obj, why = component(path)
        if obj is None:
            missing.append(path.replace("fastgan.", ""))
        return obj

    def required(path, *alternatives):
        for candidate in (path,) + alternatives:
            obj, _ = component(candidate)
            if obj is not None:
                uses.append(candidate.replace("fastgan.", ""))
                return obj
        names = " / ".join(p for p in (path,) + alternatives)
        raise Unavailable(f"{names} not available in this build")

    G, D = generator, critic
    # The recipe's defining op first, so that a missing one is the reason shown.
    penalty = clip_optim = clip_ = None
    if name == "wgan":
        clip_optim, _ = component("fastgan.optim.RMSprop")
        if clip_optim is not None:
            uses.append("optim.RMSprop(clip=)")
        else:
            clip_ = required("fastgan.clip_weights_")
    elif name == "wgan-gp":
        penalty = required("fastgan.gradient_penalty")
    elif name == "r1":
        penalty = required("fastgan.r1_penalty")
    elif name == "sngan":
        sn_all, _ = component("fastgan.nn.utils.spectral_norm_all")
        if sn_all is not None:
            D = _returned_model(sn_all(D), D)
            uses.append("nn.utils.spectral_norm_all")
        else:
            sn = required("fastgan.nn.utils.spectral_norm")
            for module in list(D.modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    sn(module)

    fuse = optional("fastgan.nn.fuse_activations")
    if fuse is not None:
        try:
            D = _returned_model(fuse(D), D)
            uses.append("nn.fuse_activations")
        except Exception as error:  # noqa: BLE001
            missing.append(f"nn.fuse_activations ({one_line(error)})")
    d_loss_fn, g_loss_fn = optional("fastgan.losses.d_loss"), optional("fastgan.losses.g_loss")
    if d_loss_fn is not None and g_loss_fn is not None:
        uses.append(f"losses ({recipe.loss})")
        d_formula = lambda real_out, fake_out: d_loss_fn(recipe.loss, real_out, fake_out)  # noqa: E731
        g_formula = lambda fake_out: g_loss_fn(recipe.loss, fake_out)  # noqa: E731
    else:
        d_formula, g_formula = _plain_losses(recipe.loss)

    def d_loss(real, z):
        with torch.no_grad():
            fake = G(z)
        if name == "r1":
            real = real.detach().requires_grad_(True)
            real_out = D(real)
            return d_formula(real_out, D(fake)) + penalty(D, real, weight=R1_WEIGHT, outputs=real_out)
        loss = d_formula(D(real), D(fake))
        if name == "wgan-gp":
            loss = loss + penalty(D, real, fake, weight=GP_WEIGHT)
        return loss

    def g_loss(z):
        return g_formula(D(G(z)))

    after = None
    if clip_optim is not None:
        opt_d = clip_optim(D.parameters(), lr=recipe.lr, clip=CLIP)
    else:
        opt_d = _optimizer(recipe, D.parameters())
        if clip_ is not None:
            after = lambda: clip_(D, CLIP)  # noqa: E731
    note = "uses " + ", ".join(uses) if uses else "no fastgan parts"
    if missing:
        note += "; without " + ", ".join(missing)
    return Loop(recipe, model, device, dtype, d_loss, g_loss, opt_d, _optimizer(recipe, G.parameters()), after, note)


def _returned_model(result, original):
    """Converters may return the model, or (model, report); some convert in place and return None."""
    if result is None:
        return original
    if isinstance(result, tuple):
        return result[0]
    return result


def _fastgan_mixgan(recipe, model, device, dtype, generator, critic):
    mixture_cls, why = component("fastgan.mix.MixtureGAN")
    if mixture_cls is None:
        raise Unavailable(why.replace("fastgan.mix is", "fastgan.mix.MixtureGAN is"))
    gens, crits = _mix_components(model, device, generator, critic)
    mix = mixture_cls(list(gens), list(crits), kind="nonsaturating", reg_weight=MIX_REG).to(device)
    d_params, g_params = _mixture_parameters(mix, gens, crits)
    return Loop(recipe, model, device, dtype, lambda real, z: mix.d_loss(real, z), lambda z: mix.g_loss(z),
                _optimizer(recipe, d_params), _optimizer(recipe, g_params), note="uses mix.MixtureGAN")


def _mixture_parameters(mix, gens, crits):
    """The discriminators' and the generators' parameters of a MixtureGAN (its own split if it offers one)."""
    for d_name, g_name in (("d_parameters", "g_parameters"), ("discriminator_parameters", "generator_parameters")):
        if callable(getattr(mix, d_name, None)) and callable(getattr(mix, g_name, None)):
            return list(getattr(mix, d_name)()), list(getattr(mix, g_name)())
    crit_ids = {id(p) for p in crits.parameters()}
    gen_ids = {id(p) for p in gens.parameters()}
    d_params, g_params = [], []
    for pname, p in mix.named_parameters():
        lowered = pname.lower()
        if id(p) in crit_ids or "disc" in lowered or lowered.startswith("d_") or "d_weight" in lowered:
            d_params.append(p)
        elif id(p) in gen_ids or "gen" in lowered or lowered.startswith("g_") or "g_weight" in lowered:
            g_params.append(p)
    return d_params, g_params


# ------------------------------------------------------------------------------------------------- cases


def recipe_benches(name, model, device, dtype, steps=("d_step", "iteration"), seed=0):
    """Bench objects (one per step kind) comparing the plain and the fastgan loop of recipe `name`."""
    recipe = RECIPES[name]
    if name == "mixgan":
        # T x T pairs of full-width DCGANs would cost T^2 = 25 critic passes per step: MIX+GAN components are
        # narrower (a quarter of the width), and the label says so.
        width = max(4, model.width // 4)
        model = dataclasses.replace(model, width=width, name=f"{model.name.replace(f'w{model.width}', f'w{width}')}"
                                                             f"-T{model.mix_components}")
    label = f"{name} {model.name}"
    loops, skipped = {}, {}
    if dtype == torch.float16:
        reason = "fp16 end-to-end loops need a GradScaler: run them with --dtype fp32 or bf16"
        skipped = {"plain": reason, "fastgan": reason}
    else:
        torch.manual_seed(seed)
        generator, critic = make_models(model, device)
        for impl, build in (("plain", plain_loop), ("fastgan", fastgan_loop)):
            try:
                loops[impl] = build(name, model, device, dtype, copy.deepcopy(generator), copy.deepcopy(critic))
            except Unavailable as error:
                skipped[impl] = str(error)
            except Exception as error:  # noqa: BLE001 - shown in the table
                skipped[impl] = f"{impl} loop failed to build: {one_line(error)}"
    note = getattr(loops.get("fastgan"), "note", "")
    for step in steps:
        samples = model.batch * (1 if step == "d_step" else recipe.n_critic)
        yield Bench(op=OP, label=label, mode=step, run={k: getattr(v, step) for k, v in loops.items()},
                    skipped=dict(skipped), baseline="plain", samples=samples, size=model.batch, note=note)


def steps_for(modes):
    """D-steps run with fwd_bwd or full; full iterations with full."""
    steps = []
    if "fwd_bwd" in modes or "full" in modes:
        steps.append("d_step")
    if "full" in modes:
        steps.append("iteration")
    return steps


@case(OP)
def end_to_end_cases(device, dtype, preset, modes):
    steps = steps_for(modes)
    if not steps:
        return
    models = MODELS[preset] if isinstance(preset, str) else MODELS["medium"]  # shapes do not apply to models
    for name in RECIPES:
        for model in models:
            yield from recipe_benches(name, model, device, dtype, steps)
