"""Benchmark cases for fastgan.ops.bias_act (issue 3) and for fastgan.nn.fuse_activations on a critic.

Kernel cases: lrelu and silu at 64x128x32x32 to 256x256x64x64 (NCHW, bias along channels), against eager PyTorch
(`act(x + b.view(1, -1, 1, 1))` in the storage dtype, what a model computes) and torch.compile of it (fwd and
fwd_bwd; torch.compile cannot run a double backward and says so).

Bytes (n elements, s bytes each; the [C] bias is negligible) and FLOPs (arithmetic per element, rough):
  fwd      read x, write y:                                               2 n s     lrelu 2n, silu 6n
  fwd_bwd  + read dy and the saved tensor (y: lrelu; x: silu), write dx:  5 n s     lrelu 4n, silu 14n
  full     forward, input gradient (create_graph), its backward to x, b
           and dy: read the upstream v of dx and the saved tensor, write
           d dy (lrelu); silu also reads dy, writes d x:                  lrelu 8 n s, silu 10 n s
                                                                          lrelu 5n, silu 26n
Critic case (mode d_step): the WGAN-GP critic step of a DCGAN-style critic (forward on real, fake and interpolates,
the textbook penalty with its double backward, the backward to the parameters), the original model ("eager") vs
the same model after fastgan.nn.fuse_activations on each fastgan backend; peak memory is in the table.
"""
import copy

import torch
import torch.nn.functional as F

from fastgan.benchmark.registry import (Bench, add_compiled, backend_runs, case, compile_double_backward_reason, numel,
                                        shape_label, sizes)

OP = "bias_act"
ACTS = ("lrelu", "silu")
SIZES = {
    "small": [(4, 8, 8, 8)],
    "medium": [(64, 128, 32, 32), (64, 256, 32, 32)],
    "large": [(64, 128, 32, 32), (128, 256, 64, 64), (256, 256, 64, 64)],
}
# DCGAN-style critic: (image size, width, batch); the D-step is at B = 64.
CRITICS = {"small": (16, 8, 8), "medium": (32, 64, 64), "large": (64, 64, 64)}
BYTES_PER_ELEMENT = {("lrelu", "fwd"): 2, ("lrelu", "fwd_bwd"): 5, ("lrelu", "full"): 8,
                     ("silu", "fwd"): 2, ("silu", "fwd_bwd"): 5, ("silu", "full"): 10}
FLOPS_PER_ELEMENT = {("lrelu", "fwd"): 2, ("lrelu", "fwd_bwd"): 4, ("lrelu", "full"): 5,
                     ("silu", "fwd"): 6, ("silu", "fwd_bwd"): 14, ("silu", "full"): 26}


def eager_bias_act(x, b, act):
    """What a model computes in plain PyTorch: the bias add, then the activation, in the storage dtype."""
    z = x + b.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(z, 0.2) if act == "lrelu" else F.silu(z)


def _fwd(fn, x, b):
    return fn(x, b)


def _fwd_bwd(fn, x, b, dy):
    return torch.autograd.grad(fn(x, b), (x, b), dy)


def _full(fn, x, b, dy, v):
    """What a gradient penalty does: forward, the input gradient with create_graph, and the backward of that
    backward to the input, the bias and the upstream gradient (dy requires grad, as inside a critic)."""
    (dx,) = torch.autograd.grad(fn(x, b), x, dy, create_graph=True)
    return torch.autograd.grad(dx, (x, b, dy), v, allow_unused=True)


DRIVERS = {"fwd": _fwd, "fwd_bwd": _fwd_bwd, "full": _full}


def kernel_benches(device, dtype, shapes, modes, acts=ACTS):
    from fastgan.ops import bias_act

    for shape in shapes:
        n = numel(shape)
        item = torch.empty((), dtype=dtype).element_size()
        x = torch.randn(shape, device=device, dtype=dtype)
        b = torch.randn(shape[1], device=device, dtype=dtype)
        for act in acts:
            ours = lambda xx, bb, a=act: bias_act(xx, bb, a)  # noqa: E731
            eager = lambda xx, bb, a=act: eager_bias_act(xx, bb, a)  # noqa: E731
            for mode in modes:
                if mode not in DRIVERS:
                    continue
                if mode == "fwd":
                    args = (x, b)
                else:
                    leaf_x = x.detach().clone().requires_grad_(True)
                    leaf_b = b.detach().clone().requires_grad_(True)
                    dy = torch.randn_like(x)
                    if mode == "fwd_bwd":
                        args = (leaf_x, leaf_b, dy)
                    else:
                        args = (leaf_x, leaf_b, dy.requires_grad_(True), torch.randn_like(x))
                driver = DRIVERS[mode]
                runs, skipped = backend_runs(OP, device, lambda d=driver, a=args, f=ours: d(f, *a))
                runs["eager"] = lambda d=driver, a=args, f=eager: d(f, *a)
                add_compiled(runs, skipped, eager, lambda f, d=driver, a=args: d(f, *a),
                             double_backward=mode == "full")
                key = (act, mode)
                yield Bench(op=OP, label=f"{act} {shape_label(shape)}", mode=mode, run=runs,
                            bytes=BYTES_PER_ELEMENT[key] * n * item, flops=FLOPS_PER_ELEMENT[key] * n,
                            skipped=skipped, size=n)


def textbook_d_step(critic, real, fake, alpha, weight=10.0):
    """One WGAN-GP critic step in plain PyTorch (Gulrajani et al.'s reference code), backward included."""
    critic.zero_grad(set_to_none=True)
    a = alpha.view(-1, *([1] * (real.dim() - 1)))
    points = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss = critic(fake).mean() - critic(real).mean() + weight * penalty
    loss.backward()
    return loss


def critic_benches(device, dtype, preset, seed=0):
    from fastgan.models import DCGANCritic
    from fastgan.nn import fuse_activations

    image, width, batch = CRITICS[preset if isinstance(preset, str) else "medium"]
    torch.manual_seed(seed)
    critic = DCGANCritic(image_size=image, channels=3, width=width).to(device=device, dtype=dtype)
    fused = fuse_activations(copy.deepcopy(critic))
    real = torch.rand(batch, 3, image, image, device=device, dtype=dtype) * 2 - 1
    fake = torch.rand(batch, 3, image, image, device=device, dtype=dtype) * 2 - 1
    alpha = torch.rand(batch, device=device, dtype=dtype)
    runs, skipped = backend_runs(OP, device, lambda: textbook_d_step(fused, real, fake, alpha))
    runs["eager"] = lambda: textbook_d_step(critic, real, fake, alpha)
    skipped["compile"] = compile_double_backward_reason() or "not benchmarked: the issue compares original vs fused"
    yield Bench(op=OP, label=f"wgan-gp critic {image}px-w{width}-B{batch}", mode="d_step", run=runs,
                skipped=skipped, samples=batch, size=batch,
                note="eager: the original DCGAN critic; backends: the same critic after fuse_activations")


@case(OP)
def bias_act_cases(device, dtype, preset, modes):
    yield from kernel_benches(device, dtype, sizes(preset, SIZES), modes)
    if "full" in modes:
        yield from critic_benches(device, dtype, preset)
