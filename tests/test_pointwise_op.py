"""The fused C++ epilogues and the nol_fast::channel_mlp op against plain torch.

The oracle is torch itself: the epilogues against the chain of torch ops they replace (with
autograd for the gradients), the op's ``'cpu'`` backend against its ``'reference'`` backend
computed in float64. Shapes are odd on purpose (rows and channels that fill no vector), and
bfloat16 results must stay within twice the error of torch's own bfloat16 computation.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from nol_fast.ops.pointwise import ACTIVATIONS, channel_mlp, resolve_layer_backend
from nol_fast.ops.pointwise.epilogue import epilogue_backward, epilogue_forward
from tests.conftest import AMX_PATHS, require_extension

ACTS = ["none", *ACTIVATIONS]
SKIPS = ["none", "identity", "scale"]


@pytest.fixture(autouse=True)
def _extension():
    require_extension()


def torch_epilogue(y, bias, activation, x, gamma):
    pre = y + bias
    if x is not None:
        pre = pre + (x if gamma is None else gamma * x)
    return pre, ACTIVATIONS.get(activation, lambda t: t)(pre)


def relative(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def act_derivative(activation, pre):
    """d act / d pre by torch's autograd (the oracle of the kept derivative)."""
    if activation == "none":
        return torch.ones_like(pre)
    leaf = pre.detach().clone().requires_grad_()
    ACTIVATIONS[activation](leaf).backward(torch.ones_like(leaf))
    return leaf.grad


