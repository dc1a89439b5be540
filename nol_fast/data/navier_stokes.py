"""The 2-D Navier-Stokes dataset of the FNO paper, solved pseudo-spectrally in torch.

The incompressible Navier-Stokes equations on the unit torus ``[0, 1)^2`` in vorticity form,

    w_t + u . grad(w) = nu Laplacian(w) + f,   u = (psi_y, -psi_x),   -Laplacian(psi) = w,

are solved for the Fourier coefficients of ``w`` (wavevectors ``k`` in cycles per unit length,
``lambda_k = 4 pi^2 |k|^2`` the symbol of ``-Laplacian``) with the scheme of the FNO paper's
generator:

* the stream function, the velocity ``u = (psi_y, -psi_x)`` and ``grad(w)`` are obtained
  spectrally from ``w``, and the advection term ``u . grad(w)`` is formed on the grid;
* the product is dealiased with the 2/3 rule: only the modes with ``|k_x|, |k_y| < n / 3``
  enter it and only those of the product are kept, which makes the advection term of every
  retained mode that of the Fourier-Galerkin truncation, free of aliasing (the paper's code
  truncates only the product). Its ``k = 0`` coefficient, zero for the exact equation (it is
  the mean of ``div(u w)``), is set to zero;
* time stepping is semi-implicit with step ``dt``: Crank-Nicolson for the viscous term,
  forward Euler for advection and forcing,

      w_k' = ((1 - dt nu lambda_k / 2) w_k + dt (f_k - (u . grad w)_k))
             / (1 + dt nu lambda_k / 2).

  Diffusion is thus unconditionally stable and second-order accurate; advection is
  first-order and explicit, which asks for a small step. The paper used ``dt = 1e-4`` on a
  256 x 256 grid for all its viscosities, the default here. At ``nu = 1e-3`` on a 64 x 64
  grid its time error after one time unit is about 3e-6 relative (ten times that at
  ``dt = 1e-3``).

The mean vorticity is conserved: the advection term has no ``k = 0`` part and the forcing of
the paper has zero mean. (On a torus the vorticity of a periodic velocity field has zero mean,
so physical initial conditions are mean-free; a nonzero mean is carried along unchanged.)

Resolution and viscosity, for the paper's initial conditions and forcing:

* ``nu = 1e-3``: the flow stays smooth; on a 64 x 64 grid the solution agrees with that on
  128 x 128 to 1e-10 relative up to ``T = 10``.
* ``nu = 1e-4``: finer scales develop; 64 x 64 differs from 128 x 128 by 1e-3 relative at
  ``T = 10``, and more later. Use 256 x 256, as the paper did.
* ``nu = 1e-5``: turbulent; 256 x 256 or finer.

With ``dt = 1e-4`` the advective Courant number ``max |u| dt n`` is small, about 0.005 on a
256 x 256 grid at the speeds of about 0.2 seen up to ``T = 10`` at ``nu = 1e-3`` and
``1e-4``, so the step is limited by the accuracy of the explicit Euler advection, not by
stability. The paper generated its data on 256 x 256 grids and subsampled them to 64 x 64
for training.

Everything is batched over the first dimension and runs on the device of the input, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nol_fast.data.burgers import _step_count
from nol_fast.data.grf import sample_grf
from nol_fast.progress import progress_bar

# Every _FLUSH_EVERY steps coefficients below _FLUSH_BELOW are set to zero: modes that only
# decay would otherwise sink into subnormal numbers, on which CPU arithmetic is very slow.
_FLUSH_EVERY = 4
_FLUSH_BELOW = 1e-200

# Steps between updates of the progress bar.
_PROGRESS_EVERY = 100


def kolmogorov_forcing(
    resolution: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The FNO paper's forcing ``f(x, y) = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y)))``.

    Sampled on the grid ``x_i = i / resolution``, ``y_j = j / resolution``; ``f[i, j]`` is
    ``f(x_i, y_j)``. It is a single Fourier mode pair (wavevector ``(1, 1)``), so it has zero
    mean.

    Returns
    -------
    Tensor
        Shape ``(resolution, resolution)``, computed in float64 and returned in ``dtype``.

    Examples
    --------
    >>> f = kolmogorov_forcing(8)
    >>> f.shape, round(float(f[0, 0]), 4), abs(float(f.mean())) < 1e-8
    (torch.Size([8, 8]), 0.1, True)
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    x = torch.arange(resolution, device=device, dtype=torch.float64) / resolution
    phase = 2 * math.pi * (x[:, None] + x[None, :])
    return (0.1 * (torch.sin(phase) + torch.cos(phase))).to(dtype)


def _check_solver_arguments(
    w0: torch.Tensor, viscosity: float, time: float, dt: float, n_records: int
) -> None:
    if not isinstance(w0, torch.Tensor) or w0.dim() != 3 or w0.shape[1] != w0.shape[2]:
        shape = tuple(w0.shape) if isinstance(w0, torch.Tensor) else type(w0)
        raise ValueError(f"w0 must be a tensor of shape (batch, n, n), got {shape}")
    if not w0.is_floating_point():
        raise ValueError(f"w0 must be a real floating tensor, got dtype {w0.dtype}")
    if w0.shape[-1] < 4:
        raise ValueError(f"w0 must have at least 4 x 4 grid points, got {tuple(w0.shape[1:])}")
    if not viscosity > 0 or not math.isfinite(viscosity):
        raise ValueError(f"viscosity must be positive and finite, got {viscosity!r}")
    if not time >= 0 or not math.isfinite(time):
        raise ValueError(f"time must be finite and >= 0, got {time!r}")
    if not dt > 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    if not isinstance(n_records, int) or n_records < 1:
        raise ValueError(f"n_records must be a positive integer, got {n_records!r}")


def _steps_per_record(time: float, dt: float, n_records: int) -> int:
    """Equal steps of at most ``dt`` per record interval ``time / n_records``."""
    return _step_count(time / n_records, dt)


def _simulate(
    w0: torch.Tensor,
    viscosity: float,
    time: float,
    forcing: torch.Tensor | None,
    dt: float,
    n_records: int,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The solver behind :func:`solve_navier_stokes`; ``advance(k)`` reports ``k`` more steps."""
    n = w0.shape[-1]
    device = w0.device
    w = w0.to(torch.float64)
    steps = _steps_per_record(time, dt, n_records)
    h = time / (n_records * steps) if steps else 0.0

    # Full (not one-sided) spectra: a pair of real fields a, b is then inverted by one complex
    # FFT of a_k + i b_k; two such FFTs for the four fields of the advection term are about
    # twice as fast on CPUs as four real-output ones.
    k = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64)
    kx, ky = k[:, None], k[None, :]
    lam = 4 * math.pi**2 * (kx**2 + ky**2)  # symbol of -Laplacian
    keep = (3 * kx.abs() < n) & (3 * ky.abs() < n)
    dealias = keep.to(torch.float64)
    inv_lam = torch.where(lam > 0, 1 / lam.clamp(min=1e-300), 0.0)
    dx = 2j * math.pi * kx * dealias
    dy = 2j * math.pi * ky * dealias
    # w_k -> coefficients of u + i v = (psi_y - i psi_x) and of w_x + i w_y.
    operators = torch.stack([(dy - 1j * dx) * inv_lam, dx + 1j * dy])

    half = 0.5 * h * viscosity * lam
    decay = (1 - half) / (1 + half)
    decay = torch.where(decay.abs() < 1e-16, 0.0, decay)
    gain = h / (1 + half)
    advection_gain = gain * (keep & (lam > 0)).to(torch.float64)
    # Complex copies, so that the products in the loop need no conversion.
    decay, advection_gain = decay.to(torch.complex128), advection_gain.to(torch.complex128)
    source = None
    if forcing is not None:
        source = gain * torch.fft.fft2(forcing.to(device=device, dtype=torch.float64))

    w_hat = torch.fft.fft2(w)
    records = []
    for _ in range(n_records):
        for step in range(steps):
            if step % _FLUSH_EVERY == 0:
                w_hat = w_hat.masked_fill(w_hat.abs() < _FLUSH_BELOW, 0)
            fields = torch.fft.ifft2(w_hat.unsqueeze(1) * operators)
            velocity, gradient = fields[:, 0], fields[:, 1]
            advection = velocity.real * gradient.real + velocity.imag * gradient.imag
            w_hat = decay * w_hat - advection_gain * torch.fft.fft2(advection)
            if source is not None:
                w_hat = w_hat + source
            if advance is not None and (step + 1) % _PROGRESS_EVERY == 0:
                advance(_PROGRESS_EVERY)
        if advance is not None and steps % _PROGRESS_EVERY:
            advance(steps % _PROGRESS_EVERY)
        records.append(torch.fft.ifft2(w_hat).real if steps else w.clone())
    return torch.stack(records, dim=1)


