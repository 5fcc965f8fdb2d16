"""stnlab.models: the paper's classifiers (pure PyTorch, built from plain values).

Every model takes ``(in_channels, in_size, num_classes, ...)``, returns logits
``(B, num_classes)`` and lists its transformers with ``spatial_transformers()``.
"""

from .backbones import CNN, FCN, ConvBlock
from .classifiers import STCNN, STFCN

MODELS = {"cnn": CNN, "fcn": FCN, "st_cnn": STCNN, "st_fcn": STFCN}

__all__ = ["CNN", "FCN", "MODELS", "STCNN", "STFCN", "ConvBlock"]
