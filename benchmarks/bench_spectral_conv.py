"""Spectral convolution: every backend on this device against neuraloperator's SpectralConv.

Shapes, inputs and layers are those of ``nol-fast benchmark spectral``
(:mod:`nol_fast.bench.spectral`). Each group (shape x forward / forward+backward) holds all
implementations, so pytest-benchmark's relative columns are the speed-ups::

    pytest benchmarks/bench_spectral_conv.py --benchmark-group-by=group \\
        --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.bench.spectral import (
    NEURALOP,
    SHAPES,
    candidates,
    forward_step,
    sample_input,
    train_step,
)
from nol_fast.bench.timing import synchronized
from nol_fast.ops.spectral_conv.op import BACKENDS

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
STEPS = {"forward": forward_step, "forward+backward": train_step}


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("implementation", [*BACKENDS, NEURALOP])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_spectral_conv(benchmark, shape, implementation, step):
    layers = candidates(shape, DEVICE)
    if implementation not in layers:
        pytest.skip(f"{implementation} is not available on {DEVICE.type}")
    run = STEPS[step](layers[implementation], sample_input(shape, DEVICE))
    benchmark.group = f"{shape} {step}"
    benchmark.extra_info.update(shape=shape, device=DEVICE.type, threads=torch.get_num_threads())
    benchmark.pedantic(synchronized(run, DEVICE), rounds=20, warmup_rounds=3)
