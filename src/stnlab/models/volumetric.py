"""Volumetric classifiers for ``(B, C, D, H, W)`` input: a 3-D CNN and an ST-CNN with a
volumetric spatial transformer in front (the distorted-volume task, ``data=volumetric``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer
from stnlab.spatial.transforms3d import _size3

from .backbones import ConvBlock, _conv_body, _Model


class ConvBlock3D(ConvBlock):
    """``conv k^3 ('same' padding) -> [batch norm] -> ReLU -> max-pool``."""

    _conv = nn.Conv3d
    _max_pool = nn.MaxPool3d
    _norm = nn.BatchNorm3d


class _Model3D(_Model):
    """Channels-last-3d layout (about 2x faster 3-D convolutions on CPU, same results)."""

    input_ndim = 3

    def _init_memory_format(self, channels_last: bool) -> None:
        self.channels_last = bool(channels_last)
        if self.channels_last:
            for m in self.modules():
                if isinstance(m, nn.Conv3d):
                    m.to(memory_format=torch.channels_last_3d)

    def _to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x


class CNN3D(_Model3D):
    """``conv3d 3^3 -> max-pool 2 -> conv3d 3^3 -> max-pool 2 -> linear classifier`` (ReLU).

    Widths default to ``(8, 16)``, 'same' padding: 85,626 parameters at 32^3 with 10 classes
    (the classifier's 81,930 of them). About 0.4 s per training step of 32 volumes on 2 CPU
    cores, STCNN3D about 2x that (benchmarks/bench_st3d_overhead.py).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        channels: int | Sequence[int] = (8, 16),
        kernel_sizes: int | Sequence[int] = 3,
        pool: int = 2,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.features, self.classifier = _conv_body(
            ConvBlock3D, in_channels, _size3(in_size), num_classes, channels, kernel_sizes, pool
        )
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self._to_memory_format(x)))


class STCNN3D(_Model3D):
    """A volumetric spatial transformer at the input, then the ``CNN3D`` body.

    The transformer (``transform``: ``affine3d`` by default, or ``attention3d`` /
    ``translation3d``) has the 3-D conv localisation net on the 2x average-pooled volume
    (``ConvLocalisation3D``: conv 5^3 (8) -> max-pool -> conv 5^3 (16) -> FC 32 -> head) and
    samples an ``st_out_size`` volume (default: the input's size); ``st_pool`` > 1
    average-pools it before the CNN. ``STCNN3D(1, (32, 32, 32), 10)`` has 107,174 parameters
    (the localisation net 21,548), ``CNN3D`` 85,626.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        transform: str = "affine3d",
        st_out_size: int | Sequence[int] | None = None,
        st_pool: int = 1,
        sampling: str = "bilinear",
        padding: str = "zeros",
        loc: str = "conv",
        loc_downsample: int | None = None,
        bound: bool = False,
        loc_kwargs: dict | None = None,
        channels: int | Sequence[int] = (8, 16),
        kernel_sizes: int | Sequence[int] = 3,
        pool: int = 2,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        size = _size3(in_size)
        out = _size3(st_out_size) if st_out_size is not None else size
        if int(st_pool) < 1:
            raise ValueError(f"st_pool={st_pool} must be >= 1")
        self.st = SpatialTransformer(
            int(in_channels),
            size,
            transform=transform,
            out_size=out,
            sampling=sampling,
            padding=padding,
            loc=loc,
            loc_downsample=loc_downsample,
            bound=bound,
            loc_kwargs=loc_kwargs,
        )
        self.pool = nn.AvgPool3d(int(st_pool)) if int(st_pool) > 1 else nn.Identity()
        out = tuple(s // int(st_pool) for s in out)
        self.features, self.classifier = _conv_body(
            ConvBlock3D, in_channels, out, num_classes, channels, kernel_sizes, pool
        )
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.pool(self.st(x))
        return self.classifier(self.features(self._to_memory_format(v)))


__all__ = ["CNN3D", "STCNN3D", "ConvBlock3D"]
