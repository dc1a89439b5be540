"""The fused physics ops against their references: every CPU backend, forward and gradients.

``nol_fast::darcy_residual_loss`` (reference | cpu), ``nol_fast::navier_stokes_residual_loss``
(reference | fused) and ``nol_fast::conservation_sums`` (reference): odd shapes, both
boundary kinds, accuracy 2 and 4, per-dtype tolerances, ``torch.library.opcheck`` and float64
gradcheck. The references themselves are checked against analytic solutions in
test_residuals.py; the Triton backends run under the interpreter in test_triton_physics.py.
"""

from __future__ import annotations

import pytest
import torch

from nol_fast import backends
from nol_fast.ops.conservation import conservation_sums
from nol_fast.ops.darcy_residual import darcy_residual_loss
from nol_fast.ops.navier_stokes_residual import navier_stokes_residual_loss
from nol_fast.ops.selection import ENV_VAR
from nol_fast.physics.grid import Grid
from nol_fast.physics.pde_residual import PDEResidual
from nol_fast.physics.residuals import RESIDUALS
from tests.conftest import require_extension

TOLERANCE = {torch.float32: {"rtol": 2e-5, "atol": 1e-5},
             torch.float64: {"rtol": 1e-10, "atol": 1e-12}}


def _darcy_inputs(shape, dtype, seed=0, forcing_tensor=True):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    a = (torch.rand((shape[0], 1, *shape[2:]), generator=g, dtype=torch.float64) + 0.5).to(dtype)
    f = torch.randn(shape[2:], generator=g, dtype=torch.float64).to(dtype) if forcing_tensor \
        else 1.5
    return u, a, f


def _loss_and_grads(fn, *tensors):
    leaves = [t.detach().requires_grad_() if isinstance(t, torch.Tensor) else t for t in tensors]
    loss = fn(*leaves)
    grads = torch.autograd.grad(loss, [t for t in leaves if isinstance(t, torch.Tensor)])
    return loss, grads


# --------------------------------------------------------------------------- Darcy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("shape", "periodic", "accuracy"),
    [((2, 3, 11, 13), (False, False), 2), ((1, 1, 9, 17), (False, False), 4),
     ((3, 2, 8, 7), (True, False), 2), ((1, 2, 10, 6), (False, True), 4),
     ((2, 1, 5, 5), (True, True), 2)],
    ids=["bounded2", "bounded4", "periodic_x", "periodic_y4", "periodic_both"],
)
def test_darcy_cpu_matches_reference(shape, periodic, accuracy, dtype):
    require_extension()
    u, a, f = _darcy_inputs(shape, dtype)
    spacing = (0.3, 0.45)
    for forcing in (f, 0.7):
        want = _loss_and_grads(
            lambda *t: darcy_residual_loss(*t, spacing, periodic, accuracy, "reference"),
            u, a, forcing)
        got = _loss_and_grads(
            lambda *t: darcy_residual_loss(*t, spacing, periodic, accuracy, "cpu"), u, a, forcing)
        torch.testing.assert_close(got[0], want[0], **TOLERANCE[dtype])
        for g, w in zip(got[1], want[1], strict=True):
            scale = w.abs().max()
            torch.testing.assert_close(g / scale, w / scale, **TOLERANCE[dtype])


def test_darcy_low_precision_inputs_are_computed_in_float32():
    require_extension()
    u, a, _ = _darcy_inputs((2, 1, 12, 12), torch.bfloat16)
    loss = darcy_residual_loss(u, a, 1.0, (0.1, 0.1), backend="cpu")
    assert loss.dtype == torch.float32
    want = darcy_residual_loss(u.float(), a.float(), 1.0, (0.1, 0.1), backend="reference")
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_darcy_gradcheck_and_opcheck(backend):
    if backend == "cpu":
        require_extension()
    u, a, f = _darcy_inputs((1, 1, 7, 6), torch.float64, seed=3)
    leaves = [t.requires_grad_() for t in (u, a, f)]
    assert torch.autograd.gradcheck(
        lambda u, a, f: darcy_residual_loss(u, a, f, (0.6, 0.7), (False, True), 4, backend),
        leaves)
    op = torch.ops.nol_fast.darcy_residual_loss.default
    u32 = u.detach().float()
    a32, f32 = (t.detach().float().expand_as(u32).contiguous() for t in (a, f))
    torch.library.opcheck(op, (u32.requires_grad_(), a32, f32, 0.0, [0.5, 0.5], [False, False], 2,
                               backend))
    torch.library.opcheck(op, (u32, a32, None, 1.0, [0.5, 0.5], [True, False], 4, backend))
    with pytest.raises(ValueError, match=r"a must match u \(torch.float32, \(1, 1, 7, 6\)"):
        op(u32, a32[..., :5], None, 1.0, [0.5, 0.5], [False, False], 2, backend)


