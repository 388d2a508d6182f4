"""bias_act: fused bias + activation (+ gain, + clamp), with fused first- and second-order gradients.

Maths.  z = x + b (b broadcast along `dim`; no bias: z = x),  y = clamp(gain * act(z), -c, c).
Gradient (one fused pass, the bias sum included):
    dx = dy * f,   f = gain * act'(z) * [|gain * act(z)| <= c],   db_k = sum of dx over every index with channel k.
Second order (one fused pass): with u the upstream gradient of dx (plus db's upstream broadcast along `dim`),
    d dy = u * f,   d z = u * dy * f',   f' = gain * act''(z) * [not clamped]   (d x = d z; d b = sum of d z).
    f' = 0 for linear, relu and lrelu: that term is neither computed nor stored, and nothing is propagated through
    it (the layers before get no zero-filled gradients to work through; autograd.grad then reports an input reached
    only that way as unused: pass allow_unused=True, materialize_grads=True for zeros).
Third and higher orders: the backward of the second-order op is written in PyTorch ops from the closed forms of
act', act'' and act''' (see `_torch_factors`), so every order is exact; nothing is approximated.
Forward mode (torch.func.jvp, torch.autograd.forward_ad): tangent y = f * (tangent x + tangent b), computed by the
fused backward kernel, so reverse-over-forward works too.

Activations (alpha):  linear, relu, lrelu (negative slope, default 0.2), tanh, sigmoid, elu (alpha, default 1),
selu, softplus (alpha = beta, default 1; threshold 20 as torch), silu (alias swish), gelu (exact, erf),
gelu_tanh (tanh approximation). Each equals the matching torch.nn.functional call.

Saved for backward (the least that determines the derivative):
  - linear without clamp: nothing.
  - relu, lrelu (alpha >= 0), tanh, sigmoid, elu (alpha >= 0), selu, without clamp and with gain != 0: the output y
    only (the branch is the sign of y / gain; tanh' = 1 - (y/gain)^2, sigmoid' = s (1 - s), elu' = y/gain + alpha).
  - everything else (softplus, silu, gelu, gelu_tanh; any activation with clamp, gain == 0 or negative alpha): x and
    the bias (z is recomputed; y cannot tell whether the clamp or which branch was hit). The bias is the parameter
    itself (no copy), so the extra memory equals eager's saved x + b.
For relu/lrelu the saved y is the tensor the next layer keeps anyway, so no extra memory at all.

Shapes: x [*] of any dense layout (channels_last is kept; other strides are made contiguous); bias [x.shape[dim]];
y like x. Math in fp32 for fp16/bf16 storage (fp64 for fp64). The bias gradient is summed deterministically.

Numerics: fp64 uses libm everywhere. The fp32 CPU kernels use vectorisable exp, erf, log1p and expm1 (about 2-3 ulp;
exp saturates at |x| = 60, reached only where its contribution next to O(1) terms is below 1e-26); the CUDA kernels
use CUDA's fast-math intrinsics; Triton uses exp and erf. All stay within the fp32 tolerance of the fp64 reference.
"""
import collections
import functools
import math
import numbers

import torch
import torch.nn.functional as F

from fastgan import _ext, backends
from fastgan.ops._common import (acc_dtype, check_choice, check_same_device, check_tensor, compiling,
                                 functorch_active, no_tangents, plain_backward)

ACTIVATIONS = ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "silu", "gelu", "gelu_tanh")
ALIASES = {"swish": "silu", "leaky_relu": "lrelu", "identity": "linear"}
DEFAULT_ALPHA = {"lrelu": 0.2, "elu": 1.0, "softplus": 1.0}
Y_FORM = ("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu")
PIECEWISE_LINEAR = ("linear", "relu", "lrelu")
SAVED_Y, SAVED_X = 0, 1
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SOFTPLUS_THRESHOLD = 20.0
# `auto` on CUDA tries these in order.
CUDA_ORDER = ("cuda", "triton")

# Everything the kernels need besides tensors; hashable and immutable (autograd.Function inputs).
# compiled: traced by torch.compile, whose dynamo rejects autograd.Functions that define jvp; those calls use the
# jvp-less variants (see _function; forward-mode AD does not run under torch.compile anyway).
Config = collections.namedtuple("Config", "act code saved alpha gain clamp dim backend compiled")


