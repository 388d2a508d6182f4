"""Benchmark cases of issue 4: WGAN weight clipping, the fused optimizers with clip, spectral normalisation.

All on DCGAN-style critics (fastgan.models.DCGANCritic): "dcgan32-w64" is the issue's (32x32x1, width 64: 663k
parameters in 8 tensors), "dcgan64-w64" a 64x64x3 one (2.8M in 10 tensors).

Bytes (n parameters, s bytes each):
  clip_weights   read and write every parameter:                      2 n s
  fused_optim    RMSprop: read p, g, square_avg, write p, square_avg:  5 n s
                 Adam: read p, g, m, v, write p, m, v:                  7 n s
  spectral_norm  power iteration: fastgan reads W once per iteration (torch's mv twice, and once more for sigma);
                 the critic cases are end-to-end forward+backward times (no byte count).
Implementations besides eager/compile/backends: "foreach" (torch._foreach_clamp_min_/max_, torch's foreach
optimizers) and, for the critic, "no_sn" (the critic without spectral normalisation, to measure the overhead).
"""
import copy
import importlib

import torch

import fastgan
from fastgan.benchmark.registry import Bench, backend_runs, case, compiled
from fastgan.models import DCGANCritic
from fastgan.ops.clip_weights import clip_weights_reference

sn_ops = importlib.import_module("fastgan.ops.spectral_norm")

CRITICS = {
    "small": [("dcgan32-w64", 32, 1, 64)],
    "medium": [("dcgan32-w64", 32, 1, 64), ("dcgan64-w64", 64, 3, 64)],
    "large": [("dcgan32-w64", 32, 1, 64), ("dcgan64-w64", 64, 3, 64), ("dcgan128-w64", 128, 3, 64)],
}
BATCH = 64
CLIP = 0.01


def critic(image_size, channels, width, device, dtype, seed=0):
    torch.manual_seed(seed)
    return DCGANCritic(image_size, channels, width).to(device=device, dtype=dtype)


def _critics(preset):
    return CRITICS[preset]  # KeyError for explicit size lists: the harness then matches labels per preset


def _param_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


@case("clip_weights")
def clip_weights_cases(device, dtype, preset, modes):
    if "fwd" not in modes:
        return
    for name, size, channels, width in _critics(preset):
        model = critic(size, channels, width, device, dtype)
        data = [p.data for p in model.parameters()]

        def loop(m=model):
            for p in m.parameters():
                p.data.clamp_(-CLIP, CLIP)

        def foreach(d=data):
            torch._foreach_clamp_min_(d, -CLIP)
            torch._foreach_clamp_max_(d, CLIP)

        runs, skipped = backend_runs("clip_weights", device, lambda m=model: fastgan.clip_weights_(m, CLIP))
        runs.update(eager=loop, foreach=foreach)
        compiled_loop, reason = compiled(lambda m=model: clip_weights_reference(m, CLIP))
        if compiled_loop is not None:
            runs["compile"] = compiled_loop
        else:
            skipped["compile"] = reason
        n = sum(p.numel() for p in model.parameters())
        yield Bench(op="clip_weights", label=name, mode="fwd", run=runs, bytes=2 * _param_bytes(model), flops=2 * n,
                    skipped=skipped, size=n, note=f"{n} parameters in {len(data)} tensors")