def test_darcy_backend_selection(monkeypatch):
    require_extension()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    u, a, _ = _darcy_inputs((1, 1, 6, 6), torch.float32)
    with pytest.raises(ValueError, match=r"unknown darcy_residual backend 'fast'; choose one of: "
                                         r"reference, cpu, triton"):
        darcy_residual_loss(u, a, backend="fast")
    with pytest.raises(RuntimeError, match=r"'triton' is not available for cpu tensors \(runs on "
                                           r"CUDA tensors only \(or CPU tensors with "
                                           r"TRITON_INTERPRET=1\)\); "
                                           r"available: reference, cpu"):
        darcy_residual_loss(u, a, backend="triton")
    from nol_fast.ops.darcy_residual import SELECTION

    assert SELECTION.resolve(None, u.device) == "cpu"
    monkeypatch.setenv(ENV_VAR, "reference")
    assert SELECTION.resolve(None, u.device) == "reference"
    monkeypatch.setenv(ENV_VAR, "fused")  # a backend of another op: ignored here
    assert SELECTION.resolve(None, u.device) == "cpu"


# --------------------------------------------------------------------------- Navier-Stokes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "domain"), [((2, 3, 16, 12), (1.0, 2.0)),
                                               ((1, 1, 9, 7), (6.3, 6.3)),
                                               ((3, 2, 32, 32), (1.0, 1.0))],
                         ids=["even", "odd", "square"])
