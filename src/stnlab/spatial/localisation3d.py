"""Volumetric localisation networks: volume ``(B, C, D, H, W)`` -> parameters ``(B, P)``.

The 3-D counterparts of :mod:`stnlab.spatial.localisation`, with the same names (``conv``,
``fc``) and the same identity start: the regression layer ``head`` has zero weights and the
identity parameters as bias, so a fresh volumetric transformer returns its input. The layers
are the 2-D nets' with their 3-D versions (``ndim = 3``); only the defaults differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .localisation import ConvLocalisation, FCLocalisation, _make
from .transforms3d import _size3


class ConvLocalisation3D(ConvLocalisation):
    """``avg-pool(downsample) -> [conv3d k^3 (c_i) -> (max-pool 2 after all but the last) ->
    ReLU] -> FC hidden -> ReLU -> head (num_params)``.

    Defaults ``downsample=2, channels=(8, 16), kernel_size=5, hidden=32``: on a 32^3 volume
    (16^3 after the pool, 12^3 -> 6^3 -> 2^3) 21,152 weights, then a 12-parameter head (396).
    Convolutions are 'valid'; one that would not fit the map gets 'same' padding. ``norm=True``
    adds batch norm after every conv and the hidden layer (as the 2-D net).
    """

    ndim = 3
    _size = staticmethod(_size3)

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_params: int,
        identity: torch.Tensor | Sequence[float] | None = None,
        downsample: int = 2,
        channels: int | Sequence[int] = (8, 16),
        kernel_size: int = 5,
        hidden: int = 32,
        pool: int = 2,
        norm: bool = False,
    ) -> None:
        super().__init__(in_channels, in_size, num_params, identity, downsample, channels,
                         kernel_size, hidden, pool, norm)


class FCLocalisation3D(FCLocalisation):
    """``avg-pool(downsample) -> flatten -> FC hidden... -> head``; defaults: ``downsample=4``
    (a 32^3 volume is 8^3 = 512 inputs), two hidden layers of 32 units."""

    ndim = 3
    _size = staticmethod(_size3)

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_params: int,
        identity: torch.Tensor | Sequence[float] | None = None,
        hidden: int | Sequence[int] = (32, 32),
        downsample: int = 4,
    ) -> None:
        super().__init__(in_channels, in_size, num_params, identity, hidden, downsample)


LOCALISATIONS3D: dict[str, type[nn.Module]] = {"conv": ConvLocalisation3D, "fc": FCLocalisation3D}


def make_localisation3d(
    name: str,
    in_channels: int,
    in_size: int | Sequence[int],
    num_params: int,
    identity: torch.Tensor | Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a volumetric localisation net by name (``conv`` or ``fc``)."""
    return _make(LOCALISATIONS3D, name, in_channels, in_size, num_params, identity, **kwargs)


__all__ = ["ConvLocalisation3D", "FCLocalisation3D", "LOCALISATIONS3D", "make_localisation3d"]
