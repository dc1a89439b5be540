"""Scenarios of the distributed tests; torchrun runs this file on every rank.

``python -m torch.distributed.run --standalone --nproc_per_node N tests/distributed_worker.py
SCENARIO OUT_DIR '{"option": ...}'``. Every rank writes what the test compares to
``OUT_DIR/rank<r>.pt``; the scenario ``several`` runs a list of them in one launch, which saves
the start-up of the processes. The builders (data, model, optimizer, loaders) are shared with the
single-process oracles of tests/test_distributed.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

import nol_fast.serialization as serialization
from nol_fast.models import FNO
from nol_fast.training import DistributedTrainer, TrainingConfig
from nol_fast.training.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    TensorBoardLogger,
    TrainingCallback,
)
from nol_fast.training.optimizers import create_optimizer, create_scheduler

N_TRAIN, N_VAL, BATCH, SEED = 32, 7, 4, 1
TIMEOUT = 60  # seconds: a collective that waits longer for a lost rank fails


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and a smooth nonlinear target on an 8 x 8 grid (train samples first)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VAL, 1, 8, 8, generator=g)
    y = torch.tanh(x + x.roll(1, dims=-1)) * 0.5
    return x, y


def make_model() -> FNO:
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), hidden_channels=8, n_layers=2)


def make_optimizer(model: torch.nn.Module) -> tuple[Any, Any]:
    optimizer = create_optimizer(model.parameters(), "adamw", 3e-3, 1e-4)
    return optimizer, create_scheduler(optimizer, "cosine", warmup_steps=2)


def make_config(**overrides: Any) -> TrainingConfig:
    return TrainingConfig(mixed_precision=False, gradient_clipping=1.0, **overrides)


def make_loaders(batch_size: int = BATCH) -> tuple[DataLoader, DataLoader]:
    """The training loader shuffles with a seeded generator; validation has 7 samples, so
    two ranks get blocks of 4 and 3 samples (2 and 1 batches)."""
    x, y = make_data()
    train = DataLoader(TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), batch_size=batch_size,
                       shuffle=True, generator=torch.Generator().manual_seed(SEED))
    val = DataLoader(TensorDataset(x[N_TRAIN:], y[N_TRAIN:]), batch_size=3)
    return train, val


def make_trainer(options: dict[str, Any], **kwargs: Any) -> DistributedTrainer:
    from nol_fast.distributed.strategies import create_parallelism_strategy

    model = make_model()
    optimizer, scheduler = make_optimizer(model)
    train, val = make_loaders(options.get("batch_size", BATCH))
    world_size = int(os.environ["WORLD_SIZE"])
    strategy = create_parallelism_strategy(options.get("parallelism", {}), world_size)
    config = make_config(**options.get("config", {}))
    return DistributedTrainer(model, train, val, optimizer, scheduler, config=config,
                              strategy=strategy, timeout=TIMEOUT, **kwargs)


class SignalAt(TrainingCallback):
    """Sends ``signum`` to this process after batch ``batch`` of ``epoch`` on one rank."""

    def __init__(self, rank: int, epoch: int, batch: int, signum: int) -> None:
        self.rank, self.epoch, self.batch, self.signum = rank, epoch, batch, signum
        self.current_epoch = -1

    def on_epoch_begin(self, trainer, epoch) -> None:
        self.current_epoch = epoch

    def on_batch_end(self, trainer, batch_idx, batch_metrics) -> None:
        if (trainer.rank, self.current_epoch, batch_idx) == (self.rank, self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)


class StopOnOneRank(TrainingCallback):
    """Stops training on ``rank`` only, after ``epoch``."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, trainer, epoch, train_losses, val_losses) -> None:
        if trainer.rank == self.rank and epoch == self.epoch:
            trainer.stop_training = True


@contextlib.contextmanager
def counted_writes() -> Iterator[list[str]]:
    """Record every file this process writes through nol_fast's atomic writes in the block."""
    written: list[str] = []
    write = serialization.atomic_write

    def counted(path, fill):
        written.append(str(path))
        write(path, fill)

    serialization.atomic_write = counted
    try:
        yield written
    finally:
        serialization.atomic_write = write


def _thread_count() -> int:
    """This process's threads, the gloo groups' worker threads among them (Linux)."""
    return len(os.listdir("/proc/self/task"))


def report(out: Path, trainer: DistributedTrainer, history: dict, **extra: Any) -> None:
    """Write this rank's results; rank 0 adds the full weights and a whole-loader evaluation."""
    weights = trainer.model_state_dict()
    evaluation = trainer.evaluate(make_loaders()[1], return_predictions=True)
    torch.save({"history": history, "weights": weights, "evaluation": evaluation,
                "epoch": trainer.epoch, "amp_dtype": str(trainer.amp_dtype), **extra},
               out / f"rank{trainer.rank}.pt")


