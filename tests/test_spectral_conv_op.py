"""The nol_fast::spectral_conv op: every CPU backend against a naive DFT, op checks, backend
selection, precision, and torch.compile of an FNO-like train step."""

from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from naive_dft import naive_spectral_conv
from torch import nn

from nol_fast import backends
from nol_fast.models import FNO, SpectralConv
from nol_fast.ops.spectral_conv import mode_index, reference, resolve_backend, spectral_conv
from nol_fast.ops.spectral_conv.modes import kept_shape
from nol_fast.ops.spectral_conv.op import ENV_VAR, _log_fallback

CPU_BACKENDS = ["reference", "cpu"]

# (input grid, output grid, n_modes)
CASES = [
    ((37,), (37,), (10,)),
    ((30, 17), (30, 17), (8, 6)),
    ((12, 10, 9), (12, 10, 9), (6, 5, 4)),
    ((37,), (20,), (10,)),
    ((30, 17), (45, 26), (8, 6)),
    ((12, 10, 9), (9, 16, 11), (6, 5, 4)),
    # coarser output grids that keep their Nyquist frequency (c_k = 1 there, not 2)
    ((16,), (8,), (8,)),
    ((12, 16), (8, 10), (8, 10)),
    # grids too coarse for n_modes: the modes are clipped to what both grids have
    ((7, 6), (9, 5), (16, 16)),
]


def case_id(case):
    return "->".join("x".join(map(str, grid)) for grid in case[:2])


def random_problem(in_grid, n_modes, in_channels=3, out_channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_channels, *in_grid, dtype=torch.float64, generator=g)
    shape = (in_channels, out_channels, *kept_shape(n_modes))
    w = torch.complex(torch.randn(shape, dtype=torch.float64, generator=g),
                      torch.randn(shape, dtype=torch.float64, generator=g))
    return x, w


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backends_match_naive_dft(backend, case):
    in_grid, out_grid, n_modes = case
    x, w = random_problem(in_grid, n_modes)
    x.requires_grad_(True)
    w.requires_grad_(True)
    x_ref, w_ref = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)

    y = spectral_conv(x, w, n_modes, out_grid, backend=backend)
    y_ref = naive_spectral_conv(x_ref, w_ref, n_modes, out_grid)
    assert y.shape == (2, 2, *out_grid) and y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    probe = torch.randn_like(y)
    (y * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-10, atol=1e-12)


# Nyquist kept on a coarser output grid (16 -> 8 with 8 modes), and bfloat16-free odd cases.
CHANNELS_LAST_CASES = [*CASES, ((16,), (8,), (8,)), ((16, 12), (8, 12), (8, 8))]


