"""Drop-in gradient penalties: one call replaces the hand-written penalty of a WGAN-GP, WGAN-LP, R1, R2 or DRAGAN
critic step. Each returns a scalar to add to the critic loss; its .backward() gives the critic's parameters the
penalty's gradient. The critic may return [B] or [B, 1]; `critic_kwargs` passes labels etc. to conditional critics.

The penalties train the critic only: real and fake are detached, as in the papers' reference code.

Every penalty is P = weight * mean_b phi(||g_b||) with g = grad_x sum_b D(x_b) at the penalty's points x, and
phi(n) = (n - t)^2 (two-sided), max(0, n - t)^2 (one-sided) or n^2 (R1/R2). Its parameter gradient is

    dP/dtheta = sum_b < v_b, d g_b / dtheta >,   v_b = dP/dg_b = weight/B * phi'(||g_b||) * g_b / ||g_b||,

and `method=` chooses how that is computed:

- "double_backward" (default): autograd.grad(create_graph=True) builds the graph of g, the loss's backward
  differentiates it (the textbook recipe).
- "jvp": exact without double backward. g comes from one ordinary backward; v is then a constant, so
  dP/dtheta = d/dtheta sum_b <v_b, grad_x D(x_b)>, and sum_b <v_b, grad_x D(x_b)> is the forward-mode directional
  derivative of sum_b D at x along v (torch.autograd.forward_ad). The loss's backward differentiates that forward-mode
  computation: one forward with dual tensors, one ordinary reverse pass. The direction is v / s with
  s = max_b ||v_b|| (so the tangents stay O(1) in fp16/bf16) and the result is multiplied back by s; with one
  direction for the whole batch this is exact even for critics that mix samples. Every op in the critic needs
  forward-mode AD (fastgan.nn blocks have it; a custom autograd.Function needs a `jvp`): if one lacks it, the error
  names it.
- "finite_difference": the directional derivative is replaced by the central difference
  [D(x_b + h u_b) - D(x_b - h u_b)] / 2h along the per-sample unit direction u_b = v_b / ||v_b||, weighted by
  ||v_b||: only ordinary forwards and backwards, so it runs through a torch.compile'd critic and through anything
  without forward-mode or double-backward support. Its error is O(h^2) for smooth critics (softplus, tanh, ELU,
  SiLU...) plus rounding O(eps * ||x_b|| / h); the default per-sample step h_b = (eps * max(1, ||x_b||))^(1/3),
  eps of the dtype the critic computes in, balances the two. Measured for smooth critics: ~1e-9 relative to the exact
  gradient in fp64, 1e-4 to 3e-3 in fp32, 5-25% under fp16/bf16 autocast (use jvp there). For ReLU/LeakyReLU (any
  piecewise-linear) critics it estimates a different, smoothed gradient: the input gradient jumps wherever a unit
  switches, and kinks crossed within +-h make the difference differ from the exact gradient by O(1) (relative
  differences above 1 are normal: 4.4 measured for a DCGAN LeakyReLU critic in fp32). A warning is given when the
  critic visibly contains such layers. It assumes a per-sample critic (no batch statistics), as every gradient
  penalty does.

Stateful layers: jvp and finite_difference run the critic again after the forward that gave g. Spectral-norm layers
(torch's parametrization or old-style hook, fastgan.nn.utils.spectral_norm) are held in eval mode for those extra
forwards, so they use exactly the weights of that forward and their u, v buffers advance once per penalty, as with
double backward. Batch norm is not touched (eval mode would change the function): its running statistics see the
extra forwards, and a critic with batch statistics breaks every gradient penalty anyway.

The value returned is the exact penalty in every method (only how its parameter gradient is computed differs); the
first derivatives of the returned tensor (parameters and, when the points have a history, inputs) are exact for
"double_backward" and "jvp"; only "double_backward" may be differentiated a second time.

A compiled critic (torch.compile's OptimizedModule, a compiled function, or a module after .compile()) works with
every method: double_backward and the forward-mode pass of jvp run the original module (torch.compile refuses double
backward and forward-mode AD), the ordinary forward/backward of jvp and finite_difference run the compiled one.

Mixed precision: under torch.autocast (bf16 or fp16) pass the GradScaler you use for the loss as `scaler=`. The inner
gradient is then taken on scaler.scale(D(x)) (so fp16 intermediates neither under- nor overflow, the documented AMP
recipe for gradient penalties) and divided by the scale in fp32 before the norm, which is accumulated in fp32. The
scaler itself is not changed. An inf/NaN in the inner gradient makes the returned penalty non-finite and, to be sure
the scaler sees it whatever the critic's ops do with NaN, also makes the gradient of the critic's first trainable
parameter NaN: scaler.step() then skips the step and scaler.update() lowers the scale, exactly as for an overflow in
the ordinary gradients. Without a scaler (bf16 usually needs none) the penalty still takes its gradients with
autocast off and its norm in fp32.
"""
import contextlib
import math
import numbers
import warnings