# --------------------------------------------------------------------------------------------- autograd
#
# Three levels, each an autograd.Function built from the plain functions below:
#   1 BiasActFunction        y = kernel forward;                 backward -> level 2;  jvp -> level 2 (fused)
#   2 BiasActBackward        (dx, db) = fused backward kernel;    backward -> level 3;  jvp in PyTorch ops
#   3 BiasActDoubleBackward  (d dy, d s, d b) = fused kernel;     backward and jvp in PyTorch ops (exact, any order)
# Plain eager calls on the cpp and cuda backends run levels 1 and 2 as C++ autograd nodes instead (fastgan::bias_act,
# csrc/bias_act/bias_act_binding.cpp; see _node_ok), whose third order comes back here through
# fastgan::bias_act_grad2_graph: the same maths without ~20 us of Python per level, which on a GPU is most of a call.
# Each Python level exists in three variants (see _function): ctx-style with jvp for plain eager use (torch 2.x binds the
# arguments of setup_context-style Functions through inspect.signature on every call: ~70 us), setup_context-style
# with jvp while torch.func transforms are active (they need that style), and setup_context-style without jvp
# inside torch.compile (dynamo refuses Functions that define jvp; forward-mode AD does not run there anyway).


def _forward1(x, bias, cfg):
    return _kernels(cfg.backend).forward(x, bias, cfg.code, cfg.alpha, cfg.gain, cfg.clamp, cfg.dim)


def _setup1(ctx, inputs, output):
    x, bias, cfg = inputs
    ctx.cfg = cfg
    if cfg.saved == SAVED_Y:
        saved = (None, None, None if cfg.act == "linear" else output)
    else:
        saved = (x, bias, None)
    ctx.shape = x.shape
    ctx.save_for_backward(*saved)
    ctx.save_for_forward(*saved)
    # No zeros for a missing upstream (the double backward of relu/lrelu/linear gives y none): skip the pass.
    ctx.set_materialize_grads(False)


def _backward1(ctx, dy):
    x, bias, y = ctx.saved_tensors
    need_x, need_b = ctx.needs_input_grad[:2]
    if dy is None or not (need_x or need_b):
        return None, None, None
    args = (dy, x, bias, y, ctx.cfg, bool(need_b))
    dx, db = _forward2(*args) if plain_backward() else _function(2, ctx.cfg).apply(*args)
    return (dx if need_x else None), (db if need_b else None), None


def _jvp1(ctx, tx, tb, _):
    # tangent y = f * (tangent x + tangent b): the fused backward kernel, differentiable in turn.
    x, bias, y = ctx.saved_tensors
    t = _broadcast_add(tx, tb, ctx.cfg.dim, ctx.shape)
    if t is None:
        return None
    dx, _ = _function(2, ctx.cfg).apply(t, x, bias, y, ctx.cfg, False)
    return dx


def _forward2(dy, x, bias, y, cfg, need_db):
    ref = _layout_ref(x, y, dy)
    dy = _match(dy, ref)
    return _kernels(cfg.backend).backward(dy, x, bias, y, cfg.code, cfg.saved, cfg.alpha, cfg.gain, cfg.clamp,
                                          cfg.dim, need_db)


def _setup2(ctx, inputs, outputs):
    dy, x, bias, y, cfg, need_db = inputs
    ctx.cfg = cfg
    ctx.shape = dy.shape
    ctx.need_db = need_db
    # dy only matters for the act'' term, which is zero for the piecewise-linear activations.
    ctx.save_for_backward(None if cfg.act in PIECEWISE_LINEAR else dy, x, bias, y)
    ctx.save_for_forward(dy, x, bias, y)
    ctx.set_materialize_grads(False)
    if not need_db:
        ctx.mark_non_differentiable(outputs[1])


