"""Classifiers with spatial transformers: ST-CNN and ST-FCN (single, parallel, in series)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stnlab.spatial import ParallelSpatialTransformers

from .backbones import FCN, ConvBlock, _conv_plan, _Model, size2

POOL_FROM = 42  # an ST output this large (a canvas, not a digit) is average-pooled by 2


def st_pool_for(out_size: tuple[int, int], st_pool: int | None) -> int:
    """``st_pool``, or for ``None`` the paper's rule (A.4: RTS and TC): halve an ST output
    of at least ``POOL_FROM`` px on its short side, keep a digit-sized one.

    On RTS (42 -> 21) this trains as well as a 28x28 output at half the cost (docs/results.md).
    """
    if st_pool is None:
        return 2 if min(out_size) >= POOL_FROM else 1
    if int(st_pool) < 1:
        raise ValueError(f"st_pool={st_pool} must be >= 1 (or null for the paper's rule)")
    return int(st_pool)


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in x]


class _STClassifier(_Model):
    """What ``STCNN`` and ``STFCN`` share: the transformers' arguments (see ``STCNN``), kept
    to build them (``_transformers``) where the subclass puts them."""

    def __init__(
        self,
        transform: str = "affine",
        st_out_size: int | Sequence[int] | None = None,
        st_at: str | Sequence[str] = ("input",),
        num_parallel: int = 1,
        split_channels: bool = False,
        st_pool: int | None = None,
        sampling: str = "bilinear",
        padding: str = "zeros",
        loc: str = "conv",
        loc_downsample: int | None = None,
        bound: bool = False,
        grid_size: int = 4,
        loc_kwargs: dict | None = None,
        st_init_scale: float = 1.0,
        transform_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self._st_positions = _as_list(st_at)
        self._st_out_size, self._st_pool = st_out_size, st_pool
        self._st_copies = (int(num_parallel), split_channels)
        self._st_args = dict(
            transform=transform, sampling=sampling, padding=padding, loc=loc,
            loc_downsample=loc_downsample, bound=bound, grid_size=grid_size,
            loc_kwargs=loc_kwargs, init_scale=st_init_scale, transform_kwargs=transform_kwargs,
        )

    def _transformers(self, in_channels: int, in_size: tuple[int, int],
                      out_size: tuple[int, int]) -> ParallelSpatialTransformers:
        return ParallelSpatialTransformers(*self._st_copies, in_channels=in_channels,
                                           in_size=in_size, out_size=out_size, **self._st_args)

    def _input_transformers(self, in_channels: int, in_size: tuple[int, int]):
        """The transformers on the input (output ``st_out_size``), then the average pool of
        ``st_pool_for`` (``None`` when it is 1) and the size of what comes out of it."""
        out = size2(self._st_out_size) if self._st_out_size is not None else in_size
        st = self._transformers(in_channels, in_size, out)
        pool_st = st_pool_for(out, self._st_pool)
        if pool_st == 1:
            return st, None, out
        return st, nn.AvgPool2d(pool_st), (out[0] // pool_st, out[1] // pool_st)


class STCNN(_STClassifier):
    """A CNN with spatial transformers at the positions named in ``st_at``.

    ``st_at`` holds positions among ``"input"`` (in front of the CNN, output ``st_out_size``)
    and ``"conv1"``, ``"conv2"``, ... (after that conv block, on its feature map, same size).
    Several positions put transformers in series; ``num_parallel`` = N puts N independent
    transformers at every position, their outputs concatenated on channels (the paper's
    2x / 4x ST-CNN); ``split_channels`` gives each of them its own group of channels instead
    (``ParallelSpatialTransformers``). ``st_pool`` > 1 average-pools the input ST's output;
    ``None`` follows the paper (``st_pool_for``: 42x42 RTS -> 21x21). ``st_init_scale`` < 1
    starts every transformer on a centred crop (``SpatialTransformer(init_scale=...)``);
    1 = identity. ``transform``, ``sampling``, ``padding``, ``loc``, ``loc_downsample``,
    ``bound``, ``grid_size``, ``loc_kwargs``: each transformer's (``SpatialTransformer``).
    ``transform_kwargs``: the family's own arguments (``crop``: ``min_scale``, ``max_scale``).
    ``channels``, ``kernel_sizes``, ``pool``, ``channels_last`` and ``batch_norm`` are
    ``CNN``'s (``batch_norm``: the backbone's convolutions only, not the localisation net's).

    Defaults match the paper's ST-CNN: affine ST at the input's resolution, then on a
    42x42 canvas a 2x average pool; the paper's conv localisation net on the 2x downsampled
    input; the backbone is ``CNN``'s (widths ``(32, 64)``). ``STCNN(1, (42, 42), 10)`` has
    136,136 parameters, ``CNN(1, (42, 42), 10)`` 167,050.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        *,
        channels: int | Sequence[int] = (32, 64),
        kernel_sizes: int | Sequence[int] = (9, 7),
        pool: int = 2,
        channels_last: bool = True,
        batch_norm: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        channels, kernel_sizes = _conv_plan(channels, kernel_sizes)
        positions = self._st_positions
        valid = ["input"] + [f"conv{i + 1}" for i in range(len(channels))]
        bad = [p for p in positions if p not in valid]
        if bad or len(set(positions)) != len(positions):
            raise ValueError(f"st_at={positions}: each position once, valid: {', '.join(valid)}")
        h, w = size2(in_size)
        c = int(in_channels)
        layers: list[nn.Module] = []
        if "input" in positions:
            st, pool_st, (h, w) = self._input_transformers(c, (h, w))
            layers += [st] if pool_st is None else [st, pool_st]
            c = st.out_channels
        for i, (co, k) in enumerate(zip(channels, kernel_sizes, strict=True)):
            layers.append(ConvBlock(c, co, k, pool, batch_norm))
            c, h, w = co, h // max(pool, 1), w // max(pool, 1)
            if f"conv{i + 1}" in positions:
                st = self._transformers(c, (h, w), (h, w))
                layers.append(st)
                c = st.out_channels
        if h < 1 or w < 1:
            raise ValueError(f"input {size2(in_size)} too small for {len(channels)} pools")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, int(num_classes)))
        self._init_memory_format(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self._to_memory_format(x)))


class STFCN(_STClassifier):
    """Spatial transformer(s) with the fully connected localisation net in front of an FCN.

    ``num_parallel`` transformers run on the input (outputs concatenated on channels, or
    each on its own channel group with ``split_channels``, as ``STCNN``);
    ``st_at`` accepts only ``"input"`` (kept for a config shape shared with ``STCNN``).
    Defaults: affine ST at the input's resolution (2x average pool on a 42x42 canvas, as
    ``STCNN``), loc net FC 32 -> FC 32 -> regression, FCN widths ``(64, 64)``.
    The transformers' arguments are ``STCNN``'s; ``hidden`` and ``batch_norm`` ``FCN``'s.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        *,
        loc: str = "fc",
        hidden: int | Sequence[int] = (64, 64),
        batch_norm: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(loc=loc, **kwargs)
        if self._st_positions != ["input"]:
            raise ValueError(f"STFCN: st_at={self._st_positions}; valid: ['input']")
        self.st, pool_st, out = self._input_transformers(int(in_channels), size2(in_size))
        self.pool = nn.Identity() if pool_st is None else pool_st
        self.fcn = FCN(self.st.out_channels, out, num_classes, hidden=hidden, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fcn(self.pool(self.st(x)))


__all__ = ["STCNN", "STFCN"]
