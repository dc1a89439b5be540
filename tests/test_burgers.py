"""Tests of nol_fast.data.burgers against exact (Cole-Hopf) solutions of Burgers' equation.

If ``phi > 0`` solves the heat equation ``phi_t = nu phi_xx``, then ``u = -2 nu phi_x / phi``
solves ``u_t + u u_x = nu u_xx``. With ``phi`` a positive trigonometric polynomial whose modes
decay as ``exp(-nu (2 pi k)^2 t)`` this gives periodic solutions in closed form, analytic in a
strip, so the spatial error of the spectral solver is negligible and what is measured is the
time stepping.
"""

from __future__ import annotations

import math

import pytest
import torch

from nol_fast.data.burgers import generate_burgers, solve_burgers
from nol_fast.data.grf import sample_grf


def cole_hopf(x: torch.Tensor, t: float, nu: float, modes: list[tuple[int, float, float]],
              a0: float = 1.0) -> torch.Tensor:
    """``-2 nu phi_x / phi`` for ``phi = a0 + sum_m a_m exp(-nu (2 pi m)^2 t) cos(2 pi m x + c_m)``.

    ``modes`` lists ``(m, a_m, c_m)``; ``a0 > sum |a_m|`` keeps ``phi`` positive.
    """
    phi = torch.full_like(x, a0)
    phi_x = torch.zeros_like(x)
    for m, a, c in modes:
        q = 2 * math.pi * m
        amplitude = a * math.exp(-nu * q**2 * t)
        phi = phi + amplitude * torch.cos(q * x + c)
        phi_x = phi_x - amplitude * q * torch.sin(q * x + c)
    return -2 * nu * phi_x / phi


def grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


def relative_max_error(u: torch.Tensor, exact: torch.Tensor) -> float:
    return float((u - exact).abs().max() / exact.abs().max())


ONE_MODE = [(1, 0.5, 0.0)]
TWO_MODES = [(1, 0.4, 0.0), (2, 0.3, 0.7)]


# ------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize("modes", [ONE_MODE, TWO_MODES], ids=["one-mode", "two-modes"])
def test_matches_cole_hopf_solution_at_final_time(modes):
    n, nu, time = 128, 0.05, 0.5
    x = grid(n)
    u0 = cole_hopf(x, 0.0, nu, modes).unsqueeze(0)
    exact = cole_hopf(x, time, nu, modes)
    # The default step (Courant number 0.5) is accurate to a few 1e-9 ...
    assert relative_max_error(solve_burgers(u0, nu, time)[0], exact) < 1e-8
    # ... and a small step reaches rounding level.
    assert relative_max_error(solve_burgers(u0, nu, time, dt=1e-3)[0], exact) < 1e-11


def test_records_match_cole_hopf_solution_at_their_times():
    n, nu, time, n_records = 128, 0.05, 0.5, 5
    x = grid(n)
    u0 = torch.stack([cole_hopf(x, 0.0, nu, ONE_MODE), cole_hopf(x, 0.0, nu, TWO_MODES)])
    u = solve_burgers(u0, nu, time, n_records=n_records)
    assert u.shape == (2, n_records, n)
    for j in range(n_records):
        t = time * (j + 1) / n_records
        # A record off by one step (about 0.01) would be wrong by about 1e-2.
        assert relative_max_error(u[0, j], cole_hopf(x, t, nu, ONE_MODE)) < 1e-7
        assert relative_max_error(u[1, j], cole_hopf(x, t, nu, TWO_MODES)) < 1e-7
    # The last record is the solution at T (the same steps when dt divides T / n_records).
    final = solve_burgers(u0, nu, time, dt=0.01)
    u = solve_burgers(u0, nu, time, dt=0.01, n_records=n_records)
    torch.testing.assert_close(u[:, -1], final, rtol=0, atol=1e-12)


