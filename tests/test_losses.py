"""Tests of the physics-informed losses and the uniform grid they are computed on.

Every value is checked against an oracle computed independently of the code under test:
closed-form integrals, Riemann sums written out with NumPy or Python loops, and PDE residuals
built in the test from a spectral or finite-difference Laplacian.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nol_fast.physics.grid import cell_volume, grid_spacing, uniform_grid
from nol_fast.training.losses import CONSERVATION_TYPES, ConservationLoss, PhysicsInformedLoss

TWO_PI = 2 * math.pi


def sin_sin(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """sin(2πx) sin(2πy) on the periodic n x n grid of the unit square: (1, 1, n, n)."""
    x = np.arange(n) / n
    u = np.sin(TWO_PI * x)[:, None] * np.sin(TWO_PI * x)[None, :]
    return torch.tensor(u, dtype=dtype)[None, None]


def spectral_laplacian_2d(u: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    """Laplacian in the first two grid dims of u: (batch, channels, nx, ny, ...)."""
    nx, ny = u.shape[2], u.shape[3]
    kx = TWO_PI * torch.fft.fftfreq(nx, d=hx, dtype=u.dtype)
    ky = TWO_PI * torch.fft.fftfreq(ny, d=hy, dtype=u.dtype)
    k2 = (kx[:, None] ** 2 + ky[None, :] ** 2).reshape(nx, ny, *([1] * (u.ndim - 4)))
    return torch.fft.ifftn(-k2 * torch.fft.fftn(u, dim=(2, 3)), dim=(2, 3)).real


def fd_laplacian_2d(u: torch.Tensor) -> torch.Tensor:
    """Five-point Laplacian (unit spacing) on the interior of u: (batch, channels, nx, ny)."""
    return (u[..., 2:, 1:-1] + u[..., :-2, 1:-1] + u[..., 1:-1, 2:] + u[..., 1:-1, :-2]
            - 4 * u[..., 1:-1, 1:-1])


# --------------------------------------------------------------------------- grid


def test_uniform_grid_cell_starts_and_endpoint():
    grid = uniform_grid((4, 3), domain=(2.0, 3.0), dtype=torch.float64)
    assert grid.shape == (4, 3, 2)
    for i in range(4):
        for j in range(3):
            assert grid[i, j].tolist() == [i * 0.5, j * 1.0]
    ends = uniform_grid((5,), domain=2.0, endpoint=True, dtype=torch.float64)[:, 0]
    assert ends.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert uniform_grid((1,), endpoint=True)[:, 0].tolist() == [0.0]
    assert uniform_grid((2, 2, 2)).dtype == torch.get_default_dtype()
    assert uniform_grid((3,), dtype=torch.float16).dtype == torch.float16


def test_cell_volume_and_spacing():
    assert grid_spacing((4, 8), domain=(1.0, 2.0)) == (0.25, 0.25)
    assert cell_volume((4, 5, 2), domain=(2.0, 1.0, 3.0)) == pytest.approx(0.5 * 0.2 * 1.5)
    assert cell_volume((10,)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("shape", "domain", "match"),
    [
        ((), 1.0, "spatial_shape"),
        ((4, 0), 1.0, "spatial_shape"),
        ((4,), -1.0, "domain lengths"),
        ((4,), float("inf"), "domain lengths"),
        ((4, 4), (1.0, 2.0, 3.0), "2 lengths"),
    ],
)
def test_grid_rejects_bad_arguments(shape, domain, match):
    with pytest.raises(ValueError, match=match):
        uniform_grid(shape, domain)


# --------------------------------------------------------------------------- data term


def test_data_term_equals_mse_loss():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 2, 8, 8), torch.randn(3, 2, 8, 8)
    loss = PhysicsInformedLoss()(pred, target)
    torch.testing.assert_close(loss, F.mse_loss(pred, target))
    l1 = PhysicsInformedLoss(data_loss="l1")(pred, target)
    torch.testing.assert_close(l1, (pred - target).abs().mean())
    custom = PhysicsInformedLoss(data_loss=lambda p, t: (p - t).abs().max())(pred, target)
    torch.testing.assert_close(custom, (pred - target).abs().max())


def test_weights_combine_linearly_and_components_are_unweighted():
    torch.manual_seed(1)
    pred, target = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    loss_fn = PhysicsInformedLoss(
        data_weight=0.7, pde_weight=0.3, boundary_weight=2.0, conservation_weight=0.25
    )
    loss_fn.set_pde_residual(lambda u, coords: fd_laplacian_2d(u))
    loss_fn.set_boundary_conditions(lambda u, coords: u[..., 0, :])
    loss_fn.set_conservation_laws(ConservationLoss(["mass", "energy"]))
    total = loss_fn(pred, target)

    expected = {
        "data": F.mse_loss(pred, target),
        "pde": fd_laplacian_2d(pred).square().mean(),
        "boundary": pred[..., 0, :].square().mean(),
        "conservation": (
            ((pred.mean((2, 3)) - target.mean((2, 3))) ** 2).mean()
            + ((0.5 * (pred**2).mean((2, 3)) - 0.5 * (target**2).mean((2, 3))) ** 2).mean()
        ),
    }
    comps = loss_fn.last_components
    assert set(comps) == {f"loss_{t}" for t in expected} | {"loss_conservation_mass",
                                                            "loss_conservation_energy"}
    for key, value in expected.items():
        comp = comps[f"loss_{key}"]
        assert comp.ndim == 0 and not comp.requires_grad
        assert comp.device == pred.device
        torch.testing.assert_close(comp, value)
    torch.testing.assert_close(comps["loss_conservation"], comps["loss_conservation_mass"]
                               + comps["loss_conservation_energy"])
    weights = {"data": 0.7, "pde": 0.3, "boundary": 2.0, "conservation": 0.25}
    torch.testing.assert_close(total, sum(weights[k] * expected[k] for k in expected))


def test_zero_weight_and_missing_target_make_terms_inactive():
    pred = torch.randn(2, 1, 8)
    loss_fn = PhysicsInformedLoss(pde_weight=0.0)
    loss_fn.set_pde_residual(lambda u, coords: u)
    loss_fn.set_boundary_conditions(lambda u, coords: u[..., 0])
    loss = loss_fn(pred)  # no target: no data term; pde weight 0: no pde term
    assert set(loss_fn.last_components) == {"loss_boundary"}
    torch.testing.assert_close(loss, pred[..., 0].square().mean())


# --------------------------------------------------------------------------- PDE term


def heat_residual(kappa: float):
    """u_t - κΔu on a space-time grid (x, y, t): spectral in x, y; central in t."""

    def residual(u: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        # u: (batch, channels, nx, ny, nt); coords: (nx, ny, nt, 3)
        hx = float(coords[1, 0, 0, 0] - coords[0, 0, 0, 0])
        hy = float(coords[0, 1, 0, 1] - coords[0, 0, 0, 1])
        dt = float(coords[0, 0, 1, 2] - coords[0, 0, 0, 2])
        u_t = (u[..., 2:] - u[..., :-2]) / (2 * dt)
        return u_t - kappa * spectral_laplacian_2d(u, hx, hy)[..., 1:-1]

    return residual


def test_pde_residual_vanishes_on_heat_solution_and_matches_perturbation():
    kappa, t_end, n, nt = 0.05, 0.25, 16, 64
    decay = 8 * math.pi**2 * kappa  # u = sin(2πx) sin(2πy) exp(-8π²κt) solves u_t = κΔu
    coords = uniform_grid((n, n, nt), domain=(1.0, 1.0, t_end), dtype=torch.float64)
    x, y, t = coords.unbind(-1)
    mode = torch.sin(TWO_PI * x) * torch.sin(TWO_PI * y)
    u = (mode * torch.exp(-decay * t))[None, None]

    loss_fn = PhysicsInformedLoss(pde_weight=1.0)
    loss_fn.set_pde_residual(heat_residual(kappa))
    loss_fn(u, coords=coords)
    u_t_scale = (decay * u).square().mean()
    assert loss_fn.last_components["loss_pde"] < 1e-7 * u_t_scale

    # A time-independent perturbation ε·mode adds exactly λε·mode to the residual
    # (its central time difference is 0 and Δ mode = -8π² mode), whose mean square over
    # the grid is (λε)² · mean(sin²) · mean(sin²) = (λε)² / 4.
    eps = 0.5
    loss = loss_fn(u + eps * mode[None, None], coords=coords)
    assert loss.item() == pytest.approx((decay * eps) ** 2 / 4, rel=1e-3)


def test_residual_receives_default_coords():
    seen = {}

    def residual(u, coords):
        seen["coords"] = coords
        return u

    loss_fn = PhysicsInformedLoss()
    loss_fn.set_pde_residual(residual)
    loss_fn(torch.zeros(1, 1, 4, 6, dtype=torch.float64))
    torch.testing.assert_close(seen["coords"], uniform_grid((4, 6), dtype=torch.float64))


# --------------------------------------------------------------------------- boundary term


def dirichlet_boundary(u: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Values of u on the edges of the unit square (coords include both ends)."""
    on_edge = ((coords == 0) | (coords == 1)).any(-1)  # (nx, ny)
    return u[..., on_edge]  # (batch, channels, n_edge)


