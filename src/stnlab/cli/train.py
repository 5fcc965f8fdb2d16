"""``stnlab-train [overrides]``: compose the config and train (``stnlab.run.train.train``).

DDP: Lightning's ``ddp`` launcher starts ranks > 0 by re-running the command line, which under a
Hydra multirun would re-run the whole sweep. A child process therefore trains the job its rank 0
published (``stnlab.run.distributed``), skipping Hydra.

Process-wide state belongs to this script, not to ``train``: with ``keep_freed_memory: true``
(the default, ``conf/train.yaml``) it first makes glibc keep freed memory for the next step
(``stnlab.cli.allocator``); ``keep_freed_memory=false`` leaves malloc's own policy.
"""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from stnlab.cli import one_line_errors, run_reporting_errors
from stnlab.cli.allocator import keep_freed_memory
from stnlab.config import CONFIG_DIR
from stnlab.run.distributed import JOB_CONFIG_ENV, is_ddp_child
from stnlab.run.train import train


def _train(cfg: DictConfig) -> dict:
    """``train(cfg)`` after the process-wide allocator policy that the config asks for (a value
    other than true/false is left to ``train``'s config check to refuse)."""
    if cfg.get("keep_freed_memory", True) is True:
        keep_freed_memory()
    return run_reporting_errors(train, cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    results = _train(cfg)
    return results.get("val/acc_best")  # the value an Optuna sweep maximises


def main() -> None:
    """Console entry point: a DDP child trains its parent's job; anything else goes to Hydra
    (a bad override ends in one line: ``one_line_errors``)."""
    if is_ddp_child():
        logging.basicConfig(level=logging.INFO)
        _train(OmegaConf.load(os.environ[JOB_CONFIG_ENV]))
        return
    with one_line_errors():
        hydra_main()


if __name__ == "__main__":
    main()
