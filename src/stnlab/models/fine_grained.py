"""Fine-grained classification with parallel attention transformers (the paper's 2x / 4x ST-CNN
on CUB-200-2011): N attention crops of the image, each through a backbone, features
concatenated, one linear classifier. ``num_st=0`` is the CNN baseline (the backbone on the
whole image)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from stnlab.spatial import SpatialTransformer

from .backbones import _Model, ints, size2


class SmallBackbone(nn.Module):
    """``[conv 3x3 -> batch norm -> ReLU -> max-pool 2]`` per width, then a global average
    pool: images -> ``(B, channels[-1])`` features. ``min_size`` is the smallest input side
    it takes (one pixel left after the pools)."""

    def __init__(self, in_channels: int = 3, channels: int | Sequence[int] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c = int(in_channels)
        for co in ints(channels):
            layers += [nn.Conv2d(c, co, 3, padding=1, bias=False), nn.BatchNorm2d(co),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = co
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = c
        self.min_size = 2 ** len(ints(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


BACKBONES = {"small_cnn": SmallBackbone}


def make_backbone(spec: str | Mapping, in_channels: int) -> nn.Module:
    """A backbone by name (``BACKBONES``) or from ``{"_target_": "pkg.Class", **kwargs}``
    (called with ``in_channels`` unless given); it must map images to ``(B, D)`` features."""
    if isinstance(spec, str):
        if spec not in BACKBONES:
            raise ValueError(f"model.backbone={spec!r}: valid names: {', '.join(BACKBONES)}, "
                             "or a mapping with a _target_")
        return BACKBONES[spec](in_channels)
    kwargs = dict(spec)
    target = kwargs.pop("_target_", None)
    if not target or "." not in str(target):
        raise ValueError(f"model.backbone={spec!r} needs a _target_ 'package.Class'")
    module, _, name = str(target).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    kwargs.setdefault("in_channels", in_channels)
    return cls(**kwargs)


def initial_crops(num: int, scale: float) -> list[tuple[float, float, float]]:
    """``(s, tx, ty)`` starting crops: centred for one; otherwise spread evenly on a circle of
    radius ``(1 - scale) / 2`` (from the top, clockwise), so that the transformers start apart
    and do not get the same gradient."""
    if num == 1:
        return [(scale, 0.0, 0.0)]
    r = (1.0 - scale) / 2
    return [(scale, r * math.sin(2 * math.pi * i / num), -r * math.cos(2 * math.pi * i / num))
            for i in range(num)]


class FineGrainedST(_Model):
    """``num_st`` attention transformers in parallel over the image, each crop
    (``st_out_size``) through a backbone, the features concatenated, one linear classifier.

    Args:
        in_channels, in_size, num_classes: filled in from the data.
        num_st: parallel transformers (the paper: 2 or 4); 0: the backbone on the image (CNN).
        backbone: a name of ``BACKBONES`` or a mapping with a ``_target_`` (a class taking
            ``in_channels`` and mapping images to ``(B, D)``); the paper: an ImageNet-pretrained
            Inception-BN, which cannot be downloaded here: the default is a small CNN.
        shared_backbone: one backbone for every crop (False: one each, as the paper).
        st_out_size: the crops' side; None: half the input's (the paper: 448 -> 224).
        init_scale: the crops start at this share of the image side (spread, ``initial_crops``).
        loc_downsample: average pool in front of the localisation net; None: the input side
            over 64 (448 -> 7), at least 1.
        loc_kwargs: of the conv localisation net (default: batch norm on).
        dropout: before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        in_size: int | Sequence[int],
        num_classes: int,
        num_st: int = 2,
        backbone: str | dict = "small_cnn",
        shared_backbone: bool = False,
        st_out_size: int | None = None,
        init_scale: float = 0.5,
        loc_downsample: int | None = None,
        loc_kwargs: dict | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        h, w = size2(in_size)
        if int(num_st) < 0:
            raise ValueError(f"model.num_st={num_st} must be >= 0 (0: the CNN baseline)")
        if not 0.0 < float(init_scale) <= 1.0:
            raise ValueError(f"model.init_scale={init_scale} must be in (0, 1]")
        self.num_st = int(num_st)
        out = (h, w) if self.num_st == 0 else (
            size2(st_out_size) if st_out_size is not None else (max(1, h // 2), max(1, w // 2)))
        copies = 1 if shared_backbone or self.num_st <= 1 else self.num_st
        self.backbones = nn.ModuleList(make_backbone(backbone, in_channels)
                                       for _ in range(copies))
        need = getattr(self.backbones[0], "min_size", 1)
        if min(out) < need:
            field = "data.size" if self.num_st == 0 or st_out_size is None else "model.st_out_size"
            raise ValueError(
                f"{field}: the backbone sees {out[0]}x{out[1]} images, smaller than the "
                f"{need}x{need} it needs ({type(self.backbones[0]).__name__}); raise {field}")
        down = max(1, min(h, w) // 64) if loc_downsample is None else int(loc_downsample)
        lkw = {"norm": True} if loc_kwargs is None else dict(loc_kwargs)
        self.transformers = nn.ModuleList()
        for s, tx, ty in initial_crops(self.num_st, float(init_scale)):
            st = SpatialTransformer(int(in_channels), (h, w), transform="attention",
                                    out_size=out, loc_downsample=down, loc_kwargs=lkw)
            with torch.no_grad():
                st.loc.head.bias.copy_(torch.tensor([s, tx, ty]))
            self.transformers.append(st)
        with torch.no_grad():
            was = self.backbones[0].training
            self.backbones[0].eval()
            dim = self.backbones[0](torch.zeros(1, int(in_channels), *out)).flatten(1).shape[1]
            self.backbones[0].train(was)
        self.head = nn.Sequential(nn.Dropout(float(dropout)),
                                  nn.Linear(dim * max(1, self.num_st), int(num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_st == 0:
            return self.head(self.backbones[0](x).flatten(1))
        feats = [self.backbones[i % len(self.backbones)](st(x)).flatten(1)
                 for i, st in enumerate(self.transformers)]
        return self.head(torch.cat(feats, 1))


__all__ = ["BACKBONES", "FineGrainedST", "SmallBackbone", "initial_crops", "make_backbone"]
