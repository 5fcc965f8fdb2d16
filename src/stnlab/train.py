"""``stnlab-train``: compose the config, train one model, test its best checkpoint, write results.

Every run's output directory holds ``config.yaml`` (resolved), ``checkpoints/``, the loggers'
metrics and ``results.json`` (final test metrics, data source, parameter count, wall time).

DDP: Lightning's ``ddp`` launcher starts ranks > 0 by re-running the command line, which under a
Hydra multirun would re-run the whole sweep. Instead, rank 0 of each job publishes its resolved
config file in ``STNLAB_JOB_CONFIG`` (children inherit the environment), and a child process
trains exactly that job, skipping Hydra. All ranks then check that they share one config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from stnlab.config import CONFIG_DIR, instantiate_dict, to_plain
from stnlab.errors import CheckpointNotFoundError, StnlabError
from stnlab.lit import Preempted
from stnlab.loggers import build_loggers, finish_loggers, log_run_config

log = logging.getLogger(__name__)


class RunConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config and data description in every checkpoint for stnlab-eval."""

    def __init__(self, config: dict[str, Any], data: Any):
        self.config, self.data = config, data

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["stnlab"] = {"config": self.config, "data": self.data.describe()}


def write_json(obj: Any, path: Path) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def build_data_and_module(cfg: DictConfig):
    """The DataModule and the LitClassifier around the configured net, shaped by the data."""
    data = instantiate(cfg.data)
    if getattr(data, "task", "classification") != "classification":
        raise StnlabError(
            f"{type(data).__name__} gives {data.task} targets, but stnlab-train's LitClassifier "
            "trains single-label classifiers; use this DataModule from your own LightningModule "
            "(see its docstring)."
        )
    channels, height, width = data.dims
    net = instantiate(cfg.model, in_channels=channels, in_size=[height, width],
                      num_classes=data.num_classes)
    module = instantiate(
        cfg.module, net=net, num_classes=data.num_classes,
        optimizer=instantiate(cfg.optimizer) if cfg.get("optimizer") else None,
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    return data, module


def sweep_name(cfg: DictConfig) -> str:
    """The multirun's directory name (one W&B group per sweep), else the task name."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return cfg.task_name
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return f"{cfg.task_name}-{Path(hydra_cfg.sweep.dir).name}"
    return cfg.task_name


def run_tags(cfg: DictConfig) -> list[str]:
    """W&B tags that make the ablation axes filterable in the dashboard."""
    data = cfg.get("data") or {}
    return [f"model={cfg.model._target_.rsplit('.', 1)[-1]}",
            f"transform={cfg.model.get('transform', 'none')}",
            f"distortion={data.get('distortion', 'none')}", f"seed={cfg.seed}"]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """None: start fresh; "last": this run's last.ckpt; "auto": last.ckpt if there is one (a
    requeued job resumes, a new one starts fresh); anything else: a checkpoint file."""
    if ckpt_path in (None, ""):
        return None
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path == "auto":
        log.info("ckpt_path=auto: %s", f"resuming from {last}" if last.is_file() else "fresh start")
        return str(last) if last.is_file() else None
    path = last if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint not found: {path}. Pass ckpt_path=<run dir>/checkpoints/<name>.ckpt "
            "(each run prints its checkpoint folder), or drop ckpt_path to start fresh."
        )
    return str(path)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint and write results.json; returns the results."""
    started = time.time()
    env_before = dict(os.environ)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not is_ddp_child() and rank_zero_only.rank == 0:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
        os.environ[JOB_CONFIG_ENV] = str(output_dir / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True)

    data, module = build_data_and_module(cfg)
    data.prepare_data()
    data.setup("fit")
    num_params = sum(p.numel() for p in module.net.parameters())
    resolved = to_plain(cfg)
    callbacks = instantiate_dict(cfg.get("callbacks"))
    callbacks.append(RunConfigInCheckpoint(resolved, data))
    loggers = build_loggers(cfg.get("logger"), group=sweep_name(cfg), tags=run_tags(cfg))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_run_config(loggers, resolved, {"data/source_used": data.describe()["source"],
                                       "model/num_params": num_params})
    log.info("model %s: %d parameters; data: %s", cfg.model._target_, num_params, data.describe())

    try:
        trainer.fit(module, datamodule=data, ckpt_path=resolve_ckpt_path(cfg.ckpt_path, output_dir))
        check_ranks_agree(trainer, resolved)
        results: dict[str, Any] = {
            "val/acc_best": float(module.val_acc_best.compute()),
            "data": data.describe(),
            "model": cfg.model._target_.rsplit(".", 1)[-1],
            "transform": cfg.model.get("transform"),
            "distortion": data.distortion_name,
            "seed": cfg.seed,
            "num_params": num_params,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "output_dir": str(output_dir),
        }
        if cfg.get("test"):
            best = trainer.checkpoint_callback
            ckpt = best.best_model_path if best else ""
            if not ckpt or trainer.fast_dev_run:
                log.warning("no best checkpoint: testing the final weights")
                ckpt = None
            metrics = trainer.test(module, datamodule=data, ckpt_path=ckpt)[0]
            results.update({k: float(v) for k, v in metrics.items()})
            results["ckpt_path"] = ckpt
        results["fit_time_s"] = round(time.time() - started, 1)
        results["world_size"] = trainer.world_size
        if trainer.is_global_zero:
            write_json(results, output_dir / "results.json")
    except SIGTERMException:  # Lightning's, outside the training batches (sanity check, test)
        log.warning("stopped by SIGTERM outside a training batch, results not written; resume "
                    "from the last checkpoint with ckpt_path=last (same hydra.run.dir)")
        raise Preempted(128 + signal.SIGTERM) from None
    finally:
        finish_loggers(loggers)
        end_distributed(env_before)
    if "test/acc" in results:
        log.info("TEST  acc %.4f  error %.2f%%  (%s, %s)  -> %s", results["test/acc"],
                 100 * results["test/error"], results["model"], results["distortion"],
                 output_dir / "results.json")
    return results