@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("activation", ACTS)
def test_epilogues_match_torch_float32(activation, skip):
    torch.manual_seed(0)
    rows, cols = 1037, 19  # spans several tiles with a ragged last one; 19 channels
    y, x = torch.randn(rows, cols) * 3, torch.randn(rows, cols)
    bias, gamma = torch.randn(cols), torch.randn(cols)
    skip_x = None if skip == "none" else x
    skip_gamma = gamma if skip == "scale" else None

    leaves = [t.clone().requires_grad_() for t in (y, bias, x, gamma)]
    pre_ref, out_ref = torch_epilogue(leaves[0], leaves[1], activation,
                                      None if skip == "none" else leaves[2],
                                      leaves[3] if skip == "scale" else None)
    grad_out = torch.randn(rows, cols)
    out_ref.backward(grad_out)

    act_grad, out = epilogue_forward(y.clone(), bias, activation, skip_x, skip_gamma)
    torch.testing.assert_close(out, out_ref.detach(), rtol=1e-5, atol=2e-6)
    if activation == "none":
        assert act_grad is None
    else:
        torch.testing.assert_close(act_grad, act_derivative(activation, pre_ref), rtol=1e-5,
                                   atol=2e-6)

    grad_x = torch.randn(rows, cols)  # accumulate into an existing gradient
    grad_pre, grad_bias, grad_gamma, grad_x_out = epilogue_backward(
        grad_out, act_grad, True, skip_x, skip_gamma,
        grad_x.clone() if skip != "none" else None)
    torch.testing.assert_close(grad_pre, leaves[0].grad, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(grad_bias, leaves[1].grad, rtol=1e-5, atol=1e-4)
    if skip == "none":
        assert grad_x_out is None and grad_gamma is None
    else:
        torch.testing.assert_close(grad_x_out, grad_x + leaves[2].grad, rtol=1e-5, atol=2e-6)
    if skip == "scale":
        torch.testing.assert_close(grad_gamma, leaves[3].grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_epilogues_bfloat16_within_twice_torch_error(activation):
    torch.manual_seed(1)
    rows, cols = 517, 24
    y, x = torch.randn(rows, cols) * 2, torch.randn(rows, cols)
    bias, gamma = torch.randn(cols), torch.randn(cols)
    exact_pre, exact = torch_epilogue(y.double(), bias.double(), activation, x.double(),
                                      gamma.double())
    torch_pre, torch_out = torch_epilogue(y.bfloat16(), bias.bfloat16(), activation,
                                          x.bfloat16(), gamma.bfloat16())
    act_grad, out = epilogue_forward(y.bfloat16(), bias, activation, x.bfloat16(), gamma)
    assert relative(out, exact) <= 2 * relative(torch_out, exact)

    grad_out = torch.randn(rows, cols)
    exact_grad = grad_out.double() * act_derivative(activation, exact_pre)
    torch_grad = torch.autograd.grad(
        ACTIVATIONS[activation](torch_pre.requires_grad_()), torch_pre, grad_out.bfloat16())[0]
    grad_pre = epilogue_backward(grad_out.bfloat16(), act_grad)[0]
    assert relative(grad_pre, exact_grad) <= 2 * relative(torch_grad, exact_grad)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_epilogue_nan_propagates_and_large_inputs_stay_finite(activation):
    # A NaN must survive (the trainer's non-finite checks rely on it); inputs far outside
    # the polynomial ranges must give torch's limits.
    y = torch.tensor([[float("nan"), -200.0, -30.0, 30.0, 200.0]])
    act_grad, out = epilogue_forward(y.clone(), torch.zeros(5), activation)
    assert torch.isnan(out[0, 0])
    torch.testing.assert_close(out[0, 1:], ACTIVATIONS[activation](y[0, 1:]))
    torch.testing.assert_close(act_grad, act_derivative(activation, y), equal_nan=True,
                               rtol=1e-5, atol=1e-6)


def test_epilogue_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"bias must be a contiguous torch.float32 CPU tensor "
                                         r"of shape \(4,\)"):
        epilogue_forward(torch.zeros(3, 4), torch.zeros(5), "gelu")


def mlp_params(widths, requires_grad=True):
    weights = [torch.randn(o, i) / i ** 0.5 for i, o in zip(widths[:-1], widths[1:], strict=True)]
    biases = [torch.randn(o) * 0.1 for o in widths[1:]]
    return [t.requires_grad_(requires_grad) for t in weights], [
        t.requires_grad_(requires_grad) for t in biases]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("widths", [(3, 17, 5), (5, 7, 9, 2), (4, 1), (3, 40), (40, 1, 40)])
def test_channel_mlp_cpu_matches_float64_reference(widths, activation):
    # (4, 1) and (40, 1, 40): layers of at most 4 outputs run as dot products; (3, 40): one
    # layer, more than one 32-column block
    torch.manual_seed(2)
    weights, biases = mlp_params(widths)
    x = torch.randn(2, 11, 13, widths[0], requires_grad=True)
    leaves = [x, *weights, *biases]
    out = channel_mlp(x, weights, biases, activation, backend="cpu")
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out)

    doubles = [t.detach().double().requires_grad_() for t in leaves]
    n = len(weights)
    exact = channel_mlp(doubles[0], doubles[1:1 + n], doubles[1 + n:], activation)
    exact_grads = torch.autograd.grad(exact, doubles, grad_out.double())
    torch.testing.assert_close(out, exact.float(), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, exact_grads, strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("amx", AMX_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("widths", "rows"), [
    ((3, 32, 8), (4, 9, 10)), ((5, 70, 33, 9), (3, 67)), ((40, 17, 40), (201,)),
])
def test_channel_mlp_bfloat16_within_twice_torch_error(widths, rows, threads, amx):
    # odd widths and 64-row tiles cut short, split between threads; with AMX the products
    # round their operands to bfloat16 (as autocast does) and the weight gradients sum 32-row
    # steps on tiles. (Every layer has 8 outputs or more: the error of a bias gradient of one
    # or two entries is too much a matter of luck to compare.)
    from nol_fast.ops.extension import amx_kernels

    torch.manual_seed(3)
    weights, biases = mlp_params(widths)
    x = torch.randn(*rows, widths[0])
    leaves = [x.requires_grad_(), *weights, *biases]
    grad_out = torch.randn(*rows, widths[-1])

    def run(dtype, backend):
        outs = channel_mlp(x if dtype is None else x, weights, biases, "gelu", backend)
        return [outs, *torch.autograd.grad(outs, leaves, grad_out.to(outs.dtype))]

    doubles = [t.detach().double().requires_grad_() for t in leaves]
    n = len(weights)
    exact = channel_mlp(doubles[0], doubles[1:1 + n], doubles[1 + n:], "gelu")
    exact = [exact, *torch.autograd.grad(exact, doubles, grad_out.double())]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16), amx_kernels(amx):
            ours = run(torch.bfloat16, "cpu")
            theirs = run(torch.bfloat16, "reference")
    finally:
        torch.set_num_threads(previous)
    assert ours[0].dtype == torch.bfloat16 and ours[2].dtype == torch.float32
    for got, torch_value, want in zip(ours, theirs, exact, strict=True):
        assert relative(got, want) <= 2 * relative(torch_value, want)


