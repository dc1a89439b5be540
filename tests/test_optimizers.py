"""Tests of create_optimizer and of AdaBound against the ``adabound`` 0.0.5 package."""

from __future__ import annotations

import io

import adabound
import pytest
import torch

from nol_fast.optim import AdaBound, FusedAdam, FusedAdamW
from nol_fast.training.optimizers import create_optimizer

pytestmark = [
    # The package calls deprecated overloads of Tensor.add/add_/addcmul_.
    pytest.mark.filterwarnings("ignore:This overload of add:UserWarning"),
    pytest.mark.usefixtures("optimizer_backend"),
]

SHAPES = [(7,), (3, 5), (2, 3, 11)]
STEPS = 200
# The reference implementation performs the package's operations in the package's order, so
# the trajectories agree bit for bit. The C++ kernel performs them in the same order and
# rounding, but its sqrt is correctly rounded where torch's CPU sqrt is sometimes one ulp off,
# so it agrees within float32 rounding (the tolerance set by the fixture below).
EXACT = {"rtol": 0.0, "atol": 0.0}


@pytest.fixture(autouse=True)
def _tolerance(optimizer_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if optimizer_backend != "reference":
        monkeypatch.setitem(EXACT, "rtol", 1e-5)
        monkeypatch.setitem(EXACT, "atol", 1e-7)


def make_params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in SHAPES
    ]


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def set_grads(params_sets: list[list[torch.Tensor]], generator: torch.Generator) -> None:
    """Give every copy the same gradient: that of sum(p**2) plus shared noise."""
    for copies in zip(*params_sets, strict=True):
        noise = torch.randn(copies[0].shape, generator=generator, dtype=copies[0].dtype)
        for p in copies:
            p.grad = 2 * p.detach() + noise


def assert_same(actual: list[torch.Tensor], expected: list[torch.Tensor], **tol: float) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a.detach(), e.detach(), **(tol or EXACT))


# --------------------------------------------------------------------------- create_optimizer


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", FusedAdam),
        ("adamw", FusedAdamW),
        ("SGD", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
        ("AdaBound", AdaBound),
        ("amsbound", AdaBound),
    ],
)
def test_create_optimizer_classes(name: str, cls: type) -> None:
    optimizer = create_optimizer(iter(make_params()), name, 3e-3, 2e-4)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 3e-3
    assert group["weight_decay"] == 2e-4
    assert len(group["params"]) == len(SHAPES)
    if cls is AdaBound:
        assert group["amsbound"] is (name == "amsbound")


def test_create_optimizer_defaults() -> None:
    optimizer = create_optimizer(make_params())
    assert type(optimizer) is FusedAdamW
    assert optimizer.param_groups[0]["lr"] == 1e-4
    assert optimizer.param_groups[0]["weight_decay"] == 1e-5


def hyper(optimizer: torch.optim.Optimizer, *keys: str) -> dict:
    return {key: optimizer.param_groups[0][key] for key in keys}


def test_create_optimizer_spec_examples() -> None:
    adamw = create_optimizer(make_params(), "adamw", 5e-4, 1e-4, betas=(0.9, 0.999), eps=1e-8)
    assert type(adamw) is FusedAdamW
    assert hyper(adamw, "lr", "weight_decay", "betas", "eps") == {
        "lr": 5e-4, "weight_decay": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8
    }  # fmt: skip

    sgd = create_optimizer(
        make_params(), "sgd", 1e-2, momentum=0.9, weight_decay=1e-4, nesterov=True
    )
    assert type(sgd) is torch.optim.SGD
    assert hyper(sgd, "lr", "momentum", "weight_decay", "nesterov") == {
        "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True
    }  # fmt: skip

    bound = create_optimizer(make_params(), "adabound", 1e-3, final_lr=0.1, gamma=1e-3)
    assert type(bound) is AdaBound
    assert hyper(bound, "lr", "final_lr", "gamma", "base_lr", "amsbound") == {
        "lr": 1e-3, "final_lr": 0.1, "gamma": 1e-3, "base_lr": 1e-3, "amsbound": False
    }  # fmt: skip


