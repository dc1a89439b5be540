"""Fused PDE residuals against the composition of the derivative operators.

Fields, residuals and implementations are those of ``nol-fast benchmark physics``
(:mod:`nol_fast.bench.physics`): the 2-D Navier-Stokes and Darcy residuals at 8 x 1 x 128 x 128.
Each group (residual x step) holds both implementations, so pytest-benchmark's relative columns
are the speed-ups::

    pytest benchmarks/bench_physics.py --benchmark-group-by=group \\
        --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.bench.physics import IMPLEMENTATIONS, RESIDUALS, residual_functions, sample_fields
from nol_fast.bench.timing import synchronized, trainer_allocator

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
trainer_allocator(DEVICE)  # both implementations on the allocator the Trainer trains with
STEPS = ("forward", "backward", "forward+backward")


def _step(fn, fields, step):
    u, inputs = fields["u"], fields["inputs"]
    if step == "forward":
        def run():
            with torch.no_grad():
                fn(u, inputs)
        return run
    leaf = u.detach().requires_grad_()
    if step == "backward":
        loss = fn(leaf, inputs)
        return lambda: torch.autograd.grad(loss, leaf, retain_graph=True)
    return lambda: torch.autograd.grad(fn(leaf, inputs), leaf)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("residual", RESIDUALS)
def test_physics_residual(benchmark, residual, implementation, step):
    fields = sample_fields(residual, DEVICE)
    fn = residual_functions(residual, fields["forcing"])[implementation]
    benchmark.group = f"{residual} {step}"
    benchmark.extra_info.update(residual=residual, device=DEVICE.type,
                                threads=torch.get_num_threads())
    benchmark.pedantic(synchronized(_step(fn, fields, step), DEVICE), rounds=20, warmup_rounds=3)
