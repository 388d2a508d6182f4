"""mixture_gan_loss: MIX+GAN's loss (Arora et al. 2017, "Generalization and Equilibrium in GANs") over every pair
of T_g generators and T_d discriminators, with softmax mixture weights, both players' losses in one fused pass.

Maths. real r [T_d, B] (discriminator j on the real batch), fake f [T_g, T_d, B] (discriminator j on generator i's
samples), weights p = softmax(g_weight_logits) [T_g], q = softmax(d_weight_logits) [T_d]. With l^D, l^G the
per-sample discriminator and generator losses of `kind` (fastgan/ops/gan_loss.py; the discriminator's pairs
real_jb with fake_ijb, so separable kinds add their real term to every pair), the per-pair means
phi^P_ij = mean_b l^P(r_jb, f_ijb) and

    d_loss = sum_ij p_i q_j phi^D_ij + reg_weight * R(q)
    g_loss = sum_ij p_i q_j phi^G_ij + reg_weight * R(p)

(for separable kinds, sum_i p_i = 1 makes the real term sum_j q_j mean_b l_real(r_jb), as in the reference code).
The regulariser is, by default, the one of MIX+GAN's reference code, R(w) = mean_k(-log w_k) ("mean_neg_log"): it
grows without bound as any weight goes to 0 and so pushes the weights toward uniform. It is NOT the Shannon entropy;
regularizer="entropy" gives R(w) = sum_k w_k log w_k = -H(w) instead, and None turns it off.

Gradient (one pass in the forward kernel, saved; the backward kernel forms up_d * J_d + up_g * J_g):
    d/d f_ijb = p_i q_j dl/df / B,   d/d r_jb = q_j sum_i p_i dl/dr / B,
    d/d alpha_i = p_i (a_i - sum_k p_k a_k) with a_i = sum_j q_j phi_ij (+ reg_weight dR/d alpha_i for the player's
    own weights: mean_neg_log: p_i - 1/T_g; entropy: p_i (log p_i - R)), and likewise for the columns c_j.
d_loss depends on g_weight_logits and g_loss on d_weight_logits too: both gradients are returned (detach a weight
vector to hold it fixed, as fastgan.mix.MixtureGAN does for the player that does not own it).
Second order: the backward's own backward differentiates the reference's first derivatives with autograd (PyTorch
ops), so every order is exact.

Shapes and dtypes: logits in float32/64/16 or bfloat16 (real and fake alike), weight logits in any floating dtype
(computed in fp32, fp64 for fp64 logits). Returns (d_loss, g_loss), 0-dim, float32 (float64 for float64 logits).
Non-finite weight logits raise ValueError on CPU; on CUDA that check would need a device sync, so there they give
NaN losses instead. Saved for backward: the inputs (no copies) and the 2 x (T_d B + T_g T_d B + T_g + T_d) Jacobian.
"""
import torch

from fastgan import _ext, backends
from fastgan.ops._common import (acc_dtype, check_choice, check_same_device, check_tensor, compiling,
                                 functorch_active)
from fastgan.ops.gan_loss import KINDS, gan_loss_reference

REGULARIZERS = {None: 0, "mean_neg_log": 1, "entropy": 2}
CUDA_ORDER = ("cuda", "triton")


class MixtureGanLossFunction(torch.autograd.Function):
    """The op's autograd in Python: for the Triton kernels and under torch.compile. The cpp and cuda backends use
    the same maths as one C++ autograd node (fastgan::mixture_gan_loss), which saves ~40 us of Python per step."""

    @staticmethod
    def forward(ctx, real, fake, g_logits, d_logits, config, backend):
        need = ctx.needs_input_grad
        kernels = _kernels(backend)
        d_loss, g_loss, jac = kernels.forward(real, fake, g_logits, d_logits, *config,
                                              need[0] or need[1] or need[2] or need[3])
        ctx.save_for_backward(real, fake, g_logits, d_logits, jac)
        ctx.config, ctx.kernels = config, kernels
        return d_loss, g_loss

    @staticmethod
    def backward(ctx, up_d, up_g):
        real, fake, g_logits, d_logits, jac = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: keep the result differentiable
            grads = MixtureGanLossBackward.apply(up_d, up_g, real, fake, g_logits, d_logits, jac, ctx.config,
                                                 ctx.kernels)
        else:
            grads = ctx.kernels.backward(jac, up_d, up_g, real, fake, g_logits, d_logits)
        need = ctx.needs_input_grad
        if need[0] and need[1] and need[2] and need[3]:
            return (*grads, None, None)
        return tuple(g if n else None for g, n in zip(grads, need)) + (None, None)


