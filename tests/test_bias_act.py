"""bias_act on every backend against the reference: forward, backward and double backward for every activation in
fp64/fp32/bf16/fp16; layouts (channels_last, non-contiguous), dims, no bias, clamp, gain; gradcheck/gradgradcheck;
third order; forward-mode AD; saved memory; determinism; bad inputs; torch.compile."""
import sys

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from conftest import CPU_BACKENDS, assert_close_to_reference, device_backends, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgan
from fastgan.ops.bias_act import ACTIVATIONS, bias_act, bias_act_reference, saved_form

BA = sys.modules["fastgan.ops.bias_act"]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
SMOOTH = [a for a in ACTIVATIONS if a not in ("linear", "relu", "lrelu")]


def make_inputs(shape, dtype, device="cpu", dim=1, bias=True, layout="contiguous", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "sliced":  # non-dense: every other element of the last dimension
        x = torch.randn(*shape[:-1], 2 * shape[-1], generator=g, dtype=torch.float64)[..., ::2]
    elif layout == "transposed":  # dense, but neither contiguous nor channels_last
        x = torch.randn(*reversed(shape), generator=g, dtype=torch.float64).permute(*reversed(range(len(shape))))
    x = x.to(device=device, dtype=dtype)
    b = (torch.randn(shape[dim], generator=g, dtype=torch.float64) * 0.5).to(device=device, dtype=dtype) if bias \
        else None
    return x, b


def lowp_torch(x, b, act, alpha, gain, clamp, dim):
    """PyTorch's own low-precision computation (no upcast): the yardstick for bf16/fp16 errors."""
    z = x if b is None else x + b.view([-1 if d == dim % x.dim() else 1 for d in range(x.dim())])
    y = BA._torch_act(z, act, BA._check_alpha(act, alpha)) * gain
    return y.clamp(-clamp, clamp) if clamp is not None else y


def run_three_orders(fn, x, b, seed=1):
    """y, (dx, db) and the double backward (d/dx, d/db, d/d dy) of sum(w * dx) + sum(wb * db)."""
    g = torch.Generator().manual_seed(seed)
    x = x.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True) if b is not None else None
    inputs = (x,) if b is None else (x, b)
    y = fn(x, b)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.device, y.dtype).requires_grad_(True)
    grads = torch.autograd.grad(y, inputs, dy, create_graph=True)
    w = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.device, y.dtype)
    loss = (grads[0] * w).sum()
    if b is not None:
        loss = loss + (grads[1] * torch.linspace(-1, 1, b.shape[0], dtype=b.dtype, device=b.device)).sum()
    second = torch.autograd.grad(loss, inputs + (dy,), allow_unused=True, materialize_grads=True)
    return [y] + list(grads) + list(second)


def compare_all(backend, device, x, b, act, alpha=None, gain=1.0, clamp=None, dim=1):
    def ours(xx, bb):
        with fastgan.backend(backend):
            return bias_act(xx, bb, act, alpha, gain, clamp, dim)

    got = run_three_orders(ours, x, b)
    ref = run_three_orders(lambda xx, bb: bias_act_reference(xx, bb, act, alpha, gain, clamp, dim),
                           x.detach().double(), None if b is None else b.detach().double())
    lowp = None
    if x.dtype in (torch.bfloat16, torch.float16):
        lowp = run_three_orders(lambda xx, bb: lowp_torch(xx, bb, act, alpha, gain, clamp, dim), x, b)
    for i, (out, r) in enumerate(zip(got, ref)):
        assert out.dtype == x.dtype and out.shape == r.shape, i
        assert_close_to_reference(out, r, x.dtype, None if lowp is None else lowp[i], backend)
    return got


# ------------------------------------------------------------------------------ every activation x backend x dtype

@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(device, backend, act, dtype):
    x, b = make_inputs((3, 5, 7, 6), dtype, device)
    compare_all(backend, device, x, b, act, gain=1.3)


