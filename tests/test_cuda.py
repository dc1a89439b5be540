"""GPU cases of the kernels and of the code around them; marked ``cuda``, skipped without CUDA.

Run them in a process of their own::

    python -m pytest -m cuda tests/test_cuda.py

The CPU tests of the Triton kernels switch on Triton's interpreter for their whole process
when they are collected; the cases here that need compiled kernels skip in such a process.

- the spectral kernels at strides where a k-loop step passes 2**31 elements (forward and
  grad-weight pass);
- tensors on ``cuda:1`` while ``cuda:0`` is current (skipped with one device), and a Trainer
  on ``cuda:1``;
- FusedAdam, FusedAdamW and AdaBound on bfloat16, float64, channels_last and mixed groups, on
  each device backend, against ``torch.optim`` and the ``adabound`` package;
- no host synchronisation in an optimizer step with a GradScaler, nor in a spectral layer's
  forward and backward, after the first call;
- a captured optimizer step replayed after more optimizers than the table cache holds;
- a subnormal second moment with ``eps=0``, and the AMP dtype of this GPU;
- the spectral layer's Triton kernels against the reference on odd 1-D to 3-D shapes;
- the Darcy residual and conservation-sum Triton kernels against their float64 references on
  grids of many tiles;
- the Trainer's GPU fast paths: CUDA graphs and torch.compile against eager training, no
  recompile after the first epoch, no host synchronisation per step, and fp16 with a
  GradScaler skipping a non-finite step.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from conftest import (
    OPTIMIZER_GROUPS,
    assert_params_close,
    make_param,
    optimizer_trajectories,
)
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.bench.syncs import syncs_in_epoch
from nol_fast.models import FNO, SpectralConv
from nol_fast.ops import extension, launch
from nol_fast.ops.conservation import cuda as conservation_cuda
from nol_fast.ops.conservation import reference as conservation_reference
from nol_fast.ops.darcy_residual import cuda as darcy_cuda
from nol_fast.ops.darcy_residual import reference as darcy_reference
from nol_fast.optim import AdaBound, FusedAdam, FusedAdamW
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.graphs import GraphedStep
from nol_fast.training.optimizers import create_scheduler
from nol_fast.training.precision import autocast_dtype

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")


@pytest.fixture
def compiled_kernels():
    """The Triton kernels compiled for the GPU (skips where they run in the interpreter)."""
    pytest.importorskip("triton", reason="the Triton kernels need the triton package")
    from nol_fast.ops import triton as kernels

    if launch.interpreter_requested() or kernels.INTERPRETED:
        pytest.skip("the Triton kernels run in the interpreter in this process; run "
                    "`python -m pytest -m cuda tests/test_cuda.py` in a process of its own")
    return kernels


@pytest.fixture(params=["triton", "cuda"])
def device_backend(request) -> str:
    """Each device backend of the optimizer step: Triton, and the CUDA kernel when built."""
    if request.param == "triton":
        request.getfixturevalue("compiled_kernels")
    elif extension.missing(cuda=True) is not None:
        pytest.skip(extension.missing(cuda=True))
    return request.param


@pytest.fixture
def current_device_restored():
    before = torch.cuda.current_device()
    yield
    torch.cuda.set_device(before)


@contextlib.contextmanager
def no_host_sync():
    """Make every synchronising CUDA call inside the block raise."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ----------------------------------------------------------------- spectral kernels


# A spectrum this long has channel planes of 2**27 + 2 floats: 16 (BLOCK_K) strides of it
# pass 2**31, which an int32 pointer step wraps.
LARGE = 2**26 + 1
N_LAST = 3


def _random_kept(shape, generator):
    """Zeros of ``(..., LARGE, 2)`` float32 with random values on the first N_LAST modes."""
    t = torch.zeros(*shape, LARGE, 2, device="cuda")
    t[..., :N_LAST, :] = torch.randn(*shape, N_LAST, 2, generator=generator).cuda()
    return t


