"""The PDE residuals of nol_fast.physics.residuals on exact solutions.

Oracles: heat and wave modes, the Cole–Hopf solution of viscous Burgers, the Taylor–Green
vortex and a steady manufactured flow (whose advection is written out by hand) for
Navier–Stokes, and a manufactured Darcy solution. Space is exact (spectral on band-limited or
analytic fields) or converges at its order (Darcy); the time derivative is a finite difference
over the records, so a residual vanishes as dt**accuracy: the tests check the size and the
rate.
"""

from __future__ import annotations

import math

import pytest
import torch

from nol_fast.physics.grid import Grid, uniform_grid
from nol_fast.physics.residuals import (
    RESIDUALS,
    burgers_residual,
    darcy_residual,
    heat_residual,
    navier_stokes_residual,
    time_derivative,
    velocity_from_vorticity,
    wave_residual,
)

TWO_PI = 2 * math.pi


END = 0.3  # time of the last record: the records at every dt end at the same time


def _records(field, n, dt):
    """(1, n, *grid): field(t) at the n times END - (n - 1) dt, ..., END."""
    return torch.stack([field(END - (n - 1 - i) * dt) for i in range(n)])[None]


def _converges(residual_at, accuracy, dt=0.01):
    """max |r| at dt and dt / 2; assert it falls about 2**accuracy and return the finer."""
    coarse, fine = residual_at(dt), residual_at(dt / 2)
    assert 0.7 * 2**accuracy < coarse / fine < 1.5 * 2**accuracy, (coarse, fine)
    return fine


# --------------------------------------------------------------------------- time derivative


@pytest.mark.parametrize(("order", "accuracy"), [(1, 2), (1, 4), (2, 2), (2, 4)])
def test_time_derivative_is_exact_on_polynomials_and_uses_the_inputs(order, accuracy):
    dt, degree = 0.5, accuracy + order - 1
    t = torch.arange(9, dtype=torch.float64) * dt
    records = (t**degree)[None, :, None].expand(2, 9, 3)
    exact = math.perm(degree, order) * t ** (degree - order)
    # prediction = the last 3 records, inputs = the 6 before
    got = time_derivative(records[:, 6:], records[:, :6], dt, order, accuracy)
    torch.testing.assert_close(got[0, :, 0], exact[6:])
    alone = time_derivative(records, None, dt, order, accuracy)
    torch.testing.assert_close(alone[1, :, 2], exact)


def test_time_derivative_needs_enough_records():
    with pytest.raises(ValueError, match=r"needs at least 5 records .* got 4"):
        time_derivative(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), 0.1, 1, 4)
    with pytest.raises(ValueError, match=r"inputs must hold records of u's batch and grid"):
        time_derivative(torch.zeros(1, 2, 4), torch.zeros(1, 2, 5), 0.1)


# --------------------------------------------------------------------------- heat and wave


@pytest.mark.parametrize("accuracy", [2, 4])
def test_heat_residual_vanishes_on_heat_modes(accuracy):
    # u = sin(2 pi x) cos(4 pi y) exp(-20 pi^2 kappa t) on [0, 1) x [0, 2)... scaled per dim
    kappa, shape, lengths = 0.05, (16, 12), (1.0, 2.0)
    x, y = uniform_grid(shape, lengths, dtype=torch.float64).unbind(-1)
    mode = torch.sin(TWO_PI * x) * torch.cos(TWO_PI * 2 * y / 2.0)
    decay = kappa * (TWO_PI**2 + (TWO_PI * 2 / 2.0) ** 2)

    def residual_at(dt):
        u = _records(lambda t: mode * math.exp(-decay * t), 8, dt)
        r = heat_residual(u[:, 5:], u[:, :5], Grid(lengths, dt=dt), diffusivity=kappa,
                          accuracy=accuracy)
        assert r.shape == u[:, 5:].shape
        return r.abs().max().item() / decay  # relative to |u_t| <= decay

    assert _converges(residual_at, accuracy) < (1e-3 if accuracy == 2 else 1e-6)


