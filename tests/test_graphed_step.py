"""The CUDA-graph step's logic, run on the CPU with a stand-in for the capture.

A captured graph replays its kernels on the memory it saw at capture. The stand-in records
the captured function without running it, and checks at every replay that everything the
graph would read is still where it was: parameters, gradients, optimizer state, learning
rates, the static batch buffers. Trained that way, a model must end where eager training
takes it: with gradient accumulation, a shorter last batch (run eagerly), a scheduler, and a
learning rate replaced by a number mid-run. The capture itself runs on a GPU only
(``tests/test_cuda.py``).
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.optim import AdaBound, FusedAdamW
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training import trainer as trainer_module
from nol_fast.training.callbacks import TrainingCallback
from nol_fast.training.fast_paths import choose_fast_paths
from nol_fast.training.graphs import GraphedStep, make_capturable
from nol_fast.training.optimizers import create_scheduler


class AddressCheckingCapture:
    """Capture records ``fn``; a replay asserts that the addresses the graph would read are
    unchanged and runs ``fn``. Warm-up runs ``fn`` directly."""

    def __init__(self, optimizer: torch.optim.Optimizer, fail: bool = False) -> None:
        self.optimizer, self.fail = optimizer, fail
        self.captures = self.replays = self.resets = 0

    def addresses(self, optimizer_step: bool) -> list[int]:
        """Parameters and gradients; with the optimizer step, its state and lrs too."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        tensors = params + [p.grad for p in params]
        if optimizer_step:
            tensors += [v for p in params for v in self.optimizer.state[p].values()
                        if isinstance(v, torch.Tensor)]
            tensors += [g["lr"] for g in self.optimizer.param_groups]
        return [t.data_ptr() for t in tensors]

    def warm_up(self, fn):
        return fn()

    def capture(self, fn):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        optimizer_step = self.captures == 1  # captured after the micro-batch
        self.captures += 1
        expected = self.addresses(optimizer_step)

        def replay():
            assert self.addresses(optimizer_step) == expected, "a captured address moved"
            self.replays += 1
            fn()

        return replay

    def reset(self) -> None:
        self.resets += 1


class ReplaceLr(TrainingCallback):
    """Sets the lr to a plain number after epoch 2 (graphs are captured by then), as
    hand-written schedules do."""

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
        if epoch == 1:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 3e-3


def _run(graphs: bool, monkeypatch, fail: bool = False, **config):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 8, 1), nn.GELU(), nn.Conv1d(8, 2, 1))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(36, 3, 5, generator=g), torch.randn(36, 2, 5, generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # 8, 8, 8, 8 and 4 samples
    optimizer = FusedAdamW(model.parameters(), lr=1e-2)
    scheduler = create_scheduler(optimizer, "cosine", warmup_steps=2)
    config = TrainingConfig(mixed_precision=False, log_frequency=0,
                            gradient_accumulation_steps=2, **config)
    trainer = Trainer(model, loader, None, optimizer, scheduler, config=config)
    capture = AddressCheckingCapture(optimizer, fail)
    if graphs:
        assert make_capturable(optimizer, torch.device("cpu"))
        trainer.fast_paths = dataclasses.replace(trainer.fast_paths, cuda_graphs=True)
        monkeypatch.setattr(trainer_module, "GraphedStep",
                            lambda step: GraphedStep(step, capture=capture, warmup_groups=2))
    history = trainer.train(3, callbacks=[ReplaceLr()])
    return trainer, history, capture


def test_graphed_steps_train_as_eager_steps(monkeypatch):
    graphed, history, capture = _run(True, monkeypatch)
    eager, expected, _ = _run(False, monkeypatch)
    assert isinstance(graphed._runner, GraphedStep) and graphed._runner.captured
    assert capture.captures == 2  # one micro-batch graph, one optimizer-step graph
    # Epoch 1 warms up (its last group of one 4-sample batch too); epochs 2 and 3 replay
    # 4 micro-batches and 3 optimizer steps each, their 4-sample batches run eagerly.
    assert capture.replays == 2 * (4 + 3)
    assert isinstance(graphed.optimizer.param_groups[0]["lr"], torch.Tensor)
    for p, q in zip(graphed.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    torch.testing.assert_close(history["train_loss"], expected["train_loss"])
    assert history["lr"] == pytest.approx(expected["lr"])


def test_a_failed_capture_falls_back_with_one_warning(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="nol_fast"):
        graphed, history, capture = _run(True, monkeypatch, fail=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "capturing the training step failed (RuntimeError" in (
        warnings[0])
    assert capture.resets == 1 and graphed._runner.failure is not None
    _, expected, _ = _run(False, monkeypatch)
    torch.testing.assert_close(history["train_loss"], expected["train_loss"])


def test_nonfinite_steps_are_skipped_inside_the_graph(monkeypatch):
    def poisoned(pred, target):
        poisoned.calls += 1
        loss = nn.functional.mse_loss(pred, target)
        return loss * float("nan") if poisoned.calls == 11 else loss  # epoch 3, batch 1

    poisoned.calls = 0
    monkeypatch.setattr(nn, "MSELoss", lambda: poisoned)
    graphed, history, capture = _run(True, monkeypatch, skip_nonfinite=True)
    assert capture.replays > 0
    assert history["skipped_steps"] == [0.0, 0.0, 2.0]
    assert all(torch.isfinite(p).all() for p in graphed.model.parameters())


def test_loading_a_checkpoint_drops_the_graphs(monkeypatch, tmp_path):
    graphed, _, _ = _run(True, monkeypatch)
    graphed.save_checkpoint(str(tmp_path / "c.pt"))
    graphed.load_checkpoint(str(tmp_path / "c.pt"))
    assert graphed._runner is None  # the optimizer's state tensors were replaced


def test_graphs_need_cuda_and_a_capturable_optimizer(caplog):
    params = [nn.Parameter(torch.zeros(3))]
    config = TrainingConfig(mixed_precision=False, cuda_graphs=True)
    refused = choose_fast_paths(config, torch.device("cuda"), AdaBound(params))
    assert not refused.cuda_graphs and "AdaBound is not capturable" in (
        refused.reasons["cuda_graphs"])
    with caplog.at_level(logging.WARNING, logger="nol_fast"):
        trainer = Trainer(nn.Linear(3, 1), [(torch.zeros(2, 3), torch.zeros(2, 1))], None,
                          FusedAdamW(nn.Linear(3, 1).parameters()), config=config)
    assert not trainer.fast_paths.cuda_graphs
    assert "cuda_graphs: not used: asked for, but the device is cpu" in caplog.text
    optimizer = FusedAdamW(params, lr=0.5)
    assert make_capturable(optimizer, torch.device("cpu"))
    group = optimizer.param_groups[0]
    assert group["capturable"] and isinstance(group["lr"], torch.Tensor) and group["lr"] == 0.5
