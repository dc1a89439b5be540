"""The nol-fast command line, the built-in default job and the example script, end to end."""

from __future__ import annotations

import json
import re
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
from nol_fast.data import create_data_loader
from nol_fast.models import FNO

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



def test_train_reports_the_test_error_of_the_best_epoch(tmp_path, capsys):
    # SGD at lr 0.5 overshoots in the last epoch, so the best epoch is not the last one and
    # the weights the run ends with must be restored from it.
    config = {section: dict(values) for section, values in TINY.items()}
    config["training"].update(epochs=4, optimizer="sgd", learning_rate=0.5,
                              scheduler="constant", warmup_steps=0)
    path, out = tmp_path / "c.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path), "--out", str(out)]) == 0
    trained = re.search(r"test relative L2 error \(best weights\): (\S+)%",
                        capsys.readouterr().out).group(1)
    val_loss = torch.load(out / "checkpoints/last.pt", weights_only=True)["history"]["val_loss"]
    best_epoch = val_loss.index(min(val_loss)) + 1
    assert best_epoch < len(val_loss)
    # Oracle: the checkpoint written at the best epoch, evaluated on its own.
    assert main(["evaluate", str(out / "checkpoints/best.pt"), "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint epoch {best_epoch})" in printed
    assert re.search(r"relative L2 error=(\S+)%", printed).group(1) == trained

def test_print_config_shows_the_default(capsys):
    assert main(["train", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == Config.from_dict(
        default_config()).to_dict()


@pytest.mark.parametrize("change, message", [
    ({"training": {"optimizer": "adamx"}},
     "unknown optimizer 'adamx'; choose one of: adam, adamw, sgd, rmsprop, adabound"),
    ({"training": {"scheduler": "cosinus"}}, "unknown scheduler 'cosinus'"),
    ({"model": {"model_type": "fnox"}}, "unknown model 'fnox'; choose one of: fno"),
    ({"model": {"name": "fnoo"}}, "unknown option(s) 'name' (the model is chosen by 'model_type')"),
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


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_train_help_names_the_default_job(capsys):
    """'nol-fast --help' and 'nol-fast train --help' describe the default job that runs: its
    dataset, and no other built-in one."""
    default = default_config()["data"]["dataset"]
    others = {"heat", "darcy", "burgers", "navier"} - {default}
    summary = next(line for line in _help([], capsys).splitlines()
                   if line.split()[:1] == ["train"])
    for text in (summary, _help(["train"], capsys)):
        words = text.lower()
        assert default in words and not [name for name in others if name in words], text


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
def test_default_job_learns_darcy_flow(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    printed = capsys.readouterr().out
    best = float(printed.split("best validation relative L2 error:")[1].split("%")[0])
    test = float(printed.split("test relative L2 error")[1].split(":")[1].split("%")[0])
    # percent; the FNO paper reports about 1% at 85x85 after 500 epochs
    assert best < 5.0 and test < 5.0
    assert (tmp_path / "runs/darcy-fno/report.png").is_file()


def test_runs_are_reproducible_from_the_seed(tiny_config, tmp_path):
    histories = []
    for name in ("a", "b"):
        assert main(["train", "--config", str(tiny_config), "--out", str(tmp_path / name)]) == 0
        state = torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)
        histories.append({k: v for k, v in state["history"].items() if k != "epoch_time"})
    assert histories[0] == histories[1]


OPTIMIZER_ROWS = [
    "nol_fast FusedAdamW", "nol_fast FusedAdamW reference", "torch AdamW foreach=False",
    "torch AdamW foreach=True", "torch AdamW fused=True", "nol_fast AdaBound",
    "nol_fast AdaBound reference", "adabound AdaBound",
]
# ratio column: {row: anchor row}; every other cell of the column is "-"
OPTIMIZER_RATIOS = {
    "vs torch fused": {row: "torch AdamW fused=True" for row in OPTIMIZER_ROWS[:4]},
    "vs adabound": {row: "adabound AdaBound" for row in OPTIMIZER_ROWS[5:7]},
    "vs reference": {"nol_fast FusedAdamW": "nol_fast FusedAdamW reference",
                     "nol_fast AdaBound": "nol_fast AdaBound reference"},
}


def test_benchmark_optim_prints_every_candidate_with_consistent_numbers(capsys):
    assert main(["benchmark", "optim", "--sets", "fno", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()

    # the FNO's parameters, complex ones counted as pairs of reals
    model = FNO(n_modes=(16, 16), hidden_channels=32)
    numel = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    tensors = len(list(model.parameters()))
    assert f"fno ({numel:,} elements in {tensors} tensors)" in lines[0]
    assert "threads" in lines[0]
    copy = re.search(r"copy 10M fp32: (\S+) ms = (\S+) GB/s", "\n".join(lines))
    copy_ms, copy_gbps = float(copy[1]), float(copy[2])
    assert copy_gbps == pytest.approx(8e7 / copy_ms / 1e6, rel=2e-3, abs=0.05)

    header = next(line for line in lines if line.startswith("candidate"))
    assert re.search(r"ms/step +GB/s +% of copy +vs torch fused +vs adabound +vs reference$",
                     header)
    rows = {}
    for line in lines:
        fields = line.split()
        name = " ".join(fields[:-6])
        if name in OPTIMIZER_ROWS:
            rows[name] = fields[-6:]
    skipped = {row for row in OPTIMIZER_ROWS
               if any(line.startswith(f"{row}: skipped (") for line in lines)}
    assert set(rows) | skipped == set(OPTIMIZER_ROWS) and not set(rows) & skipped
    assert skipped <= {"adabound AdaBound"}  # only the optional package may be missing

    ms = {name: float(fields[0]) for name, fields in rows.items()}
    for name, (_, gbps, share, *ratios) in rows.items():
        assert ms[name] > 0
        expected_gbps = 28 * numel / ms[name] / 1e6
        assert float(gbps) == pytest.approx(expected_gbps, rel=2e-3, abs=0.05), name
        expected_share = 100 * expected_gbps / (8e7 / copy_ms / 1e6)
        assert float(share) == pytest.approx(expected_share, rel=3e-3, abs=0.05), name
        for column, cell in zip(OPTIMIZER_RATIOS, ratios, strict=True):
            anchor = OPTIMIZER_RATIOS[column].get(name)
            if anchor is None or anchor not in ms:
                assert cell == "-", (name, column)
            else:
                assert cell.endswith("x"), (name, column)
                expected = ms[anchor] / ms[name]
                assert float(cell[:-1]) == pytest.approx(expected, rel=2e-3, abs=0.006), name
    assert lines[-1].startswith("ratios: anchor time / time, > 1 is faster")


def test_benchmark_optim_rejects_unknown_sets_and_repeats(capsys):
    assert main(["benchmark", "optim", "--sets", "fno,huge"]) == 1
    err = capsys.readouterr().err
    assert "unknown parameter set(s) ['huge']; choose from: fno, 10m" in err
    assert "Traceback" not in err
    assert main(["benchmark", "optim", "--sets", " , "]) == 1
    assert "no parameter set given; choose from: fno, 10m" in capsys.readouterr().err
    assert main(["benchmark", "optim", "--repeat", "0"]) == 1
    assert "--repeat must be a positive int, got 0" in capsys.readouterr().err


def test_data_generate_writes_a_file_the_loader_reads(tmp_path, capsys):
    out = tmp_path / "darcy.h5"
    assert main(["data", "generate", "darcy", "--n", "6", "--resolution", "9", "--seed", "3",
                 "--out", str(out)]) == 0
    assert "generated 6 darcy samples" in capsys.readouterr().out
    # Oracle: the generator itself, called directly with the same arguments.
    from nol_fast.data.darcy import generate_darcy

    a, u = generate_darcy(6, resolution=9, seed=3)
    loader = create_data_loader({"dataset": "file", "path": str(out), "n_train": 4, "n_val": 1,
                                 "n_test": 1, "batch_size": 4, "shuffle": False}, "train")
    x, y = next(iter(loader))
    torch.testing.assert_close(x, a[:4])
    torch.testing.assert_close(y, u[:4])
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "(6, 1, 9, 9)" in info and '"name": "darcy"' in info


def test_data_generate_time_series_and_bad_options(tmp_path, capsys):
    out = tmp_path / "ns.h5"
    assert main(["data", "generate", "navier_stokes", "--n", "2", "--resolution", "8",
                 "--set", "time=0.002", "--set", "n_records=2", "--set", "device=cpu",
                 "--out", str(out)]) == 0
    assert "trajectories (2, 3, 8, 8)" in capsys.readouterr().out
    assert main(["data", "generate", "darcy", "--n", "2", "--out", str(out),
                 "--set", "bogus=1"]) == 1
    assert "--set 'bogus=1'" in capsys.readouterr().err


def test_benchmark_e2e_table_and_json_agree(tmp_path, capsys, monkeypatch, request):
    pytest.importorskip("neuralop")
    from nol_fast.bench import e2e

    # A tiny setup: the table's shape, the JSON file and the guard, not the speed. One thread:
    # steps this small spend two threads' time in OpenMP barriers, several times over when other
    # jobs share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    monkeypatch.setitem(e2e.SETUPS, "tiny", e2e.Setup((4, 4), 8, 2, 2, (8, 8)))
    monkeypatch.setattr(e2e, "STEPS_PER_EPOCH", 2)
    monkeypatch.setattr(e2e, "GUARD_STEPS", 3)
    out = tmp_path / "e2e.json"
    assert main(["benchmark", "e2e", "--setups", "tiny", "--repeat", "1", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy guard FAILED" not in text
    report = json.loads(out.read_text())
    results = {r["candidate"]: r for r in report["results"]}
    assert list(results) == list(e2e.NAMES)
    loop_ms = results[e2e.NEURALOP_LOOP]["ms_per_step"]
    for name, r in results.items():
        assert r["guard_ok"] and r["peak_mb"] > 0 and r["ms_per_step"] > 0
        assert r["ratios"][e2e.NEURALOP_LOOP] == pytest.approx(loop_ms / r["ms_per_step"])
        row = next(line for line in text.splitlines() if line.startswith(f"tiny  {name}"))
        assert f"{r['ratios'][e2e.NEURALOP_LOOP]:.2f}x" in row
    assert results[e2e.OURS_FP32]["dtype"] == "float32"
    assert main(["benchmark", "e2e", "--setups", "huge"]) == 1
    assert "unknown e2e setup(s) ['huge']" in capsys.readouterr().err
    assert report["variants"] == ["eager"]


@pytest.mark.parametrize(("variants", "message"), [
    ("eager,warp", "unknown e2e variant(s) ['warp']"),
    ("graphs", "e2e variant(s) ['graphs'] need a CUDA device, got cpu"),
])
def test_benchmark_e2e_variants_are_checked_before_anything_runs(capsys, variants, message):
    assert main(["benchmark", "e2e", "--device", "cpu", "--variants", variants]) == 1
    assert message in capsys.readouterr().err


def test_e2e_candidates_of_the_variants():
    from nol_fast.bench import e2e

    names = list(e2e.candidates(e2e.SETUPS["c"], [], torch.device("cpu"),
                                variants=["eager", "compile"]))
    assert names == [e2e.NEURALOP_LOOP, e2e.NEURALOP_TRAINER, e2e.OURS_FP32, e2e.OURS_DEFAULT,
                     "nol_fast compile fp32", "nol_fast compile default"]


def test_benchmark_physics_prints_both_residuals_with_consistent_ratios(capsys):
    assert main(["benchmark", "physics", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "fields 8x1x128x128" in lines[0] and "threads" in lines[0]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[3:-1]}
    assert set(rows) == {(r, i) for r in ("navier_stokes", "darcy")
                         for i in ("reference", "fused", "floor")}
    for residual in ("navier_stokes", "darcy"):
        ref, fused = rows[residual, "reference"], rows[residual, "fused"]
        ratios = [float(x) for x in fused[3].rstrip("x").split("x/")]
        for column, ratio in zip(range(3), ratios, strict=True):
            assert ratio == pytest.approx(float(ref[column]) / float(fused[column]), rel=0.02,
                                          abs=0.006)
        assert rows[residual, "floor"][2] == "-"
    assert main(["benchmark", "physics", "--residuals", "heat"]) == 1
    assert "unknown residual(s) ['heat']; choose from: navier_stokes, darcy" in (
        capsys.readouterr().err)


def test_train_selects_the_physics_informed_loss_from_the_config(tmp_path):
    config = {
        "model": {"model_type": "fno", "n_modes": [4, 4], "hidden_channels": 8, "n_layers": 1},
        "data": {"dataset": "darcy", "resolution": 9, "n_train": 8, "n_val": 4, "n_test": 4,
                 "batch_size": 4, "normalize": True},
        "training": {"epochs": 1, "batch_size": 4, "warmup_steps": 1,
                     "loss": {"name": "physics_informed", "data_loss": "rel_l2",
                              "pde": {"name": "darcy", "forcing": 1.0}, "pde_weight": 1e-3,
                              "boundary": "dirichlet", "boundary_weight": 0.5}},
    }
    path = tmp_path / "pino.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 0
    history = torch.load(out / "checkpoints/last.pt", weights_only=True)["history"]
    for key in ("train_loss_data", "train_loss_pde", "train_loss_boundary", "val_loss_pde"):
        assert len(history[key]) == 1 and history[key][0] > 0, key
    assert (history["train_loss"][0] == pytest.approx(
        history["train_loss_data"][0] + 1e-3 * history["train_loss_pde"][0]
        + 0.5 * history["train_loss_boundary"][0], rel=1e-5))