def _backward2(ctx, g_dx, g_db):
    dy, x, bias, y = ctx.saved_tensors
    cfg = ctx.cfg
    need_dy, need_x, need_b, need_y = ctx.needs_input_grad[:4]
    u = _broadcast_add(g_dx, g_db, cfg.dim, ctx.shape)
    smooth = cfg.act not in PIECEWISE_LINEAR
    need_x = need_x and smooth
    need_b = need_b and smooth and bias is not None
    need_y = need_y and smooth
    if u is None or not (need_dy or need_x or need_b or need_y):
        return None, None, None, None, None, None
    args = (u, dy, x, bias, y, cfg, bool(need_dy), bool(need_x or need_y), bool(need_b))
    g_dy, g_s, g_b = _forward3(*args) if plain_backward() else _function(3, cfg).apply(*args)
    return ((g_dy if need_dy else None), (g_s if need_x else None), (g_b if need_b else None),
            (g_s if need_y else None), None, None)


def _jvp2(ctx, t_dy, t_x, t_b, t_y, _cfg, _need):
    # Forward mode through the backward (Hessian-vector products): t_dx = t_dy f + dy f' t_s, in PyTorch ops.
    dy, x, bias, y = ctx.saved_tensors
    cfg = ctx.cfg
    s = _saved_z(x, bias, cfg) if cfg.saved == SAVED_X else y
    t_s = _broadcast_add(t_x, t_b, cfg.dim, dy.shape) if cfg.saved == SAVED_X else t_y
    f0, f1, _ = _torch_factors(s, cfg, 2, dy)
    acc = acc_dtype(dy.dtype)
    t_dx = None
    if t_dy is not None:
        t_dx = t_dy.to(acc) * f0
    if t_s is not None and f1 is not None:
        term = dy.to(acc) * f1 * t_s.to(acc)
        t_dx = term if t_dx is None else t_dx + term
    if t_dx is None:
        # Explicit zeros: returning None here trips an internal assert of torch's forward AD (2.14) when the
        # backward runs inside a dual level.
        t_dx = torch.zeros((), dtype=acc, device=dy.device)
    t_dx = _full(t_dx, dy.shape)
    t_db = _reduce_to_channel(t_dx, cfg.dim) if ctx.need_db else None
    return t_dx.to(dy.dtype), (t_db.to(dy.dtype) if t_db is not None else None)


def _forward3(u, dy, x, bias, y, cfg, need_gdy, need_gs, need_gb):
    ref = _layout_ref(x, y, u)
    u = _match(u, ref)
    dy = u if dy is None else _match(dy, ref)  # piecewise linear: dy is never read
    return _kernels(cfg.backend).grad2(u, dy, x, bias, y, cfg.code, cfg.saved, cfg.alpha, cfg.gain, cfg.clamp,
                                       cfg.dim, need_gdy, need_gs, need_gb)


def _setup3(ctx, inputs, outputs):
    u, dy, x, bias, y, cfg, need_gdy, need_gs, need_gb = inputs
    ctx.cfg = cfg
    ctx.save_for_backward(u, dy, x, bias, y)
    ctx.save_for_forward(u, dy, x, bias, y)
    ctx.set_materialize_grads(False)
    smooth = cfg.act not in PIECEWISE_LINEAR
    ctx.needs = (need_gdy, need_gs and smooth, need_gb and smooth and bias is not None and cfg.saved == SAVED_X)
    unused = [out for out, need in zip(outputs, ctx.needs) if not need]
    if unused:
        ctx.mark_non_differentiable(*unused)


def _backward3(ctx, a, c_s, c_b):
    # Third order, in PyTorch ops from closed forms: with f, f', f'' the derivative factor and its slopes,
    #   d u = a f + c dy f',  d dy = c u f',  d s = a u f' + c u dy f''   (c: upstream of d s, plus d b's).
    u, dy, x, bias, y = ctx.saved_tensors
    cfg = ctx.cfg
    acc = acc_dtype(u.dtype)
    c = _broadcast_add(c_s, c_b, cfg.dim, u.shape) if cfg.saved == SAVED_X else c_s
    s = _saved_z(x, bias, cfg) if cfg.saved == SAVED_X else y
    f0, f1, f2 = _torch_factors(s, cfg, 3, u)
    uu = u.to(acc)
    d_u = d_dy = d_s = None
    if a is not None:
        d_u = a.to(acc) * f0
        if f1 is not None:
            d_s = a.to(acc) * uu * f1
    if c is not None and f1 is not None:
        dyy = dy.to(acc)
        cc = c.to(acc)
        term = cc * dyy * f1
        d_u = term if d_u is None else d_u + term
        d_dy = cc * uu * f1
        if f2 is not None:
            term = cc * uu * dyy * f2
            d_s = term if d_s is None else d_s + term
    shape = u.shape
    d_u = None if d_u is None else _full(d_u, shape).to(u.dtype)
    d_dy = None if d_dy is None else _full(d_dy, shape).to(u.dtype)
    d_x = d_b = d_y = None
    if d_s is not None:
        d_s = _full(d_s, shape)
        if cfg.saved == SAVED_X:
            d_x = d_s.to(x.dtype)
            d_b = _reduce_to_channel(d_s, cfg.dim).to(bias.dtype) if bias is not None else None
        else:
            d_y = d_s.to(y.dtype)
    return d_u, d_dy, d_x, d_b, d_y, None, None, None, None


