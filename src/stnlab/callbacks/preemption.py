"""Preemption: on SIGUSR1 / SIGTERM, write ``last.ckpt`` at the next batch boundary and stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class Preempted(SystemExit):
    """Raised once the preemption checkpoint is written: exit status 128 + the signal's number."""


def parse_signal(name: str) -> signal.Signals:
    """``"SIGUSR1"``, ``"USR1"`` or ``"usr1"`` -> ``signal.SIGUSR1``."""
    full = "SIG" + str(name).upper().removeprefix("SIG")
    sig = getattr(signal.Signals, full, None)
    if sig is None or sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"callbacks.preemption.signals: {name!r} is not a signal that can be "
                         "caught; use names such as SIGUSR1, SIGUSR2, SIGTERM")
    return sig


class PreemptionCheckpoint(pl.Callback):
    """On a preemption signal, checkpoint at the next batch boundary, then stop the run.

    A scheduler warns a job before it kills it: SLURM's ``--signal`` sends SIGUSR1 (Lightning's
    requeue signal) or the launcher's signal ahead of the time limit, and preemption or
    ``scancel`` sends SIGTERM. The signal handler only records the signal. At the end of the
    training batch under way, the callback writes ``last.ckpt`` in ``ModelCheckpoint``'s folder
    (the file ``ckpt_path=last`` resumes from; written to a temporary file and renamed, after
    the loggers are flushed, so the resumed run continues their history without a gap), logs
    where it is and raises ``Preempted``: the process exits with status 128 + the signal's
    number, without testing and without writing ``results.json``. The training DataLoader of
    ``DigitDataModule`` is resumable, so a run resumed from this mid-epoch checkpoint trains on
    exactly the batches an uninterrupted run would have.

    A batch that validation follows (the epoch's last) is not such a boundary: resumed from its
    end, Lightning would skip that validation. The checkpoint then waits for the next batch,
    after the validation and the epoch-end checkpoints (a signal during the last epoch's last
    batch or validation lets the run finish).

    The handlers found when training starts (Lightning's SIGTERM notifier, its SLURM
    auto-requeue handler, submitit's) are kept: they are called once the checkpoint is written,
    at the batch boundary rather than in the middle of a step, and restored when training ends.
    Under DDP every rank stops at the same batch, whichever rank received the signal.

    Args:
        signals: names of the signals to answer (``SIGUSR1``, ``SIGTERM``, ``SIGUSR2``...).
    """

    def __init__(self, signals: Sequence[str] = ("SIGUSR1", "SIGTERM")):
        self.signals = [parse_signal(name) for name in signals]
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    # -- handlers ----------------------------------------------------------------------------
    def _record(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning registered its own handlers (Trainer._run), so they are chained, not lost
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            log.warning("PreemptionCheckpoint: not on the main thread; signals not handled")
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)

    def _restore(self, forward: signal.Signals | None = None) -> None:
        """Put the previous handlers back; call the one of ``forward`` (the signal received)."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        handler = previous.get(forward) if forward is not None else None
        if callable(handler):
            handler(int(forward), None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(forward=self.received)  # a signal that came after the last batch

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore()

    # -- batch boundaries ----------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._validation_follows(trainer, batch_idx):
            self._stop_if_signalled(trainer)

    @staticmethod
    def _validation_follows(trainer: pl.Trainer, batch_idx: int) -> bool:
        """Whether validation may run after this batch (erring on the side of yes)."""
        if batch_idx + 1 >= trainer.num_training_batches:
            return True
        every = trainer.val_check_batch
        if not isinstance(every, int) or every <= 0:
            return False
        done = (trainer.fit_loop.total_batch_idx if trainer.check_val_every_n_epoch is None
                else batch_idx) + 1
        return done % every == 0

    @staticmethod
    def checkpoint_path(trainer: pl.Trainer) -> str:
        """Where ``ModelCheckpoint`` writes its last checkpoint (``<dirpath>/last.ckpt``)."""
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath:
            metrics = {**trainer.callback_metrics,
                       "epoch": torch.tensor(trainer.current_epoch),
                       "step": torch.tensor(trainer.global_step)}
            return ckpt.format_checkpoint_name(metrics, ckpt.CHECKPOINT_NAME_LAST)
        return os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        signum = int(self.received or 0)
        if trainer.world_size > 1:  # one collective per batch: every rank stops at the same one
            flag = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(flag, reduce_op="max"))
        if not signum:
            return
        sig = signal.Signals(signum)
        path = self.checkpoint_path(trainer)
        if trainer.checkpoint_callback is not None:
            # ModelCheckpoint overwrites this file after a resume instead of writing last-v1.ckpt
            trainer.checkpoint_callback.last_model_path = path
        for logger in trainer.loggers:  # the logs on disk cover every step the checkpoint holds
            logger.save()
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            log.warning("preempted by %s at global step %d; checkpoint written to %s; resume with "
                        "ckpt_path=last (same hydra.run.dir)", sig.name, trainer.global_step, path)
        self._restore(forward=sig)
        raise Preempted(128 + signum)