def _with_grads(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(p)
    return model


@case("fused_optim")
def fused_optim_cases(device, dtype, preset, modes):
    if "fwd" not in modes:
        return
    for name, size, channels, width in _critics(preset):
        base = critic(size, channels, width, device, dtype)
        n = sum(p.numel() for p in base.parameters())
        item = next(base.parameters()).element_size()
        for kind in ("rmsprop+clip", "adam"):
            clip = CLIP if kind == "rmsprop+clip" else None
            torch_cls = torch.optim.RMSprop if kind == "rmsprop+clip" else torch.optim.Adam
            ours_cls = fastgan.optim.RMSprop if kind == "rmsprop+clip" else fastgan.optim.Adam
            kwargs = dict(lr=5e-5) if kind == "rmsprop+clip" else dict(lr=1e-4, betas=(0.5, 0.9))

            def torch_step(foreach):
                model = _with_grads(copy.deepcopy(base))  # deepcopy drops .grad
                opt = torch_cls(model.parameters(), foreach=foreach, **kwargs)
                data = [p.data for p in model.parameters()]

                def step():
                    opt.step()
                    if clip is not None:
                        if foreach:
                            torch._foreach_clamp_min_(data, -clip)
                            torch._foreach_clamp_max_(data, clip)
                        else:
                            for p in model.parameters():
                                p.data.clamp_(-clip, clip)
                return step

            ours_model = _with_grads(copy.deepcopy(base))
            ours = ours_cls(ours_model.parameters(), clip=clip, **kwargs)
            runs, skipped = backend_runs("fused_optim", device, ours.step)
            runs.update(eager=torch_step(False), foreach=torch_step(True))
            skipped["compile"] = "not benchmarked: torch.compile of an optimizer step is a training-loop setting"
            traffic = (5 if kind == "rmsprop+clip" else 7) * n * item
            yield Bench(op="fused_optim", label=f"{kind} {name}", mode="fwd", run=runs, bytes=traffic, flops=10 * n,
                        skipped=skipped, size=n, note="eager: torch.optim single-tensor step"
                        + (" + clamp loop" if clip else ""))


def spectral_norm_critics(size, channels, width, device, dtype, output_scaling=None):
    """(plain critic, torch's spectral-normalised copy, fastgan's) with the same weights."""
    plain = critic(size, channels, width, device, dtype)
    theirs, ours = copy.deepcopy(plain), copy.deepcopy(plain)
    for m in theirs.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.utils.parametrizations.spectral_norm(m)
    fastgan.nn.utils.spectral_norm_all(ours, output_scaling=output_scaling)
    return plain, theirs, ours


def forward_backward(model, x):
    def run():
        model.zero_grad(set_to_none=True)
        model(x).mean().backward()
    return run


@case("spectral_norm")
def spectral_norm_cases(device, dtype, preset, modes):
    for name, size, channels, width in _critics(preset):
        plain, theirs, ours = spectral_norm_critics(size, channels, width, device, dtype)
        layers = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
        if "fwd" in modes:
            # The power iteration + sigma of one update, per layer and for all layers at once.
            weights = [m.weight.detach() for m in layers]
            vectors = []
            for w in weights:
                h = w.shape[0]
                vectors.append((torch.nn.functional.normalize(torch.randn(h, device=device, dtype=dtype), dim=0),
                                torch.nn.functional.normalize(torch.randn(w.numel() // h, device=device,
                                                                          dtype=dtype), dim=0)))
            for w, (u, v) in zip(weights, vectors):
                eager = lambda w=w, u=u, v=v: sn_ops.spectral_norm_reference(w, u, v, 0, 1, 1e-12, True)  # noqa
                fused = lambda w=w, u=u, v=v: sn_ops.spectral_norm_batched_values([w], [u], [v], [0])  # noqa
                runs, skipped = backend_runs("spectral_norm", device, fused)
                runs["eager"] = eager
                skipped["compile"] = "not benchmarked: in-place buffer updates under no_grad"
                yield Bench(op="spectral_norm", label="x".join(map(str, w.shape)), mode="fwd", run=runs,
                            bytes=w.numel() * w.element_size(), flops=4 * w.numel(), skipped=skipped,
                            size=w.numel(), note="one power iteration + sigma")
            us, vs = [u for u, _ in vectors], [v for _, v in vectors]

            def eager_all():
                for w, u, v in zip(weights, us, vs):
                    sn_ops.spectral_norm_reference(w, u, v, 0, 1, 1e-12, True)

            runs, skipped = backend_runs("spectral_norm", device,
                                         lambda: sn_ops.spectral_norm_batched_values(weights, us, vs,
                                                                                     [0] * len(weights)))
            runs["eager"] = eager_all
            skipped["compile"] = "not benchmarked: in-place buffer updates under no_grad"
            total = sum(w.numel() for w in weights)
            yield Bench(op="spectral_norm", label=f"{name} all layers", mode="fwd", run=runs,
                        bytes=sum(w.numel() * w.element_size() for w in weights), flops=4 * total,
                        skipped=skipped, size=total, note=f"{len(weights)} layers in one batched call")
        if "fwd_bwd" in modes:
            x = torch.randn(BATCH, channels, size, size, device=device, dtype=dtype)
            runs, skipped = backend_runs("spectral_norm", device, forward_backward(ours, x))
            runs.update(eager=forward_backward(theirs, x), no_sn=forward_backward(plain, x))
            skipped["compile"] = "not benchmarked: parametrized modules"
            yield Bench(op="spectral_norm", label=f"{name} B{BATCH} critic", mode="fwd_bwd", run=runs,
                        skipped=skipped, size=sum(p.numel() for p in plain.parameters()),
                        note="eager: torch.nn.utils.parametrizations.spectral_norm; no_sn: the plain critic")
