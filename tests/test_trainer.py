"""Trainer behaviour against hand-written loops and closed forms."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from conftest import TinyNet, make_data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.training import NonFiniteLossError, Trainer, TrainingConfig
from nol_fast.training.callbacks import ModelCheckpoint, TrainingCallback

FP32 = TrainingConfig(mixed_precision=False, gradient_clipping=0.0)


def linear_setup(batch_size=8, n=32, shuffle=False):
    torch.manual_seed(0)
    x = torch.randn(n, 3, 5)
    y = torch.randn(n, 2, 5)
    model = nn.Conv1d(3, 2, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
    return model, loader, x, y


class TwoTermLoss(nn.Module):
    """MSE plus a zero-weighted input term, logging both as loss components."""

    def forward(self, pred, target, inputs=None):
        data = nn.functional.mse_loss(pred, target)
        penalty = inputs.abs().mean()
        self.last_components = {"data": data.detach(), "penalty": penalty.detach()}
        return data + 0.0 * penalty


def test_one_epoch_equals_hand_written_loop():
    model, loader, _, _ = linear_setup()
    reference = nn.Conv1d(3, 2, 1)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    history = Trainer(model, loader, None, opt, config=FP32).train(1)
    losses = []
    for x, y in loader:
        ref_opt.zero_grad()
        loss = nn.functional.mse_loss(reference(x), y)
        loss.backward()
        ref_opt.step()
        losses.append(loss.item())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert history["train_loss"] == [pytest.approx(sum(losses) / len(losses), rel=1e-6)]


def test_history_keys_and_one_entry_per_epoch(loaders):
    train, val = loaders
    model = TinyNet()
    history = Trainer(model, train, val, torch.optim.Adam(model.parameters()), config=FP32).train(3)
    for key in ("train_loss", "val_loss", "val_rel_l2", "lr", "epoch_time"):
        assert len(history[key]) == 3, key
    assert all(t > 0 for t in history["epoch_time"])


def test_gradient_accumulation_equals_larger_batch():
    model, small, x, y = linear_setup(batch_size=4)
    twin = nn.Conv1d(3, 2, 1)
    twin.load_state_dict(model.state_dict())
    big = DataLoader(TensorDataset(x, y), batch_size=8)
    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0,
                            gradient_accumulation_steps=2)
    Trainer(model, small, None, torch.optim.SGD(model.parameters(), lr=0.1), config=config).train(2)
    Trainer(twin, big, None, torch.optim.SGD(twin.parameters(), lr=0.1), config=FP32).train(2)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_gradient_accumulation_remainder_group_is_its_own_mean():
    # 3 batches with accumulation 2: the last step uses the last batch alone, unscaled by 2.
    model, loader, x, y = linear_setup(batch_size=8, n=24)
    reference = nn.Conv1d(3, 2, 1)
    reference.load_state_dict(model.state_dict())
    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0,
                            gradient_accumulation_steps=2)
    trainer = Trainer(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.1),
                      config=config)
    trainer.train(1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for group in ((x[:16], y[:16]), (x[16:], y[16:])):
        ref_opt.zero_grad()
        nn.functional.mse_loss(reference(group[0]), group[1]).backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert trainer.global_step == 2


def test_gradient_clipping_bounds_the_step():
    model, loader, _, _ = linear_setup(batch_size=32)
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainingConfig(mixed_precision=False, gradient_clipping=1e-3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    Trainer(model, loader, None, optimizer, config=config).train(1)
    after = [p.detach() for p in model.parameters()]
    step = torch.cat([(a - b).flatten() for a, b in zip(after, before, strict=True)])
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_val_frequency_validates_every_k_and_after_the_last_epoch(loaders):
    train, val = loaders
    model = TinyNet()
    config = TrainingConfig(mixed_precision=False, val_frequency=2)
    history = Trainer(model, train, val, torch.optim.Adam(model.parameters()),
                      config=config).train(5)
    assert history["val_epoch"] == [2, 4, 5]
    assert len(history["val_loss"]) == len(history["val_rel_l2"]) == 3


def test_dict_and_list_batches_match_tuple_batches():
    x, y = make_data(16)

    class DictData(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return {"x": x[i], "y": y[i]}

    results = []
    for loader in (DataLoader(TensorDataset(x, y), batch_size=4),
                   DataLoader(DictData(), batch_size=4),
                   [[x[i:i + 4], y[i:i + 4]] for i in range(0, 16, 4)]):
        torch.manual_seed(0)
        model = TinyNet()
        model.eval()
        trainer = Trainer(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.0),
                          config=FP32)
        results.append(trainer.evaluate(loader)["loss"])
    assert results[0] == pytest.approx(results[1]) == pytest.approx(results[2])


@pytest.mark.parametrize("batch, message", [
    ((torch.zeros(2, 2, 6),) * 3, "of length 3"),
    ({"x": torch.zeros(2, 2, 6)}, "missing \\['y'\\]"),
    ("not a batch", "got a str"),
])
def test_bad_batches_give_clear_errors(batch, message):
    model = TinyNet()
    trainer = Trainer(model, [batch], None, torch.optim.SGD(model.parameters(), lr=0.1),
                      config=FP32)
    with pytest.raises((TypeError, KeyError), match=message):
        trainer.train(1)


def test_output_target_shape_mismatch_is_a_clear_error():
    x, y = make_data(8)
    model = TinyNet(out_channels=3)  # targets have 1 channel
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = Trainer(model, loader, None, torch.optim.SGD(model.parameters(), lr=0.1),
                      config=FP32)
    with pytest.raises(ValueError, match=r"output shape \(4, 3, 6\) does not match the target"):
        trainer.train(1)


def test_evaluate_matches_manual_computation_on_unequal_batches(loaders):
    train, _ = loaders
    x, y = make_data(11, seed=3)
    val = DataLoader(TensorDataset(x, y), batch_size=4)  # batches of 4, 4 and 3 samples
    model = TinyNet()
    trainer = Trainer(model, train, val, torch.optim.Adam(model.parameters()),
                      loss_fn=TwoTermLoss(), config=FP32)
    trainer.train(1)
    result = trainer.evaluate(val, return_predictions=True)
    model.eval()
    with torch.no_grad():
        pred = model(x)
    torch.testing.assert_close(result["predictions"], pred)
    # Oracles written out here: means over samples, not over batches.
    squared_error = ((pred - y) ** 2).flatten(1).mean(1)  # per sample
    relative = (pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    assert result["loss"] == pytest.approx(squared_error.mean().item(), rel=1e-5)
    assert result["data"] == pytest.approx(squared_error.mean().item(), rel=1e-5)
    assert result["penalty"] == pytest.approx(x.abs().mean().item(), rel=1e-5)
    assert result["rel_l2"] == pytest.approx(relative.mean().item(), rel=1e-5)
    assert result["n_samples"] == 11
    assert model.training is False  # evaluate restores the mode it found
    # The batches' unweighted mean is far enough off for the sample weighting to matter.
    batch_means = torch.stack([squared_error[i:i + 4].mean() for i in (0, 4, 8)]).mean()
    assert abs(batch_means.item() - result["loss"]) > 1e-3 * result["loss"]


def test_nonfinite_loss_stops_with_epoch_and_batch_and_keeps_last_checkpoint(loaders, tmp_path):
    train, val = loaders

    class PoisonAt:
        """MSE, but NaN at (epoch 2, batch 3)."""

        def __init__(self):
            self.calls = 0

        def __call__(self, pred, target):
            self.calls += 1
            loss = nn.functional.mse_loss(pred, target)
            return loss * math.nan if self.calls == len(train) + 4 else loss

    model = TinyNet()
    trainer = Trainer(model, train, None, torch.optim.Adam(model.parameters()),
                      loss_fn=PoisonAt(), config=TrainingConfig(mixed_precision=False,
                                                                log_frequency=2))
    checkpoint = ModelCheckpoint(str(tmp_path / "last.pt"), monitor="train_loss")
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 3") as info:
        trainer.train(3, callbacks=[checkpoint])
    assert (info.value.epoch, info.value.batch) == (1, 3)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_skip_nonfinite_skips_the_step_and_counts_it(loaders):
    train, _ = loaders
    calls = []

    def loss_fn(pred, target):
        calls.append(1)
        loss = nn.functional.mse_loss(pred, target)
        return loss + math.inf if len(calls) == 2 else loss

    model = TinyNet()
    config = TrainingConfig(mixed_precision=False, skip_nonfinite=True)
    history = Trainer(model, train, None, torch.optim.Adam(model.parameters()), loss_fn=loss_fn,
                      config=config).train(2)
    assert history["skipped_steps"] == [1.0, 0.0]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(v) for v in history["train_loss"])


def test_mixed_precision_on_cpu_trains_in_bf16_where_native(loaders, caplog, monkeypatch):
    from nol_fast.training import precision

    train, _ = loaders
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        precision._log_cpu_float32.cache_clear()
        model = TinyNet()
        seen = []

        def record(module, args, out, seen=seen):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

        model.register_forward_hook(record)
        with caplog.at_level(logging.INFO, logger="nol_fast"):
            trainer = Trainer(model, train, None, torch.optim.Adam(model.parameters()),
                              config=TrainingConfig(mixed_precision=True))
        assert trainer.amp_dtype is expected
        trainer.train(1)
        # Weights and the optimizer state stay float32; the forward ran under autocast.
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert seen[0] == ((True, torch.bfloat16) if native else (False, seen[0][1]))
        logged = "no native bfloat16" in caplog.text
        assert logged is not native
        caplog.clear()


def test_native_bf16_check_agrees_with_cpu_flags():
    from nol_fast.training.precision import cpu_has_native_bf16

    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_loss_with_inputs_and_components_is_logged(loaders):
    train, val = loaders

    model = TinyNet()
    history = Trainer(model, train, val, torch.optim.Adam(model.parameters()),
                      loss_fn=TwoTermLoss(), config=FP32).train(2)
    assert history["train_data"] == pytest.approx(history["train_loss"], rel=1e-6)
    assert history["val_data"] == pytest.approx(history["val_loss"], rel=1e-6)
    all_x = torch.cat([x for x, _ in val])
    assert history["val_penalty"][0] == pytest.approx(all_x.abs().mean().item(), rel=1e-5)


def test_callback_hooks_fire_in_order_and_batch_hooks_only_when_overridden(loaders):
    train, val = loaders
    events = []

    class Recorder(TrainingCallback):
        def on_train_begin(self, trainer):
            events.append("train_begin")

        def on_epoch_begin(self, trainer, epoch):
            events.append(f"epoch_begin {epoch}")

        def on_batch_end(self, trainer, batch_idx, batch_metrics):
            assert batch_metrics["loss"].dim() == 0
            events.append("batch")

        def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
            assert set(train_losses) == {"train_loss"}
            assert set(val_losses) == {"val_loss", "val_rel_l2"}
            events.append(f"epoch_end {epoch}")

        def on_train_end(self, trainer):
            events.append("train_end")

    model = TinyNet()
    trainer = Trainer(model, train, val, torch.optim.Adam(model.parameters()), config=FP32)
    trainer.train(2, callbacks=[Recorder()])
    per_epoch = ["batch"] * len(train)
    assert events == (["train_begin", "epoch_begin 0", *per_epoch, "epoch_end 0",
                       "epoch_begin 1", *per_epoch, "epoch_end 1", "train_end"])
    assert not trainer.callbacks.wants_batch_hooks or any(
        cb.overrides("on_batch_end") for cb in trainer.callbacks.callbacks)

    class EpochOnly(TrainingCallback):
        def on_epoch_end(self, trainer, epoch, train_losses, val_losses):
            pass

    trainer.train(3, callbacks=[EpochOnly()])
    assert trainer.callbacks.wants_batch_hooks is False


def test_bad_arguments_are_clear_errors(loaders):
    train, val = loaders
    model = TinyNet()
    trainer = Trainer(model, train, val, torch.optim.Adam(model.parameters()), config=FP32)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        trainer.train(0)
    with pytest.raises(TypeError, match="TrainingCallback instances"):
        trainer.train(1, callbacks=[object()])
    with pytest.raises(TypeError, match="config must be a TrainingConfig"):
        Trainer(model, train, val, torch.optim.Adam(model.parameters()), config={"epochs": 1})


def test_trainer_fills_the_scheduler_horizon_from_the_run_length(loaders):
    from nol_fast.training.optimizers import create_scheduler

    train, _ = loaders
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = create_scheduler(optimizer, "cosine", warmup_steps=0)  # no T_max given
    trainer = Trainer(model, train, None, optimizer, scheduler, config=FP32)
    steps = len(train)  # 4 optimizer steps per epoch
    history = trainer.train(3)
    assert scheduler.options["T_max"] == 3 * steps
    # lr logged per epoch is the lr after the epoch's last step: cosine at t = steps * (e + 1)
    expected = [0.05 * (1 + math.cos(math.pi * steps * (e + 1) / (3 * steps))) for e in range(3)]
    assert history["lr"] == pytest.approx(expected, abs=1e-12)
    trainer.train(5)  # training on re-fills the horizon for the longer run
    assert scheduler.options["T_max"] == 5 * steps


PROGRESS_SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
from nol_fast.training import Trainer, TrainingConfig
x = torch.randn(64, 2, 4)
loader = DataLoader(TensorDataset(x, x[:, :1]), batch_size=4)
model = torch.nn.Conv1d(2, 1, 1)
Trainer(model, loader, loader, torch.optim.SGD(model.parameters(), lr=0.1),
        config=TrainingConfig(mixed_precision=False, log_frequency=4)).train(2)
"""


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_progress_bar_on_a_terminal_and_log_lines_otherwise(terminal):
    import os
    import subprocess
    import sys

    if terminal:
        import fcntl
        import struct
        import termios

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        proc = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], stderr=slave,
                              stdout=subprocess.DEVNULL, timeout=120, check=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        text = b"".join(chunks).decode(errors="replace")
        assert "epoch 1/2:" in text and "/16 [" in text  # the tqdm bar
    else:
        proc = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], capture_output=True,
                              text=True, timeout=120, check=True)
        text = proc.stderr
        assert "/16 [" not in text
    assert "epoch 2/2 train_loss=" in text


