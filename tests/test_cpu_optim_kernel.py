"""The C++ multi-tensor step (backend 'cpu') against the reference backend and torch.optim.

The kernel cuts all tensors of a group into chunks and runs them over OpenMP threads, so the
cases use sizes that span several chunks and the parallel path next to tiny tensors, float64
next to float32, and tensors the kernel must leave to the reference path (bfloat16, a
transposed layout). Each case steps two copies of the same state with the same gradients,
one per backend.
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.ops.optim_step.op import adabound_step, adam_step
from tests.conftest import require_extension

SHAPES = [(100_003,), (2 * 32_768 + 1,), (5,), (3, 7), (1,)]
STEPS = 5
TOLERANCE = {torch.float32: {"rtol": 1e-5, "atol": 1e-7},
             torch.float64: {"rtol": 1e-12, "atol": 0}}

ADAM = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8)
ADABOUND = dict(lr=1e-2, base_lr=2e-2, beta1=0.8, beta2=0.99, final_lr=0.05, gamma=0.1, eps=1e-7)


@pytest.fixture(autouse=True)
def _extension() -> None:
    require_extension()


def make_state(dtypes, amsgrad: bool, seed: int = 0):
    """Params, grads per step, moments and step counters for SHAPES (one dtype per tensor)."""
    generator = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=generator).to(d)
              for s, d in zip(SHAPES, dtypes, strict=True)]
    grads = [[torch.randn(p.shape, generator=generator).to(p.dtype) for p in params]
             for _ in range(STEPS)]  # fmt: skip
    zeros = lambda: [torch.zeros_like(p) for p in params]  # noqa: E731
    steps = [torch.tensor(0.0) for _ in params]
    return params, grads, zeros(), zeros(), zeros() if amsgrad else [], steps


def clone(state):
    params, grads, m, v, vmax, steps = state
    copy = lambda ts: [t.clone() for t in ts]  # noqa: E731
    return copy(params), grads, copy(m), copy(v), copy(vmax), copy(steps)


def run(step_fn, state, backend: str, **kwargs) -> None:
    params, grads, m, v, vmax, steps = state
    for step_grads in grads:
        step_fn(params, step_grads, m, v, vmax, steps, backend=backend, **kwargs)


def assert_backends_agree(step_fn, dtypes, **kwargs) -> None:
    kernel = make_state(dtypes, kwargs.get("amsgrad", kwargs.get("amsbound")))
    reference = clone(kernel)
    run(step_fn, kernel, "cpu", **kwargs)
    run(step_fn, reference, "reference", **kwargs)
    for name, ours, theirs in zip(("param", "grad", "exp_avg", "exp_avg_sq", "max"), kernel,
                                  reference, strict=False):  # fmt: skip
        if name == "grad":
            continue
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, **TOLERANCE.get(a.dtype, {}), msg=name)
    assert [s.item() for s in kernel[5]] == [float(STEPS)] * len(SHAPES)


ADAM_CASES = {
    "adam": dict(weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False),
    "adam_l2": dict(weight_decay=0.1, decoupled=False, amsgrad=False, maximize=False),
    "adamw": dict(weight_decay=0.1, decoupled=True, amsgrad=False, maximize=False),
    "amsgrad_maximize": dict(weight_decay=0.05, decoupled=True, amsgrad=True, maximize=True),
}
ADABOUND_CASES = {
    "adabound": dict(weight_decay=0.0, decoupled=False, amsbound=False),
    "adabound_l2": dict(weight_decay=0.1, decoupled=False, amsbound=False),
    "amsbound_w": dict(weight_decay=0.1, decoupled=True, amsbound=True),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_reference(case: str, dtype: torch.dtype) -> None:
    flags = ADAM_CASES[case]
    assert_backends_agree(adam_step, [dtype] * len(SHAPES), **ADAM, **flags)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ADABOUND_CASES)
def test_adabound_matches_reference(case: str, dtype: torch.dtype) -> None:
    flags = ADABOUND_CASES[case]
    assert_backends_agree(adabound_step, [dtype] * len(SHAPES), **ADABOUND, **flags)


def test_lerp_weight_at_least_half() -> None:
    """beta1 < 0.5 makes torch's lerp use its second formula; the kernel follows it."""
    flags = ADAM_CASES["adamw"]
    assert_backends_agree(adam_step, [torch.float32] * len(SHAPES), **{**ADAM, "beta1": 0.3},
                          **flags)


def test_mixed_group_sends_what_the_kernel_cannot_take_to_the_reference() -> None:
    """float32, float64, bfloat16 and a transposed tensor in one call."""
    dtypes = [torch.float32, torch.float64, torch.bfloat16, torch.float32, torch.float64]
    kernel = make_state(dtypes, amsgrad=True)
    # A transposed (non-contiguous) parameter with a gradient and moments of its layout.
    for part in (kernel[0], kernel[2], kernel[3], kernel[4], *kernel[1]):
        part[3] = part[3].t().contiguous().t()
    reference = clone(kernel)
    for backend, state in (("cpu", kernel), ("reference", reference)):
        run(adam_step, state, backend, **ADAM, **ADAM_CASES["amsgrad_maximize"])
    for a, b in zip(kernel[0], reference[0], strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE.get(a.dtype, {"rtol": 0, "atol": 0}))


