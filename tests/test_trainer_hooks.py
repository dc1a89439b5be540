"""The Trainer's overridable hooks, where distributed training plugs in.

Each hook is overridden as a distributed trainer would, and the loop's use of it is checked
against what a hand-written loop would do.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.training import Trainer, TrainingConfig

FP32 = {"mixed_precision": False, "gradient_clipping": 0.0, "log_frequency": 0}


def _parts(n: int = 40, batch_size: int = 8):
    torch.manual_seed(0)
    x, y = torch.randn(n, 3, 5), torch.randn(n, 2, 5)
    model = nn.Conv1d(3, 2, 1)
    return model, DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_gradient_sync_is_off_for_all_but_the_last_micro_batch_of_a_group():
    seen = []

    class Recording(Trainer):
        def _gradient_sync(self, sync):
            seen.append(sync)
            return contextlib.nullcontext()

    model, loader = _parts()  # 5 batches: groups of 2, 2 and 1
    Recording(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.1),
              config=TrainingConfig(gradient_accumulation_steps=2, **FP32)).train(1)
    assert seen == [False, True, False, True, True]


def test_stop_requested_ends_the_epoch_after_that_step_and_stops_training():
    class Preempted(Trainer):
        def _stop_requested(self):
            return self.global_step == 2

    model, loader = _parts()
    twin = nn.Conv1d(3, 2, 1)
    twin.load_state_dict(model.state_dict())
    trainer = Preempted(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.1),
                        config=TrainingConfig(**FP32))
    history = trainer.train(3)
    assert trainer.global_step == 2 and trainer.epoch == 1 and len(history["train_loss"]) == 1
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    losses = []
    for x, y in list(loader)[:2]:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(twin(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert history["train_loss"] == [pytest.approx(sum(losses) / 2, rel=1e-6)]
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)
