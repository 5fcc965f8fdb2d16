"""DDP under Hydra: rank 0 of a job publishes its resolved config in ``STNLAB_JOB_CONFIG``; the
ranks Lightning's launcher starts train exactly that job, and every job tears its process group
down so the next job of a multirun starts anew."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import pytorch_lightning as pl
import torch

from stnlab.errors import StnlabError

log = logging.getLogger(__name__)

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