def _kept(t):
    return torch.view_as_complex(t[..., :N_LAST, :].contiguous())


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_spectral_kernels_past_int32_strides(compiled_kernels, direction):
    if torch.cuda.mem_get_info()[0] < 40 * 2**30:
        pytest.skip("needs 40 GiB of free GPU memory")
    kernels, generator = compiled_kernels, torch.Generator().manual_seed(0)
    if direction == "forward":
        # 17 input channels: the k loop (over channels) steps once by 16 channel planes
        x_ft = _random_kept((1, 17), generator)
        weight = torch.randn(17, 2, N_LAST, 2, generator=generator).cuda()
        y = kernels.spectral_mix_forward(x_ft, weight, [], [], [], N_LAST, (LARGE,))
        want = torch.einsum("bik,iok->bok", _kept(x_ft), _kept(weight))
        torch.testing.assert_close(_kept(y), want, rtol=1e-5, atol=1e-5)
        assert not y[..., N_LAST:, :].any()
        return
    # batch 17: the grad-weight pass reduces over the batch, stepping by 16 batch planes
    x_ft, grad_y = _random_kept((17, 1), generator), _random_kept((17, 1), generator)
    weight = torch.randn(1, 1, N_LAST, 2, generator=generator).cuda()
    grad_x, grad_w = kernels.spectral_mix_backward(grad_y, x_ft, weight, [], [], [], N_LAST,
                                                   (LARGE,))
    want_w = torch.einsum("bik,bok->iok", _kept(x_ft).conj(), _kept(grad_y))
    want_x = torch.einsum("bok,iok->bik", _kept(grad_y), _kept(weight).conj())
    torch.testing.assert_close(torch.view_as_complex(grad_w), want_w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_kept(grad_x), want_x, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------- two devices


def _spectral_matches_reference(device):
    torch.manual_seed(0)
    fast = SpectralConv(5, 3, (6, 5), backend="triton").to(device)
    reference = SpectralConv(5, 3, (6, 5), backend="reference").to(device)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 5, 20, 17, device=device)
    results = []
    for conv in (fast, reference):
        x_ = x.clone().requires_grad_()
        y = conv(x_, output_shape=(24, 19))
        y.square().sum().backward()
        results.append([y.detach(), x_.grad, *(p.grad for p in conv.parameters())])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@two_gpus
def test_kernels_run_on_the_device_of_their_tensors(compiled_kernels, current_device_restored):
    """With cuda:0 current, the launches on cuda:1 tensors go to cuda:1 and leave cuda:0
    current."""
    torch.cuda.set_device(0)
    second = torch.device("cuda", 1)
    _spectral_matches_reference(second)
    backends = ["triton"] + ([] if extension.missing(cuda=True) else ["cuda"])
    for backend in backends:
        _, ours, wide = optimizer_trajectories(
            lambda ps, b=backend: FusedAdamW(ps, lr=1e-2, backend=b),
            lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False),
            OPTIMIZER_GROUPS["mixed"], device=second)
        assert_params_close(ours, wide)
    assert torch.cuda.current_device() == 0


@two_gpus
def test_trainer_on_the_second_device(compiled_kernels, current_device_restored):
    torch.cuda.set_device(0)
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2)
    x, y = torch.randn(16, 1, 16, 16), torch.randn(16, 1, 16, 16)
    trainer = Trainer(model, DataLoader(TensorDataset(x, y), batch_size=8), None,
                      device="cuda:1", config=TrainingConfig(warmup_steps=0))
    history = trainer.train(2)
    assert torch.cuda.current_device() == 1
    assert all(p.device == torch.device("cuda", 1) for p in model.parameters())
    assert math.isfinite(history["train_loss"][-1])


