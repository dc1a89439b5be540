"""The history ``Trainer.train`` returns: validation lists hold validated epochs only."""

from __future__ import annotations

import math

import torch
from conftest import TinyNet

from nol_fast.plotting import _plot_losses
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.callbacks import TrainingCallback
from nol_fast.training.history import record_epoch


class ValidationRecorder(TrainingCallback):
    """Keeps the validation metrics each epoch hands to the callbacks."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
        self.seen.append((epoch + 1, dict(val_losses)))


def test_min_of_val_loss_is_the_best_validation_loss_with_val_frequency(loaders):
    train, val = loaders
    model = TinyNet()
    config = TrainingConfig(mixed_precision=False, val_frequency=2)
    recorder = ValidationRecorder()
    history = Trainer(model, train, val, torch.optim.Adam(model.parameters()),
                      config=config).train(5, callbacks=[recorder])
    validated = [(epoch, metrics) for epoch, metrics in recorder.seen if metrics]
    # callbacks get empty validation metrics in epochs that do not validate
    assert [epoch for epoch, metrics in recorder.seen if not metrics] == [1, 3]
    assert history["val_epoch"] == [epoch for epoch, _ in validated] == [2, 4, 5]
    assert history["val_loss"] == [metrics["val_loss"] for _, metrics in validated]
    assert min(history["val_loss"]) == min(metrics["val_loss"] for _, metrics in validated)
    assert history["val_rel_l2"] == [metrics["val_rel_l2"] for _, metrics in validated]
    assert len(history["train_loss"]) == len(history["lr"]) == 5


def test_record_epoch_overwrites_its_epoch_and_pads_late_metrics():
    history = {}
    record_epoch(history, 1, {"train_loss": 3.0, "val_loss": 2.0}, validated=True)
    record_epoch(history, 2, {"train_loss": 2.5, "val_loss": math.nan}, validated=False)
    record_epoch(history, 3, {"train_loss": 2.0, "val_loss": 1.0}, validated=True)
    # a callback adds metrics to epoch 3's logs; recording it again overwrites that epoch
    logs = {"train_loss": 2.0, "val_loss": 1.0, "peak_memory_gb": 0.5, "val_acc": 0.9}
    record_epoch(history, 3, logs, validated=True)
    assert history["train_loss"] == [3.0, 2.5, 2.0]
    assert history["val_epoch"] == [1, 3]
    assert history["val_loss"] == [2.0, 1.0]
    assert [math.isnan(v) for v in history["peak_memory_gb"]] == [True, True, False]
    assert [math.isnan(v) for v in history["val_acc"]] == [True, False]


def test_report_plots_validation_losses_at_their_epochs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = {"train_loss": [4.0, 3.0, 2.0, 1.0], "val_epoch": [2, 4],
               "val_loss": [3.5, 1.5], "val_rel_l2": [0.5, 0.2]}
    fig, ax = plt.subplots()
    _plot_losses(ax, history)
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
             for line in ax.get_lines()}
    plt.close(fig)
    assert lines["train_loss"] == ([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])
    assert lines["val_loss"] == ([2, 4], [3.5, 1.5])
    assert lines["val_rel_l2"] == ([2, 4], [0.5, 0.2])


def test_a_checkpoint_with_the_earlier_nan_padded_history_resumes_in_the_new_layout(
    loaders, tmp_path
):
    train, val = loaders
    config = TrainingConfig(mixed_precision=False, val_frequency=2)

    def make():
        model = TinyNet()
        return Trainer(model, train, val, torch.optim.Adam(model.parameters()), config=config)

    first = make()
    first.train(3)  # validates after epochs 2 and 3 (the last)
    path = tmp_path / "ckpt.pt"
    first.save_checkpoint(str(path))
    # rewrite its history as checkpoints stored it before: one entry per epoch, NaN-padded
    state = torch.load(path, weights_only=True)
    history = state["history"]
    validated = history.pop("val_epoch")
    for name in ("val_loss", "val_rel_l2"):
        by_epoch = dict(zip(validated, history[name], strict=True))
        history[name] = [by_epoch.get(epoch, math.nan) for epoch in (1, 2, 3)]
    torch.save(state, path)

    resumed = make()
    resumed.load_checkpoint(str(path))
    assert resumed.history == first.history
    history = resumed.train(4)
    assert history["val_epoch"] == [2, 3, 4]
    assert len(history["val_loss"]) == len(history["val_rel_l2"]) == 3
    assert history["val_loss"][:2] == first.history["val_loss"]