def _jvp3(ctx, t_u, t_dy, t_x, t_b, t_y, _cfg, need_gdy, need_gs, need_gb):
    # For backward passes run inside a forward-AD dual level (a loss on a jvp's tangent, back-propagated).
    u, dy, x, bias, y = ctx.saved_tensors
    cfg = ctx.cfg
    acc = acc_dtype(u.dtype)
    s = _saved_z(x, bias, cfg) if cfg.saved == SAVED_X else y
    t_s = _broadcast_add(t_x, t_b, cfg.dim, u.shape) if cfg.saved == SAVED_X else t_y
    f0, f1, f2 = _torch_factors(s, cfg, 3, u)
    uu = u.to(acc)
    dyy = None if dy is None else dy.to(acc)

    def total(*terms):
        terms = [t for t in terms if t is not None]
        out = terms[0] if terms else torch.zeros((), dtype=acc, device=u.device)
        for t in terms[1:]:
            out = out + t
        return _full(out, u.shape)

    def product(*factors):
        return None if any(f is None for f in factors) else _prod(factors, acc)

    t_gdy = t_gs = t_gb = None
    if ctx.needs[0]:
        t_gdy = total(product(t_u, f0), product(uu, f1, t_s)).to(u.dtype)
    if ctx.needs[1] or ctx.needs[2]:
        t_gs = total(product(t_u, dyy, f1), product(uu, t_dy, f1), product(uu, dyy, f2, t_s))
        if ctx.needs[2]:
            t_gb = _reduce_to_channel(t_gs, cfg.dim).to(u.dtype)
        t_gs = t_gs.to(u.dtype) if ctx.needs[1] else None
    return t_gdy, t_gs, t_gb


_LEVELS = {
    1: ("BiasActFunction", "Fused bias + activation forward (level 1 of 3).", _forward1, _setup1, _backward1, _jvp1),
    2: ("BiasActBackward", "dx and db in one fused pass (level 2 of 3).", _forward2, _setup2, _backward2, _jvp2),
    3: ("BiasActDoubleBackward", "The double backward in one fused pass (level 3 of 3); its backward in PyTorch "
        "ops.", _forward3, _setup3, _backward3, _jvp3),
}


def _make_function(name, doc, forward, setup, backward, jvp, variant):
    attrs = {"__doc__": doc, "__module__": __name__, "backward": staticmethod(backward)}
    if variant == "eager":
        def forward_with_ctx(ctx, *inputs):
            output = forward(*inputs)
            setup(ctx, inputs, output)
            return output

        attrs["forward"] = staticmethod(forward_with_ctx)
    else:
        attrs["forward"] = staticmethod(forward)
        attrs["setup_context"] = staticmethod(setup)
    if variant != "compile":
        attrs["jvp"] = staticmethod(jvp)
    suffix = {"eager": "", "functorch": "Functorch", "compile": "Compiled"}[variant]
    return type(name + suffix, (torch.autograd.Function,), attrs)


_FUNCTIONS = {(level, variant): _make_function(*spec, variant)
              for level, spec in _LEVELS.items() for variant in ("eager", "functorch", "compile")}
BiasActFunction = _FUNCTIONS[(1, "eager")]
BiasActBackward = _FUNCTIONS[(2, "eager")]
BiasActDoubleBackward = _FUNCTIONS[(3, "eager")]


