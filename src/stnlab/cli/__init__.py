"""Console entry points, each a thin wrapper over a function a notebook can call:
``stnlab-train`` (``stnlab.run.train``), ``stnlab-eval`` (``stnlab.run.evaluate``),
``stnlab-report`` (``stnlab.report``), ``stnlab-robustness`` (``stnlab.analysis.robustness``),
``stnlab-preview`` (``stnlab.analysis.preview``)."""

from __future__ import annotations

import logging
import os

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from stnlab.errors import StnlabError

log = logging.getLogger(__name__)


def run_reporting_errors(task, cfg: DictConfig):
    """Run ``task(cfg)``; a user-fixable error ends with its message alone, exit status 2.

    Inside a multirun the error is re-raised instead: Hydra records the job as failed and the
    sweep goes on with its other jobs. ``HYDRA_FULL_ERROR=1`` re-raises it too, with its
    traceback.
    """
    try:
        return task(cfg)
    except (StnlabError, InstantiationException, FloatingPointError) as e:
        log.error("%s", e if isinstance(e, InstantiationException) else f"{type(e).__name__}: {e}")
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or (
                HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
            raise
        raise SystemExit(2) from None
