"""Shared fixtures: tiny models and loaders that make trainer tests fast and deterministic."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from hypothesis import settings
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

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