import torch
from torch import nn
from torch.autograd import forward_ad

from fastgan.ops import grad_norm_penalty, interpolate
from fastgan.ops._common import acc_dtype, check_choice, check_same_device, check_tensor

METHODS = ("double_backward", "jvp", "finite_difference")

# Layers that make a critic piecewise linear in its input (its input gradient jumps): finite differences estimate a
# smoothed gradient through them.
_PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ReLU6, nn.Hardtanh, nn.Hardshrink,
                     nn.Softshrink, nn.Threshold, nn.Hardsigmoid, nn.Hardswish, nn.MaxPool1d, nn.MaxPool2d,
                     nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
# Activation names (fused layers such as fastgan.nn's keep theirs in an attribute) with the same property.
_PIECEWISE_ACT_NAMES = {"relu", "lrelu", "leaky_relu", "leakyrelu", "prelu", "relu6", "hardtanh", "hardsigmoid",
                        "hardswish", "threshold"}


def gradient_penalty(critic, real, fake, weight=10.0, target=1.0, mode="two_sided", alpha=None,
                     critic_kwargs=None, scaler=None, method="double_backward", step=None):
    """WGAN-GP penalty (Gulrajani et al. 2017): weight * mean_b (||grad_x D(x_b)|| - target)^2 at interpolates
    x_b = alpha_b * real_b + (1 - alpha_b) * fake_b, alpha_b ~ U[0, 1) unless given.

    Args:
        critic: callable [B, *] -> [B] or [B, 1] (an nn.Module, possibly torch.compile'd).
        real, fake: [B, *] samples of one shape, dtype and device.
        weight: lambda (>= 0). target: the norm the penalty pulls to.
        mode: "two_sided" (WGAN-GP), "one_sided" (WGAN-LP) or "squared".
        alpha: optional [B] mixing weights.
        scaler: optional torch.amp.GradScaler (mixed precision; see the module docstring).
        method: "double_backward" (default), "jvp" or "finite_difference" (see the module docstring).
        step: finite-difference step h, a distance in input space along a unit direction (method=
            "finite_difference" only); default per sample (eps * max(1, ||x_b||))^(1/3) with eps that of the
            critic's compute dtype (for 32x32x3 images: ~4e-5 in fp64, ~0.02 in fp32).
    Returns:
        scalar tensor.
    """
    _check_critic(critic)
    _check_pair(real, fake)
    _check_weight(weight)
    _check_method(method, step, scaler)
    points = _interpolates(real, fake, alpha)
    return _penalty(critic, points, None, critic_kwargs, target, mode, weight, method, scaler, step)


def r1_penalty(critic, real, weight=5.0, outputs=None, critic_kwargs=None, scaler=None, method="double_backward",
               step=None):
    """R1 (Mescheder et al. 2018): weight * mean_b ||grad_x D(real_b)||^2 (StyleGAN's gamma/2 is this weight).

    `outputs`: the critic's [B] or [B, 1] output on `real`, already computed by the caller with
    real.requires_grad_(True) — reuses that forward instead of running the critic again (its graph is kept for the
    caller's loss). `scaler`, `method`, `step`: as in gradient_penalty. jvp and finite_difference still run the
    critic at `real` (forward-mode or shifted forwards); they reuse `outputs` for the inner gradient.
    """
    return _zero_centred("real", critic, real, weight, outputs, critic_kwargs, scaler, method, step)


def r2_penalty(critic, fake, weight=5.0, outputs=None, critic_kwargs=None, scaler=None, method="double_backward",
               step=None):
    """R2: as r1_penalty, at the fake samples."""
    return _zero_centred("fake", critic, fake, weight, outputs, critic_kwargs, scaler, method, step)