def test_etdrk4_is_fourth_order_in_time():
    n, nu, time = 128, 0.05, 0.5
    x = grid(n)
    modes = [(1, 0.9, 0.0)]  # a steeper solution: the time error is far above rounding
    u0 = cole_hopf(x, 0.0, nu, modes).unsqueeze(0)
    exact = cole_hopf(x, time, nu, modes)
    errors = [relative_max_error(solve_burgers(u0, nu, time, dt=dt)[0], exact)
              for dt in (0.05, 0.025, 0.0125)]
    assert errors[-1] > 1e-9  # still far from the spatial error and rounding
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 12 < coarse / fine < 20


def test_steep_front_at_small_viscosity():
    # phi nearly vanishes at x = 1/2 (a0 - a1 = 1e-3): a front about 0.007 wide and u up to
    # 1.4 at nu = 0.005. 512 points resolve it, 256 (two points across the front) do not.
    nu, time = 0.005, 0.2
    modes = [(1, 0.999, 0.0)]
    errors = {}
    for n in (256, 512):
        x = grid(n)
        u0 = cole_hopf(x, 0.0, nu, modes).unsqueeze(0)
        exact = cole_hopf(x, time, nu, modes)
        errors[n] = relative_max_error(solve_burgers(u0, nu, time)[0], exact)
    assert errors[512] < 1e-8
    assert errors[256] > 1e-7


# ------------------------------------------------------------------- invariants, contracts


def test_mean_is_conserved_to_rounding():
    g = torch.Generator().manual_seed(0)
    u0 = sample_grf(4, 64, n_dims=1, alpha=2.0, tau=5.0, sigma=25.0, generator=g,
                    dtype=torch.float64) + 0.3  # a nonzero mean: advection by it
    u = solve_burgers(u0, 0.05, 0.5, n_records=4)
    mean0 = u0.mean(-1, keepdim=True)
    assert float((u.mean(-1) - mean0).abs().max()) < 1e-14


def test_zero_time_returns_the_initial_condition():
    u0 = torch.randn(2, 16, dtype=torch.float64)
    torch.testing.assert_close(solve_burgers(u0, 0.1, 0.0), u0, rtol=0, atol=0)
    assert solve_burgers(u0, 0.1, 0.0, n_records=3).shape == (2, 3, 16)


def test_step_count_is_not_inflated_by_rounding():
    # 0.3 / 0.01 is 30.000000000000004 in floating point: still 30 steps of exactly 0.01.
    u0 = cole_hopf(grid(32), 0.0, 0.05, ONE_MODE).unsqueeze(0)
    torch.testing.assert_close(solve_burgers(u0, 0.05, 0.3, dt=0.01),
                               solve_burgers(u0, 0.05, 0.3, dt=0.3 / 30), rtol=0, atol=0)
    assert not torch.equal(solve_burgers(u0, 0.05, 0.3, dt=0.01),
                           solve_burgers(u0, 0.05, 0.3, dt=0.3 / 31))


