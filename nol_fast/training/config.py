"""TrainingConfig: the training section of a config file and the Trainer's settings."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from nol_fast.checks import as_int, as_real

POSITIVE_INTS = ("epochs", "batch_size", "gradient_accumulation_steps", "val_frequency",
                 "save_frequency")
#: torch.compile modes of the ``compile`` field; ``'off'`` runs the step eagerly.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
#: autocast dtypes of the ``amp_dtype`` field; ``None`` lets the device decide.
AMP_DTYPES = ("bfloat16", "float16")


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
    log_frequency
        Batches between host reads of the epoch's running sums (the progress bar's loss, the
        non-finite check); ``0`` reads them only at the end of the epoch. The loop reads
        nothing back from the device otherwise.
    skip_nonfinite
        A step whose loss or gradient is NaN/inf never changes the weights (the optimizer step
        is skipped on the device). By default the next host read raises
        :class:`~nol_fast.training.NonFiniteLossError`; with ``skip_nonfinite=True`` training
        goes on and the epoch logs ``skipped_steps``.
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
    compile
        Run forward, loss and backward through ``torch.compile``: ``'off'`` (default),
        ``'default'``, ``'reduce-overhead'`` or ``'max-autotune'`` (its modes); ``True`` means
        ``'default'`` and ``False`` ``'off'``.
    cuda_graphs
        On CUDA, capture the whole training step (forward, backward, optimizer step) in CUDA
        graphs and replay them. Other devices, and steps that cannot be captured, run without
        graphs and say why in the log.
    amp_dtype
        Autocast dtype under ``mixed_precision``: ``'bfloat16'`` or ``'float16'`` (with a
        GradScaler); ``None`` (default) picks bfloat16 where the device computes in it
        natively, else float16 on CUDA and float32 on the CPU.
    tune_cpu_malloc
        On CPU devices, let glibc malloc keep freed memory for the next step instead of
        returning it to the kernel (:mod:`nol_fast.training.cpu_memory`): a step then takes no
        page faults for its activations (about 15% of an FNO step on the CPU). Process-wide,
        for the rest of the process.
    sync_frequency
        Deprecated name of ``log_frequency``.
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
    log_frequency: int = 10
    skip_nonfinite: bool = False
    scheduler_interval: str = "auto"
    monitor: str = "val_loss"
    seed: int | None = 0
    loss: str | dict[str, Any] = "mse"
    compile: str = "off"
    cuda_graphs: bool = False
    amp_dtype: str | None = None
    tune_cpu_malloc: bool = True
    sync_frequency: int | None = None  # deprecated: log_frequency

    def __post_init__(self) -> None:
        # Any integer or real type is accepted and stored as a plain int or float (see
        # nol_fast.checks), so the config saves to YAML and to weights-only checkpoints.
        for name in POSITIVE_INTS:
            setattr(self, name, as_int(getattr(self, name), name, minimum=1))
        if self.sync_frequency is not None:
            warnings.warn("TrainingConfig.sync_frequency is deprecated; use log_frequency",
                          DeprecationWarning, stacklevel=3)
            self.log_frequency, self.sync_frequency = self.sync_frequency, None
        for name in ("warmup_steps", "early_stopping_patience", "log_frequency"):
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
        self.compile = _compile_mode(self.compile)
        if not isinstance(self.cuda_graphs, bool):
            raise ValueError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r}")
        if not isinstance(self.tune_cpu_malloc, bool):
            raise ValueError(f"tune_cpu_malloc must be True or False, got "
                             f"{self.tune_cpu_malloc!r}")
        self.amp_dtype = _amp_dtype(self.amp_dtype)
        if self.amp_dtype is not None and not self.mixed_precision:
            raise ValueError(
                f"amp_dtype={self.amp_dtype!r} needs mixed_precision=True (or leave amp_dtype "
                f"None to train in float32)"
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
        """The fields as plain data (the deprecated ``sync_frequency`` left out)."""
        values = asdict(self)
        values.pop("sync_frequency")
        return values


def _compile_mode(value: Any) -> str:
    """``value`` as one of :data:`COMPILE_MODES` (``True``: ``'default'``, ``False``: ``'off'``)."""
    if isinstance(value, bool):
        return "default" if value else "off"
    if value not in COMPILE_MODES:
        raise ValueError(f"compile must be one of: {', '.join(COMPILE_MODES)}; got {value!r}")
    return value


def _amp_dtype(value: Any) -> str | None:
    """``value`` (a name of :data:`AMP_DTYPES` or the torch dtype) as its name, or ``None``."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if value is not None and value not in AMP_DTYPES:
        raise ValueError(
            f"amp_dtype must be None or one of: {', '.join(AMP_DTYPES)}; got {value!r}"
        )
    return value


def _coerce(cls: type[TrainingConfig], name: str, value: Any) -> Any:
    """Turn YAML's strings for numbers (PyYAML reads ``1e-4`` as a string) into floats."""
    default = next(f.default for f in fields(cls) if f.name == name)
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    return value
