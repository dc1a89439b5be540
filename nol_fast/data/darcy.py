"""The Darcy flow dataset of the FNO paper: a piecewise-constant coefficient to a pressure.

The operator maps a permeability ``a(x, y)`` on the unit square to the solution of

    -div(a grad u) = f   in (0, 1)^2,        u = 0   on the boundary,

with ``f = 1`` (Li et al., "Fourier Neural Operator for Parametric Partial Differential
Equations", ICLR 2021, section 5.2).

Coefficient
-----------
``a = psi(mu)`` where ``mu`` is a zero-mean Gaussian random field with covariance
``sigma^2 (-Laplacian + tau^2 I)^(-alpha)`` under zero Neumann boundary conditions and
``psi`` thresholds it: ``high`` (12) where ``mu >= 0``, ``low`` (3) elsewhere. The Neumann
eigenfunctions are ``cos(pi k x) cos(pi l y)`` with eigenvalues ``pi^2 (k^2 + l^2) + tau^2``,
so ``mu`` is a cosine series with independent ``N(0, sigma^2 (pi^2 (k^2 + l^2) + tau^2)^(-alpha))``
coefficients; as in the paper the constant mode ``k = l = 0`` is dropped, so every field has
spatial mean zero (exactly so for the trapezoidal rule on the nodes). The series is truncated to
``0 <= k, l < resolution``: on ``resolution`` nodes the modes ``k`` and
``2 (resolution - 1) - k`` coincide, so higher modes are not resolved. ``sigma`` does not
change the thresholded coefficient; it is ``tau^(alpha - 1)`` as in the paper's code and in
:func:`~nol_fast.data.grf.sample_grf` (the pointwise variance then barely depends on ``tau``).
The paper states ``psi = 12 / 3``; the data-generation script released with it uses 4 for
the low value (pass ``low=4.0`` to match that).

Discretisation
--------------
The grid has ``n`` nodes per side, ``x_i = i h`` with ``h = 1 / (n - 1)``, so the outer ring
of nodes lies on the boundary of the square: there ``u = 0`` is imposed and nothing is
solved; the coefficient's boundary values still enter through the faces of the adjacent
cells. The ``(n - 2)^2`` interior nodes are the unknowns. Around each interior node a square
control volume of side ``h`` is balanced (finite volumes): the flux through each of its four
faces is ``a_face (u_neighbour - u_node) / h`` (times the face length ``h``) and the source
is ``f`` at the node times the area ``h^2``. Divided by ``h^2``, the row of node ``(i, j)``
reads

    [(a_E + a_W + a_N + a_S) u_ij - a_E u_i+1,j - a_W u_i-1,j - a_N u_i,j+1 - a_S u_i,j-1]
        / h^2 = f_ij,

a five-point stencil; neighbours on the boundary contribute ``u = 0``. The matrix ``A`` of
these rows is symmetric positive definite (and an M-matrix, so ``f >= 0`` gives ``u >= 0``);
:func:`darcy_residual` evaluates ``A u - f`` in the same units as ``f``.

The face coefficient is the harmonic mean of the two nodal values it separates,
``2 a_P a_Q / (a_P + a_Q)``: each node owns half of the segment between them, and two
conductances in series add as resistances, so the harmonic mean is the exact effective
coefficient of that segment when ``a`` is constant on each half. It keeps the flux continuous
across a jump of ``a`` and is dominated by the smaller value, as flow across a
low-permeability layer is; the arithmetic mean would overestimate that flow, by a factor of
about 1.6 for the 12 / 3 contrast (7.5 against 4.8). For a smooth ``a`` the two means differ
by ``O(h^2)`` and the scheme is second-order accurate.

Array convention: ``a[..., i, j]`` is the value at ``(x, y) = (i h, j h)``; the first grid
axis is ``x``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from nol_fast.progress import progress_bar

# Samples per coefficient draw in generate_darcy; bounds the memory of large datasets.
_GENERATION_BATCH = 256


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _cosine_basis(
    resolution: int, n_modes: int, device: torch.device | str,
) -> torch.Tensor:
    """``cos(pi k x_j)`` at the nodes ``x_j = j / (resolution - 1)``, shape (resolution, K)."""
    x = torch.linspace(0.0, 1.0, resolution, device=device, dtype=torch.float64)
    k = torch.arange(n_modes, device=device, dtype=torch.float64)
    return torch.cos(math.pi * x[:, None] * k[None, :])


def _neumann_grf(
    n_samples: int,
    resolution: int,
    alpha: float,
    tau: float,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> torch.Tensor:
    """The float64 field ``mu`` before thresholding (see the module docstring).

    ``mu = sum_{k, l < resolution} sqrt(lambda_kl) xi_kl cos(pi k x) cos(pi l y)`` with
    ``lambda_kl = tau^(2 alpha - 2) (pi^2 (k^2 + l^2) + tau^2)^(-alpha)``, ``lambda_00 = 0``
    and ``xi_kl`` standard normals from ``generator``. Shape (n_samples, resolution, resolution).
    """
    n_modes = resolution
    k = torch.arange(n_modes, device=device, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    sigma = tau ** (alpha - 1)
    sqrt_eig = sigma * (math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    xi = torch.randn((n_samples, n_modes, n_modes), generator=generator, device=device,
                     dtype=torch.float64)
    basis = _cosine_basis(resolution, n_modes, device)
    # (res, K) @ (batch, K, K) @ (K, res): two batched matmuls, O(res^3) per sample.
    return basis @ (sqrt_eig * xi) @ basis.T


def sample_darcy_coefficient(
    n_samples: int,
    resolution: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    high: float = 12.0,
    low: float = 3.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw the piecewise-constant Darcy coefficients of the FNO paper.

    A zero-mean Gaussian random field with covariance ``(-Laplacian + tau^2 I)^(-alpha)``
    under Neumann boundary conditions (a cosine series without its constant mode, truncated
    to ``resolution`` modes per direction; see the module docstring), evaluated at the nodes
    ``x_j = j / (resolution - 1)``, which include the boundary, then thresholded.

    Parameters
    ----------
    n_samples : int
        Number of independent coefficients.
    resolution : int
        Nodes per side (at least 2).
    alpha, tau : float
        Exponent and shift of the covariance operator (both positive).
    high, low : float
        The value where the field is ``>= 0`` and where it is negative.
    generator : torch.Generator, optional
        Source of the standard normals, on ``device``; the global generator when omitted.
    device, dtype
        Where to compute (in float64) and the dtype of the result.

    Returns
    -------
    Tensor
        Shape ``(n_samples, resolution, resolution)``, every entry ``high`` or ``low``;
        ``[..., i, j]`` is the value at ``(x, y) = (x_i, x_j)``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> a = sample_darcy_coefficient(2, 16, generator=g)
    >>> a.shape, sorted(a.unique().tolist())
    (torch.Size([2, 16, 16]), [3.0, 12.0])
    """
    _check_count("n_samples", n_samples, 1)
    _check_count("resolution", resolution, 2)
    if not (alpha > 0 and tau > 0):
        raise ValueError(f"alpha and tau must be positive, got alpha={alpha!r}, tau={tau!r}")
    if not (math.isfinite(high) and math.isfinite(low)):
        raise ValueError(f"high and low must be finite, got high={high!r}, low={low!r}")
    field = _neumann_grf(n_samples, resolution, alpha, tau, generator, device)
    high_t = torch.tensor(high, dtype=torch.float64, device=field.device)
    low_t = torch.tensor(low, dtype=torch.float64, device=field.device)
    return torch.where(field >= 0, high_t, low_t).to(dtype)


