"""Co-localisation (the paper, section 4): a transformer learns to crop the object that a set of
images share, with no boxes, by a triplet loss on a fixed encoder's features.

For images ``I_n`` and their crops ``I_n^T`` (the net's output), with ``e`` the encoder:
``sum over n, m != n of max(0, ||e(I_n^T) - e(I_m^T)||^2 - ||e(I_n^T) - e(I_n^rand)||^2 + margin)``
(here the mean over the batch's pairs), where ``I_n^rand`` is a crop of ``I_n`` of the same
scale at a random place inside the canvas. Boxes are read only to report the share of crops
whose IoU with the object's box exceeds ``iou_threshold`` (``val/iou_0.5``, ``test/iou_0.5``).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from stnlab.errors import StnlabError
from stnlab.spatial.region import pixel_box_to_normalised, region_box_iou, sampled_region
from stnlab.tasks.base import OptimizerFactory, SchedulerFactory, TaskModule
from stnlab.tasks.pretraining import EncoderPretraining


def triplet_hinge(crops: torch.Tensor, randoms: torch.Tensor, margin: float,
                  detach_partner: bool = False) -> torch.Tensor:
    """Mean over ordered pairs ``n != m`` of ``max(0, d(n, m) - d(n, rand_n) + margin)``, with
    ``d`` the squared distance of the feature rows ``crops`` / ``randoms`` ``(B, D)``.

    ``detach_partner``: the term of anchor ``n`` moves crop ``n`` only (crop ``m`` is its
    target). Where both terms of a pair are active the gradient keeps its direction; where
    only ``n``'s is (``n`` on empty canvas, whose random crop looks like it, ``m`` on the
    digit), ``m`` is no longer pulled off its digit."""
    b = crops.shape[0]
    if b < 2:
        return crops.sum() * 0.0  # no pair: nothing to pull together
    partners = crops.detach() if detach_partner else crops
    pos = (crops[:, None, :] - partners[None, :, :]).pow(2).sum(-1)  # (B, B); no sqrt
    neg = (crops - randoms).pow(2).sum(1, keepdim=True)  # (B, 1)
    hinge = F.relu(pos - neg + margin)
    off = ~torch.eye(b, dtype=torch.bool, device=crops.device)
    return hinge[off].mean()


def random_crop_params(scale: torch.Tensor, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """Attention parameters ``(B, 3)``: the given scales (clamped to (0, 1]) at uniformly random
    centres that keep each crop inside the canvas."""
    s = scale.clamp(1e-3, 1.0)
    u = torch.rand(s.shape[0], 2, generator=generator, device="cpu").to(s)
    return torch.cat([s[:, None], (2 * u - 1) * (1 - s)[:, None]], 1)


class LitColocalisation(TaskModule):
    """Triplet-loss co-localisation around ``net`` (``stnlab.models.CoLocaliser``: ``forward``
    gives the crops, ``crop(x, params)`` crops at given parameters, ``st`` its transformer).

    The encoder is pretrained, then frozen. It is a small CNN (``DigitEncoder`` with a
    temporary linear head) trained for ``encoder_epochs`` on the plain 28x28 digits of the
    training split, every class (``data.encoder_digits()``), and on windows of canvases without
    their digit as one more class (``data.encoder_background()``), in a stage the run fits
    before the main fit (``stages``: a Lightning fit of ``EncoderPretraining``, metrics under
    ``pretrain/``): no pretrained weights can be downloaded here, and the paper's encoder is
    fixed too. Trained jointly, the encoder could lower the loss by telling crops from random
    crops by anything (scale, blur, position of the ink), not by the object, and the loss has
    no term that keeps its features meaningful. A resumed run keeps the checkpoint's encoder
    and fits no stage.

    Metrics: ``{train,val,test}/loss`` (the triplet loss), ``val/iou_0.5`` and
    ``test/iou_0.5`` (share of crops with IoU > ``iou_threshold`` against the fixed sets'
    boxes), ``val/iou_mean``, ``test/iou_mean``, ``val/iou_0.5_best``; ``val/acc``,
    ``test/acc`` and ``test/error`` repeat the IoU share for the task-agnostic parts
    (checkpoint monitor, ``stnlab-report``'s default metric).

    Args:
        net: the co-localisation net.
        num_classes: unused (the data's class count; every image shows one class).
        optimizer, scheduler, loc_lr_mult: as ``TaskModule``.
        encoder: an ``nn.Module`` mapping crops to ``(B, D)`` features (Hydra ``_target_``);
            None: ``DigitEncoder()``.
        margin: the hinge's margin ``alpha`` (features are L2-normalised with ``normalise``,
            so squared distances lie in [0, 4]).
        normalise: L2-normalise the features before the distances.
        encoder_epochs: pretraining epochs of the encoder (0: use it as given, e.g. loaded).
        encoder_lr: Adam learning rate of the pretraining.
        iou_threshold: a crop counts as right above this IoU (the paper: 0.5).
        random_scale: the random crops' scale (None: each image's crop scale).
        anneal_from, anneal_epochs: coarse to fine, see ``max_scale_at``.
        encoder_background: pretrain the encoder on ``data.encoder_background()`` windows
            (canvas without its digit) as one more class, so that its features tell a digit
            from an empty or cluttered crop.
        detach_partner: see ``triplet_hinge`` (without it, crops that drifted onto empty
            canvas pull the others after them).
    """

    task = "colocalisation"
    best_metric = "val/iou_0.5_best"
    """The name under which ``stnlab.run.train`` records ``val_acc_best`` in results.json."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        loc_lr_mult: float = 1.0,
        encoder: nn.Module | None = None,
        margin: float = 1.0,
        normalise: bool = True,
        encoder_epochs: int = 2,
        encoder_lr: float = 1e-3,
        iou_threshold: float = 0.5,
        random_scale: float | None = None,
        anneal_from: float | None = None,
        anneal_epochs: int = 0,
        encoder_background: bool = True,
        detach_partner: bool = True,
    ):
        super().__init__(net, optimizer, scheduler, loc_lr_mult)
        for name in ("crop", "st"):
            if not hasattr(net, name):
                raise ValueError(f"LitColocalisation needs a net with .{name} (a CoLocaliser: "
                                 f"model=colocaliser), got {type(net).__name__}")
        if margin <= 0:
            raise ValueError(f"module.margin={margin} must be > 0")
        if encoder_epochs < 0:
            raise ValueError(f"module.encoder_epochs={encoder_epochs} must be >= 0")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"module.iou_threshold={iou_threshold} must be in (0, 1)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "encoder"],
                                  logger=False)
        if encoder is None:
            from stnlab.models.colocalisation import DigitEncoder

            encoder = DigitEncoder(in_channels=net.st.in_channels, in_size=net.st.out_size)
        self.encoder = encoder
        self.margin, self.normalise = float(margin), bool(normalise)
        self.encoder_epochs, self.encoder_lr = int(encoder_epochs), float(encoder_lr)
        self.encoder_background = bool(encoder_background)
        self.detach_partner = bool(detach_partner)
        self.iou_threshold = float(iou_threshold)
        if random_scale is not None and not 0.0 < random_scale <= 1.0:
            raise ValueError(f"module.random_scale={random_scale} must be in (0, 1] or null")
        self.random_scale = None if random_scale is None else float(random_scale)
        family = net.st.transform
        self.final_max_scale = float(getattr(family, "max_scale", 1.0))
        if anneal_from is not None and anneal_epochs > 0:
            if not hasattr(family, "max_scale") or anneal_from < self.final_max_scale:
                raise ValueError(f"module.anneal_from={anneal_from} needs a crop family with "
                                 f"max_scale (CoLocaliser) and >= model.max_scale="
                                 f"{self.final_max_scale}")
        self.anneal_from = None if anneal_from is None else float(anneal_from)
        self.anneal_epochs = int(anneal_epochs)
        self.register_buffer("encoder_ready", torch.tensor(False))  # restored on resume
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()  # the name stnlab.run.train reads
        self.val_acc_best.persistent(True)

    # -- the encoder ----------------------------------------------------------------------
    def _freeze_encoder(self) -> None:
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def stages(self, data) -> list[pl.LightningModule]:
        """What the run fits before this module (``stnlab.run.stages``): the encoder's
        pretraining on ``data.encoder_digits()``, plus ``data.encoder_background()`` windows
        (uint8, no digit) as one more class; none once the encoder is ready."""
        if bool(self.encoder_ready) or self.encoder_epochs == 0:
            return []
        if not hasattr(data, "encoder_digits"):
            raise StnlabError(f"{type(data).__name__} has no encoder_digits(): pretrain the "
                              "encoder elsewhere and set module.encoder_epochs=0")
        images, labels = data.encoder_digits()
        if self.encoder_background and hasattr(data, "encoder_background"):
            background = data.encoder_background(max(1, len(labels) // 10))
            images = torch.cat([images, background])
            labels = torch.cat([labels.long(), labels.new_full((len(background),),
                                                               int(labels.max()) + 1).long()])
        return [EncoderPretraining(self.encoder, images, labels, self.encoder_epochs,
                                   self.encoder_lr, tuple(self.net.st.out_size),
                                   ready=self.encoder_ready)]

    def setup(self, stage: str) -> None:
        # frozen before Lightning wraps the module: DDP expects a gradient for every parameter
        # that requires one when it wraps
        self._freeze_encoder()

    def on_fit_start(self) -> None:  # after a resumed run's checkpoint is loaded
        if not bool(self.encoder_ready) and self.encoder_epochs > 0:
            raise ValueError("the co-localisation encoder is not pretrained: fit the module's "
                             "stages first (stnlab.run.stages.run_stages; stnlab-train does), "
                             "or set module.encoder_epochs=0 for an encoder given trained")
        self.encoder_ready.fill_(True)

    def max_scale_at(self, epoch: int) -> float:
        """The crops' largest scale in ``epoch``: from ``anneal_from`` down to the model's
        ``max_scale`` linearly over ``anneal_epochs`` (coarse to fine), then constant."""
        if self.anneal_from is None or self.anneal_epochs <= 0 or epoch >= self.anneal_epochs:
            return self.final_max_scale
        t = epoch / self.anneal_epochs
        return self.anneal_from + t * (self.final_max_scale - self.anneal_from)

    def on_train_epoch_start(self) -> None:
        if hasattr(self.net.st.transform, "max_scale"):
            self.net.st.transform.max_scale = self.max_scale_at(self.current_epoch)

    def on_fit_end(self) -> None:
        if hasattr(self.net.st.transform, "max_scale"):
            self.net.st.transform.max_scale = self.final_max_scale

    def train(self, mode: bool = True):
        super().train(mode)
        if bool(self.encoder_ready):
            self.encoder.eval()  # frozen: batch norm or dropout in it stay in eval mode
        return self

    # -- the loss ----------------------------------------------------------------------------
    def features(self, crops: torch.Tensor) -> torch.Tensor:
        f = self.encoder(crops).flatten(1)
        return F.normalize(f, dim=1) if self.normalise else f

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        crops = self.net(x)
        scale = self.net.last_scale()
        if self.random_scale is not None:
            scale = torch.full_like(scale, self.random_scale)
        randoms = self.net.crop(x, random_crop_params(scale))
        return triplet_hinge(self.features(crops), self.features(randoms), self.margin,
                             self.detach_partner)

    def training_step(self, batch, batch_idx: int):
        x, _ = batch
        loss = self._loss(x)
        self.check_finite(loss, batch_idx)
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_spatial_diagnostics()
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_loss(self._loss(batch[0]))
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.test_loss(self._loss(batch[0]))
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)

    # -- evaluation against the boxes -------------------------------------------------------
    @torch.no_grad()
    def crop_ious(self, images: torch.Tensor, boxes: torch.Tensor,
                  batch_size: int = 500) -> torch.Tensor:
        """IoU ``(N,)`` of each image's crop with its box (pixel ``(x0, y0, x1, y1)``)."""
        st = self.net.st
        out = []
        for x, b in zip(images.split(batch_size), boxes.split(batch_size), strict=True):
            region = sampled_region(st.transform, st.loc(x.to(self.device)).float())
            box = pixel_box_to_normalised(b.to(region.device), x.shape[-2:]).to(region.dtype)
            out.append(region_box_iou(region, box))
        return torch.cat(out) if out else torch.zeros(0)

    def _iou_metrics(self, split: str) -> dict[str, float]:
        data = self.trainer.datamodule
        images, boxes = data.fixed_batch(split)
        if boxes is None:
            raise ValueError(f"{type(data).__name__} keeps no {split} boxes: co-localisation "
                             "is measured against data.boxes (data=colocalisation)")
        ious = self.crop_ious(images, boxes)
        return {"share": float((ious > self.iou_threshold).float().mean()),
                "mean": float(ious.mean())}

    def on_validation_epoch_end(self) -> None:
        m = self._iou_metrics("val")
        share = torch.tensor(m["share"])
        self.log_dict({"val/iou_0.5": share, "val/iou_mean": m["mean"], "val/acc": share},
                      prog_bar=True)
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(share)
        self.log("val/iou_0.5_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        m = self._iou_metrics("test")
        self.log_dict({"test/iou_0.5": m["share"], "test/iou_mean": m["mean"],
                       "test/acc": m["share"], "test/error": 1.0 - m["share"]})


__all__ = ["LitColocalisation", "random_crop_params", "triplet_hinge"]
