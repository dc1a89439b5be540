"""Spectral (FFT) derivative operators on periodic uniform grids.

Fields are tensors of shape ``(batch, channels, *grid)`` with 1 to 3 grid dimensions, sampled
at the periodic cell starts ``x_i = i L / n`` of :mod:`nol_fast.physics.grid`; every operator is
batched over ``(batch, channels)``. Vector fields carry their components on an axis after the
channels, ``(batch, channels, n_dims, *grid)``.

A derivative multiplies the Fourier coefficient of ``exp(i k x)`` by ``i k``, with the angular
wavenumber ``k = 2 pi m / L``; the result is exact to rounding for a band-limited field, one
whose frequencies ``|m| < n / 2`` (the Nyquist frequency excluded). On an even grid the
Nyquist mode ``cos(pi n x / L)`` has no sampled odd derivative (its derivative is a sine that
vanishes at every point), so odd derivatives drop it: that keeps every operator real, and its
transpose the operator with the conjugate symbol, which the fused residuals rely on.

Each operator takes the domain lengths explicitly (``domain``: one length for every grid dim,
or one per dim). float16 and bfloat16 fields are transformed in float32 and returned in
float32 (``torch.fft`` has no half-precision CPU transforms, and its GPU ones need
power-of-two sizes).

Examples
--------
>>> x = torch.arange(16, dtype=torch.float64) / 16
>>> u = torch.sin(2 * torch.pi * x).expand(1, 1, 16)
>>> du = derivative(u, -1)            # 2 pi cos(2 pi x), exact to rounding
>>> bool(torch.allclose(du[0, 0], 2 * torch.pi * torch.cos(2 * torch.pi * x)))
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from nol_fast.physics.grid import domain_lengths, grid_dims

__all__ = [
    "curl",
    "derivative",
    "divergence",
    "gradient",
    "inverse_laplacian",
    "laplacian",
    "symbols",
    "wavenumbers",
]

Domain = float | Sequence[float]


@functools.lru_cache(maxsize=64)
def _wavenumbers(
    shape: tuple[int, ...], lengths: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, ...]:
    ks = []
    for axis, (n, length) in enumerate(zip(shape, lengths, strict=True)):
        last = axis == len(shape) - 1
        m = torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64) if last else \
            torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
        k = (2 * math.pi / length) * m
        view = [1] * len(shape)
        view[axis] = k.numel()
        ks.append(k.reshape(view).to(device=device, dtype=dtype))
    return tuple(ks)


def wavenumbers(
    spatial_shape: Sequence[int], domain: Domain = 1.0, *, device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, ...]:
    """Angular wavenumbers ``k = 2 pi m / L`` of the ``rfftn`` spectrum of a grid.

    Parameters
    ----------
    spatial_shape
        ``(n_1, ..., n_d)``.
    domain
        Length of every dimension, or one per dimension.
    device, dtype
        Of the returned (real) tensors.

    Returns
    -------
    tuple of Tensor
        One per dimension, shaped to broadcast against the spectrum
        ``(n_1, ..., n_{d-1}, n_d // 2 + 1)``: FFT order along the first ``d - 1`` dims,
        ``0 .. n_d // 2`` along the last. Cached per shape, domain, dtype and device; do not
        modify them.

    Examples
    --------
    >>> [k.shape for k in wavenumbers((4, 6))]
    [torch.Size([4, 1]), torch.Size([1, 4])]
    """
    shape = tuple(spatial_shape)
    return _wavenumbers(shape, domain_lengths(domain, len(shape)), dtype, torch.device(device))


def _odd_symbol(k: Tensor, n: int) -> Tensor:
    """``i k`` as a complex tensor, zero at the Nyquist frequency of an even ``n``."""
    ik = torch.complex(torch.zeros_like(k), k)
    if n % 2 == 0:
        ik = torch.where(k.abs() == k.abs().max(), 0, ik)
    return ik


class Symbols(NamedTuple):
    """Fourier symbols of the operators on the ``rfftn`` spectrum of one grid."""

    gradient: Tensor  # (n_dims, *spectrum) complex: i k_d, zero at dim d's Nyquist frequency
    laplacian: Tensor  # (*spectrum) real: -|k|^2
    inverse_laplacian: Tensor  # (*spectrum) real: -1 / |k|^2, and 0 at k = 0


@functools.lru_cache(maxsize=64)
def _symbols(
    shape: tuple[int, ...], lengths: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> Symbols:
    ks = _wavenumbers(shape, lengths, dtype, device)
    spectrum = (*shape[:-1], shape[-1] // 2 + 1)
    ik = torch.stack([_odd_symbol(k, n).expand(spectrum) for k, n in zip(ks, shape, strict=True)])
    k2 = sum(k.square() for k in ks).expand(spectrum)
    inverse = torch.where(k2 == 0, 0.0, -1.0 / torch.where(k2 == 0, 1.0, k2))
    return Symbols(ik, -k2, inverse)


def symbols(
    spatial_shape: Sequence[int], domain: Domain, dtype: torch.dtype, device: torch.device
) -> Symbols:
    """The operators' symbols on the ``rfftn`` spectrum of a grid (cached; do not modify).

    Parameters
    ----------
    spatial_shape
        ``(n_1, ..., n_d)``.
    domain
        Length of every dimension, or one per dimension.
    dtype
        Real dtype of the fields (the gradient symbols are the matching complex dtype).
    device
        Of the returned tensors.

    Examples
    --------
    >>> symbols((8, 8), 1.0, torch.float32, torch.device("cpu")).gradient.shape
    torch.Size([2, 8, 5])
    """
    shape = tuple(spatial_shape)
    return _symbols(shape, domain_lengths(domain, len(shape)), dtype, torch.device(device))


def _real(u: Tensor) -> Tensor:
    """``u`` in a dtype ``torch.fft`` transforms: half precision goes to float32."""
    if u.is_complex() or not u.is_floating_point():
        raise TypeError(f"expected a real floating-point field, got dtype {u.dtype}")
    return u.float() if u.dtype in (torch.float16, torch.bfloat16) else u


def derivative(u: Tensor, dim: int, order: int = 1, domain: float = 1.0) -> Tensor:
    """Derivative of any order of ``u`` along one periodic tensor dimension.

    Parameters
    ----------
    u
        Real tensor; ``dim`` is a periodic grid dimension of it.
    dim
        The dimension to differentiate along (negative counts from the end).
    order
        Derivative order (>= 1); odd orders drop the Nyquist mode of an even grid.
    domain
        Length ``L`` of the periodic dimension.

    Returns
    -------
    Tensor
        ``u``'s shape (float32 for half-precision ``u``).

    Examples
    --------
    >>> derivative(torch.ones(8), 0, order=2).abs().max().item()
    0.0
    """
    u = _real(u)
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    n = u.shape[dim]
    dim = dim % u.ndim
    (k,) = wavenumbers((n,), domain, device=u.device, dtype=u.dtype)
    symbol = _odd_symbol(k, n) ** order if order % 2 else (-k.square()) ** (order // 2)
    view = [1] * u.ndim
    view[dim] = symbol.numel()
    spectrum = torch.fft.rfft(u, dim=dim) * symbol.reshape(view)
    return torch.fft.irfft(spectrum, n=n, dim=dim)


def gradient(u: Tensor, domain: Domain = 1.0) -> Tensor:
    """Gradient of every channel: one forward FFT, one batched inverse.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 periodic grid dims.
    domain
        Length of every grid dim, or one per dim.

    Returns
    -------
    Tensor
        ``(batch, channels, n_dims, *grid)``.

    Examples
    --------
    >>> gradient(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 3, 2, 8, 8])
    """
    u = _real(u)
    n_dims = grid_dims(u, "u", vector=False)
    grid, dims = u.shape[2:], tuple(range(-n_dims, 0))
    ik = symbols(grid, domain, u.dtype, u.device).gradient
    spectrum = torch.fft.rfftn(u, dim=dims).unsqueeze(2) * ik
    return torch.fft.irfftn(spectrum, s=grid, dim=dims)


def divergence(v: Tensor, domain: Domain = 1.0) -> Tensor:
    """Divergence ``sum_k dv_k/dx_k`` of a vector field per channel.

    Parameters
    ----------
    v
        ``(batch, channels, n_dims, *grid)``: component ``k`` along axis 2.
    domain
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        ``(batch, channels, *grid)``.

    Examples
    --------
    >>> divergence(torch.ones(1, 1, 2, 8, 8)).abs().max().item()
    0.0
    """
    v = _real(v)
    n_dims = grid_dims(v, "v", vector=True)
    grid, dims = v.shape[3:], tuple(range(-n_dims, 0))
    ik = symbols(grid, domain, v.dtype, v.device).gradient
    spectrum = (torch.fft.rfftn(v, dim=dims) * ik).sum(2)
    return torch.fft.irfftn(spectrum, s=grid, dim=dims)


def curl(v: Tensor, domain: Domain = 1.0) -> Tensor:
    """Curl of a 2-D or 3-D vector field per channel.

    Parameters
    ----------
    v
        ``(batch, channels, 2, nx, ny)`` or ``(batch, channels, 3, nx, ny, nz)``.
    domain
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        2-D: the scalar ``dv_y/dx - dv_x/dy``, ``(batch, channels, nx, ny)``; 3-D: the vector
        ``(batch, channels, 3, nx, ny, nz)``.

    Examples
    --------
    >>> curl(torch.zeros(1, 1, 2, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
    """
    v = _real(v)
    n_dims = grid_dims(v, "v", vector=True)
    if n_dims == 1:
        raise ValueError(f"curl needs a 2-D or 3-D vector field, got shape {tuple(v.shape)}")
    grid, dims = v.shape[3:], tuple(range(-n_dims, 0))
    ik = symbols(grid, domain, v.dtype, v.device).gradient
    s = torch.fft.rfftn(v, dim=dims)
    if n_dims == 2:
        return torch.fft.irfftn(ik[0] * s[:, :, 1] - ik[1] * s[:, :, 0], s=grid, dim=dims)
    spectrum = torch.stack([ik[1] * s[:, :, 2] - ik[2] * s[:, :, 1],
                            ik[2] * s[:, :, 0] - ik[0] * s[:, :, 2],
                            ik[0] * s[:, :, 1] - ik[1] * s[:, :, 0]], dim=2)
    return torch.fft.irfftn(spectrum, s=grid, dim=dims)


def laplacian(u: Tensor, domain: Domain = 1.0) -> Tensor:
    """Laplacian of every channel.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 periodic grid dims.
    domain
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        ``u``'s shape.

    Examples
    --------
    >>> laplacian(torch.ones(1, 1, 8, 8, 8)).abs().max().item()
    0.0
    """
    return _scalar_multiplier(u, domain, "laplacian")


def inverse_laplacian(u: Tensor, domain: Domain = 1.0) -> Tensor:
    """The zero-mean solution ``phi`` of ``laplacian(phi) = u - mean(u)`` per channel.

    A periodic Poisson problem is solvable only for a zero-mean right-hand side, and its
    solution is unique up to a constant; the mean of ``u`` is therefore dropped and ``phi``
    has mean zero.

    Parameters
    ----------
    u
        ``(batch, channels, *grid)``, 1 to 3 periodic grid dims.
    domain
        As in :func:`gradient`.

    Returns
    -------
    Tensor
        ``u``'s shape.

    Examples
    --------
    >>> x = torch.arange(8, dtype=torch.float64) / 8
    >>> phi = inverse_laplacian(torch.cos(2 * torch.pi * x).expand(1, 1, 8))
    >>> bool(torch.allclose(phi, -torch.cos(2 * torch.pi * x) / (4 * torch.pi**2)))
    True
    """
    return _scalar_multiplier(u, domain, "inverse_laplacian")


def _scalar_multiplier(u: Tensor, domain: Domain, name: str) -> Tensor:
    """``irfftn(symbol * rfftn(u))`` for the real symbol ``name`` of :class:`Symbols`."""
    u = _real(u)
    n_dims = grid_dims(u, "u", vector=False)
    grid, dims = u.shape[2:], tuple(range(-n_dims, 0))
    symbol = getattr(symbols(grid, domain, u.dtype, u.device), name)
    return torch.fft.irfftn(torch.fft.rfftn(u, dim=dims) * symbol, s=grid, dim=dims)
