"""The whole FNO training step: nol_fast's Trainer against neuraloperator, per setup.

Setups, candidates, data and optimizer settings are those of ``nol-fast benchmark e2e``
(:mod:`nol_fast.bench.e2e`): neuraloperator's FNO in a minimal loop with torch's AdamW and in
neuraloperator's own Trainer, and nol_fast's Trainer in fp32 and with its default precision, all
from the same weights. Each benchmark times one epoch of ``STEPS_PER_EPOCH`` steps; each group
holds one setup's candidates, so pytest-benchmark's relative columns are the speed-ups, and
``extra_info`` records the peak memory and the accuracy guard::

    pytest benchmarks/bench_e2e.py --benchmark-group-by=group \\
        --benchmark-columns=median,iqr,rounds

``nol-fast benchmark e2e`` runs the same candidates in interleaved rounds and prints the ratios.
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.bench.e2e import (
    GUARD_STEPS,
    GUARD_TOLERANCE,
    NAMES,
    NEURALOP_LOOP,
    SETUPS,
    STEPS_PER_EPOCH,
    candidates,
    guard_losses,
    make_batches,
    neuralop_missing,
    peak_memory_mb,
)
from nol_fast.bench.timing import trainer_allocator

DEVICE = torch.device("cpu")



@pytest.fixture(scope="module")
def guard():
    """Each candidate's loss after the guard epoch, per setup, computed once."""
    trainer_allocator(DEVICE)  # the same allocator for every candidate, built in any order
    return {name: guard_losses(candidates(setup, make_batches(setup, GUARD_STEPS, seed=1),
                                          DEVICE))
            for name, setup in SETUPS.items()}


@pytest.mark.parametrize("candidate", NAMES)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_training_step(benchmark, guard, setup: str, candidate: str) -> None:
    reason = neuralop_missing()
    if reason is not None:
        pytest.skip(reason)
    run = candidates(SETUPS[setup], make_batches(SETUPS[setup], STEPS_PER_EPOCH), DEVICE)[
        candidate]()
    run.epoch()  # first-call costs: allocation, optimizer state
    benchmark.group = f"e2e setup {setup}: {SETUPS[setup].describe()}"
    benchmark.pedantic(run.epoch, rounds=5, warmup_rounds=1)
    loss, dtype = guard[setup][candidate]
    reference = guard[setup][NEURALOP_LOOP][0]
    benchmark.extra_info.update(
        steps_per_round=STEPS_PER_EPOCH, dtype=str(dtype),
        peak_mib=round(peak_memory_mb(run.epoch, DEVICE), 1),
        guard_relative_difference=loss / reference - 1)
    assert abs(loss - reference) <= GUARD_TOLERANCE[dtype] * abs(reference)