def dragan_penalty(critic, real, weight=10.0, c=0.5, target=1.0, critic_kwargs=None, scaler=None,
                   method="double_backward", step=None):
    """DRAGAN (Kodali et al. 2017): the two-sided penalty at points between real samples and real samples perturbed
    by c * std(real) * U[0, 1) noise, as in the authors' reference code. `scaler`, `method`, `step`: as in
    gradient_penalty."""
    _check_critic(critic)
    check_tensor(real, "real")
    _check_batch(real, "real")
    _check_weight(weight)
    if not isinstance(c, numbers.Real) or c < 0:
        raise ValueError(f"c must be a number >= 0, got {c!r}")
    _check_method(method, step, scaler)
    points = _dragan_points(real, c)
    return _penalty(critic, points, None, critic_kwargs, target, "two_sided", weight, method, scaler, step)


def penalty_at(critic, points, weight=1.0, target=1.0, mode="two_sided", outputs=None, critic_kwargs=None,
               scaler=None, method="double_backward", step=None, retain_graph=True):
    """The penalty weight * mean_b phi(||grad_x D(x_b)||) at given points (the building block of the penalties
    above, for callers that choose their own points, such as fastgan.distributed).

    `points` must require grad. `outputs`: the critic's output at `points` if already computed (its graph is kept
    when `retain_graph`, for a caller that also uses it in its loss). Other arguments as in gradient_penalty.
    """
    _check_critic(critic)
    check_tensor(points, "points")
    _check_batch(points, "points")
    _check_weight(weight)
    check_choice(mode, "mode", ("two_sided", "one_sided", "squared"))
    _check_method(method, step, scaler)
    if not points.requires_grad:
        raise ValueError("points must require grad (points.requires_grad_(True)) so that the critic's input "
                         "gradient can be taken")
    return _penalty(critic, points, outputs, critic_kwargs, target, mode, weight, method, scaler, step,
                    own_points=False, retain_graph=retain_graph)


# ---------------------------------------------------------------------------------------------------- points

def _interpolates(real, fake, alpha):
    batch = real.shape[0]
    if alpha is None:
        alpha = torch.rand(batch, device=real.device, dtype=acc_dtype(real.dtype))
    else:
        check_tensor(alpha, "alpha")
    return interpolate(real.detach(), fake.detach(), alpha.detach()).requires_grad_(True)


def _dragan_points(real, c):
    real = real.detach()
    perturbed = real + c * real.std() * torch.rand_like(real)
    alpha = torch.rand(real.shape[0], device=real.device, dtype=acc_dtype(real.dtype))
    return interpolate(real, perturbed, alpha).requires_grad_(True)


def _zero_centred(name, critic, samples, weight, outputs, critic_kwargs, scaler, method, step):
    _check_critic(critic)
    check_tensor(samples, name)
    _check_batch(samples, name)
    _check_weight(weight)
    _check_method(method, step, scaler)
    own = outputs is None
    if own:
        samples = samples.detach().requires_grad_(True)
    elif not samples.requires_grad:
        raise ValueError(f"outputs= reuses a critic forward, so {name} must be the tensor that forward ran on, "
                         f"with requires_grad=True")
    return _penalty(critic, samples, outputs, critic_kwargs, 1.0, "squared", weight, method, scaler, step,
                    own_points=own)


# ---------------------------------------------------------------------------------------------------- core

def _penalty(critic, points, outputs, critic_kwargs, target, mode, weight, method, scaler, step, own_points=True,
             retain_graph=True):
    """weight * mean_b phi(||g_b||), its parameter gradient computed by `method`.

    own_points: `points` is a leaf made here (detached samples), so its own gradient is of no use to anyone and
    the jvp / finite-difference passes run on a detached copy. retain_graph: keep the graph of a caller's `outputs`.
    """
    kwargs = critic_kwargs or {}
    plain = _uncompiled(critic)
    batch = points.shape[0]
    if outputs is not None and plain is not critic:
        # A compiled forward's graph can be differentiated once only (donated buffers; no double backward): leave
        # it to the caller's loss and run the penalty's own forward.
        outputs = None
    if method == "double_backward":
        if outputs is None:
            outputs = plain(points, **kwargs)
        scores = _check_outputs(outputs, batch)
        grad = _input_grad(scores, points, scaler, create_graph=True, retain_graph=True)
        with _autocast_off(points.device):
            value = weight * grad_norm_penalty(grad, target=target, mode=mode).mean()
        return _flag_nonfinite(value, critic, scaler)

    if method == "finite_difference":
        _warn_piecewise_linear(critic)
    if outputs is None:
        outputs = critic(points, **kwargs)  # an ordinary forward: the compiled critic is fine
        retain_graph = False
    scores = _check_outputs(outputs, batch)
    grad = _input_grad(scores, points, scaler, create_graph=False, retain_graph=retain_graph)
    with _autocast_off(points.device), torch.enable_grad():
        leaf = grad.detach().requires_grad_(True)
        value = weight * grad_norm_penalty(leaf, target=target, mode=mode).mean()
        (direction,) = torch.autograd.grad(value, leaf)  # v = dP/dg, a constant from here on
    primal = points.detach() if own_points else points
    # The extra forwards must see the weights the inner gradient saw: power iterations stay put during them.
    with _frozen_power_iterations(critic):
        if method == "jvp":
            surrogate = _jvp_surrogate(critic, plain, primal, direction, kwargs)
        else:
            surrogate = _finite_difference_surrogate(critic, primal, direction, kwargs, step)
    # Exact value, the surrogate's parameter gradient: S - S.detach() is exactly 0.
    value = value.detach() + (surrogate - surrogate.detach()).to(value.dtype)
    return _flag_nonfinite(value, critic, scaler)


