"""stnlab.spatial: a small, pure-PyTorch spatial transformer library.

>>> from stnlab.spatial import SpatialTransformer, make_transform, sample
>>> t = make_transform("affine")
>>> grid = t.grid(t.identity().unsqueeze(0), (28, 28))        # (1, 28, 28, 2)
>>> st = SpatialTransformer(in_channels=1, in_size=(42, 42), transform="affine",
...                         out_size=(28, 28))

No Lightning, no Hydra: drop it into any ``nn.Module``.
"""

from .localisation import LOCALISATIONS, ConvLocalisation, FCLocalisation, make_localisation
from .sampling import PADDINGS, SAMPLERS, check_sampler, sample
from .transformer import (
    ParallelSpatialTransformers,
    SpatialTransformer,
    localisation_parameters,
    spatial_transformers,
)
from .transforms import (
    ALIGN_CORNERS,
    TPS,
    TRANSFORMS,
    Affine,
    Attention,
    Projective,
    Similarity,
    Transform,
    Translation,
    base_grid,
    make_transform,
)

__all__ = [
    "ALIGN_CORNERS",
    "LOCALISATIONS",
    "PADDINGS",
    "SAMPLERS",
    "TPS",
    "TRANSFORMS",
    "Affine",
    "Attention",
    "ConvLocalisation",
    "FCLocalisation",
    "ParallelSpatialTransformers",
    "Projective",
    "Similarity",
    "SpatialTransformer",
    "Transform",
    "Translation",
    "base_grid",
    "check_sampler",
    "localisation_parameters",
    "make_localisation",
    "make_transform",
    "sample",
    "spatial_transformers",
]
