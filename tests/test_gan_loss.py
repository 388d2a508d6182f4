"""gan_loss and fastgan.losses: every kind against its textbook formula, every backend against the reference in
every dtype, extreme logits, layouts, gradients to second order, bad inputs."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import CPU_BACKENDS, assert_close_to_reference, device_backends, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan
from fastgan import losses, ops
from fastgan.ops.gan_loss import KINDS

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
LSGAN = {"a": -0.3, "b": 0.8, "c": 0.6}
CASES = [(kind, player) for kind in KINDS for player in "dg"]


def textbook(kind, player, r, f, reduction="mean", a=-0.3, b=0.8, c=0.6):
    """The losses as the papers write them, with sigmoid and log (fine for moderate logits in fp64)."""
    d = torch.sigmoid
    if kind == "relativistic":
        term = -torch.log(d(r - f)) if player == "d" else -torch.log(d(f - r))
        real_term, fake_term = None, term
    elif player == "d":
        real_term, fake_term = {
            "nonsaturating": (-torch.log(d(r)), -torch.log(1 - d(f))),
            "minimax": (-torch.log(d(r)), -torch.log(1 - d(f))),
            "hinge": (torch.clamp(1 - r, min=0), torch.clamp(1 + f, min=0)),
            "wasserstein": (-r, f),
            "lsgan": (0.5 * (r - b) ** 2, 0.5 * (f - a) ** 2),
        }[kind]
    else:
        real_term, fake_term = None, {
            "nonsaturating": -torch.log(d(f)),
            "minimax": torch.log(1 - d(f)),
            "hinge": -f,
            "wasserstein": -f,
            "lsgan": 0.5 * (f - c) ** 2,
        }[kind]
    if reduction == "none":
        return fake_term if real_term is None else real_term + fake_term
    reduce = torch.mean if reduction == "mean" else torch.sum
    return reduce(fake_term) if real_term is None else reduce(real_term) + reduce(fake_term)


def logits(n, dtype=torch.float64, device="cpu", scale=1.5, requires_grad=True):
    x = (torch.randn(n, dtype=torch.float64) * scale).to(device=device, dtype=dtype)
    return x.requires_grad_(requires_grad)


def run(backend, kind, player, r, f, reduction="mean"):
    with fastgan.backend(backend):
        if player == "d":
            return losses.d_loss(kind, r, f, reduction=reduction, **LSGAN)
        return losses.g_loss(kind, f, r, reduction=reduction, **LSGAN)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind,player", CASES)
def test_matches_textbook_formula(backend, kind, player):
    torch.manual_seed(0)
    for reduction in ("mean", "sum", "none"):
        paired = kind == "relativistic" or reduction == "none"
        r, f = logits(9), logits(9 if paired else 6)
        out = run(backend, kind, player, r, f, reduction)
        ref = textbook(kind, player, r, f, reduction)
        assert out.dtype == torch.float64 and out.shape == ref.shape
        assert rel_error(out, ref) <= 1e-12
        upstream = torch.rand_like(ref) + 0.5
        needed = [r, f] if player == "d" or kind == "relativistic" else [f]
        got = torch.autograd.grad(out, needed, upstream)
        want = torch.autograd.grad(ref, needed, upstream)
        for g, w in zip(got, want):
            assert rel_error(g, w) <= 1e-12


@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_backend_matches_reference(device, backend, dtype):
    torch.manual_seed(1)
    for kind, player in CASES:
        for reduction in ("mean", "none"):
            n = 37 if kind == "relativistic" or reduction == "none" else 29
            r, f = logits(37, dtype, device), logits(n, dtype, device)
            out = run(backend, kind, player, r, f, reduction)
            acc = torch.float64 if dtype == torch.float64 else torch.float32
            assert out.dtype == acc
            r64, f64 = r.detach().double().requires_grad_(True), f.detach().double().requires_grad_(True)
            ref = ops.gan_loss_reference(r64, f64, kind, player, reduction, **LSGAN)
            assert_close_to_reference(out, ref, acc)
            upstream = torch.rand(ref.shape, dtype=torch.float64, device=device) + 0.5
            inputs = (r, f) if player == "d" or kind == "relativistic" else (f,)
            inputs64 = (r64, f64) if len(inputs) == 2 else (f64,)
            got = torch.autograd.grad(out, inputs, upstream.to(acc))
            want = torch.autograd.grad(ref, inputs64, upstream)
            for g, w, x in zip(got, want, inputs):
                assert g.dtype == dtype
                torch_lowp = None
                if dtype in (torch.bfloat16, torch.float16):
                    # PyTorch's own low-precision run of the same loss: the error budget's yardstick.
                    xs = [t.detach().requires_grad_(True) for t in (r, f)]
                    plain = textbook_lowp(kind, player, *xs, reduction)
                    lowp = torch.autograd.grad(plain, xs, upstream.to(dtype), allow_unused=True)
                    torch_lowp = lowp[0] if x is r else lowp[1]
                assert_close_to_reference(g, w, dtype, torch_lowp, backend)


def textbook_lowp(kind, player, r, f, reduction):
    """The loss in the storage dtype, with PyTorch's own stable ops: what a user gets without fastgan."""
    sp = F.softplus
    if kind == "relativistic":
        term = sp(f - r) if player == "d" else sp(r - f)
        return term.mean() if reduction == "mean" else term
    if player == "g":
        term = {"nonsaturating": sp(-f), "minimax": -sp(f), "hinge": -f, "wasserstein": -f,
                "lsgan": 0.5 * (f - LSGAN["c"]) ** 2}[kind]
        return term.mean() if reduction == "mean" else term
    real_term, fake_term = {
        "nonsaturating": (sp(-r), sp(f)), "minimax": (sp(-r), sp(f)), "hinge": (F.relu(1 - r), F.relu(1 + f)),
        "wasserstein": (-r, f), "lsgan": (0.5 * (r - LSGAN["b"]) ** 2, 0.5 * (f - LSGAN["a"]) ** 2)}[kind]
    return real_term.mean() + fake_term.mean() if reduction == "mean" else real_term + fake_term


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("magnitude", [100.0, 1e4])
def test_extreme_logits_are_finite_and_exact(backend, magnitude):
    values = torch.tensor([magnitude, -magnitude, 0.5 * magnitude, -0.5 * magnitude, 3.0, -3.0])
    for kind, player in CASES:
        r = values.clone().requires_grad_(True)
        f = values.flip(0).clone().requires_grad_(True)
        out = run(backend, kind, player, r, f)
        (gr, gf) = torch.autograd.grad(out, (r, f), allow_unused=True)
        assert torch.isfinite(out), (kind, player)
        for g in (gr, gf):
            assert g is None or torch.isfinite(g).all(), (kind, player)
        r64, f64 = r.detach().double().requires_grad_(True), f.detach().double().requires_grad_(True)
        ref = ops.gan_loss_reference(r64, f64, kind, player, "mean", **LSGAN)
        assert rel_error(out, ref) <= 1e-6, (kind, player)
        want = torch.autograd.grad(ref, (r64, f64), allow_unused=True)
        for g, w in zip((gr, gf), want):
            if w is not None:
                assert rel_error(g, w) <= 1e-5, (kind, player)
    # The textbook value at the extremes: softplus(1e4) = 1e4 exactly in fp32, softplus(-1e4) = 0.
    f = torch.full((3,), magnitude, requires_grad=True)
    with fastgan.backend(backend):
        loss = losses.g_loss("nonsaturating", -f)
    assert loss.item() == pytest.approx(magnitude, rel=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_shapes_layouts_and_batch_sizes(backend):
    torch.manual_seed(2)
    # Patch logits [B, 1, H, W], channels_last and transposed views, batch 1, real/fake batches of different sizes.
    r = torch.randn(4, 1, 5, 3).to(memory_format=torch.channels_last).requires_grad_(True)
    f = torch.randn(3, 5, 4).transpose(0, 2).requires_grad_(True)  # [4, 5, 3], not contiguous
    for kind in ("nonsaturating", "hinge", "lsgan"):
        out = run(backend, kind, "d", r, f)
        ref = ops.gan_loss_reference(r.double(), f.double(), kind, "d", "mean", **LSGAN)
        assert rel_error(out, ref) <= 1e-6
        got = torch.autograd.grad(out, (r, f))
        assert got[0].shape == r.shape and got[1].shape == f.shape
        r64, f64 = r.detach().double().requires_grad_(True), f.detach().double().requires_grad_(True)
        want = torch.autograd.grad(ops.gan_loss_reference(r64, f64, kind, "d", "mean", **LSGAN), (r64, f64))
        for g, w in zip(got, want):
            assert rel_error(g, w) <= 1e-6
    r1, f1 = torch.randn(1, 1, requires_grad=True), torch.randn(1, 1, requires_grad=True)
    out = run(backend, "relativistic", "d", r1, f1, "none")
    assert out.shape == (1, 1)
    assert rel_error(out, F.softplus((f1 - r1).double())) <= 1e-6
    # Column logits [B, 1] against [B]: separable means do not need equal shapes.
    out = run(backend, "wasserstein", "d", torch.randn(5, 1), torch.randn(7))
    assert out.shape == ()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_long_inputs_cross_program_and_chunk_boundaries(backend):
    # Longer than one Triton program (1024) and one CPU chunk (16384): partial sums combined in order.
    torch.manual_seed(3)
    n = 16384 + 1031 if backend != "triton" else 2 * 1024 + 77
    r, f = logits(n, torch.float32), logits(n - 5, torch.float32)
    for kind, player in (("nonsaturating", "d"), ("relativistic", "g"), ("lsgan", "g")):
        f_ = f if kind != "relativistic" else logits(n, torch.float32)
        out = run(backend, kind, player, r, f_)
        ref = ops.gan_loss_reference(r.double(), f_.double(), kind, player, "mean", **LSGAN)
        assert rel_error(out, ref) <= 1e-5
        got = torch.autograd.grad(out, f_)[0]
        f64 = f_.detach().double().requires_grad_(True)
        want = torch.autograd.grad(ops.gan_loss_reference(r.double(), f64, kind, player, "mean", **LSGAN), f64)[0]
        assert rel_error(got, want) <= 1e-5
    # Same result whatever the thread count (deterministic partial sums).
    out1 = run(backend, "nonsaturating", "d", r, f)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out2 = run(backend, "nonsaturating", "d", r, f)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out1, out2)


