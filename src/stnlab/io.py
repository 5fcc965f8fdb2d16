"""Atomic file writes: a reader (another job of a sweep, a rank, a rerun) sees the old file or
the whole new one, never half of it. Every file stnlab writes for others to read goes through
``atomic_write``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (``mode``: ``wb`` or ``w``) that replaces ``path``
    when the block ends without an error; on an error it is removed and ``path`` is untouched.
    Makes ``path``'s folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON with sorted keys (anything else as its ``str``), atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path``, atomically."""
    with atomic_write(path) as f:
        torch.save(obj, f)


__all__ = ["atomic_save", "atomic_write", "write_json"]
