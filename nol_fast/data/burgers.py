"""The viscous Burgers equation dataset of the FNO paper, solved pseudo-spectrally in torch.

On the periodic unit interval the equation

    u_t + (u^2 / 2)_x = nu * u_xx

is, for the Fourier coefficients ``u_k`` of ``u`` (``k`` in cycles per unit length), the
system of ODEs

    d u_k / dt = L_k u_k + N_k(u),   L_k = -nu (2 pi k)^2,   N_k(u) = -i pi k (u^2)_k.

The stiff linear part is integrated exactly and the nonlinear part with fourth-order
accuracy by the exponential time differencing scheme ETDRK4 of Cox and Matthews (J. Comput.
Phys. 176, 2002). Its coefficients are combinations of ``phi``-functions of ``h L_k`` such as
``(exp(z) - 1 - z - z^2/2) / z^3``, whose direct evaluation cancels catastrophically for
small ``|z|`` (including ``k = 0``); they are computed instead as means of the same
expressions over points on a circle of radius 1 around each ``z`` (Kassam and Trefethen,
SIAM J. Sci. Comput. 26, 2005), a trapezoidal rule for Cauchy's integral formula that is
accurate to rounding for every ``z``.

The square ``u^2`` is formed on the grid and dealiased with the 2/3 rule: only the modes
``|k| < n / 3`` of ``u`` enter the product and only those of the product are kept, so the
nonlinear term of every retained mode is that of the Fourier-Galerkin truncation, free of
aliasing. The mean of ``u`` (mode ``k = 0``) is conserved exactly by the scheme, as by the
equation.

Everything is batched over the first dimension and runs on the device of the input, in float64.
:func:`generate_burgers` draws the FNO paper's initial conditions and returns ``(u0, u(T))``.
"""

from __future__ import annotations

import math

import torch

from nol_fast.data.grf import sample_grf, wavenumbers_squared
from nol_fast.progress import progress_bar

# Samples solved per call of the solver in generate_burgers; bounds the memory of large datasets.
_GENERATION_BATCH = 256

# Courant number U dt / dx of the default time step (see solve_burgers).
_COURANT = 0.5

# Exponential factors below this are dropped (a relative contribution below rounding), and
# every _FLUSH_EVERY steps coefficients below _FLUSH_BELOW are set to zero; so no coefficient
# ever becomes subnormal (CPU arithmetic on subnormal numbers is about 100 times slower).
_NEGLIGIBLE = 1e-16
_FLUSH_EVERY = 4
_FLUSH_BELOW = 1e-200

# Points on the upper half of the contour circle of the phi-function evaluation; with the
# mirror images (the functions are real on the real axis) the trapezoidal rule uses 64 points.
_CONTOUR_POINTS = 32


def _step_count(interval: float, dt: float) -> int:
    """Equal steps of at most ``dt`` that cover ``interval``: ``ceil(interval / dt)``.

    A quotient within 1e-9 of an integer counts as that integer, so that e.g. ``0.3 / 0.01``
    (30.000000000000004 in floating point) is 30 steps, not 31.
    """
    return math.ceil(interval / dt - 1e-9) if interval > 0 else 0