def test_boundary_term_zero_dirichlet():
    n = 9
    coords = uniform_grid((n, n), endpoint=True, dtype=torch.float64)
    x, y = coords.unbind(-1)
    loss_fn = PhysicsInformedLoss(boundary_weight=1.0)
    loss_fn.set_boundary_conditions(dirichlet_boundary)

    satisfied = (torch.sin(math.pi * x) * torch.sin(math.pi * y))[None, None]
    assert loss_fn(satisfied, coords=coords).item() < 1e-30

    violated = (x * y)[None, None]  # zero on x=0 and y=0, equal to y on x=1 and x on y=1
    edge_values = [
        (i / (n - 1)) * (j / (n - 1))
        for i in range(n)
        for j in range(n)
        if i in (0, n - 1) or j in (0, n - 1)
    ]
    expected = sum(v * v for v in edge_values) / len(edge_values)
    assert loss_fn(violated, coords=coords).item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- conservation


def test_conserved_quantities_match_closed_forms():
    n = 16
    sin2 = sin_sin(n) ** 2
    qs = ConservationLoss(list(CONSERVATION_TYPES)).quantities(sin_sin(n))
    assert qs["energy"].item() == pytest.approx(1 / 8, abs=1e-14)  # ½∫sin²sin² = ½·¼
    assert ConservationLoss().quantities(sin2)["mass"].item() == pytest.approx(1 / 4, abs=1e-14)
    x_only = torch.sin(TWO_PI * uniform_grid((n, n), dtype=torch.float64)[..., 0]) ** 2
    mass = ConservationLoss().quantities(x_only[None, None])["mass"]
    assert mass.item() == pytest.approx(1 / 2, abs=1e-14)  # ∫∫ sin²(2πx) dx dy on [0,1)²