# ---------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("name", list(OPTIMIZER_GROUPS))
@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_fused_adam_matches_torch(device_backend, name, decoupled):
    ours_cls, torch_cls = (FusedAdamW, torch.optim.AdamW) if decoupled else (
        FusedAdam, torch.optim.Adam)  # fmt: skip
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}
    _, ours, wide = optimizer_trajectories(
        lambda ps: ours_cls(ps, backend=device_backend, **kwargs),
        lambda ps: torch_cls(ps, foreach=False, **kwargs), OPTIMIZER_GROUPS[name], device="cuda")
    assert_params_close(ours, wide)


# the package calls the deprecated ``Tensor.add(Number, Tensor)`` overload
@pytest.mark.filterwarnings("ignore:This overload of add:UserWarning")
@pytest.mark.parametrize("name", list(OPTIMIZER_GROUPS))
def test_adabound_matches_package(device_backend, name):
    adabound = pytest.importorskip("adabound")
    kwargs = {"lr": 1e-2, "final_lr": 0.1, "gamma": 1e-3, "weight_decay": 0.1,
              "amsbound": True}
    _, ours, wide = optimizer_trajectories(
        lambda ps: AdaBound(ps, backend=device_backend, **kwargs),
        lambda ps: adabound.AdaBound(ps, **kwargs), OPTIMIZER_GROUPS[name], device="cuda")
    assert_params_close(ours, wide)


@pytest.mark.parametrize("cls", [FusedAdamW, AdaBound])
def test_optimizer_step_with_a_grad_scaler_does_not_sync(device_backend, cls):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4)).cuda()
    optimizer = cls(model.parameters(), lr=1e-3, backend=device_backend)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)  # no overflow: no skipped step
    x = torch.randn(8, 16, device="cuda")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(x).square().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # creates the optimizer state, the tables and the scaler's tensors
    with no_host_sync():
        for _ in range(3):
            step()
    assert all(s["step"].item() == 4 for s in optimizer.state.values())


def test_spectral_layer_does_not_sync_after_its_first_call(compiled_kernels):
    conv = SpectralConv(8, 8, (6, 6), backend="triton").cuda()
    x = torch.randn(4, 8, 32, 32, device="cuda", requires_grad=True)
    conv(x).sum().backward()  # builds the mode tables and the FFT plans
    with no_host_sync():
        for _ in range(2):
            conv(x).sum().backward()


