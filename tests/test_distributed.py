"""DistributedTrainer on 2 CPU processes (gloo, torchrun --standalone) against one-process oracles.

Each scenario of tests/distributed_worker.py runs under torchrun and writes every rank's
results; the tests compare them with a one-process Trainer that sees the combined batches in
the same order, with an uninterrupted run, or with hand-made expectations. Every launch has a
wall-clock limit, and every collective a 60 s timeout, so a hung rank fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from distributed_worker import (
    BATCH,
    N_TRAIN,
    SEED,
    make_config,
    make_data,
    make_loaders,
    make_model,
    make_optimizer,
)
from torch.utils.data import DataLoader, Sampler, TensorDataset

from nol_fast.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
EPOCHS = 3
LAUNCH_TIMEOUT = 300  # seconds per torchrun launch, start-up of every rank included


def torchrun(scenario: str, out: Path, options: dict | None = None, nproc: int = 2,
             max_restarts: int = 0, expect: int = 0) -> subprocess.CompletedProcess:
    """Run a scenario under torchrun; assert its exit status."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", f"--max-restarts={max_restarts}",
               "--monitor-interval=0.2", str(WORKER), scenario, str(out),
               json.dumps(options or {})]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, env=env, capture_output=True, text=True,
                            timeout=LAUNCH_TIMEOUT, cwd=ROOT)
    if (result.returncode == 0) != (expect == 0):
        raise AssertionError(f"torchrun {scenario} exited with {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def ranks(out: Path, nproc: int = 2) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


class ConsecutiveBatches(Sampler[list[int]]):
    """The union of the ranks' batches of each step: ``world × batch`` consecutive indices
    of the permutation ``DistributedSampler`` draws for each epoch (seed + epoch)."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        self.n, self.size, self.seed, self.epoch = n, size, seed, 0

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(
            self.seed + self.epoch)).tolist()
        self.epoch += 1
        return iter([order[i:i + self.size] for i in range(0, self.n, self.size)])

    def __len__(self) -> int:
        return math.ceil(self.n / self.size)


def oracle(epochs: int = EPOCHS, world_size: int = 2, **config) -> tuple[dict, dict]:
    """One process, batches of ``world_size × BATCH`` in the distributed order: history and
    final weights."""
    x, y = make_data()
    train = DataLoader(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]),
                       batch_sampler=ConsecutiveBatches(N_TRAIN, world_size * BATCH, SEED))
    model = make_model()
    optimizer, scheduler = make_optimizer(model)
    trainer = Trainer(model, train, make_loaders()[1], optimizer, scheduler,
                      config=make_config(**config))
    history = trainer.train(epochs)
    return history, trainer.model.state_dict()


def assert_weights_close(ours: dict, theirs: dict, atol: float = 1e-5) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=atol, rtol=0, msg=name)


def without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch_time"}


def assert_same_history_on_all_ranks(results: list[dict]) -> None:
    first = without_time(results[0]["history"])
    for result in results[1:]:
        assert without_time(result["history"]) == first


def assert_history_close(ours: dict, theirs: dict, rtol: float = 1e-5) -> None:
    ours, theirs = without_time(ours), without_time(theirs)
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(torch.tensor(ours[name]), torch.tensor(theirs[name]),
                                   rtol=rtol, atol=1e-7, msg=name)


#: Option sets trained with gradient accumulation (2 micro-batches per step).
OPTION_SETS = {
    "fsdp-checkpointing": {"strategy": "fsdp", "activation_checkpointing": True,
                           "reshard_after_forward": False},
    "hsdp-2x1": {"strategy": "hsdp", "shard_size": 1},
    "ddp-static": {"strategy": "ddp", "static_graph": True, "gradient_as_bucket_view": False},
}
ACCUMULATION = {"gradient_accumulation_steps": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One launch: ddp and fsdp for EPOCHS epochs, then each of OPTION_SETS for 2 epochs."""
    out = tmp_path_factory.mktemp("runs")
    plan = [["fit", name, {"epochs": EPOCHS, "parallelism": {"strategy": name}}]
            for name in ("ddp", "fsdp")]
    plan += [["fit", name, {"epochs": 2, "parallelism": parallelism, "config": ACCUMULATION}]
             for name, parallelism in OPTION_SETS.items()]
    torchrun("several", out, {"runs": plan})
    return out


@pytest.fixture(scope="module")
def ddp_run(runs):
    return runs / "ddp"


@pytest.fixture(scope="module")
def fsdp_run(runs):
    return runs / "fsdp"


@pytest.fixture(scope="module")
def one_process():
    return oracle()


# ------------------------------------------------------------------ the same weights


def test_ddp_matches_one_process_with_the_combined_batch(ddp_run, one_process):
    history, weights = one_process
    results = ranks(ddp_run)
    assert_weights_close(results[0]["weights"], weights)
    assert results[0]["weights"]["blocks.0.spectral.weight"].is_complex()
    assert_same_history_on_all_ranks(results)
    assert_history_close(results[0]["history"], history)


def test_fsdp_matches_one_process_with_the_combined_batch(fsdp_run, one_process):
    history, weights = one_process
    results = ranks(fsdp_run)
    assert_weights_close(results[0]["weights"], weights)
    assert results[1]["weights"] == {}  # full weights are gathered on rank 0 only
    assert_same_history_on_all_ranks(results)
    assert_history_close(results[0]["history"], history)


@pytest.fixture(scope="module")
def one_process_accumulating():
    return oracle(epochs=2, **ACCUMULATION)


@pytest.mark.parametrize("name", OPTION_SETS)
def test_strategy_options_keep_the_one_process_weights(runs, name, one_process_accumulating):
    """Gradient accumulation (2 micro-batches: no_sync / no reduce-scatter on the first)
    with each option set against the one-process run with the same accumulation."""
    history, weights = one_process_accumulating
    results = ranks(runs / name)
    assert_weights_close(results[0]["weights"], weights)
    assert_same_history_on_all_ranks(results)
    assert_history_close(results[0]["history"], history)


# ------------------------------------------------------------------ checkpoints


def test_ddp_checkpoint_loads_and_evaluates_in_one_process(ddp_run):
    result = ranks(ddp_run)[0]
    model = make_model()
    trainer = Trainer(model, make_loaders()[0], make_loaders()[1], make_optimizer(model)[0],
                      config=make_config())
    state = trainer.load_checkpoint(str(ddp_run / "last.pt"))
    assert state["epoch"] == EPOCHS and trainer.epoch == EPOCHS
    assert_weights_close(trainer.model.state_dict(), result["weights"], atol=0)
    assert without_time(trainer.history) == without_time(result["history"])
    metrics = trainer.evaluate(make_loaders()[1], return_predictions=True)
    distributed = result["evaluation"]
    assert metrics["n_samples"] == distributed["n_samples"] == 7
    torch.testing.assert_close(metrics["predictions"], distributed["predictions"])
    for name in ("loss", "rel_l2"):
        assert metrics[name] == pytest.approx(distributed[name], rel=1e-6)
    best = torch.load(ddp_run / "best_weights.pt", weights_only=True)
    model.load_state_dict(best)  # a plain state dict under the model's own names


def test_writers_act_on_global_rank_zero_only(ddp_run, fsdp_run):
    for run in (ddp_run, fsdp_run):
        first, second = ranks(run)
        assert second["written"] == []
        assert any(path.endswith("best_weights.pt") for path in first["written"])
        assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1


def test_sharded_checkpoint_consolidates_into_a_one_process_checkpoint(fsdp_run, tmp_path):
    from nol_fast.cli.main import main

    result = ranks(fsdp_run)[0]
    assert (fsdp_run / "last.pt").is_dir()
    full = tmp_path / "full.pt"
    assert main(["checkpoint", "consolidate", str(fsdp_run / "last.pt"), str(full)]) == 0
    model = make_model()
    trainer = Trainer(model, make_loaders()[0], make_loaders()[1], make_optimizer(model)[0],
                      config=make_config())
    trainer.load_checkpoint(str(full))  # model, optimizer (complex moments) and the rest
    assert_weights_close(trainer.model.state_dict(), result["weights"], atol=0)
    moments = trainer.optimizer.state_dict()["state"]
    spectral = [i for i, p in enumerate(trainer.optimizer.param_groups[0]["params"])
                if p.is_complex()]
    assert spectral and all(moments[i]["exp_avg"].is_complex() for i in spectral)
    assert without_time(trainer.history) == without_time(result["history"])
    metrics = trainer.evaluate(make_loaders()[1])
    assert metrics["loss"] == pytest.approx(result["evaluation"]["loss"], rel=1e-6)


def test_sharded_checkpoint_resumes_on_another_number_of_ranks(fsdp_run, tmp_path):
    """Saved by 2 ranks after epoch 1, resumed on 1 rank with twice the batch size: the same
    samples per step, so the same weights as the uninterrupted 2-rank run."""
    options = {"epochs": EPOCHS, "parallelism": {"strategy": "fsdp"},
               "checkpoint": str(fsdp_run / "epoch1"), "batch_size": 2 * BATCH}
    torchrun("resume", tmp_path, options, nproc=1)
    resumed, uninterrupted = ranks(tmp_path, nproc=1)[0], ranks(fsdp_run)[0]
    assert_weights_close(resumed["weights"], uninterrupted["weights"])
    assert_history_close(resumed["history"], uninterrupted["history"])


# ------------------------------------------------------------------ preemption and faults


@pytest.mark.parametrize("strategy, signum", [("ddp", signal.SIGTERM), ("fsdp", signal.SIGUSR1)],
                         ids=["ddp-SIGTERM", "fsdp-SIGUSR1"])
def test_signal_mid_epoch_saves_and_the_resumed_run_matches(strategy, signum, ddp_run, fsdp_run,
                                                             tmp_path):
    uninterrupted = ranks({"ddp": ddp_run, "fsdp": fsdp_run}[strategy])[0]
    options = {"epochs": EPOCHS, "parallelism": {"strategy": strategy},
               "signal": signum.name, "signal_rank": 1, "signal_at": [1, 1]}
    result = torchrun("preempt", tmp_path / "first", options, expect=128 + signum)
    assert re.search(rf"exitcode\s*: {128 + signum}\b", result.stderr)
    saved = tmp_path / "first" / "preempted"
    position = _saved_position(saved, strategy)
    # rank 1 saw the signal after batch 1 of epoch 2; all ranks stopped one step later
    assert (position["epoch"], position["batch"]) == (1, 3)

    options = {"epochs": EPOCHS, "parallelism": {"strategy": strategy},
               "checkpoint": str(saved)}
    torchrun("resume", tmp_path / "second", options)
    results = ranks(tmp_path / "second")
    assert_same_history_on_all_ranks(results)
    resumed = results[0]
    assert_weights_close(resumed["weights"], uninterrupted["weights"], atol=0)
    ours, theirs = without_time(resumed["history"]), without_time(uninterrupted["history"])
    # the interrupted epoch's training loss sums its two parts in float64: equal to rounding
    torch.testing.assert_close(ours.pop("train_loss"), theirs.pop("train_loss"), rtol=1e-6,
                               atol=0)
    assert ours == theirs


def test_a_killed_rank_is_recovered_by_torchrun_restarts(ddp_run, tmp_path):
    options = {"epochs": EPOCHS, "parallelism": {"strategy": "ddp"}, "kill_at": [1, 2]}
    torchrun("crash", tmp_path, options, max_restarts=1)
    results = ranks(tmp_path)
    assert [r["attempt"] for r in results] == [1, 1]
    uninterrupted = ranks(ddp_run)[0]
    assert_weights_close(results[0]["weights"], uninterrupted["weights"], atol=0)
    assert without_time(results[0]["history"]) == without_time(uninterrupted["history"])
    assert_same_history_on_all_ranks(results)


# ------------------------------------------------------------------ shared decisions


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """One launch: the early-stopping and the mixed-precision scenarios."""
    out = tmp_path_factory.mktemp("shared")
    options = {"parallelism": {"strategy": "ddp"}}
    torchrun("several", out, {"runs": [["early_stop", "early_stop", options],
                                       ["amp", "amp", options]]})
    return out


def test_early_stopping_stops_both_ranks_at_the_same_epoch(shared_runs):
    for result in ranks(shared_runs / "early_stop"):
        assert result["stopped_epoch"] == 1
        assert len(result["first"]["train_loss"]) == 2
        # a callback that stopped rank 1 only: both ranks stopped after epoch 2, none hung
        assert len(result["second"]["train_loss"]) == 2
        # close() destroyed the control group at once: no reference kept it, and its gloo
        # worker threads ended (left to the interpreter's exit, they could abort the process)
        assert result["closed"]["control_alive"] is False
        assert result["closed"]["threads_ended"] >= 2
        assert "closed" in result["closed"]["train_after_close"]


def test_mixed_precision_is_the_same_on_every_rank(shared_runs):
    for result in ranks(shared_runs / "amp"):
        assert result["agreed"] == {"bf16+fp16": "torch.float16", "bf16+fp32": "None",
                                    "same": "torch.bfloat16"}
        # rank 1's gradient shard held an inf: every rank skipped the step and backed off
        assert result["skipped"] is True
        assert result["scale"] == 512.0


# ------------------------------------------------------------------ launch


def test_nol_fast_train_runs_under_torchrun(tmp_path, monkeypatch, capsys):
    """``nol-fast train --config FILE`` on 2 ranks (ddp): rank 0 alone prints and writes the
    run's files, and its test error of the best weights is what one process computes from the
    best checkpoint (``nol-fast evaluate``)."""
    from nol_fast.cli.main import main

    config = {
        "model": {"model_type": "fno", "n_modes": [6, 6], "hidden_channels": 8, "n_layers": 2},
        "data": {"dataset": "heat", "resolution": 16, "n_train": 40, "n_val": 10,
                 "n_test": 10, "batch_size": 5},
        "training": {"epochs": 3, "optimizer": "sgd", "learning_rate": 0.5,
                     "scheduler": "constant", "warmup_steps": 0, "save_frequency": 1},
        "parallelism": {"strategy": "ddp"},
    }
    path, out = tmp_path / "c.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "--monitor-interval=0.2", "-m", "nol_fast", "train",
               "--config", str(path), "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOL_FAST_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, env=env, capture_output=True, text=True,
                            timeout=LAUNCH_TIMEOUT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-6000:]
    assert result.stdout.count("final validation relative L2 error") == 1
    trained = re.search(r"test relative L2 error \(best weights\): (\S+)%", result.stdout)
    for name in ("config.yaml", "report.png", "checkpoints/best.pt", "checkpoints/last.pt",
                 "checkpoints/epoch_003.pt"):
        assert (out / name).is_file(), name
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["distributed"]["world_size"] == 2

    # Oracle: one process evaluates the best checkpoint on the same (cached) test split.
    monkeypatch.setenv("NOL_FAST_CACHE_DIR", env["NOL_FAST_CACHE_DIR"])
    assert main(["evaluate", str(out / "checkpoints/best.pt"), "--split", "test",
                 "--device", "cpu"]) == 0
    evaluated = re.search(r"relative L2 error=(\S+)%", capsys.readouterr().out)
    assert float(evaluated.group(1)) == pytest.approx(float(trained.group(1)), abs=2e-4)


def _saved_position(saved: Path, strategy: str) -> dict:
    if strategy == "fsdp":
        from nol_fast.distributed.checkpoints import read_trainer_state

        state = read_trainer_state(saved)
    else:
        state = torch.load(saved, weights_only=True)
    return state["distributed"]["position"]
