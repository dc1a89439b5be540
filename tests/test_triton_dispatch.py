"""The ``triton`` backends end to end on CPU tensors, through the optimizer classes and the op.

Under Triton's interpreter (``TRITON_INTERPRET=1`` before the kernels are first imported)
``backend='triton'`` accepts CPU tensors, so the code around the kernels runs here as it runs
on a GPU: backend selection, the per-tensor fallback to the reference path, step counting,
the device guard around every launch, and the caches of index and pointer tables.
Oracles: ``torch.optim`` and the ``adabound`` package for the optimizers, the reference
backend for the spectral convolution.
"""

from __future__ import annotations

import contextlib
import os
import types

import pytest
import torch
from conftest import make_param

os.environ["TRITON_INTERPRET"] = "1"  # before triton, and the kernels, are first imported
pytest.importorskip("triton", reason="the Triton kernels need the triton package")

from nol_fast.models import SpectralConv  # noqa: E402
from nol_fast.ops import launch  # noqa: E402
from nol_fast.ops import triton as triton_kernels  # noqa: E402
from nol_fast.ops.optim_step import cuda as cuda_step  # noqa: E402
from nol_fast.ops.triton import optim as triton_optim  # noqa: E402
from nol_fast.ops.triton import spectral_conv as triton_spectral  # noqa: E402
from nol_fast.optim import FusedAdamW  # noqa: E402

if not triton_kernels.INTERPRETED:
    pytest.skip(
        "nol_fast.ops.triton was imported for the GPU before TRITON_INTERPRET=1 was set; run "
        "this file in its own pytest process to test the kernels on the CPU",
        allow_module_level=True,
    )


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


# -------------------------------------------------------- tables under CUDA-graph capture


