"""The Trainer's GPU paths that run here too: device placement.

CUDA calls are replaced by fakes that record what they were asked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.training import Trainer, TrainingConfig


def _loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=8)


def test_trainer_makes_its_cuda_device_current(monkeypatch):
    """Triton and the CUDA extension launch on the current device, so a Trainer on cuda:1
    makes cuda:1 current."""
    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)

    class Unplaced(Trainer):  # no CUDA here: the model stays where it is
        def place_model(self, model):
            return model

    model = nn.Conv1d(3, 2, 1)
    Unplaced(model, _loader(torch.randn(8, 3, 5), torch.randn(8, 2, 5)), None,
             torch.optim.SGD(model.parameters(), lr=0.1), device="cuda:1",
             config=TrainingConfig(mixed_precision=False))
    assert made_current == [torch.device("cuda", 1)]
