"""Property-based tests of the multi-tensor optimizer step: the C++ backend against the reference.

Hypothesis draws a parameter group (1 to 4 tensors of any size from 1 element, float32,
float64, bfloat16 or complex64, contiguous or not), the hyper-parameters of Adam/AdamW or
AdaBound/AMSBound, and per step an optional GradScaler hand-over (``grad_scale`` with
``found_inf`` 0 or 1). Two optimizers step copies of the group with the same gradients, one
on each backend: parameters and every state tensor must agree after every step. Tensors the
kernel cannot take (bfloat16, strided) go through the reference path, so a group
that mixes them also checks that each tensor is updated once, by one path.
"""

from __future__ import annotations

import torch
from conftest import require_extension
from hypothesis import given
from hypothesis import strategies as st

from nol_fast.optim import AdaBound, FusedAdam

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.complex64]
# Per dtype: (rtol, atol). The kernel takes float32 and float64 tensors (complex ones as their
# real views); its sqrt is correctly rounded where torch's CPU sqrt is sometimes one ulp off,
# so they agree to their rounding, not bit for bit. bfloat16 goes the reference path on both.
TOLERANCE = {torch.float32: (2e-5, 1e-6), torch.float64: (1e-12, 1e-14),
             torch.bfloat16: (0.0, 0.0), torch.complex64: (2e-5, 1e-6)}


@st.composite
def groups(draw):
    """``[(shape, dtype, transposed)]`` of one parameter group."""
    tensors = []
    for _ in range(draw(st.integers(1, 4))):
        shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
        tensors.append((shape, draw(st.sampled_from(DTYPES)), draw(st.booleans())))
    return tensors


ADAM = st.fixed_dictionaries({
    "lr": st.floats(1e-4, 0.3), "betas": st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.999)),
    "eps": st.sampled_from([1e-8, 1e-3]), "weight_decay": st.sampled_from([0.0, 0.1]),
    "amsgrad": st.booleans(), "maximize": st.booleans(),
    "decoupled_weight_decay": st.booleans(),
})
ADABOUND = st.fixed_dictionaries({
    "lr": st.floats(1e-4, 0.3), "betas": st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.999)),
    "final_lr": st.floats(1e-3, 0.5), "gamma": st.sampled_from([0.0, 1e-3, 0.5]),
    "eps": st.sampled_from([1e-8, 1e-3]), "weight_decay": st.sampled_from([0.0, 0.1]),
    "amsbound": st.booleans(), "decoupled_weight_decay": st.booleans(),
})
# Per step: None (no AMP), or (grad_scale, found_inf) as GradScaler hands them over.
STEPS = st.lists(st.one_of(st.none(), st.tuples(st.sampled_from([1.0, 1024.0]),
                                                st.sampled_from([0.0, 1.0]))),
                 min_size=1, max_size=4)


def make_params(group, seed):
    g = torch.Generator().manual_seed(seed)
    params = []
    for shape, dtype, transposed in group:
        real = torch.randn(shape[::-1] if transposed else shape, generator=g, dtype=torch.float64)
        p = real.t() if transposed else real
        p = torch.view_as_complex(torch.stack((p, p.flip(0)), -1)) if dtype.is_complex else p
        params.append(p.to(dtype).detach().requires_grad_(True))
    return params


def run_both(optimizer_class, hyper, group, steps, seed):
    require_extension()
    params = {b: make_params(group, seed) for b in ("reference", "cpu")}
    optimizers = {b: optimizer_class(params[b], backend=b, **hyper) for b in params}
    g = torch.Generator().manual_seed(seed + 1)
    for amp in steps:
        for i, p in enumerate(params["reference"]):
            grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            grad = grad * (amp[0] if amp else 1.0)
            for b in params:
                params[b][i].grad = grad.clone()
        for optimizer in optimizers.values():
            if amp is None:
                optimizer.step()
            else:
                optimizer.step(grad_scale=torch.tensor(amp[0]), found_inf=torch.tensor(amp[1]))
        for p, q in zip(params["cpu"], params["reference"], strict=True):
            rtol, atol = TOLERANCE[q.dtype]
            torch.testing.assert_close(p.detach(), q.detach(), rtol=rtol, atol=atol)
            state, expected = optimizers["cpu"].state[p], optimizers["reference"].state[q]
            assert state.keys() == expected.keys()
            for key, value in expected.items():
                torch.testing.assert_close(state[key], value, rtol=rtol, atol=atol)


@given(group=groups(), hyper=ADAM, steps=STEPS, seed=st.integers(0, 2**16))
def test_adam_step_cpu_backend_matches_the_reference(group, hyper, steps, seed):
    run_both(FusedAdam, hyper, group, steps, seed)


@given(group=groups(), hyper=ADABOUND, steps=STEPS, seed=st.integers(0, 2**16))
def test_adabound_step_cpu_backend_matches_the_reference(group, hyper, steps, seed):
    run_both(AdaBound, hyper, group, steps, seed)

