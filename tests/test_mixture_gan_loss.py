"""mixture_gan_loss: every backend against a naive double loop over (generator i, discriminator j) with MIX+GAN's
reference-code semantics, T in {1, 2, 5}; T = 1 equals the plain loss; gradients for logits and weight logits to
second order; dtypes; bad inputs."""
import pytest
import torch
from conftest import CPU_BACKENDS, assert_close_to_reference, device_backends, rel_error

import fastgan
from fastgan import losses, ops
from fastgan.ops.gan_loss import KINDS

LSGAN = {"a": -0.3, "b": 0.8, "c": 0.6}
SIZES = [(1, 1, 5), (2, 2, 7), (5, 5, 64), (3, 2, 1), (2, 4, 300)]  # (T_g, T_d, B)


def naive(real, fake, g_logits, d_logits, kind, regularizer="mean_neg_log", reg_weight=0.1):
    """The loss as MIX+GAN's reference code writes it: a double loop over components with the plain losses,
    weighted by w_G[i] w_D[j], plus reg_weight * mean(-log w) of each player's own weights."""
    w_g, w_d = torch.softmax(g_logits, 0), torch.softmax(d_logits, 0)
    d_loss = g_loss = 0.0
    for i in range(fake.shape[0]):
        for j in range(fake.shape[1]):
            pair_d = losses.d_loss(kind, real[j], fake[i, j], **LSGAN)
            pair_g = losses.g_loss(kind, fake[i, j], real[j], **LSGAN)
            d_loss = d_loss + w_g[i] * w_d[j] * pair_d
            g_loss = g_loss + w_g[i] * w_d[j] * pair_g

    def reg(w):
        if regularizer == "mean_neg_log":
            return -torch.log(w).mean()
        if regularizer == "entropy":
            return (w * torch.log(w)).sum()
        return 0.0

    return d_loss + reg_weight * reg(w_d), g_loss + reg_weight * reg(w_g)


def inputs(tg, td, batch, dtype=torch.float64, device="cpu", weight_dtype=None):
    real = (torch.randn(td, batch, dtype=torch.float64) * 1.5).to(device=device, dtype=dtype)
    fake = (torch.randn(tg, td, batch, dtype=torch.float64) * 1.5).to(device=device, dtype=dtype)
    wd = weight_dtype or (torch.float64 if dtype == torch.float64 else torch.float32)
    g_logits = torch.randn(tg, dtype=wd, device=device)
    d_logits = torch.randn(td, dtype=wd, device=device)
    return [t.requires_grad_(True) for t in (real, fake, g_logits, d_logits)]


def run(backend, *args, **kw):
    with fastgan.backend(backend):
        return ops.mixture_gan_loss(*args, **kw, **LSGAN)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_naive_double_loop(backend, kind):
    torch.manual_seed(0)
    # T in {1, 2, 5}, each regulariser once.
    for (tg, td, batch), regularizer in zip([(1, 1, 5), (2, 2, 7), (5, 5, 16)], ("entropy", None, "mean_neg_log")):
        if True:
            x = inputs(tg, td, batch)
            d_loss, g_loss = run(backend, *x, kind=kind, regularizer=regularizer, reg_weight=0.3)
            with fastgan.backend("reference"):
                want_d, want_g = naive(*x, kind, regularizer, 0.3)
            assert d_loss.dtype == torch.float64 and d_loss.shape == ()
            assert rel_error(d_loss, want_d) <= 1e-12 and rel_error(g_loss, want_g) <= 1e-12
            # Both outputs' gradients for all four inputs (weights included) at once.
            got = torch.autograd.grad(2 * d_loss + 3 * g_loss, x)
            want = torch.autograd.grad(2 * want_d + 3 * want_g, x)
            for g, w in zip(got, want):
                assert rel_error(g, w) <= 1e-11


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_component_is_the_plain_loss(backend):
    torch.manual_seed(1)
    for kind in KINDS:
        real, fake, g_logits, d_logits = inputs(1, 1, 9)
        d_loss, g_loss = run(backend, real, fake, g_logits, d_logits, kind=kind, regularizer=None)
        with fastgan.backend(backend):
            assert rel_error(d_loss, losses.d_loss(kind, real[0], fake[0, 0], **LSGAN)) <= 1e-12
            assert rel_error(g_loss, losses.g_loss(kind, fake[0, 0], real[0], **LSGAN)) <= 1e-12
        # With one component the default regulariser is mean(-log 1) = 0 and the weights get no gradient.
        d_reg, g_reg = run(backend, real, fake, g_logits, d_logits, kind=kind)
        assert rel_error(d_reg, d_loss) <= 1e-12 and rel_error(g_reg, g_loss) <= 1e-12
        grads = torch.autograd.grad(d_reg + g_reg, (g_logits, d_logits))
        assert all(g.abs().max() <= 1e-15 for g in grads)