def test_mass_of_constant_field():
    for shape, domain, volume in [((8,), 2.0, 2.0), ((4, 6), (2.0, 3.0), 6.0),
                                  ((2, 3, 4), (1.0, 2.0, 0.5), 1.0)]:
        u = torch.full((2, 3, *shape), 1.5, dtype=torch.float64)
        mass = ConservationLoss("mass", domain=domain).quantities(u)["mass"]
        assert mass.shape == (2, 3, 1)
        torch.testing.assert_close(mass, torch.full_like(mass, 1.5 * volume))


def test_momentum_is_the_cell_start_riemann_sum_of_x():
    n = 8
    u = torch.ones(1, 1, n, dtype=torch.float64)
    q = ConservationLoss("momentum").quantities(u)["momentum"]
    assert q.item() == pytest.approx(np.sum(np.arange(n) / n) / n, abs=1e-15)  # not ½
    assert q.item() != pytest.approx(0.5)

    lx, ly, nx, ny = 2.0, 3.0, 4, 6
    u2 = torch.ones(1, 1, nx, ny, dtype=torch.float64)
    q2 = ConservationLoss("momentum", domain=(lx, ly)).quantities(u2)["momentum"]
    hx, hy = lx / nx, ly / ny
    sum_x = sum(i * hx * hx * hy for i in range(nx) for _ in range(ny))
    sum_y = sum(j * hy * hx * hy for _ in range(nx) for j in range(ny))
    torch.testing.assert_close(q2[0, 0], torch.tensor([sum_x, sum_y], dtype=torch.float64))


