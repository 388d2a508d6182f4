"""spectral_norm: sigma(W), the largest singular value of a weight, by the power iteration of spectral
normalisation (Miyato et al. 2018), fused, for one layer or a batch of layers in one call.

Maths. The weight of shape [d_0, ..., d_n] is seen as the matrix W = weight.movedim(dim, 0).flatten(1) of
[h, w] (h = d_dim; dim = 0, or 1 for ConvTranspose). With buffers u [h] and v [w], one power iteration is
torch's ``_power_method`` step:

    u <- normalize(W v),   v <- normalize(W^T u),   normalize(x) = x / max(||x||, eps),

and sigma = u^T W v with the (updated, in training) u and v. The kernels do an iteration in ONE pass over W:
s = W v row by row, accumulating W^T s = sum_r s_r W_r while the row is in cache; then u = s / max(|s|, eps),
t = W^T u = W^T s / max(|s|, eps), v = t / max(|t|, eps) and sigma = u^T W v = t . v (the same number as
torch's vdot(u, W v) up to rounding, without a third pass). In eval mode (update=False) u and v are kept and
sigma = u^T W v takes one pass.

Gradient (u, v held constant, as in torch's parametrization, which clones them):
    d sigma / d W = u v^T  (reshaped back to the weight's shape), so  dL/dW = g * u v^T;
second order: sigma is linear in W for fixed u, v, so d^2 sigma / dW^2 = 0 and the backward (g * outer(u, v),
written in PyTorch ops) is exact at every order. ``spectral_norm_weight`` returns W / sigma with the fused
backward  dL/dW = G / sigma - <G, W> / sigma^2 * u v^T  (one reduction and one ``addr``, both differentiable).

Shapes: weight [d_0, ..., d_n] (n >= 1) floating, u [h] and v [w] in the weight's dtype and device (updated in
place when update=True). sigma: a 0-dim tensor in the weight's dtype; the kernels accumulate in fp32 (fp64 for
fp64 weights) and return float64 values. Saved for backward: clones of u and v (h + w elements).
Batched: ``spectral_norm_batched`` runs the power iteration of every layer of a list in one call (CPU: one
parallel region per phase; CUDA: two launches per iteration for up to 24 layers; Triton: two launches per layer).
"""
import torch
import torch.nn.functional as F

from fastgan import _ext, backends
from fastgan.ops._common import FLOATING

CUDA_ORDER = ("cuda", "triton")


def _outer_to_weight(scale, u, v, dim, shape):
    """scale * u v^T reshaped from the [h, w] matrix view back to a weight of `shape`."""
    moved = (shape[dim],) + tuple(s for i, s in enumerate(shape) if i != dim)
    out = torch.outer(u * scale, v).reshape(moved)
    return out.movedim(0, dim) if dim != 0 else out


class SpectralNormSigma(torch.autograd.Function):
    """sigma = u^T W v as a function of the weight, its value computed by the fused kernel; u, v constants.

    Inputs: the weight, snapshots of u and v (tensors nobody updates later: autograd keeps them for backward),
    sigma's value (a 0-dim tensor in the weight's dtype, or a Python float on CPU), dim."""

    @staticmethod
    def forward(ctx, weight, u, v, sigma, dim):
        ctx.dim = dim
        ctx.shape = tuple(weight.shape)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(u, v)
        if isinstance(sigma, float):
            return torch.full((), sigma, dtype=weight.dtype, device=weight.device)
        return sigma.clone()

    @staticmethod
    def backward(ctx, grad):
        u, v = ctx.saved_tensors
        return _outer_to_weight(grad, u, v, ctx.dim, ctx.shape), None, None, None, None


class SpectralNormWeight(torch.autograd.Function):
    """W / sigma with sigma = u^T W v (value from the kernel); backward: one reduction and one addr pass.

    Inputs: the weight, snapshots of u and v, sigma and 1 / sigma (0-dim tensors in the weight's dtype, or Python
    floats on CPU, where reading a value costs nothing), dim."""

    @staticmethod
    def forward(ctx, weight, u, v, sigma, inv, dim):
        ctx.dim = dim
        if ctx.needs_input_grad[0]:
            if isinstance(sigma, float):
                ctx.sigma, ctx.inv = sigma, inv
                ctx.save_for_backward(weight, u, v)
            else:
                ctx.sigma = ctx.inv = None
                ctx.save_for_backward(weight, u, v, sigma, inv)
        return weight * inv

    @staticmethod
    def backward(ctx, grad):
        if ctx.sigma is None:
            weight, u, v, sigma, inv = ctx.saved_tensors
        else:
            (weight, u, v), sigma, inv = ctx.saved_tensors, ctx.sigma, ctx.inv
        dim = ctx.dim
        g_mat = (grad.movedim(dim, 0) if dim else grad).reshape(u.shape[0], -1)
        if torch.is_grad_enabled():
            # A higher order is being built: sigma as a function of the weight, every step a differentiable op.
            inv = 1.0 / SpectralNormSigma.apply(weight, u, v, sigma, dim)
        if isinstance(inv, float):
            # One pass: addr with Python scalars (CPU).
            dot = torch.vdot(grad.reshape(-1), weight.reshape(-1)).item()
            out = torch.addr(g_mat, u, v, beta=inv, alpha=-dot * inv * inv)
        else:
            # Tensors: differentiable, and no host sync on GPUs (one more pass).
            coef = -torch.vdot(grad.reshape(-1), weight.reshape(-1)) * inv * inv
            out = torch.addr(g_mat * inv, u, v * coef)
        # grad / sigma - <grad, W> / sigma^2 * u v^T, back in the weight's shape
        if dim:
            moved = (weight.shape[dim],) + tuple(s for i, s in enumerate(weight.shape) if i != dim)
            return out.reshape(moved).movedim(0, dim), None, None, None, None, None
        return out.reshape(weight.shape), None, None, None, None, None


