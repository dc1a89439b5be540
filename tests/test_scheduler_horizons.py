"""Schedules without their run-length option, and plateau schedules with a warm-up.

Oracles: torch's own schedulers (CosineAnnealingLR, StepLR, CosineAnnealingWarmRestarts,
ExponentialLR, ReduceLROnPlateau) and closed forms written out here.
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from conftest import TinyNet
from test_schedulers import collect, make_optimizer
from torch.optim import lr_scheduler

from nol_fast.optim import PlateauScheduler
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.callbacks import LearningRateScheduler
from nol_fast.training.optimizers import create_scheduler

FP32 = TrainingConfig(mixed_precision=False, gradient_clipping=0.0)


def first_group(lrs):
    return [lr[0] for lr in lrs]


# ---------------------------------------------------------------- defaults from the horizon
@pytest.mark.parametrize("name, total, warmup, option, value, reference", [
    ("step", 90, 0, "step_size", 30,
     lambda opt: lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)),
    ("step", 100, 10, "step_size", 30,
     lambda opt: lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)),
    ("cosine_restarts", 90, 0, "T_0", 30,
     lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=30)),
    ("exponential", 60, 10, "gamma", 0.01 ** (1 / 50),
     lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / 50))),
    ("cosine", 80, 5, "T_max", 80,
     lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=75)),
])
def test_horizon_fills_the_documented_default(name, total, warmup, option, value, reference):
    scheduler = create_scheduler(make_optimizer(), name, warmup)
    assert scheduler.needs_horizon
    scheduler.set_horizon(total)
    assert scheduler.options[option] == pytest.approx(value, rel=1e-12)
    ours = collect(scheduler, total + 1)
    expected = collect(reference(make_optimizer()), total + 1 - warmup)
    assert ours[warmup:] == [pytest.approx(lrs, rel=1e-9, abs=1e-15) for lrs in expected]


def test_cosine_restarts_default_period_gives_three_cycles_with_t_mult():
    scheduler = create_scheduler(make_optimizer(), "cosine_restarts", T_mult=2)
    scheduler.set_horizon(70)  # periods 10, 20, 40
    assert scheduler.options["T_0"] == 10
    lrs = first_group(collect(scheduler, 70))
    assert [t for t in range(1, 70) if lrs[t] > lrs[t - 1]] == [10, 30]  # the two restarts


def test_exponential_default_reaches_one_percent_at_the_end_of_the_run():
    scheduler = create_scheduler(make_optimizer(), "exponential", 4)
    scheduler.set_horizon(24)
    lrs = first_group(collect(scheduler, 25))
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[24] == pytest.approx(0.1 * 0.01, rel=1e-12)


@pytest.mark.parametrize("name, option", [("cosine", "T_max"), ("step", "step_size")])
def test_stepping_without_a_horizon_warns_once_naming_what_to_pass(name, option):
    scheduler = create_scheduler(make_optimizer(), name, 2)
    with pytest.warns(UserWarning) as caught:
        lrs = first_group(collect(scheduler, 6))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{option}=..." in message and "set_horizon(total)" in message
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1, 0.1])  # base lr after warm-up


def test_given_options_are_never_replaced():
    scheduler = create_scheduler(make_optimizer(), "cosine_restarts", T_0=7)
    assert not scheduler.needs_horizon
    with pytest.raises(ValueError, match="has no horizon to fill: T_0=7 was given"):
        scheduler.set_horizon(100)


# ---------------------------------------------------------------- the Trainer fills them
def trainer_with(loaders, scheduler=None, **kwargs):
    train, val = loaders
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(model, train, val, optimizer, scheduler and scheduler(optimizer),
                   config=TrainingConfig(mixed_precision=False, **kwargs))


@pytest.mark.parametrize("step_on", ["batch", "epoch"])
def test_lr_scheduler_callback_gets_the_horizon_from_the_trainer(loaders, step_on):
    trainer = trainer_with(loaders)
    scheduler = create_scheduler(trainer.optimizer)  # cosine, no T_max
    steps = len(trainer.train_loader) if step_on == "batch" else 1
    reference = lr_scheduler.CosineAnnealingLR(make_optimizer(), T_max=3 * steps)
    lrs = first_group(collect(reference, 3 * steps + 1))
    # logged per epoch: the lr after its last optimizer step, or the lr it used when the
    # scheduler steps at its end
    expected = lrs[steps::steps] if step_on == "batch" else lrs[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "without its horizon" warning
        history = trainer.train(3, callbacks=[LearningRateScheduler(scheduler, step_on)])
    assert scheduler.options["T_max"] == 3 * steps
    assert history["lr"] == pytest.approx(expected, abs=1e-12)


def test_trainer_fills_and_refills_a_step_schedule(loaders):
    trainer = trainer_with(loaders, lambda opt: create_scheduler(opt, "step"))
    steps = len(trainer.train_loader)  # 4
    history = trainer.train(3)
    assert trainer.scheduler.options["step_size"] == steps  # 12 steps in three
    assert history["lr"] == pytest.approx([0.1 * 0.1 ** (e + 1) for e in range(3)])
    trainer.train(6)
    assert trainer.scheduler.options["step_size"] == 2 * steps


# ---------------------------------------------------------------- plateau with warm-up
def test_plateau_warmup_per_step_then_torchs_decisions():
    metrics = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.5, 0.6, 0.7]
    ours = create_scheduler(make_optimizer(), "plateau", 4, factor=0.5, patience=1)
    assert isinstance(ours, PlateauScheduler) and ours.interval == "epoch"
    lrs = []
    for _ in range(4):
        lrs.append(ours.optimizer.param_groups[0]["lr"])
        ours.step(0.1)  # a metric during warm-up is ignored
        ours.step()
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert not ours.warming_up and ours.best == math.inf

    reference = lr_scheduler.ReduceLROnPlateau(make_optimizer(), factor=0.5, patience=1)
    for metric in metrics:
        ours.step(metric)
        ours.step()  # after warm-up a step without metric changes nothing
        reference.step(metric)
        assert ours.get_last_lr() == pytest.approx(reference.get_last_lr())
    assert ours.get_last_lr() == pytest.approx([0.1 / 8, 0.02 / 8])  # three reductions


def test_plateau_warmup_state_round_trips_weights_only():
    first = create_scheduler(make_optimizer(), "plateau", 6)
    for _ in range(3):
        first.step()
    buffer = io.BytesIO()
    torch.save({"s": first.state_dict(), "o": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    second = create_scheduler(make_optimizer(), "plateau", 6)
    second.optimizer.load_state_dict(state["o"])
    second.load_state_dict(state["s"])
    for scheduler in (first, second):
        scheduler.step()
    assert second.get_last_lr() == first.get_last_lr() == pytest.approx([5 / 6 * 0.1, 5 / 6 * 0.02])


def constant_loss(pred, target):
    """A loss of 1 with zero gradients, so the validation loss never improves."""
    return (pred * 0).sum() + 1.0


@pytest.mark.parametrize("via", ["trainer", "callback"])
def test_plateau_warmup_in_training(loaders, via):
    train, val = loaders  # 4 optimizer steps per epoch
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = create_scheduler(optimizer, "plateau", 6, factor=0.5, patience=0)
    given = plateau if via == "trainer" else None
    trainer = Trainer(model, train, val, optimizer, given, constant_loss, config=FP32)
    callbacks = [LearningRateScheduler(plateau)] if via == "callback" else []
    history = trainer.train(4, callbacks=callbacks)
    # Logged: the lr after the epoch's last optimizer step, before its plateau decision.
    # Epoch 1: 4 of 6 warm-up steps (its validation is ignored); epoch 2: warm-up ends, the
    # first decision (best so far); epochs 3 and 4: no improvement, more than patience=0
    # times, so each halves the lr of the next epoch.
    assert history["lr"] == pytest.approx([0.1 * 5 / 6, 0.1, 0.1, 0.05])


def test_plateau_from_the_default_training_config_builds():
    scheduler = create_scheduler(make_optimizer(), "plateau", TrainingConfig().warmup_steps)
    assert scheduler.warmup_steps == 1000 and scheduler.get_last_lr() == pytest.approx(
        [0.1 / 1000, 0.02 / 1000])