@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_every_backend_matches_reference(device, backend, dtype):
    torch.manual_seed(2)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    for kind in ("nonsaturating", "relativistic", "lsgan"):
        for tg, td, batch in (SIZES[2], SIZES[4]):
            x = inputs(tg, td, batch, dtype, device)
            d_loss, g_loss = run(backend, *x, kind=kind)
            assert d_loss.dtype == acc
            x64 = [t.detach().double().requires_grad_(True) for t in x]
            ref_d, ref_g = ops.mixture_gan_loss_reference(*x64, kind, **LSGAN)
            assert_close_to_reference(d_loss, ref_d, acc)
            assert_close_to_reference(g_loss, ref_g, acc)
            up_d, up_g = torch.rand(2, dtype=torch.float64, device=device) + 0.5
            got = torch.autograd.grad((d_loss, g_loss), x, (up_d.to(acc), up_g.to(acc)))
            want = torch.autograd.grad((ref_d, ref_g), x64, (up_d, up_g))
            lowp = None
            if dtype in (torch.bfloat16, torch.float16):
                # PyTorch's own low-precision run: the vectorised eager expression in the storage dtype.
                xl = [t.detach().requires_grad_(True) for t in x]
                ld, lg = eager_vectorised(*xl, kind, dtype=dtype)
                lowp = torch.autograd.grad((ld, lg), xl, (up_d.to(dtype), up_g.to(dtype)))
            for k, (g, w) in enumerate(zip(got, want)):
                assert g.dtype == x[k].dtype
                if k < 2:
                    assert_close_to_reference(g, w, dtype, None if lowp is None else lowp[k], backend)
                else:  # the weight logits are fp32 for half logits
                    # softmax backward cancels (p_i (a_i - sum_k p_k a_k)): fp32 rounding of a ~ 1 shows at 1e-5.
                    assert rel_error(g, w) <= (1e-12 if dtype == torch.float64 else 1e-4)