class MixtureGanLossBackward(torch.autograd.Function):
    """All four input gradients in one pass from the saved Jacobian; its backward via the reference's autograd."""

    @staticmethod
    def forward(ctx, up_d, up_g, real, fake, g_logits, d_logits, jac, config, kernels):
        ctx.save_for_backward(up_d, up_g, real, fake, g_logits, d_logits)
        ctx.config = config
        return kernels.backward(jac, up_d, up_g, real, fake, g_logits, d_logits)

    @staticmethod
    def backward(ctx, v_real, v_fake, v_g, v_d):
        create_graph = torch.is_grad_enabled()
        saved = ctx.saved_tensors
        kind, a, b, c, regularizer, reg_weight = ctx.config
        with torch.enable_grad():
            # Tensors already in the graph keep their history (so the result is differentiable again); the others
            # get fresh leaves only to be differentiated here.
            x = [t if t.requires_grad else t.detach().requires_grad_() for t in saved]
            up_d, up_g, real, fake, g_logits, d_logits = x
            d_loss, g_loss = _reference_codes(real, fake, g_logits, d_logits, kind, a, b, c, regularizer, reg_weight)
            first = torch.autograd.grad(up_d * d_loss + up_g * g_loss, (real, fake, g_logits, d_logits),
                                        create_graph=True)
            pairs = [(out, v) for out, v in zip(first, (v_real, v_fake, v_g, v_d)) if out.requires_grad]
            second = [None] * 6
            if pairs:
                second = torch.autograd.grad([out for out, _ in pairs], x, [v.to(out.dtype) for out, v in pairs],
                                             allow_unused=True, create_graph=create_graph)
        # The upstream gradients also enter linearly: d/d up_d = <v, J_d>, which the line above includes.
        return tuple(second) + (None, None, None)


def _check_weight(w, name, count, label, device):
    check_tensor(w, name)
    shape = w.shape
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D [{label}], got shape {tuple(shape)}")
    if shape[0] != count:
        raise ValueError(f"{name} must have {label} = {count} entries (one per component), got {shape[0]}")
    if w.device != device:
        raise ValueError(f"{name} is on {w.device} but fake_logits is on {device}: move them to one device")


def _check_finite(w, name):
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must be finite (got inf or nan)")


