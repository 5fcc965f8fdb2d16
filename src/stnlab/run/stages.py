"""Stages a run fits before its main fit: a task module that needs one (the co-localisation
encoder's pretraining) lists them in ``module.stages(data)``, LightningModules each with its own
``train_dataloader``, ``max_epochs`` and ``name``. Each is fitted by a ``pl.Trainer`` of its own
built from the run's trainer config, with the run's loggers and progress bar, so every
optimisation step of a run is a Lightning step that they see. No checkpoint is written for a
stage: its result lives in the main module (the encoder's weights), whose checkpoints hold it;
a resumed run fits no stage."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

log = logging.getLogger(__name__)

STAGE_TRAINER_KEYS = (
    "_target_", "accelerator", "strategy", "devices", "num_nodes", "precision", "plugins",
    "sync_batchnorm", "use_distributed_sampler", "deterministic", "benchmark", "detect_anomaly",
    "default_root_dir", "log_every_n_steps", "enable_progress_bar", "enable_model_summary",
    "fast_dev_run",
)
"""What a stage takes from the run's trainer config: where and how to compute, and whether it
is a smoke run (``fast_dev_run``); not how long, on how many batches, or how to validate, clip
or checkpoint: those are the main fit's."""


def stage_trainer(trainer_cfg: DictConfig, max_epochs: int, loggers: list,
                  callbacks: list[pl.Callback]) -> pl.Trainer:
    """A trainer for one stage: the run's ``STAGE_TRAINER_KEYS``, ``max_epochs``, the run's
    ``loggers`` and the progress bars among ``callbacks``, no checkpoints."""
    full = OmegaConf.to_container(trainer_cfg, resolve=True)
    cfg = {k: v for k, v in full.items() if k in STAGE_TRAINER_KEYS}
    return instantiate(cfg, max_epochs=max_epochs, logger=loggers or False,
                       callbacks=[c for c in callbacks if isinstance(c, ProgressBar)],
                       enable_checkpointing=False)


def run_stages(module: pl.LightningModule, data, trainer_cfg: DictConfig, loggers: list,
               callbacks: list[pl.Callback]) -> dict[str, dict[str, float]]:
    """Fit each of ``module.stages(data)`` (none if the module has no such method) in turn;
    returns each stage's last metrics by its name."""
    done = {}
    for stage in getattr(module, "stages", lambda _: [])(data):
        trainer = stage_trainer(trainer_cfg, stage.max_epochs, loggers, callbacks)
        trainer.fit(stage)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        log.info("stage %s: %d epochs, %d steps, %s", stage.name, trainer.current_epoch,
                 trainer.global_step, {k: round(v, 4) for k, v in metrics.items()})
        done[stage.name] = metrics
    return done


__all__ = ["STAGE_TRAINER_KEYS", "run_stages", "stage_trainer"]