@pytest.mark.parametrize("case", CHANNELS_LAST_CASES, ids=case_id)
def test_cpu_channels_last_matches_naive_dft(case):
    # The truncated DFTs of the FNO's channels-last path: (batch, *grid, channels) in and out,
    # and the input gradient added into an existing buffer.
    from nol_fast.ops.spectral_conv import cpu

    in_grid, out_grid, n_modes = case
    x, w = random_problem(in_grid, n_modes)
    index = mode_index(n_modes, in_grid, out_grid)
    y, x_modes = cpu.forward_modes(x.movedim(1, -1).contiguous(), w, index, out_grid,
                                   channels_last=True)
    x_ref, w_ref = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y_ref = naive_spectral_conv(x_ref, w_ref, n_modes, out_grid)
    torch.testing.assert_close(y, y_ref.movedim(1, -1), rtol=1e-10, atol=1e-12)

    probe = torch.randn_like(y_ref)
    (y_ref * probe).sum().backward()
    existing = torch.randn(2, *in_grid, 3, dtype=torch.float64)
    grad_x, grad_w = cpu.backward_modes(probe.movedim(1, -1).contiguous(), x_modes, w, index,
                                        in_grid, channels_last=True, grad_x=existing.clone())
    torch.testing.assert_close(grad_x, existing + x_ref.grad.movedim(1, -1), rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(grad_w, w_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_backends_agree(backend):
    x, w = random_problem((64, 33), (16, 16), in_channels=8, out_channels=8)
    expected = spectral_conv(x, w, (16, 16), backend="reference")
    y = spectral_conv(x.float(), w.to(torch.complex64), (16, 16), backend=backend)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck_through_the_op(backend):
    x, w = random_problem((5, 4), (4, 3), in_channels=2, out_channels=2)
    x = x[:1].requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w: spectral_conv(x, w, (4, 3), (7, 6), backend=backend), (x, w))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    x, w = random_problem((9, 8), (6, 6), in_channels=2, out_channels=3)
    w_real = torch.view_as_real(w)
    torch.library.opcheck(torch.ops.nol_fast.spectral_conv.default,
                          (x.requires_grad_(True), w_real.requires_grad_(True), [6, 6], [10, 7],
                           backend))
    _, x_modes = torch.ops.nol_fast.spectral_conv(x.detach(), w_real.detach(), [6, 6], [10, 7],
                                                  backend)
    grad_y = torch.randn(2, 3, 10, 7, dtype=torch.float64)
    torch.library.opcheck(torch.ops.nol_fast.spectral_conv_backward.default,
                          (grad_y, x_modes, w_real.detach(), [6, 6], [9, 8], backend))


# ----------------------------------------------------------------------- properties


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES[:3], ids=case_id)
def test_linear_and_shift_equivariant(backend, case):
    grid, _, n_modes = case
    x, w = random_problem(grid, n_modes)
    z, _ = random_problem(grid, n_modes, seed=1)

    def conv(t):
        return spectral_conv(t, w, n_modes, backend=backend)

    torch.testing.assert_close(conv(2.5 * x - 0.7 * z), 2.5 * conv(x) - 0.7 * conv(z))
    dims = tuple(range(2, 2 + len(grid)))
    shifts = tuple(3 + i for i in range(len(grid)))
    torch.testing.assert_close(conv(torch.roll(x, shifts, dims)), torch.roll(conv(x), shifts, dims))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_no_output_energy_above_kept_modes(backend, case):
    in_grid, out_grid, n_modes = case
    x, w = random_problem(in_grid, n_modes)
    y = spectral_conv(x, w, n_modes, out_grid, backend=backend)
    spectrum = torch.fft.rfftn(y, dim=tuple(range(2, y.dim())), norm="forward")
    index = mode_index(n_modes, in_grid, out_grid)
    kept = torch.zeros(spectrum.shape[2:], dtype=torch.bool)
    axes = [torch.tensor(i) for i in index.out_index] + [torch.arange(index.n_last)]
    kept[torch.meshgrid(*axes, indexing="ij")] = True
    if len(out_grid) > 1:  # the last-dim-zero plane of a real signal is Hermitian
        plane = kept[..., 0]
        dims = tuple(range(plane.dim()))
        kept[..., 0] |= torch.roll(torch.flip(plane, dims), (1,) * plane.dim(), dims)
    assert spectrum[..., kept].abs().max() > 1e-3
    if not kept.all():  # a coarse output grid may have no frequency above the kept ones
        assert spectrum[..., ~kept].abs().max() < 1e-12


