"""Tests of create_scheduler, WarmupScheduler and PlateauScheduler.

The closed forms are checked against torch's own schedulers (without warm-up) and against
formulas written out here (with warm-up).
"""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch
from torch.optim import lr_scheduler

from nol_fast.optim import PlateauScheduler, WarmupScheduler
from nol_fast.training.optimizers import create_scheduler

BASE_LRS = (0.1, 0.02)
STEPS = 300


def make_optimizer() -> torch.optim.SGD:
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    return torch.optim.SGD(
        [{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS, strict=True)], lr=1.0
    )


def collect(scheduler: lr_scheduler.LRScheduler, steps: int = STEPS) -> list[list[float]]:
    """The lrs of all groups used at steps 0 .. steps-1."""
    optimizer = scheduler.optimizer
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def expected(formula, steps: int = STEPS) -> list[list[float]]:
    """Apply ``formula(base_lr, t)`` to every group at steps 0 .. steps-1."""
    return [[formula(base, t) for base in BASE_LRS] for t in range(steps)]


def assert_lrs(actual: list[list[float]], wanted: list[list[float]]) -> None:
    assert len(actual) == len(wanted)
    for t, (got, want) in enumerate(zip(actual, wanted, strict=True)):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f"step {t}"


# --------------------------------------------------------------------------- against torch


@pytest.mark.parametrize(
    ("name", "kwargs", "torch_scheduler"),
    [
        (
            "cosine",
            {"T_max": 120, "eta_min": 1e-4},
            lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=120, eta_min=1e-4),
        ),
        (
            "cosine_restarts",
            {"T_0": 13, "eta_min": 1e-4},
            lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=13, eta_min=1e-4),
        ),
        (
            "cosine_restarts",
            {"T_0": 10, "T_mult": 2, "eta_min": 1e-4},
            lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, 10, T_mult=2, eta_min=1e-4),
        ),
        (
            "linear",
            {"T_max": 150, "end_factor": 0.1},
            lambda opt: lr_scheduler.LinearLR(opt, 1.0, end_factor=0.1, total_iters=150),
        ),
        (
            "step",
            {"step_size": 7, "gamma": 0.5},
            lambda opt: lr_scheduler.StepLR(opt, step_size=7, gamma=0.5),
        ),
        ("exponential", {"gamma": 0.98}, lambda opt: lr_scheduler.ExponentialLR(opt, 0.98)),
        ("constant", {}, lambda opt: lr_scheduler.ConstantLR(opt, factor=1.0)),
    ],
)
@pytest.mark.parametrize("warmup_steps", [0, 9])
def test_matches_torch_after_warmup(name, kwargs, torch_scheduler, warmup_steps: int) -> None:
    """After warm-up a schedule follows torch's, shifted by warmup_steps (T_max included)."""
    if "T_max" in kwargs:
        kwargs = {**kwargs, "T_max": kwargs["T_max"] + warmup_steps}
    ours = collect(create_scheduler(make_optimizer(), name, warmup_steps, **kwargs))
    reference = collect(torch_scheduler(make_optimizer()), STEPS - warmup_steps)
    horizon = kwargs.get("T_max", STEPS) - warmup_steps
    # torch's cosine turns back up after T_max; ours stays at eta_min (checked elsewhere).
    assert ours[warmup_steps : warmup_steps + horizon + 1] == [
        pytest.approx(lrs, rel=1e-9, abs=1e-12) for lrs in reference[: horizon + 1]
    ]


# --------------------------------------------------------------------------- hand formulas


def warm(base: float, t: int, warmup: int) -> float:
    return base * (t + 1) / warmup