def sigma_parts(sigma, weights, us, vs, snapshots=True):
    """Per layer (sigma, 1 / sigma, u snapshot, v snapshot) from a float64 [L] sigma, in a handful of ops for all
    layers together: sigma and its inverse in each weight's dtype, and copies of u and v taken now (autograd
    saves them; the buffers change in place at the next update). snapshots=False: the buffers themselves.
    On CPU sigma and 1 / sigma come as Python floats (one read of the [L] tensor), on GPUs as 0-dim tensors (no
    host synchronisation)."""
    if sigma.device.type == "cpu":
        sigmas = sigma.tolist()
        invs = [1.0 / x if x != 0 else float("inf") for x in sigmas]
    elif all(w.dtype == weights[0].dtype for w in weights):
        sig = sigma.to(weights[0].dtype)
        sigmas, invs = sig.unbind(), sig.reciprocal().unbind()
    else:
        sigmas = [sigma[i].to(w.dtype) for i, w in enumerate(weights)]
        invs = [s.reciprocal() for s in sigmas]
    if snapshots:
        copies = torch.cat(list(us) + list(vs)).split([u.numel() for u in us] + [v.numel() for v in vs])
        us, vs = copies[:len(us)], copies[len(us):]
    return list(zip(sigmas, invs, us, vs))


def spectral_norm(weight, u, v, dim=0, n_power_iterations=1, eps=1e-12, update=True):
    """sigma(weight) by the fused power iteration (u, v updated in place when `update`), differentiable with
    respect to the weight (u, v constant). Returns a 0-dim tensor in the weight's dtype."""
    (value,) = spectral_norm_batched_values([weight], [u], [v], [dim], n_power_iterations, eps, update)
    ((sigma, _, u_snap, v_snap),) = sigma_parts(value.reshape(1), [weight], [u], [v])
    return SpectralNormSigma.apply(weight, u_snap, v_snap, sigma, _positive_dim(dim, weight.dim()))


def spectral_norm_weight(weight, u, v, dim=0, n_power_iterations=1, eps=1e-12, update=True):
    """weight / sigma(weight) with the fused power iteration and the two-pass backward (see module docstring)."""
    (value,) = spectral_norm_batched_values([weight], [u], [v], [dim], n_power_iterations, eps, update)
    ((sigma, inv, u_snap, v_snap),) = sigma_parts(value.reshape(1), [weight], [u], [v])
    return SpectralNormWeight.apply(weight, u_snap, v_snap, sigma, inv, _positive_dim(dim, weight.dim()))


def spectral_norm_batched(weights, us, vs, dims, n_power_iterations=1, eps=1e-12, update=True):
    """[sigma(W_i)] for a list of layers, their power iterations in one fused call per device."""
    values = spectral_norm_batched_values(weights, us, vs, dims, n_power_iterations, eps, update)
    out = []
    for w, u, v, d, value in zip(weights, us, vs, dims, values):
        ((sigma, _, u_snap, v_snap),) = sigma_parts(value.reshape(1), [w], [u], [v])
        out.append(SpectralNormSigma.apply(w, u_snap, v_snap, sigma, _positive_dim(d, w.dim())))
    return out


