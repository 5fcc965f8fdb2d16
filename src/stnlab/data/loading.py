"""Datasets, samplers and loaders under the DataModules: whole-batch indexing, a seeded
per-epoch shuffle, a loader that resumes mid-epoch, and the partner draws of multi-digit
examples."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stnlab.io import atomic_save as atomic_save  # the DataModules' cache writes


class TensorBatches(Dataset):
    """In-memory tensors fetched a batch at a time (``__getitems__``): no per-sample Python."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


class EpochShuffle(Sampler[int]):
    """A permutation drawn from (seed, epoch) alone: a resumed run sees the same order."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=gen).tolist())


class ResumableLoader(DataLoader):
    """A DataLoader that resumes in the middle of an epoch.

    ``position()`` says how many batches of the epoch under way are already trained; an
    iteration skips that many (a lookup in memory: the training examples are made later, on the
    device). ``DigitDataModule`` passes Lightning's own batch counter, which a run resumed from a
    mid-epoch checkpoint restores, so with a sampler seeded by (seed, epoch) it trains on
    exactly the batches an uninterrupted run would have, however often it was interrupted.

    Iterating starts at the first ``next``, not at ``iter``: Lightning creates an epoch's
    iterator before it calls the sampler's ``set_epoch`` and restores its counters (and worker
    processes would draw their first indices at ``iter``). Then, with ``epoch``, a collate
    function that has ``set_epoch`` (``EpochCollate``) is told the epoch under way.
    """

    def __init__(self, *args, position: Callable[[], int] | None = None,
                 epoch: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.position = position or (lambda: 0)
        self.epoch = epoch

    def __iter__(self):
        if self.epoch is not None and hasattr(self.collate_fn, "set_epoch"):
            self.collate_fn.set_epoch(self.epoch())  # before any worker sees this epoch's indices
        batches = super().__iter__()
        for _ in range(self.position()):
            next(batches, None)
        yield from batches

    # Lightning's ``_Stateful`` interface: checkpoints record the loader's position, and
    # Lightning does not warn that the loader cannot resume mid-epoch.
    def state_dict(self) -> dict[str, int]:
        return {"batches_done": self.position()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to load: the position comes from the restored loop counters (Lightning does
        not always call this, e.g. not after ``estimated_stepping_batches``: its issue #20550)."""


def keep_batched(batch):
    return list(batch)


class EpochCollate:
    """A ``collate_fn`` that makes each batch with ``fn(batch, epoch)`` where the loader runs it:
    in its worker processes when ``num_workers > 0`` (``data.distort_on=workers``).

    The epoch lives in a shared-memory tensor that ``ResumableLoader`` sets before an epoch's
    first batch is requested, so persistent workers, started once, see every epoch's number.
    ``fn`` must not need the trainer (workers hold a copy of it, made when they start).
    """

    def __init__(self, fn: Callable[[Any, int], Any]):
        self.fn = fn
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __call__(self, batch):
        return list(self.fn(batch, int(self._epoch)))


def draw_partners(anchors: torch.Tensor, pool_size: int, k: int,
                  generator: torch.Generator) -> torch.Tensor:
    """``(B, k)`` indices into a pool of ``pool_size`` digits, uniform among the digits other
    than each row's anchor (the anchor itself when the pool holds one digit)."""
    anchors = torch.as_tensor(anchors).long().cpu()
    if k == 0:
        return anchors.new_zeros(len(anchors), 0)
    if pool_size < 2:
        return anchors[:, None].expand(-1, k).clone()
    step = torch.randint(pool_size - 1, (len(anchors), k), generator=generator)
    return (anchors[:, None] + 1 + step) % pool_size
