"""Tests of FusedAdam/FusedAdamW and the multi-tensor op against torch.optim, and of AMP skips."""

from __future__ import annotations

import io

import pytest
import torch

from nol_fast.ops.optim_step.op import ENV_VAR, adam_step, resolve_backend
from nol_fast.optim import AdaBound, FusedAdam, FusedAdamW

# Every test runs on each CPU backend of the step (the reference and the C++ kernel).
pytestmark = pytest.mark.usefixtures("optimizer_backend")

SHAPES = [(7,), (3, 5), (2, 3, 11), (1,)]
STEPS = 200
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def make_params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in SHAPES
    ]


def set_grads(param_sets: list[list[torch.Tensor]], generator: torch.Generator) -> None:
    """Give every copy the same gradient: that of sum(|p|**2) plus shared noise."""
    for copies in zip(*param_sets, strict=True):
        noise = torch.randn(copies[0].shape, generator=generator, dtype=copies[0].dtype)
        for p in copies:
            p.grad = 2 * p.detach() + noise


def assert_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a.detach(), e.detach(), **CLOSE)


def run(optimizers: list[torch.optim.Optimizer], params: list[list[torch.Tensor]], steps: int,
        seed: int = 1, schedulers: list | None = None) -> None:  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        set_grads(params, generator)
        for optimizer in optimizers:
            optimizer.step()
        for scheduler in schedulers or []:
            scheduler.step()


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("decoupled", [False, True])
def test_matches_torch(decoupled: bool, weight_decay: float, maximize: bool, amsgrad: bool):
    ours_params, torch_params = make_params(), make_params()
    kwargs = {"lr": 1e-2, "weight_decay": weight_decay, "amsgrad": amsgrad, "maximize": maximize}
    ours_cls, torch_cls = (FusedAdamW, torch.optim.AdamW) if decoupled else (
        FusedAdam, torch.optim.Adam)  # fmt: skip
    ours, reference = ours_cls(ours_params, **kwargs), torch_cls(torch_params, **kwargs)
    run([ours, reference], [ours_params, torch_params], STEPS)
    assert_close(ours_params, torch_params)
    for p, q in zip(ours_params, torch_params, strict=True):
        for key, value in reference.state[q].items():
            torch.testing.assert_close(ours.state[p][key], value, **CLOSE)


def test_complex_matches_torch_for_loop() -> None:
    generator = torch.Generator().manual_seed(3)
    ours_params = [
        torch.randn(shape, generator=generator, dtype=torch.complex64).requires_grad_()
        for shape in SHAPES
    ]
    torch_params = [p.detach().clone().requires_grad_() for p in ours_params]
    ours = FusedAdamW(ours_params, lr=1e-2, amsgrad=True)
    reference = torch.optim.AdamW(torch_params, lr=1e-2, amsgrad=True, foreach=False)
    run([ours, reference], [ours_params, torch_params], STEPS)
    assert_close(ours_params, torch_params)
    assert ours.state[ours_params[0]]["exp_avg"].is_complex()


def test_param_groups_and_add_param_group() -> None:
    ours_params, torch_params = make_params(), make_params()
    ours = FusedAdamW([{"params": ours_params[:2]}, {"params": ours_params[2:3], "lr": 3e-2}],
                      lr=1e-2)  # fmt: skip
    reference = torch.optim.AdamW(
        [{"params": torch_params[:2]}, {"params": torch_params[2:3], "lr": 3e-2}], lr=1e-2
    )
    run([ours, reference], [ours_params, torch_params], 50)
    ours.add_param_group({"params": ours_params[3:], "lr": 5e-2, "amsgrad": True})
    reference.add_param_group({"params": torch_params[3:], "lr": 5e-2, "amsgrad": True})
    run([ours, reference], [ours_params, torch_params], 50, seed=2)
    assert_close(ours_params, torch_params)
    assert ours.state[ours_params[3]]["step"].item() == 50


