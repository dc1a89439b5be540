"""Gaussian random fields on periodic grids, the random inputs of the PDE datasets.

A field on the unit torus ``[0, 1)^d`` with covariance operator

    C = sigma^2 (-Laplacian + tau^2 I)^(-alpha)

has independent Fourier coefficients: the coefficient of ``exp(2 pi i k.x)`` is a zero-mean
Gaussian with variance ``lambda_k = sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha)``. Sampling it on
a grid is therefore one FFT of white noise, a multiplication by ``sqrt(lambda_k)`` and one
inverse FFT. ``alpha`` sets the smoothness, ``tau`` the length scale (about ``2 pi / tau``).

The heat dataset draws its initial conditions here; the Darcy, Burgers and Navier-Stokes
generators are meant to do the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def wavenumbers_squared(
    grid: Sequence[int], device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``|k|^2`` for the frequencies of ``torch.fft.rfftn`` over a periodic grid.

    Frequencies are integers (cycles per unit length): ``fftfreq`` order along every
    dimension but the last, ``0 ... n // 2`` along the last.

    Returns
    -------
    Tensor
        Shape ``(*grid[:-1], grid[-1] // 2 + 1)``, matching ``rfftn`` over the grid dims.

    Examples
    --------
    >>> wavenumbers_squared((4,))
    tensor([0., 1., 4.], dtype=torch.float64)
    """
    freqs = [torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype) for n in grid[:-1]]
    freqs.append(torch.fft.rfftfreq(grid[-1], d=1.0 / grid[-1], device=device, dtype=dtype))
    mesh = torch.meshgrid(*freqs, indexing="ij")
    return sum(k**2 for k in mesh)


def sample_grf(
    n_samples: int,
    resolution: int = 32,
    n_dims: int = 2,
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw real, zero-mean Gaussian random fields on a periodic grid.

    Parameters
    ----------
    n_samples : int
        Number of independent fields.
    resolution : int
        Grid points per dimension; the points are ``j / resolution``.
    n_dims : int
        1, 2 or 3 spatial dimensions.
    alpha, tau : float
        Exponent and shift of the covariance ``sigma^2 (-Laplacian + tau^2 I)^(-alpha)``.
    sigma : float, optional
        Amplitude. The default ``tau ** (alpha - n_dims / 2)`` makes the pointwise variance
        independent of ``tau`` (for ``alpha > n_dims / 2`` and a fine grid).
    generator : torch.Generator, optional
        Source of randomness, on ``device``; the global generator when omitted.
    device, dtype
        Where and in which floating dtype to return the fields. They are computed in
        float64, so float32 and float64 fields from the same generator state agree.

    Returns
    -------
    Tensor
        Shape ``(n_samples, *[resolution] * n_dims)``. On the grid the Fourier coefficients
        ``rfftn(u, norm='forward')`` have variance ``lambda_k`` (see the module docstring).
        The fields have mean zero in distribution; the spatial mean of one field is its
        ``k = 0`` coefficient, of variance ``lambda_0`` (subtract it where a PDE needs
        mean-free data).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> sample_grf(4, resolution=16, n_dims=2, generator=g).shape
    torch.Size([4, 16, 16])
    """
    if n_dims not in (1, 2, 3):
        raise ValueError(f"n_dims must be 1, 2 or 3, got {n_dims!r}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if tau <= 0 or alpha <= 0:
        raise ValueError(f"alpha and tau must be positive, got alpha={alpha!r}, tau={tau!r}")
    if sigma is None:
        sigma = tau ** (alpha - n_dims / 2)
    grid = (resolution,) * n_dims
    dims = tuple(range(1, n_dims + 1))
    k2 = wavenumbers_squared(grid, device=device)
    sqrt_eig = sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    noise = torch.randn((n_samples, *grid), generator=generator, device=device,
                        dtype=torch.float64)
    # The orthonormal FFT of white noise is complex white noise with E|.|^2 = 1.
    coeffs = sqrt_eig * torch.fft.rfftn(noise, dim=dims, norm="ortho")
    fields = torch.fft.irfftn(coeffs, s=grid, dim=dims, norm="forward")
    return fields.to(dtype)
