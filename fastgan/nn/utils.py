"""Spectral normalisation (Miyato et al. 2018) with the semantics of torch.nn.utils.parametrizations.spectral_norm,
on fastgan's fused power iteration (fastgan/ops/spectral_norm.py).

    critic = fastgan.nn.utils.spectral_norm_all(critic)      # every Linear/Conv/ConvTranspose, batched update
    with fastgan.nn.utils.cached():                          # one power iteration per step, not per call
        loss = critic(fake).mean() - critic(real).mean() + gradient_penalty(critic, real, fake)
    loss.backward()

Semantics (as torch's parametrization): the weight becomes ``parametrizations.weight.original`` with buffers
``parametrizations.weight.0._u`` and ``._v`` (the same state_dict keys as torch, so checkpoints move between the
two); u and v start from torch's initialisation (the same random draws, then 15 power iterations); in training mode
every use of the weight runs ``n_power_iterations`` updates of u and v in place, in eval mode the stored vectors
are used; the gradient flows through sigma = u^T W v with u and v held constant; 1-D weights are normalised
exactly (``F.normalize``).

Fused: one kernel per layer computes the power iteration and sigma in one pass over W. For Linear, Conv1d/2d/3d
and ConvTranspose1d/2d/3d, 1/sigma is applied to the layer's output (y = op(x, W) / sigma + b, one ``addcdiv``)
instead of materialising W / sigma, when that moves less memory: when the output is smaller than a third of the
weight (Linear layers at small batch, the last convolutions of a deep critic; ``output_scaling=True/False``
forces a choice). Otherwise W / sigma is materialised by one multiply whose backward is one reduction and one
``addr`` pass (fastgan.ops.spectral_norm.SpectralNormWeight). Both paths are plain autograd graphs around
differentiable Functions, so gradient penalties (double backward) go through them.

Batched: ``spectral_norm_all(model)`` registers a forward pre-hook on the model that runs the power iterations of
all its normalised layers in one fused call (per device, dtype mix allowed) before the model runs; each layer then
uses its precomputed sigma once.

Several critic calls in one step (real, fake, interpolates): wrap them in ``cached()`` (it is torch's
``torch.nn.utils.parametrize.cached()``, which fastgan's layers honour too): the first use of a layer in the block
updates u and v and computes sigma; later uses reuse that sigma (recomputed only if the weight changed in place in
the meantime). Without it, every call updates u and v, as torch does.

DDP: u and v are buffers updated in place (never re-bound), so DistributedDataParallel's default
``broadcast_buffers=True`` copies rank 0's u and v to every rank at the start of every forward; the weights are
identical on every rank (DDP's gradient all-reduce) and the kernels are deterministic (fixed-order partial sums, no
atomics, independent of thread counts), so every rank then computes the same update and sigma. With
``broadcast_buffers=False``, call ``broadcast_spectral_norm_buffers(model)`` after construction (and after loading
a checkpoint): identical inputs keep the ranks identical from then on.
"""
import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from fastgan.ops._common import FLOATING
from fastgan.ops.spectral_norm import (SpectralNormSigma, SpectralNormWeight, _check_iterations,
                                       power_iteration_sigma, sigma_parts, spectral_norm_batched_values)

