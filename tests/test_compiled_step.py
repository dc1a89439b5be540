"""The compiled Trainer on the CPU (inductor's C++ backend) against the eager one.

Compiling is slow on a small CPU, so one run checks everything that needs a compiled step:
the same loss curve as eager, no recompile after the first epoch (train and eval both warm),
and checkpoints without ``_orig_mod.`` prefixes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.models import FNO
from nol_fast.optim import FusedAdamW
from nol_fast.training import Trainer, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def _fno_run(compile_mode: str) -> Trainer:
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 1, 12, 12, generator=g), torch.randn(24, 1, 12, 12, generator=g)
    y = y * 0.1 + x  # learnable: the loss falls
    train = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
    val = DataLoader(TensorDataset(x[16:], y[16:]), batch_size=8)
    config = TrainingConfig(mixed_precision=False, compile=compile_mode, log_frequency=0)
    trainer = Trainer(model, train, val, FusedAdamW(model.parameters(), lr=1e-2), config=config)
    return trainer


def test_compiled_trainer_matches_eager_and_never_recompiles(tmp_path, monkeypatch):
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:  # the repository's (ignored) cache
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
    compiled = _fno_run("default")
    assert compiled.fast_paths.compile_mode == "default"
    compiled.train(1)  # warm-up: the training and the evaluation graphs compile here
    with torch._dynamo.config.patch(error_on_recompile=True):
        history = compiled.train(4)
    eager = _fno_run("off").train(4)
    for key in ("train_loss", "val_loss", "val_rel_l2"):
        torch.testing.assert_close(history[key], eager[key], rtol=1e-4, atol=0)
    assert history["train_loss"][-1] < history["train_loss"][0]
    compiled.save_checkpoint(str(tmp_path / "c.pt"))
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert not [k for k in state["model"] if "_orig_mod" in k]
    assert state["model"].keys() == FNO(n_modes=(4, 4), hidden_channels=8,
                                        n_layers=2).state_dict().keys()


def test_a_model_compiled_by_the_caller_is_unwrapped(tmp_path):
    """``torch.compile(model)`` compiles nothing until called: the Trainer trains the module
    inside (compiling its own step), and neither checkpoints nor callbacks see the wrapper."""
    model = torch.nn.Conv1d(3, 2, 1)
    wrapped = torch.compile(model)
    trainer = Trainer(wrapped, [(torch.randn(4, 3, 5), torch.randn(4, 2, 5))], None,
                      torch.optim.SGD(wrapped.parameters(), lr=0.1),
                      config=TrainingConfig(mixed_precision=False))
    assert trainer.model is model
    assert trainer.fast_paths.compile_mode == "default"
    assert "compiled by the caller" in trainer.fast_paths.reasons["compile"]
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    assert set(torch.load(tmp_path / "c.pt", weights_only=True)["model"]) == {"weight", "bias"}


@pytest.mark.parametrize(("value", "expected"), [(True, "default"), (False, "off"),
                                                 ("max-autotune", "max-autotune")])
def test_compile_field_values(value, expected):
    assert TrainingConfig(compile=value).compile == expected
