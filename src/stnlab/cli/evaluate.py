"""``stnlab-eval ckpt_path=<file or run dir>``: re-test a checkpoint (``stnlab.run.evaluate``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stnlab.cli import run_reporting_errors
from stnlab.config import CONFIG_DIR
from stnlab.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