def test_cosine_with_warmup_formula() -> None:
    eta = 1e-3

    def formula(base: float, t: int) -> float:
        if t < 10:
            return warm(base, t, 10)
        if t >= 110:
            return eta
        return eta + (base - eta) * (1 + math.cos(math.pi * (t - 10) / 100)) / 2

    scheduler = create_scheduler(make_optimizer(), "cosine", 10, T_max=110, eta_min=eta)
    lrs = collect(scheduler)
    assert_lrs(lrs, expected(formula))
    assert lrs[0] == pytest.approx([0.01, 0.002])
    assert lrs[9] == lrs[10] == pytest.approx(list(BASE_LRS))
    assert lrs[60] == pytest.approx([(base + eta) / 2 for base in BASE_LRS])
    assert lrs[110] == lrs[299] == pytest.approx([eta, eta])


def test_linear_with_warmup_formula() -> None:
    def formula(base: float, t: int) -> float:
        if t < 5:
            return warm(base, t, 5)
        return base * (1 - 0.8 * min(t - 5, 20) / 20)

    lrs = collect(create_scheduler(make_optimizer(), "linear", 5, T_max=25, end_factor=0.2))
    assert_lrs(lrs, expected(formula))
    assert lrs[15] == pytest.approx([0.06, 0.012])
    assert lrs[25] == lrs[200] == pytest.approx([0.02, 0.004])


def test_linear_defaults_to_zero_and_accepts_total_steps() -> None:
    lrs = collect(create_scheduler(make_optimizer(), "linear", total_steps=4), 6)
    assert [lr[0] for lr in lrs] == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0, 0.0])