def test_create_optimizer_param_groups() -> None:
    first, second, third = make_params()
    optimizer = create_optimizer(
        [{"params": [first, second]}, {"params": [third], "lr": 1e-2}], "adabound", 1e-3
    )
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-2]
    assert [g["base_lr"] for g in optimizer.param_groups] == [1e-3, 1e-2]


def test_create_optimizer_unknown_name() -> None:
    message = (
        "unknown optimizer 'adamx'; choose one of: adam, adamw, sgd, rmsprop, adabound, amsbound"
    )
    with pytest.raises(ValueError) as info:
        create_optimizer(make_params(), "adamx")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("name", "kwargs", "bad"),
    [
        ("adam", {"momentum": 0.9}, "momentum"),
        ("sgd", {"betas": (0.9, 0.99)}, "betas"),
        ("amsbound", {"amsbound": False}, "amsbound"),
        ("adabound", {"final_lr": 0.1, "fnal_lr": 1}, "fnal_lr"),
    ],
)
def test_create_optimizer_unknown_kwarg(name: str, kwargs: dict, bad: str) -> None:
    with pytest.raises(TypeError, match=rf"optimizer '{name}'.*'{bad}'"):
        create_optimizer(make_params(), name, **kwargs)


@pytest.mark.parametrize("amsbound", [False, True])
def test_create_optimizer_passes_amsbound_to_adabound(amsbound: bool) -> None:
    """``adabound`` takes ``amsbound=`` through the factory, as ``AdaBound`` and the
    ``adabound`` package do; the trajectory is the package's."""
    ours_params, package_params = make_params(), make_params()
    ours = create_optimizer(ours_params, "adabound", 1e-2, 0.0, final_lr=0.05, amsbound=amsbound)
    package = adabound.AdaBound(package_params, lr=1e-2, final_lr=0.05, amsbound=amsbound)
    assert ours.param_groups[0]["amsbound"] is amsbound
    generator = torch.Generator().manual_seed(2)
    for _ in range(30):
        set_grads([ours_params, package_params], generator)
        ours.step()
        package.step()
    assert_same(ours_params, package_params)


# --------------------------------------------------------------------------- AdaBound vs package