def test_captured_step_replays_after_its_tables_would_be_evicted(compiled_kernels):
    """A captured step keeps the addresses of its pointer tables; more optimizers than the
    table cache holds, and then new allocations, must not move or overwrite them."""
    params = [make_param(s, seed=i, device="cuda").requires_grad_()
              for i, s in enumerate([(7,), (4099,), (3, 5)])]
    copies = [p.detach().clone().requires_grad_() for p in params]
    for p, q in zip(params, copies, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    ours = FusedAdamW(params, lr=torch.tensor(1e-2, device="cuda"), capturable=True,
                      backend="triton")
    oracle = torch.optim.AdamW(copies, lr=1e-2, foreach=False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: state, tables, compilation
        for _ in range(2):
            ours.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ours.step()
    for k in range(40):
        other = torch.zeros(5 + k, device="cuda", requires_grad=True)
        other.grad = torch.ones_like(other)
        FusedAdamW([other], backend="triton").step()
    garbage = [torch.full((64,), -1, dtype=torch.int64, device="cuda") for _ in range(2000)]
    for _ in range(3):
        graph.replay()
    for _ in range(5):
        oracle.step()
    torch.cuda.synchronize()
    assert len(garbage) == 2000
    for p, q in zip(params, copies, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_subnormal_second_moment_with_zero_eps(device_backend):
    ours, theirs = (torch.ones(5, device="cuda", requires_grad=True) for _ in range(2))
    for p in (ours, theirs):
        p.grad = torch.full((5,), 1e-20, device="cuda")
    FusedAdam([ours], lr=1e-2, eps=0.0, backend=device_backend).step()
    torch.optim.Adam([theirs], lr=1e-2, eps=0.0).step()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def test_autocast_dtype_of_this_gpu():
    native = torch.cuda.get_device_capability() >= (8, 0)
    expected = torch.bfloat16 if native else torch.float16
    assert autocast_dtype(torch.device("cuda"), mixed_precision=True) == expected


# ------------------------------------------------------------- spectral layer, one GPU

# (batch, in, out, grid, output grid, n_modes): odd sizes, negative frequencies, a finer
# output grid, channels off the 16-wide tiles, a batch past 16
SPECTRAL_CASES = {
    "1d": (3, 20, 12, (37,), (37,), (16,)),
    "1d_multi_tile": (17, 33, 18, (6,), (6,), (4,)),
    "2d_superres": (3, 3, 5, (30, 17), (40, 24), (8, 8)),
    "3d": (3, 3, 5, (12, 10, 9), (12, 10, 9), (4, 4, 4)),
}


@pytest.mark.parametrize("case", list(SPECTRAL_CASES))
def test_spectral_layer_matches_the_reference(compiled_kernels, case):
    batch, c_in, c_out, grid, out_grid, modes = SPECTRAL_CASES[case]
    torch.manual_seed(0)
    fast = SpectralConv(c_in, c_out, modes, backend="triton").cuda()
    reference = SpectralConv(c_in, c_out, modes, backend="reference").cuda()
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(batch, c_in, *grid, device="cuda")
    results = []
    for conv in (fast, reference):
        x_ = x.clone().requires_grad_()
        y = conv(x_, output_shape=out_grid)
        y.square().sum().backward()
        results.append([y.detach(), x_.grad, *(p.grad for p in conv.parameters())])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ physics kernels


def _close_to_float64(got, want, rtol=1e-4):
    """``got`` (float32) against ``want`` (float64) relative to ``want``'s largest value."""
    scale = want.abs().max().item() if want.numel() else 0.0
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize(("shape", "periodic", "accuracy", "with_f"),
                         [((3, 1, 129, 67), (False, False), 4, True),
                          ((2, 1, 64, 256), (True, True), 2, False),
                          ((1, 1, 255, 33), (True, False), 4, True)],
                         ids=["bounded4", "periodic2", "mixed4"])
def test_darcy_kernels_match_the_reference(compiled_kernels, shape, periodic, accuracy, with_f):
    g = torch.Generator().manual_seed(0)
    u, f = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    a = torch.rand(shape, generator=g) + 0.5
    u, a, f = (t.cuda() for t in (u, a, f))
    f = f if with_f else None
    spacing = (1 / shape[-2], 1 / shape[-1])
    loss, r = darcy_cuda.cuda_forward(u, a, f, 0.3, spacing, periodic, accuracy)
    f64 = None if f is None else f.double()
    want_loss, want_r = darcy_reference.reference_forward(u.double(), a.double(), f64, 0.3,
                                                          spacing, periodic, accuracy)
    _close_to_float64(loss, want_loss)
    _close_to_float64(r, want_r)
    grad_loss = torch.tensor(1.7, device="cuda")
    got = darcy_cuda.cuda_backward(grad_loss, r, u, a, spacing, periodic, accuracy, with_f)
    want = darcy_reference.reference_backward(grad_loss.double(), want_r, u.double(),
                                              a.double(), spacing, periodic, accuracy, with_f)
    for grad, expected in zip(got, want, strict=True):
        assert grad.shape == expected.shape
        _close_to_float64(grad, expected)


@pytest.mark.parametrize(("shape", "density", "weighted"),
                         [((4, 3, 128, 96), 0, (False, True, True)),
                          ((2, 2, 5000), -1, (False, False)),
                          ((2, 4, 24, 32, 40), 3, (True, False, True, False))],
                         ids=["fluid_2d", "scalar_1d", "fluid_3d"])
def test_conservation_kernels_match_the_reference(compiled_kernels, shape, density, weighted):
    u = torch.randn(shape, generator=torch.Generator().manual_seed(2)).cuda()
    spacing = [0.1 * (k + 1) for k in range(len(shape) - 2)]
    sums = conservation_cuda.cuda_sums(u, density, weighted, spacing)
    want = conservation_reference.reference_sums(u.double(), density, weighted, spacing)
    _close_to_float64(sums, want)
    g = torch.randn(want.shape, generator=torch.Generator().manual_seed(3)).cuda()
    _close_to_float64(conservation_cuda.cuda_sums_backward(g, u, density, weighted, spacing),
                      conservation_reference.reference_sums_backward(
                          g.double(), u.double(), density, weighted, spacing))


# ------------------------------------------------------------------ Trainer fast paths


def _gpu_run(epochs=3, loss_fn=None, **config):
    """An FNO trained on the GPU: 36 samples in batches of 8 (the last of 4), groups of two,
    a cosine schedule with warm-up."""
    torch.manual_seed(0)
    model = FNO(n_modes=(8, 8), hidden_channels=16, n_layers=2).cuda()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(36, 1, 32, 32, generator=g)
    y = 0.5 * x + 0.1 * torch.randn(36, 1, 32, 32, generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    optimizer = FusedAdamW(model.parameters(), lr=3e-3)
    scheduler = create_scheduler(optimizer, "cosine", warmup_steps=2)
    config = TrainingConfig(**{"log_frequency": 0, "gradient_accumulation_steps": 2,
                               "warmup_steps": 0, **config})
    trainer = Trainer(model, loader, loader, optimizer, scheduler, loss_fn=loss_fn,
                      config=config)
    return trainer, trainer.train(epochs)


@pytest.mark.parametrize("mixed_precision", [False, True], ids=["fp32", "default"])
@pytest.mark.parametrize("fast", [{"cuda_graphs": True}, {"compile": "default"},
                                  {"compile": "default", "cuda_graphs": True}],
                         ids=["graphs", "compile", "compile+graphs"])
def test_fast_paths_train_as_eager(compiled_kernels, fast, mixed_precision):
    trainer, history = _gpu_run(mixed_precision=mixed_precision, **fast)
    _, expected = _gpu_run(mixed_precision=mixed_precision)
    if fast.get("cuda_graphs"):
        assert isinstance(trainer._runner, GraphedStep)
        assert trainer._runner.captured and trainer._runner.failure is None
    tolerance = 1e-4 if not mixed_precision else 2e-2
    for key in ("train_loss", "val_loss"):
        torch.testing.assert_close(history[key], expected[key], rtol=tolerance, atol=0)


def test_compiled_trainer_does_not_recompile_after_its_first_epoch(compiled_kernels):
    trainer, _ = _gpu_run(epochs=1, compile="default")
    with torch._dynamo.config.patch(error_on_recompile=True):
        history = trainer.train(3)
    assert len(history["train_loss"]) == 3


@pytest.mark.parametrize("fast", [{}, {"cuda_graphs": True}], ids=["eager", "graphs"])
def test_no_host_synchronisation_per_step(compiled_kernels, fast):
    device = torch.device("cuda")
    assert syncs_in_epoch(device, 4, **fast) == syncs_in_epoch(device, 8, **fast)


def test_fp16_with_a_grad_scaler_skips_a_nonfinite_step(compiled_kernels):
    def loss_fn(pred, target):
        loss_fn.calls += torch.is_grad_enabled()  # training batches only
        loss = torch.nn.functional.mse_loss(pred, target)
        bad = torch.is_grad_enabled() and loss_fn.calls == 7  # epoch 2, batch 1
        return loss * float("nan") if bad else loss

    loss_fn.calls = 0
    trainer, history = _gpu_run(amp_dtype="float16", skip_nonfinite=True, loss_fn=loss_fn)
    assert trainer.scaler.is_enabled() and trainer.amp_dtype == torch.float16
    assert history["skipped_steps"] == [0.0, 2.0, 0.0]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