def fit(out: Path, options: dict[str, Any]) -> None:
    """Train for ``epochs``, with the callbacks that write: the best weights, TensorBoard
    logs, a checkpoint of every epoch and the last one."""
    with counted_writes() as written:
        trainer = make_trainer(options)
        callbacks = [
            ModelCheckpoint(str(out / "best_weights.pt"), save_best_only=True,
                            save_weights_only=True),
            TensorBoardLogger(str(out / "tb"), log_frequency=2),
            ModelCheckpoint(str(out / "epoch{epoch}")),
            ModelCheckpoint(str(out / "last.pt")),
        ]
        history = trainer.train(options["epochs"], callbacks=callbacks)
    report(out, trainer, history, written=written)
    trainer.close()


def preempt(out: Path, options: dict[str, Any]) -> None:
    """Like :func:`fit`, but ``signal_rank`` sends itself ``signal`` (a name) mid-epoch; ends
    in TrainingPreempted (exit status 128 + the signal's number)."""
    trainer = make_trainer(options, preemption_checkpoint=out / "preempted")
    epoch, batch = options["signal_at"]
    signum = signal.Signals[options["signal"]]
    callbacks = [SignalAt(options["signal_rank"], epoch, batch, signum),
                 ModelCheckpoint(str(out / "last.pt"))]
    trainer.train(options["epochs"], callbacks=callbacks)


def resume(out: Path, options: dict[str, Any]) -> None:
    """Resume from ``checkpoint`` and train to ``epochs``."""
    trainer = make_trainer(options)
    trainer.load_checkpoint(options["checkpoint"])
    history = trainer.train(options["epochs"], callbacks=[ModelCheckpoint(str(out / "last.pt"))])
    report(out, trainer, history)
    trainer.close()


def crash(out: Path, options: dict[str, Any]) -> None:
    """In the first attempt rank 1 dies (SIGKILL) mid-epoch; torchrun restarts all ranks,
    which resume from the last epoch's checkpoint."""
    trainer = make_trainer(options)
    last = out / "last.pt"
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    callbacks = [ModelCheckpoint(str(last))]
    if attempt == 0:
        epoch, batch = options["kill_at"]
        callbacks.append(SignalAt(1, epoch, batch, signal.SIGKILL))
    elif last.exists():
        trainer.load_checkpoint(str(last))
    history = trainer.train(options["epochs"], callbacks=callbacks)
    report(out, trainer, history, attempt=attempt)
    trainer.close()


def early_stop(out: Path, options: dict[str, Any]) -> None:
    """EarlyStopping on the shared validation loss, then a callback that stops one rank."""
    trainer = make_trainer(options)
    stopping = EarlyStopping(patience=1, min_delta=10.0)  # only the first epoch improves
    first = trainer.train(5, callbacks=[stopping])
    control, threads = weakref.ref(trainer._control), _thread_count()
    trainer.close()
    closed = {"control_alive": control() is not None,
              "threads_ended": threads - _thread_count()}
    try:
        trainer.train(1)
    except RuntimeError as error:
        closed["train_after_close"] = str(error)
    trainer = make_trainer(options)
    second = trainer.train(5, callbacks=[StopOnOneRank(rank=1, epoch=1)])
    torch.save({"first": first, "stopped_epoch": stopping.stopped_epoch, "second": second,
                "closed": closed},
               out / f"rank{trainer.rank}.pt")
    trainer.close()


def amp(out: Path, options: dict[str, Any]) -> None:
    """Mixed precision across ranks: the autocast dtype the ranks agree on, and a GradScaler
    step skipped on every rank when one rank's gradient shard holds an inf."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from nol_fast.distributed.amp import RankConsistentGradScaler, agree_on_autocast_dtype

    trainer = make_trainer(options)  # joins the process group
    rank = trainer.rank
    agreed = {
        "bf16+fp16": agree_on_autocast_dtype([torch.bfloat16, torch.float16][rank],
                                             trainer._control),
        "bf16+fp32": agree_on_autocast_dtype([torch.bfloat16, None][rank], trainer._control),
        "same": agree_on_autocast_dtype(torch.bfloat16, trainer._control),
    }
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    fully_shard(layer)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = RankConsistentGradScaler("cpu", init_scale=1024.0)
    before = [p.full_tensor().clone() for p in layer.parameters()]
    scaler.scale(layer(torch.ones(2, 4)).sum()).backward()
    if rank == 1:
        layer.weight.grad.to_local().view(-1)[0] = float("inf")
    scaler.step(optimizer)
    scaler.update()
    after = [p.full_tensor() for p in layer.parameters()]
    skipped = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    torch.save({"agreed": {k: str(v) for k, v in agreed.items()}, "skipped": skipped,
                "scale": scaler.get_scale()}, out / f"rank{rank}.pt")
    dist.barrier()
    trainer.close()


def several(out: Path, options: dict[str, Any]) -> None:
    """Run scenarios one after another in this launch, each with its own process group:
    ``runs`` lists ``[scenario, subdirectory of out, options]``."""
    for name, subdirectory, run_options in options["runs"]:
        (out / subdirectory).mkdir(parents=True, exist_ok=True)
        SCENARIOS[name](out / subdirectory, run_options)


SCENARIOS = {f.__name__: f for f in (fit, preempt, resume, crash, early_stop, amp, several)}


if __name__ == "__main__":
    name, directory = sys.argv[1], Path(sys.argv[2])
    SCENARIOS[name](directory, json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
