"""One optimizer step: nol_fast's multi-tensor optimizers against torch.optim and adabound.

Two parameter sets: the parameters of ``FNO(n_modes=(16, 16), hidden_channels=32)`` (complex
weights as their real views, so every candidate, torch's fused AdamW included, takes them), and
100 odd-sized fp32 tensors totalling 10 M elements. Each group holds every candidate, so
pytest-benchmark's relative columns are the speed-ups; ``extra_info`` records the effective
bandwidth (an Adam step reads and writes about 28 bytes per fp32 parameter) next to the
measured copy bandwidth of the device::

    pytest benchmarks/bench_optimizers.py --benchmark-group-by=group \\
        --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

from collections.abc import Callable

import adabound
import pytest
import torch

from nol_fast.models import FNO
from nol_fast.optim import AdaBound, FusedAdamW

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BYTES_PER_PARAM = 28  # Adam: read p, g, m, v; write p, m, v (fp32)
COPY_NUMEL = 10_000_000

# The adabound package calls deprecated overloads of Tensor.add/add_/addcmul_.
pytestmark = pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")

CANDIDATES: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "nol_fast FusedAdamW": lambda p: FusedAdamW(p, lr=1e-3),
    "torch AdamW foreach=False": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=False),
    "torch AdamW foreach=True": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=True),
    "torch AdamW fused=True": lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True),
    "adabound AdaBound": lambda p: adabound.AdaBound(p, lr=1e-3, final_lr=0.1),
    "nol_fast AdaBound": lambda p: AdaBound(p, lr=1e-3, final_lr=0.1),
}


def fno_shapes() -> list[torch.Size]:
    model = FNO(n_modes=(16, 16), hidden_channels=32)
    return [
        torch.view_as_real(p).shape if p.is_complex() else p.shape for p in model.parameters()
    ]


def odd_shapes(count: int = 100, total: int = 10_000_000) -> list[tuple[int]]:
    """``count`` distinct odd lengths summing to ``total``."""
    sizes = [2 * (total // (2 * count)) - 2 * i - 1 for i in range(count)]
    sizes[0] += total - sum(sizes)
    return [(size,) for size in sizes]


PARAM_SETS: dict[str, Callable[[], list]] = {"FNO 16x16 h32": fno_shapes, "100 x 10M": odd_shapes}


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(function: Callable[[], object]) -> Callable[[], None]:
    """``function`` followed by a device synchronisation, so the timings cover the work."""

    def run() -> None:
        function()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    return run


def record_bandwidth(benchmark, moved_bytes: int) -> None:
    """Store the effective bandwidth of the median round in ``extra_info['GB/s']``."""
    benchmark.extra_info["GB/s"] = round(moved_bytes / benchmark.stats.stats.median / 1e9, 2)


def test_copy_bandwidth(benchmark) -> None:
    src = torch.randn(COPY_NUMEL, device=DEVICE)
    dst = torch.empty_like(src)
    benchmark.group = "copy 10M fp32"
    benchmark.pedantic(timed(lambda: dst.copy_(src)), rounds=20, warmup_rounds=2)
    record_bandwidth(benchmark, 2 * 4 * COPY_NUMEL)


@pytest.mark.parametrize("candidate", list(CANDIDATES))
@pytest.mark.parametrize("param_set", list(PARAM_SETS))
def test_optimizer_step(benchmark, param_set: str, candidate: str) -> None:
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in PARAM_SETS[param_set]():
        p = torch.randn(shape, generator=generator).to(DEVICE).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(DEVICE)
        params.append(p)
    optimizer = CANDIDATES[candidate](params)
    numel = sum(p.numel() for p in params)
    rounds = 20 if numel < 1_000_000 else 5
    benchmark.group = f"{param_set} step"
    benchmark.extra_info.update(device=DEVICE.type, threads=torch.get_num_threads(), numel=numel)
    benchmark.pedantic(timed(optimizer.step), rounds=rounds, warmup_rounds=1)
    record_bandwidth(benchmark, BYTES_PER_PARAM * numel)
