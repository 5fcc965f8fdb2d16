"""Volumetric localisation networks: volume ``(B, C, D, H, W)`` -> parameters ``(B, P)``.

The 3-D counterparts of :mod:`stnlab.spatial.localisation`, with the same names (``conv``,
``fc``) and the same identity start: the regression layer ``head`` has zero weights and the
identity parameters as bias, so a fresh volumetric transformer returns its input. One
implementation serves both: the 3-D nets are the 2-D ones with ``ndim = 3`` (their 3-D layers)
and their own defaults; every other argument is the 2-D net's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .localisation import ConvLocalisation, FCLocalisation, _make
from .transforms3d import _size3


class ConvLocalisation3D(ConvLocalisation):
    """``avg-pool(downsample) -> [conv3d k^3 (c_i) -> (max-pool 2 after all but the last) ->
    ReLU] -> FC hidden -> ReLU -> head (num_params)``: ``ConvLocalisation`` in 3-D.

    Defaults ``downsample=2, channels=(8, 16), kernel_size=5, hidden=32``: on a 32^3 volume
    (16^3 after the pool, 12^3 -> 6^3 -> 2^3) 21,152 weights, then a 12-parameter head (396).
    Convolutions are 'valid'; one that would not fit the map gets 'same' padding. ``norm=True``
    adds batch norm after every conv and the hidden layer (as the 2-D net).
    """

    ndim = 3
    _size = staticmethod(_size3)

    def __init__(self, *args, channels: int | Sequence[int] = (8, 16), hidden: int = 32,
                 **kwargs) -> None:
        super().__init__(*args, channels=channels, hidden=hidden, **kwargs)


class FCLocalisation3D(FCLocalisation):
    """``avg-pool(downsample) -> flatten -> FC hidden... -> head``: ``FCLocalisation`` in 3-D;
    defaults: ``downsample=4`` (a 32^3 volume is 8^3 = 512 inputs), two hidden layers of 32
    units."""

    ndim = 3
    _size = staticmethod(_size3)

    def __init__(self, *args, downsample: int = 4, **kwargs) -> None:
        super().__init__(*args, downsample=downsample, **kwargs)


LOCALISATIONS3D: dict[str, type[nn.Module]] = {"conv": ConvLocalisation3D, "fc": FCLocalisation3D}


def make_localisation3d(name: str, *args, **kwargs) -> nn.Module:
    """Build a volumetric localisation net by name (``conv`` or ``fc``); the arguments are
    ``make_localisation``'s."""
    return _make(LOCALISATIONS3D, name, *args, **kwargs)


__all__ = ["ConvLocalisation3D", "FCLocalisation3D", "LOCALISATIONS3D", "make_localisation3d"]
