"""Tests of the Darcy flow dataset: the solver against independent oracles, the coefficient's
statistics, reproducibility and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from nol_fast.data.darcy import (
    _neumann_grf,
    darcy_residual,
    generate_darcy,
    sample_darcy_coefficient,
    solve_darcy,
)


def random_coefficient(n_samples: int, resolution: int, seed: int = 0) -> torch.Tensor:
    return sample_darcy_coefficient(n_samples, resolution, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(seed))


def harmonic(p: float, q: float) -> float:
    return 2 * p * q / (p + q)


# ------------------------------------------------------------------------------- solver


def test_solution_satisfies_the_discrete_system():
    a = random_coefficient(3, 32)
    g = torch.Generator().manual_seed(1)
    forcing = 1.0 + torch.rand(a.shape, generator=g, dtype=torch.float64)
    for f in (1.0, forcing):
        u = solve_darcy(a, f)
        residual = darcy_residual(a, u, f)
        assert residual.shape == (3, 30, 30)
        max_f = 1.0 if isinstance(f, float) else float(f.abs().max())
        assert float(residual.abs().max()) / max_f < 1e-8
        # Boundary nodes carry the Dirichlet condition exactly.
        for edge in (u[:, 0, :], u[:, -1, :], u[:, :, 0], u[:, :, -1]):
            assert torch.equal(edge, torch.zeros_like(edge))
        # Discrete maximum principle: f > 0 gives u > 0 inside (the matrix is an M-matrix).
        assert bool((u[:, 1:-1, 1:-1] > 0).all())


def test_single_interior_node_by_hand():
    # n = 3: h = 1/2 and one unknown, (a_E + a_W + a_N + a_S) u / h^2 = f.
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    faces = harmonic(5, 8) + harmonic(5, 2) + harmonic(5, 6) + harmonic(5, 4)
    u = solve_darcy(a, 3.0)
    assert u.shape == (3, 3)
    assert math.isclose(float(u[1, 1]), 3.0 * 0.25 / faces, rel_tol=1e-14)
    assert float(u.abs().sum() - u[1, 1].abs()) == 0.0
    # The residual of a hand-picked u, from the same formula.
    trial = torch.zeros(3, 3, dtype=torch.float64)
    trial[1, 1] = 0.1
    expected = faces * 0.1 / 0.25 - 3.0
    assert math.isclose(float(darcy_residual(a, trial, 3.0)[0, 0]), expected, rel_tol=1e-14)


def manufactured(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a = 1 + sin(pi x) cos(pi y) / 2``, ``u* = e^x sin(pi x) sin(pi y)`` and
    ``f = -div(a grad u*)``, derived by hand. Neither is symmetric in x and y, so a swapped
    axis would show.
    """
    axis = torch.linspace(0, 1, n, dtype=torch.float64)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    pi = math.pi
    sx, cx, sy, cy, ex = (torch.sin(pi * x), torch.cos(pi * x), torch.sin(pi * y),
                          torch.cos(pi * y), torch.exp(x))
    a = 1 + 0.5 * sx * cy
    a_x = 0.5 * pi * cx * cy
    a_y = -0.5 * pi * sx * sy
    u = ex * sx * sy
    u_x = ex * (sx + pi * cx) * sy
    u_xx = ex * ((1 - pi**2) * sx + 2 * pi * cx) * sy
    u_y = pi * ex * sx * cy
    u_yy = -(pi**2) * u
    f = -(a_x * u_x + a_y * u_y + a * (u_xx + u_yy))
    return a, u, f


def test_second_order_convergence_to_a_manufactured_solution():
    errors = []
    for n in (17, 33, 65):
        a, exact, f = manufactured(n)
        errors.append(float((solve_darcy(a, f) - exact).abs().max()))
    pairs = zip(errors[:-1], errors[1:], strict=True)
    orders = [math.log2(coarse / fine) for coarse, fine in pairs]
    assert min(orders) > 1.8, (errors, orders)
    assert errors[-1] < 2e-3


def test_constant_coefficient_is_the_scaled_poisson_solution():
    n = 33
    m, h = n - 2, 1 / (n - 1)
    g = torch.Generator().manual_seed(2)
    f = torch.rand(n, n, generator=g, dtype=torch.float64)
    # Oracle: the 5-point Laplacian is diagonalised by the type-I sine transform.
    k = np.arange(1, m + 1)
    s2 = np.sin(np.pi * k * h / 2) ** 2
    eigenvalues = 4 / h**2 * (s2[:, None] + s2[None, :])
    interior = scipy.fft.idstn(scipy.fft.dstn(f[1:-1, 1:-1].numpy(), type=1) / eigenvalues,
                               type=1)
    poisson = np.zeros((n, n))
    poisson[1:-1, 1:-1] = interior
    for c in (1.0, 0.25, 7.0):
        u = solve_darcy(torch.full((n, n), c, dtype=torch.float64), f)
        np.testing.assert_allclose(u.numpy(), poisson / c, rtol=1e-11, atol=1e-14)
    # Linearity in f and scaling in a together: solve(c a, s f) = s / c solve(a, f).
    a = random_coefficient(1, n)[0]
    torch.testing.assert_close(solve_darcy(4 * a, 3 * f), 0.75 * solve_darcy(a, f),
                               rtol=1e-11, atol=1e-14)


