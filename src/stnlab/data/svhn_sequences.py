"""``SVHNSequenceData``: the paper's SVHN multi-digit task as a LightningDataModule over the
SVHN format-1 folders (``<data_dir>/svhn/train``, ``<data_dir>/svhn/test``; ``extra`` too with
``use_extra``), read by ``stnlab.data.svhn.load_svhn`` into 64x64 crops once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, SequentialSampler

from stnlab.data.fixed_batch import FixedBatch
from stnlab.data.loading import EpochShuffle, TensorBatches, atomic_save, keep_batched
from stnlab.data.mnist import DataSourceError
from stnlab.data.svhn import load_svhn
from stnlab.errors import DataSizeError

log = logging.getLogger(__name__)

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


class SVHNSequenceData(FixedBatch, pl.LightningDataModule):
    """SVHN house numbers as sequences: ``(images (B, C, size, size) float in [0, 1], targets
    (B, 1 + max_length) int64)``, targets as ``MultiDigitMNIST``'s (length, digits, blank 10).

    Validation is ``val_size`` images of ``train`` (a fixed, seeded split, as Goodfellow et al.
    hold out part of train); test is the official ``test`` folder (its first ``test_size``).
    ``grayscale`` averages the colour channels. The crops of a folder are made once and cached
    under ``<data_dir>/cache``.
    """

    task = "sequence"
    distortion_name = "svhn"

    def __init__(
        self,
        data_dir: str = "data",
        folder: str = "svhn",
        size: int = 64,
        expand: float = 0.3,
        max_length: int = 5,
        blank: int = 10,
        grayscale: bool = False,
        use_extra: bool = False,
        batch_size: int = 64,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        val_size: int = 5000,
        test_size: int | None = None,
        split_seed: int = 0,
        seed: int = 0,
        cache: bool = True,
    ):
        super().__init__()
        if int(size) < 16:
            raise ValueError(f"svhn: size={size} must be >= 16 (the paper: 64)")
        if int(max_length) < 1:
            raise ValueError(f"svhn: max_length={max_length} must be >= 1")
        self.data_dir, self.root = Path(data_dir), Path(data_dir) / folder
        self.size, self.expand, self.max_length, self.blank = int(size), expand, max_length, blank
        self.grayscale, self.use_extra = bool(grayscale), bool(use_extra)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.val_size, self.test_size = num_workers, val_size, test_size
        self.split_seed, self.seed, self.cache = split_seed, seed, cache
        self.num_classes = blank + 1
        self.train_set = self.val_set = self.test_set = None

    @property
    def dims(self) -> tuple[int, int, int]:
        return (1 if self.grayscale else 3, self.size, self.size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name,
                "distortion_params": {"size": self.size, "expand": self.expand,
                                      "max_length": self.max_length, "blank": self.blank,
                                      "grayscale": self.grayscale, "use_extra": self.use_extra}}

    def describe(self) -> dict[str, Any]:
        sizes = {k: len(v) for k, v in (("train", self.train_set), ("val", self.val_set),
                                        ("test", self.test_set)) if v is not None}
        return {"source": f"svhn:{self.root}", **self.spec(), "sizes": sizes}

    def _folders(self) -> list[str]:
        return ["train", "test"] + (["extra"] if self.use_extra else [])

    def prepare_data(self) -> None:
        missing = [name for name in self._folders()
                   if not (self.root / name / "digitStruct.mat").is_file()]
        if missing:
            raise DataSourceError(
                f"SVHN format-1 files not found: put the {', '.join(missing)} folder(s) of "
                f"{SVHN_URL} (train.tar.gz, test.tar.gz: each folder holds digitStruct.mat and "
                f"the PNGs) under {self.root}/ (data.data_dir={self.data_dir}, "
                f"data.folder={self.root.name})."
            )

    def _read(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One folder's uint8 crops and targets, cached by what defines them."""
        folder = self.root / name
        mat = folder / "digitStruct.mat"
        stat = mat.stat()
        key = json.dumps({"folder": str(folder.resolve()), "mat": [stat.st_size, stat.st_mtime],
                          "size": self.size, "expand": self.expand,
                          "max_length": self.max_length, "blank": self.blank}, sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        path = self.data_dir / "cache" / f"svhn-{name}-{digest}.pt"
        if self.cache and path.exists():
            try:
                cached = torch.load(path, weights_only=True)
                if cached.get("key") == key:
                    return cached["x"], cached["y"]
            except Exception as e:  # a broken cache file is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        seqs = load_svhn(folder, size=self.size, expand=self.expand,
                         max_length=self.max_length, blank=self.blank)
        if self.cache:
            atomic_save({"key": key, "x": seqs.images, "y": seqs.targets}, path)
        return seqs.images, seqs.targets

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255)
        return x.mean(1, keepdim=True) if self.grayscale else x

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.prepare_data()
        xtr, ytr = self._read("train")
        if self.use_extra:
            xex, yex = self._read("extra")
            xtr, ytr = torch.cat([xtr, xex]), torch.cat([ytr, yex])
        if not 0 <= self.val_size < len(ytr):
            raise DataSizeError(f"data.val_size={self.val_size} must be below the {len(ytr)} "
                                "training images; make it smaller, e.g. data.val_size=500")
        perm = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(self.split_seed))
        val_idx, train_idx = perm[:self.val_size], perm[self.val_size:]
        xte, yte = self._read("test")
        if self.test_size is not None:
            xte, yte = xte[:self.test_size], yte[:self.test_size]
        # uint8 in memory (train is 73k crops), made float a batch at a time on the device;
        # val is float already: the gallery feeds its first images to the model
        self.train_set = TensorBatches(xtr[train_idx], ytr[train_idx])
        self.val_set = TensorBatches(self._float(xtr[val_idx]), ytr[val_idx])
        self.test_set = TensorBatches(xte, yte)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        return (self._float(x) if x.dtype == torch.uint8 else x), y

    def _loader(self, dataset, batch_size: int, sampler) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=keep_batched,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size,
                            EpochShuffle(len(self.train_set), self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, SequentialSampler(self.val_set))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, SequentialSampler(self.test_set))


__all__ = ["SVHNSequenceData"]