def mixture_gan_loss(real_logits, fake_logits, g_weight_logits, d_weight_logits, kind="nonsaturating",
                     regularizer="mean_neg_log", reg_weight=0.1, a=0.0, b=1.0, c=1.0):
    """MIX+GAN's mixture-weighted discriminator and generator losses (see the module docstring).

    Args:
        real_logits: [T_d, B], discriminator j's logits on the real batch; None when only the generator loss is
            wanted (not for kind="relativistic").
        fake_logits: [T_g, T_d, B], discriminator j's logits on generator i's samples.
        g_weight_logits, d_weight_logits: [T_g], [T_d] mixture weight logits (weights = softmax).
        kind: "nonsaturating", "minimax", "hinge", "wasserstein", "lsgan" or "relativistic".
        regularizer: "mean_neg_log" (MIX+GAN reference code: mean(-log w)), "entropy" (-H(w)) or None.
        reg_weight: the regulariser's weight (0.1 in the reference code).
        a, b, c: lsgan targets.
    Returns:
        (d_loss, g_loss): 0-dim tensors (d_loss is None when real_logits is None).
    """
    config = _config(kind, regularizer, reg_weight, a, b, c)
    losses = _fast_path(real_logits, fake_logits, g_weight_logits, d_weight_logits, config)
    if losses is not None:
        return losses
    check_tensor(fake_logits, "fake_logits")
    shape = fake_logits.shape
    if len(shape) != 3:
        raise ValueError(f"fake_logits must be 3-D [T_g, T_d, B], got shape {tuple(shape)}")
    tg, td, batch = shape
    if tg == 0 or td == 0 or batch == 0:
        raise ValueError(f"fake_logits must not be empty, got shape {tuple(shape)}")
    device = fake_logits.device
    _check_weight(g_weight_logits, "g_weight_logits", tg, "T_g", device)
    _check_weight(d_weight_logits, "d_weight_logits", td, "T_d", device)
    has_real = real_logits is not None
    if has_real:
        check_tensor(real_logits, "real_logits")
        check_same_device([("fake_logits", fake_logits), ("real_logits", real_logits)])
        real_shape = real_logits.shape
        if len(real_shape) != 2:
            raise ValueError(f"real_logits must be 2-D [T_d, B], got shape {tuple(real_shape)}")
        if real_shape[0] != td:
            raise ValueError(f"real_logits has T_d = {real_shape[0]} discriminators but fake_logits has {td}")
        if real_shape[1] != batch:
            raise ValueError(f"real_logits has B = {real_shape[1]} samples but fake_logits has {batch}")
        if real_logits.dtype != fake_logits.dtype:
            raise TypeError(f"real_logits and fake_logits must have the same dtype, got {real_logits.dtype} and "
                            f"{fake_logits.dtype}")
    elif config[0] == KINDS["relativistic"]:
        raise ValueError("real_logits is required for kind='relativistic' (its generator loss pairs real and fake)")
    backend = backends.select_cached("mixture_gan_loss", device, cuda_order=CUDA_ORDER)
    if backend != "cpp" and device.type == "cpu":  # the C++ kernel checks this itself, for free
        _check_finite(g_weight_logits, "g_weight_logits")
        _check_finite(d_weight_logits, "d_weight_logits")
    if backend == "reference" or functorch_active():  # torch.func transforms differentiate the reference
        real = real_logits if has_real else fake_logits.new_zeros(td, batch)
        d_loss, g_loss = mixture_gan_loss_reference(real, fake_logits, g_weight_logits, d_weight_logits, kind,
                                                    regularizer, reg_weight, a, b, c)
        return (d_loss if has_real else None), g_loss
    # The op is launch-bound at MIX+GAN's sizes (T = 5, B = 64: ~1600 logits), so the Python here is kept lean:
    # no call that would return its input unchanged.
    acc = acc_dtype(fake_logits.dtype)
    real = (real_logits if real_logits.is_contiguous() else real_logits.contiguous()) if has_real \
        else fake_logits.new_zeros(td, batch)
    inputs = (real, fake_logits if fake_logits.is_contiguous() else fake_logits.contiguous(),
              _weights(g_weight_logits, acc), _weights(d_weight_logits, acc))
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        if backend != "triton" and not compiling():
            d_loss, g_loss = _ExtensionKernels.loss(*inputs, *config)  # the C++ autograd node
        else:
            d_loss, g_loss = MixtureGanLossFunction.apply(*inputs, config, backend)
    else:  # nothing to differentiate: the kernel alone, without the autograd.Function around it
        d_loss, g_loss, _ = _kernels(backend).forward(*inputs, *config, False)
    return (d_loss if has_real else None), g_loss


def _fast_path(real, fake, g_logits, d_logits, config):
    """A training step's call (tensors ready for the C++ node, gradients wanted) straight to the node, whose own
    checks (csrc/mixture_gan_loss/mixture_gan_loss_binding.cpp) cover shapes, dtypes and devices: at T = 5, B = 64
    the Python checks cost a third as much as the kernels. Returns None for anything else, and on any error, so
    that mixture_gan_loss's full checks run and raise their own messages."""
    loss = _ExtensionKernels.loss
    try:
        if (loss is None or real is None or not torch.is_grad_enabled() or compiling() or functorch_active()
                or not (real.requires_grad or fake.requires_grad or g_logits.requires_grad or d_logits.requires_grad)
                or not (real.is_contiguous() and fake.is_contiguous())
                or g_logits.dtype != acc_dtype(fake.dtype) or d_logits.dtype != g_logits.dtype
                or backends.select_cached("mixture_gan_loss", fake.device, cuda_order=CUDA_ORDER) not in ("cpp", "cuda")):
            return None
        return loss(real, fake, g_logits.contiguous(), d_logits.contiguous(), *config)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None


def _weights(w, acc):
    if w.dtype is not acc:
        w = w.to(acc)
    return w if w.is_contiguous() else w.contiguous()


_CONFIGS = {}