def test_momentum_of_shifted_bump():
    n, shift = 64, 8
    x = np.arange(n) / n
    bump = np.exp(-(((x - 0.3) / 0.03) ** 2))
    u = torch.tensor(np.stack([bump, np.roll(bump, shift)]), dtype=torch.float64)[:, None]
    q = ConservationLoss("momentum").quantities(u)["momentum"][:, 0, 0]
    mass = bump.sum() / n
    assert q[0].item() == pytest.approx(np.sum(x * bump) / n, rel=1e-12)
    assert q[0].item() == pytest.approx(0.3 * mass, rel=1e-9)  # centre of mass at 0.3
    assert (q[1] - q[0]).item() == pytest.approx(shift / n * mass, rel=1e-9)


def test_conservation_loss_invariances():
    torch.manual_seed(2)
    u = torch.rand(2, 3, 16, 8, dtype=torch.float64)
    shifted = torch.roll(u, shifts=(5, 3), dims=(2, 3))
    loss_fn = ConservationLoss(["mass", "momentum", "energy"])
    assert loss_fn(u, u).item() == 0.0
    for name in ("mass", "energy"):
        assert ConservationLoss(name)(shifted, u).item() < 1e-28
    assert ConservationLoss("momentum")(shifted, u).item() > 1e-4
    loss_fn(shifted, u)
    assert loss_fn.last_components["mass"] < 1e-28
    assert loss_fn.last_components["momentum"] > 1e-4


def test_conservation_loss_formula_and_weights():
    torch.manual_seed(3)
    pred, ref = torch.rand(2, 2, 6, 5, dtype=torch.float64), torch.rand(2, 2, 6, 5)
    ref = ref.double()
    weights = {"mass": 1.0, "momentum": 0.5, "energy": 0.1}
    loss_fn = ConservationLoss(conservation_types=["mass", "momentum", "energy"], weights=weights)
    total = loss_fn(pred, ref)
    x = uniform_grid((6, 5), dtype=torch.float64)  # (6, 5, 2)

    def q(u):
        return {
            "mass": u.mean((2, 3)),
            "momentum": torch.einsum("bcij,ijk->bck", u, x) / 30,
            "energy": 0.5 * (u**2).mean((2, 3)),
        }

    qp, qr = q(pred), q(ref)
    expected = {k: ((qp[k] - qr[k]) ** 2).mean() for k in weights}
    for k in weights:
        torch.testing.assert_close(loss_fn.last_components[k], expected[k])
    torch.testing.assert_close(total, sum(weights[k] * expected[k] for k in weights))


def test_conservation_against_inputs_and_callable():
    torch.manual_seed(4)
    inputs, pred = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss_fn = PhysicsInformedLoss()
    loss_fn.set_conservation_laws(ConservationLoss("mass"), reference="inputs")
    assert any(isinstance(m, ConservationLoss) for m in loss_fn.modules())
    loss = loss_fn(pred, inputs=inputs)
    torch.testing.assert_close(loss, ((pred.mean((2, 3)) - inputs.mean((2, 3))) ** 2).mean())

    loss_fn.set_conservation_laws(lambda p, r: (p.sum() - r.sum()).abs())
    target = torch.rand(2, 1, 8, 8)
    loss_fn(pred, target)
    torch.testing.assert_close(
        loss_fn.last_components["loss_conservation"], (pred.sum() - target.sum()).abs()
    )


