"""``ImageFolderData``: classification over a folder of the user's own images.

Layouts: ``root/train/<class>/*``, ``root/val/<class>/*``, ``root/test/<class>/*`` (a missing
``val`` or ``test`` is split off ``train``, seeded), or one folder ``root/<class>/*`` split into
train/val/test with a seeded, per-class split. Images are decoded with Pillow, their short side
resized to ``resize`` and centre-cropped square; validation and test then take the centre
``size`` x ``size`` crop (deterministic), training a random resized crop and a horizontal flip
(kornia), seeded by (run seed, epoch, the batch's indices), so a rerun sees the same stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from stnlab.data.fixed_batch import FixedBatch
from stnlab.data.loading import EpochShuffle
from stnlab.data.mnist import DataSourceError

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MIN_SIZE = 8


def decode(path: Path, resize: int, channels: int) -> torch.Tensor:
    """One image file -> uint8 ``(channels, resize, resize)``: short side resized to ``resize``
    (bilinear), centre-cropped square. An unreadable file raises ``DataSourceError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            nw, nh, left, top = resize_frame(*img.size, resize)
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            img = img.crop((left, top, left + resize, top + resize))
            arr = np.asarray(img, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataSourceError(f"cannot read image {path} ({err}); delete or replace it") from err
    t = torch.from_numpy(arr)
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def resize_frame(width: int, height: int, resize: int) -> tuple[int, int, int, int]:
    """How ``decode`` maps a ``width`` x ``height`` image: its resized size ``(nw, nh)`` and
    the top-left corner ``(left, top)`` of the square ``resize`` crop taken from it."""
    scale = resize / min(width, height)
    nw, nh = max(resize, round(width * scale)), max(resize, round(height * scale))
    return nw, nh, (nw - resize) // 2, (nh - resize) // 2


def box_in_input(box: torch.Tensor, image_size: tuple[int, int], resize: int,
                 size: int) -> torch.Tensor:
    """A box ``(x, y, w, h)`` in an original image's pixels -> ``(x0, y0, x1, y1)``, inclusive
    pixels of the evaluation input (``decode`` to ``resize``, then the centre ``size`` crop),
    clipped to it (a box wholly outside is empty: ``x1 < x0``)."""
    width, height = image_size
    nw, nh, left, top = resize_frame(width, height, resize)
    o = (resize - size) // 2
    x, y, w, h = (float(v) for v in box)
    edges = torch.tensor([x * nw / width - left, y * nh / height - top,
                          (x + w) * nw / width - left, (y + h) * nh / height - top],
                         dtype=torch.float64) - o
    edges = edges.clamp(0, size)
    return (edges - torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)).float()


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as err:
        raise DataSourceError(f"cannot read image {path} ({err}); delete or replace it") from err