def _input_grad(scores, points, scaler, create_graph, retain_graph):
    """grad_x sum_b D(x_b), out of place (parameters' .grad and DDP's hooks are not touched). With an enabled
    scaler: taken on the scaled sum and divided by the scale in the accumulation dtype."""
    scale = None
    total = scores.sum()
    if scaler is not None and scaler.is_enabled():
        # scaler.scale(1) is the current scale as a tensor: no host sync, unlike get_scale().
        scale = scaler.scale(torch.ones((), device=total.device, dtype=torch.float32))
        total = scaler.scale(total)
    with _autocast_off(points.device):
        try:
            (grad,) = torch.autograd.grad(total, points, create_graph=create_graph, retain_graph=retain_graph)
        except RuntimeError as error:
            if "double backward" in str(error) or "donated buffer" in str(error):
                raise RuntimeError(
                    "the penalty cannot differentiate `outputs` computed by a compiled critic (torch.compile's "
                    "graph refuses double backward and a second backward): pass the compiled critic itself as "
                    "`critic` (the penalty then runs its own forward), or no outputs") from error
            raise
        if scale is not None:
            acc = acc_dtype(grad.dtype)
            grad = grad.to(acc) / scale.to(acc)
    return grad


def _jvp_surrogate(critic, plain, primal, direction, kwargs):
    """s * sum_b of the forward-mode derivative of D at x along direction / s (s = max_b ||direction_b||)."""
    acc = direction.dtype
    norms = torch.linalg.vector_norm(direction.flatten(1), dim=1)
    s = norms.amax()
    s = torch.where(s > 0, s, torch.ones_like(s))  # all-zero direction (weight 0, one-sided inactive): S = 0
    tangent = (direction / s).to(primal.dtype)
    try:
        with forward_ad.dual_level():
            outputs = plain(forward_ad.make_dual(primal, tangent), **kwargs)
            if not isinstance(outputs, torch.Tensor):
                raise TypeError(f"the critic must return a tensor, got {type(outputs).__name__}")
            derivative = forward_ad.unpack_dual(outputs).tangent
    except (NotImplementedError, RuntimeError) as error:
        text = str(error).lower()
        keys = ("forward ad", "forward mode", "forward-mode", "jvp", "dual tensor", "dual number")
        if any(key in text for key in keys):
            raise _forward_ad_error(error, critic) from error
        raise
    _check_outputs(outputs, primal.shape[0], need_grad=False)
    if derivative is None:  # the output does not depend on the input: no penalty gradient
        return torch.zeros((), dtype=acc, device=primal.device)
    return s.detach() * derivative.to(acc).sum()


def _finite_difference_surrogate(critic, primal, direction, kwargs, step):
    """sum_b ||v_b|| * [D(x_b + h_b u_b) - D(x_b - h_b u_b)] / 2h_b with u_b = v_b / ||v_b||."""
    acc = direction.dtype
    batch = primal.shape[0]
    if step is None:
        h = _default_step(primal)
    else:
        h = torch.full((batch,), float(step), dtype=acc, device=primal.device)
    coef = torch.linalg.vector_norm(direction.flatten(1), dim=1)
    unit = direction / torch.where(coef > 0, coef, torch.ones_like(coef)).view(-1, *([1] * (direction.dim() - 1)))
    shift = (h.view(-1, *([1] * (direction.dim() - 1))) * unit).to(primal.dtype)
    plus = _check_outputs(critic(primal + shift, **kwargs), batch, need_grad=False)
    minus = _check_outputs(critic(primal - shift, **kwargs), batch, need_grad=False)
    difference = (plus.to(acc) - minus.to(acc)) / (2.0 * h)
    return (coef.detach() * difference).sum()