__all__ = ["SpectralNorm", "spectral_norm", "spectral_norm_all", "remove_spectral_norm", "remove_spectral_norm_all",
           "cached", "broadcast_spectral_norm_buffers"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FUSED_KINDS = (nn.Linear,) + _CONV + _CONV_TRANSPOSE
DEFAULT_TYPES = _FUSED_KINDS

_local = threading.local()
_TORCH_TOKEN_KEY = ("fastgan.nn.utils", "spectral_norm_cache_token")


class _Token:
    """Identifies one cache block: a sigma stored under it is valid until the block ends."""


@contextlib.contextmanager
def cached():
    """Within the block, each spectral-normalised layer updates u, v and sigma at most once (see module docstring).
    Also enables torch's parametrize.cached() for every other parametrization."""
    depth = getattr(_local, "depth", 0)
    if depth == 0:
        _local.token = _Token()
    _local.depth = depth + 1
    try:
        with parametrize.cached():
            yield
    finally:
        _local.depth -= 1
        if _local.depth == 0:
            _local.token = None


def _cache_token():
    """The current cache block's token, or None outside one (torch's own parametrize.cached() counts too)."""
    if getattr(_local, "depth", 0):
        return _local.token
    if getattr(parametrize, "_cache_enabled", 0):
        # torch's block: keep a token in its cache dict, which torch empties when the block ends.
        try:
            cache = parametrize._cache
            token = cache.get(_TORCH_TOKEN_KEY)
            if token is None:
                token = cache[_TORCH_TOKEN_KEY] = _Token()
            return token
        except (AttributeError, TypeError):
            return None
    return None


def _weight_key(weight):
    # Identifies the weight's current values: an in-place update (optimizer step) bumps _version.
    return weight.data_ptr(), weight._version


class _Update:
    """A layer's latest power-iteration result: sigma and 1 / sigma (0-dim, the weight's dtype), snapshots of u
    and v taken right after the update (what autograd saves), the weight's key, the cache block it belongs to,
    and whether a batched update left it for the next use. A plain object: nn.Module attributes are slow to set."""
    __slots__ = ("sigma", "inv", "u", "v", "key", "token", "pending")

    def __init__(self, parts, key, token, pending):
        self.sigma, self.inv, self.u, self.v = parts
        self.key, self.token, self.pending = key, token, pending


class SpectralNorm(nn.Module):
    """The parametrization W -> W / sigma(W) (torch's ``_SpectralNorm`` semantics, fused kernels).

    Buffers ``_u`` [h] and ``_v`` [w] in the weight's dtype. ``forward(weight)`` is what ``module.weight`` returns;
    the fused layer forward uses ``sigma`` instead.
    """

    def __init__(self, weight, n_power_iterations=1, dim=0, eps=1e-12, output_scaling=None):
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of [-{ndim}, {ndim - 1}] but got {dim})")
        _check_iterations(n_power_iterations)
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        self.output_scaling = output_scaling
        self.__dict__["_update"] = None
        if ndim > 1:
            weight_mat = _matrix(weight.detach(), self.dim)
            h, w = weight_mat.size()
            # torch's initialisation, draw for draw: the same seed gives the same u and v as torch's spectral_norm.
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))
            with torch.no_grad():
                spectral_norm_batched_values([weight.detach()], [self._u], [self._v], [self.dim], 15, self.eps, True)

    def current(self, weight):
        """The _Update for this use of `weight`: a batched or cached one when valid, else a fresh power iteration
        (updating u and v first in training mode)."""
        token = _cache_token()
        update = self.__dict__["_update"]
        if update is not None and update.key == _weight_key(weight) and (
                update.pending or (token is not None and update.token is token)):
            update.pending = False
            return update
        sigma = power_iteration_sigma([weight], [self._u], [self._v], [self.dim], self.n_power_iterations, self.eps,
                                      self.training)
        (parts,) = sigma_parts(sigma, [weight], [self._u], [self._v], snapshots=_needs_snapshots(weight))
        update = _Update(parts, _weight_key(weight), token, pending=False)
        self.__dict__["_update"] = update
        return update

    def _ready(self, weight, token):
        update = self.__dict__["_update"]
        return update is not None and token is not None and update.token is token and update.key == _weight_key(weight)

    def sigma(self, weight):
        """sigma(weight) as a differentiable 0-dim tensor (u, v constant)."""
        update = self.current(weight)
        return SpectralNormSigma.apply(weight, update.u, update.v, update.sigma, self.dim)

    def forward(self, weight):
        if weight.ndim == 1:  # exact, as torch: no power iteration
            return F.normalize(weight, dim=0, eps=self.eps)
        update = self.current(weight)
        return SpectralNormWeight.apply(weight, update.u, update.v, update.sigma, update.inv, self.dim)

    def right_inverse(self, value):
        return value

    def extra_repr(self):
        return f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def _needs_snapshots(weight):
    # Autograd keeps u and v only for a weight that requires grad: otherwise the buffers themselves do. (Not tied
    # to the grad mode: a cached update made under no_grad may serve a later call that records.)
    return weight.requires_grad


