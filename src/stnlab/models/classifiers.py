"""Classifiers with spatial transformers: ST-CNN and ST-FCN (single, parallel, in series)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import ParallelSpatialTransformers

from .backbones import FCN, ConvBlock, _Model, ints, size2


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in x]


class STCNN(_Model):
    """A CNN with spatial transformers at the positions named in ``st_at``.

    ``st_at`` holds positions among ``"input"`` (in front of the CNN, output ``st_out_size``)
    and ``"conv1"``, ``"conv2"``, ... (after that conv block, on its feature map, same size).
    Several positions put transformers in series; ``num_parallel`` = N puts N independent
    transformers at every position, their outputs concatenated on channels (the paper's
    2x / 4x ST-CNN). ``st_pool`` > 1 average-pools the input ST's output (paper: RTS, TC).

    Defaults match the paper's ST-CNN on 42x42 MNIST: affine ST, 42x42 -> 28x28, the
    paper's conv localisation net on the 2x downsampled input; the backbone is ``CNN``'s
    (widths ``(32, 64)``). ``STCNN(1, (42, 42), 10)`` has 151,496 parameters, ``CNN(1, (42,
    42), 10)`` 167,050 (9.3% apart; the paper matched them).
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        transform: str = "affine",
        st_out_size: int | Sequence[int] | None = (28, 28),
        st_at: str | Sequence[str] = ("input",),
        num_parallel: int = 1,
        st_pool: int = 1,
        sampling: str = "bilinear",
        padding: str = "zeros",
        loc: str = "conv",
        loc_downsample: int | None = None,
        bound: bool = False,
        grid_size: int = 4,
        loc_kwargs: dict | None = None,
        channels: int | Sequence[int] = (32, 64),
        kernel_sizes: int | Sequence[int] = (9, 7),
        pool: int = 2,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        channels, kernel_sizes = ints(channels), ints(kernel_sizes)
        if len(kernel_sizes) == 1:
            kernel_sizes = kernel_sizes * len(channels)
        if len(channels) != len(kernel_sizes):
            raise ValueError(f"channels {channels} and kernel_sizes {kernel_sizes} differ")
        positions = _as_list(st_at)
        valid = ["input"] + [f"conv{i + 1}" for i in range(len(channels))]
        bad = [p for p in positions if p not in valid]
        if bad or len(set(positions)) != len(positions):
            raise ValueError(f"st_at={positions}: each position once, valid: {', '.join(valid)}")
        st_common = dict(
            transform=transform, sampling=sampling, padding=padding, loc=loc,
            loc_downsample=loc_downsample, bound=bound, grid_size=grid_size,
            loc_kwargs=loc_kwargs,
        )
        h, w = size2(in_size)
        c = int(in_channels)
        layers: list[nn.Module] = []
        if "input" in positions:
            out = size2(st_out_size) if st_out_size is not None else (h, w)
            st = ParallelSpatialTransformers(
                int(num_parallel), in_channels=c, in_size=(h, w), out_size=out, **st_common
            )
            layers.append(st)
            c, (h, w) = st.out_channels, out
            if st_pool > 1:
                layers.append(nn.AvgPool2d(int(st_pool)))
                h, w = h // int(st_pool), w // int(st_pool)
        for i, (co, k) in enumerate(zip(channels, kernel_sizes, strict=True)):
            layers.append(ConvBlock(c, co, k, pool))
            c, h, w = co, h // max(pool, 1), w // max(pool, 1)
            if f"conv{i + 1}" in positions:
                st = ParallelSpatialTransformers(
                    int(num_parallel), in_channels=c, in_size=(h, w), out_size=(h, w),
                    **st_common,
                )
                layers.append(st)
                c = st.out_channels
        if h < 1 or w < 1:
            raise ValueError(f"input {size2(in_size)} too small for {len(channels)} pools")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, int(num_classes)))
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self._to_memory_format(x)))


class STFCN(_Model):
    """Spatial transformer(s) with the fully connected localisation net in front of an FCN.

    ``num_parallel`` transformers run on the input (outputs concatenated on channels);
    ``st_at`` accepts only ``"input"`` (kept for a config shape shared with ``STCNN``).
    Defaults: affine, 42x42 -> 28x28, loc net FC 32 -> FC 32 -> regression, FCN widths
    ``(64, 64)``: 112,784 parameters at 42x42 vs the FCN's 117,770.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        transform: str = "affine",
        st_out_size: int | Sequence[int] | None = (28, 28),
        st_at: str | Sequence[str] = ("input",),
        num_parallel: int = 1,
        st_pool: int = 1,
        sampling: str = "bilinear",
        padding: str = "zeros",
        loc: str = "fc",
        loc_downsample: int | None = None,
        bound: bool = False,
        grid_size: int = 4,
        loc_kwargs: dict | None = None,
        hidden: int | Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        positions = _as_list(st_at)
        if positions != ["input"]:
            raise ValueError(f"STFCN: st_at={positions}; valid: ['input']")
        h, w = size2(in_size)
        out = size2(st_out_size) if st_out_size is not None else (h, w)
        self.st = ParallelSpatialTransformers(
            int(num_parallel), in_channels=int(in_channels), in_size=(h, w), out_size=out,
            transform=transform, sampling=sampling, padding=padding, loc=loc,
            loc_downsample=loc_downsample, bound=bound, grid_size=grid_size,
            loc_kwargs=loc_kwargs,
        )
        self.pool = nn.AvgPool2d(int(st_pool)) if st_pool > 1 else nn.Identity()
        if st_pool > 1:
            out = (out[0] // int(st_pool), out[1] // int(st_pool))
        self.fcn = FCN(self.st.out_channels, out, num_classes, hidden=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fcn(self.pool(self.st(x)))


__all__ = ["STCNN", "STFCN"]