def test_heat_residual_steady_3d_with_forcing():
    # -kappa Δu = f for u = cos(2 pi x) sin(2 pi z) on the unit cube: exact to rounding.
    x, _, z = uniform_grid((8, 6, 10), dtype=torch.float64).unbind(-1)
    u = (torch.cos(TWO_PI * x) * torch.sin(TWO_PI * z))[None, None]
    r = heat_residual(u, grid=Grid(), diffusivity=0.5, forcing=0.5 * 8 * math.pi**2 * u)
    assert r.abs().max() < 1e-12


@pytest.mark.parametrize("accuracy", [2, 4])
def test_wave_residual_vanishes_on_standing_waves(accuracy):
    speed, n = 0.7, 16
    x = uniform_grid((n,), dtype=torch.float64)[..., 0]
    omega = speed * TWO_PI * 3

    def residual_at(dt):
        u = _records(lambda t: torch.sin(TWO_PI * 3 * x) * math.cos(omega * t), 9, dt)
        r = wave_residual(u[:, 4:], u[:, :4], Grid(dt=dt), speed=speed, accuracy=accuracy)
        return r.abs().max().item() / omega**2  # relative to |u_tt| <= omega^2

    # omega dt = 0.13 at the finer step: the one-sided rows of u_tt dominate
    assert _converges(residual_at, accuracy) < (2e-2 if accuracy == 2 else 3e-4)


# --------------------------------------------------------------------------- Burgers


def _cole_hopf(x, t, nu):
    """u = -2 nu phi_x / phi with phi = 2 + exp(-4 pi^2 nu t) cos(2 pi x), a heat solution."""
    e = math.exp(-(TWO_PI**2) * nu * t)
    return 2 * nu * TWO_PI * e * torch.sin(TWO_PI * x) / (2 + e * torch.cos(TWO_PI * x))


@pytest.mark.parametrize("accuracy", [2, 4])
def test_burgers_residual_vanishes_on_the_cole_hopf_solution(accuracy):
    nu, n = 0.1, 128
    x = uniform_grid((n,), dtype=torch.float64)[..., 0]

    def residual_at(dt):
        # the layout of generate_burgers: inputs = u(., 0), prediction = T records after it
        u = _records(lambda t: _cole_hopf(x, t, nu), 7, dt)
        r = burgers_residual(u[:, 1:], u[:, :1], Grid(dt=dt), viscosity=nu, accuracy=accuracy)
        return r.abs().max().item()  # |u_t| is about 1 here

    assert _converges(residual_at, accuracy) < (2e-4 if accuracy == 2 else 3e-7)


def test_burgers_flux_is_conservative():
    # The spatial residual of any periodic field integrates to zero: no mass is created.
    torch.manual_seed(0)
    u = torch.randn(3, 2, 32, dtype=torch.float64)
    r = burgers_residual(u, grid=Grid(domain=2.0), viscosity=0.05)
    assert r.mean(-1).abs().max() < 1e-13


# --------------------------------------------------------------------------- Navier-Stokes


@pytest.mark.parametrize("accuracy", [2, 4])
def test_navier_stokes_residual_vanishes_on_the_taylor_green_vortex(accuracy):
    # w = 2k cos(kx) cos(ky) exp(-2 nu k^2 t), k = 2 pi on the unit torus; forcing 0.
    nu, n = 0.01, 16
    x, y = uniform_grid((n, n), dtype=torch.float64).unbind(-1)
    k = TWO_PI
    decay = 2 * nu * k**2

    def residual_at(dt):
        w = _records(lambda t: 2 * k * torch.cos(k * x) * torch.cos(k * y) * math.exp(-decay * t),
                     6, dt)
        r = navier_stokes_residual(w[:, 3:], w[:, :3], Grid(dt=dt), viscosity=nu,
                                   accuracy=accuracy)
        return r.abs().max().item() / (2 * k * decay)

    assert _converges(residual_at, accuracy) < (1e-3 if accuracy == 2 else 1e-6)