GRADCHECK_CASES = {
    "reference": [(k, p, red) for k, p in CASES for red in ("mean", "none")],
    "cpp": [(k, p, red) for k, p in CASES for red in ("mean", "none")],
    # The interpreter runs a Triton launch in milliseconds: every kind once, both players where they differ.
    "triton": [(k, "d", "mean") for k in KINDS] + [("minimax", "g", "mean"), ("relativistic", "g", "none"),
                                                   ("lsgan", "d", "none")],
}


@pytest.mark.parametrize("backend,kind,player,reduction",
                         [(b, *case) for b in CPU_BACKENDS for case in GRADCHECK_CASES[b]])
def test_gradcheck_and_gradgradcheck(backend, kind, player, reduction):
    torch.manual_seed(4)
    paired = kind == "relativistic" or (reduction == "none" and player == "d")
    r, f = logits(3, scale=1.0), logits(3 if paired else 4, scale=1.0)
    if kind == "hinge":  # keep clear of the kinks, where finite differences straddle two slopes
        r, f = (r.detach() * 0.3).requires_grad_(True), (f.detach() * 0.3).requires_grad_(True)

    def fn(r, f):
        return run(backend, kind, player, r, f, reduction)

    assert torch.autograd.gradcheck(fn, (r, f))
    assert torch.autograd.gradgradcheck(fn, (r, f))


