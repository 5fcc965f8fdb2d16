"""LightningModules, one per task (what a batch holds, the loss, the metrics). A task module
declares ``task``; the DataModule declares the same word for the batches it gives, and
``stnlab-train`` refuses a pair that disagree."""

from stnlab.tasks.base import NonFiniteLossError, TaskModule
from stnlab.tasks.classification import LitClassifier
from stnlab.tasks.colocalisation import LitColocalisation
from stnlab.tasks.sequence import LitSequence

__all__ = ["LitClassifier", "LitSequence", "NonFiniteLossError", "TaskModule"]
__all__ += ["LitColocalisation"]