def _function(level, cfg):
    """The autograd.Function of `level` for the current context (see the comment above)."""
    if cfg.compiled:
        return _FUNCTIONS[(level, "compile")]
    if functorch_active():
        return _FUNCTIONS[(level, "functorch")]
    return _FUNCTIONS[(level, "eager")]


# --------------------------------------------------------------------------------------------- public API

def bias_act(x, bias=None, act="lrelu", alpha=None, gain=1.0, clamp=None, dim=1):
    """y = clamp(act(x + bias) * gain, -clamp, clamp), bias broadcast along `dim`, fused with its gradients.

    Args:
        x: floating tensor (float32, float64, float16, bfloat16), any shape and dense layout.
        bias: None or a [x.shape[dim]] tensor (cast to x's dtype).
        act: one of ACTIVATIONS ("swish" = "silu").
        alpha: lrelu's negative slope (default 0.2), elu's alpha (1.0), softplus's beta (1.0); others take none.
        gain: multiplies the activation (any finite number).
        clamp: None, or a bound c >= 0 on |y|.
        dim: the dimension `bias` runs along (default 1, the channels of NCHW; -1 for [B, F] features).
    Returns:
        y, shaped and laid out like x.
    """
    check_tensor(x, "x")
    act, alpha, gain, clamp, code, saved = _options(act, alpha, gain, clamp)
    if bias is not None:
        check_tensor(bias, "bias")
        check_same_device([("x", x), ("bias", bias)])
        dim = _check_dim(dim, x)
        if bias.dim() != 1 or bias.shape[0] != x.shape[dim]:
            raise ValueError(f"bias must have shape [x.shape[dim]] = [{x.shape[dim]}] (dim={dim}), "
                             f"got {tuple(bias.shape)}")
        if bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
    else:
        _check_dim_type(dim)  # no bias: the dimension plays no part
        dim = 0
    backend = backends.select_cached("bias_act", x.device, cuda_order=CUDA_ORDER)
    if backend == "reference" or x.numel() == 0:
        return _reference(x, bias, act, alpha, gain, clamp, dim)
    cfg = Config(act, code, saved, alpha, gain, -1.0 if clamp is None else clamp, dim, backend, compiling())
    if not _is_dense(x):
        x = x.contiguous()
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    if backend != "triton" and _node_ok(x, bias, cfg):
        return _NODE[0](x, bias, code, saved, cfg.alpha, cfg.gain, cfg.clamp, dim)
    return _function(1, cfg).apply(x, bias, cfg)


# The C++ autograd nodes (fastgan::bias_act, csrc/bias_act/bias_act_binding.cpp): levels 1 and 2 without Python,
# for plain eager calls that record a graph. torch.compile, torch.func transforms and forward-mode AD (jvp) take
# the Python levels above, which support them.
_NODE = [None]


def _node_ok(x, bias, cfg):
    return (_NODE[0] is not None and not cfg.compiled and torch.is_grad_enabled()
            and (x.requires_grad or (bias is not None and bias.requires_grad)) and no_tangents())


def _grad2_graph(u, dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_gdy, need_gs, need_gb):
    """fastgan::bias_act_grad2_graph: the C++ level 2's backward under create_graph (a third-order gradient) runs
    the Python level 3, whose own backward is exact PyTorch ops."""
    cfg = Config(ACTIVATIONS[act], act, saved, alpha, gain, clamp, dim, "cuda" if u.is_cuda else "cpp", False)
    return _FUNCTIONS[(3, "eager")].apply(u, dy, x, bias, y, cfg, need_gdy, need_gs, need_gb)


def bias_act_reference(x, bias=None, act="lrelu", alpha=None, gain=1.0, clamp=None, dim=1):
    """The specification in plain PyTorch (fp32 math for half inputs, like the kernels); autograd gives every
    derivative."""
    act = _check_act(act)
    return _reference(x, bias, act, _check_alpha(act, alpha), gain, clamp, dim)