def eager_vectorised(real, fake, g_logits, d_logits, kind, dtype=None, reg_weight=0.1):
    """What a competent user writes without fastgan (one broadcasted expression; the benchmark's baseline)."""
    sp = torch.nn.functional.softplus
    r = real.unsqueeze(0)
    if kind == "relativistic":
        phi_d, phi_g = sp(fake - r).mean(-1), sp(r - fake).mean(-1)
    elif kind == "lsgan":
        phi_d = (0.5 * (r - LSGAN["b"]) ** 2 + 0.5 * (fake - LSGAN["a"]) ** 2).mean(-1)
        phi_g = (0.5 * (fake - LSGAN["c"]) ** 2).mean(-1)
    else:
        phi_d, phi_g = (sp(-r) + sp(fake)).mean(-1), sp(-fake).mean(-1)
    w_g, w_d = torch.softmax(g_logits, 0), torch.softmax(d_logits, 0)
    if dtype is not None:
        w_g, w_d = w_g.to(dtype), w_d.to(dtype)
    w = w_g[:, None] * w_d[None, :]
    d_loss = (w * phi_d).sum() - reg_weight * torch.log_softmax(d_logits, 0).mean()
    g_loss = (w * phi_g).sum() - reg_weight * torch.log_softmax(g_logits, 0).mean()
    return d_loss, g_loss


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_extreme_logits_and_weights(backend):
    values = torch.tensor([1e4, -1e4, 100.0, -100.0, 0.5, -2.0])
    real = values.repeat(2, 1).requires_grad_(True)
    fake = values.flip(0).repeat(3, 2, 1).requires_grad_(True)
    g_logits = torch.tensor([30.0, -30.0, 0.0], requires_grad=True)  # weights near 1 and near 0
    d_logits = torch.tensor([5.0, -5.0], requires_grad=True)
    for kind in KINDS:
        d_loss, g_loss = run(backend, real, fake, g_logits, d_logits, kind=kind)
        grads = torch.autograd.grad(d_loss + g_loss, (real, fake, g_logits, d_logits))
        assert torch.isfinite(d_loss) and torch.isfinite(g_loss), kind
        assert all(torch.isfinite(g).all() for g in grads), kind
        x64 = [t.detach().double() for t in (real, fake, g_logits, d_logits)]
        ref_d, ref_g = ops.mixture_gan_loss_reference(*x64, kind, **LSGAN)
        assert rel_error(d_loss, ref_d) <= 1e-5 and rel_error(g_loss, ref_g) <= 1e-5, kind


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_layouts_and_generator_only(backend):
    torch.manual_seed(3)
    real, fake, g_logits, d_logits = inputs(3, 2, 6)
    fake_t = fake.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_(True)  # not contiguous
    d_loss, g_loss = run(backend, real, fake_t, g_logits, d_logits)
    ref_d, ref_g = ops.mixture_gan_loss_reference(real, fake, g_logits, d_logits, **LSGAN)
    assert rel_error(d_loss, ref_d) <= 1e-12 and rel_error(g_loss, ref_g) <= 1e-12
    assert torch.autograd.grad(g_loss, fake_t)[0].shape == fake.shape
    # Generator loss alone: real_logits may be None (not for relativistic); d_loss is then None.
    none_d, only_g = run(backend, None, fake, g_logits, d_logits)
    assert none_d is None and rel_error(only_g, ref_g) <= 1e-12
    # Weight logits in another dtype than the logits, and logits that do not require grad.
    d32, _ = run(backend, real.detach(), fake.detach(), g_logits.detach().float(), d_logits.float())
    assert rel_error(d32, ref_d) <= 1e-6
    (gd,) = torch.autograd.grad(d32, d_logits)
    assert gd.dtype == torch.float64


GRADCHECK = {"reference": ["nonsaturating", "relativistic"],
             "cpp": list(KINDS),
             "triton": ["nonsaturating", "relativistic"]}  # the interpreter is slow: two kinds, small sizes


@pytest.mark.parametrize("backend,kind", [(b, k) for b in CPU_BACKENDS for k in GRADCHECK[b]])
def test_gradcheck_and_gradgradcheck(backend, kind):
    torch.manual_seed(4)
    tg, td, batch = (2, 1, 2) if backend == "triton" else (2, 2, 2)
    x = inputs(tg, td, batch)
    if kind == "hinge":  # keep clear of the kinks
        x = [(t.detach() * 0.3).requires_grad_(True) for t in x]
    regularizer = "entropy" if kind == "relativistic" else "mean_neg_log"

    def fn(*args):
        return run(backend, *args, kind=kind, regularizer=regularizer)

    assert torch.autograd.gradcheck(fn, tuple(x))
    assert torch.autograd.gradgradcheck(fn, tuple(x))


def test_third_order_matches_reference():
    torch.manual_seed(5)
    x = inputs(2, 2, 3)
    outs = []
    for backend in ("reference", "cpp"):
        with fastgan.backend(backend):
            d_loss, g_loss = ops.mixture_gan_loss(*x, kind="relativistic", regularizer="entropy")
        (g,) = torch.autograd.grad(d_loss + g_loss, x[1], create_graph=True)
        (h,) = torch.autograd.grad(g.pow(2).sum(), x[2], create_graph=True)
        (t,) = torch.autograd.grad(h.sin().sum(), x[0])
        outs.append(t)
    assert rel_error(outs[1], outs[0]) <= 1e-12


