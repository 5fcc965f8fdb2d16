"""Where the input transformer looks: the IoU of its sampled region with the digit's box.

The DataModule keeps each fixed example's digit box (``data.boxes[split]``, evaluation only);
this callback runs the localisation nets of the transformers that act on the image over the
fixed set and logs, per transformer, ``st/iou`` (mean IoU of the sampled region with the box)
and ``st/area`` (mean share of the canvas it samples) after every validation epoch, and
``test/st_iou``, ``test/st_area`` after testing (so they reach ``results.json``).
"""

from __future__ import annotations

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


class CropIoU(pl.Callback):
    """Logs ``st/iou`` and ``st/area`` (``st/<i>/...`` for several transformers) on the
    validation set, ``test/st_iou`` and ``test/st_area`` on the test set, for data whose fixed
    sets carry digit boxes (one digit a 2-D image: R, RTS, P, E, cluttered); otherwise nothing.
    """

    def __init__(self, batch_size: int = 500):
        self.batch_size = int(batch_size)

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                 split: str) -> dict[str, tuple[float, float]]:
        data = trainer.datamodule
        boxes = getattr(data, "boxes", {}).get(split)
        dataset = getattr(data, f"{split}_set", None)
        if boxes is None or dataset is None:
            return {}
        images = dataset.tensors[0]
        sts = [st for st in spatial_transformers(pl_module)
               if st.in_channels == images.shape[1] and st.in_size == tuple(images.shape[2:])]
        prefix = (lambda i: "") if len(sts) == 1 else (lambda i: f"{i}/")
        was_training = pl_module.training
        pl_module.eval()
        try:
            return {prefix(i): crop_iou(st, images, boxes, self.batch_size)
                    for i, st in enumerate(sts)}
        finally:
            pl_module.train(was_training)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for key, (iou, area) in self._measure(trainer, pl_module, "val").items():
            pl_module.log(f"st/{key}iou", iou)
            pl_module.log(f"st/{key}area", area)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, (iou, area) in self._measure(trainer, pl_module, "test").items():
            pl_module.log(f"test/st_{key}iou", iou)
            pl_module.log(f"test/st_{key}area", area)
