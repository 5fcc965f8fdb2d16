"""The one classification LightningModule: any ``net`` in, loss + torchmetrics + optimisers out."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from stnlab.spatial import localisation_parameters

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class LitClassifier(pl.LightningModule):
    """Cross-entropy classifier around ``net``.

    Args:
        net: any ``nn.Module`` mapping images to logits; spatial transformers inside it are found
            through ``stnlab.spatial.localisation_parameters``.
        num_classes: number of classes of the task.
        optimizer: a partial taking parameter groups (Hydra ``_partial_: true``).
        scheduler: optional partial taking the optimizer; stepped every iteration, as the paper's
            schedule is in iterations. ``total_steps`` and a per-group ``max_lr`` are filled in.
        loc_lr_mult: learning-rate multiplier of the localisation networks. 1.0 suits Adam
            (the default optimiser); with SGD at a high rate the transformer can collapse
            (zoom out) and 0.1, the paper's SVHN setting, is safer (``experiment=table1``).
        label_smoothing: of the training loss only (validation and test report plain
            cross-entropy). 0.1 took the RTS ST-CNN from 2.6% to 1.8% in the bare-loop
            calibration (3 seeds, docs/results.md); ``experiment=table1`` sets 0, as the paper.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        loc_lr_mult: float = 1.0,
        label_smoothing: float = 0.1,
    ):
        super().__init__()
        if loc_lr_mult < 0:
            raise ValueError(f"module.loc_lr_mult={loc_lr_mult} must be >= 0 (0 freezes the ST)")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"module.label_smoothing={label_smoothing} must be in [0, 1)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer or (lambda p: torch.optim.SGD(p, lr=0.01))
        self.scheduler_factory = scheduler
        self.loc_lr_mult = loc_lr_mult
        self.label_smoothing = float(label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints: a resumed run keeps its best
        self._frozen_warned: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch):
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y), logits, y

    def training_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with ``label_smoothing``; evaluation reports the plain one."""
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = self.training_loss(logits, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}). The last good checkpoint is in "
                "the run's checkpoints/ folder. Lower optimizer.lr or module.loc_lr_mult, or "
                "bound the transformer's parameters."
            )
        self.train_loss(loss)
        self.train_acc(logits, y)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            diagnostics = self.spatial_diagnostics()
            self.log_dict(diagnostics, on_step=True, on_epoch=False)
            self._warn_if_frozen(diagnostics)
        return loss

    def spatial_diagnostics(self) -> dict[str, float]:
        """``st/`` metrics of every spatial transformer from its last forward pass."""
        sts = self.net.spatial_transformers() if hasattr(self.net, "spatial_transformers") else []
        out = {}
        for i, st in enumerate(sts):
            prefix = "st/" if len(sts) == 1 else f"st/{i}/"
            out.update({prefix + k: float(v) for k, v in st.diagnostics().items()})
        return out

    def _warn_if_frozen(self, diagnostics: dict[str, float]) -> None:
        """Warn once per transformer whose warp stopped depending on the image: after the first
        step, a batch spread of exactly 0 means every unit of its localisation net's last hidden
        layer is dead (ReLU), so the net can no longer learn (cluttered MNIST, docs/results.md)."""
        if self.global_step == 0:  # identity init: every image gets the same warp by design
            return
        for key, value in diagnostics.items():
            if key.endswith("params_std") and value == 0.0 and key not in self._frozen_warned:
                self._frozen_warned.add(key)
                log.warning(
                    "%s = 0 at step %d: the spatial transformer applies the same warp to every "
                    "image; its localisation net's ReLUs died and it will not learn again. Batch "
                    "norm in the localisation net keeps them alive (+model.loc_kwargs.norm=true, "
                    "as in model=st_cnn_att); or lower module.loc_lr_mult or optimizer.lr.",
                    key, self.global_step,
                )

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_loss(loss)
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # not a result; a resumed run keeps its restored best
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_loss(loss)
        self.test_acc(logits, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/error", 1.0 - self.test_acc.compute(), sync_dist=True)

    def configure_optimizers(self):
        loc = list(localisation_parameters(self.net))
        loc_ids = {id(p) for p in loc}
        rest = [p for p in self.net.parameters() if id(p) not in loc_ids]
        groups = [{"params": rest, "name": "net"}]
        if loc:
            groups.append({"params": loc, "name": "loc"})
        optimizer = self.optimizer_factory(groups)
        if loc:
            optimizer.param_groups[1]["lr"] *= self.loc_lr_mult
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        sig = inspect.signature(getattr(self.scheduler_factory, "func", self.scheduler_factory))
        keywords = getattr(self.scheduler_factory, "keywords", {})
        if "total_steps" in sig.parameters and keywords.get("total_steps") is None:
            total = self.trainer.estimated_stepping_batches
            # one-cycle divides by its phase lengths: very short (debug) runs get at least 10 steps
            kwargs["total_steps"] = max(10, int(total)) if math.isfinite(total) else None
        if "max_lr" in sig.parameters and "max_lr" not in keywords:
            kwargs["max_lr"] = [g["lr"] for g in optimizer.param_groups]  # keeps loc_lr_mult
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
