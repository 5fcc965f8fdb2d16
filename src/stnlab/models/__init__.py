"""stnlab.models: the paper's classifiers (pure PyTorch, built from plain values).

Every model takes ``(in_channels, in_size, num_classes, ...)``, returns logits
``(B, num_classes)`` (the sequence models: a length and per-position logits, see
``stnlab.models.sequence``) and lists its transformers with ``spatial_transformers()``.
"""

from .backbones import CNN, FCN, ConvBlock
from .classifiers import STCNN, STFCN
from .colocalisation import CoLocaliser, DigitEncoder
from .fine_grained import FineGrainedST, SmallBackbone
from .sequence import SequenceCNN, SequenceSTCNNMulti, SequenceSTCNNSingle
from .volumetric import CNN3D, STCNN3D

MODELS = {"cnn": CNN, "fcn": FCN, "st_cnn": STCNN, "st_fcn": STFCN, "seq_cnn": SequenceCNN,
          "seq_st_cnn_single": SequenceSTCNNSingle, "seq_st_cnn_multi": SequenceSTCNNMulti}
MODELS.update({"cnn3d": CNN3D, "st_cnn3d": STCNN3D})  # volumes (B, C, D, H, W)

__all__ = ["CNN", "FCN", "MODELS", "STCNN", "STFCN", "ConvBlock", "SequenceCNN",
           "SequenceSTCNNMulti", "SequenceSTCNNSingle"]
__all__ += ["CNN3D", "STCNN3D"]
MODELS["colocaliser"] = CoLocaliser  # crops (B, C, 28, 28): stnlab.tasks.LitColocalisation
__all__ += ["CoLocaliser", "DigitEncoder"]
MODELS["fine_grained_st"] = FineGrainedST  # N attention crops -> backbones (CUB)
__all__ += ["FineGrainedST", "SmallBackbone"]