def test_channel_mlp_opcheck_and_fake():
    weights, biases = mlp_params((4, 6, 3), requires_grad=False)
    torch.library.opcheck(torch.ops.nol_fast.channel_mlp.default,
                          (torch.randn(2, 5, 4), weights, biases, "gelu"))


def test_channel_mlp_eager_path_matches_the_custom_op():
    # Eager calls bypass the dispatcher (EagerOp), torch.compile calls the custom op: the same
    # kernels, so output and gradients agree exactly.
    weights, biases = mlp_params((4, 6, 3), requires_grad=True)
    x = torch.randn(2, 5, 4, requires_grad=True)
    grad_out = torch.randn(2, 5, 3)
    leaves = [x, *weights, *biases]
    eager = channel_mlp(x, weights, biases, "gelu", backend="cpu")
    op = torch.ops.nol_fast.channel_mlp(x, weights, biases, "gelu")[0]
    for got, want in zip(torch.autograd.grad(eager, leaves, grad_out),
                         torch.autograd.grad(op, leaves, grad_out), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(eager, op, rtol=0, atol=0)


def test_layer_backend_selection(monkeypatch):
    cpu32, cpu64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    assert resolve_layer_backend(None, cpu32) == "cpu"
    assert resolve_layer_backend(None, cpu64) == "reference"
    monkeypatch.setenv("NOL_FAST_BACKEND", "reference")
    assert resolve_layer_backend(None, cpu32) == "reference"
    monkeypatch.setenv("NOL_FAST_BACKEND", "triton")  # another op's backend: ignored here
    assert resolve_layer_backend(None, cpu32) == "cpu"
    with pytest.raises(RuntimeError, match="computes in float32 or bfloat16"):
        resolve_layer_backend("cpu", cpu64)
    with pytest.raises(ValueError, match="unknown channels-last layer backend 'fast'"):
        resolve_layer_backend("fast", cpu32)


def test_channel_mlp_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'elu'"):
        channel_mlp(torch.zeros(2, 3), [torch.zeros(2, 3)], [torch.zeros(2)], "elu")


def test_reference_mlp_is_torch_linear_chain():
    torch.manual_seed(4)
    weights, biases = mlp_params((3, 5, 2), requires_grad=False)
    x = torch.randn(7, 3)
    expected = F.linear(F.gelu(F.linear(x, weights[0], biases[0])), weights[1], biases[1])
    torch.testing.assert_close(channel_mlp(x, weights, biases, backend="reference"), expected)


def test_workspace_reuses_buffers_per_name_and_grows():
    from nol_fast.ops.workspace import Workspace

    ws = Workspace()
    a = ws.take("a", (4, 8), torch.float32)
    assert ws.take("a", (2, 16), torch.float32).data_ptr() == a.data_ptr()
    assert ws.take("b", (4, 8), torch.float32).data_ptr() != a.data_ptr()
    grown = ws.take("a", (100,), torch.float32)
    assert grown.shape == (100,) and ws.take("a", (4, 8), torch.float32).data_ptr() == (
        grown.data_ptr())
    assert ws.take("a", (4,), torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("threads", [1, 2])
def test_channel_mlp_tiles_and_threads_match_reference(threads):
    # Rows over several 64-row tiles with a ragged last one, split between threads; layers
    # wider than one 32-column block and narrower than one 8-row block; the gradients of
    # weights and biases add up over tiles and threads.
    torch.manual_seed(6)
    weights, biases = mlp_params((3, 70, 33, 2))
    x = torch.randn(3, 67, 3, requires_grad=True)
    leaves = [x, *weights, *biases]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = channel_mlp(x, weights, biases, "gelu", backend="cpu")
        grad_out = torch.randn_like(out)
        grads = torch.autograd.grad(out, leaves, grad_out)
    finally:
        torch.set_num_threads(previous)
    doubles = [t.detach().double().requires_grad_() for t in leaves]
    exact = channel_mlp(doubles[0], doubles[1:4], doubles[4:], "gelu")
    exact_grads = torch.autograd.grad(exact, doubles, grad_out.double())
    torch.testing.assert_close(out, exact.float(), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, exact_grads, strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)


def test_backends_report_the_fno_layers():
    from nol_fast import backends

    report = backends()["fno_layers"]
    assert report["cpu"] == {"reference": "available", "cpu": "available"}
    assert report["cuda"]["cpu"] == "unavailable: runs on CPU tensors only"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("rows", "m", "n"), [
    (0, 3, 5), (1, 1, 1), (3, 9, 33), (300, 5, 7), (4099, 16, 32), (2 * 4096 + 77, 3, 64),
    (1000, 64, 40), (1537, 33, 47),
])
@pytest.mark.parametrize("amx", AMX_PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reduce_rows_matches_a_float64_product(rows, m, n, dtype, amx, threads):
    # odd shapes: result blocks of the kernels (8 x 32 for FMA, 16 x 16 tiles for AMX), their
    # tiles and chunks of rows (128; AMX: 32 and 512) cut short, fewer rows than threads, no
    # rows; the sums are float32, so bfloat16 operands give their exact product to float32
    # accuracy, far closer than torch's bfloat16 GEMM
    from nol_fast.ops.extension import amx_kernels
    from nol_fast.ops.pointwise.row_reduction import reduce_rows

    if dtype == torch.float32 and amx:
        pytest.skip("AMX runs bfloat16 products only")
    torch.manual_seed(rows + m + n)
    a, b = torch.randn(rows, m).to(dtype), torch.randn(rows, n).to(dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with amx_kernels(amx):
            got = reduce_rows(a, b)
            # rows further apart than their length (the kernel's row strides), and columns
            # further apart than one element (copied first)
            strided = reduce_rows(torch.cat((a, a), 1)[:, :m],
                                  torch.stack((b, b), -1).flatten(1)[:, ::2])
    finally:
        torch.set_num_threads(previous)
    exact = a.double().T @ b.double()
    scale = a.double().abs().T @ b.double().abs()
    assert got.dtype == torch.float32 and got.shape == (m, n)
    assert ((got.double() - exact).abs() <= 1e-5 * scale + 1e-30).all()
    torch.testing.assert_close(strided, got, rtol=0, atol=0)
    if dtype == torch.bfloat16 and rows > 100:
        torch_error = (torch.mm(a.T, b).double() - exact).abs().max()
        assert (got.double() - exact).abs().max() < torch_error


def test_amx_kernels_switch_restores_the_setting():
    from nol_fast.ops import extension

    require_extension()
    before = extension.amx_enabled()
    with extension.amx_kernels(False):
        assert not extension.amx_enabled()
        with extension.amx_kernels(True):
            assert extension.amx_enabled() == extension.EXTENSION.amx_available()
        assert not extension.amx_enabled()
    assert extension.amx_enabled() == before


def test_reduce_rows_rejects_what_the_kernel_does_not_take():
    from nol_fast.ops.pointwise.row_reduction import reduce_rows

    with pytest.raises(ValueError, match="float32 or bfloat16"):
        reduce_rows(torch.randn(4, 2).double(), torch.randn(4, 3).double())
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        reduce_rows(torch.randn(4, 2), torch.randn(4, 3).bfloat16())
    with pytest.raises(ValueError, match=r"\(rows, m\)"):
        reduce_rows(torch.randn(4, 2), torch.randn(5, 3))
