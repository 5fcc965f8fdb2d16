"""SVHN "format 1" (full house numbers) -> the paper's 64x64 multi-digit crops.

A format-1 folder (``train/``, ``test/`` or ``extra/`` from
http://ufldl.stanford.edu/housenumbers/) holds ``1.png``, ``2.png``, ... and
``digitStruct.mat``, a MATLAB v7.3 file (that is, HDF5) with one struct per image:
``name`` and ``bbox`` with fields ``left``, ``top``, ``width``, ``height`` and ``label`` per digit
(label 10 means the digit 0).

The recipe (Goodfellow et al. 2014, used by Jaderberg et al. 2015): crop each image to the union
of its digit boxes expanded by 30% about its centre, resize the crop to 64x64. Targets follow
``stnlab.data.distortions.sequence_targets`` and ``MultiDigitMNIST``: the length, then up to
``max_length`` digits, ``blank`` (10) after the end. Images with more digits are left out.

    seqs = load_svhn("SVHN/test")          # needs h5py: pip install h5py (or 'stnlab[svhn]')
    seqs.images                            # (N, 3, 64, 64) uint8
    seqs.targets                           # (N, 6) int64: length, 5 digits
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stnlab.data.mnist import DataSourceError

log = logging.getLogger(__name__)

H5PY_HINT = "pip install h5py (or pip install 'stnlab[svhn]')"
BOX_FIELDS = ("left", "top", "width", "height")


@dataclass(frozen=True)
class DigitStruct:
    """One entry of ``digitStruct.mat``: the PNG name, digit labels (0-9) and their boxes."""

    name: str
    labels: tuple[int, ...]
    boxes: np.ndarray  # (k, 4) float64: left, top, width, height (pixels)


@dataclass(frozen=True)
class SVHNSequences:
    images: torch.Tensor  # (N, 3, size, size) uint8
    targets: torch.Tensor  # (N, 1 + max_length) int64: length, digits, blank after the end
    names: tuple[str, ...]
    skipped: int  # images left out: more than max_length digits

    def __len__(self) -> int:
        return len(self.targets)


def _h5py():
    try:
        import h5py
    except ImportError as err:
        raise DataSourceError(
            f"reading SVHN's digitStruct.mat (MATLAB v7.3, i.e. HDF5) needs h5py: {H5PY_HINT}"
        ) from err
    return h5py


def read_digit_struct(path: str | os.PathLike, limit: int | None = None) -> list[DigitStruct]:
    """Parse ``digitStruct.mat`` (the first ``limit`` entries); labels 10 -> 0."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(
            f"{path} not found. An SVHN format-1 folder (train/, test/ or extra/ from "
            "http://ufldl.stanford.edu/housenumbers/) holds digitStruct.mat and the PNG files."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataSourceError(
            f"{path} is not a MATLAB v7.3 (HDF5) file ({err}); SVHN format 1 ships it as one. "
            "Download the archive again."
        ) from err
    with f:
        try:
            names, bboxes = f["digitStruct/name"], f["digitStruct/bbox"]
        except KeyError as err:
            raise DataSourceError(f"{path} has no digitStruct/name and digitStruct/bbox") from err
        n = names.shape[0] * names.shape[1] if names.ndim == 2 else len(names)
        n = n if limit is None else min(n, int(limit))
        name_refs, bbox_refs = names[()].ravel()[:n], bboxes[()].ravel()[:n]
        ref_kind = h5py.check_dtype

        def values(ds) -> list[float]:
            data = ds[()]
            if ref_kind(ref=ds.dtype) is not None:  # several digits: one reference each
                return [float(np.asarray(f[r][()]).ravel()[0]) for r in np.ravel(data)]
            return [float(v) for v in np.ravel(data)]  # one digit: the value itself

        out = []
        for i in range(n):
            name = "".join(chr(int(c)) for c in np.ravel(f[name_refs[i]][()]))
            group = f[bbox_refs[i]]
            fields = {key: values(group[key]) for key in (*BOX_FIELDS, "label")}
            if len({len(v) for v in fields.values()}) != 1:
                raise DataSourceError(f"{path}: entry {i} ({name}) has bbox fields of "
                                      "different lengths")
            labels = tuple(int(round(v)) % 10 for v in fields["label"])  # SVHN: 10 means 0
            boxes = np.array([fields[key] for key in BOX_FIELDS], dtype=np.float64).T
            out.append(DigitStruct(name, labels, boxes.reshape(-1, 4)))
    return out


def crop_box(boxes: np.ndarray, image_size: tuple[int, int],
             expand: float = 0.3) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixel bounds (right/bottom exclusive) of the union of
    ``boxes`` (k, 4: left, top, width, height) grown by ``expand`` (0.3 = 30%) in width and
    height about its centre, clipped to the ``(width, height)`` image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_w, half_h = (x1 - x0) * (1.0 + expand) / 2.0, (y1 - y0) * (1.0 + expand) / 2.0
    w, h = image_size
    left = min(max(math.floor(cx - half_w), 0), w - 1)
    top = min(max(math.floor(cy - half_h), 0), h - 1)
    right = max(min(math.ceil(cx + half_w), w), left + 1)
    bottom = max(min(math.ceil(cy + half_h), h), top + 1)
    return left, top, right, bottom


def load_svhn(folder: str | os.PathLike, size: int = 64, expand: float = 0.3,
              max_length: int = 5, blank: int = 10, limit: int | None = None) -> SVHNSequences:
    """Read an SVHN format-1 folder into ``size`` x ``size`` crops and sequence targets."""
    from PIL import Image

    folder = Path(folder)
    structs = read_digit_struct(folder / "digitStruct.mat", limit=limit)
    images, targets, names, skipped = [], [], [], 0
    for s in structs:
        if not 1 <= len(s.labels) <= max_length:
            skipped += 1
            continue
        path = folder / s.name
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except OSError as err:
            raise DataSourceError(f"cannot read {path} ({err}), listed in "
                                  f"{folder / 'digitStruct.mat'}") from err
        crop = rgb.crop(crop_box(s.boxes, rgb.size, expand)).resize(
            (size, size), Image.Resampling.BILINEAR)
        images.append(torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1))
        row = [len(s.labels), *s.labels] + [blank] * (max_length - len(s.labels))
        targets.append(row)
        names.append(s.name)
    if skipped:
        log.warning("SVHN %s: left out %d images with more than %d digits", folder, skipped,
                    max_length)
    stacked = torch.stack(images) if images else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return SVHNSequences(stacked, torch.tensor(targets, dtype=torch.int64).view(-1, 1 + max_length),
                         tuple(names), skipped)