def _default_step(points):
    """Per-sample steps h_b = (eps * max(1, ||x_b||))^(1/3), eps of the dtype the critic computes in (the autocast
    dtype under autocast). The central difference's truncation error grows as h^2 (along a unit direction,
    whatever the input's size) and its rounding error as eps * ||x_b|| / h (x + h u is rounded element by element):
    they balance there. Per sample, so the result does not depend on how a batch is split across processes;
    a [B] tensor, so no host sync."""
    dtype = points.dtype
    device_type = points.device.type
    try:
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4 has no per-device queries
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            dtype = torch.get_autocast_cpu_dtype()
        elif device_type == "cuda" and torch.is_autocast_enabled():
            dtype = torch.get_autocast_gpu_dtype()
    acc = acc_dtype(points.dtype)
    size = torch.linalg.vector_norm(points.detach().flatten(1).to(acc), dim=1).clamp(min=1.0)
    return (float(torch.finfo(dtype).eps) * size) ** (1.0 / 3.0)


def _flag_nonfinite(value, critic, scaler):
    """With an enabled scaler, a non-finite penalty also gives the critic's first trainable parameter a NaN
    gradient, so GradScaler.step() skips the step whatever the critic's ops do with NaN (some parameters, the output
    bias for one, get no gradient from a penalty at all). Adds exactly 0 (and a 0 gradient) when finite."""
    if scaler is None or not scaler.is_enabled():
        return value
    anchor = _first_trainable_parameter(critic)
    if anchor is None:
        return value
    poison = torch.where(torch.isfinite(value), torch.zeros_like(value), torch.full_like(value, math.nan))
    return value + poison * anchor.reshape(-1)[0].to(value.dtype)


def _first_trainable_parameter(critic):
    module = critic if isinstance(critic, nn.Module) else getattr(critic, "__self__", None)
    if not isinstance(module, nn.Module):
        return None
    for parameter in module.parameters():
        if parameter.requires_grad:
            return parameter
    return None


# ---------------------------------------------------------------------------------------------------- critics

def _uncompiled(critic):
    """The callable to use where torch.compile cannot go (double backward, forward-mode AD): the module inside an
    OptimizedModule, the function inside a compiled function, the uncompiled call of a module after .compile()."""
    seen = 0
    while seen < 8:  # compiled twice is possible; a loop guards against odd wrappers
        seen += 1
        inner = getattr(critic, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            critic = inner
            continue
        inner = getattr(critic, "_torchdynamo_orig_callable", None)
        if callable(inner):
            critic = inner
            continue
        break
    if isinstance(critic, nn.Module) and getattr(critic, "_compiled_call_impl", None) is not None:
        return critic._call_impl
    return critic


@contextlib.contextmanager
def _frozen_power_iterations(critic):
    """Spectral norm (torch's parametrization and old-style hook, fastgan.nn.utils.spectral_norm) runs a power
    iteration, updating u and v, in every training-mode forward: the jvp and finite-difference forwards would then
    use other weights than the forward they differentiate (measured: 5e-7 relative gradient error for jvp, 5e-3 for
    finite differences). In eval mode these layers use the stored u and v, i.e. exactly the weights of the last
    forward, so those modules (and nothing else: batch norm or dropout would change the function) go to eval for
    the extra forwards."""
    frozen = []
    for _, module in _modules(critic):
        if not module.training:
            continue
        has_uv = isinstance(getattr(module, "_u", None), torch.Tensor) and isinstance(getattr(module, "_v", None),
                                                                                       torch.Tensor)
        old_style = any(type(hook).__name__ == "SpectralNorm" for hook in module._forward_pre_hooks.values())
        if has_uv or old_style:
            frozen.append(module)
    for module in frozen:
        module.training = False
    try:
        yield
    finally:
        for module in frozen:
            module.training = True


def _modules(critic):
    plain = _uncompiled(critic)
    module = plain if isinstance(plain, nn.Module) else getattr(plain, "__self__", None)
    return module.named_modules() if isinstance(module, nn.Module) else ()


def piecewise_linear_layers(critic):
    """Names of the layers that visibly make `critic` piecewise linear in its input (ReLU, LeakyReLU, max pooling,
    fused layers whose `act` is one of these...). Activations called functionally inside forward() are not seen."""
    found = []
    for name, module in _modules(critic):
        act = getattr(module, "act", None)
        if isinstance(module, _PIECEWISE_LINEAR) or (isinstance(act, str) and act.lower() in _PIECEWISE_ACT_NAMES):
            found.append(f"{name or type(module).__name__} ({type(module).__name__})")
    return found


def _warn_piecewise_linear(critic):
    layers = piecewise_linear_layers(critic)
    if layers:
        shown = ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "")
        warnings.warn(
            f"method='finite_difference' with a piecewise-linear critic ({shown}): the input gradient jumps at every "
            "kink, so the central difference estimates a smoothed penalty gradient that can differ from the exact one "
            "by more than 100%; use method='jvp' (exact, no double backward) or 'double_backward' for ReLU/LeakyReLU "
            "critics", UserWarning, stacklevel=4)


