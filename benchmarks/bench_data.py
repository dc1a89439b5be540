"""Dataset generation: wall time of the PDE data generators in nol_fast.data.

Each generator runs once (one round, one iteration: the work is large and deterministic);
``extra_info`` records the throughput in samples per second and the process CPU time::

    pytest benchmarks/bench_data.py --benchmark-columns=min,rounds
"""

from __future__ import annotations

import time

import torch

from nol_fast.data.darcy import generate_darcy

# --------------------------------------------------------------------------------- Darcy

DARCY_SAMPLES = 1000
DARCY_RESOLUTION = 64


def test_generate_darcy(benchmark):
    """The FNO paper's Darcy flow: coefficients and SuperLU solves on the CPU."""
    cpu_seconds = []

    def generate():
        start = time.process_time()
        result = generate_darcy(DARCY_SAMPLES, resolution=DARCY_RESOLUTION, progress=False)
        cpu_seconds.append(time.process_time() - start)
        return result

    benchmark.group = "darcy"
    a, u = benchmark.pedantic(generate, rounds=1, iterations=1)
    assert a.shape == u.shape == (DARCY_SAMPLES, 1, DARCY_RESOLUTION, DARCY_RESOLUTION)
    seconds = benchmark.stats.stats.min
    # CPU time next to wall time: on a shared machine the wall time also counts waiting.
    benchmark.extra_info.update(
        samples=DARCY_SAMPLES, resolution=DARCY_RESOLUTION, threads=torch.get_num_threads(),
        samples_per_s=DARCY_SAMPLES / seconds, cpu_s=cpu_seconds[0],
    )