def _config(kind, regularizer, reg_weight, a, b, c):
    """Validated (kind code, a, b, c, regularizer code, reg_weight) for the kernels, cached per argument tuple."""
    key = (kind, regularizer, reg_weight, a, b, c, type(reg_weight), type(a), type(b), type(c))  # True != 1 here
    try:
        return _CONFIGS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable argument, reported by the checks below
        pass
    check_choice(kind, "kind", tuple(KINDS))
    check_choice(regularizer, "regularizer", tuple(REGULARIZERS))
    for value, name in ((reg_weight, "reg_weight"), (a, "a"), (b, "b"), (c, "c")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    config = (KINDS[kind], float(a), float(b), float(c), REGULARIZERS[regularizer], float(reg_weight))
    if len(_CONFIGS) < 256:
        _CONFIGS[key] = config
    return config


def mixture_gan_loss_reference(real_logits, fake_logits, g_weight_logits, d_weight_logits, kind="nonsaturating",
                               regularizer="mean_neg_log", reg_weight=0.1, a=0.0, b=1.0, c=1.0):
    """The specification in plain PyTorch, vectorised over the T_g x T_d pairs: (d_loss, g_loss)."""
    acc = acc_dtype(fake_logits.dtype)
    fake = fake_logits.to(acc)
    real = real_logits.to(acc).unsqueeze(0).expand_as(fake)
    log_p = torch.log_softmax(g_weight_logits.to(acc), dim=0)
    log_q = torch.log_softmax(d_weight_logits.to(acc), dim=0)
    weights = log_p.exp()[:, None] * log_q.exp()[None, :]
    phi_d = gan_loss_reference(real, fake, kind, "d", "none", a, b, c).mean(dim=-1)
    phi_g = gan_loss_reference(real, fake, kind, "g", "none", a, b, c).mean(dim=-1)
    d_loss = (weights * phi_d).sum() + reg_weight * _regularizer(log_q, regularizer)
    g_loss = (weights * phi_g).sum() + reg_weight * _regularizer(log_p, regularizer)
    return d_loss, g_loss


def _regularizer(log_w, regularizer):
    if regularizer == "mean_neg_log":
        return -log_w.mean()
    if regularizer == "entropy":
        return (log_w.exp() * log_w).sum()
    return log_w.new_zeros(())


def _reference_codes(real, fake, g_logits, d_logits, kind, a, b, c, regularizer, reg_weight):
    names = {code: name for name, code in KINDS.items()}
    regs = {code: name for name, code in REGULARIZERS.items()}
    return mixture_gan_loss_reference(real, fake, g_logits, d_logits, names[kind], regs[regularizer], reg_weight,
                                      a, b, c)


class _ExtensionKernels:
    """cpp and cuda: the C++ ops (their overloads, bound once the library is loaded: calling an overload skips the
    packet's Python dispatch), dispatched on the tensors' device by torch; `loss` is the op with its autograd node."""

    forward = backward = loss = None


def _backward_graph(up_d, up_g, real, fake, g_logits, d_logits, jac, kind, a, b, c, regularizer, reg_weight):
    """fastgan::mixture_gan_loss_backward_graph: what the C++ node's backward calls under create_graph, so that the
    gradient is differentiable again (through the reference's autograd, as MixtureGanLossBackward does)."""
    return MixtureGanLossBackward.apply(up_d, up_g, real, fake, g_logits, d_logits, jac,
                                        (kind, a, b, c, regularizer, reg_weight), _ExtensionKernels)


_LIBRARY = []  # keeps the torch.library registration alive


def _kernels(backend):
    if backend == "triton":
        from fastgan.kernels import mixture_gan_loss as triton_kernels
        return triton_kernels
    return _ExtensionKernels


def jacobian_size(fake):
    """Length of one section of the saved Jacobian: T_d B + T_g T_d B + T_g + T_d."""
    tg, td, batch = fake.shape
    return td * batch + tg * td * batch + tg + td


@_ext.on_load
def _register_fakes():
    _ExtensionKernels.forward = torch.ops.fastgan.mixture_gan_loss_forward.default
    _ExtensionKernels.backward = torch.ops.fastgan.mixture_gan_loss_backward.default
    _ExtensionKernels.loss = torch.ops.fastgan.mixture_gan_loss.default
    library = torch.library.Library("fastgan", "IMPL")
    library.impl("mixture_gan_loss_backward_graph", _backward_graph, "CompositeImplicitAutograd")
    _LIBRARY.append(library)

    @torch.library.register_fake("fastgan::mixture_gan_loss_forward")
    def _forward_fake(real, fake, g_logits, d_logits, kind, a, b, c, regularizer, reg_weight, need_grad):
        acc = acc_dtype(fake.dtype)
        return (fake.new_empty((), dtype=acc), fake.new_empty((), dtype=acc),
                fake.new_empty(2 * jacobian_size(fake) if need_grad else 0, dtype=acc))

    @torch.library.register_fake("fastgan::mixture_gan_loss_backward")
    def _backward_fake(jac, up_d, up_g, real, fake, g_logits, d_logits):
        return (torch.empty_like(real), torch.empty_like(fake), torch.empty_like(g_logits),
                torch.empty_like(d_logits))