def test_navier_stokes_advection_of_a_steady_manufactured_flow():
    # w = A sin(x) + B cos(2y) on [0, 2 pi)^2: psi = A sin x + (B/4) cos 2y, velocity
    # (psi_y, -psi_x) = (-(B/2) sin 2y, -A cos x), and v.grad w = (3/2) A B cos x sin 2y.
    # With f = v.grad w - nu Δw the steady residual vanishes to rounding.
    a, b, nu = 1.3, -0.7, 0.02
    x, y = uniform_grid((24, 20), TWO_PI, dtype=torch.float64).unbind(-1)
    w = (a * torch.sin(x) + b * torch.cos(2 * y))[None, None]
    velocity = velocity_from_vorticity(w, TWO_PI)
    torch.testing.assert_close(velocity[0, 0, 0], -(b / 2) * torch.sin(2 * y))
    torch.testing.assert_close(velocity[0, 0, 1], -a * torch.cos(x))
    advection = 1.5 * a * b * torch.cos(x) * torch.sin(2 * y)
    laplacian = -a * torch.sin(x) - 4 * b * torch.cos(2 * y)
    forcing = advection - nu * laplacian
    r = navier_stokes_residual(w, grid=Grid(TWO_PI), viscosity=nu, forcing=forcing)
    assert r.abs().max() < 1e-12
    # without the forcing the residual is exactly the advection minus the diffusion
    r0 = navier_stokes_residual(w, grid=Grid(TWO_PI), viscosity=nu)
    torch.testing.assert_close(r0[0, 0], forcing)


def test_navier_stokes_residual_on_the_dataset_solver():
    # The dataset's solver (pseudo-spectral, Crank-Nicolson) with a small step: the residual
    # of its records with the FNO forcing is small next to the size of w_t.
    from nol_fast.data.navier_stokes import kolmogorov_forcing, solve_navier_stokes

    torch.manual_seed(0)
    n, nu, dt = 32, 1e-3, 0.01
    x, y = uniform_grid((n, n), dtype=torch.float64).unbind(-1)
    w0 = (torch.sin(TWO_PI * x) * torch.cos(TWO_PI * 2 * y) + 0.5 * torch.cos(TWO_PI * x))[None]
    forcing = kolmogorov_forcing(n, dtype=torch.float64)
    w = solve_navier_stokes(w0, nu, 5 * dt, forcing=forcing, dt=1e-3, n_records=5)
    records = torch.cat([w0[:, None], w], 1)
    r = navier_stokes_residual(records[:, 3:], records[:, :3], Grid(dt=dt), viscosity=nu,
                               forcing=forcing, accuracy=4)
    w_t = time_derivative(records[:, 3:], records[:, :3], dt, 1, 4)
    assert r.abs().max() < 2e-2 * w_t.abs().max()


# --------------------------------------------------------------------------- Darcy


def _darcy_manufactured(n, periodic):
    """u, a, f with -div(a grad u) = f on the unit square (both ends) or the unit torus."""
    if periodic:
        x, y = uniform_grid((n, n), dtype=torch.float64).unbind(-1)
        s = TWO_PI
        u = torch.sin(s * x) * torch.cos(s * y)
        a = 2 + torch.sin(s * x) * torch.sin(s * y)
        ux, uy = s * torch.cos(s * x) * torch.cos(s * y), -s * torch.sin(s * x) * torch.sin(s * y)
        ax, ay = s * torch.cos(s * x) * torch.sin(s * y), s * torch.sin(s * x) * torch.cos(s * y)
        lap = -2 * s**2 * u
    else:
        x, y = uniform_grid((n, n), endpoint=True, dtype=torch.float64).unbind(-1)
        u = torch.sin(math.pi * x) * torch.sin(math.pi * y)  # zero on the boundary
        a = 1 + x * y**2
        ux = math.pi * torch.cos(math.pi * x) * torch.sin(math.pi * y)
        uy = math.pi * torch.sin(math.pi * x) * torch.cos(math.pi * y)
        ax, ay = y**2, 2 * x * y
        lap = -2 * math.pi**2 * u
    f = -(a * lap + ax * ux + ay * uy)
    return u[None, None], a[None, None], f


