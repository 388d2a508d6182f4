"""T same-architecture ``nn.Sequential`` models evaluated as one model with grouped layers.

    grouped = GroupedSequential([DCGANCritic() for _ in range(5)])
    logits = grouped(images)              # images [B, C, H, W] shared by all -> [5, B]
    logits = grouped(per_model, shared=False)   # per_model [5, B, C, H, W]

Why not ``torch.vmap``. vmap runs each model's forward with batching rules that move the model dimension around
between layers (layout copies) and costs Python work per call. Here the T models' activations stay in one layout
for the whole network, the *grouped layout*: a component's activation of shape (B, d1, d2, ...) is stored at
[:, t*d1:(t+1)*d1] of a (B, T*d1, d2, ...) tensor, so that a channel-wise layer (batch norm, pooling, upsampling,
pixel shuffle) is one call on the grouped tensor, a convolution is one grouped convolution (groups = T x the layer's
groups), and a linear layer one batched matmul (on CPU, T GEMMs on strided slices joined by one cat: faster than
MKL's bmm there). A component output of shape (B,) is stored as (B, T). The first layer with parameters, when the
input is shared, is one ordinary layer with the T weights concatenated along the output dimension (no grouping, no
input copy). A plain convolution or linear layer followed by an activation that fastgan.ops.bias_act computes runs
as the layer without bias plus one fused bias_act; on CPU the 2-d convolutions run channels_last.

What runs grouped: nested ``nn.Sequential`` models (forward not overridden) of Conv1d/2d/3d, ConvTranspose1d/2d/3d
(zero padding), Linear, BatchNorm1d/2d/3d (momentum not None), fastgan's Conv2dAct, LinearAct and BiasAct
(dim 1 or -1), parameter-free elementwise activations, Dropout, Flatten, Unflatten, pooling, Upsample and
PixelShuffle. ``GroupedSequential.supports(modules)`` says whether a list of models qualifies; a layer that turns
out unsupported for the input's rank at call time raises ``GroupingUnsupported`` (callers fall back to vmap or a
loop).

Parameters are stacked on every call (``torch.stack`` of the T components' tensors, under no_grad with
``frozen=True``), so gradients reach each component's own parameters; batch-norm running statistics updated in the
call are copied back into each component once the whole forward has run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.nn.fuse import _activation_spec, _Unsupported
from fastgan.nn.layers import BiasAct, Conv2dAct, LinearAct
from fastgan.ops.bias_act import bias_act

__all__ = ["GroupedSequential", "GroupingUnsupported"]


class GroupingUnsupported(Exception):
    """A layer cannot run in the grouped layout (raised before any buffer is updated)."""


_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
                nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Tanhshrink, nn.Identity,
                nn.Dropout)
# Layers acting on each channel of (B, C, ...) alone: the grouped tensor is just more channels.
_CHANNELWISE = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_2D = (nn.Conv2d, nn.ConvTranspose2d)
_GEMM_LOOP_DEVICES = {"cpu"}  # where a per-model linear layer runs as T GEMMs (elsewhere: one bmm)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _leaves(module):
    for child in module:
        if type(child).forward is nn.Sequential.forward:
            yield from _leaves(child)
        else:
            yield child


def _supported(layer):
    if isinstance(layer, BiasAct):
        return layer.dim in (1, -1)
    if isinstance(layer, LinearAct):
        return True
    if isinstance(layer, Conv2dAct):
        return layer.padding_mode == "zeros"
    if type(layer) in _ELEMENTWISE or type(layer) in _CHANNELWISE:
        return not getattr(layer, "return_indices", False)
    if type(layer) in _CONV or type(layer) in _CONV_T:
        return layer.padding_mode == "zeros"
    if type(layer) in _BATCH_NORM:
        return layer.momentum is not None
    return type(layer) in (nn.Linear, nn.Flatten, nn.Unflatten)


def _bias_act_form(layer):
    """(act, alpha, gain, clamp) of fastgan.ops.bias_act computing this activation module, or None (the mapping
    fuse_activations uses)."""
    try:
        spec = _activation_spec(layer)
    except _Unsupported:
        return None
    return None if spec is None else (*spec, 1.0, None)


def _plan(layers):
    """[(layer index, fused activation or None)]: a plain convolution or linear layer directly followed by an
    activation bias_act computes runs as the layer without bias + one fused bias_act (its backward computes the
    bias gradient in the same pass); a lone ReLU or LeakyReLU runs as bias_act too (faster than eager on CPU)."""
    plan, index = [], 0
    while index < len(layers):
        layer = layers[index]
        follower = _bias_act_form(layers[index + 1]) if index + 1 < len(layers) else None
        plain = type(layer) in _CONV or type(layer) is nn.Linear
        if plain and follower is not None:
            plan.append((index, follower))
            index += 2
            continue
        alone = _bias_act_form(layer)
        plan.append((index, alone if alone is not None and alone[0] in ("relu", "lrelu") else None))
        index += 1
    return plan


class GroupedSequential:
    """Runs T same-architecture nn.Sequential models as one (see the module docstring).

    Args:
        modules: the T models (``supports(modules)`` must hold; they must also share an architecture, which the
            caller checks, e.g. with fastgan.mix.same_architecture).
        channels_last: run 2-d convolutions on channels_last activations. None (default): on CPU only, where
            oneDNN's grouped convolutions ran faster in that layout (an ad-hoc comparison on the dev machine;
            MixtureGAN(channels_last=...) sets it).
    """

    def __init__(self, modules, channels_last=None):
        self.modules = list(modules)
        self.channels_last = channels_last
        # layer index -> that layer of every model
        self.columns = [list(column) for column in zip(*(list(_leaves(m)) for m in self.modules))]
        self.plan = _plan([column[0] for column in self.columns])

    @staticmethod
    def supports(modules):
        """True when every model is a (nested) nn.Sequential whose leaf layers all have a grouped form."""
        return all(isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward
                   and all(_supported(layer) for layer in _leaves(m)) for m in modules)

    @property
    def uses_batch_statistics(self):
        """True when a layer mixes samples (batch norm computing batch statistics): then separate batches must be
        separate calls."""
        return any(type(layer) in _BATCH_NORM and (layer.training or not layer.track_running_stats)
                   for layer, *_ in self.columns)

    def __call__(self, x, shared=True, frozen=False):
        """Outputs of all T models stacked on dim 0: x [B, ...] given to every model (shared) or [T, B, ...].

        Returns [T, B, ...] (a view of the grouped result, not necessarily contiguous)."""
        count = len(self.modules)
        if not shared:
            if x.dim() < 2 or x.shape[0] != count:
                raise ValueError(f"x must be [T, B, ...] with T = {count} when not shared, got {tuple(x.shape)}")
            x = _to_grouped(x)
        rank = x.dim()  # rank of one component's activation
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        updates = []  # batch-norm statistics, copied into the models once the whole forward has run
        for index, act in self.plan:
            column = self.columns[index]
            if channels_last and x.dim() == 4 and isinstance(column[0], _CONV_2D):
                x = x.contiguous(memory_format=torch.channels_last)
            x, shared, rank = self._layer(column[0], column, x, shared, rank, frozen, act, updates)
        _write_back(updates)
        if shared:
            return x.unsqueeze(0).expand(count, *x.shape)
        if rank == 1:
            return x.t()
        return x.unflatten(1, (count, -1)).movedim(1, 0)

    def _layer(self, layer, column, x, shared, rank, frozen, act, updates):
        count = len(column)
        if type(layer) in _ELEMENTWISE:
            if act is not None:
                return bias_act(x, None, *act), shared, rank
            return layer(x), shared, rank
        if type(layer) in _CHANNELWISE:
            if rank < 3:
                raise GroupingUnsupported(f"{type(layer).__name__} on a rank-{rank} input")
            return layer(x), shared, rank
        if isinstance(layer, nn.Flatten):
            return _flatten(layer, x, shared, rank, count)
        if isinstance(layer, nn.Unflatten):
            return _unflatten(layer, x, shared, rank, count)
        if isinstance(layer, nn.Linear):
            if rank != 2:
                raise GroupingUnsupported(f"{type(layer).__name__} on a rank-{rank} input")
            if isinstance(layer, LinearAct):
                act = (layer.act, layer.alpha, layer.gain, layer.clamp)
            in_layer = act is None and column[0].bias is not None  # the layer adds its bias (else bias_act does)
            if not shared and x.device.type in _GEMM_LOOP_DEVICES:
                # A loop of GEMMs on strided slices, joined by one cat, with each model's own parameters: MKL's bmm
                # is ~1.3x slower than T GEMMs here, and its [T, B, out] result needs a transposing copy (unbind's
                # backward stacks the input gradients in one op).
                parts = x.unflatten(1, (count, -1)).unbind(1)
                y = torch.cat([F.linear(part, _own(m.weight, frozen), _own(m.bias, frozen) if in_layer else None)
                               for m, part in zip(column, parts)], dim=1)
            elif shared:
                y = F.linear(x, _stack(column, "weight", frozen).flatten(0, 1),
                             _stack(column, "bias", frozen, flat=True) if in_layer else None)
            else:
                weight = _stack(column, "weight", frozen)  # [T, out, in]
                y = torch.bmm(x.unflatten(1, (count, -1)).transpose(0, 1), weight.transpose(1, 2))  # [T, B, out]
                y = y.transpose(0, 1).flatten(1)
                if in_layer:
                    y = y + _stack(column, "bias", frozen, flat=True)
            if act is not None:
                y = bias_act(y, _stack(column, "bias", frozen, flat=True), *act, dim=1)
            return y, False, 2
        if type(layer) in _CONV or isinstance(layer, Conv2dAct):
            spatial = 2 if isinstance(layer, Conv2dAct) else _CONV.index(type(layer)) + 1
            if rank != spatial + 2:
                raise GroupingUnsupported(f"{type(layer).__name__} on a rank-{rank} input")
            if isinstance(layer, Conv2dAct):
                act = (layer.act, layer.alpha, layer.gain, layer.clamp)
            weight = _stack(column, "weight", frozen).flatten(0, 1)  # [T*out, in/groups, *k]
            bias = _stack(column, "bias", frozen, flat=True)
            groups = layer.groups if shared else layer.groups * count
            if shared and layer.groups > 1:
                x, groups = _repeat(x, count), layer.groups * count
            y = _CONV_FN[spatial](x, weight, None if act else bias, layer.stride, layer.padding, layer.dilation, groups)
            if act:
                y = bias_act(y, bias, *act, dim=1)
            return y, False, rank
        if type(layer) in _CONV_T:
            spatial = _CONV_T.index(type(layer)) + 1
            if rank != spatial + 2:
                raise GroupingUnsupported(f"{type(layer).__name__} on a rank-{rank} input")
            if shared and layer.groups == 1:  # stacked on dim 1: [in, T, out, *k] -> [in, T*out, *k], a view
                weight, groups = _stack(column, "weight", frozen, dim=1).flatten(1, 2), 1
            else:
                if shared:
                    x = _repeat(x, count)
                weight, groups = _stack(column, "weight", frozen).flatten(0, 1), layer.groups * count
            y = _CONV_T_FN[spatial](x, weight, _stack(column, "bias", frozen, flat=True), layer.stride,
                                    layer.padding, layer.output_padding, groups, layer.dilation)
            return y, False, rank
        if type(layer) in _BATCH_NORM:
            if rank < 2:
                raise GroupingUnsupported(f"{type(layer).__name__} on a rank-{rank} input")
            return _batch_norm(layer, column, _repeat(x, count) if shared else x, frozen, updates), False, rank
        if isinstance(layer, BiasAct):
            bias = _stack(column, "bias", frozen, flat=True)
            if bias is not None:
                # The bias runs along the grouped dimension 1: a channel dim (dim=1), or the features of [B, F].
                if rank < 2 or (layer.dim != 1 and rank != 2):
                    raise GroupingUnsupported(f"BiasAct(dim={layer.dim}) with a bias on a rank-{rank} input")
                if shared:
                    x, shared = _repeat(x, count), False
            return bias_act(x, bias, layer.act, layer.alpha, layer.gain, layer.clamp, dim=1), shared, rank
        raise GroupingUnsupported(f"no grouped form for {type(layer).__name__}")


def _own(tensor, frozen):
    return tensor.detach() if frozen and tensor is not None else tensor


def _stack(column, name, frozen, dim=0, flat=False):
    """The models' `name` tensors stacked on `dim` (flat: as one [T*n] vector, for biases and affine weights), or
    None where the layer has none."""
    tensors = [getattr(layer, name) for layer in column]
    if tensors[0] is None:
        return None
    if frozen:
        with torch.no_grad():  # one op, rather than a detach per component
            stacked = torch.stack(tensors, dim)
    else:
        stacked = torch.stack(tensors, dim)
    return stacked.flatten() if flat else stacked


def _to_grouped(x):
    """[T, B, d1, ...] -> (B, T*d1, ...); [T, B] -> (B, T)."""
    x = x.movedim(0, 1)
    return x.contiguous() if x.dim() == 2 else x.flatten(1, 2)


def _repeat(x, count):
    """A shared (B, d1, ...) input as the grouped tensor of T equal components."""
    if x.dim() == 1:
        return x.unsqueeze(1).expand(-1, count)
    return x.repeat(1, count, *([1] * (x.dim() - 2)))


def _flatten(layer, x, shared, rank, count):
    start = layer.start_dim % rank
    end = layer.end_dim % rank
    if shared:
        return x.flatten(start, end), True, rank - (end - start)
    if start >= 1:
        return x.flatten(start, end), False, rank - (end - start)
    if end != rank - 1:
        raise GroupingUnsupported(f"Flatten({layer.start_dim}, {layer.end_dim}) merging the batch with part of the "
                                  "features")
    if rank == 1:
        return x, False, 1
    # (B, T*d1, ...) -> component outputs (B*d1*...,), stored (N, T)
    return x.unflatten(1, (count, -1)).movedim(1, -1).reshape(-1, count), False, 1


def _unflatten(layer, x, shared, rank, count):
    dim = layer.dim % rank
    sizes = tuple(layer.unflattened_size)
    if shared:
        return x.unflatten(dim, sizes), True, rank + len(sizes) - 1
    if dim == 0:
        raise GroupingUnsupported("Unflatten of the batch dimension")
    if dim == 1:
        if -1 in sizes:
            known = 1
            for s in sizes:
                known *= s if s != -1 else 1
            sizes = tuple(x.shape[1] // count // known if s == -1 else s for s in sizes)
        sizes = (count * sizes[0],) + sizes[1:]
    return x.unflatten(dim, sizes), False, rank + len(sizes) - 1


def _batch_norm(layer, column, x, frozen, updates):
    training = layer.training or not layer.track_running_stats
    weight = _stack(column, "weight", frozen, flat=True)
    bias = _stack(column, "bias", frozen, flat=True)
    running = None
    if layer.track_running_stats:
        running = (torch.cat([bn.running_mean for bn in column]), torch.cat([bn.running_var for bn in column]))
    y = F.batch_norm(x, running[0] if running else None, running[1] if running else None, weight, bias, training,
                     layer.momentum, layer.eps)
    if running is not None and layer.training:
        updates.append((column, running))
    return y


def _write_back(updates):
    """Copies the batch-norm statistics the grouped call updated into each model (foreach ops: a few calls however
    many models and layers, which matters for host time on a GPU)."""
    if not updates:
        return
    own, new, counts = [], [], []
    for column, (mean, var) in updates:
        own += [bn.running_mean for bn in column] + [bn.running_var for bn in column]
        new += list(mean.chunk(len(column))) + list(var.chunk(len(column)))
        counts += [bn.num_batches_tracked for bn in column]
    with torch.no_grad():
        torch._foreach_copy_(own, new)
        torch._foreach_add_(counts, 1)
