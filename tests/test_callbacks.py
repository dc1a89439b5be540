"""Callbacks against hand-computed Keras-style sequences and real TensorBoard files."""

from __future__ import annotations

import math
import resource

import pytest
import torch
from conftest import TinyNet

from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.callbacks import (
    EarlyStopping,
    LearningRateScheduler,
    MemoryProfiler,
    MetricsTracker,
    ModelCheckpoint,
    TensorBoardLogger,
    TrainingCallback,
)

FP32 = TrainingConfig(mixed_precision=False)


class ScriptedLoss(TrainingCallback):
    """Replaces the epoch's val_loss by a scripted value (placed before the callback under test)."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
        trainer.logs["val_loss"] = self.values[epoch]


class WeightsRecorder(TrainingCallback):
    def __init__(self):
        self.weights = []

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def make_trainer(loaders, lr=1e-2, config=FP32):
    train, val = loaders
    model = TinyNet()
    return Trainer(model, train, val, torch.optim.Adam(model.parameters(), lr=lr), config=config)


# ---------------------------------------------------------------- EarlyStopping
@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_with_constant_loss_runs_one_plus_patience_epochs(loaders, patience):
    trainer = make_trainer(loaders)
    stopper = EarlyStopping(patience=patience)
    history = trainer.train(20, callbacks=[ScriptedLoss([1.0] * 20), stopper])
    assert len(history["train_loss"]) == 1 + patience
    assert stopper.stopped_epoch == len(history["train_loss"]) - 1


@pytest.mark.parametrize("values, min_delta, patience, expected_epochs", [
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 9, 9, 9], 0.0, 2, 5),  # 3.5, 3.2 do not beat 3
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 9, 9, 9], 0.0, 3, 6),  # nor does 3.1
    ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 9, 9, 9], 0.0, 4, 10),  # 2.0 at epoch 7 resets the count
    ([1.0, 0.95, 0.91, 0.88, 0.2, 0.1], 0.1, 2, 3),  # steps of < min_delta do not count
    ([1.0, 0.89, 0.78, 0.67, 0.56, 0.45], 0.1, 1, 6),  # steps of > min_delta do
    ([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 0.0, 2, 3),  # diverging
])
def test_early_stopping_sequences(loaders, values, min_delta, patience, expected_epochs):
    trainer = make_trainer(loaders)
    callbacks = [ScriptedLoss(values), EarlyStopping(patience=patience, min_delta=min_delta)]
    history = trainer.train(len(values), callbacks=callbacks)
    assert len(history["train_loss"]) == expected_epochs
    assert history["val_loss"] == [float(v) for v in values[:expected_epochs]]


def test_early_stopping_mode_max(loaders):
    trainer = make_trainer(loaders)
    callbacks = [ScriptedLoss([0.1, 0.5, 0.4, 0.3, 0.2]), EarlyStopping(patience=2, mode="max")]
    assert len(trainer.train(5, callbacks=callbacks)["train_loss"]) == 4


@pytest.mark.parametrize("values, best_epoch", [
    ([3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 1),  # stops early at epoch 5
    ([3.0, 2.0, 1.0, 1.5], 2),  # runs to the end without stopping
])
def test_restore_best_weights_at_train_end(loaders, values, best_epoch):
    trainer = make_trainer(loaders)
    recorder = WeightsRecorder()
    stopper = EarlyStopping(patience=3, restore_best_weights=True)
    trainer.train(len(values), callbacks=[ScriptedLoss(values), recorder, stopper])
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, recorder.weights[best_epoch][name], rtol=0, atol=0)


def test_monitoring_an_unlogged_metric_is_a_clear_error(loaders):
    trainer = make_trainer(loaders)
    with pytest.raises(KeyError, match="monitors 'val_accuracy', which is not logged"):
        trainer.train(1, callbacks=[EarlyStopping(monitor="val_accuracy")])


# ---------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_formats_epoch_and_metrics(loaders, tmp_path):
    trainer = make_trainer(loaders)
    pattern = str(tmp_path / "model_epoch_{epoch:02d}_loss_{val_loss:.4f}.pt")
    history = trainer.train(3, callbacks=[ModelCheckpoint(pattern)])
    expected = {f"model_epoch_{e + 1:02d}_loss_{v:.4f}.pt" for e, v in
                enumerate(history["val_loss"])}
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_model_checkpoint_unknown_key_lists_logged_keys(loaders, tmp_path):
    trainer = make_trainer(loaders)
    checkpoint = ModelCheckpoint(str(tmp_path / "m_{val_acc:.2f}.pt"))
    with pytest.raises(KeyError, match=r"uses \{val_acc\}.*available keys: epoch, epoch_time"):
        trainer.train(1, callbacks=[checkpoint])


def test_model_checkpoint_save_best_only_and_period(loaders, tmp_path):
    values = [5.0, 4.0, 4.5, 3.0, 3.5, 1.0]
    trainer = make_trainer(loaders)
    best = ModelCheckpoint(str(tmp_path / "best_{epoch}.pt"), save_best_only=True)
    periodic = ModelCheckpoint(str(tmp_path / "every2_{epoch}.pt"), period=2)
    trainer.train(6, callbacks=[ScriptedLoss(values), best, periodic])
    names = {p.name for p in tmp_path.iterdir()}
    assert {n for n in names if n.startswith("best")} == {f"best_{e}.pt" for e in (1, 2, 4, 6)}
    assert {n for n in names if n.startswith("every2")} == {f"every2_{e}.pt" for e in (2, 4, 6)}


def test_model_checkpoint_weights_only_vs_full(loaders, tmp_path):
    trainer = make_trainer(loaders)
    weights = ModelCheckpoint(str(tmp_path / "weights.pt"), save_weights_only=True)
    full = ModelCheckpoint(str(tmp_path / "full.pt"))
    trainer.train(2, callbacks=[weights, full])
    state_dict = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert set(state_dict) == set(trainer.model.state_dict())
    fresh = make_trainer(loaders)
    fresh.load_checkpoint(str(tmp_path / "full.pt"))
    assert fresh.epoch == 2
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(fresh.model.state_dict()[name], value)
        torch.testing.assert_close(state_dict[name], value)


# ---------------------------------------------------------------- MetricsTracker
def test_metrics_tracker_summary_matches_history(loaders):
    trainer = make_trainer(loaders)
    tracker = MetricsTracker()
    history = trainer.train(4, callbacks=[tracker])
    summary = tracker.get_summary()
    assert set(summary) >= {"train_loss", "val_loss", "val_rel_l2", "lr", "epoch_time"}
    for name in ("train_loss", "val_loss", "epoch_time"):
        values = history[name]
        assert tracker.get_metric_history(name) == values
        assert summary[name] == {
            "best": min(values), "mean": pytest.approx(sum(values) / len(values)),
            "min": min(values), "max": max(values), "last": values[-1],
        }
    tracker.reset()
    with pytest.raises(KeyError, match="not tracked"):
        tracker.get_metric_history("val_loss")


# ---------------------------------------------------------------- LearningRateScheduler
def test_lr_scheduler_callback_steps_per_epoch_like_torch(loaders):
    trainer = make_trainer(loaders, lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=2, gamma=0.5)
    trainer.scheduler = scheduler  # also handed to the Trainer: must not be stepped twice
    history = trainer.train(5, callbacks=[LearningRateScheduler(scheduler, step_on="epoch")])
    # lr logged for epoch e is the lr used during it: 0.1 * 0.5 ** (e // 2)
    assert history["lr"] == pytest.approx([0.1 * 0.5 ** (e // 2) for e in range(5)])


def test_lr_scheduler_callback_steps_per_batch(loaders):
    trainer = make_trainer(loaders, lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(trainer.optimizer, gamma=0.9)
    trainer.train(2, callbacks=[LearningRateScheduler(scheduler, step_on="batch")])
    steps = 2 * len(trainer.train_loader)
    assert trainer.current_lr() == pytest.approx(0.1 * 0.9 ** steps)



def test_lr_scheduler_callback_steps_per_optimizer_step_under_accumulation(loaders):
    config = TrainingConfig(mixed_precision=False, gradient_accumulation_steps=2)
    trainer = make_trainer(loaders, lr=0.1, config=config)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(trainer.optimizer, gamma=0.9)
    trainer.train(3, callbacks=[LearningRateScheduler(scheduler, step_on="batch")])
    # 4 micro-batches per epoch make 2 optimizer steps, so 6 steps in 3 epochs (not 12)
    assert len(trainer.train_loader) == 4
    assert trainer.current_lr() == pytest.approx(0.1 * 0.9**6)

def test_lr_scheduler_callback_plateau_uses_the_metric(loaders):
    trainer = make_trainer(loaders, lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(trainer.optimizer, patience=1, factor=0.5)
    callbacks = [ScriptedLoss([1.0] * 6), LearningRateScheduler(plateau)]
    history = trainer.train(6, callbacks=callbacks)
    # torch's rule: reduce when bad epochs exceed patience (after epochs 3 and 5)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])
    with pytest.raises(ValueError, match="step_on must be 'epoch'"):
        LearningRateScheduler(plateau, step_on="batch")


def test_plateau_scheduler_given_to_trainer_steps_with_val_metric(loaders):
    train, val = loaders

    class Frozen(torch.nn.Module):
        """Output independent of its parameter: a constant validation loss."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x[:, :1] * 0 + self.w * 0

    model = Frozen()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
    history = Trainer(model, train, val, optimizer, plateau, config=FP32).train(6)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


