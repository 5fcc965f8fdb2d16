"""Plain backbones of the paper's MNIST experiments (A.4): CNN and FCN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer, spatial_transformers


def size2(size: int | Sequence[int]) -> tuple[int, int]:
    """``42`` or ``[42, 42]`` -> ``(42, 42)`` (Hydra passes lists)."""
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def ints(x: int | Sequence[int]) -> tuple[int, ...]:
    return (int(x),) if isinstance(x, int) else tuple(int(v) for v in x)


class _Model(nn.Module):
    """Shared helpers of every stnlab model."""

    def spatial_transformers(self) -> list[SpatialTransformer]:
        return spatial_transformers(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ConvBlock(nn.Sequential):
    """``conv k x k ('same' padding) -> ReLU -> max-pool``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: int = 2):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
        ]
        if pool > 1:
            layers.append(nn.MaxPool2d(pool))
        super().__init__(*layers)


class CNN(_Model):
    """``conv 9x9 -> max-pool 2 -> conv 7x7 -> max-pool 2 -> linear classifier`` (ReLU).

    Three weight layers as in the paper; widths default to ``(16, 32)`` (CPU friendly:
    58,442 parameters at 42x42, 10 classes).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        channels: int | Sequence[int] = (16, 32),
        kernel_sizes: int | Sequence[int] = (9, 7),
        pool: int = 2,
    ) -> None:
        super().__init__()
        channels, kernel_sizes = ints(channels), ints(kernel_sizes)
        if len(kernel_sizes) == 1:
            kernel_sizes = kernel_sizes * len(channels)
        if len(channels) != len(kernel_sizes):
            raise ValueError(f"channels {channels} and kernel_sizes {kernel_sizes} differ")
        h, w = size2(in_size)
        c = int(in_channels)
        blocks = []
        for co, k in zip(channels, kernel_sizes, strict=True):
            blocks.append(ConvBlock(c, co, k, pool))
            c, h, w = co, h // max(pool, 1), w // max(pool, 1)
        if h < 1 or w < 1:
            raise ValueError(f"input {size2(in_size)} too small for {len(channels)} pools")
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, int(num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FCN(_Model):
    """``flatten -> FC hidden -> ReLU -> FC hidden -> ReLU -> linear classifier``.

    Widths default to ``(64, 64)`` (117,770 parameters at 42x42, 10 classes).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        hidden: int | Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        h, w = size2(in_size)
        feat = int(in_channels) * h * w
        layers: list[nn.Module] = [nn.Flatten()]
        for units in ints(hidden):
            layers += [nn.Linear(feat, units), nn.ReLU(inplace=True)]
            feat = units
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(feat, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


__all__ = ["CNN", "FCN", "ConvBlock"]