def test_scheduler_changes_lr() -> None:
    ours_params, torch_params = make_params(), make_params()
    ours, reference = FusedAdamW(ours_params, lr=1e-2), torch.optim.AdamW(torch_params, lr=1e-2)
    schedulers = [torch.optim.lr_scheduler.StepLR(opt, 30, 0.5) for opt in (ours, reference)]
    run([ours, reference], [ours_params, torch_params], 100, schedulers=schedulers)
    assert ours.param_groups[0]["lr"] == pytest.approx(1e-2 / 8)
    assert_close(ours_params, torch_params)


def test_state_dict_round_trip() -> None:
    straight, resumed = make_params(), make_params()
    kwargs = {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05}
    reference = FusedAdamW(straight, **kwargs)
    run([reference], [straight], 100)
    run([reference], [straight], 100, seed=2)

    first = FusedAdamW(resumed, **kwargs)
    run([first], [resumed], 100)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    copies = [p.detach().clone().requires_grad_() for p in resumed]
    second = FusedAdamW(copies, lr=1.0)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == 1e-2
    run([second], [copies], 100, seed=2)
    torch.testing.assert_close([p.detach() for p in copies], [p.detach() for p in straight],
                               rtol=0, atol=0)  # fmt: skip


@pytest.mark.parametrize("cls", [FusedAdam, FusedAdamW])
@pytest.mark.parametrize("skip", [False, True])
def test_grad_scale_found_inf_matches_torch_fused(cls: type, skip: bool) -> None:
    ours_params, torch_params = make_params(), make_params()
    torch_cls = torch.optim.AdamW if cls is FusedAdamW else torch.optim.Adam
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}
    ours, reference = cls(ours_params, **kwargs), torch_cls(torch_params, fused=True, **kwargs)
    run([ours, reference], [ours_params, torch_params], 20)
    scale = torch.tensor(1024.0)
    found_inf = torch.tensor(1.0 if skip else 0.0)
    before = [p.detach().clone() for p in ours_params]
    generator = torch.Generator().manual_seed(7)
    set_grads([ours_params, torch_params], generator)
    for p, q in zip(ours_params, torch_params, strict=True):
        p.grad *= scale
        q.grad *= scale
        if skip:
            p.grad[0] = q.grad[0] = float("inf")
    ours.step(grad_scale=scale, found_inf=found_inf)
    reference.grad_scale, reference.found_inf = scale, found_inf
    reference.step()
    del reference.grad_scale, reference.found_inf
    assert_close(ours_params, torch_params)
    if skip:
        assert_close(ours_params, before)
    expected_steps = 20 if skip else 21
    assert all(ours.state[p]["step"].item() == expected_steps for p in ours_params)
    run([ours, reference], [ours_params, torch_params], 10, seed=8)
    assert_close(ours_params, torch_params)


def test_grad_scaler_matches_torch_fused() -> None:
    ours_model, torch_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    torch_model.load_state_dict(ours_model.state_dict())
    ours = FusedAdamW(ours_model.parameters(), lr=1e-2)
    reference = torch.optim.AdamW(torch_model.parameters(), lr=1e-2, fused=True)
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in range(2)]
    generator = torch.Generator().manual_seed(4)
    for step in range(6):
        x = torch.randn(8, 5, generator=generator)
        if step == 2:
            x[0, 0] = float("inf")  # an overflow: the scaler skips this step and backs off
        for model, optimizer, scaler in zip((ours_model, torch_model), (ours, reference),
                                            scalers, strict=True):  # fmt: skip
            optimizer.zero_grad()
            scaler.scale(model(x).square().mean()).backward()
            scaler.step(optimizer)
            scaler.update()
    assert scalers[0].get_scale() == scalers[1].get_scale() < 2.0**10
    assert_close(list(ours_model.parameters()), list(torch_model.parameters()))
    assert ours.state[ours_model.weight]["step"].item() == 5


