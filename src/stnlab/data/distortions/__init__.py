"""Distortions of MNIST digits: the recipes of Jaderberg et al. (2015), Appendix A.4.

A distortion is a pure function of ``(images, generator)``::

    d = make_distortion("RTS")            # paper defaults; every parameter is a keyword
    y = d(x, generator)                   # x: (B, C_in, 28, 28) float in [0, 1], any device
                                          # y: (B, C_out, *d.out_size) float32 in [0, 1]

How it stays reproducible
-------------------------
* Every random number comes from the CPU ``torch.Generator`` as one ``torch.rand(B, k,
  dtype=float64)`` call per batch: sample ``i`` owns row ``i``. Gaussian draws are made from
  those uniforms with Box-Muller. So the draws do not depend on the device and, for the
  recipes that only transform each image on its own (none, R, RTS, P, E, addition, sequences),
  splitting a batch into chunks and feeding them in order with the same generator gives the
  very same images ("chunking independence"). ``cluttered`` cuts clutter from the *other*
  images of the batch, so its output depends on the batch it is given.
* The per-sample matrices (affine, homography, thin-plate spline) are built in float64 on the
  CPU; only the sampling grid and the bilinear sampling run on ``x.device``. Same seed and
  inputs give bit-identical output on one device; across devices the draws and matrices are
  identical and the pixels agree to float32 rounding.

Geometry conventions
--------------------
Pixel ``(i, j)`` has its centre at ``(x, y) = (j, i)``; an image of width ``W`` covers
``[-0.5, W - 0.5]``. Warps are written as maps from output pixels to source pixels and sampled
with ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``: outside the
source digit is black (0). Bilinear sampling is a convex combination, so [0, 1] stays [0, 1].
Positive angles rotate counter-clockwise as seen on screen.

Where things are
----------------
``linear`` (none, R, RTS), ``projective`` (P), ``elastic`` (E), ``clutter`` (cluttered),
``composition`` (addition, multi-digit sequences), ``volumetric`` (digits as 3-D volumes
``(B, 1, D, H, W)``): one family a module. ``base`` holds the
``Distortion`` class, the parameter checks and the seeded draws; ``warp`` the shared geometry.
A new recipe is a ``Distortion`` subclass in its family's module plus an entry in
``DISTORTIONS`` below.
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import Distortion
from .clutter import Cluttered
from .composition import Addition, SequenceBuilder, make_sequence, sequence_targets
from .elastic import Elastic
from .linear import RTS, NoDistortion, Rotation
from .projective import Projective
from .volumetric import Volumetric, orthogonal_projections
from .warp import DIGIT_SIZE, INK_THRESHOLD, similarity_warp

__all__ = [
    "ALIASES",
    "DIGIT_SIZE",
    "INK_THRESHOLD",
    "DISTORTIONS",
    "Addition",
    "Cluttered",
    "Distortion",
    "Elastic",
    "NoDistortion",
    "Projective",
    "RTS",
    "Rotation",
    "SequenceBuilder",
    "Volumetric",
    "make_distortion",
    "make_sequence",
    "orthogonal_projections",
    "sequence_targets",
    "similarity_warp",
]


DISTORTIONS: dict[str, type[Distortion]] = {
    "none": NoDistortion,
    "R": Rotation,
    "RTS": RTS,
    "P": Projective,
    "E": Elastic,
    "cluttered": Cluttered,
    "addition": Addition,
    "volumetric": Volumetric,
}
"""Canonical name -> class."""

ALIASES: dict[str, str] = {"T": "cluttered"}
"""Other accepted names -> canonical name."""


def _valid_names() -> str:
    names = list(DISTORTIONS)
    names += [f"{a} (= {c})" for a, c in ALIASES.items()]
    return ", ".join(names)


def make_distortion(name: str, **kwargs: Any) -> Distortion:
    """Build a distortion by name (case-insensitive), parameters as keywords.

    >>> make_distortion("RTS", scale=[0.8, 1.0]).out_size
    (42, 42)
    """
    lookup = {k.lower(): k for k in DISTORTIONS}
    lookup.update({a.lower(): c for a, c in ALIASES.items()})
    key = lookup.get(str(name).lower()) if isinstance(name, str) else None
    if key is None:
        raise ValueError(f"unknown distortion {name!r}; valid names: {_valid_names()}")
    cls = DISTORTIONS[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{key}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return cls(**kwargs)
