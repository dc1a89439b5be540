"""The Trainer's GPU paths that run here too: device placement, AMP dtype, fp16 loss scaling.

A CPU ``GradScaler`` takes the code path of the fp16 CUDA one; CUDA queries are replaced by
fakes that answer as the GPUs in question do.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.models import FNO
from nol_fast.optim import FusedAdamW
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.precision import autocast_dtype, grad_scaler


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16),
                                                  (False, torch.float16)],
                         ids=["ampere", "volta"])
def test_autocast_dtype_is_bf16_only_where_the_gpu_computes_in_it(monkeypatch, native,
                                                                  expected):
    """A V100 or T4 answers ``is_bf16_supported()`` with True through emulation; it gets
    fp16 with loss scaling, as bf16 would be emulated."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert autocast_dtype(torch.device("cuda"), mixed_precision=True) == expected


def _loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=8)


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, FusedAdamW])
def test_fully_skipped_group_with_an_fp16_scaler_steps_nothing(optimizer_class):
    """With skip_nonfinite, a group whose micro-batches all have non-finite losses ran no
    backward; the scaler must not step (it would find no inf checks and raise, in
    ``scaler.step`` for SGD, in ``scaler.update`` for an optimizer that unscales itself)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 5), torch.randn(64, 2, 5)
    y[16:32] = float("nan")  # the second group of two batches
    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0, skip_nonfinite=True,
                            gradient_accumulation_steps=2, log_frequency=100)
    keep = torch.cat([torch.arange(16), torch.arange(32, 64)])
    models, histories = [], []
    for data in ((x, y), (x[keep], y[keep])):  # with the group, and without it
        torch.manual_seed(1)
        model = nn.Conv1d(3, 2, 1)
        trainer = Trainer(model, _loader(*data), None,
                          optimizer_class(model.parameters(), lr=0.1), config=config)
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        histories.append(trainer.train(1))
        assert trainer.scaler.get_scale() == 2.0**16  # no overflow, no growth yet
        models.append(model)
    assert [h["skipped_steps"] for h in histories] == [[2.0], [0.0]]
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


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


def test_fp16_grad_scaler_unscales_complex_gradients():
    """torch's unscale kernels take no complex tensors; an FNO's spectral weights are complex,
    so without the real views every fp16 step of an FNO failed."""
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(3, dtype=torch.cfloat))
    bias = nn.Parameter(torch.randn(2))
    optimizer = torch.optim.SGD([weight, bias], lr=0.1)
    scaler = grad_scaler(torch.device("cpu"), torch.float16)

    def loss():
        return (weight * torch.arange(1.0, 4.0)).abs().square().sum() + bias.square().sum()

    loss().backward()
    expected = [weight.grad.clone(), bias.grad.clone()]
    optimizer.zero_grad()
    scaler.scale(loss()).backward()
    scaler.unscale_(optimizer)
    torch.testing.assert_close([weight.grad, bias.grad], expected)
    scaler.step(optimizer)  # no inf: the step is taken
    scaler.update()
    optimizer.zero_grad()
    scaler.scale(loss()).backward()
    weight.grad[1] = complex(float("inf"), 0.0)
    before = weight.detach().clone()
    scaler.step(optimizer)  # an inf in the complex gradient: skipped
    scaler.update()
    torch.testing.assert_close(weight.detach(), before, rtol=0, atol=0)
    assert scaler.get_scale() == 2.0**15


def test_fno_trains_in_fp16_with_loss_scaling():
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), hidden_channels=8, n_layers=1)
    x, y = torch.randn(8, 1, 8, 8), torch.randn(8, 1, 8, 8)
    trainer = Trainer(model, DataLoader(TensorDataset(x, y), batch_size=4), None,
                      config=TrainingConfig(amp_dtype="float16", log_frequency=0))
    assert trainer.amp_dtype == torch.float16 and trainer.scaler.is_enabled()
    history = trainer.train(2)
    assert history["train_loss"][1] < history["train_loss"][0]


@pytest.mark.parametrize(("config", "optimizer", "expected"), [
    ({"mixed_precision": False}, torch.optim.SGD,
     ["precision float32 (mixed_precision=False)", "compile off (config)",
      "CUDA graphs off (config)", "SGD step is masked on the device for non-finite steps",
      "host reads every 10 batches and per epoch", "malloc keeps freed memory"]),
    ({"amp_dtype": "float16", "compile": "max-autotune", "cuda_graphs": True,
      "log_frequency": 0, "tune_cpu_malloc": False}, FusedAdamW,
     ["precision float16 autocast (amp_dtype=float16)", "compile max-autotune (config)",
      "CUDA graphs off (asked for, but the device is cpu, not CUDA)",
      "FusedAdamW step skips non-finite steps itself (found_inf)", "host reads per epoch",
      "system malloc (config)"]),
], ids=["plain", "asked-for-everything"])
def test_the_trainer_logs_its_fast_paths_and_why_once(caplog, config, optimizer, expected):
    model = nn.Linear(3, 1)
    trainer = Trainer(model, [(torch.zeros(2, 3), torch.zeros(2, 1))], None,
                      optimizer(model.parameters(), lr=0.1), config=TrainingConfig(**config))
    trainer._train_loss_fn = trainer._train_loss  # what is logged, not compiling a linear map
    with caplog.at_level(logging.INFO, logger="nol_fast"):
        trainer.train(1)
        trainer.train(2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fast paths:")]
    assert len(lines) == 1
    for part in expected:
        assert part in lines[0]
