"""``CUBData``: CUB-200-2011 (200 bird species, the paper's fine-grained study) from its own
layout: ``images.txt`` (id, path under ``images/``), ``image_class_labels.txt`` (id, class
1-200), ``train_test_split.txt`` (id, 1 = train), ``bounding_boxes.txt`` (id, x, y, w, h;
optional, kept for evaluation only) and ``images/``. Test is the official test split; validation
a seeded per-class share of the official train split (the paper reports test accuracy only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from stnlab.data.image_folder import ImageListData, box_in_input, image_size, seeded_split
from stnlab.data.mnist import DataSourceError

CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
LISTS = ("images.txt", "image_class_labels.txt", "train_test_split.txt")


def read_table(path: Path, columns: int) -> dict[int, list[str]]:
    """``id value...`` lines -> {id: values}; a malformed line names the file and line."""
    out: dict[int, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != columns + 1 or not parts[0].isdigit():
            raise DataSourceError(f"{path}, line {n}: expected an image id and {columns} "
                                  f"value(s), got {line!r}")
        out[int(parts[0])] = parts[1:]
    return out


class CUBData(ImageListData):
    """CUB-200-2011 under ``<data_dir>/<folder>`` (the extracted ``CUB_200_2011/``).

    ``boxes[split]``: ``(N, 4)`` float ``(x, y, w, h)`` of each image's bird in the original
    image's pixels, where ``bounding_boxes.txt`` exists (evaluation only; never in a batch;
    ``fixed_batch`` gives them in the evaluation inputs' pixels).

    Args:
        data_dir, folder: where the data set lives.
        size: the paper's 448 (or 224); ``resize`` None: ``size * 8 // 7``.
        val_fraction: share of each class of the official train split held out for validation.
        The others: see ``ImageListData``.
    """

    distortion_name = "cub"

    def __init__(
        self,
        data_dir: str = "data",
        folder: str = "CUB_200_2011",
        size: int = 448,
        resize: int | None = None,
        crop_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        split_seed: int = 0,
        seed: int = 0,
    ):
        super().__init__(size=size, resize=resize, crop_scale=crop_scale, flip=flip,
                         grayscale=False, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, split_seed=split_seed, seed=seed)
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must be in (0, 1)")
        self.data_dir, self.root = Path(data_dir), Path(data_dir) / folder
        self.val_fraction = float(val_fraction)
        self.boxes: dict[str, torch.Tensor] = {}

    def source(self) -> str:
        return f"cub:{self.root}"

    def eval_boxes(self, split: str, n: int) -> torch.Tensor | None:
        """``boxes[split]`` of the first ``n`` images, in the evaluation inputs' pixels
        (``fixed_batch``): each image's header gives the size its box is scaled from."""
        boxes = self.boxes.get(split)
        if boxes is None:
            return None
        paths = getattr(self, f"{split}_set").paths[:n]
        return torch.stack([box_in_input(b, image_size(p), self.resize, self.size)
                            for b, p in zip(boxes[:n], paths, strict=True)]
                           ) if paths else torch.zeros(0, 4)

    def listing(self):
        missing = [name for name in LISTS if not (self.root / name).is_file()]
        if missing or not (self.root / "images").is_dir():
            raise DataSourceError(
                f"CUB-200-2011 not found: extract CUB_200_2011.tgz ({CUB_URL}) so that "
                f"{self.root}/images.txt and {self.root}/images/ exist (missing: "
                f"{', '.join(missing) or 'images/'}; data.data_dir={self.data_dir}, "
                f"data.folder={self.root.name})")
        images = read_table(self.root / "images.txt", 1)
        labels = read_table(self.root / "image_class_labels.txt", 1)
        is_train = read_table(self.root / "train_test_split.txt", 1)
        box_file = self.root / "bounding_boxes.txt"
        boxes = read_table(box_file, 4) if box_file.is_file() else {}
        ids = sorted(images)
        for name, table in (("image_class_labels.txt", labels),
                            ("train_test_split.txt", is_train)):
            lacking = [i for i in ids if i not in table]
            if lacking:
                raise DataSourceError(f"{self.root / name} has no line for image id(s) "
                                      f"{lacking[:5]} of images.txt")
        class_ids = sorted({int(labels[i][0]) for i in ids})
        index = {c: k for k, c in enumerate(class_ids)}
        classes = [str(c) for c in class_ids]
        names = self.root / "classes.txt"
        if names.is_file():
            table = read_table(names, 1)
            classes = [table.get(c, [str(c)])[0] for c in class_ids]
        paths = [self.root / "images" / images[i][0] for i in ids]
        y = torch.tensor([index[int(labels[i][0])] for i in ids])
        train = torch.tensor([is_train[i][0] == "1" for i in ids])
        box = torch.tensor([[float(v) for v in boxes[i]] if i in boxes else [float("nan")] * 4
                            for i in ids]) if boxes else None
        train_idx, test_idx = torch.nonzero(train).flatten(), torch.nonzero(~train).flatten()
        val_part, train_part = seeded_split(y[train_idx], [self.val_fraction], self.split_seed)
        parts = {"train": train_idx[train_part], "val": train_idx[val_part], "test": test_idx}
        if box is not None:
            self.boxes = {k: box[v] for k, v in parts.items() if k != "train"}
        return classes, {k: ([paths[int(i)] for i in v], y[v].tolist())
                         for k, v in parts.items()}


__all__ = ["CUBData", "read_table"]