def test_dtype_follows_input_and_is_computed_in_float64():
    x = grid(64)
    u0 = cole_hopf(x, 0.0, 0.05, ONE_MODE).unsqueeze(0)
    u64 = solve_burgers(u0, 0.05, 0.2)
    u32 = solve_burgers(u0.float(), 0.05, 0.2)
    assert u64.dtype == torch.float64 and u32.dtype == torch.float32
    # Same computation, only the input and output roundings differ.
    torch.testing.assert_close(u32.double(), u64, rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_device_of_the_input():
    x = grid(64)
    u0 = cole_hopf(x, 0.0, 0.05, ONE_MODE).unsqueeze(0)
    u = solve_burgers(u0.cuda().float(), 0.05, 0.2, n_records=2)
    assert u.device.type == "cuda" and u.dtype == torch.float32
    torch.testing.assert_close(u.cpu(), solve_burgers(u0.float(), 0.05, 0.2, n_records=2),
                               rtol=0, atol=1e-6)
    x_gpu, y_gpu = generate_burgers(4, resolution=32, device="cuda", progress=False)
    assert x_gpu.device.type == y_gpu.device.type == "cuda"


# ------------------------------------------------------------------- the data set


def test_generate_shapes_dtype_and_consistency_with_the_solver():
    x, y = generate_burgers(5, resolution=32, time=0.5, progress=False)
    assert x.shape == y.shape == (5, 1, 32)
    assert x.dtype == y.dtype == torch.float32
    # Mean-free initial conditions, as in the FNO paper; the mean stays zero.
    assert float(x.double().mean(-1).abs().max()) < 1e-6
    assert float(y.double().mean(-1).abs().max()) < 1e-6
    expected = solve_burgers(x[:, 0].double(), 0.1, 0.5)
    torch.testing.assert_close(y[:, 0].double(), expected, rtol=0, atol=1e-6)

    x2, y2 = generate_burgers(5, resolution=32, time=0.5, n_records=4, dtype=torch.float64,
                              progress=False)
    assert x2.shape == (5, 1, 32) and y2.shape == (5, 4, 32) and y2.dtype == torch.float64
    torch.testing.assert_close(x2.float(), x)
    torch.testing.assert_close(y2[:, -1:].float(), y, rtol=0, atol=1e-6)


def test_generate_initial_conditions_have_the_fno_spectrum():
    # Covariance 625 (-Laplacian + 25 I)^(-2) without the mean: E|u_k|^2 = 625 / (4 pi^2 k^2
    # + 25)^2 for k != 0, checked on modes 1 and 2 over many samples.
    x, _ = generate_burgers(600, resolution=16, time=0.01, dtype=torch.float64,
                            progress=False)
    coeffs = torch.fft.rfft(x[:, 0], norm="forward")
    assert float(coeffs[:, 0].abs().max()) < 1e-12
    for k in (1, 2):
        expected = 625 / (4 * math.pi**2 * k**2 + 25) ** 2
        ratio = float((coeffs[:, k].abs() ** 2).mean() / expected)
        assert abs(ratio - 1) < 0.2  # |c|^2 / lambda ~ Exp(1): std 1/sqrt(600)


def test_same_seed_same_data_and_other_seed_other_data():
    a = generate_burgers(3, resolution=32, time=0.2, seed=7, progress=False)
    b = generate_burgers(3, resolution=32, time=0.2, seed=7, progress=False)
    c = generate_burgers(3, resolution=32, time=0.2, seed=8, progress=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    generate_burgers(2, resolution=16, time=0.05, progress=True)
    assert "burgers" in capsys.readouterr().err
    generate_burgers(2, resolution=16, time=0.05, progress=False)
    generate_burgers(2, resolution=16, time=0.05)  # stderr is captured: not a terminal
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"u0": torch.zeros(16)}, "shape"),
        ({"u0": torch.zeros(2, 16, dtype=torch.complex128)}, "real"),
        ({"u0": torch.zeros(2, 16, dtype=torch.int64)}, "real"),
        ({"u0": torch.zeros(2, 2)}, "at least 4"),
        ({"viscosity": 0.0}, "viscosity"),
        ({"viscosity": -1.0}, "viscosity"),
        ({"time": -1.0}, "time"),
        ({"time": math.inf}, "time"),
        ({"dt": 0.0}, "dt"),
        ({"n_records": 0}, "n_records"),
        ({"n_records": 2.0}, "n_records"),
    ],
)
def test_solve_rejects_bad_arguments(kwargs, message):
    arguments = {"u0": torch.zeros(2, 16), "viscosity": 0.1, "time": 0.1} | kwargs
    u0, viscosity, time = arguments.pop("u0"), arguments.pop("viscosity"), arguments.pop("time")
    with pytest.raises(ValueError, match=message):
        solve_burgers(u0, viscosity, time, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"resolution": 2}, "resolution"),
        ({"viscosity": 0.0}, "viscosity"),
        ({"time": 0.0}, "time"),
        ({"n_records": -1}, "n_records"),
        ({"dtype": torch.int32}, "dtype"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, message):
    arguments = {"n_samples": 2, "resolution": 16, "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        generate_burgers(**arguments)