def _matrix(weight, dim):
    return (weight.movedim(dim, 0) if dim != 0 else weight).flatten(1)


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None, *, output_scaling=None):
    """Spectral normalisation of ``module.<name>``, as torch.nn.utils.parametrizations.spectral_norm.

    Args:
        module: the layer (Linear, Conv1d/2d/3d and ConvTranspose1d/2d/3d get the fused forward; any other module
            with a floating tensor `name` gets the parametrization).
        name: the weight's name.
        n_power_iterations: power iterations per update (>= 1).
        eps: the norms' floor.
        dim: the output dimension of the weight: default 0, 1 for ConvTranspose.
        output_scaling: None (auto: 1/sigma on the output when it moves less memory), True or False.
    Returns: the module.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"Module '{type(module).__name__}' has no parameter or buffer with name '{name}'")
    if weight.dtype not in FLOATING:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {weight.dtype}")
    _check_iterations(n_power_iterations)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if output_scaling not in (None, True, False):
        raise ValueError(f"output_scaling must be None, True or False, got {output_scaling!r}")
    if dim is None:
        dim = 1 if isinstance(module, _CONV_TRANSPOSE) else 0
    original_cls = type(module)
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, dim, eps, output_scaling))
    # torch made a class of its own for this module (ParametrizedX): the fused forward goes on it, so torch's
    # remove_parametrizations, which restores the original class, removes it too.
    if name == "weight" and original_cls in _FUSED_KINDS and type(module).__bases__[0] is original_cls:
        type(module).forward = _FORWARDS[_kind(original_cls)]
    return module


def spectral_norm_all(model, n_power_iterations=1, eps=1e-12, types=DEFAULT_TYPES, *, output_scaling=None):
    """Spectral normalisation of every submodule of `model` that is an instance of `types` (by default Linear,
    Conv1d/2d/3d and ConvTranspose1d/2d/3d), with one batched power-iteration call per forward of `model`.

    Layers already normalised by ``spectral_norm`` are kept (and join the batched update). Returns the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for module in list(model.modules()):
        if isinstance(module, types) and _spectral_norm_of(module) is None and hasattr(module, "weight"):
            spectral_norm(module, "weight", n_power_iterations, eps, output_scaling=output_scaling)
    # (parametrization, its ParametrizationList) pairs, looked up once: indexing module lists per step is slow.
    entries = [(m.parametrizations["weight"][0], m.parametrizations["weight"]) for m in model.modules()
               if _spectral_norm_of(m) is not None]
    model.__dict__["_fastgan_spectral_norms"] = entries
    if "_fastgan_spectral_norm_hook" not in model.__dict__:
        model.__dict__["_fastgan_spectral_norm_hook"] = model.register_forward_pre_hook(_batched_update)
    return model


def _batched_update(model, args):
    """Forward pre-hook of spectral_norm_all: every normalised layer's power iteration in one fused call."""
    entries = model.__dict__.get("_fastgan_spectral_norms", ())
    token = _cache_token()
    groups = {}
    for sn, plist in entries:
        weight = plist.original
        if weight.ndim < 2 or sn._ready(weight, token):
            continue
        key = (weight.get_device(), sn.n_power_iterations, sn.eps, sn.training)
        groups.setdefault(key, []).append((sn, weight))
    for (_, n_iter, eps, training), items in groups.items():
        weights = [w for _, w in items]
        snapshots = any(_needs_snapshots(w) for w in weights)
        buffers = [sn._buffers for sn, _ in items]
        us, vs = [b["_u"] for b in buffers], [b["_v"] for b in buffers]
        with torch.no_grad():
            sigma = power_iteration_sigma(weights, us, vs, [sn.dim for sn, _ in items], n_iter, eps, training)
        parts = sigma_parts(sigma, weights, us, vs, snapshots=snapshots)
        for (sn, weight), part in zip(items, parts):
            sn.__dict__["_update"] = _Update(part, _weight_key(weight), token, pending=True)


