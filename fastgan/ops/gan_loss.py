"""gan_loss: the standard GAN losses on discriminator logits, forward and gradient in one pass.

Maths. With r the discriminator's logits on real samples, f on generated ones, softplus(x) = log(1 + e^x)
(evaluated as max(x, 0) + log1p(e^-|x|): finite for any finite logit) and sigma the logistic function:

    kind            discriminator loss (player "d")          generator loss (player "g")
    nonsaturating   softplus(-r) + softplus(f)               softplus(-f)          (Goodfellow et al. 2014, NS)
    minimax         softplus(-r) + softplus(f)               -softplus(f)          (= log(1 - sigma(f)))
    hinge           relu(1 - r) + relu(1 + f)                -f                    (Lim & Ye 2017; Miyato 2018)
    wasserstein     -r + f                                   -f                    (Arjovsky et al. 2017)
    lsgan           (r - b)^2 / 2 + (f - a)^2 / 2            (f - c)^2 / 2         (Mao et al. 2017; a=0, b=c=1)
    relativistic    softplus(f - r), paired per sample       softplus(r - f)       (RpGAN, Jolicoeur-Martineau 2019)

Reduction "mean": the real and fake terms are averaged separately (their batch sizes may differ), the paired
relativistic term over the pairs; "sum" sums; "none" returns the per-sample loss (the discriminator's real and fake
terms added sample by sample, so real and fake must then have one shape).

Gradient. The forward kernel reads every logit once and writes the loss and, when a logit requires grad,
g = d loss / d logit with the reduction's scale folded in (1/n for mean), in fp32 (fp64 for fp64 logits):
    softplus'(x) = sigma(x), relu(1 - r)' = -[1 - r > 0], lsgan: r - b, f - a, f - c; relativistic D:
    d/df = sigma(f - r) = -d/dr (G: d/dr = sigma(r - f) = -d/df).
The backward is then one scaling pass, d logit = upstream * g (upstream per sample for "none").
Second order (PyTorch ops, so every order is exact): with v the upstream of d logit,
    d upstream = sum v * g,  d r = upstream * (h_rr v_r + h_rf v_f),  d f = upstream * (h_rf v_r + h_ff v_f),
where h is the loss's Hessian per sample (sigma(x) sigma(-x) for the softplus terms, 1 for lsgan, 0 for hinge and
wasserstein; relativistic: h_rr = h_ff = -h_rf = sigma(x) sigma(-x)), times the reduction's scale.

Shapes: logits of any shape (one per sample, or patch logits [B, 1, H, W]); every element is one term.
Returns a 0-dim loss ("mean", "sum") or the fake logits' shape ("none"), float32 (float64 for float64 logits).
Saved for backward: the logits (no copy) and the gradient buffer [n_real + n_fake].
"""
import torch
import torch.nn.functional as F

from fastgan import _ext, backends
from fastgan.ops._common import (acc_dtype, check_choice, check_same_device, check_tensor, compiling,
                                 functorch_active)

KINDS = {"nonsaturating": 0, "minimax": 1, "hinge": 2, "wasserstein": 3, "lsgan": 4, "relativistic": 5}
PLAYERS = {"d": 0, "g": 1}
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
CUDA_ORDER = ("cuda", "triton")

_RELATIVISTIC = KINDS["relativistic"]


def uses_real(kind, player):
    """Whether the loss reads the real logits (every discriminator loss; the generator's only when relativistic)."""
    return player == PLAYERS["d"] or kind == _RELATIVISTIC


def is_paired(kind, player, reduction):
    """Element i of real pairs with element i of fake: relativistic, and the discriminator's per-sample loss."""
    return kind == _RELATIVISTIC or (player == PLAYERS["d"] and reduction == REDUCTIONS["none"])


class GanLossFunction(torch.autograd.Function):
    """One kernel reads the logits once and writes the loss and its gradient; backward scales that gradient."""

    @staticmethod
    def forward(ctx, real, fake, config, kernels):
        need = ctx.needs_input_grad
        kind, player, reduction, a, b, c = config
        loss, grad = kernels.forward(fake if real is None else real, fake, kind, player, reduction, a, b, c,
                                     need[0] or need[1])
        ctx.save_for_backward(real, fake, grad)
        ctx.config, ctx.kernels = config, kernels
        return loss

    @staticmethod
    def backward(ctx, upstream):
        real, fake, grad = ctx.saved_tensors
        if not upstream.is_contiguous():  # e.g. the expanded gradient of a .sum() for reduction="none"
            upstream = upstream.contiguous()
        if torch.is_grad_enabled():  # create_graph: go through the differentiable backward
            flat = GanLossBackward.apply(upstream, real, fake, grad, ctx.config, ctx.kernels)
        else:
            flat = ctx.kernels.backward(upstream, grad, fake)
        n_real = 0 if real is None else real.numel()
        grad_real = flat.narrow(0, 0, n_real) if n_real and ctx.needs_input_grad[0] else None
        grad_fake = flat.narrow(0, n_real, fake.numel()) if ctx.needs_input_grad[1] else None
        return grad_real, grad_fake, None, None


