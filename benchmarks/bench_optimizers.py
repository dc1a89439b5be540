"""One optimizer step: nol_fast's multi-tensor optimizers against torch.optim and adabound.

Parameter sets and candidates are those of ``nol-fast benchmark optim``
(:mod:`nol_fast.bench.optim`): the parameters of ``FNO(n_modes=(16, 16), hidden_channels=32)``
(complex weights as their real views, so every candidate, torch's fused AdamW included, takes
them) and 100 odd-sized fp32 tensors totalling 10 M elements; nol_fast's FusedAdamW and AdaBound
with the automatic and the reference backend, torch's AdamW for-loop, foreach and fused, and
the adabound package (skipped when it is not installed). Each group holds every candidate, so
pytest-benchmark's relative columns are the speed-ups; ``extra_info`` records the effective
bandwidth (an Adam step reads and writes about 28 bytes per fp32 parameter) next to the
measured copy bandwidth of the device::

    pytest benchmarks/bench_optimizers.py --benchmark-group-by=group \\
        --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.bench.optim import (
    BYTES_PER_PARAM,
    CANDIDATES,
    COPY,
    COPY_NUMEL,
    DEFAULT_REPEAT,
    PARAM_SETS,
    make_params,
    unavailable,
)
from nol_fast.bench.timing import synchronized

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# The adabound package calls deprecated overloads of Tensor.add/add_/addcmul_.
pytestmark = pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")


def record_bandwidth(benchmark, moved_bytes: int) -> None:
    """Store the effective bandwidth of the median round in ``extra_info['GB/s']``."""
    benchmark.extra_info["GB/s"] = round(moved_bytes / benchmark.stats.stats.median / 1e9, 2)


def test_copy_bandwidth(benchmark) -> None:
    src = torch.randn(COPY_NUMEL, device=DEVICE)
    dst = torch.empty_like(src)
    benchmark.group = COPY
    benchmark.pedantic(synchronized(lambda: dst.copy_(src), DEVICE), rounds=20, warmup_rounds=2)
    record_bandwidth(benchmark, 2 * 4 * COPY_NUMEL)


@pytest.mark.parametrize("candidate", list(CANDIDATES))
@pytest.mark.parametrize("param_set", list(PARAM_SETS))
def test_optimizer_step(benchmark, param_set: str, candidate: str) -> None:
    reason = unavailable(candidate)
    if reason is not None:
        pytest.skip(reason)
    params = make_params(param_set, DEVICE)
    optimizer = CANDIDATES[candidate](params)
    numel = sum(p.numel() for p in params)
    benchmark.group = f"{param_set} step"
    benchmark.extra_info.update(device=DEVICE.type, threads=torch.get_num_threads(), numel=numel)
    benchmark.pedantic(synchronized(optimizer.step, DEVICE), rounds=DEFAULT_REPEAT[param_set],
                       warmup_rounds=1)
    record_bandwidth(benchmark, BYTES_PER_PARAM * numel)
