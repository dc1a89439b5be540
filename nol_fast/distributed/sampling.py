"""Which samples each rank sees: the training sampler and the evaluation shards.

Training: every rank iterates the same per-epoch permutation (seeded with the loader's seed plus
the epoch, as ``DistributedSampler`` does) and takes every ``world_size``-th index of it, so a
step's ``world_size`` per-rank batches together are one batch of ``world_size × batch_size``
consecutive indices of that permutation. :class:`ResumableDistributedSampler` can also start an
epoch part-way, where a preempted run stopped.

Evaluation: each rank takes a contiguous block of the loader's samples, so the predictions of
the ranks, concatenated in rank order, are in loader order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` whose next epoch can start after the first samples of this rank.

    Examples
    --------
    >>> sampler = ResumableDistributedSampler(range(8), num_replicas=2, rank=1, shuffle=False)
    >>> list(sampler)
    [1, 3, 5, 7]
    >>> sampler.skip(2)
    >>> list(sampler), list(sampler)
    ([5, 7], [1, 3, 5, 7])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip(self, n_samples: int) -> None:
        """Leave out this rank's first ``n_samples`` samples of the next iteration only."""
        self._skip = n_samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class IndexSampler(Sampler[int]):
    """Yields the given indices in order (one rank's block of an evaluation loader)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def distributed_train_loader(
    loader: Any, world_size: int, rank: int, seed: int
) -> DataLoader:
    """``loader`` rebuilt around a :class:`ResumableDistributedSampler` for this rank.

    It keeps the loader's dataset, batch size (per rank), workers, collate function, generator
    and ``normalizer``. A shuffling loader (``RandomSampler``, or a ``DistributedSampler`` with
    ``shuffle``) shuffles per epoch with ``seed``; a sequential one keeps its order. The last
    samples of an epoch are padded with repeats so that every rank has as many batches (the
    ranks step together).

    Raises
    ------
    TypeError
        For an iterable that is not a ``DataLoader``, an ``IterableDataset``, or a custom
        sampler or batch sampler, whose split across ranks is unknown.
    """
    _check_map_style(loader, "training")
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        shuffle, seed, drop_last = sampler.shuffle, sampler.seed, sampler.drop_last
    elif isinstance(sampler, (RandomSampler, SequentialSampler)):
        shuffle, drop_last = isinstance(sampler, RandomSampler), False
    else:
        raise TypeError(
            f"the training loader's sampler is a {type(sampler).__name__}, which cannot be "
            f"split across ranks; use shuffle=True/False (RandomSampler, SequentialSampler) or "
            f"a DistributedSampler"
        )
    distributed = ResumableDistributedSampler(
        loader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
        drop_last=drop_last,
    )
    return rebuild_loader(loader, distributed)


def shard_range(n_samples: int, world_size: int, rank: int) -> range:
    """This rank's contiguous block of ``n_samples`` (the first ``n % world_size`` get one more).

    Examples
    --------
    >>> [shard_range(10, 4, r) for r in range(4)]
    [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]
    """
    base, extra = divmod(n_samples, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def sharded_eval_loader(loader: Any, world_size: int, rank: int) -> DataLoader | None:
    """This rank's contiguous block of an evaluation loader, in the loader's order.

    Returns None when the loader cannot be split (not a map-style ``DataLoader`` with a plain
    batch size) or has fewer samples than ranks; every rank then evaluates all of it.
    """
    try:
        _check_map_style(loader, "evaluation")
    except TypeError:
        return None
    order = list(iter(loader.sampler))
    if len(order) < world_size:
        return None
    block = shard_range(len(order), world_size, rank)
    return rebuild_loader(loader, IndexSampler(order[block.start:block.stop]))


def rebuild_loader(loader: DataLoader, sampler: Sampler) -> DataLoader:
    """A copy of ``loader`` drawing its samples from ``sampler`` (``normalizer`` included)."""
    rebuilt = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
    )
    if hasattr(loader, "normalizer"):
        rebuilt.normalizer = loader.normalizer
    return rebuilt


def _check_map_style(loader: Any, role: str) -> None:
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"the {role} loader must be a torch DataLoader so that its samples can be split "
            f"across ranks, got {type(loader).__name__}"
        )
    if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        kind = ("an IterableDataset" if isinstance(loader.dataset, IterableDataset)
                else "a custom batch_sampler")
        raise TypeError(
            f"the {role} loader has {kind}, whose split across ranks is unknown; give it a "
            f"map-style dataset and a batch_size"
        )