def test_batch_that_does_not_fit_the_model_is_a_clear_error():
    from nol_fast.models import create_model

    model = create_model("fno", {"n_modes": [4, 4], "in_channels": 1, "hidden_channels": 4})
    x, y = torch.randn(4, 3, 8, 8), torch.randn(4, 1, 8, 8)  # 3 input channels, model takes 1
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    trainer = Trainer(model, loader, None, torch.optim.Adam(model.parameters()), config=FP32)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 1, \*grid\).*"
                                         r"got \(2, 3, 8, 8\)"):
        trainer.train(1)
    with pytest.raises(ValueError, match="expects input of shape"):
        trainer.evaluate(loader)


def test_gradient_accumulation_with_a_loader_without_length():
    model, _, x, y = linear_setup(batch_size=4)
    twin = nn.Conv1d(3, 2, 1)
    twin.load_state_dict(model.state_dict())

    def unsized():  # a generator: no len(), so the Trainer cannot see the epoch's end early
        for i in range(0, 32, 4):
            yield x[i:i + 4], y[i:i + 4]

    class Batches:
        def __iter__(self):
            return unsized()

    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0,
                            gradient_accumulation_steps=2)
    Trainer(model, Batches(), None, torch.optim.SGD(model.parameters(), lr=0.1),
            config=config).train(2)
    big = DataLoader(TensorDataset(x, y), batch_size=8)
    Trainer(twin, big, None, torch.optim.SGD(twin.parameters(), lr=0.1), config=FP32).train(2)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_epoch_interval_scheduler_gets_a_horizon_in_epochs(loaders):
    from nol_fast.training.optimizers import create_scheduler

    train, _ = loaders  # 4 optimizer steps per epoch
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = create_scheduler(optimizer, "cosine", interval="epoch")  # no T_max given
    trainer = Trainer(model, train, None, optimizer, scheduler, config=FP32)
    history = trainer.train(4)
    # lr logged for epoch e is the lr it trained with: cosine over a horizon of 4 epochs
    expected = [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert history["lr"] == pytest.approx(expected, abs=1e-12)
    assert trainer.current_lr() == pytest.approx(0.0, abs=1e-12)  # the horizon's end


@pytest.mark.parametrize(("own_interval", "scheduler_interval", "steps_taken"), [
    ("epoch", "auto", 3),
    ("epoch", "step", 12),
    ("step", "auto", 12),
    ("step", "epoch", 3),
])
def test_config_scheduler_interval_decides_when_the_scheduler_steps(
    loaders, own_interval, scheduler_interval, steps_taken
):
    from nol_fast.training.optimizers import create_scheduler

    train, _ = loaders  # 4 optimizer steps per epoch, 3 epochs
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if own_interval == "epoch":  # a torch scheduler: steps per epoch unless told otherwise
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    else:  # from create_scheduler: declares interval 'step'
        scheduler = create_scheduler(optimizer, "exponential", gamma=0.5)
    config = TrainingConfig(mixed_precision=False, scheduler_interval=scheduler_interval)
    trainer = Trainer(model, train, None, optimizer, scheduler, config=config)
    trainer.train(3)
    assert trainer.current_lr() == pytest.approx(0.1 * 0.5**steps_taken, rel=1e-12)


def test_plateau_scheduler_without_val_loader_watches_the_training_loss():
    model, loader, _, _ = linear_setup()  # 4 batches per epoch

    class ScriptedTrainLoss:
        """A loss of 3, 2, 1, 1, 1, 1 per epoch, independent of the model's output."""

        def __init__(self):
            self.calls = 0

        def __call__(self, pred, target):
            epoch = self.calls // len(loader)
            self.calls += 1
            return 0.0 * pred.sum() + max(3.0 - epoch, 1.0)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5)
    trainer = Trainer(model, loader, None, optimizer, plateau, loss_fn=ScriptedTrainLoss(),
                      config=FP32)
    history = trainer.train(6)
    assert history["train_loss"] == [3.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    # torch's rule: reduce once the bad epochs (4th and 5th) exceed the patience of 1
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.05])


def test_trainer_without_optimizer_builds_the_configured_one():
    model, loader, _, _ = linear_setup()
    reference = nn.Conv1d(3, 2, 1)
    reference.load_state_dict(model.state_dict())
    config = TrainingConfig(mixed_precision=False, gradient_clipping=0.0, optimizer="adamw",
                            learning_rate=3e-2, weight_decay=0.25)
    trainer = Trainer(model, loader, None, optimizer=None, config=config)
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-2, 0.25)
    trainer.train(2)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=3e-2, weight_decay=0.25)
    for _ in range(2):
        for x, y in loader:
            ref_opt.zero_grad()
            nn.functional.mse_loss(reference(x), y).backward()
            ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