class ImageFiles(Dataset):
    """Image files and labels, decoded on access; training items also carry their index (the
    seed of their augmentation)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], resize: int, channels: int,
                 with_index: bool = False):
        self.paths, self.labels = list(paths), torch.as_tensor(list(labels), dtype=torch.int64)
        self.resize, self.channels, self.with_index = resize, channels, with_index

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = decode(self.paths[i], self.resize, self.channels)
        return (x, self.labels[i], i) if self.with_index else (x, self.labels[i])


def list_class_folders(folder: Path, extensions: Sequence[str]) -> dict[str, list[Path]]:
    """``<class>/*`` image files of ``folder``, sorted; an empty class folder is an error."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataSourceError(f"{folder} has no class folders: put the images of each class in "
                              f"{folder}/<class>/ (e.g. {folder}/cat/1.jpg)")
    out = {}
    for c in classes:
        files = sorted(f for f in c.iterdir() if f.is_file() and f.suffix.lower() in extensions)
        if not files:
            raise DataSourceError(f"class folder {c} has no images ({', '.join(extensions)}); "
                                  "add some or remove the folder")
        out[c.name] = files
    return out


def seeded_split(labels: torch.Tensor, fractions: Sequence[float], seed: int
                 ) -> list[torch.Tensor]:
    """Per-class seeded split of the indices of ``labels`` into ``len(fractions) + 1`` parts:
    the given shares of every class (rounded), then the rest."""
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        start = 0
        for k, f in enumerate(fractions):
            n = int(round(f * len(idx)))
            parts[k].append(idx[start:start + n])
            start += n
        parts[-1].append(idx[start:])
    return [torch.sort(torch.cat(p)).values if p else torch.zeros(0, dtype=torch.long)
            for p in parts]


def random_resized_boxes(n: int, size: int, scale: tuple[float, float],
                         generator: torch.Generator) -> torch.Tensor:
    """``(n, 4, 2)`` square crop corners (kornia's inclusive pixel convention) in a ``size``
    image, each covering a uniform share in ``scale`` of its area, at a uniform place."""
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    side = (size * torch.sqrt(scale[0] + u[:, 0] * (scale[1] - scale[0]))).clamp(1, size)
    x0 = torch.floor(u[:, 1] * (size - side + 1))
    y0 = torch.floor(u[:, 2] * (size - side + 1))
    x1, y1 = x0 + side - 1, y0 + side - 1
    return torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                        torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1).float()


class ImageListData(FixedBatch, pl.LightningDataModule):
    """Classification over image files; a subclass lists the files (``listing``).

    Batches are ``(images (B, C, size, size) float in [0, 1], labels int64)``.

    Args:
        size: the side of the images the model sees.
        resize: the side every image is first resized (short side) and centre-cropped to;
            None: ``size * 8 // 7`` (224 -> 256, 448 -> 512).
        crop_scale: share of the area a random training crop covers (then resized to
            ``size``); ``[1, 1]`` with ``resize == size`` turns cropping off.
        flip: random horizontal flips in training.
        grayscale: one channel instead of three.
        The loaders: ``batch_size``, ``eval_batch_size``, ``num_workers``; ``seed`` drives the
        training stream, ``split_seed`` every seeded split.
    """

    task = "classification"
    distortion_name = "images"

    def __init__(
        self,
        size: int = 224,
        resize: int | None = None,
        crop_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        grayscale: bool = False,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        split_seed: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
            raise ValueError(f"data.size={size!r} must be an int >= {MIN_SIZE} (pixels)")
        resize = size * 8 // 7 if resize is None else resize
        if not isinstance(resize, int) or resize < size:
            raise ValueError(f"data.resize={resize!r} must be an int >= data.size={size}")
        lo, hi = (float(v) for v in crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"data.crop_scale={list(crop_scale)} must be [low, high] with "
                             "0 < low <= high <= 1")
        self.size, self.resize, self.crop_scale = size, resize, (lo, hi)
        self.flip, self.grayscale = bool(flip), bool(grayscale)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.split_seed, self.seed = num_workers, split_seed, seed
        self.classes: list[str] = []
        self.train_set = self.val_set = self.test_set = None

    # -- what the subclass says --------------------------------------------------------------
    def listing(self) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
        """The class names and, per split (``train``, ``val``, ``test``), files and labels."""
        raise NotImplementedError

    def source(self) -> str:
        raise NotImplementedError

    # -- shape and description ---------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def dims(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def num_classes(self) -> int:
        if not self.classes:
            self.classes = self.listing()[0]
        return len(self.classes)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name,
                "distortion_params": {"size": self.size, "resize": self.resize,
                                      "crop_scale": list(self.crop_scale), "flip": self.flip,
                                      "grayscale": self.grayscale}}

    def describe(self) -> dict[str, Any]:
        sizes = {k: len(v) for k, v in (("train", self.train_set), ("val", self.val_set),
                                        ("test", self.test_set)) if v is not None}
        return {"source": self.source(), **self.spec(), "classes": len(self.classes),
                "sizes": sizes}

    # -- loading -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.classes, splits = self.listing()
        for name in ("train", "val", "test"):
            paths, _ = splits[name]
            if not paths:
                raise DataSourceError(f"{self.source()}: the {name} split has no images; add "
                                      "images or change the split fractions")
            check_headers(paths[:1] + paths[-1:])
        self.train_set = ImageFiles(*splits["train"], self.resize, self.channels,
                                    with_index=True)
        self.val_set = ImageFiles(*splits["val"], self.resize, self.channels)
        self.test_set = ImageFiles(*splits["test"], self.resize, self.channels)
        log.info("%s: %d classes, %d / %d / %d images", self.source(), len(self.classes),
                 len(self.train_set), len(self.val_set), len(self.test_set))

    def _loader(self, dataset, batch_size: int, sampler) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size,
                            EpochShuffle(len(self.train_set), self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, SequentialSampler(self.val_set))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, SequentialSampler(self.test_set))

    # -- on the device -----------------------------------------------------------------------
    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, resize, resize)`` -> the centre ``size`` crop, float in [0, 1]."""
        o = (self.resize - self.size) // 2
        return x[..., o:o + self.size, o:o + self.size].float().div_(255)

    def augment(self, x: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Random resized crops and flips, every draw from a generator seeded by (seed, epoch,
        indices)."""
        import kornia.geometry.transform as K

        state = np.random.SeedSequence(
            [self.seed, epoch, int(indices[0]), int(indices[-1]), int(indices.sum()),
             len(indices)]).generate_state(1, dtype=np.uint64)
        gen = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        boxes = random_resized_boxes(len(x), self.resize, self.crop_scale, gen).to(x.device)
        out = K.crop_and_resize(x.float().div_(255), boxes, (self.size, self.size),
                                align_corners=False)
        if self.flip:
            flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], K.hflip(out), out)
        return out.clamp_(0.0, 1.0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if len(batch) == 3:
            x, y, idx = batch
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            return self.augment(x, idx.cpu(), epoch), y
        x, y = batch
        return self.centre(x), y


def check_headers(paths: Sequence[Path]) -> None:
    """Open the headers of ``paths`` (cheap): a non-image stops here with its name."""
    from PIL import Image, UnidentifiedImageError

    for p in paths:
        try:
            with Image.open(p) as img:
                img.size  # noqa: B018
        except (OSError, UnidentifiedImageError) as err:
            raise DataSourceError(f"cannot read image {p} ({err}); delete or replace it") from err


class ImageFolderData(ImageListData):
    """A folder of images by class (the layouts in the module docstring).

    Args:
        root: the folder (``~`` expanded).
        val_fraction, test_fraction: the shares of every class split off for validation and
            test where ``root`` has no ``val`` / ``test`` folder (seeded by ``split_seed``).
        extensions: the image file endings that count.
        The others: see ``ImageListData``.
    """

    distortion_name = "image_folder"

    def __init__(
        self,
        root: str = "images",
        size: int = 224,
        resize: int | None = None,
        crop_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        grayscale: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        extensions: Sequence[str] = EXTENSIONS,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        split_seed: int = 0,
        seed: int = 0,
    ):
        super().__init__(size=size, resize=resize, crop_scale=crop_scale, flip=flip,
                         grayscale=grayscale, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers,
                         split_seed=split_seed, seed=seed)
        for field, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"data.{field}={v} must be in [0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"data.val_fraction + data.test_fraction = "
                             f"{val_fraction + test_fraction} leaves no training images")
        self.root = Path(os.path.expanduser(str(root)))
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}"
                                for e in extensions)

    def source(self) -> str:
        return f"image_folder:{self.root}"

    def listing(self):
        if not self.root.is_dir():
            raise DataSourceError(
                f"image folder data.root={self.root} not found: put your images in "
                f"{self.root}/<class>/* (or {self.root}/train/<class>/*, val/, test/)")
        split_mode = (self.root / "train").is_dir()
        base = self.root / "train" if split_mode else self.root
        by_class = list_class_folders(base, self.extensions)
        classes = list(by_class)
        index = {c: i for i, c in enumerate(classes)}
        paths = [p for c in classes for p in by_class[c]]
        labels = torch.tensor([index[c] for c in classes for _ in by_class[c]])
        splits: dict[str, tuple[list[Path], list[int]]] = {}
        given = {}
        for name in ("val", "test"):
            folder = self.root / name
            if split_mode and folder.is_dir():
                found = list_class_folders(folder, self.extensions)
                unknown = sorted(set(found) - set(classes))
                if unknown:
                    raise DataSourceError(f"{folder} has classes that {base} lacks: "
                                          f"{', '.join(unknown)}")
                given[name] = ([p for c in found for p in found[c]],
                               [index[c] for c in found for _ in found[c]])
        fractions = [self.val_fraction if "val" not in given else 0.0,
                     self.test_fraction if "test" not in given else 0.0]
        val_idx, test_idx, train_idx = seeded_split(labels, fractions, self.split_seed)

        def pick(idx: torch.Tensor) -> tuple[list[Path], list[int]]:
            return [paths[int(i)] for i in idx], labels[idx].tolist()

        splits["train"] = pick(train_idx)
        splits["val"] = given.get("val") or pick(val_idx)
        splits["test"] = given.get("test") or pick(test_idx)
        return classes, splits


__all__ = ["EXTENSIONS", "ImageFiles", "ImageFolderData", "ImageListData", "box_in_input",
           "decode", "image_size", "list_class_folders", "resize_frame", "seeded_split"]
