"""Lightning layer: the classification module and the callbacks."""

from stnlab.lit.classifier import LitClassifier, NonFiniteLossError

__all__ = ["LitClassifier", "NonFiniteLossError"]
