"""Experiment loggers from the ``logger`` config group; W&B falls back to offline without a key."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_only

from stnlab.config import flatten, instantiate_dict

log = logging.getLogger(__name__)


def wandb_key_available() -> bool:
    """True when W&B could authenticate: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_loggers(node: DictConfig | None, group: str | None = None,
                  tags: list[str] | None = None) -> list:
    """Instantiate the name-keyed logger configs.

    W&B goes offline when it has no key, and gets the sweep's ``group`` and the run's ``tags``
    unless the config sets them.
    """
    if not node:
        return []
    for sub in node.values():
        if sub and str(sub.get("_target_", "")).endswith("WandbLogger"):
            with open_dict(sub):
                sub.group = sub.get("group") or group
                sub.tags = list(sub.get("tags") or []) + list(tags or [])
                # One id per output directory: a run resumed in its own directory
                # (ckpt_path=last) continues the same W&B run instead of starting another.
                sub.id = sub.get("id") or hashlib.sha1(str(sub.save_dir).encode()).hexdigest()[:16]
                sub.resume = sub.get("resume") or "allow"
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