def test_super_resolution_keeps_amplitudes():
    # A band-limited input evaluated on a 3x finer grid gives the same function there.
    conv = SpectralConv(1, 1, (8, 8), bias=False).double()
    axis = torch.arange(16, dtype=torch.float64) / 16
    fine_axis = torch.arange(48, dtype=torch.float64) / 48

    def sample(a):
        u, v = torch.meshgrid(a, a, indexing="ij")
        u = torch.sin(2 * math.pi * u) + torch.cos(2 * math.pi * (u + 2 * v))
        return u.view(1, 1, *u.shape)

    with torch.no_grad():
        coarse, fine = conv(sample(axis)), conv(sample(fine_axis))
        upsampled = conv(sample(axis), output_shape=(48, 48))
    torch.testing.assert_close(upsampled, fine, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(upsampled[..., ::3, ::3], coarse, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------- precision


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_precision_rule(backend):
    conv = SpectralConv(2, 2, (6, 6), backend=backend)
    x = torch.randn(2, 2, 12, 9)
    expected = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        y_half = conv(x.bfloat16())
    assert y.dtype == y_half.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    assert conv(x.bfloat16()).dtype == torch.bfloat16
    assert conv.double()(x.double()).dtype == torch.float64


# ------------------------------------------------------------------- backend selection


def test_backend_selection(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend("auto", cpu) == "cpu"
    assert resolve_backend("reference", cpu) == "reference"
    monkeypatch.setenv(ENV_VAR, "reference")
    assert resolve_backend("auto", cpu) == "reference"
    assert resolve_backend("cpu", cpu) == "cpu"  # the argument wins over the variable
    monkeypatch.setenv(ENV_VAR, "fastest")
    with pytest.raises(ValueError, match=r"'fastest'.*'reference', 'cpu', 'triton'"):
        resolve_backend("auto", cpu)


def test_backend_errors(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    with pytest.raises(ValueError, match=r"unknown spectral_conv backend 'cuda'; choose one of"):
        SpectralConv(2, 2, (4, 4), backend="cuda")
    conv = SpectralConv(2, 2, (4, 4), backend="triton")
    with pytest.raises(RuntimeError, match=r"'triton' is not available for cpu tensors .*"
                                           r"available: \['reference', 'cpu'\]"):
        conv(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"output_shape must be 2 positive grid sizes"):
        SpectralConv(2, 2, (4, 4))(torch.randn(1, 2, 8, 8), output_shape=(8,))


def test_automatic_fallback_logs_once(caplog, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    _log_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="nol_fast.ops.spectral_conv.op"):
        assert resolve_backend("auto", torch.device("meta")) == "reference"
        assert resolve_backend("auto", torch.device("meta")) == "reference"
    assert [r.getMessage() for r in caplog.records] == [
        "spectral_conv: no fast backend for meta tensors (no fast path for meta tensors); "
        "using 'reference'"]


def test_backends_report(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    report = backends()["spectral_conv"]
    assert report["cpu"]["cpu"] == report["cpu"]["reference"] == "available"
    assert report["cpu"]["triton"].startswith("unavailable: ")
    if not torch.cuda.is_available():
        assert report["cuda"]["triton"] == "unavailable: no CUDA device"


def test_module_uses_the_op_and_env_var(monkeypatch):
    conv = SpectralConv(3, 4, (6, 6)).double()
    x = torch.randn(2, 3, 14, 11, dtype=torch.float64)
    monkeypatch.delenv(ENV_VAR, raising=False)
    y_auto = conv(x)
    calls = []
    real_forward = reference.reference_forward

    def counted_forward(*args):
        calls.append(args[0].shape)
        return real_forward(*args)

    monkeypatch.setattr(reference, "reference_forward", counted_forward)
    monkeypatch.setenv(ENV_VAR, "reference")
    torch.testing.assert_close(conv(x), y_auto)
    assert calls == [x.shape]  # the variable chose the backend that ran
    monkeypatch.setenv(ENV_VAR, "triton")  # a backend that cannot run on CPU tensors
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # (the interpreter would run it)
    with pytest.raises(RuntimeError, match="'triton' is not available for cpu tensors"):
        conv(x)
    assert "backend='cpu'" in repr(SpectralConv(1, 1, 4, backend="cpu"))


# -------------------------------------------------------------------- Triton composition


def test_triton_composition_on_cpu_interpreter():
    pytest.importorskip("triton")
    try:
        import nol_fast.ops.triton.spectral_conv  # noqa: F401
    except ImportError as err:
        pytest.skip(f"the Triton kernels are not importable: {err}")
    script = textwrap.dedent("""
        import torch
        from nol_fast.ops.spectral_conv import cuda, mode_index, reference
        torch.manual_seed(0)
        for grid, out, modes in [((30, 17), (30, 17), (8, 6)), ((13,), (20,), (6,))]:
            x = torch.randn(2, 3, *grid)
            kept = (*modes[:-1], modes[-1] // 2 + 1)
            w = torch.randn(3, 4, *kept, dtype=torch.cfloat)
            index = mode_index(modes, grid, out)
            y, x_modes = cuda.cuda_forward(x, w, index, out)
            y_ref, x_modes_ref = reference.reference_forward(x, w, index, out)
            torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(x_modes, x_modes_ref, rtol=1e-4, atol=1e-5)
            g = torch.randn_like(y)
            for got, want in zip(cuda.cuda_backward(g, x_modes, w, index, grid),
                                 reference.reference_backward(g, x_modes_ref, w, index, grid)):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        print("ok")
    """)
    env = {"TRITON_INTERPRET": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# ---------------------------------------------------------------------- torch.compile


def test_torch_compile_train_step_matches_eager(tmp_path, monkeypatch):
    # A whole FNO train step (the library's FNO: embedding, lifting, Fourier blocks with channel
    # MLPs and skips, projection). Inductor compiles forward, backward and the Adam step.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    eager = FNO(n_modes=(6, 6), hidden_channels=8, n_layers=2)
    compiled = copy.deepcopy(eager)
    x, y = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)

    def make_step(model):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

        def step():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            return loss.detach()
        return step

    torch._dynamo.reset()
    eager_step, compiled_step = make_step(eager), torch.compile(make_step(compiled))
    eager_losses = [eager_step() for _ in range(3)]
    compiled_losses = [compiled_step() for _ in range(3)]
    torch.testing.assert_close(torch.stack(compiled_losses), torch.stack(eager_losses),
                               rtol=1e-4, atol=1e-5)
    assert eager_losses[-1] < eager_losses[0]
