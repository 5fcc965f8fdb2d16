"""Test a checkpoint on its run's fixed test set (``stnlab-eval`` wraps ``evaluate``).

The checkpoint carries its run's resolved config, so data and model are rebuilt exactly; fields
under ``data`` replace the run's data config (e.g. ``+data.distortion=R``). New data must be what
the trained model takes: a recipe on a smaller canvas is centred on the trained one
(``fit_to_trained``); anything else is refused, before any data is read, in one line.
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
from stnlab.data.distortions.canvas import OnCanvas
from stnlab.errors import CheckpointNotFoundError, DataMismatchError
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
    trained = run_cfg.data
    run_cfg.data = OmegaConf.merge(trained, cfg.get("data") or {})
    check_config(run_cfg, groups=("data",))
    data = instantiate(run_cfg.data)
    if cfg.get("data"):  # other data than the run's: is it what the model takes?
        data = fit_to_trained(data, instantiate(trained), OmegaConf.to_container(cfg.data))
    data, module = build_data_and_module(run_cfg, data)
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as e:  # a model that differs from the trained one in its shapes
        raise DataMismatchError(
            f"{ckpt}: its weights do not fit the model built for this data "
            f"({str(e).splitlines()[-1].strip()}); evaluate on the run's own data (no data.* "
            "overrides) or on a recipe of the same shape.") from e
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[],
                                      enable_checkpointing=False)
    metrics = {k: float(v) for k, v in trainer.test(module, datamodule=data)[0].items()}
    results = {**metrics, "ckpt_path": str(ckpt), "data": data.describe()}
    write_json(results, Path(cfg.paths.output_dir) / "results.json")
    log.info("TEST  acc %.4f  error %.2f%%  (%s)", metrics["test/acc"], 100 * metrics["test/error"],
             ckpt)
    return results


def fit_to_trained(data, trained, overrides: dict) -> Any:
    """``data`` as the model trained on ``trained`` takes it: the same task, channels and
    dimensions; a recipe on a smaller canvas is centred on the trained canvas (``OnCanvas``).
    A larger canvas, or one the data cannot be padded to, is refused naming the fix."""
    given = " ".join(f"{k}={v}" for k, v in _dotted(overrides, "data"))
    want, have = tuple(trained.dims), tuple(data.dims)
    if have == want:
        return data
    task, trained_task = (getattr(d, "task", "classification") for d in (data, trained))
    if task != trained_task or len(have) != len(want) or have[0] != want[0]:
        raise DataMismatchError(
            f"{given} gives {task} examples of shape {have}, but the run's model takes "
            f"{trained_task} examples of shape {want}; evaluate on data of that task, channel "
            "count and dimensions, or a run trained on this data.")
    size, canvas = have[1:], want[1:]
    fits = all(s <= c for s, c in zip(size, canvas, strict=True))
    distortion = getattr(data, "distortion", None)
    if fits and distortion is not None and tuple(distortion.out_size) == size:
        data.distortion = OnCanvas(distortion, canvas)
        log.info("%s: its %s examples centred on the trained canvas %s", given,
                 "x".join(map(str, size)), "x".join(map(str, canvas)))
        return data
    hint = (f"a canvas of at most {canvas[0]} (data.distortion_params.canvas={canvas[0]})"
            if distortion is not None and "canvas" in distortion.params() else
            f"the trained size {'x'.join(map(str, canvas))}")
    raise DataMismatchError(
        f"{given} gives {'x'.join(map(str, size))} examples, "
        f"{'larger than' if not fits else 'other than'} the {'x'.join(map(str, canvas))} the "
        f"run's model was trained on; evaluate with {hint}, or a run trained on this data.")


def _dotted(node: Any, key: str) -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` under ``data`` -> ``[("data.a.b", 1)]``."""
    if isinstance(node, dict) and node:
        return [kv for k, v in node.items() for kv in _dotted(v, f"{key}.{k}")]
    return [(key, node)]
