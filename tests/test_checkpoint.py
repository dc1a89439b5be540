"""Checkpoints: bit-identical resume, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch
from conftest import TinyNet, make_data
from torch.utils.data import DataLoader, TensorDataset

import nol_fast.training.checkpoint as checkpoint_module
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.callbacks import EarlyStopping, MetricsTracker, ModelCheckpoint
from nol_fast.training.checkpoint import CheckpointError, atomic_save
from nol_fast.training.optimizers import create_scheduler


def build(seed_generator: bool, seed: int = 0):
    """A fresh run: model (dropout), AdamW, per-step cosine schedule, shuffled loader."""
    torch.manual_seed(seed)
    x, y = make_data(44)
    generator = torch.Generator().manual_seed(7) if seed_generator else None
    train = DataLoader(TensorDataset(x[:36], y[:36]), batch_size=5, shuffle=True,
                       generator=generator)
    val = DataLoader(TensorDataset(x[36:], y[36:]), batch_size=4)
    model = TinyNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    scheduler = create_scheduler(optimizer, "cosine", warmup_steps=3, T_max=16)
    config = TrainingConfig(mixed_precision=False, gradient_accumulation_steps=2)
    return Trainer(model, train, val, optimizer, scheduler, config=config)


def comparable(history):
    return {k: v for k, v in history.items() if k != "epoch_time"}


@pytest.mark.parametrize("saved_by", ["save_checkpoint", "ModelCheckpoint"])
@pytest.mark.parametrize("seed_generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_is_bit_identical(tmp_path, seed_generator, saved_by):
    straight = build(seed_generator)
    expected = straight.train(4, callbacks=[MetricsTracker(), EarlyStopping(patience=5)])

    first = build(seed_generator)
    callbacks = [MetricsTracker(), EarlyStopping(patience=5)]
    if saved_by == "ModelCheckpoint":  # written inside the loop, at the end of epoch 2
        callbacks.append(ModelCheckpoint(str(tmp_path / "ckpt.pt")))
    first.train(2, callbacks=callbacks)
    if saved_by == "save_checkpoint":
        first.save_checkpoint(str(tmp_path / "ckpt.pt"))

    resumed = build(seed_generator, seed=123)  # different initial weights and RNG state
    resumed.load_checkpoint(str(tmp_path / "ckpt.pt"))
    tracker, stopper = MetricsTracker(), EarlyStopping(patience=5)
    callbacks = [tracker, stopper]
    if saved_by == "ModelCheckpoint":
        callbacks.append(ModelCheckpoint(str(tmp_path / "ckpt.pt")))
    history = resumed.train(4, callbacks=callbacks)

    assert comparable(history) == comparable(expected)  # exact, float for float
    assert len(history["epoch_time"]) == 4
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value)
    assert tracker.get_metric_history("val_loss") == expected["val_loss"]
    assert stopper.best == min(expected["val_loss"])
    assert resumed.global_step == straight.global_step


def test_checkpoint_contents_and_weights_only_load(tmp_path):
    trainer = build(True)
    trainer.train(1)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "history",
            "callbacks", "rng", "config"} <= set(state)
    assert state["epoch"] == 1 and state["global_step"] == trainer.global_step
    trainer.save_checkpoint(str(tmp_path / "no_opt.pt"), include_optimizer=False)
    assert torch.load(tmp_path / "no_opt.pt", weights_only=True)["optimizer"] is None


def test_load_without_optimizer_keeps_optimizer_fresh(tmp_path):
    trainer = build(True)
    trainer.train(1)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    fresh = build(True)
    fresh.load_checkpoint(str(tmp_path / "c.pt"), load_optimizer=False)
    assert fresh.optimizer.state_dict()["state"] == {}
    assert fresh.epoch == 1


def test_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"value": torch.tensor([1.0])}, path)
    real_save = torch.save

    def crashing_save(obj, file):
        real_save(obj, file)
        file.truncate(10)  # half-written
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint_module.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"value": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["value"].item() == 1.0
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def snapshot(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_untouched(trainer, before):
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[name])
    assert trainer.epoch == 0


def test_truncated_checkpoint_is_a_clear_error_and_changes_nothing(tmp_path):
    trainer = build(True)
    trainer.train(1)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    fresh = build(True, seed=5)
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        fresh.load_checkpoint(str(tmp_path / "cut.pt"))
    assert_untouched(fresh, before)


class Foreign:
    pass


@pytest.mark.parametrize("kind", ["pickle", "state_dict", "other_dict", "text", "missing"])
def test_foreign_files_are_clear_errors(tmp_path, kind):
    path = tmp_path / "f.pt"
    if kind == "pickle":
        torch.save({"format": "nol_fast.checkpoint", "obj": Foreign()}, path)
        message = "other than tensors and plain data"
    elif kind == "state_dict":
        torch.save(TinyNet().state_dict(), path)
        message = "plain state_dict"
    elif kind == "other_dict":
        torch.save({"format": "another.library", "weights": torch.zeros(2)}, path)
        message = "is not a nol_fast training checkpoint$"
    elif kind == "text":
        path.write_text("hello")
        message = "truncated or not a checkpoint"
    else:
        message = "checkpoint not found"
    fresh = build(True)
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match=message) as info:
        fresh.load_checkpoint(str(path))
    assert_untouched(fresh, before)
    assert ("plain state_dict" in str(info.value)) == (kind == "state_dict")


def test_mismatched_model_is_rejected_before_anything_is_loaded(tmp_path):
    trainer = build(True)
    trainer.train(1)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    x, y = make_data(8)
    other = TinyNet(hidden=9)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    fresh = Trainer(other, loader, None, torch.optim.AdamW(other.parameters()),
                    config=TrainingConfig(mixed_precision=False))
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*net.0.weight"):
        fresh.load_checkpoint(str(tmp_path / "c.pt"))
    assert_untouched(fresh, before)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_module_is_not_used_for_loading(tmp_path):
    # A malicious pickle must not execute on load (weights_only=True).
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        build(True).load_checkpoint(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_restores_the_python_numpy_torch_and_loader_generators(tmp_path):
    trainer = build(True)
    trainer.train(1)
    random.seed(11)
    np.random.seed(12)
    np.random.randn(1)  # leaves a cached Gaussian in numpy's legacy state, which must survive
    torch.manual_seed(13)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    loader_generator = trainer.train_loader.generator

    def draws(generator):
        return (random.random(), np.random.randn(3).tolist(), torch.rand(3).tolist(),
                torch.rand(3, generator=generator).tolist())

    expected = draws(loader_generator)
    fresh = build(True, seed=5)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    fresh.load_checkpoint(str(tmp_path / "c.pt"))
    assert draws(fresh.train_loader.generator) == expected


def test_resumed_early_stopping_keeps_its_count_of_epochs_without_improvement(tmp_path):
    # Without a scheduler the lr never improves on epoch 1, so EarlyStopping(patience=3)
    # watching it stops after 1 + 3 epochs: straight, and resumed after epoch 2 (one epoch
    # without improvement already counted).
    def run(epochs, resume_from=None):
        trainer = build(True)
        trainer.scheduler = None
        if resume_from:
            trainer.load_checkpoint(resume_from)
        history = trainer.train(epochs, callbacks=[EarlyStopping(patience=3, monitor="lr")])
        return trainer, len(history["train_loss"])

    assert run(10)[1] == 4
    first, _ = run(2)
    first.save_checkpoint(str(tmp_path / "c.pt"))
    _, epochs_run = run(10, resume_from=str(tmp_path / "c.pt"))
    assert epochs_run == 4


@pytest.mark.parametrize("misfit", ["optimizer", "loaders"])
def test_a_checkpoint_that_does_not_fit_is_rejected_before_anything_is_loaded(tmp_path, misfit):
    trainer = build(True)  # its shuffling loader has a generator of its own
    trainer.train(1)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    if misfit == "optimizer":
        fresh = build(True, seed=5)
        params = list(fresh.model.parameters())
        fresh.optimizer = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:]}])
        message = r"optimizer parameter groups of sizes \[4\], but the optimizer has \[2, 2\]"
    else:
        fresh = build(False, seed=5)  # shuffles with the global generator: no loader generator
        message = r"holds 1 data-loader generator state\(s\) but this trainer's loaders have 0"
    before = snapshot(fresh)
    with pytest.raises(CheckpointError, match=message):
        fresh.load_checkpoint(str(tmp_path / "c.pt"))
    assert_untouched(fresh, before)
    assert fresh.optimizer.state_dict()["state"] == {}


def test_a_mismatch_names_the_first_five_keys_of_each_kind():
    state = {f"extra.{i}": torch.zeros(1) for i in range(7)}
    model = torch.nn.ParameterDict({f"own{i}": torch.nn.Parameter(torch.zeros(1))
                                    for i in range(7)})
    with pytest.raises(CheckpointError) as info:
        checkpoint_module.check_state_dict_fits(model, state, "c.pt")
    message = str(info.value)
    assert ("missing keys ['own0', 'own1', 'own2', 'own3', 'own4']; unexpected keys "
            "['extra.0', 'extra.1', 'extra.2', 'extra.3', 'extra.4']") in message
    wrong = {f"own{i}": torch.zeros(2) for i in range(7)}
    with pytest.raises(CheckpointError) as info:
        checkpoint_module.check_state_dict_fits(model, wrong, "c.pt")
    assert str(info.value).count("checkpoint (2,) vs model (1,)") == 5


def test_a_checkpoint_of_a_newer_format_is_refused(tmp_path):
    trainer = build(True)
    trainer.save_checkpoint(str(tmp_path / "c.pt"))
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["format_version"] == 1  # the layout this version writes and reads
    torch.save({**state, "format_version": 2}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=r"has checkpoint format 2, newer than this "
                                              r"version of nol_fast reads \(1\)"):
        build(True).load_checkpoint(str(tmp_path / "newer.pt"))
    del state["format_version"]  # files written before the version was recorded still load
    torch.save(state, tmp_path / "older.pt")
    assert build(True).load_checkpoint(str(tmp_path / "older.pt"))["epoch"] == 0


def test_cuda_generators_are_kept_when_cuda_is_in_use(monkeypatch):
    # Stand-ins for torch.cuda on a machine without a GPU: the states of every device's
    # generator go into the checkpoint when CUDA was initialised, and come back from it.
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                        lambda: [torch.tensor([1, 2], dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    state = checkpoint_module.capture_rng_state([])
    assert [s.tolist() for s in state["cuda"]] == [[1, 2]]
    checkpoint_module.restore_rng_state(state, [])
    assert [s.tolist() for s in restored] == [[1, 2]]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # present, never used
    assert "cuda" not in checkpoint_module.capture_rng_state([])


def test_loader_generators_are_found_after_a_loader_without_any():
    generator = torch.Generator().manual_seed(3)
    x, y = make_data(8)
    val = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=generator)
    batches = [(x[:4], y[:4])]  # a plain iterable as the training loader
    assert checkpoint_module.loader_generators(batches, val) == [generator]
    assert checkpoint_module.loader_generators(val, val) == [generator]  # listed once