def _etdrk4_coefficients(
    linear: torch.Tensor, dt: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``exp(hL)``, ``exp(hL/2)`` and the ETDRK4 weights ``Q, f1, f2, f3`` for a real ``L``.

    Each weight is ``h`` times a function of ``z = hL`` that is entire but cancels numerically
    near ``z = 0``; it is the mean of that function over ``z + exp(i theta)`` (Cauchy's formula
    by the trapezoidal rule), which is accurate to rounding for any real ``z``.
    """
    z = dt * linear
    theta = math.pi * (torch.arange(_CONTOUR_POINTS, dtype=torch.float64, device=linear.device)
                       + 0.5) / _CONTOUR_POINTS
    roots = torch.polar(torch.ones_like(theta), theta)
    lr = z.to(torch.complex128).unsqueeze(-1) + roots  # (..., points)
    exp_lr = torch.exp(lr)
    q = dt * ((torch.exp(lr / 2) - 1) / lr).mean(-1).real
    f1 = dt * ((-4 - lr + exp_lr * (4 - 3 * lr + lr**2)) / lr**3).mean(-1).real
    f2 = dt * ((2 + lr + exp_lr * (lr - 2)) / lr**3).mean(-1).real
    f3 = dt * ((-4 - 3 * lr - lr**2 + exp_lr * (4 - lr)) / lr**3).mean(-1).real
    # Factors below rounding are set to zero: they change nothing but would let the decaying
    # modes sink into subnormal numbers, on which CPU arithmetic is very slow.
    e, e2 = torch.exp(z), torch.exp(z / 2)
    e = torch.where(e < _NEGLIGIBLE, 0.0, e)
    e2 = torch.where(e2 < _NEGLIGIBLE, 0.0, e2)
    return e, e2, q, f1, f2, f3


def _default_dt(resolution: int, amplitude: float) -> float:
    """``0.5 / (resolution * amplitude)``: a Courant number of 0.5 (see :func:`solve_burgers`)."""
    return math.inf if amplitude <= 0 else _COURANT / (resolution * amplitude)


def solve_burgers(
    u0: torch.Tensor,
    viscosity: float,
    time: float,
    *,
    dt: float | None = None,
    n_records: int | None = None,
) -> torch.Tensor:
    """Solve the periodic viscous Burgers equation ``u_t + (u^2/2)_x = nu u_xx`` from ``u0``.

    Pseudo-spectral in space (2/3-rule dealiasing of ``u^2``), ETDRK4 in time; see the module
    docstring. The grid must resolve the solution: fronts are about ``nu / U`` wide
    (``U = max |u0|``), and ``n`` of about ``2 U / nu`` or more resolves them. For the FNO
    data (``U`` about 2), 256 points are ample for ``nu = 0.1``, 1024 suffice for
    ``nu = 0.01`` and 2048 to 4096 for ``nu = 0.001`` (doubling the grid then changes the
    solution by less than 1e-9 relative). An under-resolved solution is not detected.

    Parameters
    ----------
    u0 : Tensor
        Initial condition of shape ``(batch, n)``, real, sampled at the points ``j / n``.
    viscosity : float
        ``nu > 0``.
    time : float
        Final time ``T >= 0``.
    dt : float, optional
        Largest time step. The default, ``0.5 / (n U)`` with ``U = max |u0|`` over the batch, is
        a Courant number of 0.5: by the maximum principle ``|u| <= U`` at all times, so the
        advection of the highest retained mode (``|k| < n / 3``) moves at most ``pi / 3``
        radians per step, inside the stability region of the explicit part (classical RK4's
        when ``nu = 0``). The viscous term is integrated exactly, so ``nu`` does not limit the
        step; it sets the resolution needed instead. With FNO-type data the time error at the
        default step is about 2e-9 relative (``nu = 0.1``, ``n = 256``) and 1e-11
        (``nu = 0.01, n = 1024``; ``nu = 0.001, n = 4096``), well below the float32 rounding
        of the data set. Each of the ``n_records`` intervals of length ``T / n_records`` is
        covered by ``ceil(T / (n_records * dt))`` equal steps (``ceil(T / dt)`` steps without
        records; a quotient within 1e-9 of an integer counts as that integer), so the step
        taken is at most ``dt`` and lands exactly on the record times.
    n_records : int, optional
        Return ``u`` at the ``n_records`` times ``T * j / n_records``, ``j = 1 ... n_records``,
        instead of only at ``T``.

    Returns
    -------
    Tensor
        ``u(., T)`` of shape ``(batch, n)``, or with ``n_records`` the space-time field of shape
        ``(batch, n_records, n)``; on ``u0``'s device, in ``u0``'s dtype (computed in float64).

    Examples
    --------
    >>> x = torch.arange(128, dtype=torch.float64) / 128
    >>> u0 = torch.sin(2 * math.pi * x).unsqueeze(0)
    >>> u = solve_burgers(u0, viscosity=0.05, time=0.5)
    >>> u.shape
    torch.Size([1, 128])
    >>> abs(float(u.mean())) < 1e-15  # the mean is conserved
    True
    >>> solve_burgers(u0.float(), 0.05, 0.5, n_records=5).shape
    torch.Size([1, 5, 128])
    """
    if not isinstance(u0, torch.Tensor) or u0.dim() != 2:
        raise ValueError(f"u0 must be a tensor of shape (batch, n), got "
                         f"{tuple(u0.shape) if isinstance(u0, torch.Tensor) else type(u0)}")
    if not u0.is_floating_point():
        raise ValueError(f"u0 must be a real floating tensor, got dtype {u0.dtype}")
    n = u0.shape[-1]
    if n < 4:
        raise ValueError(f"u0 must have at least 4 grid points, got {n}")
    if not viscosity > 0 or not math.isfinite(viscosity):
        raise ValueError(f"viscosity must be positive and finite, got {viscosity!r}")
    if not time >= 0 or not math.isfinite(time):
        raise ValueError(f"time must be finite and >= 0, got {time!r}")
    if dt is not None and not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be positive and finite, got {dt!r}")
    if n_records is not None and (not isinstance(n_records, int) or n_records < 1):
        raise ValueError(f"n_records must be a positive integer or None, got {n_records!r}")

    records = 1 if n_records is None else n_records
    u = u0.to(torch.float64)
    if dt is None:
        dt = _default_dt(n, float(u.abs().max()) if u.numel() else 0.0)
    interval = time / records
    steps = _step_count(interval, dt)

    wavenumber = wavenumbers_squared((n,), device=u.device).sqrt()  # 0 ... n // 2
    dealias = (3 * wavenumber < n).to(torch.float64)
    derivative = -1j * math.pi * wavenumber * dealias  # N_k = derivative * (u^2)_k

    def nonlinear(v_hat: torch.Tensor) -> torch.Tensor:
        v = torch.fft.irfft(v_hat * dealias, n=n)
        return derivative * torch.fft.rfft(v * v)

    v_hat = torch.fft.rfft(u)
    out = []
    if steps:
        h = interval / steps
        e, e2, q, f1, f2, f3 = _etdrk4_coefficients(-viscosity * (2 * math.pi * wavenumber) ** 2, h)
    for _ in range(records):
        for step in range(steps):
            if step % _FLUSH_EVERY == 0:
                v_hat = v_hat.masked_fill(v_hat.abs() < _FLUSH_BELOW, 0)
            nv = nonlinear(v_hat)
            a = e2 * v_hat + q * nv
            na = nonlinear(a)
            b = e2 * v_hat + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v_hat = e * v_hat + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
        out.append(torch.fft.irfft(v_hat, n=n) if steps else u.clone())
    result = out[-1] if n_records is None else torch.stack(out, dim=1)
    return result.to(u0.dtype)


def generate_burgers(
    n_samples: int,
    resolution: int = 256,
    viscosity: float = 0.1,
    time: float = 1.0,
    seed: int = 0,
    n_records: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``(u(., 0), u(., T))`` pairs of the viscous Burgers equation (FNO benchmark).

    The initial conditions are Gaussian random fields with covariance
    ``625 (-Laplacian + 25 I)^(-2)``, the FNO paper's, i.e.
    ``sample_grf(n_dims=1, alpha=2.0, tau=5.0, sigma=25.0)``, with their spatial mean removed,
    as the paper's generator sets the ``k = 0`` coefficient to zero. They are drawn from a
    ``torch.Generator`` on ``device`` seeded with ``seed`` and solved with
    :func:`solve_burgers` in batches of 256, each with the default time step of its largest
    ``|u0|``; the same arguments give the same data.

    The paper used ``nu = 0.1``, ``T = 1`` and 8192 points, subsampled for training; the
    solutions of ``nu = 0.1`` are smooth enough for the default 256 points (doubling them
    changes the result by less than 1e-8 relative). Smaller viscosities need finer grids
    (see :func:`solve_burgers`).

    Parameters
    ----------
    n_samples : int
        Number of pairs.
    resolution : int
        Grid points, at ``j / resolution``.
    viscosity, time : float
        ``nu`` and ``T``.
    seed : int
        Seed of the generator.
    n_records : int, optional
        Return the solution at ``n_records`` equally spaced times in ``(0, T]`` as channels.
    device, dtype
        Where to generate and the dtype of the result (computed in float64).
    progress : bool, optional
        A progress bar over the batches: ``None`` shows it when stderr is a terminal,
        ``True`` always, ``False`` never.

    Returns
    -------
    x, y : Tensor
        ``x = u0`` of shape ``(n_samples, 1, resolution)``; ``y = u(T)`` of the same shape, or
        with ``n_records`` of shape ``(n_samples, n_records, resolution)``.

    Examples
    --------
    >>> x, y = generate_burgers(4, resolution=64, progress=False)
    >>> x.shape, y.shape
    (torch.Size([4, 1, 64]), torch.Size([4, 1, 64]))
    >>> _, y = generate_burgers(4, resolution=64, n_records=10, progress=False)
    >>> y.shape
    torch.Size([4, 10, 64])
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(resolution, int) or resolution < 4:
        raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}")
    if not viscosity > 0 or not math.isfinite(viscosity):
        raise ValueError(f"viscosity must be positive and finite, got {viscosity!r}")
    if not time > 0 or not math.isfinite(time):
        raise ValueError(f"time must be positive and finite, got {time!r}")
    if n_records is not None and (not isinstance(n_records, int) or n_records < 1):
        raise ValueError(f"n_records must be a positive integer or None, got {n_records!r}")
    if not dtype.is_floating_point or dtype.is_complex:
        raise ValueError(f"dtype must be a real floating dtype, got {dtype}")
    generator = torch.Generator(device=device).manual_seed(seed)
    inputs, targets = [], []
    n_batches = math.ceil(n_samples / _GENERATION_BATCH)
    with progress_bar(n_batches, "burgers", progress) as bar:
        for start in range(0, n_samples, _GENERATION_BATCH):
            count = min(_GENERATION_BATCH, n_samples - start)
            u0 = sample_grf(count, resolution, n_dims=1, alpha=2.0, tau=5.0, sigma=25.0,
                            generator=generator, device=device, dtype=torch.float64)
            u0 = u0 - u0.mean(dim=-1, keepdim=True)
            u = solve_burgers(u0, viscosity, time, n_records=n_records)
            inputs.append(u0.unsqueeze(1).to(dtype))
            targets.append((u.unsqueeze(1) if n_records is None else u).to(dtype))
            if bar is not None:
                bar.update(1)
    return torch.cat(inputs), torch.cat(targets)
