"""``MultiDigitMNIST``: sequences of digits side by side, an offline twin of SVHN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from stnlab.data.digits import DigitDataModule
from stnlab.data.distortions import SequenceBuilder, sequence_targets


class MultiDigitMNIST(DigitDataModule):
    """Multi-digit sequences, an offline twin of SVHN's multi-digit task.

    Each example is ``min_length``..``max_length`` MNIST digits (length uniform) side by side
    with jitter on a ``canvas`` x ``canvas`` image (``make_sequence``; ``scale``, ``gap`` and
    ``jitter`` as in ``SequenceBuilder``). Batches are ``(images (B, 1, canvas, canvas),
    targets (B, 1 + max_length) int64)``: column 0 is the length, then the digits, ``blank``
    (10) after the sequence's end (SVHN's convention).

    One label per digit position (``num_classes`` = 11 per position, blank included) plus the
    length: ``stnlab.tasks.LitSequence`` trains it (``data=multidigit`` selects
    ``module=sequence``) with the sequence models of ``stnlab.models.sequence``.
    """

    task = "sequence"
    distortion_name = "multidigit"

    def __init__(
        self,
        *,
        min_length: int = 1,
        max_length: int = 5,
        canvas: int = 64,
        scale: Sequence[float] = (0.8, 1.6),
        gap: Sequence[float] = (0.0, 4.0),
        jitter: float = 3.0,
        blank: int = 10,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for field, value in (("min_length", min_length), ("max_length", max_length),
                             ("blank", blank)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"multidigit: {field}={value!r} must be an integer")
        if not 1 <= min_length <= max_length:
            raise ValueError(f"multidigit: min_length={min_length}, max_length={max_length}: "
                             "need 1 <= min_length <= max_length")
        if 0 <= blank <= 9:
            raise ValueError(f"multidigit: blank={blank} is a digit class; use blank=10")
        try:
            self.builder = SequenceBuilder(canvas=canvas, scale=scale, gap=gap, jitter=jitter)
        except ValueError as err:
            raise ValueError(str(err).replace("sequence:", "multidigit:", 1)) from None
        self.min_length, self.max_length, self.blank = min_length, max_length, blank
        self.group_size = max_length
        self.num_classes = blank + 1

    @property
    def dims(self) -> tuple[int, int, int]:
        return (1, *self.builder.out_size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name,
                "distortion_params": {**self.builder.params(), "min_length": self.min_length,
                                      "max_length": self.max_length, "blank": self.blank}}

    def make_examples(self, digits, labels, generator):
        lengths = torch.randint(self.min_length, self.max_length + 1, (len(digits),),
                                generator=generator)
        images = self.builder(digits, lengths, generator)
        lengths = lengths.to(labels.device)
        targets = sequence_targets(labels, lengths, blank=self.blank)
        return images, torch.cat([lengths[:, None], targets], dim=1)
