"""The Training API's public surface: module paths, names, signatures and defaults."""

from __future__ import annotations

import inspect

import pytest
import torch

from nol_fast.training import Trainer
from nol_fast.training.callbacks import (
    EarlyStopping,
    LearningRateScheduler,
    MemoryProfiler,
    MetricsTracker,
    ModelCheckpoint,
    TensorBoardLogger,
    TrainingCallback,
)
from nol_fast.training.optimizers import create_optimizer, create_scheduler


def params(fn):
    return list(inspect.signature(fn).parameters.values())


def names(fn):
    return [p.name for p in params(fn) if p.name != "self"]


def test_trainer_signatures():
    assert names(Trainer.__init__)[:8] == [
        "model", "train_loader", "val_loader", "optimizer", "scheduler", "loss_fn", "device",
        "config",
    ]
    assert names(Trainer.train) == ["epochs", "callbacks"]
    assert inspect.signature(Trainer.train).parameters["callbacks"].default is None
    assert inspect.signature(Trainer.evaluate).parameters["return_predictions"].default is False
    assert inspect.signature(Trainer.save_checkpoint).parameters["include_optimizer"].default
    assert inspect.signature(Trainer.load_checkpoint).parameters["load_optimizer"].default


def test_distributed_parts_import_and_explain_themselves(monkeypatch):
    from nol_fast.distributed.strategies import ParallelismStrategy, create_parallelism_strategy
    from nol_fast.training import DistributedTrainer

    assert issubclass(DistributedTrainer, Trainer)
    for name in ("world_size", "rank", "local_rank", "backend", "init_method", "strategy"):
        assert name in names(DistributedTrainer.__init__)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT"):
        DistributedTrainer(model=model, train_loader=[], world_size=2, rank=0, backend="gloo")
    with pytest.raises(ValueError, match="world_size and rank not given"):
        DistributedTrainer(model=model, train_loader=[], backend="gloo")
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        DistributedTrainer(model=model, train_loader=[], world_size=2, rank=2, backend="gloo")
    # given values that disagree with torchrun's environment are each named
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError) as error:
        DistributedTrainer(model=model, train_loader=[], world_size=2, rank=1, local_rank=0,
                           backend="gloo")
    message = str(error.value)
    assert "world_size=2 (argument) but WORLD_SIZE=4" in message
    assert "local_rank=0 (argument) but LOCAL_RANK=1" in message
    assert "rank=1" not in message.replace("local_rank", "")

    strategy = create_parallelism_strategy(config={"strategy": "ddp"}, world_size=2)
    assert isinstance(strategy, ParallelismStrategy) and strategy.name == "ddp"
    assert create_parallelism_strategy(None, world_size=1).name == "none"
    with pytest.raises(ValueError, match="unknown option.*'bucket_mb'.*bucket_cap_mb"):
        create_parallelism_strategy({"strategy": "ddp", "bucket_mb": 1}, world_size=2)
    with pytest.raises(ValueError, match="strategy 'none'.*world_size 1"):
        create_parallelism_strategy({"strategy": "none"}, world_size=2)
    with pytest.raises(ValueError, match="shard_size' must divide world_size 4"):
        create_parallelism_strategy({"strategy": "hsdp", "shard_size": 3}, world_size=4)


def test_factory_defaults():
    sig = inspect.signature(create_optimizer).parameters
    assert (sig["optimizer_name"].default, sig["learning_rate"].default,
            sig["weight_decay"].default) == ("adamw", 1e-4, 1e-5)
    sig = inspect.signature(create_scheduler).parameters
    assert (sig["scheduler_name"].default, sig["warmup_steps"].default) == ("cosine", 0)


@pytest.mark.parametrize("cls, expected", [
    (EarlyStopping, ["patience", "min_delta", "monitor", "mode", "restore_best_weights"]),
    (ModelCheckpoint, ["filepath", "monitor", "mode", "save_best_only", "save_weights_only",
                       "period"]),
    (LearningRateScheduler, ["scheduler", "step_on"]),
    (TensorBoardLogger, ["log_dir", "log_frequency"]),
])
def test_callback_constructor_parameters(cls, expected):
    assert names(cls.__init__)[: len(expected)] == expected


def test_callback_base_hooks_and_methods():
    for hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
                 "on_batch_begin", "on_batch_end"):
        assert callable(getattr(TrainingCallback, hook))
    assert callable(MetricsTracker.get_summary) and callable(MetricsTracker.reset)
    assert callable(MetricsTracker.get_metric_history)
    assert callable(MemoryProfiler.get_memory_summary)


def test_star_import_exposes_the_callbacks():
    namespace: dict = {}
    exec("from nol_fast.training.callbacks import *", namespace)
    for name in ("EarlyStopping", "ModelCheckpoint", "MetricsTracker", "TensorBoardLogger",
                 "MemoryProfiler", "LearningRateScheduler", "TrainingCallback"):
        assert name in namespace


def test_losses_and_models_and_data_paths():
    from nol_fast.config import Config
    from nol_fast.data import create_data_loader
    from nol_fast.models import NeuralOperatorBase, create_model
    from nol_fast.training.losses import ConservationLoss, PhysicsInformedLoss

    assert names(PhysicsInformedLoss.__init__)[:4] == [
        "data_weight", "pde_weight", "boundary_weight", "conservation_weight"]
    assert names(ConservationLoss.__init__)[:2] == ["conservation_types", "weights"]
    assert callable(PhysicsInformedLoss.set_pde_residual)
    assert callable(PhysicsInformedLoss.set_boundary_conditions)
    assert names(create_data_loader)[:2] == ["data_config", "split"]
    assert names(create_model)[:2] == ["model_type", "config"]
    assert issubclass(create_model("fno", {"n_modes": [4, 4]}).__class__, NeuralOperatorBase)
    assert callable(Config.load)


def test_import_nol_fast_does_not_import_optional_packages():
    import subprocess
    import sys

    code = ("import sys, nol_fast, nol_fast.training, nol_fast.models, nol_fast.data; "
            "print(any(m in sys.modules for m in ('triton', 'tensorboard', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
