"""The nol-fast command line, the built-in default job and the example script, end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nol_fast.cli.defaults import default_config
from nol_fast.cli.main import main
from nol_fast.config import Config

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "model": {"model_type": "fno", "n_modes": [6, 6], "hidden_channels": 8, "n_layers": 2},
    "data": {"dataset": "heat", "resolution": 16, "n_train": 40, "n_val": 10, "n_test": 10,
             "batch_size": 10},
    "training": {"epochs": 2, "learning_rate": 3e-3, "warmup_steps": 2, "save_frequency": 1},
}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_writes_checkpoints_logs_and_report(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "final validation relative L2 error:" in printed
    assert "best validation relative L2 error:" in printed
    for name in ("config.yaml", "report.png", "checkpoints/best.pt", "checkpoints/last.pt",
                 "checkpoints/epoch_001.pt", "checkpoints/epoch_002.pt"):
        assert (out / name).is_file(), name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert Config.load(out / "config.yaml").to_dict() == Config.from_dict(TINY).to_dict()
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["model_config"]["model_type"] == "fno"

    # --resume continues from last.pt to the new total
    assert main(["train", "--config", str(tiny_config), "--out", str(out), "--epochs", "3",
                 "--resume"]) == 0
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]["train_loss"]) == 3

    # evaluate reads the run's config.yaml next to the checkpoints folder
    assert main(["evaluate", str(out / "checkpoints/best.pt"), "--split", "val"]) == 0
    assert "val: loss=" in capsys.readouterr().out


def test_print_config_shows_the_default(capsys):
    assert main(["train", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == Config.from_dict(
        default_config()).to_dict()


@pytest.mark.parametrize("change, message", [
    ({"training": {"optimizer": "adamx"}},
     "unknown optimizer 'adamx'; choose one of: adam, adamw, sgd, rmsprop, adabound"),
    ({"training": {"scheduler": "cosinus"}}, "unknown scheduler 'cosinus'"),
    ({"model": {"model_type": "fnox"}}, "unknown model 'fnox'; choose one of: fno"),
    ({"data": {"dataset": "darcyx"}}, "darcyx"),
])
def test_bad_names_exit_with_one_clear_line(tmp_path, capsys, change, message):
    config = {section: {**TINY[section], **change.get(section, {})} for section in TINY}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_config_file_and_resume_without_checkpoint(tmp_path, tiny_config, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--config", str(tiny_config), "--out", str(tmp_path / "new"),
                 "--resume"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "nol_fast", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("nol-fast ")
    out = subprocess.run([sys.executable, "-m", "nol_fast", "info"], capture_output=True,
                         text=True, check=True)
    assert f"torch {torch.__version__}" in out.stdout


def test_example_script_runs_as_written(tmp_path):
    for name in ("train.py", "config.yaml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    out = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Training completed!" in out.stdout
    assert "Best validation loss:" in out.stdout
    assert (tmp_path / "best_model.pt").is_file()
    assert list((tmp_path / "runs" / "experiment").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_default_job_learns_the_heat_operator(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    printed = capsys.readouterr().out
    best = float(printed.split("best validation relative L2 error:")[1].split("%")[0])
    assert best < 3.0  # percent; an FNO represents this operator almost exactly
    assert (tmp_path / "runs/heat-fno/report.png").is_file()


def test_runs_are_reproducible_from_the_seed(tiny_config, tmp_path):
    histories = []
    for name in ("a", "b"):
        assert main(["train", "--config", str(tiny_config), "--out", str(tmp_path / name)]) == 0
        state = torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)
        histories.append({k: v for k, v in state["history"].items() if k != "epoch_time"})
    assert histories[0] == histories[1]