# ------------------------------------------------------------------------------- solver


def _check_coefficient(a: Any) -> torch.Tensor:
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"a must be a torch.Tensor, got {type(a).__name__}")
    if a.dim() not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"a must have shape (batch, n, n) or (n, n) (a square grid), "
                         f"got {tuple(a.shape)}")
    if a.shape[-1] < 3:
        raise ValueError(f"the grid needs n >= 3 nodes per side (one interior node), "
                         f"got n={a.shape[-1]}")
    if a.is_complex():
        raise TypeError(f"a must be real, got dtype {a.dtype}")
    if a.numel() and not bool(torch.all(a > 0)):
        raise ValueError("a must be positive everywhere (and not NaN); the problem is "
                         "elliptic only for a > 0")
    if not bool(torch.all(torch.isfinite(a))):
        raise ValueError("a must be finite")
    return a


def _check_forcing(forcing: Any, a: torch.Tensor) -> torch.Tensor | float:
    """A Python float, or a float64 tensor of a's shape on a's device."""
    if isinstance(forcing, torch.Tensor):
        if forcing.dim() == 0:
            return float(forcing)
        if forcing.shape != a.shape:
            raise ValueError(f"forcing must be a scalar or have a's shape {tuple(a.shape)}, "
                             f"got {tuple(forcing.shape)}")
        return forcing.to(device=a.device, dtype=torch.float64)
    if isinstance(forcing, (int, float)) and not isinstance(forcing, bool):
        return float(forcing)
    raise TypeError(f"forcing must be a number or a tensor, got {type(forcing).__name__}")