# ---------------------------------------------------------------- MemoryProfiler
def test_memory_profiler_reports_process_peak_rss_on_cpu(loaders):
    trainer = make_trainer(loaders)
    profiler = MemoryProfiler()
    history = trainer.train(2, callbacks=[profiler])
    summary = profiler.get_memory_summary()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert profiler.device == torch.device("cpu")
    assert summary["peak_memory_gb"] == pytest.approx(peak_kib / 1024**2, rel=0.05)
    assert 0 < summary["current_memory_gb"] <= summary["peak_memory_gb"] * 1.01
    assert history["peak_memory_gb"] == profiler.epoch_peaks_gb


# ---------------------------------------------------------------- TensorBoardLogger
def test_tensorboard_event_files_read_back(loaders, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(loaders)
    history = trainer.train(3, callbacks=[TensorBoardLogger(str(tmp_path), log_frequency=3)])
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"epoch/train_loss", "epoch/val_loss", "epoch/lr", "batch/loss"} <= set(tags)
    for name in ("train_loss", "val_loss", "epoch_time"):
        scalars = events.Scalars(f"epoch/{name}")
        assert [s.step for s in scalars] == [1, 2, 3]
        assert [s.value for s in scalars] == pytest.approx(history[name], rel=1e-6)
    batches = 3 * len(trainer.train_loader)
    assert [s.step for s in events.Scalars("batch/loss")] == list(range(3, batches + 1, 3))
    assert all(math.isfinite(s.value) for s in events.Scalars("batch/loss"))
