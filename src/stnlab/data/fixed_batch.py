"""``FixedBatch``: what callbacks and evaluation code may know of a DataModule's data.

One method, ``fixed_batch(split, n)``: the first ``n`` examples of the validation or test set,
evaluation-ready (as the model sees them, on the CPU), and their evaluation-only boxes where the
data has them. The gallery, the crop IoU and co-localisation read the data through it alone, so
they work on every DataModule, the user's own images included, without knowing how a data set
stores its examples (in-memory tensors, image files decoded on access, uint8 crops).
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

SPLITS = ("val", "test")


class FixedBatch:
    """Mixin for a ``LightningDataModule`` with ``val_set`` / ``test_set`` datasets of
    ``(input, target)`` items, made evaluation-ready by ``on_after_batch_transfer``.

    Boxes come from ``eval_boxes`` (default: ``self.boxes[split]``, where the DataModule keeps
    pixel boxes of its fixed sets); a DataModule whose boxes need converting overrides it.
    """

    def fixed_batch(self, split: str = "val", n: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first ``n`` (None: all) inputs of ``split`` exactly as the model sees them in
        evaluation (float, on the CPU; the same ones every call) and their boxes ``(n, 4)``
        ``(x0, y0, x1, y1)`` in inclusive pixels of those inputs, or None where the data has
        none (evaluation only: no training batch carries them). ``n`` = 0 gives empty tensors
        of the right shape at the cost of one example. Do not modify the result in place."""
        if split not in SPLITS:
            raise ValueError(f"fixed_batch: split={split!r} is not one of {', '.join(SPLITS)}")
        dataset = getattr(self, f"{split}_set", None)
        if dataset is None:
            self.setup("validate" if split == "val" else "test")
            dataset = getattr(self, f"{split}_set")
        total = len(dataset)
        n = total if n is None else max(0, min(int(n), total))
        k = max(n, 1) if total else 0  # one example at least, for the shape of an empty batch
        if hasattr(dataset, "tensors"):  # in memory: views, no copy
            batch = tuple(t[:k] for t in dataset.tensors)
        else:
            batch = default_collate([dataset[i] for i in range(k)])
        inputs = self.on_after_batch_transfer(tuple(batch[:2]), 0)[0][:n]
        boxes = self.eval_boxes(split, n)
        return inputs, None if boxes is None else boxes[:n]

    def eval_boxes(self, split: str, n: int) -> torch.Tensor | None:
        """The first ``n`` boxes of ``split`` in the inputs' pixels (``fixed_batch``), or None."""
        boxes = getattr(self, "boxes", {}).get(split)
        return None if boxes is None else boxes[:n]


__all__ = ["FixedBatch"]