def _forward_ad_error(error, critic):
    """A NotImplementedError naming the op (and the layer) that has no forward-mode derivative."""
    op, layer = None, None
    tb = error.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        owner = local.get("self")
        if isinstance(owner, nn.Module):
            layer = type(owner).__name__
        forward_cls = getattr(owner, "_forward_cls", None) or getattr(local.get("ctx"), "_forward_cls", None)
        if forward_cls is not None:
            op = f"autograd.Function {forward_cls.__module__}.{forward_cls.__qualname__} (it has no jvp)"
        tb = tb.tb_next
    text = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
    if op is None:
        op = f"an op of the critic ({text})"
    where = f" in layer {layer}" if layer else ""
    return NotImplementedError(
        f"method='jvp' needs forward-mode AD through every op of the critic, but {op}{where} does not support it: "
        f"{text}. Give it a forward-mode derivative (autograd.Function.jvp), or use method='double_backward' or "
        f"'finite_difference'.")


def _autocast_off(device):
    try:
        if not torch.is_autocast_enabled(device.type):  # nothing to turn off: skip autocast's ~10 us of set-up
            return contextlib.nullcontext()
    except (TypeError, RuntimeError):  # torch < 2.4 takes no device type; an unknown device type
        pass
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------- checks

def _check_outputs(outputs, batch, need_grad=True):
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"the critic must return a tensor, got {type(outputs).__name__}")
    if outputs.shape == (batch, 1):
        outputs = outputs[:, 0]
    if outputs.shape != (batch,):
        raise ValueError(f"the critic's output must have shape [B] or [B, 1] with B = {batch}, "
                         f"got {tuple(outputs.shape)}")
    if need_grad and not outputs.requires_grad:
        raise ValueError("the critic's output does not depend on its input (requires_grad is False)")
    return outputs


def _check_method(method, step, scaler):
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {', '.join(map(repr, METHODS))}; "
                        f"got {type(method).__name__}")
    check_choice(method, "method", METHODS)
    if step is not None:
        if method != "finite_difference":
            raise ValueError(f"step is the finite-difference step: it needs method='finite_difference', "
                             f"got method={method!r}")
        if isinstance(step, bool) or not isinstance(step, numbers.Real):
            raise TypeError(f"step must be a number, got {type(step).__name__}")
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"step must be a finite number > 0, got {step!r}")
    if scaler is not None and not (callable(getattr(scaler, "scale", None))
                                   and callable(getattr(scaler, "is_enabled", None))):
        raise TypeError(f"scaler must be a torch.amp.GradScaler (or None), got {type(scaler).__name__}")


def _check_critic(critic):
    if not callable(critic):
        raise TypeError(f"critic must be callable (an nn.Module or function), got {type(critic).__name__}")


def _check_batch(tensor, name):
    if tensor.dim() < 1 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty batch dimension, got shape {tuple(tensor.shape)}")


def _check_pair(real, fake):
    check_tensor(real, "real")
    check_tensor(fake, "fake")
    check_same_device([("real", real), ("fake", fake)])
    if real.dtype != fake.dtype:
        raise TypeError(f"real and fake must have the same dtype, got {real.dtype} and {fake.dtype}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    _check_batch(real, "real")


def _check_weight(weight):
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a number, got {type(weight).__name__}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