def test_low_precision_fields_accumulate_in_float32():
    u = torch.full((1, 1, 256, 256), 1.0 + 2**-7, dtype=torch.bfloat16)  # exact in bfloat16
    mass = ConservationLoss().quantities(u)["mass"]
    assert mass.dtype == torch.float32
    assert mass.item() == pytest.approx(1.0 + 2**-7, rel=1e-6)
    loss_fn = PhysicsInformedLoss()
    loss_fn.set_pde_residual(lambda v, coords: v)
    loss_fn(u)
    assert loss_fn.last_components["loss_pde"].dtype == torch.float32


# --------------------------------------------------------------------------- gradients


def _only(term: str) -> PhysicsInformedLoss:
    weights = {f"{t}_weight": float(t == term) for t in ("data", "pde", "boundary",
                                                          "conservation")}
    return PhysicsInformedLoss(**weights)


@pytest.mark.parametrize("term", ["data", "pde", "boundary", "mass", "momentum", "energy"])
def test_gradcheck(term):
    torch.manual_seed(5)
    pred = torch.rand(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 4, 5, dtype=torch.float64)
    if term in CONSERVATION_TYPES:
        loss_fn = _only("conservation")
        loss_fn.set_conservation_laws(ConservationLoss(term, domain=(1.0, 2.0)))
    else:
        loss_fn = _only(term)
        loss_fn.set_pde_residual(lambda u, coords: fd_laplacian_2d(u) - coords[1:-1, 1:-1, 0])
        loss_fn.set_boundary_conditions(lambda u, coords: u[..., 0, :] - 0.5)
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, target), (pred,))


# --------------------------------------------------------------------------- errors


def test_unknown_conservation_type_message():
    with pytest.raises(ValueError) as info:
        ConservationLoss(["mass", "charge"])
    assert str(info.value) == (
        "unknown conservation type 'charge'; choose one of: energy, mass, momentum"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"energy": 1.0}}, "'energy'.*not one of the conservation_types"),
        ({"weights": {"mass": -1.0}}, r"weights\['mass'\] must be a finite number >= 0"),
        ({"weights": {"mass": float("nan")}}, "finite"),
        ({"conservation_types": []}, "empty"),
        ({"conservation_types": ["mass", "mass"]}, "twice"),
    ],
)
def test_conservation_loss_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConservationLoss(**kwargs)


@pytest.mark.parametrize("bad", [-0.1, float("inf"), float("nan"), True, "1.0"])
def test_physics_loss_rejects_bad_weights(bad):
    with pytest.raises(ValueError, match="pde_weight must be a finite number >= 0, got"):
        PhysicsInformedLoss(pde_weight=bad)


def test_weight_changed_after_construction_is_checked():
    loss_fn = PhysicsInformedLoss()
    loss_fn.data_weight = -1.0
    with pytest.raises(ValueError, match="data_weight must be a finite number >= 0, got -1.0"):
        loss_fn(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))