def _reference(x, bias, act, alpha, gain, clamp, dim):
    acc = acc_dtype(x.dtype)
    z = x.to(acc)
    if bias is not None:
        z = z + bias.to(acc).view(_channel_shape(x.dim(), dim, bias.shape[0]))
    y = _torch_act(z, act, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return y.to(x.dtype)


def saved_form(act, alpha=None, gain=1.0, clamp=None):
    """"y" when the backward keeps only the output, "x" when it keeps the input and bias (see the docstring)."""
    act = _check_act(act)
    return "y" if _saved_form(act, _check_alpha(act, alpha), gain, clamp) == SAVED_Y else "x"


# --------------------------------------------------------------------------------------------- helpers

def _options(act, alpha, gain, clamp):
    """Validated (act, alpha, gain, clamp, act code, saved form); cached, since a model calls the op with the same
    few settings every step (the key holds the types too: gain=True must not pass as a cached gain=1)."""
    if compiling():  # dynamo traces through caches (and warns): validate directly, it is traced once anyway
        return _validate_options(act, alpha, gain, clamp)
    key = (act, alpha, type(alpha), gain, type(gain), clamp, type(clamp))
    try:
        return _cached_options(key)
    except TypeError:  # unhashable arguments: validate without the cache (raises the error that names them)
        return _validate_options(act, alpha, gain, clamp)


@functools.lru_cache(maxsize=256)
def _cached_options(key):
    act, alpha, _, gain, _, clamp, _ = key
    return _validate_options(act, alpha, gain, clamp)


def _validate_options(act, alpha, gain, clamp):
    act = _check_act(act)
    alpha = float(_check_alpha(act, alpha))
    gain = _check_real(gain, "gain")
    if clamp is not None:
        clamp = _check_real(clamp, "clamp")
        if clamp < 0:
            raise ValueError(f"clamp must be None or >= 0, got {clamp}")
    return act, alpha, gain, clamp, ACTIVATIONS.index(act), _saved_form(act, alpha, gain, clamp)


def _check_act(act):
    if not isinstance(act, str):
        raise TypeError(f"act must be a string, one of {', '.join(ACTIVATIONS)}; got {type(act).__name__}")
    act = ALIASES.get(act, act)
    return check_choice(act, "act", ACTIVATIONS)


def _check_alpha(act, alpha):
    if alpha is None:
        return DEFAULT_ALPHA.get(act, 0.0)
    if act not in DEFAULT_ALPHA:
        raise ValueError(f"alpha is not used by act={act!r} (only lrelu, elu and softplus take one), got {alpha!r}")
    alpha = _check_real(alpha, "alpha")
    if act == "softplus" and alpha <= 0:
        raise ValueError(f"alpha (softplus's beta) must be > 0, got {alpha}")
    return alpha


def _check_real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_dim_type(dim):
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")


def _check_dim(dim, x):
    _check_dim_type(dim)
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim={dim} is out of range for x with {x.dim()} dimension(s) "
                         f"(shape {tuple(x.shape)})")
    return dim % x.dim()


def _saved_form(act, alpha, gain, clamp):
    if clamp is not None or act not in Y_FORM or gain == 0:
        return SAVED_X
    if act in ("lrelu", "elu") and alpha < 0:
        return SAVED_X
    return SAVED_Y


def _is_dense(t):
    """Non-overlapping and dense (any permutation of dimensions): kernels index it as one flat array."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return True
    expected = 1
    for size, stride in sorted(((s, st) for s, st in zip(t.shape, t.stride()) if s != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def _channel_shape(ndim, dim, channels):
    shape = [1] * ndim
    shape[dim] = channels
    return shape


def _broadcast_add(t, per_channel, dim, shape):
    """t + per_channel broadcast along dim, of the given shape (either may be None; both None gives None)."""
    if per_channel is None:
        return t
    column = per_channel.view(_channel_shape(len(shape), dim, per_channel.shape[0]))
    if t is None:
        return column.expand(shape)
    return t + column


def _layout_ref(x, y, fallback):
    if x is not None:
        return x
    if y is not None:
        return y
    return fallback if _is_dense(fallback) else fallback.contiguous()


def _match(t, ref):
    """t with exactly ref's strides and dtype (a copy only when they differ)."""
    if t.stride() == ref.stride() and t.dtype == ref.dtype and t.shape == ref.shape:
        return t
    return torch.empty_like(ref).copy_(t)


def _prod(factors, acc):
    out = factors[0].to(acc)
    for f in factors[1:]:
        out = out * f.to(acc)
    return out


