"""The ``triton`` backends end to end on CPU tensors, through the optimizer classes and the op.

Under Triton's interpreter (``TRITON_INTERPRET=1`` before the kernels are first imported)
``backend='triton'`` accepts CPU tensors, so the code around the kernels runs here as it runs
on a GPU: backend selection, the per-tensor fallback to the reference path, step counting,
the device guard around every launch, and the caches of index and pointer tables.
Oracles: ``torch.optim`` and the ``adabound`` package for the optimizers, the reference
backend for the spectral convolution.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import io
import types
import weakref

import pytest
import torch
from conftest import (
    OPTIMIZER_CLOSE,
    OPTIMIZER_GROUPS,
    OPTIMIZER_STEPS,
    assert_params_close,
    make_param,
    optimizer_trajectories,
)
from torch.utils._python_dispatch import TorchDispatchMode
from triton_interpreter import require_interpreter

require_interpreter()  # before triton, and the kernels, are first imported

from nol_fast.models import SpectralConv  # noqa: E402
from nol_fast.ops import launch  # noqa: E402
from nol_fast.ops.optim_step import cuda as cuda_step  # noqa: E402
from nol_fast.ops.optim_step import tables  # noqa: E402
from nol_fast.ops.spectral_conv import modes  # noqa: E402
from nol_fast.ops.triton import optim as triton_optim  # noqa: E402
from nol_fast.ops.triton import spectral_conv as triton_spectral  # noqa: E402
from nol_fast.optim import AdaBound, FusedAdam, FusedAdamW  # noqa: E402


@pytest.mark.parametrize("name", list(OPTIMIZER_GROUPS))
@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_fused_adam_matches_torch(name, decoupled):
    """float32 and channels_last params go through the kernel, float64 ones through the
    reference path in the same step, bfloat16 ones through the kernel with float32 moments."""
    ours_cls, torch_cls = (FusedAdamW, torch.optim.AdamW) if decoupled else (
        FusedAdam, torch.optim.Adam)  # fmt: skip
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}
    optimizer, ours, wide = optimizer_trajectories(
        lambda ps: ours_cls(ps, backend="triton", **kwargs),
        lambda ps: torch_cls(ps, foreach=False, **kwargs), OPTIMIZER_GROUPS[name])
    assert_params_close(ours, wide)
    for p in ours:
        state = optimizer.state[p]
        assert state["step"].item() == OPTIMIZER_STEPS and state["step"].device == p.device
        assert state["exp_avg"].dtype == (torch.float32 if p.dtype == torch.bfloat16
                                          else p.dtype)
        assert state["exp_avg"].stride() == p.stride()


# the package calls the deprecated ``Tensor.add(Number, Tensor)`` overload
@pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")
@pytest.mark.parametrize("name", ["float32", "mixed"])
def test_adabound_matches_package(name):
    adabound = pytest.importorskip("adabound")
    kwargs = {"lr": 1e-2, "final_lr": 0.1, "gamma": 1e-3, "weight_decay": 0.1,
              "amsbound": True}
    _, ours, wide = optimizer_trajectories(lambda ps: AdaBound(ps, backend="triton", **kwargs),
                                           lambda ps: adabound.AdaBound(ps, **kwargs),
                                           OPTIMIZER_GROUPS[name])
    assert_params_close(ours, wide)


# the interpreter computes the lanes past the end of a chunk too (0 / 0 there, never stored)
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_subnormal_second_moment_with_zero_eps_gives_a_finite_step(backend):
    """With ``eps=0`` a gradient of 1e-20 makes ``v`` subnormal; its square root must not be
    flushed to zero (an infinite step), so the step matches torch's."""
    ours, theirs = (torch.full((5,), 1.0, requires_grad=True) for _ in range(2))
    for p in (ours, theirs):
        p.grad = torch.full((5,), 1e-20)
    FusedAdam([ours], lr=1e-2, eps=0.0, backend=backend).step()
    torch.optim.Adam([theirs], lr=1e-2, eps=0.0).step()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


@pytest.mark.parametrize("cls", [FusedAdamW, AdaBound])
def test_failed_step_changes_nothing(cls):
    """A step that raises leaves params, moments and step counters as they were."""
    params = [make_param((7,)).requires_grad_(),
              make_param((3, 5), torch.bfloat16).requires_grad_()]
    optimizer = cls(params, lr=1e-2, backend="triton")
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    state = [t.clone() for p in params for t in (p, *optimizer.state[p].values())]
    with pytest.raises(ValueError, match="grad_scale"):
        optimizer.step(grad_scale=torch.ones(2))
    after = [t for p in params for t in (p, *optimizer.state[p].values())]
    assert all(torch.equal(a, b) for a, b in zip(after, state, strict=True))
    assert [optimizer.state[p]["step"].item() for p in params] == [1, 1]