def test_deterministic_and_thread_independent():
    torch.manual_seed(6)
    x = [t.detach().float() for t in inputs(3, 2, 9000)]  # several CPU work items
    with fastgan.backend("cpp"):
        first = ops.mixture_gan_loss(*x)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            second = ops.mixture_gan_loss(*x)
        finally:
            torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_torch_compile_traces_the_op():
    def step(*x):
        d_loss, g_loss = ops.mixture_gan_loss(*x)
        return d_loss + g_loss

    x = [t.detach().float().requires_grad_(True) for t in inputs(2, 3, 5)]
    with fastgan.backend("cpp"):
        compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
        out = compiled(*x)
        assert torch.allclose(out, step(*x))
        out.backward()
    assert all(t.grad is not None for t in x)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_inputs_name_the_argument(backend):
    real, fake, g_logits, d_logits = [t.detach() for t in inputs(3, 2, 4)]

    def call(*args, **kw):
        with fastgan.backend(backend):
            return ops.mixture_gan_loss(*args, **kw)

    with pytest.raises(ValueError, match="real_logits has T_d"):
        call(real[:1], fake, g_logits, d_logits)
    with pytest.raises(ValueError, match="real_logits has B"):
        call(real[:, :3], fake, g_logits, d_logits)
    with pytest.raises(ValueError, match="g_weight_logits must have T_g = 3"):
        call(real, fake, g_logits[:2], d_logits)
    with pytest.raises(ValueError, match="d_weight_logits must have T_d = 2"):
        call(real, fake, g_logits, torch.randn(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="fake_logits must be 3-D"):
        call(real, fake[0], g_logits, d_logits)
    with pytest.raises(ValueError, match="real_logits must be 2-D"):
        call(real[0], fake, g_logits, d_logits)
    with pytest.raises(ValueError, match="g_weight_logits must be 1-D"):
        call(real, fake, g_logits[None], d_logits)
    with pytest.raises(ValueError, match="unknown kind"):
        call(real, fake, g_logits, d_logits, kind="mix")
    with pytest.raises(ValueError, match="unknown regularizer"):
        call(real, fake, g_logits, d_logits, regularizer="shannon")
    with pytest.raises(ValueError, match="g_weight_logits must be finite"):
        call(real, fake, torch.tensor([0.0, float("nan"), 1.0], dtype=torch.float64), d_logits)
    with pytest.raises(ValueError, match="d_weight_logits must be finite"):
        call(real, fake, g_logits, torch.tensor([float("inf"), 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="real_logits is required"):
        call(None, fake, g_logits, d_logits, kind="relativistic")
    with pytest.raises(ValueError, match="fake_logits must not be empty"):
        call(real[:, :0], fake[:, :, :0], g_logits, d_logits)
    with pytest.raises(TypeError, match="same dtype"):
        call(real.float(), fake, g_logits, d_logits)
    with pytest.raises(TypeError, match="d_weight_logits"):
        call(real, fake, g_logits, [0.0, 1.0])
    with pytest.raises(TypeError, match="reg_weight must be a number"):
        call(real, fake, g_logits, d_logits, reg_weight="0.1")


def test_cpp_calls_take_the_cpp_node_and_its_second_order_is_exact():
    """The cpp backend records one C++ autograd node; a gradient taken with create_graph goes on through the
    reference's derivation (fastgan::mixture_gan_loss_backward_graph), so the second order matches the reference."""
    g = torch.Generator().manual_seed(3)
    real = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    fake = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    gw = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    dw = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def second(fn):
        d_loss, g_loss = fn(real, fake, gw, dw)
        grads = torch.autograd.grad(d_loss + 0.5 * g_loss, (real, fake, gw, dw), create_graph=True)
        return torch.autograd.grad(sum((t * t).sum() for t in grads), (real, fake, gw, dw))

    with fastgan.backend("cpp"):
        d_loss, _ = ops.mixture_gan_loss(real, fake, gw, dw)
        assert "MixtureGanLossNode" in d_loss.grad_fn.name()
        got = second(ops.mixture_gan_loss)
    want = second(ops.mixture_gan_loss_reference)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_torch_func_transforms_differentiate_the_reference():
    """torch.func.grad through the op (the C++ node and the Python Function do not support functorch): the
    reference's gradient."""
    g = torch.Generator().manual_seed(4)
    real = torch.randn(3, 5, generator=g, dtype=torch.float64)
    fake = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    gw = torch.randn(2, generator=g, dtype=torch.float64)
    dw = torch.randn(3, generator=g, dtype=torch.float64)
    with fastgan.backend("cpp"):
        got = torch.func.grad(lambda f: ops.mixture_gan_loss(real, f, gw, dw)[0])(fake)
    f = fake.clone().requires_grad_()
    (want,) = torch.autograd.grad(ops.mixture_gan_loss_reference(real, f, gw, dw)[0], f)
    torch.testing.assert_close(got, want)