def _full(t, shape):
    """t broadcast to `shape` as a tensor of its own (never an expanded view: tangents must not be views)."""
    return t if t.shape == shape else t.expand(shape).contiguous()


def _reduce_to_channel(t, dim):
    dims = [d for d in range(t.dim()) if d != dim]
    return t.sum(dim=dims) if dims else t


def _saved_z(x, bias, cfg):
    acc = acc_dtype(x.dtype)
    z = x.to(acc)
    if bias is not None:
        z = z + bias.to(acc).view(_channel_shape(x.dim(), cfg.dim, bias.shape[0]))
    return z


def _torch_act(z, act, alpha):
    if act == "linear":
        return z
    if act == "relu":
        return F.relu(z)
    if act == "lrelu":
        return F.leaky_relu(z, alpha)
    if act == "tanh":
        return torch.tanh(z)
    if act == "sigmoid":
        return torch.sigmoid(z)
    if act == "elu":
        return F.elu(z, alpha)
    if act == "selu":
        return F.selu(z)
    if act == "softplus":
        return F.softplus(z, beta=alpha, threshold=SOFTPLUS_THRESHOLD)
    if act == "silu":
        return F.silu(z)
    if act == "gelu":
        return F.gelu(z)
    return F.gelu(z, approximate="tanh")


def _act_derivs(z, act, alpha, order):
    """(act'(z), act''(z), act'''(z)) as PyTorch expressions up to `order` (None: identically zero)."""
    one = torch.ones_like(z)
    if act == "linear":
        return one, None, None
    if act == "relu":
        return (z > 0).to(z.dtype), None, None
    if act == "lrelu":
        return torch.where(z > 0, one, one * alpha), None, None
    if act == "tanh":
        t = torch.tanh(z)
        s = 1 - t * t
        return s, -2 * t * s, (s * (6 * t * t - 2) if order >= 3 else None)
    if act == "sigmoid":
        s = torch.sigmoid(z)
        d1 = s * (1 - s)
        return d1, d1 * (1 - 2 * s), (d1 * (1 - 6 * s + 6 * s * s) if order >= 3 else None)
    if act in ("elu", "selu"):
        scale, a = (1.0, alpha) if act == "elu" else (SELU_SCALE, SELU_ALPHA)
        e = scale * a * torch.exp(torch.clamp(z, max=0))
        zero = torch.zeros_like(z)
        d2 = torch.where(z > 0, zero, e)
        return torch.where(z > 0, one * scale, e), d2, d2
    if act == "softplus":
        bz = alpha * z
        linear = bz > SOFTPLUS_THRESHOLD
        s = torch.sigmoid(bz)
        zero = torch.zeros_like(z)
        d2 = torch.where(linear, zero, alpha * s * (1 - s))
        d3 = torch.where(linear, zero, alpha * alpha * s * (1 - s) * (1 - 2 * s)) if order >= 3 else None
        return torch.where(linear, one, s), d2, d3
    if act == "silu":
        s = torch.sigmoid(z)
        q = s * (1 - s)
        m = 1 - 2 * s
        d3 = q * (m * (3 + z * m) - 2 * z * q) if order >= 3 else None
        return s * (1 + z * (1 - s)), q * (2 + z * m), d3
    if act == "gelu":
        cdf = 0.5 * (1 + torch.erf(z * (1 / math.sqrt(2))))
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return cdf + z * pdf, pdf * (2 - z * z), (z * pdf * (z * z - 4) if order >= 3 else None)
    # gelu_tanh: u = k (z + c z^3), T = tanh(u), S = 1 - T^2
    k, c = math.sqrt(2 / math.pi), 0.044715
    z2 = z * z
    t = torch.tanh(k * (z + c * z2 * z))
    s = 1 - t * t
    du = k * (1 + 3 * c * z2)
    ddu = 6 * k * c * z
    d1 = 0.5 * (1 + t) + 0.5 * z * s * du
    d2 = s * du - z * t * s * du * du + 0.5 * z * s * ddu
    d3 = None
    if order >= 3:
        d3 = (-3 * t * s * du * du + 1.5 * s * ddu - z * s * du ** 3 * (s - 2 * t * t)
              - 3 * z * t * s * du * ddu + 0.5 * z * s * (6 * k * c))
    return d1, d2, d3


