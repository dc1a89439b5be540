"""The derivative operators of nol_fast.physics against analytic derivatives.

Oracles: closed-form derivatives of smooth and trigonometric fields, the textbook stencil
tables, and polynomials, which a stencil with p points differentiates exactly up to degree
p - 1. Finite differences must converge at their order (the error falls about 4x or 16x per
grid doubling), spectral derivatives must be exact to rounding on band-limited fields.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from nol_fast.physics import finite_difference as fd
from nol_fast.physics import spectral
from nol_fast.physics.grid import Grid, uniform_grid
from nol_fast.physics.stencils import stencil, stencil_weights

TWO_PI = 2 * math.pi


# --------------------------------------------------------------------------- stencils


def test_stencil_tables_match_the_textbook_weights():
    assert stencil_weights((-2, -1, 0, 1, 2), 1) == tuple(
        Fraction(w) for w in ("1/12", "-2/3", "0", "2/3", "-1/12"))
    assert stencil_weights((-2, -1, 0, 1, 2), 2) == tuple(
        Fraction(w) for w in ("-1/12", "4/3", "-5/2", "4/3", "-1/12"))
    assert stencil_weights((0, 1, 2), 1) == (Fraction(-3, 2), Fraction(2), Fraction(-1, 2))
    assert stencil_weights((0, 1, 2, 3), 2) == (2, -5, 4, -1)
    assert stencil(1, 4).left[0] == pytest.approx((-25 / 12, 4, -3, 4 / 3, -1 / 4))
    assert stencil(2, 4).left[0] == pytest.approx((15 / 4, -77 / 6, 107 / 6, -13, 61 / 12, -5 / 6))


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("accuracy", [2, 4])
def test_every_stencil_row_is_exact_on_polynomials(order, accuracy):
    # A row with p points differentiates polynomials of degree < p exactly: the whole grid,
    # boundary rows included, gives the exact derivative of x^k up to the degree it must.
    st = stencil(order, accuracy)
    n, h = 12, 0.5
    x = torch.arange(n, dtype=torch.float64) * h
    for degree in range(accuracy + order):
        u = x**degree
        exact = math.perm(degree, order) * x ** max(degree - order, 0)
        got = fd.derivative(u, 0, h, order, accuracy)
        torch.testing.assert_close(got, exact, rtol=1e-9, atol=1e-8)
    assert len(st.interior) == 2 * st.radius + 1 and all(len(row) == st.width for row in st.left)


def test_stencil_rejects_unsupported_orders():
    with pytest.raises(ValueError, match=r"accuracy must be one of \(2, 4\), got 6"):
        stencil(1, 6)
    with pytest.raises(ValueError, match=r"derivative order must be one of \(1, 2\), got 3"):
        stencil(3, 2)


# --------------------------------------------------------------------------- finite differences


def _smooth(x: torch.Tensor, order: int) -> torch.Tensor:
    """exp(sin(2.3 x + 0.4)) (order 0) and its first and second derivatives."""
    s, c = torch.sin(2.3 * x + 0.4), torch.cos(2.3 * x + 0.4)
    return [torch.exp(s), 2.3 * c * torch.exp(s), 2.3**2 * (c**2 - s) * torch.exp(s)][order]


def _periodic(x: torch.Tensor, order: int) -> torch.Tensor:
    """exp(sin(2 pi x)) and its derivatives: smooth and 1-periodic, not band-limited."""
    s, c = torch.sin(TWO_PI * x), torch.cos(TWO_PI * x)
    return [torch.exp(s), TWO_PI * c * torch.exp(s), TWO_PI**2 * (c**2 - s) * torch.exp(s)][order]


@pytest.mark.parametrize("periodic", [False, True], ids=["bounded", "periodic"])
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("accuracy", [2, 4])
def test_finite_differences_converge_at_their_order(accuracy, order, periodic):
    errors = []
    for n in (32, 64, 128):
        if periodic:  # cell starts of [0, 1)
            x, fun = torch.arange(n, dtype=torch.float64) / n, _periodic
        else:  # both ends of [0, 1]: the one-sided rows are in the maximum
            x, fun = torch.linspace(0, 1, n + 1, dtype=torch.float64), _smooth
        got = fd.derivative(fun(x, 0)[None, None], -1, 1 / n, order, accuracy, periodic)
        errors.append((got[0, 0] - fun(x, order)).abs().max().item())
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 0.85 * 2**accuracy < coarse / fine < 1.2 * 2**accuracy, errors


def test_vector_operators_on_a_2d_bounded_grid():
    # u = sin(x) e^y on [0, 1] x [0, 2] sampled on both ends: gradient, divergence of the
    # gradient (= Laplacian = 0), curl of the gradient (= 0), each 4th-order accurate.
    grid = Grid(domain=(1.0, 2.0), periodic=False)
    shape = (41, 81)
    h = grid.spacing(shape)
    x, y = uniform_grid(shape, (1.0, 2.0), endpoint=True, dtype=torch.float64).unbind(-1)
    u = (torch.sin(x) * torch.exp(y))[None, None]
    grad = fd.gradient(u, h, accuracy=4)
    assert grad.shape == (1, 1, 2, *shape)
    torch.testing.assert_close(grad[0, 0, 0], torch.cos(x) * torch.exp(y), atol=1e-6, rtol=0)
    torch.testing.assert_close(grad[0, 0, 1], torch.sin(x) * torch.exp(y), atol=1e-6, rtol=0)
    assert fd.laplacian(u, h, accuracy=4).abs().max() < 1e-4
    assert fd.divergence(grad, h, accuracy=4).abs().max() < 1e-3
    assert fd.curl(grad, h, accuracy=4).abs().max() < 1e-6


def test_curl_3d_of_a_rotation():
    # v = (-y, x, 0) has curl (0, 0, 2); linear fields are exact for every stencil row.
    shape = (6, 7, 5)
    x, y, _ = uniform_grid(shape, endpoint=True, dtype=torch.float64).unbind(-1)
    v = torch.stack([-y, x, torch.zeros_like(x)])[None, None]
    c = fd.curl(v, spacing=[1 / (n - 1) for n in shape])
    torch.testing.assert_close(c[0, 0], torch.stack([0 * x, 0 * x, 2 + 0 * x]))


def test_finite_difference_errors_name_the_values():
    with pytest.raises(ValueError, match=r"needs at least 5 points along dim 2, got 4"):
        fd.derivative(torch.zeros(1, 1, 4), 2, 0.1, accuracy=4)
    with pytest.raises(ValueError, match=r"spacing must be one number > 0 or 2 .* got -1"):
        fd.gradient(torch.zeros(1, 1, 6, 6), spacing=-1)
    with pytest.raises(ValueError, match=r"periodic must be a bool or 2 bools"):
        fd.laplacian(torch.zeros(1, 1, 6, 6), 0.1, periodic=(True,))
    with pytest.raises(ValueError, match=r"v must have shape \(batch, channels, n_dims, \*grid\)"):
        fd.divergence(torch.zeros(1, 1, 3, 6, 6), 0.1)


# --------------------------------------------------------------------------- spectral


def _band_limited(shape: tuple[int, ...], lengths: tuple[float, ...]):
    """A band-limited field on the periodic grid and its gradient and Laplacian, exactly.

    u = prod_d cos(k_d x_d + phase_d) + sin(k_0 x_0), with k_d below the Nyquist frequency.
    """
    coords = uniform_grid(shape, lengths, dtype=torch.float64).unbind(-1)
    ks = [TWO_PI * (n // 2 - 1) / length for n, length in zip(shape, lengths, strict=True)]
    phases = [0.3 * (d + 1) for d in range(len(shape))]
    cos = [torch.cos(k * x + p) for k, x, p in zip(ks, coords, phases, strict=True)]
    sin = [torch.sin(k * x + p) for k, x, p in zip(ks, coords, phases, strict=True)]
    k0 = TWO_PI / lengths[0]
    u = math.prod(cos) + torch.sin(k0 * coords[0])
    grad = []
    for d in range(len(shape)):
        term = -ks[d] * sin[d] * math.prod(c for e, c in enumerate(cos) if e != d)
        grad.append(term + (k0 * torch.cos(k0 * coords[0]) if d == 0 else 0))
    lap = -sum(k**2 for k in ks) * math.prod(cos) - k0**2 * torch.sin(k0 * coords[0])
    return u, torch.stack(grad), lap


@pytest.mark.parametrize(("shape", "lengths"), [((16,), (2.0,)), ((12, 10), (1.0, 3.0)),
                                                ((8, 6, 10), (1.0, 2.0, 0.5))],
                         ids=["1d", "2d", "3d"])
def test_spectral_operators_are_exact_on_band_limited_fields(shape, lengths):
    u, grad, lap = _band_limited(shape, lengths)
    u = u.expand(2, 3, *shape)  # batched over (batch, channels)
    scale = lap.abs().max()
    got = spectral.gradient(u, lengths)
    assert got.shape == (2, 3, len(shape), *shape)
    torch.testing.assert_close(got, grad.expand_as(got), atol=1e-12 * scale, rtol=0)
    torch.testing.assert_close(spectral.laplacian(u, lengths), lap.expand_as(u),
                               atol=1e-12 * scale, rtol=0)
    torch.testing.assert_close(spectral.divergence(got, lengths), lap.expand_as(u),
                               atol=1e-12 * scale, rtol=0)
    # The inverse Laplacian undoes the Laplacian on the zero-mean part.
    back = spectral.inverse_laplacian(spectral.laplacian(u, lengths), lengths)
    torch.testing.assert_close(back, u - u.mean(dim=tuple(range(2, u.ndim)), keepdim=True),
                               atol=1e-12, rtol=0)
    for dim in range(len(shape)):
        got = spectral.derivative(u, 2 + dim, 1, lengths[dim])
        torch.testing.assert_close(got, grad[dim].expand_as(u), atol=1e-12 * scale, rtol=0)
    if len(shape) > 1:
        assert spectral.curl(spectral.gradient(u, lengths), lengths).abs().max() < 1e-11 * scale


def test_spectral_curl_and_odd_grid():
    # v = (sin y, cos x) on [0, 2 pi)^2, odd sizes: curl = -sin x - cos y.
    shape = (9, 11)
    x, y = uniform_grid(shape, TWO_PI, dtype=torch.float64).unbind(-1)
    v = torch.stack([torch.sin(y), torch.cos(x)])[None, None]
    torch.testing.assert_close(spectral.curl(v, TWO_PI)[0, 0], -torch.sin(x) - torch.cos(y))
    # 3-D: v = (0, 0, sin x) has curl (0, -cos x, 0)
    x3 = uniform_grid((8, 4, 6), TWO_PI, dtype=torch.float64)[..., 0]
    v3 = torch.stack([0 * x3, 0 * x3, torch.sin(x3)])[None, None]
    want = torch.stack([0 * x3, -torch.cos(x3), 0 * x3])
    torch.testing.assert_close(spectral.curl(v3, TWO_PI)[0, 0], want)


def test_spectral_nyquist_mode_has_no_odd_derivative():
    # cos(pi n x) sampled on n = 8 points is (-1)^i; its sampled derivative is 0, and the
    # second derivative keeps the mode: -(pi n)^2 (-1)^i.
    n = 8
    u = torch.tensor([(-1.0) ** i for i in range(n)], dtype=torch.float64)[None, None]
    assert spectral.derivative(u, -1).abs().max() < 1e-12
    torch.testing.assert_close(spectral.derivative(u, -1, order=2), -(math.pi * n) ** 2 * u)
    assert spectral.gradient(u).abs().max() < 1e-12


def test_spectral_half_precision_is_computed_in_float32():
    u = torch.randn(1, 1, 8, 8).to(torch.bfloat16)
    assert spectral.laplacian(u).dtype == torch.float32
    with pytest.raises(TypeError, match="real floating-point field"):
        spectral.gradient(torch.zeros(1, 1, 8, dtype=torch.complex64))


@pytest.mark.parametrize("op", ["gradient", "divergence", "curl", "laplacian",
                                "inverse_laplacian"])
def test_gradcheck_spectral(op):
    torch.manual_seed(0)
    shape = (1, 1, 2, 6, 5) if op in ("divergence", "curl") else (1, 2, 6, 5)
    u = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: getattr(spectral, op)(t, (1.0, 2.0)), (u,),
                                    fast_mode=True)


@pytest.mark.parametrize("op", ["gradient", "laplacian"])
def test_gradcheck_finite_difference(op):
    torch.manual_seed(0)
    u = torch.randn(1, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: getattr(fd, op)(t, (0.5, 0.7), accuracy=4, periodic=(True, False)), (u,))