def test_unit_poisson_centre_value_approaches_the_continuum():
    # -Laplacian(u) = 1 on the unit square: u(1/2, 1/2) = 0.0736713532...
    u = solve_darcy(torch.ones(65, 65, dtype=torch.float64))
    assert abs(float(u[32, 32]) - 0.0736713532) < 2e-4


def test_symmetric_coefficient_gives_a_symmetric_solution():
    n = 25
    g = torch.Generator().manual_seed(3)
    base = torch.rand(n, n, generator=g, dtype=torch.float64)
    # The maximum over the 8 symmetries of the square (generated by x <-> y and x -> 1 - x),
    # exactly symmetric where an average would differ in rounding.
    images = []
    for field in (base, base.T):
        for flip in ((), (0,), (1,), (0, 1)):
            images.append(field.flip(flip) if flip else field)
    smooth = torch.stack(images).amax(0)
    thresholded = torch.where(smooth >= smooth.median(), 12.0, 3.0).double()
    for a in (torch.full((n, n), 2.0, dtype=torch.float64), 1 + smooth, thresholded):
        assert torch.equal(a, a.T) and torch.equal(a, a.flip(0))
        u = solve_darcy(a)
        scale = float(u.abs().max())
        torch.testing.assert_close(u, u.T, rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(u, u.flip(0), rtol=0, atol=1e-12 * scale)
        torch.testing.assert_close(u, u.flip(1), rtol=0, atol=1e-12 * scale)


def test_solver_shapes_dtypes_and_batching():
    a = random_coefficient(3, 12)
    batched = solve_darcy(a)
    single = solve_darcy(a[1])
    assert batched.shape == (3, 12, 12) and single.shape == (12, 12)
    torch.testing.assert_close(single, batched[1], rtol=1e-12, atol=0)
    as_float = solve_darcy(a.float())
    assert as_float.dtype == torch.float32
    torch.testing.assert_close(as_float, batched.float())
    # A 0-dim tensor forcing is a scalar.
    torch.testing.assert_close(solve_darcy(a, torch.tensor(2.0)), 2 * batched)


# -------------------------------------------------------------------------- coefficient


def test_coefficient_takes_two_values_in_balanced_proportion():
    a = sample_darcy_coefficient(200, 32, generator=torch.Generator().manual_seed(0))
    assert a.shape == (200, 32, 32) and a.dtype == torch.float32
    assert set(a.unique().tolist()) == {3.0, 12.0}
    high_fraction = (a == 12.0).double().mean(dim=(1, 2))
    # The field has no constant mode, so it changes sign in every sample...
    assert bool(((high_fraction > 0) & (high_fraction < 1)).all())
    # ... and P(mu >= 0) = 1/2 at every node.
    assert abs(float(high_fraction.mean()) - 0.5) < 0.05
    custom = sample_darcy_coefficient(4, 16, high=1.5, low=-2.0, dtype=torch.float64,
                                      generator=torch.Generator().manual_seed(0))
    assert set(custom.unique().tolist()) == {-2.0, 1.5}


def test_coefficient_thresholds_the_neumann_field():
    field = _neumann_grf(5, 20, 2.0, 3.0, torch.Generator().manual_seed(9), "cpu")
    a = sample_darcy_coefficient(5, 20, generator=torch.Generator().manual_seed(9),
                                 dtype=torch.float64)
    assert torch.equal(a, torch.where(field >= 0, 12.0, 3.0).double())


def test_field_has_the_neumann_cosine_spectrum():
    n_samples, resolution, alpha, tau = 3000, 16, 2.0, 3.0
    field = _neumann_grf(n_samples, resolution, alpha, tau, torch.Generator().manual_seed(4),
                         "cpu").numpy()
    # Oracle: the type-I cosine transform inverts the nodal cosine series exactly. For
    # f_j = sum_k c_k cos(pi k j / M), M = resolution - 1, it returns M c_k (2 M c_k at
    # k = 0 and k = M).
    big_m = resolution - 1
    weight = np.full(resolution, float(big_m))
    weight[[0, -1]] = 2 * big_m
    coeffs = scipy.fft.dctn(field, type=1, axes=(1, 2)) / np.outer(weight, weight)
    k = np.arange(resolution)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    expected = tau ** (2 * alpha - 2) * (np.pi**2 * k2 + tau**2) ** (-alpha)
    # The constant mode is dropped: every field has zero (trapezoidal) mean.
    assert np.abs(coeffs[:, 0, 0]).max() < 1e-12 * np.abs(field).max()
    ratio = (coeffs**2).mean(0) / expected
    ratio[0, 0] = 1.0
    # Each mode's variance estimate has relative std sqrt(2 / n_samples) ~ 2.6%.
    assert np.abs(ratio - 1).max() < 6 * math.sqrt(2 / n_samples), ratio
    assert abs(ratio.mean() - 1) < 0.01
    # The decay itself: mode (1, 0) carries ((32 pi^2 + 9) / (pi^2 + 9))^2 = 296 times the
    # variance of mode (4, 4).
    assert 255 < (coeffs[:, 1, 0] ** 2).mean() / (coeffs[:, 4, 4] ** 2).mean() < 340
    # Distinct modes are uncorrelated.
    assert abs(np.corrcoef(coeffs[:, 1, 0], coeffs[:, 0, 1])[0, 1]) < 0.1


# ------------------------------------------------------------------------------ dataset


def test_generate_darcy_is_reproducible_and_consistent():
    a, u = generate_darcy(6, resolution=16, seed=5, progress=False)
    assert a.shape == u.shape == (6, 1, 16, 16)
    assert a.dtype == u.dtype == torch.float32
    again_a, again_u = generate_darcy(6, resolution=16, seed=5, progress=False)
    assert torch.equal(a, again_a) and torch.equal(u, again_u)
    other_a, _ = generate_darcy(6, resolution=16, seed=6, progress=False)
    assert not torch.equal(a, other_a)
    a64, u64 = generate_darcy(6, resolution=16, seed=5, dtype=torch.float64, progress=False)
    assert u64.dtype == torch.float64
    assert torch.equal(a64.float(), a)
    torch.testing.assert_close(u64, solve_darcy(a64[:, 0]).unsqueeze(1), rtol=1e-12, atol=0)
    assert float(darcy_residual(a64[:, 0], u64[:, 0]).abs().max()) < 1e-8


def test_generate_darcy_progress_bar(capsys):
    generate_darcy(3, resolution=8, progress=True)
    assert "3/3" in capsys.readouterr().err
    # Under pytest stderr is not a terminal: no bar by default.
    generate_darcy(3, resolution=8)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("a", "match"),
    [
        (torch.ones(2, 5, 6), "square"),
        (torch.ones(5), "square"),
        (torch.ones(2, 2), "n >= 3"),
        (torch.zeros(4, 4), "positive"),
        (-torch.ones(1, 4, 4), "positive"),
        (torch.full((4, 4), float("nan")), "positive"),
        (torch.full((4, 4), float("inf")), "finite"),
    ],
)
def test_solver_rejects_bad_coefficients(a, match):
    with pytest.raises(ValueError, match=match):
        solve_darcy(a)
    with pytest.raises(ValueError, match=match):
        darcy_residual(a, torch.zeros_like(a))