# ------------------------------------------------------------------------------ layouts, dims, options

CASES = {
    "channels_last": dict(shape=(2, 6, 5, 3), layout="channels_last"),
    "sliced": dict(shape=(2, 4, 3, 5), layout="sliced"),
    "transposed": dict(shape=(3, 4, 5), layout="transposed"),
    "features_dim_-1": dict(shape=(7, 9), dim=-1),
    "dim_0": dict(shape=(4, 3, 5), dim=0),
    "dim_2": dict(shape=(2, 3, 5, 4), dim=2),
    "no_bias": dict(shape=(2, 3, 4, 5), bias=False),
    "batch_1_odd": dict(shape=(1, 7, 3, 5)),
    "clamp": dict(shape=(2, 5, 3, 3), clamp=0.4, gain=1.7),
    "negative_gain": dict(shape=(2, 3, 4, 3), gain=-0.7),
    "zero_gain": dict(shape=(2, 3, 2, 3), gain=0.0),
    "one_channel": dict(shape=(3, 1, 4, 4)),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("act", ["lrelu", "silu", "tanh", "elu"])
def test_layouts_and_options(backend, case, act):
    spec = dict(CASES[case])
    shape, dim = spec.pop("shape"), spec.pop("dim", 1)
    x, b = make_inputs(shape, torch.float64, dim=dim, bias=spec.pop("bias", True), layout=spec.pop("layout", "c"))
    got = compare_all(backend, "cpu", x, b, act, dim=dim, **spec)
    if backend != "reference" and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert got[0].is_contiguous(memory_format=torch.channels_last)  # layout kept, no copy to NCHW
        assert got[1].stride() == x.stride()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("act,alpha", [("lrelu", -0.3), ("lrelu", 0.0), ("elu", 0.5), ("softplus", 2.5)])
def test_alpha(backend, act, alpha):
    x, b = make_inputs((2, 3, 4, 5), torch.float64)
    compare_all(backend, "cpu", x, b, act, alpha=alpha, gain=1.1)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_large_rows_and_columns_fp32(backend):
    """Rows longer than one CPU chunk (16384) and column blocks over many rows (channels_last / [B, F])."""
    for shape, layout, dim in [((1, 2, 130, 130), "contiguous", 1), ((3000, 7), "contiguous", 1),
                               ((2, 16, 40, 30), "channels_last", 1)]:
        if backend == "triton" and shape[0] == 1:
            shape = (1, 2, 70, 90)  # keep the interpreter's work small
        x, b = make_inputs(shape, torch.float32, layout=layout, dim=dim)
        compare_all(backend, "cpu", x, b, "silu", dim=dim, clamp=None)


@settings(max_examples=12, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), data=st.data())
def test_fuzz_shapes_cpp(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    act = data.draw(st.sampled_from(ACTIVATIONS))
    layout = data.draw(st.sampled_from(["contiguous", "sliced"]))
    x, b = make_inputs(tuple(shape), torch.float64, dim=dim, layout=layout)
    compare_all("cpp", "cpu", x, b, act, dim=dim)


# ------------------------------------------------------------------------------ gradcheck, gradgradcheck, 3rd order

@pytest.mark.parametrize("device,backend", device_backends())
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gradcheck_gradgradcheck(device, backend, act):
    x, b = make_inputs((2, 3, 2, 3), torch.float64, device)
    x.requires_grad_(True)
    b.requires_grad_(True)
    clamp = 0.8 if act in ("lrelu", "silu") else None

    def fn(xx, bb):
        with fastgan.backend(backend):
            return bias_act(xx, bb, act, gain=1.3, clamp=clamp)

    # The interpreter costs ~25 ms a launch whatever the size: Triton on CPU checks random directions (fast mode).
    fast = backend == "triton" and device == "cpu"
    assert torch.autograd.gradcheck(fn, (x, b), fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=fast)


THIRD_ORDER = [("silu", None), ("tanh", None), ("sigmoid", None), ("gelu", 0.6), ("gelu_tanh", None),
               ("softplus", None), ("elu", None), ("selu", 0.5), ("lrelu", None)]


# Triton: a representative subset (the third order itself runs in PyTorch ops on every backend).
@pytest.mark.parametrize("backend,act,clamp", [("cpp", a, c) for a, c in THIRD_ORDER]
                         + [("triton", a, c) for a, c in THIRD_ORDER if a in ("silu", "tanh", "gelu_tanh")])
def test_third_order_matches_reference(backend, act, clamp):
    """The backward of the second-order op is exact (closed forms in PyTorch ops): compare d3 with the reference."""
    x, b = make_inputs((2, 3, 3, 2), torch.float64)

    def third(fn):
        xx, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = fn(xx, bb)
        (g1,) = torch.autograd.grad(y.square().sum(), xx, create_graph=True)
        g2 = torch.autograd.grad(g1.sin().sum(), (xx, bb), create_graph=True)
        return torch.autograd.grad(g2[0].square().sum() + g2[1].sum(), (xx, bb), allow_unused=True,
                                   materialize_grads=True)

    with fastgan.backend(backend):
        got = third(lambda xx, bb: bias_act(xx, bb, act, gain=1.2, clamp=clamp))
    ref = third(lambda xx, bb: bias_act_reference(xx, bb, act, gain=1.2, clamp=clamp))
    for out, r in zip(got, ref):
        assert rel_error(out, r) <= 1e-10, (rel_error(out, r))


def test_third_order_gradcheck_cpp():
    """gradgradcheck of the gradient function: the double backward's own backward (third order) is correct."""
    x, b = make_inputs((2, 3, 2, 2), torch.float64)
    for act in ("silu", "tanh", "sigmoid", "gelu_tanh"):
        def grad_fn(xx, bb, act=act):
            with fastgan.backend("cpp"):
                y = bias_act(xx, bb, act, gain=0.9)
            return torch.autograd.grad(y.square().sum(), (xx, bb), create_graph=True)

        assert torch.autograd.gradgradcheck(grad_fn, (x.clone().requires_grad_(True), b.clone().requires_grad_(True)))


# ------------------------------------------------------------------------------ forward-mode AD

@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_ad_matches_reference(backend, act):
    x, b = make_inputs((2, 3, 3, 4), torch.float64)
    tx, tb = make_inputs((2, 3, 3, 4), torch.float64, seed=5)
    clamp = 0.7 if act == "silu" else None
    with fastgan.backend(backend), fwAD.dual_level():
        y = bias_act(fwAD.make_dual(x, tx), fwAD.make_dual(b, tb), act, gain=1.3, clamp=clamp)
        tangent = fwAD.unpack_dual(y).tangent
    with fwAD.dual_level():
        yr = bias_act_reference(fwAD.make_dual(x, tx), fwAD.make_dual(b, tb), act, gain=1.3, clamp=clamp)
        tangent_ref = fwAD.unpack_dual(yr).tangent
    assert rel_error(tangent, tangent_ref) <= 1e-12


def jvp_by_double_vjp(fn, primals, tangents):
    """J t computed with reverse mode only (d/dv <J^T v, t>): a reference where torch lacks forward-AD formulas."""
    out = fn(*primals)
    v = torch.zeros_like(out, requires_grad=True)
    vjp = torch.autograd.grad(out, primals, v, create_graph=True)
    return torch.autograd.grad(sum((g * t).sum() for g, t in zip(vjp, tangents)), v, create_graph=True)[0]


@pytest.mark.parametrize("act", ["lrelu", "silu", "tanh", "gelu"])
def test_func_jvp_reverse_over_forward_and_hvp(act):
    """torch.func.jvp; a loss on the tangent back-propagated (reverse over forward: a forward-mode penalty);
    jvp of grad (forward over reverse: Hessian-vector products)."""
    x, b = make_inputs((2, 3, 3, 2), torch.float64)
    tx, tb = make_inputs((2, 3, 3, 2), torch.float64, seed=3)

    def run(fn, forward_mode):
        _, tangent = torch.func.jvp(fn, (x, b), (tx, tb))
        xx, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        if forward_mode:
            with fwAD.dual_level():
                t = fwAD.unpack_dual(fn(fwAD.make_dual(xx, tx), fwAD.make_dual(bb, tb))).tangent
                # lrelu: the tangent's dependence on x is exactly zero and not propagated (see bias_act's docstring)
                rof = torch.autograd.grad(t.square().sum() + t.sum(), (xx, bb), allow_unused=True,
                                          materialize_grads=True)
        else:
            t = jvp_by_double_vjp(fn, (xx, bb), (tx, tb))
            rof = torch.autograd.grad(t.square().sum() + t.sum(), (xx, bb), allow_unused=True, materialize_grads=True)
        grad = torch.func.grad(lambda p, q: fn(p, q).square().sum(), argnums=(0, 1))
        _, hvp = torch.func.jvp(grad, (x, b), (tx, tb))
        return [tangent, *rof, *hvp]

    with fastgan.backend("cpp"):
        got = run(lambda p, q: bias_act(p, q, act, gain=1.1), True)
    ref = run(lambda p, q: bias_act_reference(p, q, act, gain=1.1), False)
    for out, r in zip(got, ref):
        assert rel_error(out, r) <= 1e-12


# ------------------------------------------------------------------------------ memory, determinism, dispatch

def saved_bytes(fn, parameters=()):
    """Bytes autograd keeps for backward, counting each storage once (saved-tensor hooks) and leaving out the
    parameters themselves (saving a reference to a parameter costs no memory)."""
    storages = {}
    skip = {p.untyped_storage().data_ptr() for p in parameters}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


@pytest.mark.parametrize("act", ["lrelu", "relu", "linear", "silu", "tanh", "gelu"])
def test_saved_bytes_at_most_eager(act):
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    eager_fn = {"lrelu": lambda z: torch.nn.functional.leaky_relu(z, 0.2), "relu": torch.relu, "linear": lambda z: z,
                "silu": torch.nn.functional.silu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}[act]
    _, eager = saved_bytes(lambda: eager_fn(x + b.view(1, -1, 1, 1)))
    with fastgan.backend("cpp"):
        y, ours = saved_bytes(lambda: bias_act(x, b, act), parameters=(b,))
    assert ours <= eager, (ours, eager)
    if act in ("lrelu", "relu", "tanh"):
        assert saved_form(act) == "y" and ours == y.numel() * y.element_size()  # the output only
    if act == "linear":
        assert ours == 0


def test_lrelu_saves_only_the_output_shared_with_next_layer():
    """In a conv stack the saved y is the next conv's saved input: fused lrelu adds no saved bytes at all."""
    conv1, conv2 = torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.Conv2d(8, 4, 3)
    x = torch.randn(2, 3, 12, 12)
    b = torch.zeros(8, requires_grad=True)
    _, plain = saved_bytes(lambda: conv2(conv1(x)))
    with fastgan.backend("cpp"):
        _, fused = saved_bytes(lambda: conv2(bias_act(conv1(x), b, "lrelu")), parameters=(b,))
    assert fused == plain


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_bias_gradient_is_deterministic(backend):
    x, b = make_inputs((3, 4, 40, 50), torch.float32, layout="channels_last")
    x.requires_grad_(True)
    b.requires_grad_(True)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, threads, 1):
            torch.set_num_threads(n)
            with fastgan.backend(backend):
                y = bias_act(x, b, "silu")
            results.append(torch.autograd.grad(y, b, torch.ones_like(y))[0])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_cuda_backend_refuses_cpu_tensors():
    x = torch.randn(2, 3)
    with fastgan.backend("cuda"), pytest.raises(fastgan.BackendUnavailableError, match="bias_act"):
        bias_act(x, None, "relu")