def test_third_order_matches_reference():
    torch.manual_seed(5)
    r, f = logits(4), logits(4)
    outs = []
    for backend in ("reference", "cpp"):
        with fastgan.backend(backend):
            loss = losses.d_loss("relativistic", r, f)
        (g,) = torch.autograd.grad(loss, f, create_graph=True)
        (h,) = torch.autograd.grad(g.pow(2).sum(), r, create_graph=True)
        (t,) = torch.autograd.grad(h.sin().sum(), f)
        outs.append(t)
    assert rel_error(outs[1], outs[0]) <= 1e-12


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("player", ["d", "g"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_second_order_without_graph_matches_reference(kind, player, reduction):
    """The last backward of a double backward (no create_graph): the no-graph Hessian path, zeros (not None) for the
    piecewise-linear kinds, exactly as eager autograd answers."""
    torch.manual_seed(6)
    r, f = logits(5), logits(5)
    outs = []
    for backend in ("reference", "cpp"):
        with fastgan.backend(backend):
            loss = fastgan.ops.gan_loss(r, f, kind, player, reduction)
        inputs = (r, f) if player == "d" or kind == "relativistic" else (f,)
        grads = torch.autograd.grad(loss.sum(), inputs, create_graph=True)
        # Eager's gradient of a linear loss (G's hinge, wasserstein) is a constant without a graph: its
        # derivative is zero.
        terms = [(g * g.detach().sin()).sum() for g in grads if g.requires_grad]
        second = torch.autograd.grad(sum(terms), inputs, allow_unused=True) if terms else (None,) * len(inputs)
        if backend == "cpp":  # fastgan answers with zeros, never None (as eager's relu backward does)
            assert all(s is not None for s in second)
        outs.append([torch.zeros_like(x) if s is None else s for s, x in zip(second, inputs)])
    for cpp, ref in zip(outs[1], outs[0]):
        assert rel_error(cpp, ref) <= 1e-12


def test_cpp_calls_take_the_cpp_node():
    """The cpp backend records one C++ autograd node (with and without real logits); torch.func transforms
    differentiate the reference. The gradients are the reference's either way."""
    r, f = logits(6), logits(6)
    with fastgan.backend("cpp"):
        d = ops.gan_loss(r, f, "hinge", "d")
        g = ops.gan_loss(None, f, "nonsaturating", "g")
        assert "GanLossNode" in d.grad_fn.name() and "GanLossNode" in g.grad_fn.name()
        (grad_g,) = torch.autograd.grad(g, f)
        (grad_ref,) = torch.autograd.grad(ops.gan_loss_reference(None, f, "nonsaturating", "g"), f)
        assert rel_error(grad_g, grad_ref) <= 1e-12
        per_sample = torch.func.grad(lambda x: ops.gan_loss(r.detach(), x, "nonsaturating", "d"))(f.detach())
    assert rel_error(per_sample, torch.autograd.grad(ops.gan_loss_reference(r, f, "nonsaturating", "d"), f)[0]) <= 1e-12


def test_no_gradient_buffer_without_grad():
    r, f = logits(6, requires_grad=False), logits(6, requires_grad=False)
    with fastgan.backend("cpp"):
        loss = losses.d_loss("nonsaturating", r, f)
    assert not loss.requires_grad
    _, grad = torch.ops.fastgan.gan_loss_forward(r, f, 0, 0, 1, 0.0, 1.0, 1.0, False)
    assert grad.numel() == 0
    assert rel_error(loss, textbook("nonsaturating", "d", r, f)) <= 1e-12


def test_module_form_and_aliases():
    torch.manual_seed(6)
    r, f = logits(5), logits(5)
    crit = losses.GANLoss("lsgan", a=-0.3, b=0.8, c=0.6)
    assert "lsgan" in repr(crit)
    assert rel_error(crit.d(r, f), textbook("lsgan", "d", r, f)) <= 1e-12
    assert rel_error(crit.g(f), textbook("lsgan", "g", r, f)) <= 1e-12
    assert rel_error(crit(f, player="g"), crit.g(f)) == 0
    rel = losses.GANLoss("relativistic", reduction="none")
    assert rel.g(f, r).shape == (5,)
    assert rel_error(losses.d_loss("logistic", r, f), losses.d_loss("nonsaturating", r, f)) == 0
    assert rel_error(losses.g_loss("hinge", f, r), -f.mean()) <= 1e-12  # real logits ignored
    assert fastgan.losses is losses


def test_bad_inputs_name_the_argument():
    r, f = torch.randn(4), torch.randn(4)
    with pytest.raises(ValueError, match="kind"):
        losses.d_loss("wgan-gp-typo", r, f)
    with pytest.raises(ValueError, match="reduction"):
        losses.d_loss("hinge", r, f, reduction="avg")
    with pytest.raises(ValueError, match="player"):
        ops.gan_loss(r, f, player="x")
    with pytest.raises(ValueError, match="real_logits"):
        losses.d_loss("hinge", None, f)
    with pytest.raises(ValueError, match="real_logits"):
        losses.g_loss("relativistic", f)
    with pytest.raises(ValueError, match="real_logits and fake_logits must have the same shape"):
        losses.d_loss("relativistic", torch.randn(4), torch.randn(5))
    with pytest.raises(ValueError, match="same shape"):
        losses.d_loss("hinge", torch.randn(4), torch.randn(5), reduction="none")
    with pytest.raises(TypeError, match="same dtype"):
        losses.d_loss("hinge", r.double(), f)
    with pytest.raises(TypeError, match="fake_logits"):
        losses.d_loss("hinge", r, [1.0, 2.0])
    with pytest.raises(TypeError, match="real_logits"):
        losses.d_loss("hinge", r.long(), f)
    with pytest.raises(ValueError, match="fake_logits must not be empty"):
        losses.g_loss("hinge", torch.randn(0))
    with pytest.raises(ValueError, match="real_logits must not be empty"):
        losses.d_loss("hinge", torch.randn(0), f)
    with pytest.raises(TypeError, match="a must be a number"):
        losses.d_loss("lsgan", r, f, a="0")
    with pytest.raises(TypeError, match="b must be a number"):
        losses.GANLoss("lsgan", b=None)
    with pytest.raises(ValueError, match="kind"):
        losses.GANLoss("nope")


def test_torch_compile_traces_the_op():
    def step(r, f):
        return losses.d_loss("hinge", r, f) + losses.g_loss("nonsaturating", f)

    r, f = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    with fastgan.backend("cpp"):
        compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
        out = compiled(r, f)
        assert torch.allclose(out, step(r, f))
        out.backward()
    assert r.grad is not None and f.grad is not None


@settings(max_examples=20, deadline=None)
@given(n_real=st.integers(1, 40), n_fake=st.integers(1, 40), kind=st.sampled_from(list(KINDS)),
       player=st.sampled_from(["d", "g"]), reduction=st.sampled_from(["mean", "sum", "none"]),
       scale=st.sampled_from([0.1, 3.0, 30.0]))
def test_fuzz_cpp_against_reference(n_real, n_fake, kind, player, reduction, scale):
    if kind == "relativistic" or reduction == "none":
        n_fake = n_real
    r, f = logits(n_real, torch.float32, scale=scale), logits(n_fake, torch.float32, scale=scale)
    out = run("cpp", kind, player, r, f, reduction)
    ref = ops.gan_loss_reference(r.double(), f.double(), kind, player, reduction, **LSGAN)
    assert rel_error(out, ref) <= 1e-5 or (out.double() - ref).abs().max() <= 1e-6 * max(1.0, math.sqrt(n_real))
