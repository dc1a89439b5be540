"""TrainingConfig: the training section of a config file and the Trainer's settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from nol_fast.checks import as_int, as_real

POSITIVE_INTS = ("epochs", "batch_size", "gradient_accumulation_steps", "val_frequency",
                 "sync_frequency", "save_frequency")


@dataclass
class TrainingConfig:
    """Training hyper-parameters.

    The first thirteen fields and their defaults are those of the Training API; the rest are
    extensions with defaults that keep the API's behaviour. Integer fields take any integer type
    (``numpy.int64`` too) and real fields any real type; both are stored as plain Python numbers.
    Invalid values raise a ``ValueError`` naming the field.

    Attributes
    ----------
    epochs, batch_size, learning_rate, weight_decay, optimizer, scheduler, warmup_steps
        Used by the CLI and config-driven scripts to build the loop's parts.
    mixed_precision
        Autocast in bf16 on CUDA (fp16 with a GradScaler where bf16 is unsupported), and in bf16
        on CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX); other CPUs train in fp32 and
        say so once in the log. Weights, optimizer state and losses stay fp32.
    gradient_clipping
        Maximum global gradient norm; ``0`` or ``None`` disables clipping.
    gradient_accumulation_steps
        Micro-batches summed into one optimizer step.
    early_stopping_patience, save_frequency
        Used by the CLI for its EarlyStopping and ModelCheckpoint callbacks.
    val_frequency
        Validate every ``val_frequency`` epochs (and always after the last one).
    sync_frequency
        Batches between host reads of the running loss (progress bar, non-finite check). The
        loop never reads the loss back per step otherwise.
    skip_nonfinite
        Skip optimizer steps whose loss is NaN/inf instead of stopping. Costs one host
        synchronisation per step.
    scheduler_interval
        When the Trainer steps a scheduler it was given: ``'auto'`` (schedulers from
        ``create_scheduler`` declare their own interval; other schedulers step per epoch),
        ``'step'`` or ``'epoch'``.
    monitor
        Metric used to step plateau schedulers.
    loss
        Loss of config-driven runs (the CLI): ``'mse'``, ``'rel_l2'`` (the mean per-sample
        relative L2 error, the FNO paper's training loss), or a mapping such as
        ``{'name': 'physics_informed', 'data_loss': 'rel_l2', 'pde': 'darcy', ...}``
        (:func:`nol_fast.training.losses.loss_from_config`).
    seed
        Seed for python, numpy and torch set by config-driven runs (the CLI) before the model
        is built, so a run is reproducible; ``None`` leaves the generators alone.
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_steps: int = 1000
    mixed_precision: bool = True
    gradient_clipping: float = 1.0
    gradient_accumulation_steps: int = 1
    early_stopping_patience: int = 20
    save_frequency: int = 10
    val_frequency: int = 1
    # Extensions
    sync_frequency: int = 10
    skip_nonfinite: bool = False
    scheduler_interval: str = "auto"
    monitor: str = "val_loss"
    seed: int | None = 0
    loss: str | dict[str, Any] = "mse"

    def __post_init__(self) -> None:
        # Any integer or real type is accepted and stored as a plain int or float (see
        # nol_fast.checks), so the config saves to YAML and to weights-only checkpoints.
        for name in POSITIVE_INTS:
            setattr(self, name, as_int(getattr(self, name), name, minimum=1))
        for name in ("warmup_steps", "early_stopping_patience"):
            setattr(self, name, as_int(getattr(self, name), name, minimum=0))
        if self.seed is not None:
            self.seed = as_int(self.seed, "seed", minimum=0)
        for name in ("learning_rate", "weight_decay"):
            setattr(self, name, as_real(getattr(self, name), name, minimum=0))
        if self.gradient_clipping is not None:
            self.gradient_clipping = as_real(self.gradient_clipping, "gradient_clipping", 0)
        if isinstance(self.loss, Mapping):
            from nol_fast.training.losses import loss_from_config

            loss_from_config(self.loss)  # builds it once: a bad key fails on load
        elif self.loss not in ("mse", "rel_l2"):
            raise ValueError(f"loss must be one of: mse, rel_l2, or a mapping with a 'name'; "
                             f"got {self.loss!r}")
        if self.scheduler_interval not in ("auto", "step", "epoch"):
            raise ValueError(
                f"scheduler_interval must be one of: auto, step, epoch; "
                f"got {self.scheduler_interval!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Build from a mapping; an unknown key is an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown training field(s) {', '.join(map(repr, unknown))}; "
                f"choose from: {', '.join(sorted(known))}"
            )
        return cls(**{key: _coerce(cls, key, value) for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(cls: type[TrainingConfig], name: str, value: Any) -> Any:
    """Turn YAML's strings for numbers (PyYAML reads ``1e-4`` as a string) into floats."""
    default = next(f.default for f in fields(cls) if f.name == name)
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    return value
