"""Experiment loggers from the ``logger`` config group; W&B falls back to offline without a key.

A run resumed in its own directory continues every logger's history: the CSV and TensorBoard
loggers here keep the earlier files and drop what the interrupted attempt logged after its
checkpoint, and W&B continues the same run id (``build_loggers(resume=True)``)."""

from __future__ import annotations

import csv
import logging
import os
import uuid
from pathlib import Path

from hydra.utils import get_class
from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, open_dict
from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from stnlab.config import flatten, instantiate_dict
from stnlab.io import atomic_write

log = logging.getLogger(__name__)


class _FlushOnCheckpoint:
    """Loggers that buffer (Lightning's CSV writer writes every 100 steps, TensorBoard every 10
    events or 120 s) write out after every ``ModelCheckpoint`` save: a run killed later has on
    disk every step of the checkpoint it resumes from, which the resumed run does not log again."""

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.save()


def drop_rows_from(path: str | Path, step: int) -> int:
    """Rewrite the metrics CSV at ``path`` without its rows at ``step`` or later (atomically:
    a kill leaves the old file or the new one); returns how many rows were dropped."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames or [], list(reader)
    keep = [row for row in rows if not row.get("step") or float(row["step"]) < step]
    if len(keep) < len(rows):
        with atomic_write(path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(keep)
    return len(rows) - len(keep)


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued: its header
    is the columns known so far (new ones rewrite the file under one header), and the first
    save drops its rows from the first step this attempt logs on."""

    def __init__(self, log_dir: str) -> None:
        self._trim = True
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def save(self) -> None:
        if self._trim and self.metrics:
            self._trim = False
            if os.path.isfile(self.metrics_file_path):
                first = min(int(row["step"]) for row in self.metrics)
                dropped = drop_rows_from(self.metrics_file_path, first)
                if dropped:
                    log.info("resumed at step %d: dropped %d rows of %s that the interrupted "
                             "run logged after its checkpoint", first, dropped,
                             self.metrics_file_path)
        super().save()


class CSVLogger(_FlushOnCheckpoint, pl_loggers.CSVLogger):
    """Lightning's CSVLogger (same name, same files) that a resumed run continues.

    Lightning deletes ``metrics.csv`` when a run reopens its directory. With ``resume=True``
    (set by ``build_loggers`` when ``ckpt_path`` resumes a run) the file stays: the rows from
    the first step the resumed run logs on, which the killed attempt logged after the
    checkpoint, are dropped, so every step is in the file once, and the rows before stay."""

    def __init__(self, *args, resume: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume = resume

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return super().experiment


class TensorBoardLogger(_FlushOnCheckpoint, pl_loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger (same name, same files) that a resumed run continues.

    The resumed run writes a new event file beside the old ones. With ``resume=True``, the
    first step it logs, N, is written first as TensorBoard's restart marker (the ``SessionLog
    START`` event of ``SummaryWriter(purge_step=N)``): TensorBoard then drops every earlier
    event at step N or later, which the killed attempt logged after the checkpoint. A fresh run
    (``resume=False``) marks step 0: in a directory that holds another run's events (a requeued
    ``ckpt_path=auto`` job killed before its first checkpoint) it starts over, as the CSV does."""

    def __init__(self, *args, resume: bool = False, **kwargs):
        if not resume:
            kwargs.setdefault("purge_step", 0)
        super().__init__(*args, **kwargs)
        self._purge_pending = resume

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        if self._purge_pending and step is not None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            self._purge_pending = False
            self.experiment._get_file_writer().add_event(
                Event(step=step, session_log=SessionLog(status=SessionLog.START)))
        super().log_metrics(metrics, step)


WANDB_ID_FILE = "wandb/run-id.txt"
"""Where, under the W&B logger's ``save_dir`` (the run directory), its run id is kept."""


def wandb_run_id(save_dir: str | Path, resume: bool) -> str:
    """The run directory's W&B run id when ``resume`` finds one, else a new one (kept there
    by rank 0, for the next resume)."""
    path = Path(save_dir) / WANDB_ID_FILE
    if resume and path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:16]
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
    return run_id