def test_navier_stokes_fused_matches_reference(shape, domain, dtype):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    extra = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    want = _loss_and_grads(
        lambda w, e: navier_stokes_residual_loss(w, e, 0.01, domain, "reference"), w, extra)
    got = _loss_and_grads(
        lambda w, e: navier_stokes_residual_loss(w, e, 0.01, domain, "fused"), w, extra)
    torch.testing.assert_close(got[0], want[0], **TOLERANCE[dtype])
    for g_, w_ in zip(got[1], want[1], strict=True):
        scale = w_.abs().max()
        torch.testing.assert_close(g_ / scale, w_ / scale, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_navier_stokes_gradcheck_and_opcheck(backend):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(1, 1, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(1, 1, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w, e: navier_stokes_residual_loss(w, e, 0.05, (1.0, 2.0), backend), (w, extra))
    op = torch.ops.nol_fast.navier_stokes_residual_loss.default
    torch.library.opcheck(op, (w.detach().float().requires_grad_(), extra.detach().float(), 0.01,
                               [1.0, 1.0], backend))


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_navier_stokes_without_grad_skips_the_op_dispatch_and_agrees(backend, monkeypatch):
    from nol_fast.ops.navier_stokes_residual import op as ns_op

    g = torch.Generator().manual_seed(3)
    w, extra = torch.randn(2, 2, 12, 10, generator=g), torch.randn(2, 2, 12, 10, generator=g)
    with_grad = navier_stokes_residual_loss(w.clone().requires_grad_(), extra, 0.01, 1.0, backend)
    calls = []
    dispatch = ns_op._loss
    monkeypatch.setattr(ns_op, "_loss", lambda *args: calls.append(args) or dispatch(*args))
    with torch.no_grad():
        direct = navier_stokes_residual_loss(w.requires_grad_(), extra, 0.01, 1.0, backend)
    assert calls == []  # nothing to differentiate: the op's forward runs without dispatch
    torch.testing.assert_close(direct, with_grad.detach(), rtol=0, atol=0)
    navier_stokes_residual_loss(w, extra, 0.01, 1.0, backend).backward()
    assert len(calls) == 1 and w.grad is not None


def test_navier_stokes_argument_errors():
    w = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"viscosity must be a finite number >= 0, got -1"):
        navier_stokes_residual_loss(w, w, -1)
    with pytest.raises(ValueError, match=r"w must be \(batch, T, nx, ny\) and extra of the same"):
        navier_stokes_residual_loss(w, w[..., :4], 0.1)
    with pytest.raises(ValueError, match=r"unknown navier_stokes_residual backend 'cpu'"):
        navier_stokes_residual_loss(w, w, 0.1, backend="cpu")


# --------------------------------------------------------------------------- conservation


@pytest.mark.parametrize(("shape", "density", "weighted"),
                         [((2, 3, 7, 5), 0, (False, True, True)), ((1, 2, 9), None, None),
                          ((2, 2, 3, 4, 5), 1, (True, False))])
def test_conservation_sums_are_the_integrands_summed(shape, density, weighted):
    g = torch.Generator().manual_seed(4)
    u = torch.randn(shape, generator=g, dtype=torch.float64)
    spacing = [0.1 * (k + 1) for k in range(len(shape) - 2)]
    sums = conservation_sums(u, spacing, density, weighted)
    # Oracle: loops over rows and points, written out.
    flat = u.flatten(2)
    grid = shape[2:]
    for b in range(shape[0]):
        for c in range(shape[1]):
            m = flat[b, density] if weighted and weighted[c] else torch.ones_like(flat[b, c])
            assert sums[b, c, 0] == pytest.approx(float((m * flat[b, c]).sum()), rel=1e-12)
            assert sums[b, c, 1] == pytest.approx(float((m * flat[b, c] ** 2).sum()), rel=1e-12)
            for k in range(len(grid)):
                index = torch.arange(flat.shape[-1])
                stride = int(torch.tensor(grid[k + 1:]).prod()) if k + 1 < len(grid) else 1
                x = (index // stride % grid[k]).double() * spacing[k]
                assert sums[b, c, 2 + k] == pytest.approx(float((x * flat[b, c]).sum()),
                                                          rel=1e-12, abs=1e-12)
    leaf = u.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: conservation_sums(t, spacing, density, weighted),
                                    (leaf,))
    torch.library.opcheck(torch.ops.nol_fast.conservation_sums.default,
                          (u.float(), -1 if density is None else density,
                           list(weighted or [False] * shape[1]), spacing, "reference"))


# --------------------------------------------------------------------------- the bound residuals


@pytest.mark.parametrize("name", sorted(RESIDUALS))
def test_pde_residual_mean_square_is_the_composition_squared(name):
    g = torch.Generator().manual_seed(5)
    spatial = (16,) if name == "burgers" else (12, 10)
    u = torch.randn(2, 2, *spatial, generator=g, dtype=torch.float64)
    forcing = torch.randn(spatial, generator=g, dtype=torch.float64)
    params = {"burgers": {"viscosity": 0.1}, "heat": {"diffusivity": 0.3},
              "wave": {"speed": 0.4}, "navier_stokes": {"viscosity": 0.02},
              "darcy": {"accuracy": 4}}[name]
    if name == "darcy":
        inputs = torch.rand(2, 1, *spatial, generator=g, dtype=torch.float64) + 1
        grid = Grid(domain=(1.0, 2.0), periodic=(False, True))
    else:
        inputs = torch.randn(2, 3, *spatial, generator=g, dtype=torch.float64)
        grid = Grid(domain=2.0, dt=0.05)
    residual = PDEResidual(name, grid=grid, forcing=forcing, **params)
    want = residual(u, inputs).square().mean()
    torch.testing.assert_close(residual.mean_square(u, inputs), want, rtol=1e-10, atol=1e-12)


def test_pde_residual_arguments_are_checked():
    with pytest.raises(ValueError, match=r"unknown PDE residual 'poisson'; choose one of: "
                                         r"burgers, darcy, heat, navier_stokes, wave"):
        PDEResidual("poisson")
    with pytest.raises(ValueError, match=r"the heat residual has no parameter viscosity; it "
                                         r"takes: diffusivity, forcing, accuracy"):
        PDEResidual("heat", viscosity=1.0)
    with pytest.raises(ValueError, match=r"the navier_stokes residual needs viscosity"):
        PDEResidual("navier_stokes")
    with pytest.raises(ValueError, match=r"the heat residual has no fused op"):
        PDEResidual("heat", diffusivity=1.0, backend="cpu")
    residual = PDEResidual("darcy", grid={"domain": [1.0, 2.0], "periodic": False})
    assert residual.grid == Grid(domain=(1.0, 2.0), periodic=False)


def test_backends_report_lists_the_physics_ops(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    report = backends()
    assert report["darcy_residual"]["cuda"]["triton"].startswith("unavailable")
    assert report["navier_stokes_residual"]["cpu"] == {"reference": "available",
                                                       "fused": "available"}
    assert report["conservation"]["cpu"]["triton"] == ("unavailable: runs on CUDA tensors only "
                                                       "(or CPU tensors with TRITON_INTERPRET=1)")
