"""The Training API's example script (examples/train.py, verbatim) with every scheduler it names.

The script builds its scheduler with ``create_scheduler(optimizer, config.training.scheduler,
config.training.warmup_steps)``, without any schedule option, so each schedule must work from its
documented defaults. The learning rates it logs are checked against closed forms written out
here.
"""

from __future__ import annotations

import math
import runpy
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

BASE_LR = 3e-3
WARMUP = 2
STEPS_PER_EPOCH = 4  # n_train / batch_size
EPOCHS = 3
DECAY = EPOCHS * STEPS_PER_EPOCH - WARMUP  # optimizer steps after warm-up in the run

TINY = {
    "model": {"model_type": "fno", "n_modes": [3, 3], "in_channels": 1, "out_channels": 1,
              "hidden_channels": 8, "n_layers": 2},
    "data": {"dataset": "heat", "resolution": 8, "n_train": 40, "n_val": 10, "n_test": 10,
             "batch_size": 10, "seed": 0},
    "training": {"epochs": EPOCHS, "learning_rate": BASE_LR, "warmup_steps": WARMUP,
                 "early_stopping_patience": 5},
}


def lr_after(scheduler: str, t: int) -> float:
    """The lr after ``t`` optimizer steps, from the documented defaults of each schedule."""
    if t < WARMUP:
        return BASE_LR * (t + 1) / WARMUP
    s = t - WARMUP
    if scheduler == "cosine":  # T_max = the whole run
        return BASE_LR * (1 + math.cos(math.pi * s / DECAY)) / 2
    if scheduler == "linear":  # T_max = the whole run, end_factor 0
        return BASE_LR * (1 - s / DECAY)
    if scheduler == "cosine_restarts":  # three periods: T_0 = ceil(DECAY / 3)
        period = math.ceil(DECAY / 3)
        return BASE_LR * (1 + math.cos(math.pi * (s % period) / period)) / 2
    if scheduler == "step":  # gamma 0.1 at one and two thirds of the decay
        return BASE_LR * 0.1 ** (s // math.ceil(DECAY / 3))
    if scheduler == "exponential":  # 1 % of the base lr at the end of the run
        return BASE_LR * 0.01 ** (s / DECAY)
    if scheduler == "plateau":  # no plateau within three epochs at the default patience 10
        return BASE_LR
    raise AssertionError(scheduler)


@pytest.mark.parametrize(
    "scheduler", ["cosine", "cosine_restarts", "plateau", "step", "linear", "exponential"]
)
def test_example_script_runs_with_each_scheduler(scheduler, tmp_path, monkeypatch, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shutil.copy(ROOT / "examples" / "train.py", tmp_path / "train.py")
    config = {**TINY, "training": {**TINY["training"], "scheduler": scheduler}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)

    runpy.run_path("train.py", run_name="__main__")

    printed = capsys.readouterr().out
    assert "Training completed!" in printed
    best = float(printed.split("Best validation loss:")[1])
    assert math.isfinite(best)
    assert (tmp_path / "best_model.pt").is_file()
    events = EventAccumulator(str(tmp_path / "runs" / "experiment"))
    events.Reload()
    logged = [s.value for s in events.Scalars("epoch/lr")]
    expected = [lr_after(scheduler, STEPS_PER_EPOCH * (e + 1)) for e in range(EPOCHS)]
    assert logged == pytest.approx(expected, rel=1e-6, abs=1e-12)
