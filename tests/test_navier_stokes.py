"""Tests of nol_fast.data.navier_stokes against exact solutions of the vorticity equation.

* The Taylor-Green vortex ``w = 2k sin(kx) sin(ky)`` (``k = 2 pi m``) has ``psi = w / (2k^2)``,
  so ``u . grad(w) = 0``: without forcing it decays as ``exp(-2 nu k^2 t)``.
* Any function of ``x + y`` is a shear flow along ``(1, -1)`` with no advection either; from
  ``w = 0`` the Kolmogorov forcing ``f`` builds up ``w = f (1 - exp(-8 pi^2 nu t)) /
  (8 pi^2 nu)``.
* For ``psi = A sin(2 pi x) + B cos(4 pi y)`` the advection term is nonzero and known in closed
  form, ``u . grad(w) = 96 pi^4 A B cos(2 pi x) sin(4 pi y)``, which pins down one step of the
  scheme, signs included.
"""

from __future__ import annotations

import math

import pytest
import torch

from nol_fast.data.grf import sample_grf
from nol_fast.data.navier_stokes import (
    generate_navier_stokes,
    kolmogorov_forcing,
    solve_navier_stokes,
)


def mesh(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[i, j] = i / n`` and ``y[i, j] = j / n``, the solver's layout."""
    x = torch.arange(n, dtype=torch.float64) / n
    return x[:, None].expand(n, n), x[None, :].expand(n, n)


def taylor_green(n: int, m: int) -> torch.Tensor:
    x, y = mesh(n)
    k = 2 * math.pi * m
    return 2 * k * torch.sin(k * x) * torch.sin(k * y)


def crank_nicolson_factor(nu: float, lam: float, dt: float) -> float:
    """One step of the scheme on a mode of ``-Laplacian`` eigenvalue ``lam`` without advection."""
    return (1 - 0.5 * dt * nu * lam) / (1 + 0.5 * dt * nu * lam)


def relative_max_error(w: torch.Tensor, exact: torch.Tensor) -> float:
    return float((w - exact).abs().max() / exact.abs().max())


def grf(count: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = sample_grf(count, n, n_dims=2, alpha=2.5, tau=7.0, sigma=7**1.5, generator=g,
                   dtype=torch.float64)
    return w - w.mean(dim=(-2, -1), keepdim=True)


# ------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize(("m", "nu"), [(1, 1e-2), (2, 1e-3)])
def test_taylor_green_vortex_decays_as_the_closed_form(m, nu):
    n, time, dt, n_records = 32, 0.5, 1e-3, 5
    w0 = taylor_green(n, m)
    w = solve_navier_stokes(w0.unsqueeze(0), nu, time, dt=dt, n_records=n_records)[0]
    assert w.shape == (n_records, n, n)
    lam = 2 * (2 * math.pi * m) ** 2
    for j in range(n_records):
        t = time * (j + 1) / n_records
        steps = round(t / dt)
        # The closed form, to the Crank-Nicolson error (about t (nu lam)^3 dt^2 / 12) ...
        assert relative_max_error(w[j], math.exp(-nu * lam * t) * w0) < 5e-8
        # ... and the discrete scheme exactly: the advection term contributes nothing.
        discrete = crank_nicolson_factor(nu, lam, dt) ** steps * w0
        assert relative_max_error(w[j], discrete) < 1e-12


def test_kolmogorov_forcing_builds_up_the_laminar_shear_flow():
    n, nu, time, dt = 32, 1e-2, 2.0, 1e-3
    forcing = kolmogorov_forcing(n, dtype=torch.float64)
    w = solve_navier_stokes(torch.zeros(1, n, n, dtype=torch.float64), nu, time,
                            forcing=forcing, dt=dt, n_records=4)[0]
    lam = 8 * math.pi**2
    for j in range(4):
        t = time * (j + 1) / 4
        exact = forcing * (1 - math.exp(-nu * lam * t)) / (nu * lam)
        assert relative_max_error(w[j], exact) < 1e-7


def test_kolmogorov_forcing_is_the_fno_forcing():
    n = 8
    x, y = mesh(n)
    expected = 0.1 * (torch.sin(2 * math.pi * (x + y)) + torch.cos(2 * math.pi * (x + y)))
    forcing = kolmogorov_forcing(n, dtype=torch.float64)
    torch.testing.assert_close(forcing, expected, rtol=0, atol=1e-15)
    assert kolmogorov_forcing(n).dtype == torch.float32
    assert abs(float(forcing.sum())) < 1e-14


def test_one_step_advection_matches_the_closed_form():
    n, nu, dt, a, b = 16, 1e-2, 1e-3, 0.7, -0.4
    x, y = mesh(n)
    pi = math.pi
    w0 = a * 4 * pi**2 * torch.sin(2 * pi * x) + b * 16 * pi**2 * torch.cos(4 * pi * y)
    advection = 96 * pi**4 * a * b * torch.cos(2 * pi * x) * torch.sin(4 * pi * y)
    w1 = solve_navier_stokes(w0.unsqueeze(0), nu, dt, dt=dt)[0, 0]
    # Each mode: w_k' = ((1 - dt nu lam / 2) w_k - dt (u . grad w)_k) / (1 + dt nu lam / 2).
    expected = (
        crank_nicolson_factor(nu, 4 * pi**2, dt) * a * 4 * pi**2 * torch.sin(2 * pi * x)
        + crank_nicolson_factor(nu, 16 * pi**2, dt) * b * 16 * pi**2 * torch.cos(4 * pi * y)
        - dt / (1 + 0.5 * dt * nu * 20 * pi**2) * advection
    )
    assert float((w1 - expected).abs().max()) < 1e-12 * float(w0.abs().max())
    # The advection term is well above that tolerance: the test sees its sign and size.
    assert float((dt * advection).abs().max()) > 1e-3 * float(w0.abs().max())


# ------------------------------------------------------------------- invariants


@pytest.mark.parametrize("forced", [False, True], ids=["unforced", "forced"])
def test_mean_vorticity_is_conserved(forced):
    n = 32
    w0 = grf(3, n) + 0.25
    forcing = kolmogorov_forcing(n, dtype=torch.float64) if forced else None
    w = solve_navier_stokes(w0, 1e-3, 0.5, forcing=forcing, dt=1e-3, n_records=5)
    assert float((w.mean(dim=(-2, -1)) - 0.25).abs().max()) < 1e-13


def energy(w: torch.Tensor) -> torch.Tensor:
    """Kinetic energy ``(1/2) mean |u|^2 = (1/2) sum_k |w_k|^2 / lam_k`` of mean-free ``w``."""
    n = w.shape[-1]
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    lam = 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    lam[0, 0] = math.inf
    w_hat = torch.fft.fft2(w, norm="forward")
    return 0.5 * (w_hat.abs() ** 2 / lam).sum(dim=(-2, -1))


def test_energy_and_enstrophy_stay_bounded_at_small_viscosity():
    # The dealiased advection conserves energy and enstrophy; viscosity and the explicit step
    # change them only slightly at nu = 1e-5.
    n = 32
    w0 = grf(2, n)
    w = solve_navier_stokes(w0, 1e-5, 2.0, dt=1e-3, n_records=4)
    assert bool(w.isfinite().all())
    e = energy(w) / energy(w0)[:, None]
    z = (w**2).mean(dim=(-2, -1)) / (w0**2).mean(dim=(-2, -1))[:, None]
    assert float(e.max()) < 1 + 1e-3 and float(e.min()) > 0.98
    assert float(z.max()) < 1 + 1e-3 and float(z.min()) > 0.98


# ------------------------------------------------------------------- records, contracts


def test_records_fall_on_their_times():
    n, nu, dt = 16, 1e-3, 1e-2
    w0 = grf(2, n)
    forcing = kolmogorov_forcing(n, dtype=torch.float64)
    w = solve_navier_stokes(w0, nu, 0.4, forcing=forcing, dt=dt, n_records=4)
    assert w.shape == (2, 4, n, n)
    for j in range(4):
        alone = solve_navier_stokes(w0, nu, 0.1 * (j + 1), forcing=forcing, dt=dt)
        torch.testing.assert_close(w[:, j], alone[:, 0], rtol=0, atol=1e-13)
    # A step that does not divide the record interval is shortened to one that does:
    # ceil(0.1 / 0.015) = 7 steps of 0.1 / 7.
    w_uneven = solve_navier_stokes(w0, nu, 0.4, forcing=forcing, dt=0.015, n_records=4)
    w_even = solve_navier_stokes(w0, nu, 0.4, forcing=forcing, dt=0.1 / 7, n_records=4)
    torch.testing.assert_close(w_uneven, w_even, rtol=0, atol=0)
    assert float((w_uneven - w).abs().max()) > 1e-6


def test_batch_members_are_independent():
    n = 16
    w0 = grf(3, n)
    together = solve_navier_stokes(w0, 1e-3, 0.1, dt=1e-2, n_records=2)
    alone = solve_navier_stokes(w0[1:2], 1e-3, 0.1, dt=1e-2, n_records=2)
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-13)


def test_dtype_follows_input_and_per_sample_forcing():
    n = 16
    w0 = grf(2, n)
    forcing = kolmogorov_forcing(n, dtype=torch.float64)
    w64 = solve_navier_stokes(w0, 1e-3, 0.1, forcing=forcing, dt=1e-2)
    w32 = solve_navier_stokes(w0.float(), 1e-3, 0.1, forcing=forcing.float(), dt=1e-2)
    assert w64.dtype == torch.float64 and w32.dtype == torch.float32
    torch.testing.assert_close(w32.double(), w64, rtol=0, atol=1e-6)
    per_sample = torch.stack([forcing, torch.zeros_like(forcing)])
    w = solve_navier_stokes(w0, 1e-3, 0.1, forcing=per_sample, dt=1e-2)
    torch.testing.assert_close(w[0], w64[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(w[1], solve_navier_stokes(w0[1:], 1e-3, 0.1, dt=1e-2)[0],
                               rtol=0, atol=1e-13)


def test_zero_time_returns_the_initial_condition():
    w0 = grf(2, 8)
    w = solve_navier_stokes(w0, 1e-3, 0.0, n_records=2)
    assert w.shape == (2, 2, 8, 8)
    torch.testing.assert_close(w[:, 1], w0, rtol=0, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_device_of_the_input():
    w0 = grf(2, 16)
    forcing = kolmogorov_forcing(16, device="cuda")
    w = solve_navier_stokes(w0.float().cuda(), 1e-3, 0.1, forcing=forcing, dt=1e-2)
    assert w.device.type == "cuda" and w.dtype == torch.float32
    expected = solve_navier_stokes(w0, 1e-3, 0.1, forcing=forcing.cpu().double(), dt=1e-2)
    torch.testing.assert_close(w.cpu().double(), expected, rtol=0, atol=1e-6)
    data = generate_navier_stokes(2, resolution=16, time=0.1, n_records=1, dt=1e-2,
                                  device="cuda", progress=False)
    assert data.device.type == "cuda"


# ------------------------------------------------------------------- the data set


def test_generate_shapes_initial_state_and_consistency_with_the_solver():
    w = generate_navier_stokes(3, resolution=16, time=0.2, n_records=2, dt=1e-2,
                               batch_size=2, progress=False)
    assert w.shape == (3, 3, 16, 16) and w.dtype == torch.float32
    w0 = w[:, 0].double()
    assert float(w0.mean(dim=(-2, -1)).abs().max()) < 1e-7  # mean-free, as in the paper
    expected = solve_navier_stokes(w0, 1e-3, 0.2, forcing=kolmogorov_forcing(16), dt=1e-2,
                                   n_records=2)
    torch.testing.assert_close(w[:, 1:].double(), expected, rtol=0, atol=1e-6)
    w64 = generate_navier_stokes(3, resolution=16, time=0.2, n_records=2, dt=1e-2,
                                 batch_size=2, dtype=torch.float64, progress=False)
    assert w64.dtype == torch.float64
    torch.testing.assert_close(w64.float(), w)


def test_generate_initial_conditions_have_the_fno_spectrum():
    # sample_grf(alpha=2.5, tau=7, sigma=7^1.5): E|w_k|^2 = 7^3 (4 pi^2 |k|^2 + 49)^(-2.5).
    w = generate_navier_stokes(400, resolution=8, time=0.01, n_records=1, dt=1e-2,
                               dtype=torch.float64, progress=False)
    coeffs = torch.fft.fft2(w[:, 0], norm="forward")
    for kx, ky in [(1, 0), (1, 1), (0, 2)]:
        expected = 7**3 * (4 * math.pi**2 * (kx**2 + ky**2) + 49) ** (-2.5)
        ratio = float((coeffs[:, kx, ky].abs() ** 2).mean() / expected)
        assert abs(ratio - 1) < 0.25  # |c|^2 / lambda ~ Exp(1): std 1/sqrt(400)


def test_same_seed_same_data_and_other_seed_other_data():
    kwargs = {"resolution": 16, "time": 0.1, "n_records": 1, "dt": 1e-2, "progress": False}
    a = generate_navier_stokes(2, seed=3, **kwargs)
    b = generate_navier_stokes(2, seed=3, **kwargs)
    c = generate_navier_stokes(2, seed=4, **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 0], c[:, 0])


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    kwargs = {"resolution": 8, "time": 0.05, "n_records": 1, "dt": 1e-2}
    generate_navier_stokes(2, progress=True, **kwargs)
    assert "navier-stokes" in capsys.readouterr().err
    generate_navier_stokes(2, progress=False, **kwargs)
    generate_navier_stokes(2, **kwargs)  # stderr is captured: not a terminal
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"w0": torch.zeros(8, 8)}, "shape"),
        ({"w0": torch.zeros(2, 8, 16)}, "shape"),
        ({"w0": torch.zeros(2, 8, 8, dtype=torch.complex64)}, "real"),
        ({"w0": torch.zeros(2, 2, 2)}, "at least 4"),
        ({"viscosity": 0.0}, "viscosity"),
        ({"time": -0.1}, "time"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -1e-3}, "dt"),
        ({"n_records": 0}, "n_records"),
        ({"n_records": None}, "n_records"),
        ({"forcing": torch.zeros(4, 4)}, "forcing"),
        ({"forcing": torch.zeros(3, 8, 8)}, "forcing"),
        ({"forcing": torch.zeros(8, 8, dtype=torch.int64)}, "forcing"),
    ],
)
def test_solve_rejects_bad_arguments(kwargs, message):
    arguments = {"w0": torch.zeros(2, 8, 8), "viscosity": 1e-3, "time": 0.1} | kwargs
    w0, viscosity, time = arguments.pop("w0"), arguments.pop("viscosity"), arguments.pop("time")
    with pytest.raises(ValueError, match=message):
        solve_navier_stokes(w0, viscosity, time, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"resolution": 3}, "resolution"),
        ({"resolution": 16.0}, "resolution"),
        ({"viscosity": -1e-3}, "viscosity"),
        ({"time": 0.0}, "time"),
        ({"n_records": 0}, "n_records"),
        ({"dt": 0.0}, "dt"),
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": torch.complex64}, "dtype"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, message):
    arguments = {"n_samples": 2, "resolution": 8, "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_navier_stokes(**arguments)
