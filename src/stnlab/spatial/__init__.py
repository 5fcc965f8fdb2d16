"""stnlab.spatial: a small, pure-PyTorch spatial transformer library.

>>> from stnlab.spatial import SpatialTransformer, make_transform, sample
>>> t = make_transform("affine")
>>> grid = t.grid(t.identity().unsqueeze(0), (28, 28))        # (1, 28, 28, 2)
>>> st = SpatialTransformer(in_channels=1, in_size=(42, 42), transform="affine",
...                         out_size=(28, 28))
>>> st3 = SpatialTransformer(1, (32, 32, 32), transform="affine3d")   # volumes (B, C, D, H, W)

No Lightning, no Hydra: drop it into any ``nn.Module``.

Every warp goes through :func:`sample`, which takes one of two paths, both with
``grid_sample``'s values and gradients up to float rounding:

- ``torch.nn.functional.grid_sample``: everything, unless the next line applies. A
  channels-last CPU map goes through its NCHW copy, its gradient handed back channels-last.
- numba kernels (``_cpu/``; ``pip install "stnlab[cpu]"``, ``make install`` has it): a
  channels-last CPU feature map (what the CNNs hand a transformer) in float32/float64, bilinear
  with zero padding, sampled as rows of its ``(B*H*W, C)`` view: the output and the map's
  gradient stay channels-last, about 3x faster there. ``STNLAB_NUMBA=0`` switches them off.
"""

from .localisation import LOCALISATIONS, ConvLocalisation, FCLocalisation, make_localisation
from .localisation3d import (
    LOCALISATIONS3D,
    ConvLocalisation3D,
    FCLocalisation3D,
    make_localisation3d,
)
from .region import (
    pixel_box_to_normalised,
    polygon_area,
    region_area_fraction,
    region_box_iou,
    sampled_region,
)
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
from .transforms3d import (
    TRANSFORMS3D,
    Affine3D,
    Attention3D,
    Transform3D,
    Translation3D,
    base_grid3d,
    rotation_matrix,
)

__all__ = [
    "ALIGN_CORNERS",
    "LOCALISATIONS",
    "LOCALISATIONS3D",
    "PADDINGS",
    "SAMPLERS",
    "TPS",
    "TRANSFORMS",
    "TRANSFORMS3D",
    "Affine",
    "Affine3D",
    "Attention",
    "Attention3D",
    "ConvLocalisation",
    "ConvLocalisation3D",
    "FCLocalisation",
    "FCLocalisation3D",
    "ParallelSpatialTransformers",
    "Projective",
    "Similarity",
    "SpatialTransformer",
    "Transform",
    "Transform3D",
    "Translation",
    "Translation3D",
    "base_grid",
    "base_grid3d",
    "check_sampler",
    "localisation_parameters",
    "make_localisation",
    "make_localisation3d",
    "make_transform",
    "pixel_box_to_normalised",
    "polygon_area",
    "region_area_fraction",
    "region_box_iou",
    "rotation_matrix",
    "sample",
    "sampled_region",
    "spatial_transformers",
]