def wandb_key_available() -> bool:
    """True when W&B could authenticate: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_flush_settings() -> dict:
    """W&B writes its run file every 15 s, and a killed run loses what it logged since (its
    service stops without writing); every second instead, where this wandb has the setting."""
    import wandb

    key = "x_transaction_log_flush_interval"
    return {key: 1.0} if key in getattr(wandb.Settings, "model_fields", {}) else {}


def _continues_files(target: str) -> bool:
    """Whether ``target`` is a logger class here that takes ``resume`` (a target that cannot be
    imported fails when it is instantiated, with Hydra's message)."""
    try:
        cls = get_class(target)
    except Exception:
        return False
    return isinstance(cls, type) and issubclass(cls, (CSVLogger, TensorBoardLogger))


def build_loggers(node: DictConfig | None, group: str | None = None,
                  tags: list[str] | None = None, resume: bool = False) -> list:
    """Instantiate the name-keyed logger configs.

    W&B goes offline when it has no key, and gets the sweep's ``group`` and the run's ``tags``
    unless the config sets them. ``resume`` (the run restarts from a checkpoint): the CSV and
    TensorBoard loggers continue their files, and W&B the run id kept in the run directory.
    """
    if not node:
        return []
    for sub in node.values():
        target = str(sub.get("_target_", "")) if sub else ""
        if _continues_files(target):
            with open_dict(sub):
                sub.resume = resume
        if target.endswith("WandbLogger"):
            with open_dict(sub):
                sub.group = sub.get("group") or group
                sub.tags = list(sub.get("tags") or []) + list(tags or [])
                sub.id = sub.get("id") or wandb_run_id(sub.save_dir, resume)
                sub.resume = sub.get("resume") or "allow"
                sub.settings = sub.get("settings") or wandb_flush_settings()
                sub._convert_ = "all"  # wandb.init takes a dict of settings, not a DictConfig
            offline = (sub.get("offline") or os.environ.get("WANDB_MODE") in ("offline", "dryrun")
                       or not wandb_key_available())
            with open_dict(sub):
                sub.offline = bool(offline)
            if offline:
                log.warning("W&B: no API key found, logging OFFLINE under %s", sub.save_dir)
            Path(sub.save_dir).mkdir(parents=True, exist_ok=True)
    return instantiate_dict(node)


HPARAMS_METRICS = ("val/acc_best", "test/error")
"""The results that TensorBoard's HParams view shows beside each run's hyperparameters."""


def log_run_config(loggers: list, config: dict, extra: dict) -> None:
    """W&B gets the nested resolved config; CSV and TensorBoard flat ``a/b`` hyperparameters,
    and TensorBoard its HParams view (``tensorboard_hparams``)."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.config.update({**config, **extra}, allow_val_change=True)
        else:
            lg.log_hyperparams({**flatten(config), **extra})
            if type(lg).__name__ == "TensorBoardLogger":
                tensorboard_hparams(lg, {**flatten(config), **extra})


@rank_zero_only
def tensorboard_hparams(logger, params: dict, metrics: tuple[str, ...] = HPARAMS_METRICS) -> None:
    """Write the HParams plugin's summaries: the run's hyperparameters, and ``metrics`` as the
    columns to show beside them. The values are read from the run's own scalars of those names
    (logged as the run goes), so nothing is written under them here: a run that stops early
    shows blanks, not placeholders (Lightning's ``default_hp_metric`` would log -1)."""
    from torch.utils.tensorboard.summary import hparams

    clean = {k: v if isinstance(v, bool | int | float | str) else str(v)
             for k, v in params.items()}
    writer = logger.experiment._get_file_writer()
    for summary in hparams(clean, dict.fromkeys(metrics, 0.0)):
        writer.add_summary(summary)
    writer.flush()


def finish_loggers(loggers: list) -> None:
    """Close W&B runs (one run per job, also inside a multirun) and say how to sync offline ones."""
    if rank_zero_only.rank != 0:  # other DDP ranks hold no W&B run
        return
    for lg in loggers:
        if type(lg).__name__ != "WandbLogger":
            continue
        run = lg.experiment
        offline = getattr(run.settings, "mode", "") in ("offline", "dryrun") or run.offline
        run_dir = Path(run.dir).parent if run.dir else None
        run.finish()
        if offline and run_dir is not None:
            log.warning("W&B run saved offline; upload it with: wandb sync %s", run_dir)
