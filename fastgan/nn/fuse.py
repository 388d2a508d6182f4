"""fuse_activations: turn an existing model's Conv2d/Linear + activation pairs into fused blocks, weights kept.

Inside every nn.Sequential (nested ones too), a plain nn.Conv2d or nn.Linear directly followed by a supported
activation module becomes a Conv2dAct / LinearAct *in place*: the layer object keeps its parameters, buffers and
forward pre-hooks (torch.nn.utils.spectral_norm / weight_norm keep working, and so do parametrizations such as
torch.nn.utils.parametrizations.spectral_norm), and the activation is replaced by nn.Identity so that module
indices, parameter names and state_dict keys do not change. Pairs it cannot fuse are left untouched and listed in
the report with the reason.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import List, Optional, Tuple

from torch import nn
from torch.nn.utils import parametrize

from fastgan.nn.layers import Conv2dAct, LinearAct

log = logging.getLogger("fastgan")

_FUSED = {nn.Conv2d: Conv2dAct, nn.Linear: LinearAct}
_parametrized_classes = {}


@dataclasses.dataclass
class FusionReport:
    """What fuse_activations replaced (path, before, after) and what it left alone (path, reason)."""

    replaced: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"fuse_activations: {len(self.replaced)} fused, {len(self.skipped)} left unchanged"]
        lines += [f"  fused    {path or '<root>'}: {before} -> {after}" for path, before, after in self.replaced]
        lines += [f"  unchanged {path or '<root>'}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


class _Unsupported(Exception):
    pass


def _activation_spec(module) -> Optional[Tuple[str, Optional[float]]]:
    """(act, alpha) for a supported activation module, None for a module that is no activation we know."""
    kind = type(module)
    if kind is nn.LeakyReLU:
        return "lrelu", float(module.negative_slope)
    if kind is nn.ReLU:
        return "relu", None
    if kind is nn.Tanh:
        return "tanh", None
    if kind is nn.Sigmoid:
        return "sigmoid", None
    if kind is nn.ELU:
        return "elu", float(module.alpha)
    if kind is nn.SELU:
        return "selu", None
    if kind is nn.Softplus:
        if module.threshold != 20:
            raise _Unsupported(f"Softplus threshold {module.threshold} (only the default 20 is fused)")
        if module.beta <= 0:
            raise _Unsupported(f"Softplus beta {module.beta} <= 0")
        return "softplus", float(module.beta)
    if kind is nn.SiLU:
        return "silu", None
    if kind is nn.GELU:
        return ("gelu" if module.approximate == "none" else "gelu_tanh"), None
    if kind.__module__ == "torch.nn.modules.activation":
        raise _Unsupported(f"{kind.__name__} is not a fused activation")
    return None


def _fused_class(layer):
    """The class to give `layer`, or raise _Unsupported with the reason."""
    kind = type(layer)
    if kind in _FUSED:
        return _FUSED[kind]
    if parametrize.is_parametrized(layer) and kind.__bases__[0] in _FUSED:
        # torch.nn.utils.parametrize gave the layer a subclass holding the parametrized properties; derive from
        # it too, so that `weight` keeps resolving through the parametrization.
        if kind not in _parametrized_classes:
            base = _FUSED[kind.__bases__[0]]
            _parametrized_classes[kind] = type(f"{kind.__name__}Act", (base, kind), {})
        return _parametrized_classes[kind]
    raise _Unsupported(f"{kind.__name__} is not a plain nn.Conv2d / nn.Linear")


def _check_hooks(layer, activation):
    if layer._forward_hooks or getattr(layer, "_forward_hooks_with_kwargs", None):
        raise _Unsupported("the layer has forward hooks (they would see the activation's output)")
    if layer._backward_hooks or getattr(layer, "_backward_pre_hooks", None):
        raise _Unsupported("the layer has backward hooks")
    if activation._forward_hooks or activation._forward_pre_hooks or activation._backward_hooks:
        raise _Unsupported("the activation has hooks")


def _describe(layer, act, alpha):
    return f"{type(layer).__name__}+{act}" + (f"({alpha})" if alpha is not None else "")


def fuse_activations(module: nn.Module, inplace: bool = False, return_report: bool = False):
    """Fuse every Conv2d/Linear + activation pair inside nn.Sequential containers of `module`.

    Supported activations: nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.Softplus (threshold 20),
    nn.SiLU, nn.GELU. The converted model computes the same function with the same parameters (outputs and
    gradients agree within floating-point tolerance) and loads the original's state_dict.

    Args:
        module: the model.
        inplace: convert `module` itself (its parameters stay the same objects, so an optimizer built on them
            keeps working); by default a deep copy is converted and `module` is left as it was.
        return_report: also return a FusionReport of what was fused and what was not (and why).
    Returns:
        the converted model, or (model, FusionReport) with return_report=True. The report is logged at INFO
        level on the "fastgan" logger either way.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be a bool, got {type(inplace).__name__}")
    if not inplace:
        module = copy.deepcopy(module)
    report = FusionReport()
    uses = {}
    for _, sub in module.named_modules(remove_duplicate=False):
        uses[id(sub)] = uses.get(id(sub), 0) + 1
    for path, container in list(module.named_modules()):
        if not isinstance(container, nn.Sequential):
            continue
        if type(container).forward is not nn.Sequential.forward:
            report.skipped.append((path, f"{type(container).__name__} overrides Sequential.forward"))
            continue
        items = list(container._modules.items())
        for (name, layer), (act_name, activation) in zip(items, items[1:]):
            if not isinstance(layer, (nn.Conv2d, nn.Linear)) or isinstance(layer, (Conv2dAct, LinearAct)):
                continue
            where = f"{path}.{name}" if path else name
            try:
                spec = _activation_spec(activation)
                if spec is None:
                    continue  # not followed by an activation: nothing to fuse, nothing to report
                if uses[id(layer)] > 1 or uses[id(activation)] > 1:
                    raise _Unsupported("the layer or its activation is shared with another part of the model")
                new_class = _fused_class(layer)
                _check_hooks(layer, activation)
            except _Unsupported as why:
                report.skipped.append((where, str(why)))
                continue
            act, alpha = spec
            before = _describe(layer, act, alpha)
            layer.__class__ = new_class
            layer.act, layer.alpha, layer.gain, layer.clamp = act, alpha, 1.0, None
            container._modules[act_name] = nn.Identity()
            report.replaced.append((where, before, new_class.__name__))
    log.info("%s", report)
    return (module, report) if return_report else module
