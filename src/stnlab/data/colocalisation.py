"""``ColocalisationMNIST``: the paper's co-localisation data. Every example is one digit of a
single class (``digit_class``) at a random place on an 84x84 canvas, alone (translated) or among
``num_clutter`` 6x6 patches of other digits (cluttered); the recipe is ``Cluttered``'s.

Batches are ``(images, labels)``: the label is the class every image shares, so training learns
without any box. Each fixed example's digit box stays in ``self.boxes[split]`` for evaluation
(the crop IoU, the gallery) and never enters a batch.
"""

from __future__ import annotations

from typing import Any

import torch

from stnlab.data.digits import DigitDataModule
from stnlab.data.distortions.clutter import Cluttered
from stnlab.data.distortions.warp import DIGIT_SIZE, ink_box
from stnlab.errors import DataSizeError

BOXES = ("frame", "ink")


class ColocalisationMNIST(DigitDataModule):
    """One digit class on a large canvas, for ``LitColocalisation``.

    The split into train/val/test is the other tasks' (same ``split_seed``), then each split
    keeps the digits of ``digit_class`` only (about 350 / 50 / 100 of the 5,000-digit sample).
    The encoder of the co-localisation module is pretrained on the whole training split, every
    class, undistorted: ``encoder_digits()``.

    Args:
        digit_class: the class (0-9) every image shows.
        canvas: side of the square canvas (the paper: 84).
        num_clutter: clutter patches per image; 0 is the paper's translated setting, 16 its
            cluttered one.
        clutter_size: side of a clutter patch (the paper: 6).
        box: the box the crop IoU is measured against: ``frame`` (the 28x28 square the digit was
            pasted in: the paper's "28x28 digit", which a square crop can match) or ``ink`` (the
            digit's tight ink box: a thin "1" then caps the IoU of any square crop near 0.3).
        The others: see ``DigitDataModule``.
    """

    task = "colocalisation"

    def __init__(
        self,
        *,
        digit_class: int = 0,
        canvas: int = 84,
        num_clutter: int = 0,
        clutter_size: int = 6,
        box: str = "frame",
        batch_size: int = 32,
        **kwargs,
    ):
        super().__init__(batch_size=batch_size, **kwargs)
        if isinstance(digit_class, bool) or not isinstance(digit_class, int) or not (
                0 <= digit_class <= 9):
            raise ValueError(f"data.digit_class={digit_class!r} must be a digit 0-9")
        if box not in BOXES:
            raise ValueError(f"data.box={box!r}: use one of {', '.join(BOXES)}")
        self.digit_class, self.box = int(digit_class), box
        self.recipe = Cluttered(canvas=canvas, num_clutter=num_clutter, clutter_size=clutter_size)
        self.distortion_name = "coloc_translated" if self.recipe.num_clutter == 0 else (
            "coloc_cluttered")
        self.encoder_set: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def dims(self) -> tuple[int, int, int]:
        return (1, *self.recipe.out_size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name,
                "distortion_params": {**self.recipe.params(), "digit_class": self.digit_class,
                                      "box": self.box}}

    def _split(self, pool, official_test):
        splits = super()._split(pool, official_test)
        self.encoder_set = splits[0]
        kept = []
        for name, (images, labels) in zip(("train", "val", "test"), splits, strict=True):
            mask = labels == self.digit_class
            if not mask.any():
                raise DataSizeError(f"the {name} split has no digit {self.digit_class}; raise "
                                    f"data.{'val' if name == 'val' else 'test'}_size")
            kept.append((images[mask], labels[mask]))
        return tuple(kept)

    def encoder_digits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole training split, every class, as plain 28x28 digits: uint8 ``(N, 28, 28)``
        and labels (what the co-localisation encoder is pretrained on)."""
        if self.encoder_set is None:
            self.setup("fit")
        return self.encoder_set

    def encoder_background(self, n: int, generator: torch.Generator | None = None
                           ) -> torch.Tensor:
        """``n`` digit-sized (28x28) windows of canvases made without their digit: uint8
        ``(n, 28, 28)``, blank when translated, clutter patches when cluttered. The encoder's
        pretraining learns them as one more class, so that its features tell a digit from the
        canvas around it (a classifier of centred digits alone maps a blank crop close to a
        thin "1")."""
        if self.encoder_set is None:
            self.setup("fit")
        gen = generator or torch.Generator().manual_seed(self.seed + 7)
        digits = self.encoder_set[0]
        idx = torch.randint(len(digits), (n,), generator=gen)
        x = self.recipe.check_input(digits[idx].float().div(255).unsqueeze(1))
        clutter = self.recipe.layout(x, self.recipe.sample_params(n, gen),
                                     with_footprint=False)["clutter"][:, 0]
        h, w = clutter.shape[-2:]
        top = torch.randint(h - DIGIT_SIZE + 1, (n,), generator=gen)
        left = torch.randint(w - DIGIT_SIZE + 1, (n,), generator=gen)
        ar = torch.arange(DIGIT_SIZE)
        rows = (top[:, None] + ar)[:, :, None].expand(-1, -1, DIGIT_SIZE)
        cols = (left[:, None] + ar)[:, None, :].expand(-1, DIGIT_SIZE, -1)
        windows = clutter[torch.arange(n)[:, None, None], rows, cols]
        return windows.mul(255).round().clamp(0, 255).to(torch.uint8)

    def _canvases(self, digits: torch.Tensor, generator: torch.Generator):
        """Canvases and each digit's box ``(x0, y0, x1, y1)`` (inclusive pixels)."""
        x = self.recipe.check_input(digits)
        params = self.recipe.sample_params(x.shape[0], generator)
        parts = self.recipe.layout(x, params, with_footprint=False)
        images = torch.maximum(parts["digit"], parts["clutter"])
        placed, source = ink_box(parts["digit"]), ink_box(x)  # (y0, y1, x0, x1)
        if self.box == "ink":
            return images, placed[:, [2, 0, 3, 1]]
        oy, ox = placed[:, 0] - source[:, 0], placed[:, 2] - source[:, 2]
        last = DIGIT_SIZE - 1
        return images, torch.stack([ox, oy, ox + last, oy + last], 1)

    def make_examples(self, digits, labels, generator):
        return self._canvases(digits, generator)[0], labels[:, 0]

    def make_eval_examples(self, digits, labels, generator):
        images, boxes = self._canvases(digits, generator)
        return images, labels[:, 0], boxes


__all__ = ["ColocalisationMNIST"]