def solve_navier_stokes(
    w0: torch.Tensor,
    viscosity: float,
    time: float,
    *,
    forcing: torch.Tensor | None = None,
    dt: float = 1e-4,
    n_records: int = 1,
) -> torch.Tensor:
    """Solve the 2-D periodic Navier-Stokes equations in vorticity form from ``w0``.

    ``w_t + u . grad(w) = nu Laplacian(w) + f`` on the unit torus, pseudo-spectral with 2/3
    dealiasing, Crank-Nicolson for diffusion and forward Euler for advection and forcing (the
    FNO paper's scheme; see the module docstring for it and for the resolution a viscosity
    needs).

    Parameters
    ----------
    w0 : Tensor
        Initial vorticity of shape ``(batch, n, n)``, real, with ``w0[b, i, j]`` the value at
        ``(x, y) = (i / n, j / n)``.
    viscosity : float
        ``nu > 0``.
    time : float
        Final time ``T >= 0``.
    forcing : Tensor, optional
        Time-independent forcing ``f`` of shape ``(n, n)`` or ``(batch, n, n)`` on the same
        grid, e.g. :func:`kolmogorov_forcing`; none by default.
    dt : float
        Largest time step, ``1e-4`` by default (the paper's). Each of the ``n_records``
        intervals of length ``T / n_records`` is covered by
        ``ceil(T / (n_records * dt))`` equal steps, so the records fall exactly on their times.
    n_records : int
        Number of records, at the times ``T * j / n_records``, ``j = 1 ... n_records``.

    Returns
    -------
    Tensor
        ``w`` at the record times, shape ``(batch, n_records, n, n)``, on ``w0``'s device and
        in its dtype (computed in float64).

    Examples
    --------
    A Taylor-Green vortex, an exact solution that decays as ``exp(-8 pi^2 nu t)``:

    >>> x = torch.arange(32, dtype=torch.float64) / 32
    >>> w0 = (4 * math.pi * torch.sin(2 * math.pi * x)[:, None]
    ...       * torch.sin(2 * math.pi * x)[None, :]).unsqueeze(0)
    >>> w = solve_navier_stokes(w0, viscosity=0.01, time=0.5, dt=1e-3, n_records=5)
    >>> w.shape
    torch.Size([1, 5, 32, 32])
    >>> ratio = float(w[0, -1, 8, 8] / w0[0, 8, 8])
    >>> round(ratio, 6), round(math.exp(-8 * math.pi**2 * 0.01 * 0.5), 6)
    (0.673825, 0.673825)
    """
    _check_solver_arguments(w0, viscosity, time, dt, n_records)
    n = w0.shape[-1]
    if forcing is not None:
        if not isinstance(forcing, torch.Tensor) or forcing.shape not in (
            (n, n), (w0.shape[0], n, n)
        ):
            shape = tuple(forcing.shape) if isinstance(forcing, torch.Tensor) else type(forcing)
            raise ValueError(f"forcing must have shape ({n}, {n}) or "
                             f"({w0.shape[0]}, {n}, {n}), got {shape}")
        if not forcing.is_floating_point():
            raise ValueError(f"forcing must be a real floating tensor, got {forcing.dtype}")
    return _simulate(w0, viscosity, time, forcing, dt, n_records).to(w0.dtype)


