"""``nol-fast benchmark optim``: one optimizer step of nol_fast against torch.optim and adabound.

Two parameter sets (:data:`PARAM_SETS`): the parameters of a small 2-D FNO, where per-tensor
overhead weighs most, and 10 M elements in 100 odd-sized tensors, where memory bandwidth
does (odd lengths end every tensor off vector-width boundaries, so tail handling is timed). Every
candidate (:data:`CANDIDATES`) steps its own copies of the same parameters and fixed gradients,
and all of them, together with a device copy of 10 M fp32 elements, are timed in the same
interleaved rounds (:mod:`nol_fast.bench.timing`), so the table compares like with like and
relates each step to the bandwidth the device actually delivers.

An Adam-type step on fp32 reads the parameter, its gradient and both moments and writes back
the parameter and the moments: 28 bytes per element (:data:`BYTES_PER_PARAM`). That traffic over
the median step time is the effective bandwidth; its share of the copy bandwidth says how far
a step is from the memory-bound limit. ``benchmarks/bench_optimizers.py`` times the same sets
and candidates with pytest-benchmark.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nol_fast.bench.timing import interleaved_medians
from nol_fast.models import FNO
from nol_fast.ops.optim_step.op import resolve_backend
from nol_fast.optim import AdaBound, FusedAdamW

BYTES_PER_PARAM = 28  # Adam-type step on fp32: read p, g, m, v; write p, m, v
COPY_NUMEL = 10_000_000
COPY = "copy 10M fp32"  # the copy's key among the timed steps; not a candidate name

TORCH_FUSED = "torch AdamW fused=True"
ADABOUND = "adabound AdaBound"


def fno_shapes() -> list[torch.Size]:
    """Shapes of the parameters of ``FNO(n_modes=(16, 16), hidden_channels=32)``.

    Complex spectral weights appear as their real views (``torch.view_as_real(p).shape``), so
    every candidate, torch's fused AdamW included, can step them.

    Examples
    --------
    >>> sum(torch.Size(s).numel() for s in fno_shapes()) > 1_000_000
    True
    """
    model = FNO(n_modes=(16, 16), hidden_channels=32)
    return [
        torch.view_as_real(p).shape if p.is_complex() else p.shape for p in model.parameters()
    ]


def odd_shapes(count: int = 100, total: int = 10_000_000) -> list[tuple[int]]:
    """``count`` distinct odd 1-D lengths summing to ``total``.

    Examples
    --------
    >>> shapes = odd_shapes()
    >>> len(set(shapes)), sum(n for (n,) in shapes), all(n % 2 for (n,) in shapes)
    (100, 10000000, True)
    """
    sizes = [2 * (total // (2 * count)) - 2 * i - 1 for i in range(count)]
    sizes[0] += total - sum(sizes)
    return [(size,) for size in sizes]


# name: shapes of the fp32 tensors of the set
PARAM_SETS: dict[str, Callable[[], list]] = {"fno": fno_shapes, "10m": odd_shapes}
# Timed rounds when the caller gives none: the small set is quick and noisier, the large slow.
DEFAULT_REPEAT: dict[str, int] = {"fno": 20, "10m": 5}


def _adabound_package(params: list[Tensor]) -> torch.optim.Optimizer:
    import adabound

    return adabound.AdaBound(params, lr=1e-3, final_lr=0.1)


# name: optimizer over a list of parameters, at the hyper-parameters of the comparison
CANDIDATES: dict[str, Callable[[list[Tensor]], torch.optim.Optimizer]] = {
    "nol_fast FusedAdamW": lambda p: FusedAdamW(p, lr=1e-3),
    "nol_fast FusedAdamW reference": lambda p: FusedAdamW(p, lr=1e-3, backend="reference"),
    "torch AdamW foreach=False": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=False),
    "torch AdamW foreach=True": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
    TORCH_FUSED: lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True),
    "nol_fast AdaBound": lambda p: AdaBound(p, lr=1e-3, final_lr=0.1),
    "nol_fast AdaBound reference": lambda p: AdaBound(
        p, lr=1e-3, final_lr=0.1, backend="reference"
    ),
    ADABOUND: _adabound_package,
}

# ratio column: {row: anchor}; a ratio is the anchor's time over the row's.
RATIOS: dict[str, dict[str, str]] = {
    "vs torch fused": {
        name: TORCH_FUSED for name in CANDIDATES if "AdamW" in name and name != TORCH_FUSED
    },
    "vs adabound": {"nol_fast AdaBound": ADABOUND, "nol_fast AdaBound reference": ADABOUND},
    "vs reference": {
        "nol_fast FusedAdamW": "nol_fast FusedAdamW reference",
        "nol_fast AdaBound": "nol_fast AdaBound reference",
    },
}


def unavailable(candidate: str) -> str | None:
    """Why ``candidate`` cannot run here, or ``None``; only the adabound package is optional.

    Examples
    --------
    >>> unavailable("nol_fast FusedAdamW") is None
    True
    """
    if candidate == ADABOUND and importlib.util.find_spec("adabound") is None:
        return "the adabound package is not installed"
    return None


def make_params(param_set: str, device: torch.device, seed: int = 0) -> list[Tensor]:
    """Leaf fp32 tensors of ``param_set`` on ``device`` with fixed random gradients.

    The values come from a generator seeded with ``seed``, so every call, and so every
    candidate, starts from the same parameters and gradients.
    """
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in PARAM_SETS[param_set]():
        p = torch.randn(shape, generator=generator).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(device)
        params.append(p)
    return params


def _copies(params: Sequence[Tensor]) -> list[Tensor]:
    """Independent copies of ``params`` and their gradients (no shared memory)."""
    copies = []
    for p in params:
        copy = p.detach().clone().requires_grad_()
        copy.grad = p.grad.clone()
        copies.append(copy)
    return copies


@dataclass
class SetTiming:
    """Median milliseconds of one step of every candidate on one parameter set.

    ``copy_ms`` is the median of the 10 M element copy timed in the same rounds; ``skipped``
    maps candidates that could not run to the reason.
    """

    param_set: str
    numel: int
    tensors: int
    repeat: int
    copy_ms: float
    step_ms: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def copy_gbps(self) -> float:
        """Copy bandwidth in GB/s: 4 bytes read and 4 written per element."""
        return 2 * 4 * COPY_NUMEL / self.copy_ms / 1e6

    def gbps(self, candidate: str) -> float:
        """Effective bandwidth of ``candidate``'s step in GB/s (28 bytes per parameter)."""
        return BYTES_PER_PARAM * self.numel / self.step_ms[candidate] / 1e6