class GanLossBackward(torch.autograd.Function):
    """d logits = upstream * saved gradient (one pass); its own backward, the second order, in PyTorch ops."""

    @staticmethod
    def forward(ctx, upstream, real, fake, grad, config, kernels):
        ctx.save_for_backward(upstream, real, fake, grad)
        ctx.config = config
        return kernels.backward(upstream, grad, fake)

    @staticmethod
    def backward(ctx, v):
        upstream, real, fake, grad = ctx.saved_tensors
        kind, player, reduction, a, b, c = ctx.config
        if torch.is_grad_enabled():  # a third order will follow: every term in differentiable PyTorch ops
            s_r, s_f, h_rr, h_ff, h_rf = _derivatives(real, fake, ctx.config)
        else:  # the last order: the first derivatives are the forward's buffer, zero Hessians are skipped
            s_r, s_f, h_rr, h_ff, h_rf = _hessian(real, fake, grad, ctx.config)
        v = v.to(s_f.dtype)
        n_real = 0 if real is None else real.numel()
        v_r, v_f = v[:n_real], v[n_real:]
        per_sample = reduction == REDUCTIONS["none"]
        d_up = v_f * s_f
        if n_real:
            d_up = d_up + v_r * s_r if per_sample else d_up.sum() + (v_r * s_r).sum()
        elif not per_sample:
            d_up = d_up.sum()
        d_up = d_up.reshape(upstream.shape)
        d_real = None
        if n_real:
            if h_rr is None:  # zero curvature; zeros rather than None, as eager's relu backward gives
                d_real = torch.zeros_like(real)
            else:
                d_real = h_rr * v_r if h_rf is None else h_rr * v_r + h_rf * v_f
                d_real = (upstream * d_real).to(real.dtype)
        if h_ff is None:
            d_fake = torch.zeros_like(fake)
        else:
            d_fake = h_ff * v_f if h_rf is None else h_rf * v_r + h_ff * v_f
            d_fake = (upstream * d_fake).to(fake.dtype)
        return d_up, d_real, d_fake, None, None, None


def _hessian(real, fake, grad, config):
    """_derivatives' (s_r, s_f, h_rr, h_ff, h_rf) without a graph: s from the forward kernel's gradient buffer
    (the same values), h None where it is identically zero (hinge, wasserstein), so nothing is computed for it."""
    n_real = 0 if real is None else real.numel()
    s_r, s_f = (grad[:n_real] if n_real else None), grad[n_real:]
    if config[0] in (KINDS["hinge"], KINDS["wasserstein"]):
        return s_r, s_f, None, None, None
    _, _, h_rr, h_ff, h_rf = _derivatives(real, fake, config)
    return s_r, s_f, h_rr, h_ff, h_rf


def _sigmoid_slope(x):
    return torch.sigmoid(x) * torch.sigmoid(-x)


def _derivatives(real, fake, config):
    """(s_r, s_f, h_rr, h_ff, h_rf): first and second derivatives per element, reduction scale included, in
    differentiable PyTorch ops. h_rf is None for separable losses; s_r, h_rr are None without real logits."""
    kind, player, reduction, a, b, c = config
    acc = acc_dtype(fake.dtype)
    f = fake.to(acc)
    r = None if real is None else real.to(acc)
    paired = is_paired(kind, player, reduction)
    n_f = f.numel()
    scale_r = scale_f = 1.0
    if reduction == REDUCTIONS["mean"]:
        scale_f = 1.0 / n_f
        scale_r = scale_f if paired or r is None else 1.0 / r.numel()
    if kind == _RELATIVISTIC:
        x = f - r if player == PLAYERS["d"] else r - f
        s = torch.sigmoid(x) * scale_f
        h = _sigmoid_slope(x) * scale_f
        return (-s, s, h, h, -h) if player == PLAYERS["d"] else (s, -s, h, h, -h)
    s_r = h_rr = None
    if player == PLAYERS["d"]:
        if kind == KINDS["hinge"]:
            s_r, h_rr = -((1 - r) > 0).to(acc), torch.zeros_like(r)
            s_f, h_ff = ((1 + f) > 0).to(acc), torch.zeros_like(f)
        elif kind == KINDS["wasserstein"]:
            s_r, h_rr = -torch.ones_like(r), torch.zeros_like(r)
            s_f, h_ff = torch.ones_like(f), torch.zeros_like(f)
        elif kind == KINDS["lsgan"]:
            s_r, h_rr = r - b, torch.ones_like(r)
            s_f, h_ff = f - a, torch.ones_like(f)
        else:
            s_r, h_rr = -torch.sigmoid(-r), _sigmoid_slope(r)
            s_f, h_ff = torch.sigmoid(f), _sigmoid_slope(f)
        s_r, h_rr = s_r * scale_r, h_rr * scale_r
    elif kind == KINDS["minimax"]:
        s_f, h_ff = -torch.sigmoid(f), -_sigmoid_slope(f)
    elif kind in (KINDS["hinge"], KINDS["wasserstein"]):
        s_f, h_ff = -torch.ones_like(f), torch.zeros_like(f)
    elif kind == KINDS["lsgan"]:
        s_f, h_ff = f - c, torch.ones_like(f)
    else:
        s_f, h_ff = -torch.sigmoid(-f), _sigmoid_slope(f)
    return s_r, s_f * scale_f, h_rr, h_ff * scale_f, None


