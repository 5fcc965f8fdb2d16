"""``OnCanvas``: a recipe's images centred on a larger canvas, so that a model trained on one
canvas can be tested on another recipe's digits (``stnlab-eval ckpt_path=<RTS run>
+data.distortion=R`` puts the 28x28 rotated digits in the middle of RTS's 42x42)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .base import Distortion


class OnCanvas(Distortion):
    """``inner``'s images, zero-padded evenly about their centre to ``size`` (one length per
    spatial dimension, each at least ``inner``'s); the same draws, so the same digits."""

    def __init__(self, inner: Distortion, size: Sequence[int]) -> None:
        size = tuple(int(s) for s in size)
        if len(size) != len(inner.out_size) or any(
                s < o for s, o in zip(size, inner.out_size, strict=True)):
            raise ValueError(f"{inner.name}: its {inner.out_size} images do not fit on {size}")
        self.inner, self.out_size, self.name = inner, size, inner.name
        self.in_channels, self.out_channels = inner.in_channels, inner.out_channels
        self.in_size = inner.in_size
        self.before = tuple((s - o) // 2 for s, o in zip(size, inner.out_size, strict=True))

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "on_canvas": list(self.out_size)}

    def sample_params(self, batch_size: int, generator) -> dict[str, Tensor]:
        return self.inner.sample_params(batch_size, generator)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return self.place(self.inner.apply(x, params))

    def with_boxes(self, x: Tensor, generator) -> tuple[Tensor, Tensor | None]:
        y, boxes = self.inner.with_boxes(x, generator)
        if boxes is not None:  # (x0, y0, x1, y1): shifted by the left and top margins
            top, left = self.before[-2:]
            boxes = boxes + boxes.new_tensor([left, top, left, top])
        return self.place(y), boxes

    def place(self, y: Tensor) -> Tensor:
        pad: list[int] = []
        for before, size, have in zip(self.before, self.out_size, y.shape[2:], strict=True):
            pad = [before, size - have - before, *pad]  # F.pad: last dimension first
        return F.pad(y, pad)

    def __repr__(self) -> str:
        return f"OnCanvas({self.inner!r}, {self.out_size})"
