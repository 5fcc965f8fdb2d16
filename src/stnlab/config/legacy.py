"""``_target_`` names that moved: configs stored in older checkpoints still build today."""

from __future__ import annotations

from typing import Any

RENAMED_TARGETS = {
    "stnlab.lit.LitClassifier": "stnlab.tasks.LitClassifier",
    "stnlab.lit.classifier.LitClassifier": "stnlab.tasks.LitClassifier",
    "stnlab.lit.gallery.STGallery": "stnlab.callbacks.STGallery",
    "stnlab.lit.preemption.PreemptionCheckpoint": "stnlab.callbacks.PreemptionCheckpoint",
    "stnlab.data.datamodule.DistortedMNIST": "stnlab.data.DistortedMNIST",
    "stnlab.data.datamodule.MultiDigitMNIST": "stnlab.data.MultiDigitMNIST",
}
"""Old name (stnlab 0.x, before the layout of many studies) -> current name."""


def upgrade_targets(node: Any) -> Any:
    """A copy of a plain config (dicts and lists) with every renamed ``_target_`` replaced."""
    if isinstance(node, dict):
        out = {k: upgrade_targets(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str) and target in RENAMED_TARGETS:
            out["_target_"] = RENAMED_TARGETS[target]
        return out
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node