@pytest.mark.parametrize("accuracy", [2, 4])
def test_darcy_residual_converges_on_a_manufactured_solution(accuracy):
    # Periodic: the full order everywhere. Bounded: the full order at least 2R points from
    # the boundary; next to it the one-sided inner derivatives feed the outer central
    # stencil, which loses one order there (documented in docs/physics.md).
    radius = accuracy // 2
    for periodic in (True, False):
        errors, inner = [], []
        for n in (32, 64):
            u, a, f = _darcy_manufactured(n + (not periodic), periodic)
            grid = Grid(periodic=periodic)
            r = darcy_residual(u, a, grid, forcing=f, accuracy=accuracy)[0, 0].abs()
            errors.append(r.max().item())
            inner.append(r[2 * radius:-2 * radius, 2 * radius:-2 * radius].max().item())
        order = 2**accuracy
        if periodic:
            assert 0.7 * order < errors[0] / errors[1] < 1.5 * order, errors
        else:
            assert 0.7 * order < inner[0] / inner[1] < 1.5 * order, inner
            assert errors[0] / errors[1] > 0.7 * order / 2, errors


def test_darcy_residual_reads_the_coefficient_channel_and_broadcasts():
    u, a, f = _darcy_manufactured(17, periodic=False)
    inputs = torch.cat([torch.zeros_like(a), a], 1)  # the coefficient in channel 1
    r1 = darcy_residual(u.expand(1, 3, 17, 17), inputs, forcing=f, coefficient_channel=1)
    r2 = darcy_residual(u, a, forcing=f)
    torch.testing.assert_close(r1, r2.expand(1, 3, 17, 17))
    with pytest.raises(ValueError, match=r"coefficient_channel 2 is out of range"):
        darcy_residual(u, inputs, coefficient_channel=2)
    with pytest.raises(ValueError, match=r"inputs of shape \(1, n_inputs, 17, 17\)"):
        darcy_residual(u, a[..., :-1])


# --------------------------------------------------------------------------- layouts


def test_residual_layout_errors():
    with pytest.raises(ValueError, match=r"spectrally and needs a periodic grid"):
        heat_residual(torch.zeros(1, 1, 8), grid=Grid(periodic=False), diffusivity=1.0)
    with pytest.raises(ValueError, match=r"2-D vorticity \(batch, T, nx, ny\)"):
        navier_stokes_residual(torch.zeros(1, 1, 8), viscosity=1e-3)
    with pytest.raises(ValueError, match=r"1-D field \(batch, T, nx\)"):
        burgers_residual(torch.zeros(1, 1, 8, 8), viscosity=1e-3)
    assert sorted(RESIDUALS) == ["burgers", "darcy", "heat", "navier_stokes", "wave"]


@pytest.mark.parametrize("name", ["burgers", "heat", "navier_stokes", "wave", "darcy"])
def test_gradients_flow_through_every_residual(name):
    torch.manual_seed(1)
    params = {"burgers": {"viscosity": 0.1}, "heat": {"diffusivity": 0.2},
              "navier_stokes": {"viscosity": 0.05, "forcing": 0.3}, "wave": {"speed": 0.5},
              "darcy": {"forcing": 1.0}}[name]
    grid = (6,) if name == "burgers" else (5, 4)
    u = torch.randn(1, 2, *grid, dtype=torch.float64, requires_grad=True)
    if name == "darcy":
        inputs = (torch.rand(1, 1, *grid, dtype=torch.float64) + 1).requires_grad_()
        g = Grid(domain=(1.0, 2.0), periodic=False)
    else:  # two earlier records: the wave equation's u_tt needs four in all
        inputs = torch.randn(1, 2, *grid, dtype=torch.float64, requires_grad=True)
        g = Grid(dt=0.1)
    assert torch.autograd.gradcheck(
        lambda u, inputs: RESIDUALS[name](u, inputs, g, **params).square().mean(), (u, inputs),
        fast_mode=True)
