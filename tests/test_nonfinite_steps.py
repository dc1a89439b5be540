"""A non-finite loss or gradient never reaches the weights, for every kind of optimizer.

The oracle is a hand-written loop with the same optimizer class that leaves the bad batches
out: a skipped step must be a no-op for the parameters and for the optimizer's state (its
moments and step counts), whether the optimizer skips through ``found_inf`` (the fused ones)
or is masked on the device (plain torch optimizers).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.optim import AdaBound, FusedAdamW
from nol_fast.training import NonFiniteLossError, Trainer, TrainingConfig

N, BATCH = 48, 8  # six batches per epoch

OPTIMIZERS = {
    "FusedAdamW": lambda ps: FusedAdamW(ps, lr=1e-2, weight_decay=0.1),
    "AdaBound": lambda ps: AdaBound(ps, lr=1e-2),
    "SGD momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
}


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 3, 5, generator=g), torch.randn(N, 2, 5, generator=g)


def model(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv1d(3, 2, 1)


class PoisonedLoss:
    """MSE, made non-finite at the given (epoch, batch) calls: the loss itself (``'loss'``),
    or only its gradient (``'gradient'``: the value stays the MSE, d/dpred is NaN)."""

    def __init__(self, bad: set[tuple[int, int]], kind: str = "loss") -> None:
        self.bad, self.kind, self.calls = bad, kind, 0

    def __call__(self, pred, target):
        loss = nn.functional.mse_loss(pred, target)
        at = divmod(self.calls, N // BATCH)
        self.calls += 1
        if at not in self.bad:
            return loss
        if self.kind == "loss":
            return loss * math.nan
        return loss + (pred - pred.detach()).abs().sqrt().sum()  # 0, with a NaN gradient


def oracle(make_optimizer, bad: set[tuple[int, int]], epochs: int, accumulation: int = 1):
    """The model after a plain loop over the batches that are not in a bad group."""
    x, y = data()
    net = model()
    optimizer = make_optimizer(net.parameters())
    per_epoch = N // BATCH
    for epoch in range(epochs):
        for start in range(0, per_epoch, accumulation):
            group = range(start, min(start + accumulation, per_epoch))
            if any((epoch, b) in bad for b in group):
                continue
            optimizer.zero_grad()
            for b in group:
                loss = nn.functional.mse_loss(net(x[b * BATCH:(b + 1) * BATCH]),
                                              y[b * BATCH:(b + 1) * BATCH])
                (loss / len(group)).backward()
            optimizer.step()
    return net, optimizer


def trainer(make_optimizer, loss_fn, **config) -> Trainer:
    net = model()
    loader = DataLoader(TensorDataset(*data()), batch_size=BATCH)
    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0, log_frequency=0,
                            **config)
    return Trainer(net, loader, None, make_optimizer(net.parameters()), loss_fn=loss_fn,
                   config=config)


def assert_same_training(ours: Trainer, reference: nn.Module, reference_optimizer) -> None:
    for p, q in zip(ours.model.parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    states = zip(ours.optimizer.state.values(), reference_optimizer.state.values(), strict=True)
    for state, expected in states:
        for key, value in expected.items():
            torch.testing.assert_close(torch.as_tensor(state[key]).float(),
                                       torch.as_tensor(value).float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_nonfinite_step_raises_at_the_next_read_and_changes_nothing(name, kind):
    """The error names the epoch and the batch; the bad step is a no-op, the steps after it
    (up to the read at the end of the epoch) are taken."""
    bad = {(1, 2)}
    run = trainer(OPTIMIZERS[name], PoisonedLoss(bad, kind))
    what = "training loss" if kind == "loss" else "gradient"
    with pytest.raises(NonFiniteLossError, match=f"non-finite {what} at epoch 2, batch 2") as info:
        run.train(3)
    assert (info.value.epoch, info.value.batch, info.value.kind) == (1, 2, kind)
    assert_same_training(run, *oracle(OPTIMIZERS[name], bad, epochs=2))


@pytest.mark.parametrize("name", ["FusedAdamW", "SGD momentum"])
def test_skip_nonfinite_skips_exactly_the_bad_steps(name):
    bad = {(0, 0), (0, 4), (1, 3)}  # the first step too: no optimizer state exists yet
    run = trainer(OPTIMIZERS[name], PoisonedLoss(bad), skip_nonfinite=True)
    history = run.train(2)
    assert history["skipped_steps"] == [2.0, 1.0]
    assert_same_training(run, *oracle(OPTIMIZERS[name], bad, epochs=2))
    assert all(math.isfinite(loss) for loss in history["train_loss"])


def test_skipped_loss_means_cover_the_finite_batches():
    """The epoch's loss is the mean over the batches whose loss was finite."""
    bad = {(0, 1), (0, 3)}
    run = trainer(lambda ps: torch.optim.SGD(ps, lr=0.0), PoisonedLoss(bad), skip_nonfinite=True)
    history = run.train(1)
    x, y = data()
    net = model()
    with torch.no_grad():
        expected = [nn.functional.mse_loss(net(x[b * BATCH:(b + 1) * BATCH]),
                                           y[b * BATCH:(b + 1) * BATCH]).item()
                    for b in range(N // BATCH) if (0, b) not in bad]
    assert history["train_loss"] == [pytest.approx(sum(expected) / len(expected), rel=1e-6)]


@pytest.mark.parametrize("name", ["FusedAdamW", "Adam"])
def test_a_bad_micro_batch_skips_its_accumulation_group(name):
    bad = {(0, 3)}  # the second micro-batch of the second group of two
    run = trainer(OPTIMIZERS[name], PoisonedLoss(bad), skip_nonfinite=True,
                  gradient_accumulation_steps=2)
    history = run.train(2)
    assert history["skipped_steps"] == [2.0, 0.0]  # both batches of the group
    assert run.global_step == 6
    assert_same_training(run, *oracle(OPTIMIZERS[name], bad, epochs=2, accumulation=2))


def test_fp16_scaler_overflow_is_skipped_silently_and_a_nan_loss_is_reported():
    """With a GradScaler an overflow of the scaled gradients is routine (the scaler lowers its
    scale); only a non-finite loss is an error. A CPU GradScaler takes the CUDA one's path."""
    run = trainer(OPTIMIZERS["FusedAdamW"], lambda pred, y: 1e3 * nn.functional.mse_loss(pred, y))
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # scaled gradients overflow
    run.train(1)
    assert run.scaler.get_scale() < 2.0**120
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    run = trainer(OPTIMIZERS["SGD momentum"], PoisonedLoss({(0, 1)}))
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1"):
        run.train(1)
    assert run.scaler.get_scale() == 2.0**8  # a NaN loss says nothing about the scale
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_fp16_loss_scaling_unscales_in_the_fused_optimizer_as_grad_scaler_step_does(
        monkeypatch):
    """Without clipping a fused optimizer gets the scale and unscales in its kernel: the
    scaler's own unscaling pass never runs. The oracle is torch.optim.AdamW driven by
    ``GradScaler.step``: the same steps are taken, the overflowing ones are skipped, and the
    scale ends the same."""
    def loss_fn(pred, target):
        return 1e3 * nn.functional.mse_loss(pred, target)

    def scaler():
        return torch.amp.GradScaler("cpu", init_scale=2.0**120, growth_interval=3)

    run = trainer(OPTIMIZERS["FusedAdamW"], loss_fn)
    run.scaler = scaler()

    def no_unscale(optimizer):
        raise AssertionError("the gradients were unscaled outside the optimizer")

    monkeypatch.setattr(run.scaler, "unscale_", no_unscale)
    run.train(2)
    x, y = data()
    net = model()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    reference_scaler, scales = scaler(), []
    for _ in range(2):
        for b in range(N // BATCH):
            optimizer.zero_grad()
            batch = slice(b * BATCH, (b + 1) * BATCH)
            reference_scaler.scale(loss_fn(net(x[batch]), y[batch])).backward()
            reference_scaler.step(optimizer)
            reference_scaler.update()
            scales.append(reference_scaler.get_scale())
    assert scales[0] < 2.0**120 and len(set(scales)) == 2  # skips, and growth between them
    assert run.scaler.get_scale() == reference_scaler.get_scale()
    assert_same_training(run, net, optimizer)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "opposite", "imag"])
def test_gradient_probe_is_finite_exactly_when_every_gradient_is(bad):
    from nol_fast.training.step import gradient_probe

    params = [torch.zeros(3, 4, requires_grad=True),
              torch.zeros(5, dtype=torch.complex64, requires_grad=True),
              torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)]
    for p, big in zip(params, (1e30, 1e30, 1e30), strict=True):
        p.grad = torch.full_like(p, big)  # large but finite: no false alarm
    assert torch.isfinite(gradient_probe(params, None))
    if bad == "opposite":  # an infinity of each sign, whose sum is NaN
        params[0].grad[0, 0], params[0].grad[1, 1] = math.inf, -math.inf
    elif bad == "imag":
        params[1].grad[2] = complex(0.0, math.inf)
    else:
        params[2].grad[1] = bad
    assert not torch.isfinite(gradient_probe(params, None))
    assert not torch.isfinite(gradient_probe(params, 1.0))  # the clipping norm too