def generate_navier_stokes(
    n_samples: int,
    resolution: int = 64,
    viscosity: float = 1e-3,
    time: float = 1.0,
    n_records: int = 10,
    dt: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = 128,
    progress: bool | None = None,
) -> torch.Tensor:
    """Generate vorticity trajectories of the FNO paper's Navier-Stokes benchmark.

    The initial vorticities are Gaussian random fields with covariance
    ``7^3 (-Laplacian + 49 I)^(-2.5)``, the paper's, i.e.
    ``sample_grf(n_dims=2, alpha=2.5, tau=7.0, sigma=7**1.5)``, with their spatial mean removed
    (the paper's generator sets the ``k = 0`` coefficient to zero, as a periodic velocity
    field requires). The flow is driven by :func:`kolmogorov_forcing` and solved with
    :func:`solve_navier_stokes` in batches of ``batch_size``. The fields are drawn from a
    ``torch.Generator`` on ``device`` seeded with ``seed``; the same arguments give the same
    data.

    The paper recorded ``T = 50`` time units (``nu = 1e-3``; ``T = 30`` for ``1e-4`` and
    ``T = 20`` for ``1e-5``) once per time unit, on a 256 x 256 grid subsampled to 64 x 64, and
    learned the map from the first 10 records to the rest. The defaults here, ``T = 1`` with
    10 records on a 64 x 64 grid, keep the paper's solver, step and data but a horizon that a
    CPU can afford: 100 trajectories (10,000 steps of 100 fields) take about 4 minutes on two
    cores, each time unit more as long again; a GPU is much faster. Set
    ``time=50.0, n_records=50`` for the paper's horizon at ``nu = 1e-3``; ``nu = 1e-4`` and
    ``1e-5`` need ``resolution=256`` (see the module docstring).

    Parameters
    ----------
    n_samples : int
        Number of trajectories.
    resolution : int
        Grid points per dimension, at ``j / resolution``.
    viscosity, time : float
        ``nu`` and the final time ``T``.
    n_records : int
        Records after the initial state, at the times ``T * j / n_records``.
    dt : float
        Largest time step of the solver.
    seed : int
        Seed of the generator.
    device, dtype
        Where to generate and the dtype of the result (computed in float64).
    batch_size : int
        Trajectories solved together; bounds the memory.
    progress : bool, optional
        A progress bar over the time steps of all batches: ``None`` shows it when stderr is a
        terminal, ``True`` always, ``False`` never.

    Returns
    -------
    Tensor
        Shape ``(n_samples, n_records + 1, resolution, resolution)``: the initial vorticity,
        then the records (time as channels).

    Examples
    --------
    >>> w = generate_navier_stokes(2, resolution=16, time=0.1, n_records=2, dt=1e-2,
    ...                            progress=False)
    >>> w.shape
    torch.Size([2, 3, 16, 16])
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(resolution, int) or resolution < 4:
        raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not time > 0:
        raise ValueError(f"time must be positive, got {time!r}")
    if not dtype.is_floating_point or dtype.is_complex:
        raise ValueError(f"dtype must be a real floating dtype, got {dtype}")
    shape_check = torch.empty(1, resolution, resolution)
    _check_solver_arguments(shape_check, viscosity, time, dt, n_records)

    generator = torch.Generator(device=device).manual_seed(seed)
    forcing = kolmogorov_forcing(resolution, device=device, dtype=torch.float64)
    n_batches = math.ceil(n_samples / batch_size)
    total_steps = n_batches * n_records * _steps_per_record(time, dt, n_records)
    trajectories = []
    with progress_bar(total_steps, "navier-stokes", progress, unit="step") as bar:
        advance = None if bar is None else bar.update
        for start in range(0, n_samples, batch_size):
            count = min(batch_size, n_samples - start)
            w0 = sample_grf(count, resolution, n_dims=2, alpha=2.5, tau=7.0, sigma=7**1.5,
                            generator=generator, device=device, dtype=torch.float64)
            w0 = w0 - w0.mean(dim=(-2, -1), keepdim=True)
            w = _simulate(w0, viscosity, time, forcing, dt, n_records, advance)
            trajectories.append(torch.cat([w0.unsqueeze(1), w], dim=1).to(dtype))
    return torch.cat(trajectories)
