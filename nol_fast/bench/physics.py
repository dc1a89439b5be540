"""``nol-fast benchmark physics``: the fused PDE residuals against the reference composition.

For the 2-D Navier–Stokes and Darcy residuals at 8 x 1 x 128 x 128 this times the mean square
of the residual, as the PDE term of a physics-informed loss computes it, two ways:

* ``reference``: the composition of the derivative operators of :mod:`nol_fast.physics`, as a
  user would write it (:mod:`nol_fast.physics.residuals`), differentiated by autograd;
* ``fused``: :meth:`nol_fast.physics.pde_residual.PDEResidual.mean_square`, the custom op with
  the device's automatic backend (the C++ kernel or the fused spectral path on the CPU).

Each is timed forward (no autograd), backward alone (on a graph built once and kept) and
forward+backward, in interleaved rounds (:mod:`nol_fast.bench.timing`). A ``floor`` row per
residual times what the fused path cannot avoid: for Navier–Stokes its transforms alone (three
forward and three inverse units each way), for Darcy one elementwise pass over the tensors each
direction reads and writes (forward: u and a in, r out; backward: r, u and a in, the two
gradients out). On the CPU both run on the allocator of nol_fast's Trainer, where the loss
trains (:func:`~nol_fast.bench.timing.trainer_allocator`). ``benchmarks/bench_physics.py``
times the same steps with pytest-benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nol_fast.bench.timing import CLOCKS, describe_threads, interleaved_medians
from nol_fast.data.navier_stokes import kolmogorov_forcing
from nol_fast.physics.grid import Grid
from nol_fast.physics.pde_residual import PDEResidual
from nol_fast.physics.residuals import darcy_residual, navier_stokes_residual

#: (batch, channels, nx, ny) of the benchmark fields
SHAPE = (8, 1, 128, 128)
RESIDUALS = ("navier_stokes", "darcy")
IMPLEMENTATIONS = ("reference", "fused")
VISCOSITY = 1e-3
DT = 1e-2
HISTORY = 2  # records before the prediction: the 2nd-order time stencil reads three


@dataclass
class Timing:
    """Median milliseconds of one implementation of one residual."""

    residual: str
    name: str
    forward_ms: float
    backward_ms: float
    train_ms: float


def sample_fields(residual: str, device: torch.device, seed: int = 0) -> dict:
    """Seeded fields for ``residual``: the prediction ``u``, the ``inputs`` (a history of
    vorticity records, or a 3 / 12 piecewise-constant Darcy coefficient) and the forcing (the
    FNO paper's Kolmogorov forcing; Darcy's constant 1)."""
    g = torch.Generator().manual_seed(seed)
    batch, _, nx, ny = SHAPE
    u = torch.randn(SHAPE, generator=g).to(device)
    if residual == "navier_stokes":
        inputs = torch.randn(batch, HISTORY, nx, ny, generator=g)
        return {"u": u, "inputs": inputs.to(device), "forcing": kolmogorov_forcing(nx).to(device)}
    inputs = torch.where(torch.randn(batch, 1, nx, ny, generator=g) > 0, 12.0, 3.0)
    return {"u": u, "inputs": inputs.to(device), "forcing": 1.0}


def residual_functions(residual: str, forcing) -> dict[str, Callable[..., torch.Tensor]]:
    """``fn(u, inputs) -> mean(r²)`` for each implementation of ``residual``."""
    if residual == "navier_stokes":
        grid, params = Grid(dt=DT), {"viscosity": VISCOSITY, "forcing": forcing}
        composition = navier_stokes_residual
    else:
        grid, params = Grid(periodic=False), {"forcing": forcing}
        composition = darcy_residual
    bound = PDEResidual(residual, grid=grid, **params)

    def reference(u, inputs):
        return composition(u, inputs, grid, **params).square().mean()

    return {"reference": reference, "fused": bound.mean_square}


def _floor_steps(residual: str, fields: dict[str, torch.Tensor]) -> dict[str, Callable]:
    """What the fused path cannot avoid, forward and backward (see the module docstring)."""
    u, a = fields["u"], fields["inputs"][:, :1]
    if residual == "navier_stokes":
        spectrum = torch.fft.rfft2(u)

        def transforms():  # as the fused path calls them: one field per call
            torch.fft.rfft2(u)
            for _ in range(2):
                torch.fft.irfft2(spectrum, s=u.shape[-2:])
            for _ in range(2):
                torch.fft.rfft2(u)
            torch.fft.irfft2(spectrum, s=u.shape[-2:])
        return {"forward": transforms, "backward": transforms}
    r, grad_u, grad_a = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)

    def forward_pass():
        torch.add(u, a, out=r)  # reads u and a, writes r

    def backward_pass():
        torch.addcmul(r, u, a, out=grad_u)  # reads r, u, a, writes two outputs
        torch.mul(r, a, out=grad_a)
    return {"forward": forward_pass, "backward": backward_pass}


def time_residual(residual: str, device: torch.device, repeat: int = 20, warmup: int = 3,
                  clock: str = "wall") -> list[Timing]:
    """Median times of every implementation of ``residual``, and of its floor."""
    fields = sample_fields(residual, device)
    u, inputs = fields["u"], fields["inputs"]
    steps: dict[tuple[str, str], Callable[[], object]] = {}
    for name, fn in residual_functions(residual, fields["forcing"]).items():
        def forward(fn=fn):
            with torch.no_grad():
                fn(u, inputs)

        leaf = u.detach().requires_grad_()
        loss = fn(leaf, inputs)  # the graph the backward step replays

        def backward(loss=loss, leaf=leaf):
            torch.autograd.grad(loss, leaf, retain_graph=True)

        def train(fn=fn, leaf=leaf):
            torch.autograd.grad(fn(leaf, inputs), leaf)

        steps[name, "forward"], steps[name, "backward"], steps[name, "train"] = (
            forward, backward, train)
    floor = _floor_steps(residual, fields)
    steps["floor", "forward"], steps["floor", "backward"] = floor["forward"], floor["backward"]
    medians = interleaved_medians(steps, device, repeat, warmup, CLOCKS[clock])
    timings = [Timing(residual, name, medians[name, "forward"], medians[name, "backward"],
                      medians[name, "train"]) for name in IMPLEMENTATIONS]
    timings.append(Timing(residual, "floor", medians["floor", "forward"],
                          medians["floor", "backward"], float("nan")))
    return timings


def format_table(timings: Sequence[Timing]) -> str:
    """Times and the reference/fused speed-ups (> 1: the fused path is faster)."""
    header = (f"{'residual':<15}{'implementation':<16}{'fwd ms':>9}{'bwd ms':>9}"
              f"{'fwd+bwd ms':>12}{'speed-up fwd/bwd/both':>24}")
    lines = [header, "-" * len(header)]
    by_key = {(t.residual, t.name): t for t in timings}
    for t in timings:
        ref = by_key[t.residual, "reference"]
        if t.name == "fused":
            ratio = (f"{ref.forward_ms / t.forward_ms:.2f}x/{ref.backward_ms / t.backward_ms:.2f}x"
                     f"/{ref.train_ms / t.train_ms:.2f}x")
        else:
            ratio = "-"
        train = "-" if t.name == "floor" else f"{t.train_ms:.2f}"
        lines.append(f"{t.residual:<15}{t.name:<16}{t.forward_ms:>9.3f}{t.backward_ms:>9.3f}"
                     f"{train:>12}{ratio:>24}")
    lines.append("speed-up: reference time / fused time; floor: the transforms (Navier-Stokes) "
                 "or one elementwise pass over the same tensors (Darcy) alone")
    return "\n".join(lines)


def run(residuals: Sequence[str], device: torch.device, repeat: int = 20,
        clock: str = "wall") -> str:
    """Time ``residuals`` on ``device`` over ``repeat`` interleaved rounds; the table.

    ``clock`` is ``'wall'`` or ``'cpu'`` (the process's CPU time; CPU devices only), see
    :data:`nol_fast.bench.timing.CLOCKS`.

    Examples
    --------
    >>> print(run(["darcy"], torch.device("cpu"), repeat=1))  # doctest: +SKIP
    """
    if not residuals:
        raise ValueError(f"no residual given; choose from: {', '.join(RESIDUALS)}")
    if clock not in CLOCKS or (clock == "cpu" and device.type != "cpu"):
        raise ValueError(f"clock must be one of: {', '.join(CLOCKS)} ('cpu' for CPU devices "
                         f"only), got {clock!r} on {device.type}")
    unknown = [r for r in residuals if r not in RESIDUALS]
    if unknown:
        raise ValueError(f"unknown residual(s) {unknown}; choose from: {', '.join(RESIDUALS)}")
    threads = describe_threads(device)  # sets up the allocator before anything runs
    timings = [t for r in residuals for t in time_residual(r, device, repeat, clock=clock)]
    shape = "x".join(map(str, SHAPE))
    return (f"physics residuals on {device} ({threads}), "
            f"median of {repeat} ({clock} clock); fields {shape}, Navier-Stokes with {HISTORY} "
            f"history records\n"
            f"{format_table(timings)}")
