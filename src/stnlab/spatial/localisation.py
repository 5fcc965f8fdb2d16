"""Localisation networks: image -> transform parameters ``(B, P)``.

Both nets end in a regression layer ``head`` that starts at zero weights and the identity
parameters as bias, so a fresh spatial transformer returns its input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .layout import nchw_keeping_grad_layout
from .transform_base import _size2


def _ints(x: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(x, int):
        return (x,)
    return tuple(int(v) for v in x)


def dense_layers(in_features: int, widths: int | Sequence[int],
                 norm: bool = False) -> tuple[list[nn.Module], int]:
    """``[linear -> (batch norm: norm) -> ReLU]`` per width of ``widths`` and the features that
    come out (``in_features`` for no width): the hidden layers of the FC localisation nets,
    the conv net's hidden layer and ``stnlab.models.FCN``."""
    layers: list[nn.Module] = []
    for units in _ints(widths):
        layers.append(nn.Linear(in_features, units))
        if norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(nn.ReLU(inplace=True))
        in_features = units
    return layers, in_features


def _identity_head(in_features: int, num_params: int, identity) -> nn.Linear:
    head = nn.Linear(in_features, num_params)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        if identity is None:
            head.bias.zero_()
        else:
            ident = torch.as_tensor(identity, dtype=head.bias.dtype).reshape(-1)
            if ident.numel() != num_params:
                raise ValueError(
                    f"identity has {ident.numel()} entries, expected num_params={num_params}"
                )
            head.bias.copy_(ident)
    return head


# avg-pool, conv, batch norm, max-pool by the number of spatial dims
_LAYERS: dict[int, tuple[type[nn.Module], ...]] = {
    2: (nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d),
    3: (nn.AvgPool3d, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d),
}


class _Localisation(nn.Module):
    """``body -> head``, the parts shared by the 2-D and 3-D nets (``ndim`` spatial dims)."""

    ndim = 2
    _size = staticmethod(_size2)

    def _downsampled(self, layers: list[nn.Module], in_size, downsample: int) -> list[int]:
        """Append the input average pool (``downsample`` > 1); the map's size after it."""
        size = list(self._size(in_size))
        if downsample > 1:
            layers.append(_LAYERS[self.ndim][0](downsample))
            size = [s // downsample for s in size]
        if min(size) < 1:
            raise ValueError(f"input {self._size(in_size)} too small for downsample={downsample}")
        return size

    def _finish(self, layers: list[nn.Module], feat: int, num_params: int, identity) -> None:
        self.body = nn.Sequential(*layers)
        self.head = _identity_head(feat, int(num_params), identity)
        self.num_params = int(num_params)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(u))


class ConvLocalisation(_Localisation):
    """The paper's ST-CNN localisation net (A.4), configurable.

    ``avg-pool(downsample) -> [conv k x k (c_i) -> (max-pool 2 after all but the last) -> ReLU]
    -> FC hidden -> ReLU -> head (num_params)``. Defaults: ``downsample=2, channels=(20, 20),
    kernel_size=5, hidden=20``. Convolutions are 'valid'; one that would not fit the (small)
    map gets 'same' padding instead. ``norm=True`` adds batch norm after every conv and the
    hidden FC layer, so no ReLU layer can go dead on a whole batch (cluttered MNIST).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_params: int,
        identity: torch.Tensor | Sequence[float] | None = None,
        downsample: int = 2,
        channels: int | Sequence[int] = (20, 20),
        kernel_size: int = 5,
        hidden: int = 20,
        pool: int = 2,
        norm: bool = False,
    ) -> None:
        super().__init__()
        _, conv, batch_norm, max_pool = _LAYERS[self.ndim]
        channels = _ints(channels)
        layers: list[nn.Module] = []
        size = self._downsampled(layers, in_size, max(int(downsample), 1))
        c_in = int(in_channels)
        for i, c in enumerate(channels):
            pad = 0 if min(size) >= kernel_size else kernel_size // 2
            layers.append(conv(c_in, c, kernel_size, padding=pad))
            if norm:
                layers.append(batch_norm(c))
            size = [s + 2 * pad - kernel_size + 1 for s in size]
            if i < len(channels) - 1 and pool > 1 and min(size) >= pool:
                layers.append(max_pool(pool))
                size = [s // pool for s in size]
            layers.append(nn.ReLU(inplace=True))
            c_in = c
        layers.append(nn.Flatten())
        dense, feat = dense_layers(c_in * math.prod(size),
                                   (int(hidden),) if hidden and hidden > 0 else (), norm)
        self._finish(layers + dense, feat, num_params, identity)


class _Flatten(nn.Flatten):
    """``nn.Flatten`` that hands a channels-last map's gradient back channels-last. With
    ``nn.Flatten`` it comes back NCHW, and the average pool in front then converts the whole
    feature map's gradient (ST-CNN Multi's backward copies, docs/performance.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nchw_keeping_grad_layout(x))


class FCLocalisation(_Localisation):
    """Fully connected localisation net (ST-FCN): ``flatten -> FC hidden... -> head``.

    Defaults: two hidden layers of 32 units plus the regression layer (3 FC layers).
    ``downsample`` > 1 average-pools the input first. ``norm=True`` adds batch norm after
    every hidden layer, so no ReLU can go dead on a whole batch (ST-CNN Multi's transformers
    on feature maps).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_params: int,
        identity: torch.Tensor | Sequence[float] | None = None,
        hidden: int | Sequence[int] = (32, 32),
        downsample: int = 1,
        norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = self._downsampled(layers, in_size, max(int(downsample), 1))
        dense, feat = dense_layers(int(in_channels) * math.prod(size), hidden, norm)
        self._finish([*layers, _Flatten(), *dense], feat, num_params, identity)


LOCALISATIONS: dict[str, type[nn.Module]] = {"conv": ConvLocalisation, "fc": FCLocalisation}


def _make(registry: dict[str, type[nn.Module]], name: str, *args, **kwargs) -> nn.Module:
    key = str(name).lower()
    if key not in registry:
        raise ValueError(
            f"unknown localisation net {name!r}; valid names: {', '.join(registry)}"
        )
    return registry[key](*args, **kwargs)


def make_localisation(
    name: str,
    in_channels: int,
    in_size: int | Sequence[int],
    num_params: int,
    identity: torch.Tensor | Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a localisation net by name (``conv`` or ``fc``)."""
    return _make(LOCALISATIONS, name, in_channels, in_size, num_params, identity, **kwargs)


__all__ = ["ConvLocalisation", "FCLocalisation", "LOCALISATIONS", "dense_layers",
           "make_localisation"]