# SuperLU options for a symmetric positive definite matrix: no pivoting, so the fill-in
# depends on the sparsity pattern only and one fill-reducing ordering serves every sample.
# Larger relaxed supernodes and narrower panels than SuperLU's defaults factorise these
# 5-point matrices about 25% faster (measured on 32^2 to 128^2 grids).
_SUPERLU_OPTIONS = {
    "diag_pivot_thresh": 0.0, "relax": 16, "panel_size": 4,
    "options": {"SymmetricMode": True},
}


@lru_cache(maxsize=8)
def _stencil_pattern(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparsity of the 5-point matrix on an m x m interior grid, reordered to limit fill-in.

    In natural order the unknown of interior node ``(i, j)`` is ``p = i m + j`` and row ``p``
    has the entries ``[p - m, p - 1, p, p + 1, p + m]`` (west, south, centre, north, east)
    where those neighbours are interior. The unknowns are then renumbered by SuperLU's
    minimum-degree ordering of the pattern, computed once per ``m``.

    Returns ``(present, order, indices, indptr, perm)``: ``present`` (m, m, 5) marks the
    existing entries (in row-major order they form the natural-order values ``v``);
    ``v[order]`` with ``indices`` and ``indptr`` are the CSC (= CSR, the matrix being
    symmetric) arrays of the reordered matrix, whose unknown ``r`` is natural unknown
    ``perm[r]``.
    """
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    p = i * m + j
    present = np.stack([i > 0, j > 0, np.ones_like(i, dtype=bool), j < m - 1, i < m - 1],
                       axis=-1)
    columns = np.stack([p - m, p - 1, p, p + 1, p + m], axis=-1)
    natural_indptr = np.zeros(m * m + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=-1).ravel(), out=natural_indptr[1:])
    natural_indices = columns[present]
    nnz = natural_indices.size
    size = m * m
    # The Laplacian's values give a valid matrix to order; the ordering uses the pattern.
    laplacian = np.where(np.arange(5) == 2, 4.0, -1.0)[None, None, :].repeat(m, 0).repeat(m, 1)
    matrix = scipy.sparse.csc_matrix((laplacian[present], natural_indices, natural_indptr),
                                     shape=(size, size))
    perm_c = scipy.sparse.linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A",
                                      **_SUPERLU_OPTIONS).perm_c
    perm = np.empty_like(perm_c)
    perm[perm_c] = np.arange(size)
    # Reorder entry positions (1-based, so none is an explicit zero) to find where each
    # natural-order value lands.
    positions = scipy.sparse.csc_matrix(
        (np.arange(1, nnz + 1, dtype=np.float64), natural_indices, natural_indptr),
        shape=(size, size),
    )[perm][:, perm].tocsc()
    positions.sort_indices()
    order = positions.data.astype(np.int64) - 1
    return (present, order, positions.indices.astype(np.int32),
            positions.indptr.astype(np.int32), perm)


def _harmonic(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 2.0 * p * q / (p + q)


def _solve_numpy(a: np.ndarray, f: np.ndarray | float, on_sample=None) -> np.ndarray:
    """Solve every sample of ``a`` (batch, n, n) float64; returns u (batch, n, n) float64.

    ``f`` is a float or a (batch, n, n) float64 array; ``on_sample()`` is called after each
    solve.
    """
    batch, n = a.shape[0], a.shape[-1]
    m, h2 = n - 2, (1.0 / (n - 1)) ** 2
    present, order, indices, indptr, perm = _stencil_pattern(m)
    # Face coefficients: ax[:, i, j] between nodes (i, j) and (i + 1, j), ay between (i, j)
    # and (i, j + 1).
    ax = _harmonic(a[:, :-1, :], a[:, 1:, :])
    ay = _harmonic(a[:, :, :-1], a[:, :, 1:])
    west, east = ax[:, :-1, 1:-1], ax[:, 1:, 1:-1]
    south, north = ay[:, 1:-1, :-1], ay[:, 1:-1, 1:]
    values = np.stack([-west, -south, west + east + south + north, -north, -east], axis=-1)
    data = values[:, present][:, order] / h2  # (batch, nnz), reordered CSC
    if isinstance(f, float):
        rhs = np.full((batch, m * m), f)
    else:
        rhs = f[:, 1:-1, 1:-1].reshape(batch, m * m)[:, perm]
    u = np.zeros((batch, n, n))
    interior = np.empty(m * m)
    for b in range(batch):
        matrix = scipy.sparse.csc_matrix((data[b], indices, indptr), shape=(m * m, m * m))
        lu = scipy.sparse.linalg.splu(matrix, permc_spec="NATURAL", **_SUPERLU_OPTIONS)
        interior[perm] = lu.solve(rhs[b])
        u[b, 1:-1, 1:-1] = interior.reshape(m, m)
        if on_sample is not None:
            on_sample()
    return u


def solve_darcy(a: torch.Tensor, forcing: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Solve ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary.

    Finite volumes on the nodes with harmonic-mean face coefficients (see the module
    docstring); the sparse system of the interior nodes is assembled without a loop over
    nodes and factorised by SuperLU, one sample at a time, in float64.

    Parameters
    ----------
    a : Tensor
        Positive nodal coefficient, shape ``(batch, n, n)`` or ``(n, n)`` with ``n >= 3``,
        ``a[..., i, j]`` at ``(x, y) = (i, j) / (n - 1)``; the boundary nodes' values enter
        through the faces next to them.
    forcing : float or Tensor
        ``f``: a number, or nodal values of ``a``'s shape (only interior nodes are used).

    Returns
    -------
    Tensor
        ``u`` at every node, boundary zeros included: ``a``'s shape, dtype and device.

    Examples
    --------
    >>> u = solve_darcy(torch.ones(5, 5, dtype=torch.float64))
    >>> round(u[2, 2].item(), 7)  # the centre, h = 1/4; the continuum value is 0.0737
    0.0703125
    """
    a = _check_coefficient(a)
    f = _check_forcing(forcing, a)
    squeeze = a.dim() == 2
    a3 = a.unsqueeze(0) if squeeze else a
    a_np = a3.detach().to(device="cpu", dtype=torch.float64).numpy()
    if isinstance(f, torch.Tensor):
        f = (f.unsqueeze(0) if squeeze else f).cpu().numpy()
    u = _solve_numpy(a_np, f)
    out_dtype = a.dtype if a.is_floating_point() else torch.get_default_dtype()
    u_t = torch.from_numpy(u).to(device=a.device, dtype=out_dtype)
    return u_t[0] if squeeze else u_t


def darcy_residual(
    a: torch.Tensor, u: torch.Tensor, forcing: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """The discrete residual ``A u - f`` of :func:`solve_darcy`'s scheme at the interior nodes.

    The stencil is applied directly with tensor slicing (no matrix), in float64: a check of
    a solution, independent of the assembly in :func:`solve_darcy`. Boundary values of ``u``
    are used as given (the scheme assumes they are zero).

    Parameters
    ----------
    a, u : Tensor
        Coefficient and solution of the same shape, ``(batch, n, n)`` or ``(n, n)``.
    forcing : float or Tensor
        As in :func:`solve_darcy`.

    Returns
    -------
    Tensor
        Shape ``(..., n - 2, n - 2)``, in the promoted dtype of ``a`` and ``u`` (float64
        computation).

    Examples
    --------
    >>> a = torch.ones(5, 5, dtype=torch.float64)
    >>> float(darcy_residual(a, solve_darcy(a)).abs().max()) < 1e-12
    True
    """
    a = _check_coefficient(a)
    if not isinstance(u, torch.Tensor) or u.shape != a.shape:
        raise ValueError(f"u must be a tensor of a's shape {tuple(a.shape)}, "
                         f"got {tuple(getattr(u, 'shape', ()))}")
    f = _check_forcing(forcing, a)
    a64 = a.to(torch.float64)
    u64 = u.to(device=a.device, dtype=torch.float64)
    n = a.shape[-1]
    inv_h2 = float((n - 1) ** 2)
    centre = a64[..., 1:-1, 1:-1]
    u_c = u64[..., 1:-1, 1:-1]
    flux_sum = torch.zeros_like(u_c)
    # Each neighbour (shifted by di, dj) contributes a_face (u_c - u_neighbour).
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        rows = slice(1 + di, n - 1 + di)
        cols = slice(1 + dj, n - 1 + dj)
        a_nb = a64[..., rows, cols]
        a_face = 2.0 * centre * a_nb / (centre + a_nb)
        flux_sum = flux_sum + a_face * (u_c - u64[..., rows, cols])
    f_int = f if isinstance(f, float) else f[..., 1:-1, 1:-1]
    residual = flux_sum * inv_h2 - f_int
    out_dtype = torch.promote_types(a.dtype, u.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.float64
    return residual.to(out_dtype)


# ------------------------------------------------------------------------------ dataset


def generate_darcy(
    n_samples: int,
    resolution: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``(a, u)`` pairs of the FNO paper's Darcy flow problem.

    Coefficients from :func:`sample_darcy_coefficient` (defaults: ``alpha=2``, ``tau=3``,
    values 12 and 3), drawn in batches from a ``torch.Generator`` on ``device`` seeded with
    ``seed``; solutions from :func:`solve_darcy` with ``f = 1``. The same arguments give the
    same data.

    Parameters
    ----------
    n_samples : int
        Number of pairs (at least 1).
    resolution : int
        Nodes per side, boundary included (at least 3).
    seed : int
        Seed of the generator.
    device, dtype
        Where to draw the coefficients and the device and floating dtype of the result (the
        solves run in float64 on the CPU).
    progress : bool, optional
        Show a tqdm bar over the samples; by default only when stderr is a terminal.

    Returns
    -------
    a, u : Tensor
        Shape ``(n_samples, 1, resolution, resolution)`` each.

    Examples
    --------
    >>> a, u = generate_darcy(4, resolution=16, progress=False)
    >>> a.shape, u.shape
    (torch.Size([4, 1, 16, 16]), torch.Size([4, 1, 16, 16]))
    """
    _check_count("n_samples", n_samples, 1)
    _check_count("resolution", resolution, 3)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    coefficients, solutions = [], []
    with progress_bar(n_samples, "darcy", progress, unit="sample") as bar:
        for start in range(0, n_samples, _GENERATION_BATCH):
            count = min(_GENERATION_BATCH, n_samples - start)
            a = sample_darcy_coefficient(count, resolution, generator=generator,
                                         device=device, dtype=torch.float64)
            u = _solve_numpy(a.cpu().numpy(), 1.0,
                             on_sample=None if bar is None else lambda: bar.update(1))
            coefficients.append(a.to(dtype))
            solutions.append(torch.from_numpy(u).to(device=device, dtype=dtype))
    return torch.cat(coefficients).unsqueeze(1), torch.cat(solutions).unsqueeze(1)
