"""Callbacks across runs and at their edges: reuse, continuation, ModelCheckpoint's period,
hooks assigned on instances and MemoryProfiler's summary type.

Expected sequences are worked out by hand from Keras's rules (EarlyStopping and ModelCheckpoint
of Keras 2/3: state reset for a new run, the period counter restarting at every boundary).
"""

from __future__ import annotations

import pytest
import torch
from test_callbacks import ScriptedLoss, make_trainer

from nol_fast.training.callbacks import (
    EarlyStopping,
    MemoryProfiler,
    MetricsTracker,
    ModelCheckpoint,
    TensorBoardLogger,
    TrainingCallback,
)


# ---------------------------------------------------------------- reuse and continuation
def test_early_stopping_reused_for_a_new_run_starts_afresh(loaders):
    stopper = EarlyStopping(patience=2)
    first = make_trainer(loaders).train(5, callbacks=[ScriptedLoss([0.1, 0.2, 0.3]), stopper])
    assert len(first["train_loss"]) == 3  # 0.1 is best, then two epochs without improvement

    # A new run improves every epoch; with run 1's best (0.1) it would stop after 2 epochs.
    second = make_trainer(loaders).train(
        5, callbacks=[ScriptedLoss([5.0, 4.0, 3.0, 2.0, 1.0]), stopper]
    )
    assert len(second["train_loss"]) == 5
    assert (stopper.best, stopper.best_epoch, stopper.wait, stopper.stopped_epoch) == (
        1.0, 4, 0, None)


def test_model_checkpoint_reused_for_a_new_run_saves_its_best(loaders, tmp_path):
    path = tmp_path / "best.pt"
    checkpoint = ModelCheckpoint(str(path), save_best_only=True)
    make_trainer(loaders).train(2, callbacks=[ScriptedLoss([1.0, 2.0]), checkpoint])
    assert torch.load(path, weights_only=True)["epoch"] == 1
    path.unlink()

    make_trainer(loaders).train(2, callbacks=[ScriptedLoss([5.0, 4.0]), checkpoint])
    assert torch.load(path, weights_only=True)["epoch"] == 2  # 4.0 is run 2's best
    assert checkpoint.best == 4.0


def test_metrics_tracker_reused_for_a_new_run_records_only_that_run(loaders):
    tracker = MetricsTracker()
    make_trainer(loaders).train(2, callbacks=[tracker])
    history = make_trainer(loaders).train(3, callbacks=[tracker])
    assert tracker.get_metric_history("train_loss") == history["train_loss"]


def test_the_same_trainer_training_on_keeps_the_callbacks_state(loaders):
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    trainer = make_trainer(loaders)
    stopper, tracker = EarlyStopping(patience=3), MetricsTracker()
    trainer.train(3, callbacks=[ScriptedLoss(values), stopper, tracker])
    history = trainer.train(6, callbacks=[ScriptedLoss(values), stopper, tracker])
    # Continuing: best 1.0 from epoch 1, so epoch 4 is the third without improvement.
    assert len(history["train_loss"]) == 4 and stopper.stopped_epoch == 3
    assert tracker.get_metric_history("val_loss") == values[:4]


def test_a_resumed_run_keeps_restored_state_and_resets_the_rest(loaders, tmp_path):
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    first = make_trainer(loaders)
    first.train(3, callbacks=[ScriptedLoss(values), EarlyStopping(patience=3)])
    first.save_checkpoint(str(tmp_path / "ckpt.pt"))

    # Reused from an unrelated run: holds best 0.5, which no epoch here beats.
    stale = EarlyStopping(patience=1)
    make_trainer(loaders).train(2, callbacks=[ScriptedLoss([0.5, 0.5]), stale])
    assert stale.best == 0.5

    resumed = make_trainer(loaders)
    resumed.load_checkpoint(str(tmp_path / "ckpt.pt"))
    restored = EarlyStopping(patience=3)
    history = resumed.train(6, callbacks=[ScriptedLoss(values), restored, stale])
    assert len(history["train_loss"]) == 4  # the restored stopper stops, as uninterrupted
    assert restored.best == 1.0
    assert stale.best == 4.0  # it had no checkpointed state, so it started afresh


# ---------------------------------------------------------------- ModelCheckpoint period
@pytest.mark.parametrize("values, period, saved", [
    ([9, 9, 5, 9, 9, 9, 4, 9, 9], 3, [3]),  # epoch 7 improves between boundaries: not saved
    ([9, 9, 5, 9, 9, 4, 9, 9, 3], 3, [3, 6, 9]),
    ([5, 4, 3, 2], 2, [2, 4]),
    ([3, 4, 2, 5, 1], 1, [1, 3, 5]),
])
def test_model_checkpoint_period_with_save_best_only_follows_keras(
    loaders, tmp_path, values, period, saved
):
    checkpoint = ModelCheckpoint(str(tmp_path / "m_{epoch}.pt"), save_best_only=True,
                                 period=period)
    make_trainer(loaders).train(len(values), callbacks=[ScriptedLoss(values), checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"m_{e}.pt" for e in saved)


# ---------------------------------------------------------------- hooks on instances
def test_hooks_assigned_on_instances_are_called(loaders, tmp_path):
    calls = []
    callback = TrainingCallback()
    callback.on_epoch_end = lambda trainer, epoch, train, val: calls.append(("epoch", epoch))
    callback.on_batch_end = lambda trainer, batch_idx, metrics: calls.append(("batch", batch_idx))
    # A callback whose class would skip batch dispatch (log_frequency=0) still gets its
    # instance hook.
    logger = TensorBoardLogger(str(tmp_path), log_frequency=0)
    logger.on_batch_end = lambda trainer, batch_idx, metrics: calls.append(("tb", batch_idx))

    trainer = make_trainer(loaders)
    trainer.train(2, callbacks=[callback, logger])
    n = len(trainer.train_loader)
    per_epoch = [c for i in range(n) for c in (("batch", i), ("tb", i))]
    assert calls == [*per_epoch, ("epoch", 0), *per_epoch, ("epoch", 1)]
    assert trainer.callbacks.wants_batch_hooks


# ---------------------------------------------------------------- MemoryProfiler
def test_memory_summary_holds_only_floats(loaders):
    profiler = MemoryProfiler()
    make_trainer(loaders).train(2, callbacks=[profiler])
    summary = profiler.get_memory_summary()
    assert set(summary) == {"peak_memory_gb", "current_memory_gb"}
    assert all(type(value) is float for value in summary.values())
    assert len(profiler.epoch_peaks_gb) == 2 and profiler.device == torch.device("cpu")


def test_memory_summary_on_cuda_holds_only_floats(monkeypatch):
    """The CUDA branch, with the allocator's counters replaced by known byte counts."""
    counters = {"max_memory_allocated": 3 * 2**30, "memory_allocated": 2**30,
                "max_memory_reserved": 4 * 2**30}
    for name, value in counters.items():
        monkeypatch.setattr(torch.cuda, name, lambda device=None, value=value: value)
    profiler = MemoryProfiler()
    profiler.device = torch.device("cuda", 0)
    assert profiler.get_memory_summary() == {
        "peak_memory_gb": 3.0, "current_memory_gb": 1.0, "reserved_memory_gb": 4.0}
