"""``nol-fast benchmark spectral``: time the spectral convolution backends against anchors.

Every backend that runs on the device is timed on the same input, next to neuraloperator's
``SpectralConv`` (when installed) and our FFT reference, in interleaved rounds
(:mod:`nol_fast.bench.timing`) so that load on a shared machine hits all candidates alike; the
table reports medians. ``benchmarks/bench_spectral_conv.py`` times the same layers and inputs
with pytest-benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nol_fast.bench.timing import interleaved_medians
from nol_fast.models.spectral_conv import SpectralConv
from nol_fast.ops.spectral_conv.op import BACKENDS, backend_status

# name: (batch, channels, grid, n_modes), the shapes of the acceptance benchmark
SHAPES: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...]]] = {
    "1d": (32, 64, (1024,), (16,)),
    "2d": (8, 32, (64, 64), (16, 16)),
    "3d": (4, 16, (32, 32, 32), (8, 8, 8)),
}
NEURALOP = "neuraloperator"


@dataclass
class Timing:
    """Median milliseconds of one candidate on one shape."""

    shape: str
    name: str
    forward_ms: float
    train_ms: float


def candidates(shape: str, device: torch.device, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Layers to compare on ``shape``: each available backend, plus neuraloperator's.

    Examples
    --------
    >>> layers = candidates("1d", torch.device("cpu"))  # 'neuraloperator' too, if installed
    >>> list(layers)[:2]  # then 'triton' where it runs: CUDA, or CPU with TRITON_INTERPRET=1
    ['reference', 'cpu']
    """
    _, channels, _, n_modes = SHAPES[shape]
    torch.manual_seed(seed)
    layers: dict[str, torch.nn.Module] = {
        b: SpectralConv(channels, channels, n_modes, backend=b).to(device)
        for b in BACKENDS if backend_status(b, device.type) is None
    }
    try:
        from neuralop.layers.spectral_convolution import SpectralConv as NeuralopConv
    except ImportError:
        return layers
    layers[NEURALOP] = NeuralopConv(channels, channels, n_modes).to(device)
    return layers


def sample_input(shape: str, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A seeded input ``(batch, channels, *grid)`` for ``shape``."""
    batch, channels, grid, _ = SHAPES[shape]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *grid, generator=generator).to(device)


def forward_step(layer: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Inference: one forward pass without autograd."""
    def step() -> None:
        with torch.no_grad():
            layer(x)
    return step


def train_step(layer: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Training: forward and backward to the input and the parameters."""
    x = x.detach().requires_grad_(True)

    def step() -> None:
        layer(x).square().mean().backward()
    return step


def time_shape(shape: str, device: torch.device, repeat: int = 20, warmup: int = 3) -> list[Timing]:
    """Median forward and forward+backward times of every candidate on ``shape``."""
    x = sample_input(shape, device)
    layers = candidates(shape, device)
    steps: dict[tuple[str, str], Callable[[], None]] = {}
    for name, layer in layers.items():
        steps[name, "forward"] = forward_step(layer, x)
        steps[name, "train"] = train_step(layer, x)
    medians = interleaved_medians(steps, device, repeat, warmup)
    return [Timing(shape, name, medians[name, "forward"], medians[name, "train"])
            for name in layers]


def format_table(timings: Sequence[Timing]) -> str:
    """Table of times and speed-ups (anchor time / our time, > 1 means faster than it)."""
    header = (f"{'shape':<6}{'implementation':<16}{'fwd ms':>9}{'fwd+bwd ms':>12}"
              f"{'vs neuralop':>13}{'vs reference':>14}")
    lines = [header, "-" * len(header)]
    by_key = {(t.shape, t.name): t for t in timings}

    def ratio(t: Timing, anchor: str) -> str:
        other = by_key.get((t.shape, anchor))
        if other is None or t.name == anchor:
            return "-"
        return f"{other.forward_ms / t.forward_ms:.2f}x/{other.train_ms / t.train_ms:.2f}x"

    for t in timings:
        lines.append(f"{t.shape:<6}{t.name:<16}{t.forward_ms:>9.2f}{t.train_ms:>12.2f}"
                     f"{ratio(t, NEURALOP):>13}{ratio(t, 'reference'):>14}")
    lines.append("ratios: anchor time / time, forward/forward+backward; > 1 is faster")
    return "\n".join(lines)


def run(shapes: Sequence[str], device: torch.device, repeat: int = 20) -> str:
    """Time ``shapes`` on ``device`` over ``repeat`` interleaved rounds and return the table.

    Examples
    --------
    >>> print(run(["1d"], torch.device("cpu"), repeat=1))  # doctest: +SKIP
    """
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"unknown benchmark shape(s) {unknown}; choose from {list(SHAPES)}")
    timings = [t for s in shapes for t in time_shape(s, device, repeat)]
    batch_line = ", ".join(f"{s}: {SHAPES[s][0]}x{SHAPES[s][1]}x{'x'.join(map(str, SHAPES[s][2]))}"
                           f" modes {SHAPES[s][3]}" for s in shapes)
    return (f"spectral conv on {device} ({torch.get_num_threads()} threads), "
            f"median of {repeat}; {batch_line}\n{format_table(timings)}")