def _torch_factors(s, cfg, order, like):
    """(f, f', f'') of the saved tensor s (y for SAVED_Y, z for SAVED_X) in PyTorch ops (None: zero), where
    f = d y / d z and f' = d f / d s. `like` gives dtype and device where nothing is saved (linear)."""
    act, alpha, gain = cfg.act, cfg.alpha, cfg.gain
    acc = acc_dtype(like.dtype)
    if cfg.saved == SAVED_Y and act == "linear":
        return torch.full((), gain, dtype=acc, device=like.device), None, None
    s = s.to(acc)
    if cfg.saved == SAVED_Y:
        r = s / gain
        one = torch.ones_like(r)
        if act == "relu":
            return gain * (r > 0).to(acc), None, None
        if act == "lrelu":
            return gain * torch.where(r > 0, one, one * alpha), None, None
        if act == "tanh":
            return gain * (1 - r * r), -2 * r, torch.full((), -2 / gain, dtype=acc, device=s.device)
        if act == "sigmoid":
            return gain * r * (1 - r), 1 - 2 * r, torch.full((), -2 / gain, dtype=acc, device=s.device)
        scale, a = (1.0, alpha) if act == "elu" else (SELU_SCALE, SELU_ALPHA * SELU_SCALE)
        pos = r > 0
        return (gain * torch.where(pos, one * scale, r + a), torch.where(pos, torch.zeros_like(r), one), None)
    d1, d2, d3 = _act_derivs(s, act, alpha, order)
    mask = None
    if cfg.clamp >= 0:
        mask = ((_torch_act(s, act, alpha) * gain).abs() <= cfg.clamp).to(acc)
    out = []
    for d in (d1, d2, d3):
        if d is not None:
            d = d * gain
            if mask is not None:
                d = d * mask
        out.append(d)
    return tuple(out)


class _ExtensionKernels:
    """cpp and cuda: the C++ ops, dispatched on the tensors' device by torch."""

    @staticmethod
    def forward(x, bias, act, alpha, gain, clamp, dim):
        return torch.ops.fastgan.bias_act_forward(x, bias, act, alpha, gain, clamp, dim)

    @staticmethod
    def backward(dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_db):
        return torch.ops.fastgan.bias_act_backward(dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_db)

    @staticmethod
    def grad2(u, dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_gdy, need_gs, need_gb):
        return torch.ops.fastgan.bias_act_grad2(u, dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_gdy,
                                                need_gs, need_gb)


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import bias_act as triton_kernels
        return triton_kernels
    return _ExtensionKernels


_LIBRARY = []  # keeps the torch.library registration alive


@_ext.on_load
def _register_fakes():
    _NODE[0] = torch.ops.fastgan.bias_act.default
    library = torch.library.Library("fastgan", "IMPL")
    library.impl("bias_act_grad2_graph", _grad2_graph, "CompositeImplicitAutograd")
    _LIBRARY.append(library)

    @torch.library.register_fake("fastgan::bias_act_forward")
    def _forward_fake(x, bias, act, alpha, gain, clamp, dim):
        return torch.empty_like(x)

    @torch.library.register_fake("fastgan::bias_act_backward")
    def _backward_fake(dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_db):
        ref = x if saved == SAVED_X else (y if y is not None else dy)
        channels = ref.shape[dim] if ref.dim() else 1
        return torch.empty_like(ref), dy.new_empty(channels if need_db else 0)

    @torch.library.register_fake("fastgan::bias_act_grad2")
    def _grad2_fake(u, dy, x, bias, y, act, saved, alpha, gain, clamp, dim, need_gdy, need_gs, need_gb):
        ref = x if saved == SAVED_X else (y if y is not None else u)
        smooth = ACTIVATIONS[act] not in PIECEWISE_LINEAR
        channels = ref.shape[dim] if ref.dim() else 1
        need_gb = need_gb and saved == SAVED_X and bias is not None and smooth
        return (torch.empty_like(ref) if need_gdy else u.new_empty(0),
                torch.empty_like(ref) if need_gs and smooth else u.new_empty(0),
                u.new_empty(channels if need_gb else 0))
