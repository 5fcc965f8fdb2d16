"""Lightning layer: the classification module and the callbacks."""

from stnlab.lit.classifier import LitClassifier, NonFiniteLossError
from stnlab.lit.preemption import Preempted, PreemptionCheckpoint

__all__ = ["LitClassifier", "NonFiniteLossError", "Preempted", "PreemptionCheckpoint"]