def test_matches_torch_adamw_in_float64() -> None:
    """An independent oracle: torch.optim.AdamW's single-tensor path, in float64."""
    params, grads, m, v, vmax, steps = make_state([torch.float64] * len(SHAPES), amsgrad=True)
    expected = [p.clone().requires_grad_() for p in params]
    optimizer = torch.optim.AdamW(expected, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1,
                                  amsgrad=True, foreach=False)  # fmt: skip
    for step_grads in grads:
        for p, g in zip(expected, step_grads, strict=True):
            p.grad = g
        optimizer.step()
        adam_step(params, step_grads, m, v, vmax, steps, **ADAM, weight_decay=0.1,
                  decoupled=True, amsgrad=True, maximize=False, backend="cpu")  # fmt: skip
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p, e.detach(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("skip", [False, True])
def test_grad_scale_and_found_inf(skip: bool) -> None:
    """Scaled gradients are unscaled inside; an overflow leaves every tensor and counter."""
    kernel = make_state([torch.float32] * len(SHAPES), amsgrad=False)
    reference = clone(kernel)
    before = clone(kernel)
    scaled = [[g * 1024.0 for g in step_grads] for step_grads in kernel[1]]
    found_inf = torch.tensor(float(skip))
    for step_grads in scaled:
        adam_step(*kernel[:1], step_grads, *kernel[2:], **ADAM, **ADAM_CASES["adamw"],
                  grad_scale=torch.tensor(1024.0), found_inf=found_inf, backend="cpu")
    expected = before if skip else reference
    if not skip:
        run(adam_step, reference, "reference", **ADAM, **ADAM_CASES["adamw"])
    for ours, theirs in zip(kernel, expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_thread_count_does_not_change_the_result() -> None:
    states = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            state = make_state([torch.float32] * len(SHAPES), amsgrad=True)
            run(adam_step, state, "cpu", **ADAM, **ADAM_CASES["amsgrad_maximize"])
            states.append(state)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(states[0][0], states[1][0], strict=True):
        assert torch.equal(a, b)


def test_binding_rejects_a_malformed_table() -> None:
    from nol_fast.ops.extension import EXTENSION

    with pytest.raises(ValueError, match="rows of 7"):
        EXTENSION.multi_tensor_step_cpu(
            [0] * 6, 0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
            decoupled=False, amsgrad=False, maximize=False, adabound=False, base_lr=0.0,
            final_lr=0.0, gamma=0.0, grad_scale=0, found_inf=0, num_threads=1,
        )  # fmt: skip


def test_moved_parameter_storage_is_followed() -> None:
    """``p.data = ...`` keeps the tensor object but moves its storage: the kernel's cached
    addresses must follow, or it would update freed memory."""
    from nol_fast.optim import FusedAdamW

    generator = torch.Generator().manual_seed(3)
    ours = [torch.randn(70_001, generator=generator).requires_grad_() for _ in range(2)]
    expected = [p.detach().clone().requires_grad_() for p in ours]
    optimizers = [FusedAdamW(ours, lr=1e-2, backend="cpu"),
                  torch.optim.AdamW(expected, lr=1e-2, foreach=False)]  # fmt: skip
    for step in range(3):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params in (ours, expected):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
        if step == 1:
            ours[0].data = ours[0].data.clone()  # same tensor object, new storage
        for optimizer in optimizers:
            optimizer.step()
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-7)


def _recording(cls: type, built: list) -> type:
    """A subclass of ``cls`` that appends each instance it makes to ``built``."""

    class Recording(cls):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            built.append(self)

    return Recording


def test_layout_cache_keeps_no_tensor_alive_and_follows_complex_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's per-group cache refers to tensors weakly, and recognises a complex
    parameter through the real view made of it at every step."""
    import gc
    import weakref

    from nol_fast.ops.optim_step import cpu
    from nol_fast.optim import FusedAdamW

    # An empty cache of its own: entries left by other tests may carry a reused id.
    monkeypatch.setattr(cpu, "_LAYOUTS", {})
    built = []
    monkeypatch.setattr(cpu, "_GroupLayout", _recording(cpu._GroupLayout, built))
    param = torch.randn(3, 5, dtype=torch.complex64, requires_grad=True)
    optimizer = FusedAdamW([param], lr=1e-2, backend="cpu")
    for _ in range(3):
        param.grad = torch.randn_like(param)
        optimizer.step()
    assert len(built) == 1 and len(cpu._LAYOUTS) == 1  # built once, then reused
    assert built[0].refs[0][0]() is param
    del built
    alive = weakref.ref(param)
    del optimizer, param
    gc.collect()
    assert alive() is None