@pytest.mark.parametrize("cls", [FusedAdamW, AdaBound])
def test_grad_scaler_skip_and_unscale_match_a_plain_step(cls):
    """found_inf skips the whole step (counters too); grad_scale divides the grads."""

    def make():
        return [make_param((7,)).requires_grad_(),
                make_param((3, 5), torch.float64).requires_grad_()]

    scaled, plain = make(), make()
    ours, reference = cls(scaled, lr=1e-2, backend="triton"), cls(plain, lr=1e-2)
    for p in scaled:
        p.grad = torch.full_like(p, float("inf"))
    ours.step(grad_scale=torch.tensor([8.0]), found_inf=torch.tensor([1.0]))
    assert all(ours.state[p]["step"].item() == 0 for p in scaled)
    for p, q in zip(scaled, plain, strict=True):
        q.grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(2)).to(q.dtype)
        p.grad = 8 * q.grad
    ours.step(grad_scale=torch.tensor([8.0]), found_inf=torch.tensor([0.0]))
    reference.step()
    for p, q in zip(scaled, plain, strict=True):
        torch.testing.assert_close(p, q, **OPTIMIZER_CLOSE[p.dtype])
        assert ours.state[p]["step"].item() == 1


def test_fp32_moments_of_low_precision_params_survive_a_checkpoint():
    """torch casts loaded state to the param's dtype; the float32 moments of a bfloat16
    param are kept, so a resumed run continues exactly where the saved one was."""
    grads = [torch.randn(4099, generator=torch.Generator().manual_seed(i)).bfloat16()
             for i in range(4)]
    straight, resumed = (make_param((4099,), torch.bfloat16).requires_grad_() for _ in range(2))
    optimizer = FusedAdamW([straight], lr=1e-2, backend="triton")
    for g in grads:
        straight.grad = g
        optimizer.step()
    before = FusedAdamW([resumed], lr=1e-2, backend="triton")
    for g in grads[:2]:
        resumed.grad = g
        before.step()
    buffer = io.BytesIO()
    torch.save(before.state_dict(), buffer)
    buffer.seek(0)
    after = FusedAdamW([resumed], lr=1.0, backend="triton")
    after.load_state_dict(torch.load(buffer, weights_only=True))
    assert after.state[resumed]["exp_avg_sq"].dtype == torch.float32
    for g in grads[2:]:
        resumed.grad = g
        after.step()
    assert torch.equal(resumed, straight)


# ---------------------------------------------------------------- the spectral convolution


# (input grid, output grid, n_modes, in_channels, out_channels)
SPECTRAL_CASES = [((13,), (13,), (6,), 3, 4), ((10, 9), (12, 11), (4, 5), 3, 2),
                  ((6, 5, 7), (6, 5, 7), (4, 3, 4), 2, 3)]


@pytest.mark.parametrize("case", SPECTRAL_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_spectral_conv_triton_matches_reference(case):
    grid, out_grid, n_modes, cin, cout = case
    torch.manual_seed(0)
    triton_conv = SpectralConv(cin, cout, n_modes, backend="triton")
    reference_conv = SpectralConv(cin, cout, n_modes, backend="reference")
    reference_conv.load_state_dict(triton_conv.state_dict())
    x = torch.randn(2, cin, *grid)
    outputs, grads = [], []
    for conv in (triton_conv, reference_conv):
        x_ = x.clone().requires_grad_()
        y = conv(x_, output_shape=out_grid)
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        outputs.append(y.detach())
        grads.append([x_.grad, *(p.grad for p in conv.parameters())])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@contextlib.contextmanager
def _tensors_from_python_data():
    """Record every ``torch.tensor``/``torch.as_tensor`` call made from a list or tuple."""
    calls = []
    originals = {name: getattr(torch, name) for name in ("tensor", "as_tensor")}

    def recording(name):
        def make(data, *args, **kwargs):
            if isinstance(data, (list, tuple)):
                calls.append((name, data))
            return originals[name](data, *args, **kwargs)
        return make

    with pytest.MonkeyPatch.context() as patch:
        for name in originals:
            patch.setattr(torch, name, recording(name))
        yield calls


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_spectral_conv_builds_no_index_tensor_after_its_first_call(backend):
    """The mode indices are tensors built once per mode set: on CUDA a tensor built from a
    Python list is a blocking copy per layer, and cannot be made during graph capture."""
    conv = SpectralConv(3, 2, (4, 5), backend=backend)
    x = torch.randn(2, 3, 10, 9, requires_grad=True)
    conv(x, output_shape=(12, 11)).sum().backward()  # builds and caches the indices
    with _tensors_from_python_data() as calls:
        conv(x, output_shape=(12, 11)).sum().backward()
    assert calls == []


# ------------------------------------------------------------------------- device guard


@pytest.fixture
def launches_and_guards(monkeypatch):
    """Per kernel launch, the devices whose guards are active at that moment."""
    active, launched = [], []

    @contextlib.contextmanager
    def recording_guard(device):
        active.append(device)
        try:
            yield
        finally:
            active.pop()

    class RecordingKernel:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                launched.append(list(active))
                return self.kernel[grid](*args, **kwargs)
            return run

    monkeypatch.setattr(launch, "device_guard", recording_guard)
    for module, name in ((triton_optim, "_multi_tensor_step_kernel"),
                         (triton_spectral, "_complex_mode_gemm_kernel")):
        monkeypatch.setattr(module, name, RecordingKernel(getattr(module, name)))
    fake_extension = types.SimpleNamespace(
        multi_tensor_step_cuda=lambda *args: launched.append(list(active)))
    monkeypatch.setattr(cuda_step, "EXTENSION", fake_extension)
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device=None: types.SimpleNamespace(cuda_stream=0))
    return launched


