"""The one definition of which Fourier modes a spectral convolution keeps, and where they go.

Every backend (the FFT reference, the CPU DFT path, the Triton kernels) reads its mode indices
from :func:`mode_index`, so they cannot disagree about the convention:

* along every grid dimension but the last, ``n_modes[d]`` modes: the ``ceil(n_modes[d] / 2)``
  non-negative frequencies ``0, 1, ...`` and the ``floor(n_modes[d] / 2)`` negative ones
  ``..., -2, -1``; the weight holds them in FFT order (index ``j`` is frequency ``j`` for the
  non-negative ones and ``j - n_modes[d]`` for the negative ones);
* along the last dimension, transformed with a real FFT, the ``n_modes[-1] // 2 + 1``
  frequencies ``0 ... n_modes[-1] // 2``.

A frequency is kept only if both the input grid and the output grid have it: the non-negative
frequencies first (the Nyquist frequency of an even grid counts as non-negative), then the
negative ones that remain, so that no two kept modes share a spectrum entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nol_fast.ops.launch import pinned_cache


def normalize_n_modes(n_modes: int | Sequence[int]) -> tuple[int, ...]:
    """Return ``n_modes`` as a tuple of 1 to 3 positive ints, or raise ``ValueError``.

    Examples
    --------
    >>> normalize_n_modes(8), normalize_n_modes([16, 12])
    ((8,), (16, 12))
    """
    modes = (n_modes,) if isinstance(n_modes, int) else tuple(n_modes)
    if not 1 <= len(modes) <= 3 or not all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in modes
    ):
        raise ValueError(
            f"n_modes must be 1 to 3 positive ints (one per grid dimension), got {n_modes!r}"
        )
    return modes


def kept_shape(n_modes: Sequence[int]) -> tuple[int, ...]:
    """Shape of the mode axes of the weight: ``(*n_modes[:-1], n_modes[-1] // 2 + 1)``."""
    return (*n_modes[:-1], n_modes[-1] // 2 + 1)


def rfft_shape(grid: Sequence[int]) -> tuple[int, ...]:
    """Shape of the ``rfftn`` spectrum of ``grid``: ``(*grid[:-1], grid[-1] // 2 + 1)``."""
    return (*grid[:-1], grid[-1] // 2 + 1)


@dataclass(frozen=True)
class ModeIndex:
    """Where every kept mode sits in the input spectrum, the output spectrum and the weight.

    Attributes
    ----------
    frequencies : tuple of tuple of int
        Per non-last grid dimension, the signed frequency of each kept mode.
    in_index, out_index, w_index : tuple of tuple of int
        Per non-last grid dimension, the index of each kept mode along that dimension of the
        input spectrum, the output spectrum and the weight; all three have the length of
        ``frequencies[d]``.
    n_last : int
        Number of kept modes along the last dimension: indices ``0 .. n_last - 1`` in the
        input spectrum, the output spectrum and the weight alike.
    """

    frequencies: tuple[tuple[int, ...], ...]
    in_index: tuple[tuple[int, ...], ...]
    out_index: tuple[tuple[int, ...], ...]
    w_index: tuple[tuple[int, ...], ...]
    n_last: int

    @property
    def kept(self) -> tuple[int, ...]:
        """Shape of the kept block: one entry per grid dimension."""
        return (*(len(f) for f in self.frequencies), self.n_last)

    def tensors(self, device: torch.device | str) -> tuple[list, list, list]:
        """``(in_index, out_index, w_index)`` as lists of int32 tensors on ``device``.

        Built once per mode set and device (see :func:`_index_tensors`); treat as read-only.
        """
        return _index_tensors(self.in_index, self.out_index, self.w_index,
                              torch.device(device))


def _dim_frequencies(m: int, n_in: int, n_out: int) -> list[int]:
    """Signed frequencies kept along one non-last dimension (see the module docstring)."""
    n = min(n_in, n_out)
    n_pos = min((m + 1) // 2, n // 2 + 1)
    n_neg = min(m // 2, n - n_pos)
    return list(range(n_pos)) + list(range(-n_neg, 0))


def mode_index(
    n_modes: Sequence[int], in_grid: Sequence[int], out_grid: Sequence[int] | None = None
) -> ModeIndex:
    """Kept modes of a spectral convolution from ``in_grid`` to ``out_grid``.

    Parameters
    ----------
    n_modes : sequence of int
        Modes per grid dimension, as given to the layer (see the module docstring).
    in_grid, out_grid : sequence of int
        Sizes of the input and output grids; ``out_grid`` defaults to ``in_grid``.

    Examples
    --------
    >>> index = mode_index((4, 4), (7, 5), (14, 10))
    >>> index.frequencies, index.in_index, index.out_index, index.w_index, index.n_last
    (((0, 1, -2, -1),), ((0, 1, 5, 6),), ((0, 1, 12, 13),), ((0, 1, 2, 3),), 3)
    """
    out_grid = tuple(in_grid) if out_grid is None else tuple(out_grid)
    if not len(n_modes) == len(in_grid) == len(out_grid):
        raise ValueError(
            f"n_modes {tuple(n_modes)}, input grid {tuple(in_grid)} and output grid "
            f"{out_grid} must have the same number of dimensions"
        )
    if min(*in_grid, *out_grid) < 1:
        raise ValueError(f"grid sizes must be positive, got {tuple(in_grid)} -> {out_grid}")
    freqs = tuple(
        tuple(_dim_frequencies(m, n_in, n_out))
        for m, n_in, n_out in zip(n_modes[:-1], in_grid[:-1], out_grid[:-1], strict=True)
    )
    return ModeIndex(
        frequencies=freqs,
        in_index=tuple(tuple(f % n for f in fs) for fs, n in zip(freqs, in_grid, strict=False)),
        out_index=tuple(tuple(f % n for f in fs) for fs, n in zip(freqs, out_grid, strict=False)),
        w_index=tuple(tuple(f % m for f in fs) for fs, m in zip(freqs, n_modes, strict=False)),
        n_last=min(n_modes[-1] // 2 + 1, in_grid[-1] // 2 + 1, out_grid[-1] // 2 + 1),
    )


# Index tensors are built once per (modes, grid, device) and kept: building one from a Python
# list is a blocking host-to-device copy on CUDA, and impossible during CUDA-graph capture.
# Entries a capture used stay for the process (see nol_fast.ops.launch.pinned_cache).
_INDEX_CACHE_SIZE = 256


@pinned_cache(maxsize=_INDEX_CACHE_SIZE)
def _index_tensors(
    in_index: tuple[tuple[int, ...], ...], out_index: tuple[tuple[int, ...], ...],
    w_index: tuple[tuple[int, ...], ...], device: torch.device,
) -> tuple[list, list, list]:
    """:meth:`ModeIndex.tensors`, built once per mode set and device."""
    def convert(index):
        return [torch.tensor(i, dtype=torch.int32, device=device) for i in index]

    return convert(in_index), convert(out_index), convert(w_index)


@pinned_cache(maxsize=_INDEX_CACHE_SIZE)
def _block(index: tuple[tuple[int, ...], ...], n_last: int, shape: tuple[int, ...],
           device: torch.device) -> tuple:
    """Index of the kept block (every kept mode of every dim) in a ``(a, b, *shape)`` tensor.

    Plain slices when the block is a leading corner, an advanced index otherwise.
    """
    if all(i == tuple(range(n)) for i, n in zip(index, shape, strict=False)):
        return (..., slice(0, n_last))
    axes = [torch.tensor(i, dtype=torch.long, device=device) for i in index]
    axes.append(torch.arange(n_last, device=device))
    return (slice(None), slice(None), *torch.meshgrid(*axes, indexing="ij"))


def _key(index: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """``index`` as tuples (as :class:`ModeIndex` holds it), to key the cache."""
    return tuple(map(tuple, index))


def gather_modes(t: torch.Tensor, index: Sequence[Sequence[int]], n_last: int) -> torch.Tensor:
    """The kept block of ``t``: ``(a, b, *spec) -> (a, b, *kept)``.

    ``index`` is one of :class:`ModeIndex`'s ``in_index``, ``out_index`` or ``w_index``.
    """
    return t[_block(_key(index), n_last, tuple(t.shape[2:]), t.device)]


def scatter_modes(
    block: torch.Tensor, index: Sequence[Sequence[int]], n_last: int, spec: Sequence[int]
) -> torch.Tensor:
    """Inverse of :func:`gather_modes`: ``(a, b, *kept) -> (a, b, *spec)``, zero elsewhere.

    A block that fills all of ``spec`` (a weight with exactly the kept modes) is returned
    as it is, not copied into zeros.
    """
    where = _block(_key(index), n_last, tuple(spec), block.device)
    if where == (..., slice(0, spec[-1])) and tuple(block.shape[2:]) == tuple(spec):
        return block
    out = block.new_zeros((*block.shape[:2], *spec))
    out[where] = block
    return out