def _check_number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


_CONFIGS = {}


def _config(kind, player, reduction, a, b, c):
    """(kind, player, reduction codes, a, b, c as floats), validated once per distinct argument tuple: the op is
    launch-bound at the usual sizes (B logits), so the per-call Python is kept short."""
    key = (kind, player, reduction, a, b, c, type(a), type(b), type(c))  # the types: True == 1 but is no number
    try:
        return _CONFIGS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable argument, reported by the checks below
        pass
    check_choice(kind, "kind", tuple(KINDS))
    check_choice(player, "player", tuple(PLAYERS))
    check_choice(reduction, "reduction", tuple(REDUCTIONS))
    config = (KINDS[kind], PLAYERS[player], REDUCTIONS[reduction], _check_number(a, "a"), _check_number(b, "b"),
              _check_number(c, "c"))
    if len(_CONFIGS) < 256:
        _CONFIGS[key] = config
    return config


def _check_args(real_logits, fake_logits, config):
    """Validates the tensors for a loss of `config`; returns whether the loss reads real_logits."""
    kind, player, reduction = config[:3]
    check_tensor(fake_logits, "fake_logits")
    if fake_logits.numel() == 0:
        raise ValueError(f"fake_logits must not be empty, got shape {tuple(fake_logits.shape)}")
    if not uses_real(kind, player):
        if real_logits is not None:
            check_tensor(real_logits, "real_logits")
        return False
    if real_logits is None:
        names = {code: name for name, code in KINDS.items()}
        raise ValueError(f"real_logits is required for the {names[kind]} "
                         f"{'discriminator' if player == PLAYERS['d'] else 'generator'} loss")
    check_tensor(real_logits, "real_logits")
    check_same_device([("fake_logits", fake_logits), ("real_logits", real_logits)])
    if real_logits.dtype != fake_logits.dtype:
        raise TypeError(f"real_logits and fake_logits must have the same dtype, got {real_logits.dtype} and "
                        f"{fake_logits.dtype}")
    if real_logits.numel() == 0:
        raise ValueError(f"real_logits must not be empty, got shape {tuple(real_logits.shape)}")
    if is_paired(kind, player, reduction) and real_logits.shape != fake_logits.shape:
        why = "relativistic losses pair them per sample" if kind == _RELATIVISTIC else \
            'reduction="none" adds them per sample'
        raise ValueError(f"real_logits and fake_logits must have the same shape ({why}), got "
                         f"{tuple(real_logits.shape)} and {tuple(fake_logits.shape)}")
    return True


def _flat(x):
    # [B] contiguous logits (a critic's usual output) go in as they are: a reshape would add a view to the graph.
    return x if x.dim() == 1 and x.is_contiguous() else x.reshape(-1)


def gan_loss(real_logits, fake_logits, kind="nonsaturating", player="d", reduction="mean", a=0.0, b=1.0, c=1.0):
    """A GAN loss on discriminator logits (see the module docstring for the formulas).

    Args:
        real_logits: the discriminator's logits on real samples (any shape), or None for the generator's loss
            of every kind but relativistic.
        fake_logits: its logits on generated samples.
        kind: "nonsaturating", "minimax", "hinge", "wasserstein", "lsgan" or "relativistic".
        player: "d" (discriminator loss) or "g" (generator loss).
        reduction: "mean", "sum" or "none".
        a, b, c: lsgan targets (fake label, real label, the generator's target for fakes).
    Returns:
        The loss: 0-dim, or fake_logits' shape for "none"; float32 (float64 for float64 logits).
    """
    config = _config(kind, player, reduction, a, b, c)
    reads_real = _check_args(real_logits, fake_logits, config)
    backend = backends.select_cached("gan_loss", fake_logits.device, cuda_order=CUDA_ORDER)
    if backend == "reference" or functorch_active():  # torch.func transforms differentiate the reference
        return gan_loss_reference(real_logits, fake_logits, kind, player, reduction, *config[3:])
    real, fake, kernels = _flat(real_logits) if reads_real else None, _flat(fake_logits), _kernels(backend)
    if torch.is_grad_enabled() and (fake.requires_grad or (real is not None and real.requires_grad)):
        if kernels is _ExtensionKernels and kernels.loss is not None and not compiling():
            loss = kernels.loss(real, fake, *config)  # the C++ autograd node
        else:  # Triton and torch.compile's tracing: the Python autograd.Function
            loss = GanLossFunction.apply(real, fake, config, kernels)
    else:  # nothing to differentiate: the kernel alone, without the autograd.Function around it
        loss = kernels.forward(fake if real is None else real, fake, *config, False)[0]
    return loss.view(fake_logits.shape) if config[2] == REDUCTIONS["none"] else loss