def test_every_launch_runs_under_its_tensors_device_guard(launches_and_guards):
    """Triton and the CUDA extension launch on the current device, so each launch is made
    inside a guard of the device of its tensors (here the CPU, under the interpreter)."""
    param = make_param((5, 3)).requires_grad_()
    param.grad = torch.ones_like(param)
    FusedAdamW([param], backend="triton").step()
    conv = SpectralConv(3, 2, (4, 4), backend="triton")
    conv(torch.randn(2, 3, 8, 8)).sum().backward()
    p, g, m, v = (torch.zeros(7) for _ in range(4))
    cuda_step.adam_step_cuda([p], [g], [m], [v], None, [1], lr=1e-3, beta1=0.9, beta2=0.99,
                             eps=1e-8, weight_decay=0.0, decoupled=True, amsgrad=False,
                             maximize=False)
    # one optimizer launch, forward and two backward spectral launches, one CUDA launch
    assert len(launches_and_guards) == 5
    assert all(guards == [torch.device("cpu")] for guards in launches_and_guards)


# ------------------------------------------------------------------ syncs per parameter


class _OpCounter(TorchDispatchMode):
    """Counts the aten ops that run, by name."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("cls", [FusedAdamW, AdaBound])
def test_step_ops_do_not_grow_with_the_number_of_params(cls):
    """On a GPU every per-parameter transfer or read of a counter or of ``found_inf`` is a
    host sync; a step whose ops do not depend on the number of params has none of them, and
    nothing in it reads a value back (``aten._local_scalar_dense``)."""

    def ops_of_second_step(n_params):
        params = [make_param((5 + i,), seed=i).requires_grad_() for i in range(n_params)]
        optimizer = cls(params, lr=1e-2, backend="triton")
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()  # creates the state
        with _OpCounter() as counter:
            optimizer.step(grad_scale=torch.tensor([2.0]), found_inf=torch.tensor([0.0]))
        return counter.counts

    few, many = ops_of_second_step(3), ops_of_second_step(9)
    assert few == many
    assert "aten._local_scalar_dense.default" not in few


def test_step_counts_move_to_the_device_in_one_copy():
    """Counters kept elsewhere than the params (the functional API allows it) are stacked
    where they live and moved once, not one copy per parameter."""
    steps = [torch.tensor(float(i)) for i in range(6)]
    with _OpCounter() as counter:
        counts = tables.step_counts(steps, torch.device("meta"))
    assert counts.shape == (6,) and counts.dtype == torch.float64
    assert counter.counts["aten._to_copy.default"] == 1


# -------------------------------------------------------- tables under CUDA-graph capture


@pytest.fixture
def capture(monkeypatch):
    """Pretend that the current stream captures a CUDA graph while ``state['on']``."""
    state = {"on": False}
    monkeypatch.setattr(launch, "capturing", lambda: state["on"])
    return state


def _survives_eviction(capture, lookup, n_other):
    """Whether the entry ``lookup(0)`` made during a capture is still cached (the same
    object, alive) after ``n_other`` other entries were made outside any capture."""
    capture["on"] = True
    first = lookup(0)
    capture["on"] = False
    alive = weakref.ref(first)
    for key in range(1, n_other + 1):
        lookup(key)
    gc.collect()
    return alive() is first and lookup(0) is first


def test_optimizer_tables_used_in_a_capture_are_not_evicted(capture):
    groups = [[[torch.zeros(5 + k) for _ in range(4)]] for k in range(40)]
    assert _survives_eviction(capture, lambda k: tables.tables(groups[k])[0], n_other=39)


def test_spectral_tables_used_in_a_capture_are_not_evicted(capture):
    def lookup(k):
        index = [torch.tensor([0, 1], dtype=torch.int32)]
        return triton_spectral._tables(index, index, index, (4, 3 + k), (4, 3 + k), (2, 3),
                                       torch.device("cpu")).forward.kept

    assert _survives_eviction(capture, lookup, n_other=70)


def test_mode_indices_used_in_a_capture_are_not_evicted(capture):
    def lookup(k):
        t = torch.zeros(1, 1, 9 + k, 5)
        return modes._block(((0, 1, 8 + k),), 3, tuple(t.shape[2:]), t.device)[2]

    assert _survives_eviction(capture, lookup, n_other=300)
