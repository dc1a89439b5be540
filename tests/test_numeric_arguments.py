"""Integer and real arguments of the training API in any numeric type (NumPy scalars too).

Each is stored as a plain Python number: the oracle is that the config dumps to YAML and that a
checkpoint holding it loads with ``torch.load(weights_only=True)``, which both refuse NumPy
scalars.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import yaml
from conftest import TinyNet

from nol_fast.checks import as_int, as_real
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.callbacks import EarlyStopping, ModelCheckpoint, TensorBoardLogger
from nol_fast.training.optimizers import create_optimizer, create_scheduler


def weights_only_round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_training_config_takes_numpy_numbers_and_stores_python_ones():
    config = TrainingConfig(
        epochs=np.int64(10), batch_size=np.int32(8), warmup_steps=np.uint8(5),
        learning_rate=np.float32(0.5), weight_decay=np.float64(1e-4),
        gradient_clipping=np.float16(2.0), val_frequency=np.int16(2), seed=np.int64(3),
        mixed_precision=False,
    )
    values = config.to_dict()
    for name, expected in [("epochs", 10), ("batch_size", 8), ("warmup_steps", 5),
                           ("val_frequency", 2), ("seed", 3)]:
        assert type(values[name]) is int and values[name] == expected, name
    for name, expected in [("learning_rate", 0.5), ("weight_decay", 1e-4),
                           ("gradient_clipping", 2.0)]:
        assert type(values[name]) is float and values[name] == pytest.approx(expected), name
    assert yaml.safe_load(yaml.safe_dump(values)) == values
    assert weights_only_round_trip(values) == values
    assert TrainingConfig(learning_rate=1).learning_rate == 1.0  # an int is a real too


@pytest.mark.parametrize("field, value, message", [
    ("epochs", True, "epochs must be a positive integer, got True"),
    ("epochs", 2.0, "epochs must be a positive integer, got 2.0"),
    ("epochs", np.int64(0), "epochs must be a positive integer, got np.int64(0)"),
    ("warmup_steps", -1, "warmup_steps must be an integer >= 0, got -1"),
    ("learning_rate", False, "learning_rate must be a real number >= 0, got False"),
    ("gradient_clipping", -0.5, "gradient_clipping must be a real number >= 0, got -0.5"),
])
def test_training_config_rejects_non_numbers_and_bools(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainingConfig(**{field: value})


def test_train_takes_numpy_epochs_and_its_checkpoint_loads_weights_only(loaders, tmp_path):
    train, val = loaders
    model = TinyNet()
    optimizer = create_optimizer(model.parameters(), "adamw", np.float32(1e-3), np.float64(0.0))
    scheduler = create_scheduler(optimizer, "step", np.int64(2), step_size=np.int32(3),
                                 gamma=np.float32(0.5))
    config = TrainingConfig(epochs=np.int64(2), mixed_precision=False)
    trainer = Trainer(model, train, val, optimizer, scheduler, config=config)
    callbacks = [EarlyStopping(patience=np.int64(3), min_delta=np.float32(0.0)),
                 ModelCheckpoint(str(tmp_path / "m.pt"), period=np.int64(1)),
                 TensorBoardLogger(str(tmp_path / "tb"), log_frequency=np.int64(0))]
    history = trainer.train(epochs=np.int64(config.epochs), callbacks=callbacks)
    assert len(history["train_loss"]) == 2
    assert type(optimizer.param_groups[0]["lr"]) is float
    trainer.save_checkpoint(str(tmp_path / "ckpt.pt"))
    for name in ("ckpt.pt", "m.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state["epoch"] == 2 and state["scheduler"]["options"]["step_size"] == 3


@pytest.mark.parametrize("make, message", [
    (lambda: EarlyStopping(patience=1.5), "patience must be an integer >= 0, got 1.5"),
    (lambda: EarlyStopping(min_delta=-1), "min_delta must be a real number >= 0, got -1"),
    (lambda: ModelCheckpoint("m.pt", period=True), "period must be a positive integer, got True"),
    (lambda: TensorBoardLogger(log_frequency=-1), "log_frequency must be an integer >= 0"),
    (lambda: create_optimizer([torch.zeros(1, requires_grad=True)], "sgd", "fast"),
     "learning_rate must be a real number >= 0, got 'fast'"),
    (lambda: create_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                              "step", step_size=np.float64(2.0)),
     "step: step_size must be a positive integer"),
])
def test_callbacks_and_factories_name_the_bad_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("value", [np.int8(3), np.uint64(3), 3])
def test_as_int_and_as_real_accept_every_integral_type(value):
    assert as_int(value, "n") == 3 and type(as_int(value, "n")) is int
    assert as_real(value, "x") == 3.0 and type(as_real(value, "x")) is float
