"""What every task's LightningModule shares: the net, optimiser parameter groups (the
localisation nets at their own learning-rate multiplier), the per-step scheduler, the
non-finite-loss stop and the spatial transformers' ``st/`` diagnostics."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterable
from typing import ClassVar

import pytorch_lightning as pl
import torch
from torch import nn

from stnlab.spatial import localisation_parameters

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TaskModule(pl.LightningModule):
    """Base of the task modules; a subclass sets ``task`` (the kind of batch it trains on, matched
    against the DataModule's ``task``) and implements the steps.

    Args:
        net: any ``nn.Module``; spatial transformers inside it are found through
            ``stnlab.spatial.localisation_parameters``.
        optimizer: a partial taking parameter groups (Hydra ``_partial_: true``).
        scheduler: optional partial taking the optimizer; stepped every iteration, as the paper's
            schedule is in iterations. ``total_steps`` and a per-group ``max_lr`` are filled in.
        loc_lr_mult: learning-rate multiplier of the localisation networks (0 freezes them).
        compile: ``torch.compile`` the net (in place, ``nn.Module.compile``: checkpoints keep
            their parameter names) when the trainer sets the model up. Pays off on a GPU with
            long runs; the first steps wait for the compilation (needs a C compiler on CPU).
    """

    task: ClassVar[str] = ""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        loc_lr_mult: float = 1.0,
        compile: bool = False,
    ):
        super().__init__()
        if not isinstance(compile, bool):
            raise ValueError(f"module.compile={compile!r} must be true or false")
        if loc_lr_mult < 0:
            raise ValueError(f"module.loc_lr_mult={loc_lr_mult} must be >= 0 (0 freezes the ST)")
        self.net = net
        self.optimizer_factory = optimizer or (lambda p: torch.optim.SGD(p, lr=0.01))
        self.scheduler_factory = scheduler
        self.loc_lr_mult = loc_lr_mult
        self.compile_net = compile  # not ``self.compile``: that is nn.Module's method
        self._frozen_warned: set[str] = set()

    def configure_model(self) -> None:
        """Lightning's hook before fit/validate/test (on the training device): compile the net
        once, with ``compile=True``."""
        if self.compile_net and not getattr(self.net, "_stnlab_compiled", False):
            self.net.compile()
            self.net._stnlab_compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Stop with a message that names the fixes once the training loss is NaN or inf."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}). The last good checkpoint is in "
                "the run's checkpoints/ folder. Lower optimizer.lr or module.loc_lr_mult, or "
                "bound the transformer's parameters."
            )

    def log_spatial_diagnostics(self) -> None:
        """Every ``log_every_n_steps`` training steps: the ``st/`` metrics, and the frozen-net
        warning."""
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            diagnostics = self.spatial_diagnostics()
            self.log_dict(diagnostics, on_step=True, on_epoch=False)
            self._warn_if_frozen(diagnostics)

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
