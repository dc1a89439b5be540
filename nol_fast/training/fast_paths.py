"""Which fast paths a Trainer takes, and why: precision, torch.compile, CUDA graphs, the step.

The choices are made once, when the Trainer is built, from its config, device, model and
optimizer; the Trainer logs them in one line when training starts (:meth:`FastPaths.describe`),
so that a run says what it is actually doing:

- precision: :func:`~nol_fast.training.precision.choose_autocast`;
- ``torch.compile``: the config's ``compile`` mode. A model that the caller compiled itself
  (``torch.compile(model)``) is unwrapped, so that checkpoints hold its plain parameter names,
  and the Trainer compiles its own step in ``'default'`` mode instead, unless the config
  names a mode;
- CUDA graphs: asked for by ``cuda_graphs``, and possible on CUDA devices with a capturable
  optimizer (:func:`~nol_fast.training.graphs.make_capturable`). Under the step's own graphs
  ``'reduce-overhead'`` compiles as ``'default'``, since its graphs would nest in them;
- the optimizer step: skipped through ``found_inf`` by fused optimizers, masked otherwise
  (:mod:`nol_fast.training.step`);
- CPU memory: on CPU devices glibc malloc keeps freed memory for the next step
  (:mod:`nol_fast.training.cpu_memory`), unless ``tune_cpu_malloc`` is False.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from nol_fast.training.config import TrainingConfig
from nol_fast.training.cpu_memory import keep_freed_memory
from nol_fast.training.graphs import make_capturable
from nol_fast.training.precision import choose_autocast
from nol_fast.training.step import takes_found_inf

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class FastPaths:
    """The Trainer's choices, each with its reason.

    Attributes
    ----------
    amp_dtype
        Autocast dtype, or ``None`` for float32.
    compile_mode
        ``torch.compile`` mode of the step, or ``None`` to run it eagerly.
    cuda_graphs
        Whether the step is captured in CUDA graphs.
    reasons
        Why, for ``'precision'``, ``'compile'`` and ``'cuda_graphs'``.
    found_inf
        Whether the optimizer skips a non-finite step itself (else the step is masked).
    cpu_malloc
        How CPU memory is allocated, for the log; ``None`` on other devices.
    """

    amp_dtype: torch.dtype | None
    compile_mode: str | None
    cuda_graphs: bool
    reasons: dict[str, str]
    found_inf: bool
    cpu_malloc: str | None = None

    def describe(self, optimizer: torch.optim.Optimizer, log_frequency: int) -> str:
        """One line: every choice and its reason."""
        precision = ("float32" if self.amp_dtype is None
                     else f"{str(self.amp_dtype).removeprefix('torch.')} autocast")
        step = "skips non-finite steps itself (found_inf)" if self.found_inf else (
            "is masked on the device for non-finite steps (copies params and state)")
        reads = (f"every {log_frequency} batches and " if log_frequency else "") + "per epoch"
        return (f"fast paths: precision {precision} ({self.reasons['precision']}); "
                f"compile {self.compile_mode or 'off'} ({self.reasons['compile']}); "
                f"CUDA graphs {'on' if self.cuda_graphs else 'off'} "
                f"({self.reasons['cuda_graphs']}); {type(optimizer).__name__} step {step}; "
                f"host reads {reads}"
                + (f"; {self.cpu_malloc}" if self.cpu_malloc else ""))


def unwrap_compiled(model: nn.Module) -> tuple[nn.Module, bool]:
    """``(module, whether it was compiled)``: the module inside ``torch.compile(module)``.

    Examples
    --------
    >>> unwrap_compiled(nn.Linear(2, 2))[1]
    False
    """
    # Nothing was compiled unless dynamo was imported (importing it takes seconds).
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    if eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
        return model._orig_mod, True
    return model, False


def compiled(fn: F, mode: str | None) -> F:
    """``torch.compile(fn, mode=mode)``, or ``fn`` itself when ``mode`` is None.

    The Trainer compiles its training loss and its evaluation forward pass as two functions,
    so each keeps its own graphs (train and eval mode, with and without gradients) and
    switching between them never recompiles.
    """
    if mode is None:
        return fn
    return torch.compile(fn, mode=mode)


def choose_fast_paths(
    config: TrainingConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    model_was_compiled: bool = False,
) -> FastPaths:
    """Decide the fast paths (see the module doc); makes the optimizer capturable for graphs
    and, on the CPU, tunes malloc."""
    amp_dtype, precision_reason = choose_autocast(device, config.mixed_precision,
                                                  config.amp_dtype)
    graphs, graphs_reason = _graphs(config, device, optimizer)
    mode: str | None = config.compile
    compile_reason = "config"
    if mode == "off":
        mode = None
        if model_was_compiled:
            mode, compile_reason = "default", "the model was compiled by the caller"
    elif mode == "reduce-overhead" and graphs:
        mode, compile_reason = "default", "reduce-overhead's graphs would nest in the step's"
    reasons = {"precision": precision_reason, "compile": compile_reason,
               "cuda_graphs": graphs_reason}
    cpu_malloc = None
    if device.type == "cpu":
        cpu_malloc = (keep_freed_memory() if config.tune_cpu_malloc
                      else "system malloc (config)")
    return FastPaths(amp_dtype, mode, graphs, reasons, takes_found_inf(optimizer), cpu_malloc)


def _graphs(config: TrainingConfig, device: torch.device,
            optimizer: torch.optim.Optimizer) -> tuple[bool, str]:
    if not config.cuda_graphs:
        return False, "config"
    if device.type != "cuda":
        return False, f"asked for, but the device is {device.type}, not CUDA"
    if not make_capturable(optimizer, device):
        return False, (f"asked for, but {type(optimizer).__name__} is not capturable: use "
                       f"FusedAdam/FusedAdamW, or a torch optimizer with capturable=True and "
                       f"tensor learning rates")
    return True, "config"