JOB_CONFIG_ENV = "STNLAB_JOB_CONFIG"


def is_ddp_child() -> bool:
    """A rank > 0 process started by Lightning's launcher for the job that rank 0 published."""
    return os.environ.get("LOCAL_RANK", "0") != "0" and JOB_CONFIG_ENV in os.environ


def end_distributed(env_before: dict[str, str]) -> None:
    """Tear down this job's process group and port so the next job of a multirun starts anew."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in ("MASTER_PORT", "MASTER_ADDR", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK"):
        if key not in env_before:
            os.environ.pop(key, None)


def check_ranks_agree(trainer: pl.Trainer, resolved: dict[str, Any]) -> None:
    """All DDP ranks must train the same job: compare a hash of the resolved config."""
    if trainer.world_size == 1:
        return
    digest = int(hashlib.sha1(json.dumps(resolved, sort_keys=True, default=str).encode())
                 .hexdigest()[:12], 16)
    gathered = trainer.strategy.all_gather(torch.tensor(digest, dtype=torch.int64))
    if len(set(gathered.flatten().tolist())) != 1:
        raise StnlabError(f"DDP ranks run different configs (hashes {gathered.tolist()})")
    if trainer.is_global_zero:
        log.info("DDP: %d ranks agree on the job config (%x)", trainer.world_size, digest)


def run_reporting_errors(task, cfg: DictConfig):
    """Run ``task(cfg)``; a user-fixable error ends with its message alone, exit status 2.

    Inside a multirun the error is re-raised instead: Hydra records the job as failed and the
    sweep goes on with its other jobs.
    """
    try:
        return task(cfg)
    except (StnlabError, InstantiationException, FloatingPointError) as e:
        log.error("%s", e if isinstance(e, InstantiationException) else f"{type(e).__name__}: {e}")
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        raise SystemExit(2) from None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    results = run_reporting_errors(train, cfg)
    return results.get("val/acc_best")  # the value an Optuna sweep maximises


def main() -> None:
    """Console entry point: a DDP child trains its parent's job; anything else goes to Hydra."""
    if is_ddp_child():
        logging.basicConfig(level=logging.INFO)
        run_reporting_errors(train, OmegaConf.load(os.environ[JOB_CONFIG_ENV]))
        return
    hydra_main()


if __name__ == "__main__":
    main()
