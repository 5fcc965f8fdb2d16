"""Volumetric localisation networks: volume ``(B, C, D, H, W)`` -> parameters ``(B, P)``.

The 3-D counterparts of :mod:`stnlab.spatial.localisation`, with the same names (``conv``,
``fc``) and the same identity start: the regression layer ``head`` has zero weights and the
identity parameters as bias, so a fresh volumetric transformer returns its input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .localisation import _identity_head, _ints
from .transforms3d import _size3


class ConvLocalisation3D(nn.Module):
    """``avg-pool(downsample) -> [conv3d k^3 (c_i) -> (max-pool 2 after all but the last) ->
    ReLU] -> FC hidden -> ReLU -> head (num_params)``.

    Defaults ``downsample=2, channels=(8, 16), kernel_size=5, hidden=32``: on a 32^3 volume
    (16^3 after the pool, 12^3 -> 6^3 -> 2^3) 21,152 weights, then a 12-parameter head (396).
    Convolutions are 'valid'; one that would not fit the map gets 'same' padding. ``norm=True``
    adds batch norm after every conv and the hidden layer (as the 2-D net).
    """

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
        super().__init__()
        size = list(_size3(in_size))
        downsample = max(int(downsample), 1)
        layers: list[nn.Module] = []
        if downsample > 1:
            layers.append(nn.AvgPool3d(downsample))
            size = [s // downsample for s in size]
        if min(size) < 1:
            raise ValueError(f"input {_size3(in_size)} too small for downsample={downsample}")
        c_in = int(in_channels)
        channels = _ints(channels)
        for i, c in enumerate(channels):
            pad = 0 if min(size) >= kernel_size else kernel_size // 2
            layers.append(nn.Conv3d(c_in, c, kernel_size, padding=pad))
            if norm:
                layers.append(nn.BatchNorm3d(c))
            size = [s + 2 * pad - kernel_size + 1 for s in size]
            if i < len(channels) - 1 and pool > 1 and min(size) >= pool:
                layers.append(nn.MaxPool3d(pool))
                size = [s // pool for s in size]
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        layers.append(nn.Flatten())
        feat = c_in * size[0] * size[1] * size[2]
        if hidden and hidden > 0:
            layers.append(nn.Linear(feat, int(hidden)))
            if norm:
                layers.append(nn.BatchNorm1d(int(hidden)))
            layers.append(nn.ReLU(inplace=True))
            feat = int(hidden)
        self.body = nn.Sequential(*layers)
        self.head = _identity_head(feat, int(num_params), identity)
        self.num_params = int(num_params)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(u))


class FCLocalisation3D(nn.Module):
    """``avg-pool(downsample) -> flatten -> FC hidden... -> head``; defaults: ``downsample=4``
    (a 32^3 volume is 8^3 = 512 inputs), two hidden layers of 32 units."""

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_params: int,
        identity: torch.Tensor | Sequence[float] | None = None,
        hidden: int | Sequence[int] = (32, 32),
        downsample: int = 4,
    ) -> None:
        super().__init__()
        size = list(_size3(in_size))
        downsample = max(int(downsample), 1)
        layers: list[nn.Module] = []
        if downsample > 1:
            layers.append(nn.AvgPool3d(downsample))
            size = [s // downsample for s in size]
        if min(size) < 1:
            raise ValueError(f"input {_size3(in_size)} too small for downsample={downsample}")
        layers.append(nn.Flatten())
        feat = int(in_channels) * size[0] * size[1] * size[2]
        for units in _ints(hidden):
            layers += [nn.Linear(feat, units), nn.ReLU(inplace=True)]
            feat = units
        self.body = nn.Sequential(*layers)
        self.head = _identity_head(feat, int(num_params), identity)
        self.num_params = int(num_params)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(u))


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
    key = str(name).lower()
    if key not in LOCALISATIONS3D:
        raise ValueError(
            f"unknown localisation net {name!r}; valid names: {', '.join(LOCALISATIONS3D)}"
        )
    return LOCALISATIONS3D[key](in_channels, in_size, num_params, identity, **kwargs)


__all__ = ["ConvLocalisation3D", "FCLocalisation3D", "LOCALISATIONS3D", "make_localisation3d"]