def test_no_active_term():
    with pytest.raises(ValueError, match="no active term"):
        PhysicsInformedLoss()(torch.zeros(1, 1, 4))
    loss_fn = PhysicsInformedLoss(data_weight=0.0)
    with pytest.raises(ValueError, match="no active term"):
        loss_fn(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"pred \(2, 1, 8\) and target \(2, 1, 9\)"):
        PhysicsInformedLoss()(torch.zeros(2, 1, 8), torch.zeros(2, 1, 9))
    with pytest.raises(ValueError, match=r"pred \(2, 1, 8, 8\) and reference \(2, 2, 8, 8\)"):
        ConservationLoss()(torch.zeros(2, 1, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"1, 2 or 3 grid dims, got shape \(2, 8\)"):
        PhysicsInformedLoss()(torch.zeros(2, 8), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="2 lengths"):
        ConservationLoss(domain=(1.0, 2.0, 3.0))(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize(
    ("returned", "error", "match"),
    [
        (lambda u: 1.0, TypeError, "must return a real floating-point tensor, got float"),
        (lambda u: u.sum(), ValueError, r"pointwise tensor .* batch=2, got shape \(\)"),
        (lambda u: u[0], ValueError, r"batch=2, got shape \(1, 8\)"),
        (lambda u: u[..., :0], ValueError, "non-empty"),
        (lambda u: (u > 0).int(), TypeError, "dtype torch.int32"),
    ],
)
def test_bad_residual_outputs(returned, error, match):
    loss_fn = PhysicsInformedLoss()
    loss_fn.set_pde_residual(lambda u, coords: returned(u))
    with pytest.raises(error, match=match):
        loss_fn(torch.rand(2, 1, 8))


def test_other_argument_errors():
    with pytest.raises(ValueError, match="unknown data_loss 'huber'; choose one of: l1, mse"):
        PhysicsInformedLoss(data_loss="huber")
    loss_fn = PhysicsInformedLoss(data_loss=lambda p, t: (p - t) ** 2)
    with pytest.raises(ValueError, match=r"data_loss must return a 0-dim .* shape \(1, 1, 4\)"):
        loss_fn(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))
    loss_fn = PhysicsInformedLoss()
    with pytest.raises(ValueError, match="reference must be 'target' or 'inputs', got 'x'"):
        loss_fn.set_conservation_laws(ConservationLoss(), reference="x")
    loss_fn.set_conservation_laws(ConservationLoss())
    with pytest.raises(ValueError, match="compares pred with target, but target is None"):
        loss_fn(torch.zeros(1, 1, 4))
    with pytest.raises(TypeError, match="callable"):
        loss_fn.set_pde_residual(3)


# --------------------------------------------------------------------------- spec examples


def test_spec_examples_run():
    def laplace_residual(u, coords):
        return fd_laplacian_2d(u)

    loss_fn = PhysicsInformedLoss(data_weight=1.0, pde_weight=0.1, boundary_weight=0.05)
    loss_fn.set_pde_residual(laplace_residual)
    pred = torch.rand(4, 1, 16, 16, requires_grad=True)
    target = torch.rand(4, 1, 16, 16)
    loss = loss_fn(pred, target)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert set(loss_fn.last_components) == {"loss_data", "loss_pde"}

    conservation = ConservationLoss(
        conservation_types=["mass", "momentum", "energy"],
        weights={"mass": 1.0, "momentum": 0.5, "energy": 0.1},
    )
    value = conservation(pred, target)
    assert value.ndim == 0 and value.item() > 0
    assert set(conservation.last_components) == {"mass", "momentum", "energy"}


def test_relative_l2_loss_and_named_losses():
    from nol_fast.training.config import TrainingConfig
    from nol_fast.training.losses import RelativeL2Loss, loss_from_name

    generator = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 2, 5, generator=generator), torch.randn(3, 2, 5,
                                                                          generator=generator)
    # Oracle: the per-sample norms, written out.
    expected = torch.stack([(pred[i] - target[i]).norm() / target[i].norm() for i in range(3)])
    torch.testing.assert_close(RelativeL2Loss()(pred, target), expected.mean())
    assert isinstance(loss_from_name("rel_l2"), RelativeL2Loss)
    assert isinstance(loss_from_name("mse"), torch.nn.MSELoss)
    with pytest.raises(ValueError, match="unknown loss 'l3'; choose one of: mse, rel_l2"):
        loss_from_name("l3")
    with pytest.raises(ValueError, match="loss must be one of: mse, rel_l2"):
        TrainingConfig(loss="l3")
