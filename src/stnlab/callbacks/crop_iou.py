"""Where the input transformer looks: the IoU of its sampled region with the object's box.

The DataModule gives its fixed examples' boxes through ``fixed_batch`` (evaluation only; a
DataModule without boxes gets no IoU); this callback reads the warp parameters that the
transformers acting on the image computed in the evaluation pass itself (no second pass of
their localisation nets) and logs, per transformer, ``st/iou`` (mean IoU of the sampled region
with the box) and ``st/area`` (mean share of the canvas it samples) after every validation
epoch, and ``test/st_iou``, ``test/st_area`` after testing (so they reach ``results.json``).
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
import torch

from stnlab.spatial import spatial_transformers
from stnlab.spatial.region import (
    pixel_box_to_normalised,
    region_area_fraction,
    region_box_iou,
    sampled_region,
)


@torch.no_grad()
def crop_iou(st, images: torch.Tensor, boxes: torch.Tensor,
             batch_size: int = 500) -> tuple[float, float]:
    """Mean IoU with ``boxes`` (pixel ``(x0, y0, x1, y1)``, inclusive) and mean canvas share of
    the regions that the transformer ``st`` samples from ``images``."""
    ious, areas = [], []
    device = next(st.parameters()).device
    for x, b in zip(images.split(batch_size), boxes.split(batch_size), strict=True):
        region = sampled_region(st.transform, st.loc(x.to(device)).float())
        box = pixel_box_to_normalised(b.to(device), x.shape[-2:]).to(region.dtype)
        ious.append(region_box_iou(region, box))
        areas.append(region_area_fraction(region))
    return float(torch.cat(ious).mean()), float(torch.cat(areas).mean())


log = logging.getLogger(__name__)

MAX_BYTES = 1 << 30
"""The measured examples' inputs are held for an epoch: the first ones of a split that fit in
this many bytes (every MNIST set whole; 448-px CUB images: the first ~440)."""


class CropIoU(pl.Callback):
    """Logs ``st/iou`` and ``st/area`` (``st/<i>/...`` for several transformers) on the
    validation set, ``test/st_iou`` and ``test/st_area`` on the test set, for data whose
    ``fixed_batch`` has boxes (one digit a 2-D image: R, RTS, P, E, cluttered; co-localisation;
    CUB's birds); otherwise nothing.

    The regions come from each evaluation batch's own forward pass (``st.last_params``), the
    boxes from ``fixed_batch`` in loader order. Where the batches do not cover the measured
    examples in order (several processes, a limited number of batches), the epoch's end runs
    the localisation nets over them instead (``crop_iou``), so the figure is always theirs: the
    whole split, or its first examples whose inputs fit in ``max_bytes``.
    """

    def __init__(self, batch_size: int = 500, max_bytes: int = MAX_BYTES):
        self.batch_size, self.max_bytes = int(batch_size), int(max_bytes)
        self._fixed = None  # this epoch's _fixed_set
        self._sums: dict[int, list[float]] = {}
        self._seen = 0

    def _fixed_set(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str):
        """``(images, boxes, transformers on the image)`` of ``split``'s measured examples;
        ``None`` without boxes or without a transformer on the image."""
        fixed_batch = getattr(trainer.datamodule, "fixed_batch", None)
        if fixed_batch is None:
            return None
        probe, boxes = fixed_batch(split, 0)
        if boxes is None:
            return None
        sts = [st for st in spatial_transformers(pl_module)
               if st.in_channels == probe.shape[1] and st.in_size == tuple(probe.shape[2:])]
        if not sts:
            return None
        per_example = max(1, probe.element_size() * math.prod(probe.shape[1:]))
        cap = max(1, self.max_bytes // per_example)
        images, boxes = fixed_batch(split, cap)
        if len(images) == cap and not getattr(self, f"_said_{split}", False):
            setattr(self, f"_said_{split}", True)  # once a split, not every epoch
            log.info("st/iou on %s: its first %d examples (callbacks.crop_iou.max_bytes=%d)",
                     split, cap, self.max_bytes)
        return images, boxes, sts

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        # the sanity check logs nothing: fetch nothing for it
        self._fixed = None if trainer.sanity_checking else self._fixed_set(trainer, pl_module,
                                                                            split)
        self._sums = {} if self._fixed is None else {i: [0.0, 0.0]
                                                      for i in range(len(self._fixed[2]))}
        self._seen = 0 if trainer.world_size == 1 else -1  # -1: batches not in set order

    def _batch(self, batch, dataloader_idx: int) -> None:
        if self._fixed is None or self._seen < 0 or self._seen >= len(self._fixed[1]):
            return
        _, boxes, sts = self._fixed
        x = batch[0]
        n, start = x.shape[0], self._seen
        if dataloader_idx or any(
                st.last_params is None or st.last_params.shape[0] != n for st in sts):
            self._seen = -1
            return
        k = min(n, len(boxes) - start)  # past the measured examples: not counted
        for i, st in enumerate(sts):
            region = sampled_region(st.transform, st.last_params[:k].float())
            box = pixel_box_to_normalised(boxes[start:start + k].to(region.device),
                                          x.shape[-2:]).to(region.dtype)
            self._sums[i][0] += float(region_box_iou(region, box).double().sum())
            self._sums[i][1] += float(region_area_fraction(region).double().sum())
        self._seen = start + k

    def _measure(self, pl_module: pl.LightningModule) -> dict[str, tuple[float, float]]:
        if self._fixed is None:
            return {}
        images, boxes, sts = self._fixed
        prefix = (lambda i: "") if len(sts) == 1 else (lambda i: f"{i}/")
        if self._seen == len(boxes) and len(self._sums) == len(sts):
            return {prefix(i): (iou / self._seen, area / self._seen)
                    for i, (iou, area) in self._sums.items()}
        was_training = pl_module.training
        pl_module.eval()
        try:
            return {prefix(i): crop_iou(st, images, boxes, self.batch_size)
                    for i, st in enumerate(sts)}
        finally:
            pl_module.train(was_training)

    def on_validation_epoch_start(self, trainer: pl.Trainer,
                                  pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch(batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for key, (iou, area) in self._measure(pl_module).items():
            pl_module.log(f"st/{key}iou", iou)
            pl_module.log(f"st/{key}area", area)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                          outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch(batch, dataloader_idx)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, (iou, area) in self._measure(pl_module).items():
            pl_module.log(f"test/st_{key}iou", iou)
            pl_module.log(f"test/st_{key}area", area)
