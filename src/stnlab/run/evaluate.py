"""Test a checkpoint on its run's fixed test set (``stnlab-eval`` wraps ``evaluate``).

The checkpoint carries its run's resolved config, so data and model are rebuilt exactly; fields
under ``data`` replace the run's data config (e.g. ``+data.distortion=R``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stnlab.config.legacy import upgrade_targets
from stnlab.config.validate import check_config
from stnlab.errors import CheckpointNotFoundError
from stnlab.io import write_json
from stnlab.run.train import build_data_and_module

log = logging.getLogger(__name__)


def find_checkpoint(path: str | Path) -> Path:
    """A .ckpt file, or a run directory whose best checkpoint is taken."""
    path = Path(path)
    if path.is_dir():
        best = sorted((path / "checkpoints").glob("best*.ckpt"))
        if best:
            return best[-1]
    elif path.is_file():
        return path
    raise CheckpointNotFoundError(
        f"checkpoint not found: {path}. Pass ckpt_path=<run dir> or "
        "<run dir>/checkpoints/<name>.ckpt of a finished stnlab-train run."
    )


def load_run(ckpt: Path) -> tuple[dict[str, Any], DictConfig]:
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointNotFoundError(f"{ckpt} is not a readable checkpoint ({e}).") from e
    if "stnlab" not in state:
        raise CheckpointNotFoundError(f"{ckpt} was not written by stnlab-train (no run config).")
    return state, OmegaConf.create(upgrade_targets(state["stnlab"]["config"]))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    check_config(cfg, groups=("trainer",))  # and ckpt_path given; data: below, merged
    ckpt = find_checkpoint(cfg.ckpt_path)
    state, run_cfg = load_run(ckpt)
    run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.get("data") or {})
    check_config(run_cfg, groups=("data",))
    data, module = build_data_and_module(run_cfg)
    module.load_state_dict(state["state_dict"])
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[],
                                      enable_checkpointing=False)
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule=data)[0].items()}
    results = {**metrics, "ckpt_path": str(ckpt), "data": data.describe()}
    write_json(results, Path(cfg.paths.output_dir) / "results.json")
    log.info("TEST  acc %.4f  error %.2f%%  (%s)", metrics["test/acc"], 100 * metrics["test/error"],
             ckpt)
    return results