def spectral_norm_batched_values(weights, us, vs, dims, n_power_iterations=1, eps=1e-12, update=True):
    """The detached sigma values (float64 0-dim tensors) of a list of layers; u and v updated in place if
    `update`. The kernel entry point shared by the functions above and fastgan.nn.utils."""
    _check_iterations(n_power_iterations)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if not (len(weights) == len(us) == len(vs) == len(dims)):
        raise ValueError("weights, us, vs and dims must have one entry per layer")
    prepared = []
    for i, (w, u, v, d) in enumerate(zip(weights, us, vs, dims)):
        for name, t in (("weights", w), ("us", u), ("vs", v)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if w.dtype not in FLOATING:
            raise TypeError(f"weights[{i}] must be float32, float64, float16 or bfloat16, got {w.dtype}")
        if w.dim() < 2:
            raise ValueError(f"weights[{i}] must have at least 2 dimensions (1-D weights are normalised exactly: "
                             f"F.normalize), got shape {tuple(w.shape)}")
        d = _positive_dim(d, w.dim())
        h = w.shape[d]
        if u.shape != (h,) or v.shape != (w.numel() // max(h, 1),) or u.dtype != w.dtype or v.dtype != w.dtype:
            raise ValueError(f"us[{i}] and vs[{i}] must be vectors of {h} and {w.numel() // max(h, 1)} elements "
                             f"with the weight's dtype {w.dtype}")
        prepared.append(d)
    return power_iteration_values(weights, us, vs, prepared, int(n_power_iterations), float(eps), bool(update))


def power_iteration_values(weights, us, vs, dims, n_power_iterations, eps, update):
    """spectral_norm_batched_values without the argument checks (fastgan.nn.utils checks once, at registration):
    weights of >= 2 dimensions, u and v of the right sizes and dtype, dims in [0, ndim)."""
    values = [None] * len(weights)
    devices = {}
    for i, w in enumerate(weights):
        devices.setdefault(w.get_device(), []).append(i)
    for idx in devices.values():
        pick = lambda lst: [lst[i] for i in idx]  # noqa: E731
        sigma = power_iteration_sigma(pick(weights), pick(us), pick(vs), pick(dims), n_power_iterations, eps,
                                      update)
        for i, value in zip(idx, sigma.unbind()):
            values[i] = value
    return values


def power_iteration_sigma(weights, us, vs, dims, n_power_iterations, eps, update):
    """As power_iteration_values for layers on one device, returning one float64 [L] tensor of their sigmas."""
    device = weights[0].device
    backend = backends.select_cached("spectral_norm", device, CUDA_ORDER)
    if backend == "reference":
        return torch.stack([spectral_norm_reference(w.detach(), u, v, d, n_power_iterations, eps, update).detach()
                            .double() for w, u, v, d in zip(weights, us, vs, dims)])
    if any(w.numel() == 0 for w in weights):  # no rows or columns: sigma 0, nothing to update
        sigma = torch.zeros(len(weights), dtype=torch.float64, device=device)
        keep = [i for i, w in enumerate(weights) if w.numel()]
        if keep:
            pick = lambda lst: [lst[i] for i in keep]  # noqa: E731
            sigma[keep] = power_iteration_sigma(pick(weights), pick(us), pick(vs), pick(dims), n_power_iterations,
                                                eps, update)
        return sigma
    ws, us_k, vs_k = [], [], []
    for w, u, v in zip(weights, us, vs):
        w = w.detach()
        ws.append(w if w.is_contiguous() else w.contiguous())
        us_k.append(u if u.is_contiguous() else u.contiguous())
        vs_k.append(v if v.is_contiguous() else v.contiguous())
    sigma = _kernels(backend).power_iteration(ws, us_k, vs_k, list(dims), n_power_iterations, eps, update)
    for u, v, uk, vk in zip(us, vs, us_k, vs_k):
        if uk is not u:  # a non-contiguous buffer: write the update back
            u.copy_(uk)
        if vk is not v:
            v.copy_(vk)
    return sigma


def spectral_norm_reference(weight, u, v, dim=0, n_power_iterations=1, eps=1e-12, update=True):
    """The specification: torch's ``_SpectralNorm`` (power iteration in place under no_grad when `update`,
    then sigma = vdot(u, W v) with clones of u and v), differentiable with respect to the weight."""
    dim = _positive_dim(dim, weight.dim())
    weight_mat = weight.movedim(dim, 0).flatten(1) if dim != 0 else weight.flatten(1)
    if update:
        with torch.no_grad():
            for _ in range(n_power_iterations):
                u.copy_(F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps))
                v.copy_(F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=eps))
    return torch.vdot(u.clone(), torch.mv(weight_mat, v.clone()))


def _positive_dim(dim, ndim):
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for a weight with {ndim} dimensions")
    return dim % ndim


def _check_iterations(n_power_iterations):
    if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, int):
        raise TypeError(f"n_power_iterations must be an int, got {type(n_power_iterations).__name__}")
    if n_power_iterations < 1:
        raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")


class _ExtensionKernels:
    @staticmethod
    def power_iteration(weights, us, vs, dims, n_power_iterations, eps, update):
        return torch.ops.fastgan.spectral_norm_power_iteration_(weights, us, vs, dims, n_power_iterations, eps,
                                                                update)


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import spectral_norm as triton_kernels
        return triton_kernels
    return _ExtensionKernels


@_ext.on_load
def _register_fakes():
    @torch.library.register_fake("fastgan::spectral_norm_power_iteration_")
    def _power_iteration_fake(weights, us, vs, dims, n_power_iterations, eps, update):
        return weights[0].new_empty(len(weights), dtype=torch.float64)