def test_empty_and_scalar_inputs():
    with fastgan.backend("cpp"):
        assert bias_act(torch.randn(0, 3, 4), torch.randn(3), "silu").shape == (0, 3, 4)
        x = torch.tensor(0.7, requires_grad=True)
        y = bias_act(x, None, "tanh", gain=2.0)
        (dx,) = torch.autograd.grad(y, x)
    assert torch.allclose(y, 2 * torch.tanh(x)) and torch.allclose(dx, 2 * (1 - torch.tanh(x.detach()) ** 2))


def test_mixed_dtype_bias_is_cast():
    x, b = make_inputs((2, 3, 4, 4), torch.bfloat16)
    with fastgan.backend("cpp"):
        y = bias_act(x, b.float(), "lrelu")
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, bias_act_reference(x, b, "lrelu"))


# ------------------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(act="swishy"), ValueError, "act"),
    (dict(act=3), TypeError, "act"),
    (dict(bias=torch.randn(4)), ValueError, "bias"),
    (dict(bias=torch.randn(3, 1)), ValueError, "bias"),
    (dict(bias=torch.arange(3)), TypeError, "bias"),
    (dict(dim=4), ValueError, "dim"),
    (dict(dim=-5), ValueError, "dim"),
    (dict(dim=1.0), TypeError, "dim"),
    (dict(act="silu", alpha=0.1), ValueError, "alpha"),
    (dict(act="softplus", alpha=0.0), ValueError, "alpha"),
    (dict(alpha="big"), TypeError, "alpha"),
    (dict(gain=None), TypeError, "gain"),
    (dict(gain=float("inf")), ValueError, "gain"),
    (dict(clamp=-1.0), ValueError, "clamp"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(x=torch.randn(2, 3, 4, 4), bias=torch.randn(3))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        bias_act(**args)


def test_integer_input():
    with pytest.raises(TypeError, match="x"):
        bias_act(torch.arange(12).view(2, 6), None, "relu")


# ------------------------------------------------------------------------------ torch.compile

def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    # fastgan loads its extension on first use under a lock dynamo cannot trace: load it before a fullgraph compile
    fastgan._ext.load()
    x, b = make_inputs((2, 4, 5, 5), torch.float32)
    x.requires_grad_(True)
    b.requires_grad_(True)

    def fn(xx, bb):
        return bias_act(xx, bb, "silu", gain=1.5).square().sum()

    with fastgan.backend("cpp"):
        out = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, b)
        grads = torch.autograd.grad(out, (x, b))
    ref = fn(x, b)
    ref_grads = torch.autograd.grad(ref, (x, b))
    assert torch.allclose(out, ref)
    assert all(torch.allclose(g, r, rtol=1e-5, atol=1e-6) for g, r in zip(grads, ref_grads))


def test_eager_calls_take_the_cpp_nodes_and_forward_ad_the_python_levels():
    """Plain eager calls on cpp record the C++ autograd nodes (levels 1 and 2); forward-mode AD, which they do not
    support, takes the Python levels. Both give the reference's gradients (the other tests compare every path)."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with fastgan.backend("cpp"):
        y = bias_act(x, b, "silu")
        (dx,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
        assert "BiasActNode" in y.grad_fn.name()
        assert "BiasActBackwardNode" in dx.grad_fn.name()
        with fwAD.dual_level():
            dual = fwAD.make_dual(x, torch.randn_like(x))
            out = bias_act(dual, b, "silu")
            assert "BiasActFunction" in out.grad_fn.name()
    ref = bias_act_reference(x, b, "silu")
    (dx_ref,) = torch.autograd.grad(ref, x, torch.ones_like(ref), create_graph=True)
    torch.testing.assert_close(dx, dx_ref)
