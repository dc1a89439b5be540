"""Shared fixtures: tiny models and loaders that make trainer tests fast and deterministic."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from hypothesis import settings
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from triton_interpreter import MODULES, ORIGINAL, VARIABLE

# Property-based tests draw the same examples on every run ('ci', the default), so a CI run is
# reproducible and its time bounded; HYPOTHESIS_PROFILE=thorough draws fresh, many more.
settings.register_profile("ci", max_examples=50, derandomize=True, database=None,
                          deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class TinyNet(nn.Module):
    """A small channel-mixing net on (batch, channels, n) with dropout, so RNG state matters."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1, hidden: int = 8):
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, hidden, 1), nn.GELU(), nn.Dropout(0.1),
            nn.Conv1d(hidden, out_channels, 1),
        )

    def forward(self, x):
        return self.net(x)


def make_data(n: int = 40, in_channels: int = 2, grid: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_channels, grid, generator=g)
    y = torch.tanh(x.sum(1, keepdim=True)) + 0.1 * x[:, :1] ** 2
    return x, y


def _amx_available() -> bool:
    from nol_fast.ops.extension import EXTENSION

    return EXTENSION is not None and EXTENSION.amx_available()


# The bfloat16 kernels' two paths where the CPU has AMX: AMX tiles and the fallback (the FMA
# loops or torch), as values of a test's ``amx`` argument.
AMX_PATHS = [
    pytest.param(True, id="amx", marks=pytest.mark.skipif(
        not _amx_available(), reason="this CPU (or OS) offers no AMX tiles")),
    pytest.param(False, id="no-amx"),
]


def require_extension() -> None:
    """Skip without ``nol_fast._C`` where nothing could build it; fail where something could.

    A machine with a C++ compiler builds the extension on install, so its absence there means
    a broken build, which must not pass as a skip.
    """
    from nol_fast.ops import extension

    reason = extension.missing()
    if reason is None:
        return
    if shutil.which("c++") or shutil.which("g++"):
        pytest.fail(f"{reason}, although this machine has a C++ compiler; reinstall the package")
    pytest.skip(reason)


@pytest.fixture(params=["reference", "cpu"])
def optimizer_backend(request, monkeypatch) -> str:
    """Each CPU backend of the multi-tensor optimizer step in turn, through NOL_FAST_BACKEND."""
    if request.param == "cpu":
        require_extension()
    monkeypatch.setenv("NOL_FAST_BACKEND", request.param)
    return request.param


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated datasets go to a per-session temporary cache, never the home directory."""
    monkeypatch.setenv("NOL_FAST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def triton_interpreter_scope(request, monkeypatch):
    """TRITON_INTERPRET as the session started, except in the modules that switched Triton to
    its interpreter (``triton_interpreter.require_interpreter``)."""
    if request.module.__name__ in MODULES:
        return
    if ORIGINAL is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, ORIGINAL)


@pytest.fixture
def loaders():
    """(train_loader, val_loader) with a seeded shuffling generator on the training loader."""
    x, y = make_data()
    train = DataLoader(
        TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )
    val = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=4)
    return train, val


# ------------------------------------------------------------- optimizers against an oracle

OPTIMIZER_STEPS = 6
# per param dtype: tolerance of a param against the oracle's
OPTIMIZER_CLOSE = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float64: {"rtol": 1e-12, "atol": 1e-14},
    # one bfloat16 ulp: both sides round the same float32 value, up to float32 rounding
    torch.bfloat16: {"rtol": torch.finfo(torch.bfloat16).eps, "atol": 1e-6},
}
# name: the params of one group, as (shape, dtype, memory format); 4099 elements span two
# chunks of the device kernels
OPTIMIZER_GROUPS = {
    "float32": [((7,), torch.float32, None), ((4099,), torch.float32, None),
                ((3, 5), torch.float32, None)],
    "float64": [((7,), torch.float64, None), ((3, 5), torch.float64, None)],
    "bfloat16": [((7,), torch.bfloat16, None), ((4099,), torch.bfloat16, None)],
    "channels_last": [((2, 3, 4, 5), torch.float32, torch.channels_last),
                      ((5,), torch.float32, None)],
    "mixed": [((7,), torch.float32, None), ((3, 5), torch.float64, None),
              ((4099,), torch.bfloat16, None),
              ((2, 3, 4, 5), torch.float32, torch.channels_last)],
}


def make_param(shape, dtype=torch.float32, layout=None, seed=0, device="cpu"):
    """A seeded random tensor of ``dtype`` in memory format ``layout`` (None: contiguous)."""
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    return t if layout is None else t.contiguous(memory_format=layout)


def optimizer_trajectories(make_ours, make_oracle, group, device="cpu",
                           steps=OPTIMIZER_STEPS):
    """Params of ``group`` stepped by ``make_ours(params)``, and copies stepped by
    ``make_oracle(copies)`` with the same gradients (each in its param's dtype and layout).

    The copies are in the precision of the moments (float32 for bfloat16 params) and are
    rounded to their param's dtype after every step, as the fused optimizers do.
    Returns ``(optimizer, params, copies)``.
    """
    ours = [make_param(s, d, f, seed=i, device=device).requires_grad_()
            for i, (s, d, f) in enumerate(group)]
    wide = [p.detach().to(torch.float32 if p.dtype == torch.bfloat16 else p.dtype).clone()
            .requires_grad_() for p in ours]
    optimizer, oracle = make_ours(ours), make_oracle(wide)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p, q in zip(ours, wide, strict=True):
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=generator))
            q.grad = torch.empty_like(q).copy_(p.grad)
        optimizer.step()
        oracle.step()
        with torch.no_grad():
            for p, q in zip(ours, wide, strict=True):
                q.copy_(q.to(p.dtype))
    return optimizer, ours, wide


def assert_params_close(ours, wide) -> None:
    """Each param equals its oracle copy within the tolerance of its dtype."""
    for p, q in zip(ours, wide, strict=True):
        assert p.dtype == p.grad.dtype and p.stride() == p.grad.stride()
        torch.testing.assert_close(p.detach().to(q.dtype), q.detach(),
                                   **OPTIMIZER_CLOSE[p.dtype])
