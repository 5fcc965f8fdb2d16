"""``DistortedMNIST``: one digit (or two, for ``addition``) per example, with one of the
paper's distortions; the label is the digit (or the sum)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stnlab.data.digits import DigitDataModule
from stnlab.data.distortions import make_distortion


class DistortedMNIST(DigitDataModule):
    """MNIST digits with one of the paper's distortions (``data.distortion``).

    ``distortion=addition`` is the paper's MNIST addition task: each example stacks a digit and
    a seeded random partner as two channels, each RTS-distorted on its own (2 x 42 x 42), and
    its label is their sum (19 classes).

    Args:
        distortion: a name from ``stnlab.data.distortions.DISTORTIONS``; ``distortion_params``
            overrides its defaults. Both are checked here, before any data is loaded.
        The others: see ``DigitDataModule``.
    """

    def __init__(
        self,
        *,
        distortion: str = "RTS",
        distortion_params: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if distortion_params is not None and not isinstance(distortion_params, Mapping):
            raise ValueError(f"distortion_params={distortion_params!r} must be a mapping of "
                             "parameters, e.g. data.distortion_params={scale:[0.8,1.0]}")
        self.distortion = make_distortion(distortion, **dict(distortion_params or {}))
        self.distortion_name = distortion
        # one digit per input channel; the label is their sum (K digits: 9K + 1 classes)
        self.group_size = self.distortion.in_channels
        self.num_classes = 9 * self.group_size + 1

    @property
    def dims(self) -> tuple[int, int, int]:
        return (self.distortion.out_channels, *self.distortion.out_size)

    def spec(self) -> dict[str, Any]:
        return {"distortion": self.distortion_name, "distortion_params": self.distortion.params()}

    def make_examples(self, digits, labels, generator):
        return self.distortion(digits, generator), labels.sum(dim=1)

    def make_eval_examples(self, digits, labels, generator):
        images, boxes = self.distortion.with_boxes(digits, generator)
        return images, labels.sum(dim=1), boxes
