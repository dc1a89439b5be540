"""Host synchronisations of the Trainer, per training step and per epoch.

A read of a device value on the host (``.item()``, ``float(t)``, ``.cpu()``...) waits for every
queued kernel; once per step, it leaves the GPU idle between steps. This counts them while the
Trainer trains a small FNO:

- on CUDA, torch's sync debug mode (``torch.cuda.set_sync_debug_mode('warn')``) reports every
  operation that waits for the device;
- on the CPU, where nothing waits, every read of a tensor's value into Python is counted
  instead (:func:`counting_host_reads`): on a GPU each would be a synchronisation.

After a warm-up epoch, one epoch of ``n`` batches and one of ``2 n`` are counted; the
difference over ``n`` is the count per step, the rest the count per epoch. Run it with
``python -m nol_fast.bench.syncs --device cuda`` (``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, TensorDataset

from nol_fast.models import FNO
from nol_fast.training import Trainer, TrainingConfig
from nol_fast.training.optimizers import create_optimizer, create_scheduler

#: The ``torch.Tensor`` methods that read a value into Python.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
#: Trainer fast paths to count: TrainingConfig fields
VARIANTS = {"eager": {}, "compile": {"compile": "default"}, "graphs": {"cuda_graphs": True}}


@contextlib.contextmanager
def counting_host_reads() -> Iterator[collections.Counter]:
    """Count, by method name, the calls that read a tensor's value on the host."""
    counts: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counted(name: str):
        original = originals[name]

        def read(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return read

    for name in HOST_READS:
        setattr(torch.Tensor, name, counted(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def counting_cuda_syncs() -> Iterator[collections.Counter]:
    """Count the synchronising CUDA operations that torch's sync debug mode reports."""
    counts: collections.Counter[str] = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.set_sync_debug_mode("default")
            for warning in caught:
                if "synchroniz" in str(warning.message):
                    counts[str(warning.message).splitlines()[0][:80]] += 1


def make_trainer(device: torch.device, n_batches: int, **config) -> Trainer:
    """A Trainer of a small FNO on random data, with a cosine schedule and ``config``'s
    optimizer (``TrainingConfig`` fields; ``log_frequency`` defaults to 0)."""
    torch.manual_seed(0)
    size = (8, 16, 32) if device.type == "cuda" else (4, 8, 16)  # modes, width, grid
    model = FNO(n_modes=(size[0], size[0]), hidden_channels=size[1], n_layers=2).to(device)
    x = torch.randn(4 * n_batches, 1, size[2], size[2])
    y = torch.randn(4 * n_batches, 1, size[2], size[2])
    training = TrainingConfig(**{"log_frequency": 0, **config})
    optimizer = create_optimizer(model.parameters(), training.optimizer, 1e-3)
    return Trainer(model, DataLoader(TensorDataset(x, y), batch_size=4), None, optimizer,
                   create_scheduler(optimizer, "cosine", warmup_steps=2), device=device,
                   config=training)


def syncs_in_epoch(device: torch.device, n_batches: int, **config) -> int:
    """Syncs (CUDA) or host reads (CPU) in the second epoch of a run of ``n_batches``."""
    trainer = make_trainer(device, n_batches, **config)
    trainer.train(1)  # warm-up: optimizer state, kernel tables, compilation, capture
    counter = counting_cuda_syncs() if device.type == "cuda" else counting_host_reads()
    with counter as counts:
        trainer.train(2)
    return sum(counts.values())


def run(device: torch.device, variants: Sequence[str] = ("eager",), n: int = 4) -> str:
    """The table: per variant, syncs per step and per epoch."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    what = "synchronising CUDA operations" if device.type == "cuda" else "host reads"
    lines = [f"{what} of the Trainer on {device} (FNO, AdamW, cosine schedule, "
             f"log_frequency=0), epochs of {n} and {2 * n} batches",
             f"{'variant':<10}{'per step':>10}{'per epoch':>11}"]
    for variant in variants:
        few = syncs_in_epoch(device, n, **VARIANTS[variant])
        many = syncs_in_epoch(device, 2 * n, **VARIANTS[variant])
        per_step = (many - few) / n
        lines.append(f"{variant:<10}{per_step:>10.2f}{few - per_step * n:>11.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", default="eager",
                        help=f"comma-separated among {', '.join(VARIANTS)} (default: eager)")
    args = parser.parse_args(argv)
    print(run(torch.device(args.device), [v.strip() for v in args.variants.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