def run_against_package(ours_kwargs: dict, package_kwargs: dict, decay: float = 0.0) -> None:
    """Run both optimizers for STEPS steps with a StepLR halving lr every 60 steps.

    ``decay`` is the oracle's decoupled weight decay, applied by hand as p *= 1 - lr*decay.
    """
    ours_params, package_params = make_params(), make_params()
    ours = AdaBound(ours_params, **ours_kwargs)
    package = adabound.AdaBound(package_params, **package_kwargs)
    schedulers = [torch.optim.lr_scheduler.StepLR(opt, 60, 0.5) for opt in (ours, package)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        set_grads([ours_params, package_params], generator)
        if decay:
            lr = package.param_groups[0]["lr"]
            with torch.no_grad():
                for p in package_params:
                    p.mul_(1 - lr * decay)
        ours.step()
        package.step()
        for scheduler in schedulers:
            scheduler.step()
    lr = ours.param_groups[0]["lr"]
    assert lr == package.param_groups[0]["lr"] == pytest.approx(ours.param_groups[0]["base_lr"] / 8)
    assert_same(ours_params, package_params)
    for p, q in zip(ours_params, package_params, strict=True):
        for key in package.state[q]:
            if key != "step":
                assert_same([ours.state[p][key]], [package.state[q][key]])


HYPER = {"lr": 1e-2, "betas": (0.8, 0.99), "final_lr": 0.05, "gamma": 1e-2, "eps": 1e-7}


@pytest.mark.parametrize("amsbound", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adabound_matches_package(amsbound: bool, weight_decay: float) -> None:
    kwargs = {**HYPER, "amsbound": amsbound, "weight_decay": weight_decay}
    run_against_package(kwargs, kwargs)


@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_decoupled_weight_decay(amsbound: bool) -> None:
    ours = {**HYPER, "amsbound": amsbound, "weight_decay": 0.05, "decoupled_weight_decay": True}
    run_against_package(ours, {**HYPER, "amsbound": amsbound}, decay=0.05)



def bound_hits(package: adabound.AdaBound) -> tuple[int, int, int]:
    """(above the upper bound, below the lower bound, all) of the unclipped step sizes of the
    package's last step, recomputed from its state with the paper's formulas."""
    group = package.param_groups[0]
    beta1, beta2 = group["betas"]
    above = below = total = 0
    for p in group["params"]:
        state = package.state[p]
        t = state["step"]
        v = state["max_exp_avg_sq"] if group["amsbound"] else state["exp_avg_sq"]
        step_size = group["lr"] * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
        unclipped = step_size / (v.sqrt() + group["eps"])
        final_lr = group["final_lr"] * group["lr"] / package.base_lrs[0]
        lower = final_lr * (1 - 1 / (group["gamma"] * t + 1))
        upper = final_lr * (1 + 1 / (group["gamma"] * t))
        above += int((unclipped > upper).sum())
        below += int((unclipped < lower).sum())
        total += unclipped.numel()
    return above, below, total


@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_matches_package_where_both_bounds_clip(amsbound: bool) -> None:
    """Gradients from 1e-4 to 10 in size: the upper bound clips the steps of the small ones,
    the lower bound those of the large ones, and the trajectories still agree."""
    hyper = {"lr": 1e-2, "betas": (0.9, 0.99), "final_lr": 0.05, "gamma": 0.1, "eps": 1e-8,
             "amsbound": amsbound}
    ours_params, package_params = make_params(), make_params()
    ours = AdaBound(ours_params, **hyper)
    package = adabound.AdaBound(package_params, **hyper)
    generator = torch.Generator().manual_seed(9)
    scales = [10.0 ** (5 * torch.rand(p.shape, generator=generator) - 4) for p in ours_params]
    hits = [0, 0, 0]
    for _ in range(60):
        for p, q, scale in zip(ours_params, package_params, scales, strict=True):
            p.grad = torch.randn(p.shape, generator=generator) * scale
            q.grad = p.grad.clone()
        ours.step()
        package.step()
        hits = [a + b for a, b in zip(hits, bound_hits(package), strict=True)]
    above, below, total = hits
    assert above > 0.2 * total and below > 0.2 * total, hits
    assert_same(ours_params, package_params)

def test_adabound_default_hyperparameters_match_package() -> None:
    run_against_package({}, {})


def test_adabound_complex_matches_real_view() -> None:
    generator = torch.Generator().manual_seed(2)
    complex_params = [
        torch.randn(shape, generator=generator, dtype=torch.complex64).requires_grad_()
        for shape in SHAPES
    ]
    real_params = [torch.view_as_real(p.detach()).clone().requires_grad_() for p in complex_params]
    package_params = clone_params(real_params)
    kwargs = {**HYPER, "weight_decay": 0.05, "amsbound": True}
    optimizers = [
        AdaBound(complex_params, **kwargs),
        AdaBound(real_params, **kwargs),
        adabound.AdaBound(package_params, **kwargs),
    ]
    for _ in range(STEPS):
        for c, r, q in zip(complex_params, real_params, package_params, strict=True):
            noise = torch.randn(r.shape, generator=generator)
            r.grad = 2 * r.detach() + noise
            q.grad = r.grad.clone()
            c.grad = torch.view_as_complex(r.grad.clone())
        for optimizer in optimizers:
            optimizer.step()
    assert_same([torch.view_as_real(p) for p in complex_params], real_params)
    assert_same(real_params, package_params)
    assert optimizers[0].state[complex_params[0]]["exp_avg"].is_complex()


def test_adabound_add_param_group() -> None:
    early, late = make_params(3), make_params(4)
    early_ref, late_ref = clone_params(early), clone_params(late)
    ours = AdaBound(early, lr=1e-2, final_lr=0.05)
    package_early = adabound.AdaBound(early_ref, lr=1e-2, final_lr=0.05)
    package_late = None
    generator = torch.Generator().manual_seed(5)
    for step in range(120):
        if step == 40:
            ours.add_param_group({"params": late, "lr": 3e-3, "gamma": 1e-2})
            package_late = adabound.AdaBound(late_ref, lr=3e-3, final_lr=0.05, gamma=1e-2)
        active = (
            [early, early_ref] if package_late is None else [early + late, early_ref + late_ref]
        )
        set_grads(active, generator)
        ours.step()
        package_early.step()
        if package_late is not None:
            package_late.step()
    assert ours.param_groups[1]["base_lr"] == 3e-3
    assert_same(early, early_ref)
    assert_same(late, late_ref)


def test_adabound_zero_lr() -> None:
    params = make_params()
    before = clone_params(params)
    optimizer = AdaBound(params, lr=0.0, weight_decay=0.1)
    generator = torch.Generator().manual_seed(6)
    for _ in range(5):
        set_grads([params], generator)
        optimizer.step()
    assert_same(params, before)
    assert all(torch.isfinite(optimizer.state[p]["exp_avg_sq"]).all() for p in params)
    assert optimizer.state[params[0]]["exp_avg_sq"].abs().sum() > 0


def test_adabound_lr_scheduled_to_zero() -> None:
    params = make_params()
    optimizer = AdaBound(params, lr=1e-2)
    generator = torch.Generator().manual_seed(7)
    set_grads([params], generator)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.0
    before = clone_params(params)
    set_grads([params], generator)
    optimizer.step()
    assert_same(params, before)


def test_adabound_gamma_zero_is_unbounded() -> None:
    """gamma=0 leaves the step unclipped: the first step equals Adam's."""
    params, adam_params = make_params(), make_params()
    optimizer = AdaBound(params, lr=1e-2, gamma=0.0)
    adam = torch.optim.Adam(adam_params, lr=1e-2)
    set_grads([params, adam_params], torch.Generator().manual_seed(8))
    optimizer.step()
    adam.step()
    assert_same(params, adam_params, rtol=1e-6, atol=1e-7)


def test_adabound_state_dict_round_trip() -> None:
    """Save after 50 steps (lr already changed), resume on copies: equal to 100 straight."""
    straight = make_params()
    resumed = make_params()
    kwargs = {**HYPER, "amsbound": True, "weight_decay": 0.05}

    def step(optimizer: AdaBound, params: list[torch.Tensor], generator: torch.Generator, t: int):
        set_grads([params], generator)
        optimizer.step()
        if t == 25:
            optimizer.param_groups[0]["lr"] /= 4

    reference = AdaBound(straight, **kwargs)
    generator = torch.Generator().manual_seed(9)
    for t in range(100):
        step(reference, straight, generator, t)

    first = AdaBound(resumed, **kwargs)
    generator = torch.Generator().manual_seed(9)
    for t in range(50):
        step(first, resumed, generator, t)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    copies = clone_params(resumed)
    second = AdaBound(copies, **{**kwargs, "lr": first.param_groups[0]["lr"]})
    assert second.param_groups[0]["base_lr"] != HYPER["lr"]
    second.load_state_dict(saved)
    assert second.param_groups[0]["base_lr"] == HYPER["lr"]
    for t in range(50, 100):
        step(second, copies, generator, t)
    assert_same(copies, straight)


def test_adabound_skips_params_without_grad() -> None:
    params = make_params()
    before = clone_params(params)
    optimizer = AdaBound(params)
    params[0].grad = torch.ones_like(params[0])
    optimizer.step()
    assert not torch.equal(params[0], before[0])
    assert_same(params[1:], before[1:])
    assert len(optimizer.state) == 1


def test_adabound_closure() -> None:
    params = make_params()
    optimizer = AdaBound(params)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = sum(p.square().sum() for p in params)
        loss.backward()
        return loss

    assert optimizer.step(closure) > 0
    assert len(optimizer.state) == len(params)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1.0}, "lr"),
        ({"final_lr": -0.1}, "final_lr"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"betas": (1.0, 0.999)}, r"betas\[0\]"),
        ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
        ({"betas": (0.9,)}, "betas"),
        ({"gamma": 1.0}, "gamma"),
    ],
)
def test_adabound_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AdaBound(make_params(), **kwargs)


def test_adabound_validates_added_groups() -> None:
    early, late = make_params(), make_params(1)
    optimizer = AdaBound(early)
    with pytest.raises(ValueError, match="gamma"):
        optimizer.add_param_group({"params": late, "gamma": 2.0})
    assert len(optimizer.param_groups) == 1