def test_solver_rejects_bad_forcing_and_solution():
    a = torch.ones(2, 5, 5)
    with pytest.raises(ValueError, match="forcing must be a scalar or have a's shape"):
        solve_darcy(a, torch.ones(5, 5))
    with pytest.raises(TypeError, match="forcing"):
        solve_darcy(a, "1")
    with pytest.raises(TypeError, match="torch.Tensor"):
        solve_darcy(np.ones((5, 5)))
    with pytest.raises(ValueError, match="u must be a tensor of a's shape"):
        darcy_residual(a, torch.zeros(5, 5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_samples": 2.0}, "n_samples must be an integer >= 1"),
        ({"n_samples": True}, "n_samples must be an integer >= 1"),
        ({"resolution": 2}, "resolution must be an integer >= 3"),
        ({"resolution": 16.0}, "resolution must be an integer >= 3"),
        ({"seed": "0"}, "seed must be an integer"),
        ({"dtype": torch.int64}, "dtype must be a floating-point"),
        ({"progress": "yes"}, "progress must be True, False or None"),
    ],
)
def test_generate_darcy_rejects_bad_arguments(kwargs, match):
    arguments = {"n_samples": 2, "resolution": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_darcy(**arguments)


def test_coefficient_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resolution must be an integer >= 2"):
        sample_darcy_coefficient(1, 1)
    with pytest.raises(ValueError, match="alpha and tau must be positive"):
        sample_darcy_coefficient(1, 8, tau=0.0)
    with pytest.raises(ValueError, match="high and low must be finite"):
        sample_darcy_coefficient(1, 8, high=float("inf"))
