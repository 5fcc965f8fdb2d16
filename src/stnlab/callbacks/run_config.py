"""The resolved run config and data description, stored in every checkpoint for stnlab-eval."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class RunConfigInCheckpoint(pl.Callback):
    """Writes ``checkpoint["stnlab"] = {"config": ..., "data": data.describe()}``."""

    def __init__(self, config: dict[str, Any], data: Any):
        self.config, self.data = config, data

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["stnlab"] = {"config": self.config, "data": self.data.describe()}
