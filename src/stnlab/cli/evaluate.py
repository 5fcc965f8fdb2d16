"""``stnlab-eval ckpt_path=<file or run dir>``: re-test a checkpoint (``stnlab.run.evaluate``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stnlab.cli import one_line_errors, run_reporting_errors
from stnlab.config import CONFIG_DIR
from stnlab.run.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


def main() -> None:
    """Console entry point; a bad override ends in one line (``one_line_errors``)."""
    with one_line_errors():
        hydra_main()


if __name__ == "__main__":
    main()