def test_step_exponential_constant_with_warmup() -> None:
    step = collect(create_scheduler(make_optimizer(), "step", 3, step_size=4, gamma=0.5), 20)
    assert_lrs(
        step, expected(lambda b, t: warm(b, t, 3) if t < 3 else b * 0.5 ** ((t - 3) // 4), 20)
    )
    assert step[7][0] == pytest.approx(0.05)

    expo = collect(create_scheduler(make_optimizer(), "exponential", 4, gamma=0.9), 20)
    assert_lrs(expo, expected(lambda b, t: warm(b, t, 4) if t < 4 else b * 0.9 ** (t - 4), 20))

    constant = collect(create_scheduler(make_optimizer(), "constant", 4), 20)
    assert_lrs(constant, expected(lambda b, t: warm(b, t, 4) if t < 4 else b, 20))


def test_cosine_restarts_with_warmup_values() -> None:
    scheduler = create_scheduler(make_optimizer(), "cosine_restarts", 5, T_0=10, T_mult=2)
    lrs = [lr[0] for lr in collect(scheduler, 80)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    # periods of 10, 20, 40 steps start at t = 5, 15, 35, 75
    for start in (5, 15, 35, 75):
        assert lrs[start] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.05)  # middle of the first period
    assert lrs[25] == pytest.approx(0.05)  # middle of the second
    assert lrs[55] == pytest.approx(0.05)  # middle of the third
    assert lrs[74] == pytest.approx(0.05 * (1 + math.cos(math.pi * 39 / 40)))


def test_warmup_covering_horizon_warns_and_ends_at_eta_min(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="nol_fast.optim.schedulers"):
        scheduler = create_scheduler(make_optimizer(), "cosine", 10, T_max=8, eta_min=1e-3)
    assert "warmup_steps (10) >= horizon T_max (8)" in caplog.text
    lrs = [lr[0] for lr in collect(scheduler, 15)]
    assert lrs[9] == pytest.approx(0.1)
    assert lrs[10:] == pytest.approx([1e-3] * 5)


# --------------------------------------------------------------------------- horizon


def explicit_needs_no_horizon() -> bool:
    return create_scheduler(make_optimizer(), "cosine", 5, T_max=50).needs_horizon


def test_horizon_filled_later() -> None:
    scheduler = create_scheduler(make_optimizer(), "cosine", 5, eta_min=1e-3)
    assert scheduler.needs_horizon
    with pytest.warns(UserWarning, match="without its horizon"):
        lrs = [lr[0] for lr in collect(scheduler, 30)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:] == pytest.approx([0.1] * 25)

    late = create_scheduler(make_optimizer(), "cosine", 5, eta_min=1e-3)
    late.set_horizon(105)
    assert late.options["T_max"] == 105 and late.horizon_is_auto
    assert late.needs_horizon  # a filled horizon follows the run length on the next fill
    assert not explicit_needs_no_horizon()
    explicit = create_scheduler(make_optimizer(), "cosine", 5, T_max=105, eta_min=1e-3)
    assert collect(late) == collect(explicit)


def test_set_horizon_mid_run_recomputes_lr() -> None:
    scheduler = create_scheduler(make_optimizer(), "linear", 0)
    with pytest.warns(UserWarning, match="without its horizon"):
        collect(scheduler, 10)
    scheduler.set_horizon(20)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert scheduler.get_last_lr() == pytest.approx([0.05, 0.01])


def test_set_horizon_warns_and_validates(caplog) -> None:
    scheduler = create_scheduler(make_optimizer(), "linear", 10)
    with caplog.at_level(logging.WARNING, logger="nol_fast.optim.schedulers"):
        scheduler.set_horizon(10)
    assert "warmup_steps (10) >= horizon T_max (10)" in caplog.text
    with pytest.raises(ValueError, match="positive integer, got 0"):
        scheduler.set_horizon(0)
    with pytest.raises(ValueError, match="'step' has no horizon"):
        create_scheduler(make_optimizer(), "step", step_size=3).set_horizon(10)
    assert not create_scheduler(make_optimizer(), "exponential", gamma=0.9).needs_horizon


# --------------------------------------------------------------------------- state and protocol


def plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def test_state_dict_round_trip_with_weights_only_load() -> None:
    reference = WarmupScheduler(make_optimizer(), "cosine", 10, T_max=100, eta_min=1e-4)
    uninterrupted = collect(reference, 100)

    first = create_scheduler(make_optimizer(), "cosine", 10, interval="epoch", eta_min=1e-4)
    first.set_horizon(100)
    head = collect(first, 40)
    state = first.state_dict()
    assert plain(state)
    buffer = io.BytesIO()
    torch.save({"scheduler": state, "optimizer": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    optimizer = make_optimizer()
    second = create_scheduler(optimizer, "cosine", 10, eta_min=1e-4)
    optimizer.load_state_dict(checkpoint["optimizer"])
    second.load_state_dict(checkpoint["scheduler"])
    assert second.options["T_max"] == first.options["T_max"]
    assert second.horizon_is_auto == first.horizon_is_auto
    assert second.interval == "epoch"
    tail = collect(second, 60)
    assert head + tail == uninterrupted


def test_intervals() -> None:
    assert create_scheduler(make_optimizer(), "step", step_size=2).interval == "step"
    assert create_scheduler(make_optimizer(), "constant", interval="epoch").interval == "epoch"
    plateau = create_scheduler(make_optimizer(), "plateau")
    assert plateau.interval == "epoch" and not plateau.needs_horizon
    assert create_scheduler(make_optimizer(), "plateau", interval="epoch").interval == "epoch"
    with pytest.raises(ValueError, match="interval must be one of: step, epoch; got 'batch'"):
        create_scheduler(make_optimizer(), "cosine", interval="batch")
    with pytest.raises(ValueError, match="plateau.*interval='step'"):
        create_scheduler(make_optimizer(), "plateau", interval="step")


def test_plateau_reduces_after_patience() -> None:
    scheduler = create_scheduler(make_optimizer(), "plateau", mode="min", factor=0.5, patience=2)
    assert isinstance(scheduler, PlateauScheduler)
    optimizer = scheduler.optimizer
    history = []
    for metric in (1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.5):
        scheduler.step(metric)
        history.append(optimizer.param_groups[0]["lr"])
    # best 0.9 at epoch 1; epochs 2, 3, 4 are bad and the third bad one (> patience) reduces
    assert history == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.01])

    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    restored = create_scheduler(make_optimizer(), "plateau")
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.patience == 2 and restored.best == 0.5


def test_plateau_mode_max_does_not_reduce_while_improving() -> None:
    scheduler = create_scheduler(make_optimizer(), "plateau", mode="max", patience=0)
    for metric in range(10):
        scheduler.step(float(metric))
    assert scheduler.optimizer.param_groups[0]["lr"] == 0.1


def test_factory_defaults_and_case() -> None:
    scheduler = create_scheduler(make_optimizer())
    assert isinstance(scheduler, WarmupScheduler)
    assert (scheduler.schedule, scheduler.warmup_steps, scheduler.needs_horizon) == (
        "cosine",
        0,
        True,
    )
    assert create_scheduler(make_optimizer(), "Step", step_size=2).schedule == "step"


# --------------------------------------------------------------------------- errors


def test_unknown_scheduler_name() -> None:
    with pytest.raises(ValueError) as info:
        create_scheduler(make_optimizer(), "cosin")
    assert str(info.value) == (
        "unknown scheduler 'cosin'; choose one of: cosine, cosine_restarts, linear, step, "
        "exponential, constant, onecycle, plateau"
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("cosine", {"T0": 5}, r"'cosine' got unknown option\(s\) 'T0'; it accepts: T_max, eta_min"),
        (
            "constant",
            {"gamma": 0.5},
            "'constant' got unknown option.*'gamma'; it accepts: no options",
        ),
        ("plateau", {"pateince": 3}, r"'plateau' got unknown keyword argument\(s\) 'pateince'"),
        ("linear", {"T_max": 5, "total_steps": 5}, "not both"),
    ],
)
def test_bad_keyword_arguments(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        create_scheduler(make_optimizer(), name, **kwargs)


@pytest.mark.parametrize(
    ("name", "warmup", "kwargs", "message"),
    [
        ("cosine", -1, {}, "warmup_steps must be an integer >= 0, got -1"),
        ("cosine", 0, {"T_max": 0}, "T_max must be a positive integer, got 0"),
        ("linear", 0, {"T_max": 2.5}, "T_max must be a positive integer, got 2.5"),
        ("step", 0, {"step_size": 0}, "step_size must be a positive integer, got 0"),
        ("cosine_restarts", 0, {"T_0": 10, "T_mult": 0}, "T_mult must be a positive integer"),
        ("exponential", 0, {"gamma": 0.0}, "gamma must be > 0, got 0.0"),
    ],
)
def test_bad_values(name: str, warmup: int, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_scheduler(make_optimizer(), name, warmup, **kwargs)


def test_direct_construction_rejects_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'plateau'; choose one of: cosine"):
        WarmupScheduler(make_optimizer(), "plateau")


@pytest.mark.parametrize("total, pct_start", [(100, 0.3), (37, 0.25), (10, 0.5)])
def test_onecycle_matches_torch(total: int, pct_start: float) -> None:
    ours = create_scheduler(make_optimizer(), "onecycle", 0, T_max=total, pct_start=pct_start)
    reference_optimizer = make_optimizer()
    max_lrs = [group["lr"] for group in reference_optimizer.param_groups]
    torch_scheduler = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer, max_lr=max_lrs, total_steps=total, pct_start=pct_start,
        cycle_momentum=False,
    )
    reference = [lr for lrs in collect(torch_scheduler, total) for lr in lrs]
    assert [lr for lrs in collect(ours, total) for lr in lrs] == pytest.approx(
        reference, rel=1e-9, abs=1e-15)
    ours.step()  # past the horizon it stays at the final lr
    assert ours.get_last_lr() == pytest.approx(
        [lr / 25.0 / 1e4 for lr in max_lrs], rel=1e-12)


def test_onecycle_horizon_is_filled_and_options_are_checked() -> None:
    scheduler = create_scheduler(make_optimizer(), "onecycle")
    assert scheduler.needs_horizon
    scheduler.set_horizon(50)
    assert scheduler.options["T_max"] == 50
    with pytest.raises(ValueError, match=r"pct_start must be in \(0, 1\), got 1.5"):
        create_scheduler(make_optimizer(), "onecycle", T_max=10, pct_start=1.5)