@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_found_inf_skips(amsbound: bool) -> None:
    params, straight = make_params(), make_params()
    kwargs = {"lr": 1e-2, "final_lr": 0.1, "amsbound": amsbound}
    optimizer, reference = AdaBound(params, **kwargs), AdaBound(straight, **kwargs)
    run([optimizer, reference], [params, straight], 10)
    for p in params:
        p.grad = torch.full_like(p, float("inf"))
    optimizer.step(grad_scale=torch.tensor(4.0), found_inf=torch.tensor(1.0))
    assert all(optimizer.state[p]["step"].item() == 10 for p in params)
    assert_close(params, straight)
    generator = torch.Generator().manual_seed(5)
    set_grads([params, straight], generator)
    for p in params:
        p.grad *= 4.0
    optimizer.step(grad_scale=torch.tensor(4.0), found_inf=torch.tensor(0.0))
    reference.step()
    assert_close(params, straight)


def test_backend_selection(monkeypatch: pytest.MonkeyPatch, optimizer_backend: str) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    cpu = torch.device("cpu")
    assert resolve_backend(None, cpu) == optimizer_backend  # chosen through the variable
    monkeypatch.delenv(ENV_VAR)
    assert resolve_backend(None, cpu) == "cpu"  # the C++ kernel when it is built
    monkeypatch.setenv(ENV_VAR, "triton")  # cannot run on CPU tensors: ignored
    assert resolve_backend(None, cpu) == "cpu"
    monkeypatch.setenv(ENV_VAR, "einsum")  # no backend of this op: ignored
    assert resolve_backend(None, cpu) == "cpu"
    with pytest.raises(ValueError, match="'fast'.*reference, cpu, triton, cuda"):
        resolve_backend("fast", cpu)
    for name in ("triton", "cuda"):
        with pytest.raises(RuntimeError, match=f"'{name}'.*CUDA tensors only"):
            resolve_backend(name, cpu)
    with pytest.raises(ValueError, match="'fast'"):
        FusedAdam(make_params(), backend="fast")


def test_functional_empty_and_validation() -> None:
    adam_step([], [], [], [], [], [], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=True, amsgrad=False, maximize=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"betas\[1\].*1.5"):
        FusedAdamW(make_params(), betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="capturable=True"):
        FusedAdam(make_params(), lr=torch.tensor(1e-3))


def test_capturable_reads_its_lr_tensor_as_schedulers_update_it_in_place() -> None:
    # A captured step replays with the addresses it was captured with: the lr tensor must stay
    # the group's lr, be updated in place by the scheduler, and be read on every step.
    ours_params, torch_params = make_params(), make_params()
    lr = torch.tensor(1e-2)
    ours = FusedAdamW(ours_params, lr=lr, capturable=True)
    reference = torch.optim.AdamW(torch_params, lr=1e-2)
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8)
                  for opt in (ours, reference)]
    run([ours, reference], [ours_params, torch_params], 20, schedulers=schedulers)
    assert ours.param_groups[0]["lr"] is lr
    assert lr.item() == pytest.approx(1e-2 * 0.8**20)
    for p in ours_params:
        step = ours.state[p]["step"]
        assert step.dtype == torch.float32 and step.device == p.device and step.item() == 20
    assert_close(ours_params, torch_params)


def test_backends_report_lists_the_optimizer_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from nol_fast import backends

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # triton then runs on CUDA only
    report = backends()["optimizer_step"]
    assert report["cpu"]["reference"] == "available"
    assert report["cpu"]["triton"].startswith("unavailable: runs on CUDA tensors only")
    if not torch.cuda.is_available():
        assert report["cuda"]["triton"].startswith("unavailable")


@pytest.mark.parametrize("optimizer_class", [FusedAdam, FusedAdamW, AdaBound])
def test_unknown_backend_fails_at_construction(optimizer_class) -> None:
    with pytest.raises(ValueError, match=r"unknown optimizer backend 'cudnn'; choose one of"):
        optimizer_class([torch.zeros(2, requires_grad=True)], backend="cudnn")
    assert optimizer_class([torch.zeros(2, requires_grad=True)], backend="cpu").backend == "cpu"