def _softplus(x):
    # Exact for every finite x (torch's softplus switches to x above its threshold of 20; logsigmoid does not).
    return -F.logsigmoid(-x)


def gan_loss_reference(real_logits, fake_logits, kind="nonsaturating", player="d", reduction="mean", a=0.0, b=1.0,
                       c=1.0):
    """The specification in plain PyTorch (fp32 math for half inputs, like the kernels)."""
    acc = acc_dtype(fake_logits.dtype)
    f = fake_logits.to(acc)
    r = None if real_logits is None else real_logits.to(acc)
    real_term = None
    if kind == "relativistic":
        fake_term = _softplus(f - r) if player == "d" else _softplus(r - f)
    elif player == "d":
        if kind == "hinge":
            real_term, fake_term = F.relu(1 - r), F.relu(1 + f)
        elif kind == "wasserstein":
            real_term, fake_term = -r, f
        elif kind == "lsgan":
            real_term, fake_term = 0.5 * (r - b) ** 2, 0.5 * (f - a) ** 2
        else:
            real_term, fake_term = _softplus(-r), _softplus(f)
    elif kind == "minimax":
        fake_term = -_softplus(f)
    elif kind in ("hinge", "wasserstein"):
        fake_term = -f
    elif kind == "lsgan":
        fake_term = 0.5 * (f - c) ** 2
    else:
        fake_term = _softplus(-f)
    if reduction == "none":
        return fake_term if real_term is None else real_term + fake_term
    reduce = torch.mean if reduction == "mean" else torch.sum
    loss = reduce(fake_term)
    return loss if real_term is None else reduce(real_term) + loss


class _ExtensionKernels:
    """cpp and cuda: the C++ ops (their overloads, bound once the library is loaded: calling an overload skips the
    packet's Python dispatch), dispatched on the tensors' device by torch; `loss` is the op with its autograd node."""

    forward = backward = loss = None


def _backward_graph(upstream, real, fake, grad, kind, player, reduction, a, b, c):
    """fastgan::gan_loss_backward_graph: what the C++ node's backward calls under create_graph, so that the
    gradient is differentiable again (GanLossBackward's backward gives the second and higher orders)."""
    return GanLossBackward.apply(upstream, real, fake, grad, (kind, player, reduction, a, b, c), _ExtensionKernels)


_LIBRARY = []  # keeps the torch.library registration alive


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import gan_loss as triton_kernels
        return triton_kernels
    return _ExtensionKernels


def output_sizes(real, fake, kind, player, reduction, need_grad):
    """(loss numel or None for a scalar, gradient buffer length) of gan_loss_forward: shared by the fakes."""
    n_real = real.numel() if uses_real(kind, player) else 0
    paired = is_paired(kind, player, reduction)
    total = fake.numel() if paired else n_real + fake.numel()
    return (total if reduction == REDUCTIONS["none"] else None), (n_real + fake.numel() if need_grad else 0)


@_ext.on_load
def _register_fakes():
    _ExtensionKernels.forward = torch.ops.fastgan.gan_loss_forward.default
    _ExtensionKernels.backward = torch.ops.fastgan.gan_loss_backward.default
    _ExtensionKernels.loss = torch.ops.fastgan.gan_loss.default
    library = torch.library.Library("fastgan", "IMPL")
    library.impl("gan_loss_backward_graph", _backward_graph, "CompositeImplicitAutograd")
    _LIBRARY.append(library)

    @torch.library.register_fake("fastgan::gan_loss_forward")
    def _forward_fake(real, fake, kind, player, reduction, a, b, c, need_grad):
        loss_numel, grad_numel = output_sizes(real, fake, kind, player, reduction, need_grad)
        acc = acc_dtype(fake.dtype)
        loss = fake.new_empty((), dtype=acc) if loss_numel is None else fake.new_empty(loss_numel, dtype=acc)
        return loss, fake.new_empty(grad_numel, dtype=acc)

    @torch.library.register_fake("fastgan::gan_loss_backward")
    def _backward_fake(upstream, grad, like):
        return like.new_empty(grad.shape[0])