def remove_spectral_norm(module, name="weight"):
    """Undo ``spectral_norm``: the weight becomes a plain parameter holding W / sigma (as torch's
    remove_parametrizations with leave_parametrized=True). Returns the module."""
    if _spectral_norm_of(module, name) is None:
        raise ValueError(f"spectral_norm of '{name}' not found in {type(module).__name__}")
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return module


def remove_spectral_norm_all(model):
    """Undo ``spectral_norm_all`` (and every ``spectral_norm`` on a submodule's weight). Returns the model."""
    for module in list(model.modules()):
        if _spectral_norm_of(module) is not None:
            remove_spectral_norm(module)
    hook = model.__dict__.pop("_fastgan_spectral_norm_hook", None)
    if hook is not None:
        hook.remove()
    model.__dict__.pop("_fastgan_spectral_norms", None)
    return model


def broadcast_spectral_norm_buffers(model, src=0, group=None):
    """Copy rank `src`'s u and v of every spectral-normalised layer to all ranks (torch.distributed must be
    initialised). Needed only under DDP with broadcast_buffers=False (see the module docstring)."""
    import torch.distributed as dist

    for module in model.modules():
        sn = _spectral_norm_of(module)
        if sn is not None and hasattr(sn, "_u"):
            dist.broadcast(sn._u, src, group=group)
            dist.broadcast(sn._v, src, group=group)
            sn.__dict__["_update"] = None


def _spectral_norm_of(module, name="weight"):
    """The SpectralNorm parametrizing ``module.<name>`` alone, or None."""
    plists = getattr(module, "parametrizations", None)
    if plists is None or name not in plists:
        return None
    plist = plists[name]
    return plist[0] if len(plist) == 1 and isinstance(plist[0], SpectralNorm) else None


def _kind(cls):
    for kind in _FUSED_KINDS:
        if issubclass(cls, kind):
            return kind
    return None


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


def _scale_output(sn, weight, out_numel):
    if sn.output_scaling is not None:
        return sn.output_scaling
    return 3 * out_numel < weight.numel()


def _fused_parts(module, input, out_numel):
    """(weight, sigma) when the output-scaled path applies to this call, else None."""
    sn = _spectral_norm_of(module)
    if sn is None:
        return None
    weight = module.parametrizations["weight"].original
    if weight.ndim < 2 or not _scale_output(sn, weight, out_numel):
        return None
    return weight, sn.sigma(weight)


def _finish(y, bias, sigma, spatial_dims):
    if bias is None:
        return y / sigma
    return torch.addcdiv(bias.view(-1, *([1] * spatial_dims)) if spatial_dims else bias, y, sigma)


def _linear_forward(self, input):
    parts = _fused_parts(self, input, input.numel() // max(self.in_features, 1) * self.out_features)
    if parts is None:
        return nn.Linear.forward(self, input)
    weight, sigma = parts
    return _finish(F.linear(input, weight), self.bias, sigma, 0)


def _conv_forward(self, input):
    kind = _kind(type(self))
    spatial = len(self.kernel_size)
    out_numel = input.numel() // max(self.in_channels, 1) * self.out_channels // max(_prod(self.stride), 1)
    parts = _fused_parts(self, input, out_numel)
    if parts is None:
        return kind.forward(self, input)
    weight, sigma = parts
    return _finish(self._conv_forward(input, weight, None), self.bias, sigma, spatial)


_CONV_TRANSPOSE_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _conv_transpose_forward(self, input, output_size=None):
    kind = _kind(type(self))
    spatial = len(self.kernel_size)
    out_numel = input.numel() // max(self.in_channels, 1) * self.out_channels * _prod(self.stride)
    parts = _fused_parts(self, input, out_numel) if self.padding_mode == "zeros" else None
    if parts is None:
        return kind.forward(self, input, output_size)
    weight, sigma = parts
    output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, spatial,
                                          self.dilation)
    y = _CONV_TRANSPOSE_FN[spatial](input, weight, None, self.stride, self.padding, output_padding, self.groups,
                                    self.dilation)
    return _finish(y, self.bias, sigma, spatial)


_FORWARDS = {nn.Linear: _linear_forward, **{k: _conv_forward for k in _CONV},
             **{k: _conv_transpose_forward for k in _CONV_TRANSPOSE}}
