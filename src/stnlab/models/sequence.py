"""Sequence readers for multi-digit images (the paper's SVHN study): a Goodfellow-style CNN and
its ST-CNN Single / Multi variants.

Output contract (what ``stnlab.tasks.LitSequence`` trains): ``net(x)`` returns a tuple
``(length_logits (B, max_length + 1), digit_logits (B, max_length, num_classes))``: one softmax
over the length 0..max_length and one per digit position, whose class ``num_classes - 1`` is
the blank after the sequence's end. Every model here declares ``task = "sequence"``;
``stnlab-train`` refuses it on single-label data and a classifier on sequence data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer

from .backbones import _Model, ints, size2


def loc_downsample_for(channels: int, size: tuple[int, int], max_features: int) -> int:
    """The smallest power-of-two average pool that leaves a fully connected localisation net at
    most ``max_features`` inputs (a 32-channel 32x32 map would otherwise give it 1M weights)."""
    d = 1
    h, w = size
    while channels * (h // d) * (w // d) > max_features and min(h, w) // d > 1:
        d *= 2
    return d


def conv_block(in_channels: int, out_channels: int, kernel_size: int,
               norm: bool, pool: int = 2) -> nn.Sequential:
    """``conv k x k ('same') -> [batch norm] -> max-pool -> ReLU`` (``pool=1``: no pooling):
    the ReLU after the pool gives the same values and gradients (both are monotone) on a
    quarter of the elements (the sequence CNN's CPU step 151 -> 138 ms, docs/performance.md)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size,
                                         padding=kernel_size // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    if pool > 1:
        layers.append(nn.MaxPool2d(pool))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class SequenceHeads(nn.Module):
    """``features -> (FC hidden -> ReLU) per hidden width -> (length logits, per-position digit
    logits)``."""

    def __init__(self, in_features: int, hidden: int | Sequence[int], max_length: int,
                 num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.max_length, self.num_classes = int(max_length), int(num_classes)
        layers: list[nn.Module] = [nn.Flatten()]
        for width in ints(hidden):
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True),
                       nn.Dropout(float(dropout))]
            in_features = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(in_features, self.max_length + 1 + self.max_length * self.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.out(self.body(x))
        n = self.max_length + 1
        return z[:, :n], z[:, n:].reshape(-1, self.max_length, self.num_classes)


class SequenceCNN(_Model):
    """The baseline: ``len(channels)`` conv blocks (conv 'same' -> batch norm -> max-pool 2 ->
    ReLU; ``norm=False`` drops the batch norm; ``pools`` sets each block's pool, 1 for none),
    FC hidden layers of the ``hidden`` widths (one by default), then one softmax for
    the length and one per position (Goodfellow et al. 2014, scaled down for 64x64 on a CPU: 4
    conv layers instead of 8, one FC layer of 256 instead of two of 3,072).
    ``SequenceCNN(1, 64, 11)``: 670,621 parameters.

    ``st_at`` lists conv layers (0-based) that get an affine spatial transformer in front, on
    that layer's input (0: the image); the ST subclasses set it.
    """

    task: ClassVar[str] = "sequence"

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int = 11,
        max_length: int = 5,
        channels: int | Sequence[int] = (32, 64, 64, 128),
        kernel_sizes: int | Sequence[int] = (5, 3, 3, 3),
        hidden: int | Sequence[int] = 256,
        dropout: float = 0.0,
        norm: bool = True,
        st_at: int | Sequence[int] = (),
        transform: str = "affine",
        loc: str = "fc",
        loc_kwargs: dict | None = None,
        loc_features: int = 1024,
        channels_last: bool = True,
        pools: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        channels, kernel_sizes, pools = ints(channels), ints(kernel_sizes), ints(pools)
        if len(kernel_sizes) == 1:
            kernel_sizes = kernel_sizes * len(channels)
        if len(pools) == 1:
            pools = pools * len(channels)
        if not len(channels) == len(kernel_sizes) == len(pools):
            raise ValueError(f"model.channels {channels}, model.kernel_sizes {kernel_sizes} and "
                             f"model.pools {pools} must have the same length (or one value)")
        if int(max_length) < 1 or int(num_classes) < 2:
            raise ValueError(f"max_length={max_length} must be >= 1 and num_classes="
                             f"{num_classes} >= 2 (10 digits + blank: 11)")
        positions = sorted(set(ints(st_at)))
        if any(not 0 <= p < len(channels) for p in positions):
            raise ValueError(f"model.st_at={list(positions)}: conv layer indices in "
                             f"0..{len(channels) - 1} (0 = in front of the first conv layer)")
        h, w = size2(in_size)
        c = int(in_channels)
        layers: list[nn.Module] = []
        for i, (co, k, pool) in enumerate(zip(channels, kernel_sizes, pools, strict=True)):
            if i in positions:
                lkw = dict(loc_kwargs or {})
                downsample = (loc_downsample_for(c, (h, w), loc_features) if loc == "fc"
                              else None)
                layers.append(SpatialTransformer(
                    in_channels=c, in_size=(h, w), transform=transform, loc=loc,
                    loc_downsample=downsample, loc_kwargs=lkw))
            layers.append(conv_block(c, co, k, norm, pool))
            c, h, w = co, h // pool, w // pool
        if h < 1 or w < 1:
            raise ValueError(f"input {size2(in_size)} too small for {len(channels)} pools")
        self.features = nn.Sequential(*layers)
        self.heads = SequenceHeads(c * h * w, hidden, max_length, num_classes, dropout)
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(self._to_memory_format(x)))


class SequenceSTCNNSingle(SequenceCNN):
    """ST-CNN Single: one affine transformer on the image, with the paper's small conv
    localisation net (``ConvLocalisation`` defaults), in front of ``SequenceCNN``. FC width 232
    keeps the parameter count at the CNN's (``SequenceSTCNNSingle(1, 64, 11)``: 670,667).
    ``model=seq_st_cnn_single`` adds ``loc_kwargs={norm: true}`` (670,787): without batch norm
    the localisation net's ReLUs died on multi-digit MNIST and the warp froze.

    The arguments besides ``hidden`` are ``SequenceCNN``'s (as for ``SequenceSTCNNMulti``)."""

    fixed_arguments: ClassVar[tuple[str, ...]] = ("st_at", "loc", "loc_features")
    """``SequenceCNN``'s arguments this class sets itself (not a config's to set)."""

    def __init__(self, *args, hidden: int | Sequence[int] = 232, **kwargs) -> None:
        super().__init__(*args, hidden=hidden, st_at=(0,), loc="conv", **kwargs)


class SequenceSTCNNMulti(SequenceCNN):
    """ST-CNN Multi: an affine transformer in front of each of the first four conv layers (the
    image, then the maps after conv 1, 2, 3), each with a fully connected localisation net of
    two 32-unit layers (the paper's) on its input average-pooled down to at most
    ``loc_features`` values. FC width 200 keeps the parameter count at the CNN's
    (``SequenceSTCNNMulti(1, 64, 11)``: 672,293)."""

    fixed_arguments: ClassVar[tuple[str, ...]] = ("loc",)

    def __init__(self, *args, hidden: int | Sequence[int] = 200,
                 st_at: int | Sequence[int] = (0, 1, 2, 3), **kwargs) -> None:
        super().__init__(*args, hidden=hidden, st_at=st_at, loc="fc", **kwargs)


__all__ = ["SequenceCNN", "SequenceHeads", "SequenceSTCNNMulti", "SequenceSTCNNSingle"]
