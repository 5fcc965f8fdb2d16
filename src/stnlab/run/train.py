"""Train one model from a composed config, test its best checkpoint, write results.json
(``stnlab-train`` is the Hydra wrapper around ``train``).

Every run's output directory holds ``config.yaml`` (resolved), ``checkpoints/``, the loggers'
metrics and ``results.json`` (final test metrics, data source, parameter count, wall time).

Under DDP, rank 0 publishes the job's resolved config for the ranks Lightning starts
(``stnlab.run.distributed``); all ranks then check that they share one config.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from stnlab.callbacks import Preempted, RunConfigInCheckpoint
from stnlab.config import CONFIG_DIR, instantiate_dict, to_plain
from stnlab.config.validate import check_config
from stnlab.cpu import use_small_input_conv
from stnlab.errors import CheckpointNotFoundError, StnlabError
from stnlab.io import write_json
from stnlab.run.distributed import JOB_CONFIG_ENV, check_ranks_agree, end_distributed, is_ddp_child
from stnlab.run.loggers import build_loggers, finish_loggers, log_run_config
from stnlab.run.stages import run_stages

log = logging.getLogger(__name__)


def build_data_and_module(cfg: DictConfig, data=None):
    """The DataModule and the task module around the configured net, shaped by the data.

    The data's ``task`` (what its batches hold) must be the module's and the model's (what it
    outputs: a model class's ``task``, else ``classification``): a mismatch is refused before
    any net is built, naming the options to choose. Sequence models also get the data's
    ``max_length``. ``data``: an instantiated ``cfg.data`` (``stnlab.run.evaluate``'s, placed on
    the trained canvas), else built here."""
    data = instantiate(cfg.data) if data is None else data
    data_task = getattr(data, "task", "classification")
    channels, *size = data.dims
    module_cls = get_class(cfg.module._target_)
    module_task = getattr(module_cls, "task", "classification")
    if data_task != module_task:
        raise StnlabError(
            f"{type(data).__name__} gives {data_task} targets, but module "
            f"{module_cls.__name__} trains {module_task}; choose a module of that task "
            f"({modules_for_task(data_task)}) or an experiment that does."
        )
    model_task = getattr(get_class(cfg.model._target_), "task", "classification")
    if data_task != model_task:
        raise StnlabError(
            f"{type(data).__name__} gives {data_task} targets, but model "
            f"{cfg.model._target_.rsplit('.', 1)[-1]} outputs {model_task}; choose a model of "
            f"that task and data ({options_for_task('model', data_task, len(size))}) or an "
            "experiment that does."
        )
    model_ndim = getattr(get_class(cfg.model._target_), "input_ndim", len(size))
    if model_ndim != len(size):
        kind = {2: "images", 3: "volumes"}
        raise StnlabError(
            f"model {cfg.model._target_.rsplit('.', 1)[-1]} takes {kind.get(model_ndim)}, but "
            f"{type(data).__name__} gives {kind.get(len(size), f'{len(size)}-D data')} "
            f"{tuple(data.dims)}; choose a model for that data "
            f"({options_for_task('model', data_task, len(size))}), or data for that model "
            f"(e.g. {'data=volumetric' if model_ndim == 3 else 'data=mnist'})."
        )
    shape = {"max_length": data.max_length} if data_task == "sequence" else {}
    net = instantiate(cfg.model, in_channels=channels, in_size=list(size),
                      num_classes=data.num_classes, **shape)
    if cfg.get("small_input_conv", False):
        use_small_input_conv(net)  # CPU speed, same values: stnlab.cpu
    module = instantiate(
        cfg.module, net=net, num_classes=data.num_classes,
        optimizer=instantiate(cfg.optimizer) if cfg.get("optimizer") else None,
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    return data, module


def options_for_task(group: str, task: str, ndim: int | None = None) -> str:
    """``<group>=<option>`` for every ``conf/<group>`` option whose class is of ``task`` (a
    class without a ``task`` attribute is ``classification``) and, given ``ndim``, takes data
    of that many spatial dimensions (its ``input_ndim``, if it has one)."""
    options = []
    for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
        target = _option_target(path)
        if target is None:
            continue
        cls = get_class(target)
        if getattr(cls, "task", "classification") == task and (
                ndim is None or getattr(cls, "input_ndim", ndim) == ndim):
            options.append(f"{group}={path.stem}")
    return ", ".join(options) or f"none in conf/{group} trains {task} yet"


def _option_target(path: Path, depth: int = 0) -> str | None:
    """A config option's ``_target_``, or that of the option its ``defaults`` extend."""
    node = OmegaConf.load(path)
    if node.get("_target_") or depth > 5:
        return node.get("_target_")
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            return _option_target(path.parent / f"{entry}.yaml", depth + 1)
    return None


def modules_for_task(task: str) -> str:
    """``module=<option>`` for every ``conf/module`` option whose class trains ``task``."""
    return options_for_task("module", task)


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


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The ``callbacks`` group, instantiated; ``trainer.enable_progress_bar=false`` drops its
    progress bar (Lightning refuses a progress bar callback with the switch off)."""
    callbacks = instantiate_dict(cfg.get("callbacks"))
    if cfg.trainer.get("enable_progress_bar") is False:  # None: Lightning's default, on
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint and write results.json; returns the results."""
    check_config(cfg)  # every value in range before anything is written or built
    started = time.time()
    env_before = dict(os.environ)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, output_dir)  # it exists, before the data is set up
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
    callbacks = build_callbacks(cfg)
    callbacks.append(RunConfigInCheckpoint(resolved, data))
    # a resumed run continues its loggers' files and W&B run (stnlab.run.loggers)
    loggers = build_loggers(cfg.get("logger"), group=sweep_name(cfg), tags=run_tags(cfg),
                            resume=ckpt_path is not None)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_run_config(loggers, resolved, {"data/source_used": data.describe()["source"],
                                       "model/num_params": num_params})
    log.info("model %s: %d parameters; data: %s", cfg.model._target_, num_params, data.describe())

    try:
        if ckpt_path is None:  # a resumed run's checkpoint holds what its stages made
            run_stages(module, data, cfg.trainer, loggers, callbacks)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        check_ranks_agree(trainer, resolved)
        results: dict[str, Any] = {
            getattr(module, "best_metric", "val/acc_best"): float(module.val_acc_best.compute()),
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
