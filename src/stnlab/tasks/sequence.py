"""Digit sequences (multi-digit MNIST, SVHN): a length head and one head per position, the sum
of their cross-entropies, and the sequence accuracy (right only when the length and every digit
are)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from stnlab.tasks.base import OptimizerFactory, SchedulerFactory, TaskModule


def sequence_outputs(out) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the net's output contract: ``(length logits (B, L + 1), digit logits (B, L, C))``."""
    if not (isinstance(out, tuple | list) and len(out) == 2 and out[0].dim() == 2
            and out[1].dim() == 3 and out[0].shape[1] == out[1].shape[1] + 1):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"LitSequence needs a net returning (length logits (B, L+1), digit "
                         f"logits (B, L, C)), got {got}; use a sequence model "
                         "(model=seq_cnn, seq_st_cnn_single, seq_st_cnn_multi)")
    return out[0], out[1]


@torch.no_grad()
def sequence_correct(length_logits: torch.Tensor, digit_logits: torch.Tensor,
                     targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example correctness against ``targets`` (B, 1 + L): ``seq`` (the predicted length is
    the true one and every digit up to it is right; what follows the end is not read),
    ``length`` and, over the true digits only, ``digits`` (flat, one entry a digit)."""
    lengths, digits = targets[:, 0], targets[:, 1:]
    length_ok = length_logits.argmax(1) == lengths
    within = torch.arange(digits.shape[1], device=digits.device)[None] < lengths[:, None]
    digit_ok = digit_logits.argmax(2) == digits
    seq_ok = length_ok & (digit_ok | ~within).all(1)
    return {"seq": seq_ok.float(), "length": length_ok.float(),
            "digits": digit_ok[within].float()}


class LitSequence(TaskModule):
    """Sequence reader around ``net`` (see ``stnlab.models.sequence`` for the output contract).

    Loss: cross-entropy of the length head plus that of every position (blank after the end).
    Metrics per stage (``train``, ``val``, ``test``): ``loss``, ``seq_acc``, ``length_acc``,
    ``digit_acc`` (the true digits only); ``val/seq_acc_best`` (kept in checkpoints);
    ``test/seq_error``. ``val/acc``, ``test/acc`` and ``test/error`` repeat the sequence figures
    so that task-agnostic parts (the checkpoint's and early stopping's ``monitor: val/acc``,
    ``stnlab-report``'s default metric) work unchanged.

    Args:
        net: a module with the sequence output contract.
        num_classes: classes of a position (10 digits + blank).
        optimizer, scheduler, loc_lr_mult: as ``TaskModule``.
        label_smoothing: of the training loss only, as ``LitClassifier``.
    """

    task = "sequence"
    best_metric = "val/seq_acc_best"
    """The name under which ``stnlab.run.train`` records ``val_acc_best`` in results.json."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 11,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        loc_lr_mult: float = 1.0,
        label_smoothing: float = 0.1,
    ):
        super().__init__(net, optimizer, scheduler, loc_lr_mult)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"module.label_smoothing={label_smoothing} must be in [0, 1)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        names = ("loss", "seq_acc", "length_acc", "digit_acc")
        self.train_metrics = nn.ModuleDict({name: MeanMetric() for name in names})
        self.val_metrics = nn.ModuleDict({name: MeanMetric() for name in names})
        self.test_metrics = nn.ModuleDict({name: MeanMetric() for name in names})
        self.val_acc_best = MaxMetric()  # the name stnlab.run.train reads
        self.val_acc_best.persistent(True)  # saved in checkpoints: a resumed run keeps its best

    def loss(self, length_logits, digit_logits, targets, smoothing: float = 0.0):
        """Length cross-entropy + the sum over positions of the digit cross-entropies."""
        if targets.dim() != 2 or targets.shape[1] != digit_logits.shape[1] + 1:
            raise ValueError(f"sequence targets {tuple(targets.shape)} do not fit a net with "
                             f"{digit_logits.shape[1]} positions: set model.max_length to the "
                             "data's max_length")
        length = F.cross_entropy(length_logits, targets[:, 0], label_smoothing=smoothing)
        digits = F.cross_entropy(digit_logits.flatten(0, 1), targets[:, 1:].flatten(),
                                 label_smoothing=smoothing)
        return length + digits * digit_logits.shape[1]

    def _step(self, batch, stage: str, batch_idx: int):
        x, targets = batch
        length_logits, digit_logits = sequence_outputs(self(x))
        smoothing = self.label_smoothing if stage == "train" else 0.0
        loss = self.loss(length_logits, digit_logits, targets, smoothing)
        if stage == "train":
            self.check_finite(loss, batch_idx)
        ok = sequence_correct(length_logits, digit_logits, targets)
        m = getattr(self, f"{stage}_metrics")
        m["loss"](loss)
        m["seq_acc"](ok["seq"])
        m["length_acc"](ok["length"])
        if ok["digits"].numel():
            m["digit_acc"](ok["digits"])
        bar = {"loss", "seq_acc"}
        for name, metric in m.items():
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=name in bar)
        return loss

    def training_step(self, batch, batch_idx: int):
        loss = self._step(batch, "train", batch_idx)
        self.log_spatial_diagnostics()
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_metrics["seq_acc"].compute()
        self.log("val/acc", acc, sync_dist=True)  # what the checkpoint callback monitors
        if self.trainer.sanity_checking:  # not a result; a resumed run keeps its restored best
            return
        self.val_acc_best(acc)
        self.log("val/seq_acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test", batch_idx)

    def on_test_epoch_end(self) -> None:
        acc = self.test_metrics["seq_acc"].compute()
        self.log_dict({"test/seq_error": 1.0 - acc, "test/acc": acc, "test/error": 1.0 - acc},
                      sync_dist=True)
