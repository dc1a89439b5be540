"""The multi-tensor Triton Adam/AdamW and AdaBound steps against torch.optim and adabound.

The kernels run under the Triton interpreter on CPU tensors, which must be switched on before
the kernels are first imported; the module is skipped when Triton is missing or when the
kernels were already imported for the GPU in this process. Each case steps several tensors of
odd sizes (one spans two chunks) in one launch per step, next to the reference optimizer
stepping copies with the same gradients.
"""

from __future__ import annotations

import pytest
import torch
from triton_interpreter import require_interpreter

require_interpreter()  # before triton, and the kernels, are first imported

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nol_fast.ops.triton.optim import adabound_step_triton, adam_step_triton  # noqa: E402

SHAPES = [(7,), (15,), (1,), (4099,), (3, 5)]
N_STEPS = 6
LR = 1e-2


def _state(dtype=torch.float32, amsgrad=False, seed=0):
    """Params, zero moments and per-step grads for SHAPES."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen).to(dtype) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen).to(dtype) for s in SHAPES] for _ in range(N_STEPS)]
    zeros = lambda: [torch.zeros(s) for s in SHAPES]  # noqa: E731
    return params, grads, zeros(), zeros(), zeros() if amsgrad else []


def _torch_adam(params, grads, *, decoupled, **kwargs):
    """float32 copies of ``params`` after torch.optim.Adam/AdamW steps with ``grads``."""
    ref = [p.float().clone().requires_grad_() for p in params]
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)(ref, foreach=False, **kwargs)
    for step_grads in grads:
        for p, g in zip(ref, step_grads, strict=True):
            p.grad = g.float()
        opt.step()
    return [p.detach() for p in ref]


ADAM_CASES = {
    "adam": dict(weight_decay=0.0, decoupled=False, amsgrad=False, maximize=False),
    "adam_l2": dict(weight_decay=0.1, decoupled=False, amsgrad=False, maximize=False),
    "adamw": dict(weight_decay=0.1, decoupled=True, amsgrad=False, maximize=False),
    "amsgrad_l2": dict(weight_decay=0.1, decoupled=False, amsgrad=True, maximize=False),
    "amsgrad_maximize_adamw": dict(weight_decay=0.05, decoupled=True, amsgrad=True,
                                   maximize=True),
}


@pytest.mark.parametrize("case", ADAM_CASES, ids=list(ADAM_CASES))
def test_adam_matches_torch(case):
    flags = ADAM_CASES[case]
    params, grads, exp_avgs, exp_avg_sqs, maxes = _state(amsgrad=flags["amsgrad"])
    expected = _torch_adam(params, grads, lr=LR, betas=(0.9, 0.99), eps=1e-8, **flags)
    for step, step_grads in enumerate(grads, start=1):
        adam_step_triton(params, step_grads, exp_avgs, exp_avg_sqs, maxes, [step] * len(params),
                         lr=LR, beta1=0.9, beta2=0.99, eps=1e-8, **flags)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


def test_adam_tensor_steps_lr_and_grad_scale():
    """Capturable inputs: step counters and lr as tensors (the lr also enters the decoupled
    weight decay), and scaled grads divided in the kernel by grad_scale."""
    params, grads, exp_avgs, exp_avg_sqs, _ = _state()
    expected = _torch_adam(params, grads, lr=LR, decoupled=True, weight_decay=0.01)
    steps = [torch.zeros(()) for _ in params]
    scale = torch.tensor([1024.0])
    for step_grads in grads:
        for s in steps:
            s += 1
        adam_step_triton(params, [g * scale for g in step_grads], exp_avgs, exp_avg_sqs, None,
                         steps, lr=torch.tensor(LR), beta1=0.9, beta2=0.999, eps=1e-8,
                         weight_decay=0.01, decoupled=True, amsgrad=False, maximize=False,
                         grad_scale=scale)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["adam", "adabound"])
def test_found_inf_skips_the_step(rule):
    params, grads, exp_avgs, exp_avg_sqs, maxes = _state(amsgrad=True)
    for t in exp_avg_sqs + maxes:
        t.fill_(0.5)
    before = [t.clone() for t in params + exp_avgs + exp_avg_sqs + maxes]
    kwargs = dict(lr=LR, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True,
                  grad_scale=torch.tensor([2.0]), found_inf=torch.tensor([1.0]))
    if rule == "adam":
        adam_step_triton(params, grads[0], exp_avgs, exp_avg_sqs, maxes, [1] * len(params),
                         amsgrad=True, maximize=False, **kwargs)
    else:
        adabound_step_triton(params, grads[0], exp_avgs, exp_avg_sqs, maxes, [1] * len(params),
                             base_lr=LR, final_lr=0.1, gamma=1e-3, amsbound=True, **kwargs)
    for t, b in zip(params + exp_avgs + exp_avg_sqs + maxes, before, strict=True):
        assert torch.equal(t, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_adam_half_params_with_float32_math(dtype):
    """Half params, float32 moments: as float32 Adam whose params are rounded every step."""
    params, grads, exp_avgs, exp_avg_sqs, _ = _state(dtype=dtype)
    ref = [p.float().requires_grad_() for p in params]
    opt = torch.optim.Adam(ref, lr=LR, foreach=False)
    for step, step_grads in enumerate(grads, start=1):
        for p, g in zip(ref, step_grads, strict=True):
            p.grad = g.float()
        opt.step()
        with torch.no_grad():
            for p in ref:
                p.copy_(p.to(dtype))
        adam_step_triton(params, step_grads, exp_avgs, exp_avg_sqs, [], [step] * len(params),
                         lr=LR, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                         decoupled=False, amsgrad=False, maximize=False)
    for p, r in zip(params, ref, strict=True):
        assert p.dtype == dtype
        # both round to nearest even: at most an ulp apart from float32 reassociation
        torch.testing.assert_close(p.float(), r.detach(), rtol=torch.finfo(dtype).eps, atol=1e-6)


ADABOUND_CASES = {
    "coupled": dict(weight_decay=0.1, decoupled=False, amsbound=False, lr=LR),
    "amsbound_decoupled": dict(weight_decay=0.1, decoupled=True, amsbound=True, lr=LR),
    "decayed_lr": dict(weight_decay=0.0, decoupled=False, amsbound=False, lr=LR / 4),
    "zero_lr": dict(weight_decay=0.1, decoupled=True, amsbound=True, lr=0.0),
}


# the package calls the deprecated ``Tensor.add(Number, Tensor)`` overload
@pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")
@pytest.mark.parametrize("case", ADABOUND_CASES, ids=list(ADABOUND_CASES))
def test_adabound_matches_package(case):
    """Against ``adabound.AdaBound``; decoupled decay applied to its params before each step."""
    adabound = pytest.importorskip("adabound")
    flags = ADABOUND_CASES[case]
    lr, wd = flags["lr"], flags["weight_decay"]
    params, grads, exp_avgs, exp_avg_sqs, maxes = _state(amsgrad=flags["amsbound"])
    ref = [p.clone().requires_grad_() for p in params]
    opt = adabound.AdaBound(ref, lr=LR, betas=(0.9, 0.99), final_lr=0.1, gamma=1e-3,
                            weight_decay=0.0 if flags["decoupled"] else wd,
                            amsbound=flags["amsbound"])
    opt.param_groups[0]["lr"] = lr  # a scheduler's decay: base_lr stays LR
    for step, step_grads in enumerate(grads, start=1):
        with torch.no_grad():
            for p, g in zip(ref, step_grads, strict=True):
                p.grad = g.clone()
                if flags["decoupled"]:
                    p.mul_(1 - lr * wd)
        opt.step()
        adabound_step_triton(params, step_grads, exp_avgs, exp_avg_sqs, maxes,
                             [step] * len(params), base_lr=LR, beta1=0.9, beta2=0.99,
                             final_lr=0.1, gamma=1e-3, eps=1e-8, **flags)
    for p, r in zip(params, ref, strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, r.detach(), rtol=1e-5, atol=1e-6)


def test_dense_layouts_step_like_contiguous():
    """Transposed and channels_last tensors (param, grad and moments in one layout) are
    updated in place through their memory, as their contiguous copies would be."""
    gen = torch.Generator().manual_seed(3)
    shapes_layouts = [((5, 3), lambda t: t.t().contiguous().t()),
                      ((2, 3, 4, 5), lambda t: t.contiguous(memory_format=torch.channels_last))]
    params = [torch.randn(s, generator=gen) for s, _ in shapes_layouts]
    grads = [torch.randn(s, generator=gen) for s, _ in shapes_layouts]
    laid_out = [[layout(t) for t, (_, layout) in zip(ts, shapes_layouts, strict=True)]
                for ts in (params, grads, [torch.zeros_like(p) for p in params],
                           [torch.zeros_like(p) for p in params])]
    assert not any(t.is_contiguous() for t in laid_out[0])
    plain = [[t.clone() for t in params], grads, [torch.zeros_like(p) for p in params],
             [torch.zeros_like(p) for p in params]]
    for lists in (laid_out, plain):
        for step in (1, 2):
            adam_step_triton(*lists, None, [step, step], **_adam_kwargs())
    for got, want in zip(laid_out[0] + laid_out[2], plain[0] + plain[2], strict=True):
        assert torch.equal(got, want)


def _adam_kwargs():
    return dict(lr=LR, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
                amsgrad=False, maximize=False)


def test_empty_lists_are_a_no_op():
    adam_step_triton([], [], [], [], [], [], **_adam_kwargs())


@pytest.mark.parametrize("bad", ["length", "param_dtype", "moment_dtype", "shape", "strided",
                                 "layouts_differ", "amsgrad_without_max", "grad_scale"])
def test_invalid_inputs_raise(bad):
    params, grads, exp_avgs, exp_avg_sqs, _ = _state()
    grads = grads[0]
    kwargs = _adam_kwargs()
    if bad == "length":
        grads = grads[:-1]
    elif bad == "param_dtype":
        params[1] = params[1].double()
    elif bad == "moment_dtype":
        exp_avgs[0] = exp_avgs[0].half()
    elif bad == "shape":
        exp_avg_sqs[4] = exp_avg_sqs[4].reshape(-1)
    elif bad == "strided":  # every other column: the kernel would step over the gaps
        params[4], grads[4], exp_avgs[4], exp_avg_sqs[4] = (
            torch.zeros(3, 10)[:, ::2] for _ in range(4))
    elif bad == "layouts_differ":  # dense, but element i of the memory differs between them
        params[4] = params[4].t().contiguous().t()
    elif bad == "amsgrad_without_max":
        kwargs["amsgrad"] = True
    else:
        kwargs["grad_scale"] = torch.ones(2)
    error = (TypeError if bad in ("param_dtype", "moment_dtype", "strided", "layouts_differ")
             else ValueError)
    with pytest.raises(error):
        adam_step_triton(params, grads, exp_avgs, exp_avg_sqs, [], [1] * len(params), **kwargs)


# The interpreter runs one program per chunk: a few drawn groups only.
@settings(max_examples=10)
@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
       flags=st.fixed_dictionaries({"weight_decay": st.sampled_from([0.0, 0.1]),
                                    "decoupled": st.booleans(), "amsgrad": st.booleans(),
                                    "maximize": st.booleans()}),
       lr=st.floats(1e-4, 0.1), betas=st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.999)),
       n_steps=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_adam_kernel_matches_torch_on_drawn_groups(sizes, flags, lr, betas, n_steps, seed):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen) for n in sizes]
    grads = [[torch.randn(n, generator=gen) for n in sizes] for _ in range(n_steps)]
    expected = _torch_adam(params, grads, lr=lr, betas=betas, eps=1e-8, **flags)
    moments = [[torch.zeros(n) for n in sizes] for _ in range(3 if flags["amsgrad"] else 2)]
    for step, step_grads in enumerate(grads, start=1):
        adam_step_triton(params, step_grads, *moments[:2], moments[2] if flags["amsgrad"] else [],
                         [step] * len(params), lr=lr, beta1=betas[0], beta2=betas[1], eps=1e-8,
                         **flags)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
