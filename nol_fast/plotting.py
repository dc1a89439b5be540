"""PNG reports of a training run: loss curves and one prediction against its target."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from nol_fast.training.history import VAL_EPOCH, is_validation_metric


def plot_training_report(
    history: dict[str, list[float]],
    inputs: torch.Tensor,
    target: torch.Tensor,
    prediction: torch.Tensor,
    path: str | os.PathLike,
) -> Path:
    """Save a figure with the loss curves and one sample's input, target, prediction and error.

    Parameters
    ----------
    history
        ``Trainer.train``'s history (``train_loss``, optionally ``val_loss``, ``val_rel_l2``
        and ``val_epoch``).
    inputs, target, prediction
        One sample, ``(channels, *grid)`` with a 1-D or 2-D grid; the first channel is shown.
    path
        Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fields = [
        ("input", inputs[0]),
        ("target", target[0]),
        ("prediction", prediction[0]),
        ("error", prediction[0] - target[0]),
    ]
    fig, axes = plt.subplots(1, 1 + len(fields), figsize=(4 * (1 + len(fields)), 3.6))
    _plot_losses(axes[0], history)
    for ax, (title, field) in zip(axes[1:], fields, strict=True):
        data = field.detach().float().cpu().numpy()
        if data.ndim == 1:
            ax.plot(data)
        elif data.ndim == 2:
            if title == "error":  # symmetric colour scale: white is zero error
                limit = float(abs(data).max()) or 1.0
                image = ax.imshow(data, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
            else:
                image = ax.imshow(data, origin="lower")
            fig.colorbar(image, ax=ax, fraction=0.046)
            ax.set_xticks([])
            ax.set_yticks([])
        else:  # 3-D grids: the middle slice
            image = ax.imshow(data[data.shape[0] // 2], origin="lower")
            fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_losses(ax, history: dict[str, list[float]]) -> None:
    for name in ("train_loss", "val_loss", "val_rel_l2"):
        values = history.get(name)
        if not values:
            continue
        # Validation metrics have one entry per validated epoch, listed in 'val_epoch'.
        epochs = history[VAL_EPOCH] if is_validation_metric(name) else range(1, len(values) + 1)
        points = [(e, v) for e, v in zip(epochs, values, strict=True) if not math.isnan(v)]
        if points:
            epochs, ys = zip(*points, strict=True)
            ax.plot(epochs, ys, marker="." if len(points) < 30 else None, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("losses")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