def set_size(param_set: str) -> tuple[int, int]:
    """``(numel, tensor count)`` of ``param_set``."""
    shapes = PARAM_SETS[param_set]()
    return sum(torch.Size(s).numel() for s in shapes), len(shapes)


def time_set(param_set: str, device: torch.device, repeat: int, seed: int = 0) -> SetTiming:
    """Median step time of every available candidate on ``param_set``, and of the copy.

    One warm-up round (which also creates the optimizer state), then ``repeat`` interleaved
    rounds, each stepping every candidate once and running the copy once.
    """
    base = make_params(param_set, device, seed)
    skipped = {name: reason for name in CANDIDATES if (reason := unavailable(name)) is not None}
    optimizers = {name: make(_copies(base)) for name, make in CANDIDATES.items()
                  if name not in skipped}
    numel, tensors = sum(p.numel() for p in base), len(base)
    del base
    src = torch.randn(COPY_NUMEL, generator=torch.Generator().manual_seed(seed)).to(device)
    dst = torch.empty_like(src)
    steps: dict[str, Callable[[], object]] = {COPY: lambda: dst.copy_(src)}
    steps.update({name: optimizer.step for name, optimizer in optimizers.items()})
    with warnings.catch_warnings():
        # The adabound package calls deprecated overloads of Tensor.add/add_/addcmul_.
        warnings.filterwarnings("ignore", "This overload of add", UserWarning)
        medians = interleaved_medians(steps, device, repeat, warmup=1)
    copy_ms = medians.pop(COPY)
    return SetTiming(param_set, numel, tensors, repeat, copy_ms, medians, skipped)


def _significant(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits and no exponent, e.g. ``57.00``, ``0.05123``."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{max(0, digits - 1 - math.floor(math.log10(value)))}f}"


def format_table(timings: Sequence[SetTiming]) -> str:
    """One table per set: ms per step, GB/s, % of copy bandwidth and speed-up ratios."""
    columns = list(RATIOS)
    header = (f"{'candidate':<30}{'ms/step':>10}{'GB/s':>8}{'% of copy':>11}"
              + "".join(f"{c:>16}" for c in columns))
    blocks = []
    for t in timings:
        title = (f"{t.param_set}: median of {t.repeat} rounds; {COPY}: "
                 f"{_significant(t.copy_ms)} ms = {t.copy_gbps:.1f} GB/s")
        lines = [title, header, "-" * len(header)]
        for name, ms in t.step_ms.items():
            ratios = []
            for column in columns:
                anchor = RATIOS[column].get(name)
                ratios.append("-" if anchor not in t.step_ms else f"{t.step_ms[anchor] / ms:.2f}x")
            lines.append(f"{name:<30}{_significant(ms):>10}{t.gbps(name):>8.2f}"
                         f"{100 * t.gbps(name) / t.copy_gbps:>11.1f}"
                         + "".join(f"{r:>16}" for r in ratios))
        lines += [f"{name}: skipped ({reason})" for name, reason in t.skipped.items()]
        blocks.append("\n".join(lines))
    blocks.append(
        f"GB/s: {BYTES_PER_PARAM} bytes per parameter (read p, g, m, v; write p, m, v) "
        "/ step time\n"
        f"% of copy: GB/s / the GB/s of '{COPY}', timed in the same rounds\n"
        "ratios: anchor time / time, > 1 is faster; 'vs reference': the same nol_fast optimizer "
        "with backend='reference'"
    )
    return "\n\n".join(blocks)


def run(sets: Sequence[str], device: torch.device, repeat: int | None = None) -> str:
    """Time one optimizer step on each of ``sets`` on ``device`` and return the tables.

    ``repeat`` timed rounds per set; ``None`` takes :data:`DEFAULT_REPEAT` of each set.

    Examples
    --------
    >>> print(run(["fno"], torch.device("cpu"), repeat=3))  # doctest: +SKIP
    """
    unknown = [s for s in sets if s not in PARAM_SETS]
    if unknown or not sets:
        given = f"unknown parameter set(s) {unknown}" if unknown else "no parameter set given"
        raise ValueError(f"{given}; choose from: {', '.join(PARAM_SETS)}")
    if repeat is not None and repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat}")
    sizes = ", ".join(
        "{} ({:,} elements in {} tensors)".format(s, *set_size(s)) for s in sets
    )
    timings = [time_set(s, device, repeat or DEFAULT_REPEAT[s]) for s in sets]
    return (f"optimizer step on {device} ({torch.get_num_threads()} threads), nol_fast automatic "
            f"backend: {resolve_backend(None, device)}; {sizes}\n{format_table(timings)}")
