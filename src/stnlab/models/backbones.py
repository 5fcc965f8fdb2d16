"""Plain backbones of the paper's MNIST experiments (A.4): CNN and FCN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer, spatial_transformers
from stnlab.spatial.localisation import dense_layers


def size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``42`` or ``[42, 42]`` -> ``(42, 42)`` (Hydra passes lists)."""
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def ints(x: int | Sequence[int]) -> tuple[int, ...]:
    return (int(x),) if isinstance(x, int) else tuple(int(v) for v in x)


class _Model(nn.Module):
    """Shared helpers of every stnlab model; ``input_ndim``: 2 for images, 3 for volumes."""

    input_ndim = 2

    def spatial_transformers(self) -> list[SpatialTransformer]:
        return spatial_transformers(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _init_memory_format(self, channels_last: bool) -> None:
        """Channels-last conv weights (and inputs, see ``_to_memory_format``): on CPU the
        oneDNN kernels and max-pooling are ~20% faster this way; results are identical."""
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def _conv_plan(
    channels: int | Sequence[int], kernel_sizes: int | Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``channels`` and ``kernel_sizes`` as tuples of one length (one kernel size serves all)."""
    channels, kernel_sizes = ints(channels), ints(kernel_sizes)
    if len(kernel_sizes) == 1:
        kernel_sizes = kernel_sizes * len(channels)
    if len(channels) != len(kernel_sizes):
        raise ValueError(f"channels {channels} and kernel_sizes {kernel_sizes} differ")
    return channels, kernel_sizes


class ConvBlock(nn.Sequential):
    """``conv k x k ('same' padding) -> [batch norm] -> ReLU -> max-pool``."""

    _conv: type[nn.Module] = nn.Conv2d
    _max_pool: type[nn.Module] = nn.MaxPool2d
    _norm: type[nn.Module] = nn.BatchNorm2d

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, pool: int = 2,
        batch_norm: bool = False,
    ):
        layers: list[nn.Module] = [
            self._conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        ]
        if batch_norm:
            layers.append(self._norm(out_channels))
        layers.append(nn.ReLU(inplace=True))
        if pool > 1:
            layers.append(self._max_pool(pool))
        super().__init__(*layers)


def _conv_body(
    block: type[ConvBlock],
    in_channels: int,
    size: Sequence[int],
    num_classes: int,
    channels: int | Sequence[int],
    kernel_sizes: int | Sequence[int],
    pool: int,
    batch_norm: bool = False,
) -> tuple[nn.Sequential, nn.Sequential]:
    """The conv blocks and the linear classifier of ``CNN``, ``CNN3D`` and ``STCNN3D``."""
    channels, kernel_sizes = _conv_plan(channels, kernel_sizes)
    c, dims = int(in_channels), list(size)
    blocks = []
    for co, k in zip(channels, kernel_sizes, strict=True):
        blocks.append(block(c, co, k, pool, batch_norm))
        c, dims = co, [s // max(pool, 1) for s in dims]
    if min(dims) < 1:
        raise ValueError(f"input {tuple(size)} too small for {len(channels)} pools of {pool}")
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * math.prod(dims), int(num_classes)))
    return nn.Sequential(*blocks), classifier


class CNN(_Model):
    """``conv 9x9 -> max-pool 2 -> conv 7x7 -> max-pool 2 -> linear classifier`` (ReLU).

    Three weight layers as in the paper, 'same' padding; widths default to ``(32, 64)``:
    167,050 parameters at 42x42 with 10 classes. ``channels_last`` (default) runs the
    convolutions in channels-last layout (faster on CPU, same results). ``batch_norm`` puts
    a batch norm after each convolution (off in the paper; the addition study needs it).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        channels: int | Sequence[int] = (32, 64),
        kernel_sizes: int | Sequence[int] = (9, 7),
        pool: int = 2,
        channels_last: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.features, self.classifier = _conv_body(
            ConvBlock, in_channels, size2(in_size), num_classes, channels, kernel_sizes, pool,
            batch_norm,
        )
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self._to_memory_format(x)))


class FCN(_Model):
    """``flatten -> FC hidden -> ReLU -> FC hidden -> ReLU -> linear classifier``.

    Widths default to ``(64, 64)`` (117,770 parameters at 42x42, 10 classes); ``batch_norm``
    puts a batch norm after each hidden layer's linear map (off in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        hidden: int | Sequence[int] = (64, 64),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        h, w = size2(in_size)
        layers, feat = dense_layers(int(in_channels) * h * w, hidden, batch_norm)
        self.features = nn.Sequential(nn.Flatten(), *layers)
        self.classifier = nn.Linear(feat, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


__all__ = ["CNN", "FCN", "ConvBlock"]
